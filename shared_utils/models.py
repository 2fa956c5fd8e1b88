"""Tiny language models for the toy world: tokenizer, GPT-2 presets, training, cache, loading.

- :func:`train_tokenizer` — byte-level BPE trained with ``tokenizers`` on the world corpus,
  wrapped as ``PreTrainedTokenizerFast`` (pad ``<|pad|>``, bos/eos ``<|endoftext|>``).
- :data:`PRESETS` — GPT-2 sizes (``fast``: 2 layers × 128; ``full``: 4 × 256) with the
  training budget that goes with each.
- :func:`train_lm` — the causal-LM loop behind :func:`pretrain` (whole dialogues) and
  :func:`sft` (loss on response tokens only).
- :func:`base_model` / :func:`sft_model` — cached builders: an artifact is keyed by the
  hash of its config, written to a temp dir and renamed into place, and verified by a
  manifest of file sizes and hashes before it is loaded; a partial or corrupt entry is
  rebuilt, never loaded.
- :func:`load_causal_lm` — any Hugging Face causal LM by name (hub) or path (local), with
  a check that tokenizer and model fit together.
- :func:`reward_model_from` / :class:`ValueHeadLM` — a scalar head on the last token
  (reward model, lecture 02) and a per-token value head (PPO's critic, lecture 03).

Taught in lecture 00.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, asdict
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from . import runtime, world

CACHE_VERSION = 1  # bump when a builder's code changes what it builds
PAD, EOS = "<|pad|>", "<|endoftext|>"


# --------------------------------------------------------------------------- presets
@dataclass(frozen=True)
class Preset:
    """A model size with its training budget.

    Fields:
        n_layer (int): transformer blocks.       n_embd (int): width.
        n_head (int): attention heads.           n_positions (int, 128): context length.
        vocab_size (int, 1024): BPE vocabulary size.
        pretrain_dialogues (int): dialogues in the pretraining corpus.
        pretrain_epochs (float): passes over it.
        sft_examples (int): demonstrations for SFT.   sft_epochs (float): passes over them.
        batch_size (int, 64).  lr (float, 3e-3): peak AdamW learning rate (cosine decay).
    """
    n_layer: int
    n_embd: int
    n_head: int
    n_positions: int = 128
    vocab_size: int = 1024
    pretrain_dialogues: int = 16000
    pretrain_epochs: float = 1.0
    sft_examples: int = 4000
    sft_epochs: float = 1.0
    batch_size: int = 64
    lr: float = 3e-3

    def __post_init__(self):
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} must be divisible by n_head={self.n_head}.")
        if min(self.n_layer, self.n_embd, self.n_head, self.batch_size) < 1:
            raise ValueError("n_layer, n_embd, n_head and batch_size must be positive.")
        if self.vocab_size < 300:
            raise ValueError("vocab_size must be at least 300 (256 bytes + specials + merges).")


PRESETS = {
    "fast": Preset(n_layer=2, n_embd=128, n_head=4, pretrain_dialogues=14000, pretrain_epochs=1.5,
                   sft_examples=4000, sft_epochs=1.0),
    "full": Preset(n_layer=4, n_embd=256, n_head=4, pretrain_dialogues=40000, pretrain_epochs=2.0,
                   sft_examples=10000, sft_epochs=2.0, lr=1e-3),
    # for unit tests only: seconds to build
    "test": Preset(n_layer=1, n_embd=32, n_head=2, n_positions=96, vocab_size=400,
                   pretrain_dialogues=2400, pretrain_epochs=1.0, sft_examples=300, batch_size=32),
}


def get_preset(name: str | Preset | None = None) -> Preset:
    """A preset by name (``'fast'``, ``'full'``, ``'test'``), or the one for the current mode."""
    if isinstance(name, Preset):
        return name
    name = name or runtime.get_mode()
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}.")
    return PRESETS[name]


# --------------------------------------------------------------------------- tokenizer
def train_tokenizer(texts: list[str], vocab_size: int = 1024):
    """Byte-level BPE trained on ``texts``, as a ``PreTrainedTokenizerFast``.

    Pad is ``<|pad|>`` (id 0), bos/eos ``<|endoftext|>`` (id 1); padding side is left, so
    batched generation works, and :mod:`sampling` builds right-padded responses itself.
    """
    from tokenizers import Tokenizer, decoders, models as tmodels, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    if not texts:
        raise ValueError("train_tokenizer needs a non-empty list of texts.")
    tok = Tokenizer(tmodels.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD, EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, eos_token=EOS,
                                   bos_token=EOS, unk_token=None, padding_side="left",
                                   model_max_length=10**6)


# --------------------------------------------------------------------------- model
def new_model(preset: Preset, tokenizer, seed: int = 0):
    """A freshly initialized ``GPT2LMHeadModel`` of ``preset``'s size, dropout off.

    Dropout is off so that log-probs are the same in train and eval mode (a classic source
    of skewed KL estimates in RLHF code).
    """
    from transformers import GPT2Config, GPT2LMHeadModel
    runtime.set_seed(seed)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=preset.n_positions,
                        n_embd=preset.n_embd, n_layer=preset.n_layer, n_head=preset.n_head,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
                        pad_token_id=tokenizer.pad_token_id)
    return GPT2LMHeadModel(config)


def tokenize_dialogues(tokenizer, prompts: list[str], completions: list[str], max_len: int,
                       loss_on_prompt: bool) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` (−100 where no loss).

    Each row is prompt + completion + eos, truncated to ``max_len``.
    """
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions.")
    if not prompts:
        raise ValueError("no examples to tokenize (empty dataset).")
    p_ids = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    c_ids = tokenizer(list(completions), add_special_tokens=False)["input_ids"]
    rows = [(p + c + [tokenizer.eos_token_id])[:max_len] for p, c in zip(p_ids, c_ids)]
    L = max(len(r) for r in rows)
    ids = torch.full((len(rows), L), tokenizer.pad_token_id, dtype=torch.long)
    labels = torch.full((len(rows), L), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), L), dtype=torch.long)
    for i, (r, p) in enumerate(zip(rows, p_ids)):
        ids[i, :len(r)] = torch.tensor(r)
        mask[i, :len(r)] = 1
        start = 0 if loss_on_prompt else min(len(p), len(r))
        labels[i, start:len(r)] = ids[i, start:len(r)]
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def lm_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean next-token cross-entropy over positions whose label is not −100.

    With ``position_ids`` in ``batch`` (packed rows, :func:`constitution.pack_examples`) the
    attention mask is left out: the model then reads positions that restart at 0 as the starts
    of independent examples (a block-diagonal causal mask; needs ``use_cache=False``).
    """
    if "position_ids" in batch:
        logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
    else:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(),
                                       batch["labels"][:, 1:].flatten(), ignore_index=-100)


def train_lm(model, data: dict[str, torch.Tensor], epochs: float, batch_size: int, lr: float,
             device: torch.device | None = None, seed: int = 0, desc: str = "train",
             warmup: int = 20) -> list[float]:
    """AdamW with linear warm-up and cosine decay over ``epochs`` passes; returns the losses.

    ``data`` is the output of :func:`tokenize_dialogues` (any rows count ≥ 1).
    """
    device = device or next(model.parameters()).device
    n = data["input_ids"].shape[0]
    if n == 0:
        raise ValueError("cannot train on an empty dataset.")
    steps = max(1, math.ceil(epochs * n / batch_size))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    g = torch.Generator().manual_seed(seed)
    order = torch.cat([torch.randperm(n, generator=g) for _ in range(math.ceil(steps * batch_size / n) + 1)])
    model.train()
    losses = []
    for step in tqdm(range(steps), desc=desc, leave=False):
        idx = order[step * batch_size:(step + 1) * batch_size]
        batch = {k: v[idx] for k, v in data.items()}
        width = int(batch["attention_mask"].sum(1).max())  # trim shared right padding
        batch = {k: v[:, :width].to(device) for k, v in batch.items()}
        loss = lm_loss(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step(); sched.step()
        losses.append(loss.item())
    model.eval()
    return losses


# --------------------------------------------------------------------------- cache
def config_hash(config: dict) -> str:
    """A short stable hash of a JSON-able config (plus the cache version)."""
    blob = json.dumps({"v": CACHE_VERSION, **config}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


MANIFEST = "manifest.json"


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_manifest(folder: Path, config: dict) -> None:
    files = {str(p.relative_to(folder)): {"size": p.stat().st_size, "sha256": _file_digest(p)}
             for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}
    (folder / MANIFEST).write_text(json.dumps({"config": config, "files": files}, indent=1, default=str))


def is_complete(folder: Path) -> bool:
    """True if ``folder`` has a manifest and every file in it has the recorded size and hash."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        return bool(manifest["files"]) and all(
            (folder / name).stat().st_size == meta["size"] and _file_digest(folder / name) == meta["sha256"]
            for name, meta in manifest["files"].items())
    except (OSError, ValueError, KeyError, TypeError):
        return False


