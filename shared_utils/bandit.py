"""A categorical "bandit": a policy over a handful of whole responses, where everything is exact.

With K possible responses y_1..y_K to one prompt, a policy is a probability vector and every
expectation, gradient and KL can be computed exactly, so each derivation in the course can be
checked against the truth before it is trusted on a language model.

- :func:`exact_kl` — KL(p ‖ q) for probability vectors.
- :func:`kl_optimum` — the closed-form optimum of the KL-regularized objective,
  π*(y) = π_ref(y) exp(r(y)/β) / Z  (lecture 03; Eq. (4) of Rafailov et al. 2023).
- :func:`kl_objective` — E_π[r] − β KL(π ‖ π_ref), differentiable in π's logits.
- :func:`expected_reward_grad` — the exact gradient of E_π[r] w.r.t. softmax logits (lecture 01).

Taught in lectures 01, 03 and 04.
"""
from __future__ import annotations

import torch


def _check(p: torch.Tensor, name: str):
    if p.dim() < 1 or p.shape[-1] < 2:
        raise ValueError(f"{name} must have a last dimension of at least 2 outcomes, got shape {tuple(p.shape)}")


def exact_kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(p ‖ q) = Σ_y p(y) log(p(y)/q(y)) over the last dim; 0·log 0 counts as 0. (...,K) → (...)."""
    _check(p, "p"); _check(q, "q")
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same shape, got {tuple(p.shape)} and {tuple(q.shape)}")
    terms = torch.where(p > 0, p * (p.clamp_min(1e-300).log() - q.clamp_min(1e-300).log()), torch.zeros_like(p))
    return terms.sum(-1)


def kl_optimum(pi_ref: torch.Tensor, rewards: torch.Tensor, beta: float) -> torch.Tensor:
    """π*(y) ∝ π_ref(y) exp(r(y)/β), (...,K); β → ∞ gives π_ref, β → 0 gives argmax r."""
    _check(pi_ref, "pi_ref")
    if beta <= 0:
        raise ValueError(f"beta must be positive, got {beta}")
    return torch.softmax(pi_ref.log() + rewards / beta, dim=-1)


def kl_objective(logits: torch.Tensor, pi_ref: torch.Tensor, rewards: torch.Tensor, beta: float) -> torch.Tensor:
    """E_{y∼π}[r(y)] − β KL(π ‖ π_ref) with π = softmax(logits): the RLHF objective, exactly."""
    pi = torch.softmax(logits, dim=-1)
    return (pi * rewards).sum(-1) - beta * exact_kl(pi, pi_ref)


def expected_reward_grad(logits: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
    """∇_logits E_{y∼softmax(logits)}[r(y)] = π ⊙ (r − E_π[r]), exactly. (K,) → (K,)."""
    pi = torch.softmax(logits, dim=-1)
    return pi * (rewards - (pi * rewards).sum(-1, keepdim=True))
