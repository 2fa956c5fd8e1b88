"""The LSC transform of Wang et al. 2024: log-sigmoid of centred rewards, and how to add rewards.

Wang, Nagpal, Berant, Eisenstein, D'Amour, Koyejo, Veitch, "Transforming and Combining Rewards
for Aligning Large Language Models", ICML 2024 (arXiv 2402.00742). A Bradley-Terry reward r is
defined only up to a per-prompt constant; reading alignment as conditioning on "the response is
good", with good = "preferred to a reference response y_ref(x)", gives the utility

    u(x, y) = log σ(r(x, y) − r_ref(x))                    (Thm 1 of Wang et al. 2024)

and, for several independently judged attributes, log P(good on all) = Σ_i u_i (Thm 2).

Layers (as lecture 06 derives them and a06 has students build them):

- pure tensor functions: :func:`lsc_transform`, :func:`reference_reward` (per-prompt quantile),
  :func:`gaussian_reference` (the shortcut r_mean + s·r_std), :func:`combine_rewards` (sum of
  transformed rewards), :func:`weighted_sum` (the raw baseline w·r_1 + (1 − w)·r_2),
  :func:`utility` (raw / centred / log-sigmoid / LSC, for ablations);
- selection and evaluation: :func:`best_of_k` (best of the first k samples per prompt),
  :func:`expected_best_of_k` (the exact average over all k-subsets of n samples),
  :func:`best_of_k_kl`, :func:`wins` / :func:`win_rate` ("beats the SFT median on every gold
  attribute");
- the loop's interface: :func:`make_reward_fn` turns reward models and per-prompt references
  into the ``reward_fn(prompts, responses) -> (N,)`` that :func:`rl.reinforce_train` takes.

Taught in lecture 06.
"""
from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F

TRANSFORMS = ("raw", "center", "logsigmoid", "lsc")


# --------------------------------------------------------------------------- the transform
def lsc_transform(rewards: torch.Tensor, ref_rewards: torch.Tensor | float) -> torch.Tensor:
    """u = log σ(r − r_ref): (N,) or (P, k), with r_ref broadcastable (scalar, (N,), (P, 1)) → like r.

    Thm 1 of Wang et al. 2024: log P(y is preferred to y_ref | x) under Bradley-Terry. Computed
    with ``F.logsigmoid``, which stays finite and accurate for any |r − r_ref| (the naive
    ``torch.log(torch.sigmoid(d))`` is −inf at d = −100 and loses all precision near d = 40).
    """
    if not isinstance(rewards, torch.Tensor):
        raise ValueError("rewards must be a torch tensor (e.g. reward-model scores of shape (N,)).")
    ref = torch.as_tensor(ref_rewards, dtype=rewards.dtype, device=rewards.device)
    try:
        diff = rewards - ref
    except RuntimeError:
        raise ValueError(f"ref_rewards of shape {tuple(ref.shape)} do not broadcast against rewards "
                         f"{tuple(rewards.shape)}; give one reference per reward (or per prompt row).") from None
    if diff.shape != rewards.shape:
        raise ValueError(f"ref_rewards of shape {tuple(ref.shape)} would change the rewards' shape "
                         f"{tuple(rewards.shape)} to {tuple(diff.shape)}; give one reference per reward.")
    return F.logsigmoid(diff)


def _check_samples(sample_rewards: torch.Tensor, what: str = "sample_rewards") -> None:
    if not isinstance(sample_rewards, torch.Tensor) or sample_rewards.dim() != 2:
        raise ValueError(f"{what} must be a (num_prompts, k) tensor: k sampled rewards for each prompt.")
    if sample_rewards.numel() == 0:
        raise ValueError(f"{what} is empty: need at least one prompt with at least one sample.")


def reference_reward(sample_rewards: torch.Tensor, quantile: float = 0.85) -> torch.Tensor:
    """Per-prompt reference r_ref(x): the ``quantile`` of each row of k sampled rewards, (P, k) → (P,).

    The rows are rewards of k samples of the base (SFT) policy for one prompt; the quantile
    interpolates linearly between order statistics (``torch.quantile``'s default, = numpy's).
    Wang et al. 2024 take the 85th percentile for one reward and the median of each reward
    when combining several.
    """
    _check_samples(sample_rewards)
    if not 0.0 <= float(quantile) <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {quantile}.")
    return torch.quantile(sample_rewards.float() if not sample_rewards.is_floating_point() else sample_rewards,
                          float(quantile), dim=1)


