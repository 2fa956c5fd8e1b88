"""REINFORCE for language models: the score-function estimator, baselines, and a training loop.

Layers (as students build them in a01):

- :func:`sequence_logprob` — log π(y|x) = Σ_t log π(y_t|x, y_<t) over the response mask.
- :func:`leave_one_out_baseline` — b_i = mean of the *other* samples' rewards (unbiased).
- :func:`reinforce_loss` — the surrogate −mean((R − b) · log π(y|x)) whose gradient is minus the
  REINFORCE estimate (1/m) Σ (R_i − b_i) ∇ log π(y_i|x)  (Williams 1992, Eq. (11)).
- :func:`reinforce_train` — sample → score → step, with a leave-one-out baseline over the
  samples of each prompt and an optional KL penalty to a frozen reference (lecture 03).

Taught in lecture 01; the training loop is reused by lectures 03 and 06.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from . import sampling


def sequence_logprob(token_logps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Σ_t log π(y_t | x, y_<t) over response tokens: (B, T), (B, T) → (B,)."""
    if token_logps.shape != mask.shape:
        raise ValueError(f"token_logps {tuple(token_logps.shape)} and mask {tuple(mask.shape)} must have the same (B, T) shape")
    return (token_logps * mask).sum(-1)


def leave_one_out_baseline(rewards: torch.Tensor) -> torch.Tensor:
    """b_i = (Σ_j R_j − R_i) / (m − 1) over the last dim: (..., m) → (..., m); m ≥ 2.

    Excluding R_i keeps b_i independent of sample i, so the baselined estimator stays unbiased.
    """
    m = rewards.shape[-1] if rewards.dim() else 0
    if m < 2:
        raise ValueError(f"a leave-one-out baseline needs at least 2 samples, got {m}")
    return (rewards.sum(-1, keepdim=True) - rewards) / (m - 1)


def reinforce_loss(seq_logps: torch.Tensor, rewards: torch.Tensor,
                   baseline: torch.Tensor | float | None = None) -> torch.Tensor:
    """Surrogate loss −(1/B) Σ_i (R_i − b_i) log π(y_i|x): (B,), (B,), float | (B,) | None → scalar.

    Rewards and baseline are constants (detached): only log π carries the gradient, so
    ∇loss = −(1/B) Σ_i (R_i − b_i) ∇ log π(y_i|x), minus the REINFORCE estimate.
    """
    if seq_logps.shape != rewards.shape or seq_logps.dim() != 1:
        raise ValueError(f"seq_logps {tuple(seq_logps.shape)} and rewards {tuple(rewards.shape)} must both be (B,)")
    advantages = rewards.detach()
    if baseline is not None:
        b = torch.as_tensor(baseline, dtype=rewards.dtype, device=rewards.device).detach()
        if b.dim() and b.shape != rewards.shape:
            raise ValueError(f"baseline must be a float or shaped like rewards {tuple(rewards.shape)}, got {tuple(b.shape)}")
        advantages = advantages - b
    return -(advantages * seq_logps).mean()


@dataclass
class ReinforceConfig:
    """Settings of :func:`reinforce_train`.

    Fields:
        iterations (int): policy updates.             prompts_per_iter (int): prompts sampled per update.
        samples_per_prompt (int, ≥ 2): responses per prompt (the leave-one-out group).
        lr (float): Adam learning rate.               max_new_tokens (int): response length cap.
        temperature (float): sampling temperature.    beta (float, ≥ 0): KL penalty weight; the
            reward becomes R − β·(log π − log π_ref) summed over the response (lecture 03).
        baseline (str): 'loo' (leave-one-out per prompt), 'mean' (batch mean) or 'none'.
        seed (int): seeds sampling and prompt order.
    """
    iterations: int = 40
    prompts_per_iter: int = 16
    samples_per_prompt: int = 4
    lr: float = 1e-4
    max_new_tokens: int = 64
    temperature: float = 1.0
    beta: float = 0.0
    baseline: str = "loo"
    seed: int = 0

    def __post_init__(self):
        if self.samples_per_prompt < 2 and self.baseline == "loo":
            raise ValueError("samples_per_prompt must be >= 2 for a leave-one-out baseline")
        if self.baseline not in ("loo", "mean", "none"):
            raise ValueError(f"baseline must be 'loo', 'mean' or 'none', got {self.baseline!r}")
        if self.beta < 0 or self.lr <= 0 or self.iterations < 1 or self.prompts_per_iter < 1:
            raise ValueError("need beta >= 0, lr > 0, iterations >= 1, prompts_per_iter >= 1")


