"""Where and how the kit runs: device, seeding, fast/full mode, dtypes, Colab, versions.

Every notebook's first code cell calls :func:`summary` and :func:`get_device`, so a
reader sees at once what machine produced the numbers on the page.

Environment variables (all optional):

- ``ALIGNKIT_DEVICE``: force a device (``cpu``, ``cuda``, ``cuda:1``, ``mps``).
- ``ALIGNKIT_MODE``: ``fast`` (tiny sizes, minutes on a laptop CPU) or ``full``
  (larger model, more steps). Default: ``fast`` on CPU/MPS, ``full`` on CUDA.
- ``ALIGNKIT_CACHE``: where built artifacts (tokenizer, models, samples) are cached.

Taught in lecture 00.
"""
from __future__ import annotations

import os
import platform
import random
import sys
from pathlib import Path

import numpy as np
import torch

MODES = ("fast", "full")


def get_device(prefer: str | None = None) -> torch.device:
    """The device to run on: ``prefer`` or ``$ALIGNKIT_DEVICE`` if set, else cuda → mps → cpu."""
    name = prefer or os.environ.get("ALIGNKIT_DEVICE")
    if name:
        dev = torch.device(name)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {name!r} was requested but CUDA is not available; "
                             "unset ALIGNKIT_DEVICE or set it to 'cpu'.")
        if dev.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"device {name!r} was requested but MPS is not available; "
                             "unset ALIGNKIT_DEVICE or set it to 'cpu'.")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def get_mode(device: torch.device | None = None) -> str:
    """``fast`` or ``full``: ``$ALIGNKIT_MODE`` if set, else full on CUDA and fast elsewhere."""
    mode = os.environ.get("ALIGNKIT_MODE")
    if mode:
        mode = mode.strip().lower()
        if mode not in MODES:
            raise ValueError(f"ALIGNKIT_MODE={mode!r} is not a mode; use one of {MODES}.")
        return mode
    device = device or get_device()
    return "full" if device.type == "cuda" else "fast"


def set_seed(seed: int) -> None:
    """Seed python's ``random``, numpy and torch (all devices) with ``seed``."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def supports_bf16(device: torch.device) -> bool:
    """True where bf16 arithmetic is native: CUDA of compute capability ≥ 8 (A100, L4, ...).

    T4-class GPUs (capability 7.5) report bf16 as "supported" through emulation, which is
    slow and was a classic source of failures in RLHF notebooks, so they answer False.
    """
    if device.type == "cuda":
        major, _ = torch.cuda.get_device_capability(device)
        return major >= 8
    return False


def training_dtype(device: torch.device) -> torch.dtype:
    """The dtype to train in: bf16 where native, fp32 otherwise (tiny models gain nothing from fp16)."""
    return torch.bfloat16 if supports_bf16(device) else torch.float32


def trl_precision_kwargs(device: torch.device) -> dict:
    """Keyword arguments for a TRL/transformers config that are safe on ``device``.

    TRL configs default to ``bf16=True`` and ``gradient_checkpointing=True``; both are
    wrong on a CPU (and bf16 on a T4). Spread this into any ``*Config(...)``.
    """
    return {"bf16": supports_bf16(device), "fp16": False, "gradient_checkpointing": False,
            "use_cpu": device.type == "cpu"}


def in_colab() -> bool:
    """True inside Google Colab."""
    return "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ


def cache_dir() -> Path:
    """Root of the artifact cache: ``$ALIGNKIT_CACHE`` or ``~/.cache/alignkit``."""
    root = Path(os.environ.get("ALIGNKIT_CACHE", Path.home() / ".cache" / "alignkit"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def summary(device: torch.device | None = None) -> str:
    """One line describing this environment, for the first cell of every notebook."""
    import transformers
    import trl
    device = device or get_device()
    where = "colab" if in_colab() else platform.node() or "local"
    return (f"python {platform.python_version()} | torch {torch.__version__} | "
            f"transformers {transformers.__version__} | trl {trl.__version__} | "
            f"device {device} ({training_dtype(device)}) | mode {get_mode(device)} | "
            f"threads {torch.get_num_threads()} | {where}")