def gaussian_reference(sample_rewards: torch.Tensor, quantile: float = 0.85) -> torch.Tensor:
    """The Gaussian shortcut r_mean(x) + s·r_std(x) with s = Φ⁻¹(quantile): (P, k) → (P,).

    Equals :func:`reference_reward` when the k rewards of a prompt are normally distributed
    (and k is large); needs only a running mean and standard deviation per prompt.
    """
    _check_samples(sample_rewards)
    if sample_rewards.shape[1] < 2:
        raise ValueError("the Gaussian shortcut needs at least 2 samples per prompt to estimate a std.")
    if not 0.0 < float(quantile) < 1.0:
        raise ValueError(f"quantile must be strictly between 0 and 1 for a Gaussian, got {quantile}.")
    s = torch.special.ndtri(torch.tensor(float(quantile), dtype=torch.float64)).item()
    return sample_rewards.mean(1) + s * sample_rewards.std(1)


# --------------------------------------------------------------------------- combining
def _check_lists(rewards_list: Sequence[torch.Tensor], ref_list: Sequence | None) -> None:
    if not isinstance(rewards_list, (list, tuple)) or len(rewards_list) == 0:
        raise ValueError("rewards_list must be a non-empty list of reward tensors, one per attribute.")
    shape = rewards_list[0].shape
    if any(r.shape != shape for r in rewards_list):
        raise ValueError(f"all rewards must have one shape; got {[tuple(r.shape) for r in rewards_list]}.")
    if ref_list is not None and (not isinstance(ref_list, (list, tuple)) or len(ref_list) != len(rewards_list)):
        raise ValueError(f"give one reference per reward: {len(rewards_list)} rewards but "
                         f"{len(ref_list) if isinstance(ref_list, (list, tuple)) else 'no list of'} references.")


def combine_rewards(rewards_list: Sequence[torch.Tensor], ref_list: Sequence) -> torch.Tensor:
    """Σ_i log σ(r_i − r_ref,i): m tensors of one shape (+ m broadcastable references) → that shape.

    Thm 2 of Wang et al. 2024: with attributes judged independently given (x, y), the sum of
    LSC-transformed rewards is log P(good on every attribute) — summation is a logical AND.
    """
    _check_lists(rewards_list, ref_list)
    return torch.stack([lsc_transform(r, ref) for r, ref in zip(rewards_list, ref_list)]).sum(0)


def weighted_sum(rewards_list: Sequence[torch.Tensor], weights: Sequence[float] | None = None) -> torch.Tensor:
    """The raw baseline Σ_i w_i r_i (plain sum if ``weights`` is None); for two rewards use (w, 1 − w)."""
    _check_lists(rewards_list, None)
    if weights is None:
        weights = [1.0] * len(rewards_list)
    if len(weights) != len(rewards_list):
        raise ValueError(f"{len(weights)} weights for {len(rewards_list)} rewards; give one weight per reward.")
    return sum(w * r for w, r in zip(weights, rewards_list))


def utility(rewards_list: Sequence[torch.Tensor], ref_list: Sequence | None = None, transform: str = "lsc",
            weights: Sequence[float] | None = None) -> torch.Tensor:
    """The combined utility under one of four transforms (lecture 06's ablation), like the rewards.

    - ``'raw'``         Σ_i w_i r_i                    (no reference needed)
    - ``'center'``      Σ_i w_i (r_i − r_ref,i)        (centering alone)
    - ``'logsigmoid'``  Σ_i log σ(r_i)                 (log-sigmoid alone, r_ref = 0)
    - ``'lsc'``         Σ_i log σ(r_i − r_ref,i)       (Thm 2 of Wang et al. 2024)

    ``weights`` apply to 'raw' and 'center' (default: all 1).
    """
    if transform not in TRANSFORMS:
        raise ValueError(f"transform must be one of {TRANSFORMS}, got {transform!r}.")
    if transform in ("center", "lsc") and ref_list is None:
        raise ValueError(f"transform {transform!r} needs ref_list: one reference per reward.")
    _check_lists(rewards_list, ref_list if transform in ("center", "lsc") else None)
    if transform == "raw":
        return weighted_sum(rewards_list, weights)
    if transform == "center":
        return weighted_sum([r - torch.as_tensor(ref, dtype=r.dtype, device=r.device)
                             for r, ref in zip(rewards_list, ref_list)], weights)
    if transform == "logsigmoid":
        return combine_rewards(rewards_list, [0.0] * len(rewards_list))
    return combine_rewards(rewards_list, ref_list)


# --------------------------------------------------------------------------- best-of-k and win rates
def best_of_k(rewards: torch.Tensor, k: int) -> torch.Tensor:
    """Index of the highest reward among the first k samples of each prompt: (P, K) → (P,) long.

    Best-of-k (rejection sampling) with a reward: draw k responses, keep the best. Ties go to
    the earliest sample (``argmax`` returns the first maximum).
    """
    _check_samples(rewards, "rewards")
    if not isinstance(k, int) or not 1 <= k <= rewards.shape[1]:
        raise ValueError(f"k must be an int between 1 and the number of samples {rewards.shape[1]}, got {k!r}.")
    return rewards[:, :k].argmax(dim=1)