REINFORCE_PRESETS = {
    "fast": ReinforceConfig(iterations=40, prompts_per_iter=16, samples_per_prompt=4),
    "full": ReinforceConfig(iterations=150, prompts_per_iter=32, samples_per_prompt=8, lr=5e-5),
}


def _baseline(rewards: torch.Tensor, kind: str, k: int) -> torch.Tensor | None:
    if kind == "loo":
        return leave_one_out_baseline(rewards.view(-1, k)).view(-1)
    if kind == "mean":
        return rewards.mean()
    return None


def reinforce_train(policy, tokenizer, reward_fn: Callable[[list[str], list[str]], torch.Tensor],
                    prompts: list[str], config: ReinforceConfig, ref=None,
                    eval_fn: Callable[[list[str], list[str]], dict] | None = None,
                    desc: str = "REINFORCE") -> dict[str, list]:
    """Optimize ``policy`` in place with REINFORCE on ``reward_fn(prompts, responses) -> (N,)``.

    Each iteration samples ``samples_per_prompt`` responses for ``prompts_per_iter`` prompts drawn
    from ``prompts``, scores them, subtracts the baseline and takes one Adam step on
    :func:`reinforce_loss`. ``ref`` (a frozen model, e.g. :func:`models.frozen_copy` of the start)
    is used to report KL(π ‖ π_ref) per sequence and, if ``config.beta > 0``, to penalize it.
    ``eval_fn(prompts, responses) -> {name: float}`` is logged each iteration (e.g. gold scores:
    evaluation only). Returns a history of lists: reward, kl, loss, plus eval_fn's keys and
    ``samples`` (the first few responses of each iteration).
    """
    if not prompts:
        raise ValueError("no prompts to train on")
    device = next(policy.parameters()).device
    opt = torch.optim.Adam(policy.parameters(), lr=config.lr)
    rng = np.random.default_rng(config.seed)
    gen = torch.Generator(device=device).manual_seed(config.seed)
    k = config.samples_per_prompt
    hist: dict[str, list] = {"reward": [], "kl": [], "loss": [], "samples": []}
    for _ in tqdm(range(config.iterations), desc=desc, leave=False):
        batch = [prompts[i] for i in rng.integers(len(prompts), size=config.prompts_per_iter)]
        batch = [p for p in batch for _ in range(k)]  # k consecutive samples per prompt
        policy.eval()
        roll = sampling.generate(policy, tokenizer, batch, config.max_new_tokens, config.temperature, generator=gen)
        rewards = torch.as_tensor(reward_fn(roll.prompts, roll.responses), dtype=torch.float32, device=device)
        policy.train()
        token_lp = sampling.token_logps(policy, roll)                   # (B, T)
        seq_lp = sequence_logprob(token_lp, roll.response_mask)          # (B,)
        kl = torch.zeros_like(rewards)
        if ref is not None:
            with torch.no_grad():
                ref_lp = sampling.token_logps(ref, roll)
            kl = ((token_lp.detach() - ref_lp) * roll.response_mask).sum(-1)  # k1 estimate per sequence
        shaped = rewards - config.beta * kl
        loss = reinforce_loss(seq_lp, shaped, _baseline(shaped, config.baseline, k))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
        hist["reward"].append(rewards.mean().item())
        hist["kl"].append(kl.mean().item())
        hist["loss"].append(loss.item())
        hist["samples"].append(roll.responses[:: k][:4])
        if eval_fn is not None:
            for name, value in eval_fn(roll.prompts, roll.responses).items():
                hist.setdefault(name, []).append(float(value))
    policy.eval()
    return hist

