"""Reward models learned from pairwise preferences: the Bradley-Terry loss, training, scoring, cache.

Layers (as lecture 02 derives them and a02 has students build them):

- :func:`bradley_terry_loss` — the pure tensor loss −mean log σ(r_w − r_l − m) on reward
  tensors (Bradley & Terry 1952; Eq. (1) of Ouyang et al. 2022; margin: Eq. (2) of Touvron
  et al. 2023, Llama 2). :func:`preference_accuracy` and :func:`ranking_to_pairs` go with it.
- :func:`encode_texts` / :func:`rewards_of` — tokenize ``prompt + response + eos`` exactly as
  TRL's ``RewardTrainer`` does (one string, right-padded) and read the scalar head on the
  last non-pad token of a ``*ForSequenceClassification`` (num_labels = 1).
- :func:`pair_loss` — the batch wrapper: chosen and rejected in one forward pass, then a loss.
- :func:`train_reward_model` — the loop over a preference ``Dataset`` (prompt/chosen/rejected,
  optional margin); the loss is a parameter, so a02 plugs the student's loss in.
- :func:`evaluate_reward_model` — accuracy against the annotators' labels and against gold.
- :func:`score` — rewards of (prompt, response) texts without gradients, for RL (lecture 03),
  best-of-n and LSC (lecture 06).
- :func:`reward_model_path` / :func:`load_reward_model` — cached reward models for the
  world's ``'helpful'`` and ``'harmless'`` annotators, built from the SFT model on first use.

Taught in lecture 02.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, asdict
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import models, runtime, world


# --------------------------------------------------------------------------- the loss
def _check_pair_tensors(chosen_rewards, rejected_rewards, what: str = "chosen_rewards and rejected_rewards"):
    if not isinstance(chosen_rewards, torch.Tensor) or not isinstance(rejected_rewards, torch.Tensor):
        raise ValueError(f"{what} must be torch tensors of shape (B,).")
    if chosen_rewards.shape != rejected_rewards.shape or chosen_rewards.dim() != 1:
        raise ValueError(f"{what} must both have shape (B,), got {tuple(chosen_rewards.shape)} "
                         f"and {tuple(rejected_rewards.shape)}.")
    if chosen_rewards.numel() == 0:
        raise ValueError(f"{what} are empty: need at least one pair.")


def bradley_terry_loss(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor,
                       margin: torch.Tensor | float | None = None) -> torch.Tensor:
    """−(1/B) Σ_i log σ(r_w,i − r_l,i − m_i): (B,), (B,), None | float | (B,) → scalar.

    The negative log-likelihood of the annotators' choices under the Bradley-Terry model
    P(y_w ≻ y_l | x) = σ(r(x, y_w) − r(x, y_l))  (Eq. (1) of Ouyang et al. 2022). With a
    margin m ≥ 0 the chosen reward must beat the rejected one by at least about m before the
    loss flattens (Eq. (2) of Touvron et al. 2023). Computed with ``logsigmoid`` so it stays
    finite for any |r_w − r_l| (log(sigmoid(x)) underflows to −inf near x = −100).
    """
    _check_pair_tensors(chosen_rewards, rejected_rewards)
    diff = chosen_rewards - rejected_rewards  # (B,)
    if margin is not None:
        m = torch.as_tensor(margin, dtype=diff.dtype, device=diff.device)
        if m.dim() and m.shape != diff.shape:
            raise ValueError(f"margin must be a float or shaped like the rewards {tuple(diff.shape)}, "
                             f"got {tuple(m.shape)}.")
        diff = diff - m
    return -F.logsigmoid(diff).mean()


def preference_accuracy(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> float:
    """Fraction of pairs with r_w > r_l, ties counting one half: (B,), (B,) → float in [0, 1]."""
    _check_pair_tensors(chosen_rewards, rejected_rewards)
    diff = (chosen_rewards - rejected_rewards).detach()
    return float(((diff > 0).double() + 0.5 * (diff == 0).double()).mean())


def ranking_to_pairs(ranked: Sequence) -> list[tuple]:
    """Every (better, worse) pair of a best-to-worst ranking: K·(K−1)/2 pairs (InstructGPT).

    Order: by the better item's rank, then the worse item's rank — for [a, b, c] that is
    [(a, b), (a, c), (b, c)]. Duplicates (an item listed twice, a tie with itself) carry no
    preference: an item keeps its first (best) position and later copies are dropped, so a
    ranking with d distinct items gives d·(d−1)/2 pairs. Fewer than 2 distinct items give [].
    """
    items = []
    for x in ranked:
        if x not in items:
            items.append(x)
    return [(items[i], items[j]) for i in range(len(items)) for j in range(i + 1, len(items))]


# --------------------------------------------------------------------------- tokens → rewards
def encode_texts(tokenizer, prompts: Sequence[str], responses: Sequence[str], max_len: int | None = None,
                 device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``input_ids`` and ``attention_mask`` (N, L) of ``prompt + response + eos``.

    The string is tokenized as one piece, as TRL's RewardTrainer does, and padded with the
    pad token (≠ eos), so the model's head reads the eos position. Rows longer than
    ``max_len`` keep their last ``max_len`` tokens (the eos the head reads stays).
    """
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses; pass one prompt per response.")
    if not prompts:
        raise ValueError("no (prompt, response) pairs given (empty list).")
    if tokenizer.pad_token_id is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        raise ValueError("the reward model's tokenizer needs a pad token different from eos, "
                         "or the head cannot find the last real token.")
    texts = [p + r + tokenizer.eos_token for p, r in zip(prompts, responses)]
    rows = tokenizer(texts, add_special_tokens=False)["input_ids"]
    if max_len is not None:
        rows = [r[-max_len:] for r in rows]
    L = max(len(r) for r in rows)
    ids = torch.full((len(rows), L), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), L), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, :len(r)] = 1
    return ids.to(device), mask.to(device)