def expected_best_of_k(proxy: torch.Tensor, value: torch.Tensor, k: int) -> torch.Tensor:
    """Average of ``value`` at the proxy's best over all k-subsets of the n samples: (P, n), (P, n) → (P,).

    Sorting a row's proxy rewards ascending, the sample of rank j (1-based) is the best of a
    uniformly random k-subset with probability C(j − 1, k − 1) / C(n, k). This is the unbiased,
    low-variance way to estimate best-of-k from n ≥ k samples (it averages :func:`best_of_k`
    over every way of choosing the k). Ties in the proxy are broken by sample order.
    """
    _check_samples(proxy, "proxy")
    if value.shape != proxy.shape:
        raise ValueError(f"value {tuple(value.shape)} must have the proxy's shape {tuple(proxy.shape)}.")
    n = proxy.shape[1]
    if not isinstance(k, int) or not 1 <= k <= n:
        raise ValueError(f"k must be an int between 1 and n = {n}, got {k!r}.")
    order = torch.sort(proxy, dim=1, stable=True).indices                  # ascending proxy
    j = torch.arange(1, n + 1, dtype=torch.float64)
    log_c_nk = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
    log_w = torch.lgamma(j) - math.lgamma(k) - torch.lgamma((j - k + 1).clamp(min=1)) - log_c_nk
    w = torch.where(j >= k, log_w.exp(), torch.zeros_like(j))                 # (n,), sums to 1
    out = (value.double().gather(1, order) * w).sum(1)                         # (P,)
    return out.to(value.dtype) if value.is_floating_point() else out.float()


def best_of_k_kl(k: int) -> float:
    """KL(best-of-k ‖ base) = log k − (k − 1)/k, the usual analytic value (Stiennon et al. 2020)."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}.")
    return math.log(k) - (k - 1) / k


def wins(golds: Sequence[torch.Tensor], thresholds: Sequence[torch.Tensor]) -> torch.Tensor:
    """True where a sample beats the threshold on *every* gold attribute (strictly): like golds[0], bool.

    Lecture 06's "win": above the SFT policy's per-prompt median gold helpfulness AND gold
    harmlessness. ``thresholds`` broadcast against the golds (e.g. (P, 1) against (P, n)).
    """
    if not golds or len(golds) != len(thresholds):
        raise ValueError("give one threshold per gold attribute (two non-empty lists of equal length).")
    out = torch.ones_like(torch.as_tensor(golds[0]), dtype=torch.bool)
    for g, t in zip(golds, thresholds):
        g = torch.as_tensor(g)
        out = out & (g > torch.as_tensor(t, dtype=g.dtype))
    return out


def win_rate(golds: Sequence[torch.Tensor], thresholds: Sequence[torch.Tensor]) -> float:
    """Fraction of samples that :func:`wins` counts as wins."""
    return float(wins(golds, thresholds).double().mean())


# --------------------------------------------------------------------------- reward_fn for RL
def make_reward_fn(judges: Sequence[tuple], references: Sequence[Mapping[str, float]] | None = None,
                   transform: str = "lsc", weights: Sequence[float] | None = None,
                   batch_size: int = 128) -> Callable[[list[str], list[str]], torch.Tensor]:
    """``reward_fn(prompts, responses) -> (N,)`` for :func:`rl.reinforce_train` from reward models.

    ``judges``: [(model, tokenizer), ...], one reward model per attribute (e.g. from
    :func:`rewards.load_reward_model`). ``references``: one ``{prompt: r_ref}`` table per judge
    (needed for 'center' and 'lsc'), keyed by the formatted prompt the RL loop passes. Each call
    scores the responses with every judge and returns :func:`utility` of the scores.
    """
    from . import rewards as _rewards
    if transform not in TRANSFORMS:
        raise ValueError(f"transform must be one of {TRANSFORMS}, got {transform!r}.")
    if not judges:
        raise ValueError("judges is empty: pass at least one (reward_model, tokenizer) pair.")
    needs_ref = transform in ("center", "lsc")
    if needs_ref and (references is None or len(references) != len(judges)):
        raise ValueError(f"transform {transform!r} needs one {{prompt: r_ref}} table per judge.")

    def lookup(table: Mapping[str, float], prompts: list[str]) -> torch.Tensor:
        missing = [p for p in prompts if p not in table]
        if missing:
            raise ValueError(f"no reference reward for prompt {missing[0]!r}; build the tables over every "
                             "prompt the policy is trained on.")
        return torch.tensor([table[p] for p in prompts], dtype=torch.float32)

    def reward_fn(prompts: list[str], responses: list[str]) -> torch.Tensor:
        scores = [_rewards.score(m, t, prompts, responses, batch_size) for m, t in judges]   # m × (N,)
        refs = [lookup(tab, list(prompts)) for tab in references] if needs_ref else None
        return utility(scores, refs, transform, weights)

    return reward_fn
