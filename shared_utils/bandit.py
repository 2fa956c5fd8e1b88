"""A categorical "bandit": a policy over a handful of whole responses, where everything is exact.

With K possible responses y_1..y_K to one prompt, a policy is a probability vector and every
expectation, gradient and KL can be computed exactly, so each derivation in the course can be
checked against the truth before it is trusted on a language model.

- :func:`exact_kl` — KL(p ‖ q) for probability vectors.
- :func:`kl_optimum` — the closed-form optimum of the KL-regularized objective,
  π*(y) = π_ref(y) exp(r(y)/β) / Z  (lecture 03; Eq. (4) of Rafailov et al. 2023).
- :func:`kl_objective` — E_π[r] − β KL(π ‖ π_ref), differentiable in π's logits.
- :func:`expected_reward_grad` — the exact gradient of E_π[r] w.r.t. softmax logits (lecture 01).
- :func:`implicit_reward`, :func:`bradley_terry_probs`, :func:`exact_dpo_loss` — DPO on the bandit,
  exactly (lecture 04).

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


def implicit_reward(pi: torch.Tensor, pi_ref: torch.Tensor, beta: float) -> torch.Tensor:
    """r̂(y) = β log(π(y)/π_ref(y)), (...,K): the reward under which π is the KL optimum, up to β log Z (lecture 04)."""
    _check(pi, "pi"); _check(pi_ref, "pi_ref")
    if beta <= 0:
        raise ValueError(f"beta must be positive, got {beta}")
    return beta * (pi.log() - pi_ref.log())


def bradley_terry_probs(rewards: torch.Tensor) -> torch.Tensor:
    """P[i, j] = P(y_i ≻ y_j) = σ(r(y_i) − r(y_j)) for all pairs: (K,) → (K, K) (Bradley & Terry 1952)."""
    _check(rewards, "rewards")
    return torch.sigmoid(rewards[..., :, None] - rewards[..., None, :])


def exact_dpo_loss(logits: torch.Tensor, pi_ref: torch.Tensor, prefs: torch.Tensor, beta: float,
                   pair_weights: torch.Tensor | None = None) -> torch.Tensor:
    """The DPO loss in expectation over pairs and labels, exactly: (K,), (K,), (K, K) → scalar.

    L(θ) = −Σ_{i≠j} μ(i, j) P[i, j] log σ(β [log π_θ(y_i)/π_ref(y_i) − log π_θ(y_j)/π_ref(y_j)])
    with π_θ = softmax(logits), P[i, j] = P(y_i ≻ y_j) (e.g. :func:`bradley_terry_probs`) and
    μ the probability of showing the pair (i, j) (default: uniform over the K(K−1) ordered pairs).
    Eq. (7) of Rafailov et al. 2023, with the data distribution written out (lecture 04).
    """
    _check(logits, "logits")
    K = logits.shape[-1]
    if prefs.shape != (K, K):
        raise ValueError(f"prefs must be a ({K}, {K}) matrix of P(y_i ≻ y_j), got {tuple(prefs.shape)}")
    off_diag = 1.0 - torch.eye(K, dtype=logits.dtype, device=logits.device)
    mu = off_diag / off_diag.sum() if pair_weights is None else pair_weights * off_diag
    h = torch.log_softmax(logits, -1) - pi_ref.log()                         # log π_θ/π_ref, (K,)
    return -(mu * prefs * torch.nn.functional.logsigmoid(beta * (h[:, None] - h[None, :]))).sum()