def cached(kind: str, config: dict, build: Callable[[Path], None], root: Path | None = None,
           verbose: bool = True) -> Path:
    """The folder of artifact ``kind`` for ``config``, built by ``build(folder)`` if needed.

    The build writes into a temp folder that is renamed into place only when it finished
    and its manifest is written, so an interrupted build leaves nothing that looks valid;
    an entry whose files do not match its manifest is deleted and rebuilt.
    """
    root = Path(root) if root else runtime.cache_dir()
    folder = root / f"{kind}-{config_hash(config)}"
    if folder.exists():
        if is_complete(folder):
            return folder
        if verbose:
            print(f"[cache] {folder.name} is incomplete or corrupt: rebuilding")
        shutil.rmtree(folder, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{kind}-", dir=root))
    try:
        t0 = time.time()
        build(tmp)
        _write_manifest(tmp, config)
        try:
            os.rename(tmp, folder)
        except OSError:  # another process finished first
            if not is_complete(folder):
                raise
        if verbose:
            print(f"[cache] built {folder.name} in {time.time() - t0:.0f}s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


# --------------------------------------------------------------------------- builders
def _corpus_config(preset: Preset, seed: int) -> dict:
    return {"preset": asdict(preset), "seed": seed}


def tokenizer_for(preset: str | Preset | None = None, seed: int = 0, root: Path | None = None):
    """The world's BPE tokenizer for ``preset`` (cached)."""
    from transformers import PreTrainedTokenizerFast
    p = get_preset(preset)
    cfg = {"vocab_size": p.vocab_size, "seed": seed}

    def build(folder: Path):
        texts = world.corpus(4000, seed=seed + 1, behaviour="pretrain")
        train_tokenizer(texts, p.vocab_size).save_pretrained(folder)

    return PreTrainedTokenizerFast.from_pretrained(cached("tokenizer", cfg, build, root, verbose=False))


def base_model_path(preset: str | Preset | None = None, seed: int = 0, root: Path | None = None,
                    device: torch.device | None = None) -> Path:
    """Folder of the pretrained base LM for ``preset`` (built on first use: ≈ 1 min in fast mode)."""
    p = get_preset(preset)
    device = device or runtime.get_device()

    def build(folder: Path):
        tok = tokenizer_for(p, seed, root)
        model = new_model(p, tok, seed).to(device)
        texts = world.corpus(p.pretrain_dialogues, seed=seed + 2, behaviour="pretrain")
        data = tokenize_dialogues(tok, texts, [""] * len(texts), p.n_positions, loss_on_prompt=True)
        losses = train_lm(model, data, p.pretrain_epochs, p.batch_size, p.lr, device, seed, "pretrain")
        model.save_pretrained(folder); tok.save_pretrained(folder)
        (folder / "losses.json").write_text(json.dumps(losses))

    return cached("base", _corpus_config(p, seed), build, root)


def sft_model_path(preset: str | Preset | None = None, seed: int = 0, root: Path | None = None,
                   device: torch.device | None = None) -> Path:
    """Folder of the SFT ("helpful-only") model: the base LM fine-tuned on demonstrations.

    Loss on response tokens only; demonstrations follow ``world.BEHAVIOURS['sft']`` — eager
    to comply (also with harmful requests), mostly on topic, sometimes rude.
    """
    p = get_preset(preset)
    device = device or runtime.get_device()
    base = base_model_path(p, seed, root, device)

    def build(folder: Path):
        model, tok = load_causal_lm(base, device)
        ds = world.completion_dataset(p.sft_examples, seed=seed + 3, behaviour="sft")
        data = tokenize_dialogues(tok, ds["prompt"], ds["completion"], p.n_positions, loss_on_prompt=False)
        losses = train_lm(model, data, p.sft_epochs, p.batch_size, p.lr / 3, device, seed, "sft")
        model.save_pretrained(folder); tok.save_pretrained(folder)
        (folder / "losses.json").write_text(json.dumps(losses))

    return cached("sft", {**_corpus_config(p, seed), "base": base.name}, build, root)


def base_model(preset=None, seed: int = 0, device=None, root=None):
    """``(model, tokenizer)`` of the cached pretrained base LM, on ``device``, in eval mode."""
    device = device or runtime.get_device()
    return load_causal_lm(base_model_path(preset, seed, root, device), device)


def sft_model(preset=None, seed: int = 0, device=None, root=None):
    """``(model, tokenizer)`` of the cached SFT model, on ``device``, in eval mode."""
    device = device or runtime.get_device()
    return load_causal_lm(sft_model_path(preset, seed, root, device), device)


def training_losses(path: Path) -> list[float]:
    """The loss curve recorded when the artifact at ``path`` was trained."""
    return json.loads((Path(path) / "losses.json").read_text())


# --------------------------------------------------------------------------- loading
def context_length(model) -> int | None:
    """The longest sequence ``model`` can embed (``n_positions`` / ``max_position_embeddings``), or None."""
    config = getattr(model, "config", None)
    return getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)


def check_pair(model, tokenizer) -> None:
    """Raise ValueError if ``tokenizer`` produces ids ``model`` cannot embed, or has no pad."""
    n_emb = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > n_emb:
        raise ValueError(f"tokenizer has {len(tokenizer)} tokens but the model embeds only {n_emb}: "
                         "they do not belong together (load both from the same name or path).")
    if tokenizer.pad_token_id is None:
        raise ValueError("tokenizer has no pad token; set tokenizer.pad_token = tokenizer.eos_token.")


def load_causal_lm(name_or_path: str | Path, device: torch.device | None = None,
                   dtype: torch.dtype | None = None, trainable: bool = True):
    """``(model, tokenizer)`` for any Hugging Face causal LM name (hub) or local path.

    Works for the kit's tiny models and for e.g. ``'gpt2'`` or a small instruct model when a
    hub connection exists (Colab). A missing pad token is set to eos; the padding side is
    left (for generation). The model is in eval mode on ``device``.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer
    device = device or runtime.get_device()
    tok = AutoTokenizer.from_pretrained(name_or_path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=dtype or torch.float32)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tok.pad_token_id
    check_pair(model, tok)
    model.to(device).eval()
    model.requires_grad_(trainable)
    return model, tok


def frozen_copy(model):
    """A deep copy of ``model`` with gradients off, in eval mode (the reference policy π_ref)."""
    import copy
    ref = copy.deepcopy(model).eval()
    ref.requires_grad_(False)
    return ref


def reward_model_from(name_or_path: str | Path, device: torch.device | None = None):
    """``(model, tokenizer)``: a causal LM with a scalar head on its last non-pad token.

    A ``*ForSequenceClassification`` with ``num_labels=1`` — what TRL's RewardTrainer
    expects — whose backbone is initialized from the LM at ``name_or_path`` (lecture 02).
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    device = device or runtime.get_device()
    tok = AutoTokenizer.from_pretrained(name_or_path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(name_or_path, num_labels=1)
    model.config.pad_token_id = tok.pad_token_id
    check_pair(model, tok)
    return model.to(device), tok


class ValueHeadLM(nn.Module):
    """A causal LM plus a linear value head on every position's last hidden state (PPO's critic).

    ``forward(input_ids, attention_mask, position_ids=None)`` returns ``(logits (B,L,V),
    values (B,L))``. The head starts at zero so initial values are 0 (lecture 03).
    """

    def __init__(self, lm):
        super().__init__()
        self.lm = lm
        self.value_head = nn.Linear(lm.config.hidden_size, 1)
        nn.init.zeros_(self.value_head.weight); nn.init.zeros_(self.value_head.bias)
        self.value_head.to(next(lm.parameters()).device)

    def forward(self, input_ids, attention_mask, position_ids=None):
        out = self.lm(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                      output_hidden_states=True)
        values = self.value_head(out.hidden_states[-1].float()).squeeze(-1)  # (B, L)
        return out.logits, values


def main() -> None:
    """``python -m shared_utils.models``: build (or verify) the cached models of this mode."""
    t0 = time.time()
    device = runtime.get_device()
    print(runtime.summary(device))
    for build in (base_model_path, sft_model_path):
        print(f"{build.__name__}: {build(device=device)}")
    print(f"models ready in {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
