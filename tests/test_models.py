import json
import os

import pytest
import torch

from shared_utils import models, sampling, world

CPU = torch.device("cpu")


def test_tokenizer_roundtrip_and_specials():
    tok = models.train_tokenizer(world.corpus(300), vocab_size=400)
    text = world.corpus(1, seed=5)[0]
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text
    assert tok.pad_token_id != tok.eos_token_id and tok.padding_side == "left"
    with pytest.raises(ValueError, match="non-empty"):
        models.train_tokenizer([])


def test_presets():
    assert models.get_preset("fast").n_layer == 2 and models.get_preset("fast").n_embd == 128
    assert models.get_preset("full").n_embd > models.get_preset("fast").n_embd
    with pytest.raises(ValueError, match="unknown preset"):
        models.get_preset("huge")
    with pytest.raises(ValueError, match="divisible"):
        models.Preset(n_layer=1, n_embd=30, n_head=4)


def test_tokenize_dialogues_masks_prompt_for_sft():
    tok = models.train_tokenizer(world.corpus(300), vocab_size=400)
    d = models.tokenize_dialogues(tok, ["User: hi\nAssistant:"], [" Okay."], 64, loss_on_prompt=False)
    n_prompt = len(tok("User: hi\nAssistant:")["input_ids"])
    assert (d["labels"][0, :n_prompt] == -100).all()
    assert d["labels"][0, -1].item() == tok.eos_token_id
    with pytest.raises(ValueError, match="empty"):
        models.tokenize_dialogues(tok, [], [], 64, True)


@pytest.mark.slow
def test_cached_sft_model_trains_and_reloads(tiny_cache, tiny_sft):
    model, tok = tiny_sft
    path = models.sft_model_path("test", device=CPU, root=tiny_cache)
    losses = models.training_losses(models.base_model_path("test", device=CPU, root=tiny_cache))
    assert losses[-1] < losses[0] - 1.0  # pretraining learned something
    assert models.is_complete(path)
    again = models.sft_model_path("test", device=CPU, root=tiny_cache)  # warm: no rebuild
    assert again == path


def test_cache_rebuilds_corrupt_and_partial_entries(tmp_path):
    calls = []

    def build(folder):
        calls.append(1)
        (folder / "weights.bin").write_bytes(b"x" * 100)

    cfg = {"a": 1}
    p = models.cached("thing", cfg, build, tmp_path, verbose=False)
    assert models.cached("thing", cfg, build, tmp_path, verbose=False) == p and len(calls) == 1
    (p / "weights.bin").write_bytes(b"x" * 50)  # truncated file
    assert not models.is_complete(p)
    models.cached("thing", cfg, build, tmp_path, verbose=False)
    assert len(calls) == 2 and models.is_complete(p)
    (p / "manifest.json").unlink()  # interrupted before the manifest
    models.cached("thing", cfg, build, tmp_path, verbose=False)
    assert len(calls) == 3

    def broken(folder):
        raise RuntimeError("killed mid-build")
    with pytest.raises(RuntimeError):
        models.cached("other", cfg, broken, tmp_path, verbose=False)
    assert not any(x.name.startswith("other") for x in tmp_path.iterdir())  # nothing half-written left


def test_load_local_checkpoint_offline_by_path(tmp_path, monkeypatch):
    """The by-name/path loader works on a checkpoint saved locally, with the hub off."""
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tok = models.train_tokenizer(world.corpus(200), vocab_size=320)
    tok.pad_token = None  # like GPT-2: no pad token; the loader must set one
    tok.save_pretrained(tmp_path)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_layer=1, n_embd=32, n_head=2)).save_pretrained(tmp_path)
    model, tok2 = models.load_causal_lm(str(tmp_path), CPU)
    assert tok2.pad_token is not None and not model.training
    r = sampling.generate(model, tok2, [world.format_prompt("How can I sleep better?")], max_new_tokens=5)
    assert r.response_ids.shape == (1, 5) or r.response_mask.sum() <= 5


def test_mismatched_model_and_tokenizer_is_an_error(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel
    tok = models.train_tokenizer(world.corpus(200), vocab_size=400)
    tok.save_pretrained(tmp_path)
    GPT2LMHeadModel(GPT2Config(vocab_size=100, n_layer=1, n_embd=32, n_head=2)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="do not belong together"):
        models.load_causal_lm(tmp_path, CPU)


@pytest.mark.slow
def test_reward_and_value_heads(tiny_cache, tiny_sft):
    path = models.sft_model_path("test", device=CPU, root=tiny_cache)
    rm, tok = models.reward_model_from(path, CPU)
    batch = sampling.encode(tok, ["User: a\nAssistant:"] * 2, [" Okay.", " Okay. Good luck!"])
    ids = torch.cat([batch.prompt_ids, batch.response_ids], 1)
    mask = torch.cat([batch.prompt_mask, batch.response_mask], 1)
    assert rm(input_ids=ids, attention_mask=mask).logits.shape == (2, 1)
    vm = models.ValueHeadLM(tiny_sft[0])
    logits, values = vm(ids, mask)
    assert values.shape == ids.shape and torch.all(values == 0)
    assert logits.shape[:2] == ids.shape
