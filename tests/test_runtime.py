import random

import numpy as np
import pytest
import torch

from shared_utils import runtime


def test_device_default_and_override(monkeypatch):
    monkeypatch.delenv("ALIGNKIT_DEVICE", raising=False)
    assert runtime.get_device().type in ("cpu", "cuda", "mps")
    monkeypatch.setenv("ALIGNKIT_DEVICE", "cpu")
    assert runtime.get_device() == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_device_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("ALIGNKIT_DEVICE", "cuda")
    with pytest.raises(ValueError, match="CUDA is not available"):
        runtime.get_device()


def test_mode(monkeypatch):
    monkeypatch.delenv("ALIGNKIT_MODE", raising=False)
    assert runtime.get_mode(torch.device("cpu")) == "fast"
    assert runtime.get_mode(torch.device("cuda")) == "full"
    monkeypatch.setenv("ALIGNKIT_MODE", "FULL")
    assert runtime.get_mode(torch.device("cpu")) == "full"
    monkeypatch.setenv("ALIGNKIT_MODE", "medium")
    with pytest.raises(ValueError, match="not a mode"):
        runtime.get_mode()


def test_set_seed_makes_all_generators_repeat():
    def draw():
        return random.random(), np.random.rand(), torch.rand(1).item()
    runtime.set_seed(3); a = draw()
    runtime.set_seed(3); b = draw()
    assert a == b
    with pytest.raises(ValueError):
        runtime.set_seed(-1)


def test_dtypes_on_cpu():
    cpu = torch.device("cpu")
    assert runtime.supports_bf16(cpu) is False
    assert runtime.training_dtype(cpu) == torch.float32
    kw = runtime.trl_precision_kwargs(cpu)
    assert kw["bf16"] is False and kw["gradient_checkpointing"] is False


def test_summary_is_one_line():
    s = runtime.summary(torch.device("cpu"))
    assert "\n" not in s and "torch" in s and "mode" in s


def test_colab_detection(monkeypatch):
    monkeypatch.delenv("COLAB_RELEASE_TAG", raising=False)
    assert runtime.in_colab() is False
    monkeypatch.setenv("COLAB_RELEASE_TAG", "release-colab")
    assert runtime.in_colab() is True