def rewards_of(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """r(x, y) for each row: the scalar head on its last non-pad token, (N, L) → (N,)."""
    return model(input_ids=input_ids, attention_mask=attention_mask).logits.squeeze(-1).float()


LossFn = Callable[..., torch.Tensor]


def pair_loss(model, batch: dict[str, torch.Tensor], loss_fn: LossFn = bradley_terry_loss
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(loss, chosen_rewards (B,), rejected_rewards (B,))`` of one batch of pairs.

    ``batch`` holds ``chosen_ids``/``chosen_mask`` and ``rejected_ids``/``rejected_mask``
    (B, L) right-padded to one width, and optionally ``margin`` (B,). Chosen and rejected go
    through the model in one forward pass (as in TRL); ``loss_fn(chosen, rejected[, margin])``.
    """
    ids = torch.cat([batch["chosen_ids"], batch["rejected_ids"]])      # (2B, L)
    mask = torch.cat([batch["chosen_mask"], batch["rejected_mask"]])
    chosen, rejected = rewards_of(model, ids, mask).chunk(2)           # (B,), (B,)
    loss = loss_fn(chosen, rejected, batch["margin"]) if "margin" in batch else loss_fn(chosen, rejected)
    return loss, chosen, rejected


def encode_pairs(tokenizer, dataset, max_len: int | None = None) -> dict[str, torch.Tensor]:
    """Chosen and rejected rows of a preference dataset, each (N, L), padded to one width L.

    Carries ``margin`` (N,) along if the dataset has a ``margin`` column.
    """
    world.check_preference_dataset(dataset)
    c_ids, c_mask = encode_texts(tokenizer, dataset["prompt"], dataset["chosen"], max_len)
    r_ids, r_mask = encode_texts(tokenizer, dataset["prompt"], dataset["rejected"], max_len)
    L = max(c_ids.shape[1], r_ids.shape[1])
    pad = tokenizer.pad_token_id
    out = {"chosen_ids": F.pad(c_ids, (0, L - c_ids.shape[1]), value=pad),
           "chosen_mask": F.pad(c_mask, (0, L - c_mask.shape[1])),
           "rejected_ids": F.pad(r_ids, (0, L - r_ids.shape[1]), value=pad),
           "rejected_mask": F.pad(r_mask, (0, L - r_mask.shape[1]))}
    if "margin" in dataset.column_names:
        out["margin"] = torch.tensor(dataset["margin"], dtype=torch.float32)
    return out


def _batch(data: dict[str, torch.Tensor], idx: torch.Tensor, device) -> dict[str, torch.Tensor]:
    batch = {k: v[idx] for k, v in data.items()}
    width = int(torch.maximum(batch["chosen_mask"].sum(1), batch["rejected_mask"].sum(1)).max())
    return {k: (v[:, :width] if v.dim() == 2 else v).to(device) for k, v in batch.items()}


# --------------------------------------------------------------------------- the loop
def train_reward_model(model, tokenizer, dataset, epochs: float = 2.0, lr: float = 3e-4,
                       batch_size: int = 32, device=None, loss_fn: LossFn = bradley_terry_loss,
                       max_steps: int | None = None, eval_dataset=None, max_len: int | None = None,
                       seed: int = 0, warmup: int = 10, desc: str = "reward model",
                       progress: bool = True) -> dict[str, list]:
    """Fit ``model`` (a ``*ForSequenceClassification``, num_labels = 1) to preference pairs, in place.

    AdamW with linear warm-up and cosine decay over ``epochs`` passes (or ``max_steps`` steps,
    whichever is fewer), gradient clipping at 1. Each step takes a batch of pairs and one
    optimizer step on ``loss_fn(chosen_rewards, rejected_rewards[, margin])`` — e.g.
    :func:`bradley_terry_loss` or a student's version of it. With ``eval_dataset`` the model is
    evaluated (:func:`evaluate_reward_model`) after training. ``progress=False`` hides the
    progress bar (nbgrader gives no credit to a test cell that writes to stderr).

    Returns a history: ``loss`` and ``accuracy`` (of each training batch, against the
    annotators' labels), ``step``; and ``eval`` (a dict) if ``eval_dataset`` was given.
    The model is left in eval mode.
    """
    if epochs <= 0 or lr <= 0 or batch_size < 1 or (max_steps is not None and max_steps < 1):
        raise ValueError("need epochs > 0, lr > 0, batch_size >= 1 and max_steps >= 1 (or None).")
    device = device or next(model.parameters()).device
    data = encode_pairs(tokenizer, dataset, max_len or models.context_length(model))
    n = data["chosen_ids"].shape[0]
    steps = max(1, math.ceil(epochs * n / batch_size))
    if max_steps is not None:
        steps = min(steps, max_steps)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters (did you load it frozen?).")
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    g = torch.Generator().manual_seed(seed)
    order = torch.cat([torch.randperm(n, generator=g) for _ in range(math.ceil(steps * batch_size / n) + 1)])
    hist: dict[str, list] = {"step": [], "loss": [], "accuracy": []}
    model.train()
    for step in tqdm(range(steps), desc=desc, leave=False, disable=not progress):
        batch = _batch(data, order[step * batch_size:(step + 1) * batch_size], device)
        loss, chosen, rejected = pair_loss(model, batch, loss_fn)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step(); sched.step()
        hist["step"].append(step)
        hist["loss"].append(loss.item())
        hist["accuracy"].append(preference_accuracy(chosen, rejected))
    model.eval()
    if eval_dataset is not None:
        hist["eval"] = {k: v for k, v in evaluate_reward_model(model, tokenizer, eval_dataset).items()
                        if not isinstance(v, torch.Tensor)}
    return hist


# --------------------------------------------------------------------------- scoring
@torch.no_grad()
def score(model, tokenizer, prompts: Sequence[str], responses: Sequence[str], batch_size: int = 128,
          max_len: int | None = None) -> torch.Tensor:
    """Rewards r(x, y) of (prompt, response) texts, without gradients: N, N → (N,) float32 on CPU.

    Responses are the texts after ``'Assistant:'`` (as :func:`sampling.generate` returns them
    or with the dataset's leading space; both score alike up to tokenization). The model is
    put in eval mode for scoring and restored afterwards.
    """
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses; pass one prompt per response.")
    if len(prompts) == 0:
        raise ValueError("nothing to score (empty list of prompts).")
    device = next(model.parameters()).device
    max_len = max_len or models.context_length(model)
    was_training = model.training
    model.eval()
    out = []
    for i in range(0, len(prompts), batch_size):
        ids, mask = encode_texts(tokenizer, prompts[i:i + batch_size], responses[i:i + batch_size], max_len, device)
        out.append(rewards_of(model, ids, mask).cpu())
    model.train(was_training)
    return torch.cat(out)


def evaluate_reward_model(model, tokenizer, dataset, batch_size: int = 128) -> dict:
    """How well the model's rewards order a preference dataset's pairs.

    Returns ``accuracy`` (r_w > r_l, against the annotators' labels), ``gold_accuracy`` (reward
    order = gold order, over pairs whose gold scores differ; needs ``gold_chosen``/
    ``gold_rejected``), ``loss`` (Bradley-Terry), ``n_pairs``, and the tensors
    ``chosen_rewards``/``rejected_rewards`` (N,).
    """
    world.check_preference_dataset(dataset)
    prompts = list(dataset["prompt"])
    chosen = score(model, tokenizer, prompts, list(dataset["chosen"]), batch_size)
    rejected = score(model, tokenizer, prompts, list(dataset["rejected"]), batch_size)
    out = {"accuracy": preference_accuracy(chosen, rejected),
           "loss": bradley_terry_loss(chosen, rejected).item(), "n_pairs": len(prompts),
           "chosen_rewards": chosen, "rejected_rewards": rejected}
    if "gold_chosen" in dataset.column_names:
        out["gold_accuracy"] = gold_accuracy(chosen, rejected, torch.tensor(dataset["gold_chosen"]),
                                             torch.tensor(dataset["gold_rejected"]))
    return out


def gold_accuracy(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor,
                  gold_chosen: torch.Tensor, gold_rejected: torch.Tensor, tol: float = 1e-9) -> float:
    """Fraction of pairs the rewards order as gold does, over pairs whose gold differs: 4 × (N,) → float."""
    _check_pair_tensors(chosen_rewards, rejected_rewards)
    _check_pair_tensors(gold_chosen, gold_rejected, "gold_chosen and gold_rejected")
    gd = (gold_chosen - gold_rejected).double()
    decided = gd.abs() > tol
    if not decided.any():
        raise ValueError("gold does not prefer either response in any pair; gold accuracy is undefined.")
    rd = (chosen_rewards - rejected_rewards).detach().double().cpu()[decided.cpu()]
    sign = gd[decided].sign().cpu()
    return float(((rd * sign > 0).double() + 0.5 * (rd == 0).double()).mean())


# --------------------------------------------------------------------------- cached reward models
@dataclass(frozen=True)
class RewardModelPreset:
    """How a cached reward model is trained.

    Fields:
        n_pairs (int): annotated training pairs from ``world.preference_dataset``.
        n_eval_pairs (int): held-out pairs for the recorded metrics.
        epochs (float, 2): passes over the pairs.   lr (float, 3e-4): peak AdamW learning rate.
        batch_size (int, 32): pairs per step.
    """
    n_pairs: int = 3400
    n_eval_pairs: int = 1000
    epochs: float = 2.0
    lr: float = 3e-4
    batch_size: int = 32

    def __post_init__(self):
        if self.n_pairs < 1 or self.n_eval_pairs < 1 or self.batch_size < 1:
            raise ValueError("n_pairs, n_eval_pairs and batch_size must be at least 1.")
        if self.epochs <= 0 or self.lr <= 0:
            raise ValueError("epochs and lr must be positive.")


RM_PRESETS = {
    "fast": RewardModelPreset(n_pairs=3400, epochs=2.0),
    "full": RewardModelPreset(n_pairs=10000, n_eval_pairs=2000, epochs=2.0, lr=1e-4),
    "test": RewardModelPreset(n_pairs=256, n_eval_pairs=128, epochs=1.0, lr=1e-3),
}
ATTRIBUTES = ("helpful", "harmless")
# dataset seeds, offset from the model seed so that no other builder draws the same pairs
TRAIN_SEED, EVAL_SEED = 1000, 2000


def _rm_preset(preset) -> tuple[str, RewardModelPreset]:
    name = preset if isinstance(preset, str) else runtime.get_mode() if preset is None else None
    if name is None:
        raise ValueError("preset must be a preset name ('fast', 'full', 'test') or None for the current mode.")
    if name not in RM_PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(RM_PRESETS)}.")
    return name, RM_PRESETS[name]


def _check_attribute(attribute: str) -> None:
    if attribute not in ATTRIBUTES:
        raise ValueError(f"attribute must be one of {ATTRIBUTES}, got {attribute!r}.")


def preference_splits(attribute: str = "helpful", preset=None, seed: int = 0):
    """``(train, held_out)`` preference datasets of the cached reward model for ``attribute``."""
    _check_attribute(attribute)
    _, p = _rm_preset(preset)
    return (world.preference_dataset(p.n_pairs, attribute, seed=seed + TRAIN_SEED),
            world.preference_dataset(p.n_eval_pairs, attribute, seed=seed + EVAL_SEED))


def reward_model_path(attribute: str = "helpful", preset=None, seed: int = 0, root: Path | None = None,
                      device=None) -> Path:
    """Folder of the reward model for the world's ``attribute`` annotators (built on first use).

    Built from the SFT model (:func:`models.sft_model_path`) with a fresh scalar head, trained
    by :func:`train_reward_model` on :func:`preference_splits`' training pairs (≈ 40 s in fast
    mode on 2 CPU cores). The folder also holds ``metrics.json``: training losses and held-out
    accuracy against the annotators and against gold.
    """
    _check_attribute(attribute)
    name, p = _rm_preset(preset)
    device = device or runtime.get_device()
    sft = models.sft_model_path(name, seed, root, device)

    def build(folder: Path):
        runtime.set_seed(seed)
        model, tok = models.reward_model_from(sft, device)
        train, held_out = preference_splits(attribute, name, seed)
        hist = train_reward_model(model, tok, train, p.epochs, p.lr, p.batch_size, device,
                                  eval_dataset=held_out, seed=seed, desc=f"{attribute} RM")
        model.save_pretrained(folder); tok.save_pretrained(folder)
        (folder / "metrics.json").write_text(json.dumps(hist))

    config = {"attribute": attribute, "preset": asdict(p), "sft": sft.name, "seed": seed,
              "data_seeds": [TRAIN_SEED, EVAL_SEED]}
    return models.cached(f"rm_{attribute}", config, build, root)


def reward_model_metrics(path: Path) -> dict:
    """The history recorded when the reward model at ``path`` was trained (see :func:`train_reward_model`)."""
    return json.loads((Path(path) / "metrics.json").read_text())


def load_reward_model(attribute: str = "helpful", preset=None, seed: int = 0, device=None,
                      root: Path | None = None, trainable: bool = False):
    """``(model, tokenizer)`` of the cached reward model for ``attribute``, in eval mode.

    Parameters are frozen unless ``trainable`` (a reward model is a fixed judge in RL).
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    device = device or runtime.get_device()
    path = reward_model_path(attribute, preset, seed, root, device)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
    model.config.pad_token_id = tok.pad_token_id
    models.check_pair(model, tok)
    model.to(device).eval()
    model.requires_grad_(trainable)
    return model, tok
