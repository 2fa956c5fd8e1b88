"""Shared fixtures: offline, fast mode, and a tiny model built once per session in a temp cache."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ALIGNKIT_MODE", "fast")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory):
    """A cache folder holding the 'test' preset's tokenizer, base and SFT models."""
    return tmp_path_factory.mktemp("alignkit-cache")


@pytest.fixture(scope="session")
def tiny_sft(tiny_cache):
    """(model, tokenizer) of the 'test' preset's SFT model on CPU (seconds to build)."""
    from shared_utils import models
    return models.sft_model("test", device=torch.device("cpu"), root=tiny_cache)


@pytest.fixture
def trainable_copy(tiny_sft):
    """(policy, ref, tok, initial parameters): a trainable copy of the tiny SFT model and a frozen reference."""
    from shared_utils import models
    model, tok = tiny_sft
    policy = models.frozen_copy(model).requires_grad_(True)
    return policy, models.frozen_copy(model), tok, [p.detach().clone() for p in policy.parameters()]
