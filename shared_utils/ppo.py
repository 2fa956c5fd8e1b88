"""PPO for language models against a reward, with a KL penalty to a frozen reference (RLHF).

The recipe of Ziegler et al. 2019 and Ouyang et al. 2022, written out because TRL 1.16 no
longer ships a PPOTrainer. It maximizes the KL-regularized objective

    E_x E_{y∼π(·|x)}[ r(x, y) ] − β KL(π(·|x) ‖ π_ref(·|x))

with the reward r given as any function ``reward_fn(prompts, responses) -> (N,)`` (a learned
reward model, a gold judge, a transformed reward as in lecture 06).

Layers, from pure tensor functions (what a03 has students write) to the loop:

- :func:`kl_estimates` — per-token k1, k2, k3 estimators of KL(π ‖ π_ref) (Schulman 2020).
- :func:`kl_penalized_rewards` — per-token rewards −β(log π − log π_ref), plus the sequence
  reward at each sequence's last response token.
- :func:`gae_advantages` — generalized advantage estimation over right-padded responses
  (Schulman et al. 2016), and :func:`whiten`.
- :func:`ppo_clip_loss` — the clipped surrogate (Schulman et al. 2017);
  :func:`value_loss` — the (clipped) squared error of the value head.
- :class:`PPOConfig` and :data:`PPO_PRESETS` (fast/full).
- :func:`collect` (sample → score → log-probs, values → rewards, advantages),
  :func:`update` (several epochs of minibatch steps on one batch), :func:`train` (the loop,
  logging proxy reward, KL, and ``eval_fn``'s numbers such as gold reward — evaluation only).

Tensor layout (as in :mod:`sampling`): responses right-padded to (B, T) with a 0/1 ``mask``.
Taught in lecture 03; :func:`train` is reused by lecture 06.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from . import models, sampling

RewardFn = Callable[[list[str], list[str]], torch.Tensor]
EvalFn = Callable[[list[str], list[str]], dict]


# --------------------------------------------------------------------------- pure tensor functions
def _check_same_shape(**tensors: torch.Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"these tensors must all have the same (B, T) shape: {shapes}")


def kl_estimates(logps: torch.Tensor, ref_logps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token estimators of KL(π ‖ π_ref) from tokens sampled from π: (...), (...) → 3 × (...).

    With ratio ρ = π_ref/π = exp(ref_logps − logps) (Schulman 2020, "Approximating KL divergence"):
    k1 = −log ρ = log π − log π_ref (unbiased, can be negative), k2 = ½ (log ρ)² (biased, low
    variance), k3 = (ρ − 1) − log ρ (unbiased, ≥ 0, low variance). Lecture 03 §3.
    """
    _check_same_shape(logps=logps, ref_logps=ref_logps)
    log_ratio = ref_logps - logps          # log ρ
    k1 = -log_ratio
    k2 = 0.5 * log_ratio ** 2
    k3 = torch.expm1(log_ratio) - log_ratio
    return k1, k2, k3


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of each row's last response token in a right-padded (B, T) mask → (B,) long."""
    lengths = mask.long().sum(-1)
    if (lengths == 0).any():
        raise ValueError("every response needs at least one token (a row of the mask is all zeros).")
    return lengths - 1


def kl_penalized_rewards(rewards: torch.Tensor, logps: torch.Tensor, ref_logps: torch.Tensor,
                         mask: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-token rewards of RLHF: (B,), (B,T), (B,T), (B,T), float → (B,T).

    r_t = −β (log π(y_t|·) − log π_ref(y_t|·)) on response tokens, plus the sequence reward r(x,y)
    at each sequence's last response token; 0 on padding. Summed over t this is the sample's
    r(x,y) − β log(π(y|x)/π_ref(y|x)) (Eq. (2) of Stiennon et al. 2020; Ziegler et al. 2019).
    Constants for the optimizer: the result is detached.
    """
    _check_same_shape(logps=logps, ref_logps=ref_logps, mask=mask)
    if rewards.shape != logps.shape[:1]:
        raise ValueError(f"rewards must be (B,) = ({logps.shape[0]},), got {tuple(rewards.shape)}")
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    penalty = -beta * (logps - ref_logps).detach()                               # (B, T)
    token_rewards = torch.where(mask.bool(), penalty, torch.zeros_like(penalty))
    last = last_token_index(mask)                                                # (B,)
    bonus = torch.zeros_like(token_rewards)
    bonus[torch.arange(len(last), device=last.device), last] = rewards.detach().to(logps.dtype)
    return token_rewards + bonus


def gae_advantages(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor,
                   gamma: float = 1.0, lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimates and returns: (B,T) ×3 → ((B,T), (B,T)), 0 on padding.

    δ_t = r_t + γ V_{t+1} − V_t with V = 0 after each sequence's last token, and
    A_t = Σ_l (γλ)^l δ_{t+l} (Eq. (16) of Schulman et al. 2016), computed backwards;
    returns R_t = A_t + V_t are the value head's targets. Detached (constants).
    """
    _check_same_shape(rewards=rewards, values=values, mask=mask)
    if not (0 <= gamma <= 1 and 0 <= lam <= 1):
        raise ValueError(f"gamma and lam must lie in [0, 1], got gamma={gamma}, lam={lam}")
    rewards, values = rewards.detach(), values.detach()
    m = mask.to(values.dtype)
    T = rewards.shape[-1]
    advantages = torch.zeros_like(values)
    next_value = torch.zeros_like(values[..., 0])
    next_adv = torch.zeros_like(values[..., 0])
    for t in reversed(range(T)):
        delta = rewards[..., t] + gamma * next_value - values[..., t]
        next_adv = (delta + gamma * lam * next_adv) * m[..., t]
        next_value = values[..., t] * m[..., t]
        advantages[..., t] = next_adv
    return advantages, (advantages + values) * m


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over positions where ``mask`` is 1 (all rows pooled): (B,T), (B,T) → scalar."""
    keep = mask.bool()
    n = keep.sum()
    if n == 0:
        raise ValueError("the mask selects no tokens: nothing to average.")
    return torch.where(keep, x, torch.zeros_like(x)).sum() / n    # where, not x·mask: padding may be inf


def whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(x − mean) / std over masked positions, 0 on padding: (B,T) → (B,T). Standard for advantages."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + eps) * mask.to(x.dtype)


def ppo_clip_loss(logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor,
                  mask: torch.Tensor, clip_eps: float = 0.2) -> torch.Tensor:
    """PPO's clipped surrogate as a loss, averaged over response tokens: (B,T) ×4 → scalar.

    ρ_t = π(y_t|·)/π_old(y_t|·); loss = −mean_t min(ρ_t A_t, clip(ρ_t, 1−ε, 1+ε) A_t)
    (Eq. (7) of Schulman et al. 2017). Only ``logps`` carries a gradient.
    """
    _check_same_shape(logps=logps, old_logps=old_logps, advantages=advantages, mask=mask)
    if clip_eps <= 0:
        raise ValueError(f"clip_eps must be positive, got {clip_eps}")
    ratio = torch.exp(logps - old_logps.detach())
    adv = advantages.detach()
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1 - clip_eps, 1 + clip_eps) * adv)
    return -masked_mean(surrogate, mask)


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
               mask: torch.Tensor, clip_eps: float | None = 0.2) -> torch.Tensor:
    """½ mean_t max((V_t − R_t)², (clip(V_t, V_old ± ε) − R_t)²) over response tokens → scalar.

    The clipped form keeps the value head near its rollout-time predictions, as PPO's
    reference implementations do; ``clip_eps=None`` gives the plain ½ squared error.
    """
    _check_same_shape(values=values, old_values=old_values, returns=returns, mask=mask)
    err = (values - returns.detach()) ** 2
    if clip_eps is not None:
        old = old_values.detach()
        clipped = old + (values - old).clamp(-clip_eps, clip_eps)
        err = torch.maximum(err, (clipped - returns.detach()) ** 2)
    return 0.5 * masked_mean(err, mask)


# --------------------------------------------------------------------------- config
@dataclass
class PPOConfig:
    """Settings of :func:`train`.

    Fields:
        iterations (int, 40): rollout → update rounds.
        prompts_per_iter (int, 16) × samples_per_prompt (int, 4): responses sampled per round.
        max_new_tokens (int, 48): response length cap.
        beta (float, 0.1): KL penalty weight β (0 = no anchor to the reference).
        lr (float, 5e-5): Adam learning rate of the policy.
        value_lr (float, 1e-3): learning rate of the value head (it starts at zero and must catch up).
        ppo_epochs (int, 2): passes over each batch.   minibatches (int, 2): optimizer steps per pass.
        clip_eps (float, 0.2): ratio clip ε.           vf_clip (float | None, 0.2): value clip.
        vf_coef (float, 0.1): weight of the value loss (the head shares the policy's backbone).
        gamma (float, 1.0), lam (float, 0.95): GAE discount and trace parameters.
        whiten_advantages (bool, True): normalize advantages per batch.
        max_grad_norm (float, 1.0): gradient clipping.   seed (int, 0): sampling and prompt order.
    """
    iterations: int = 40
    prompts_per_iter: int = 16
    samples_per_prompt: int = 4
    max_new_tokens: int = 48
    beta: float = 0.1
    lr: float = 5e-5
    value_lr: float = 1e-3
    ppo_epochs: int = 2
    minibatches: int = 2
    clip_eps: float = 0.2
    vf_clip: float | None = 0.2
    vf_coef: float = 0.1
    gamma: float = 1.0
    lam: float = 0.95
    whiten_advantages: bool = True
    max_grad_norm: float = 1.0
    seed: int = 0

    def __post_init__(self):
        if min(self.iterations, self.prompts_per_iter, self.samples_per_prompt, self.max_new_tokens,
               self.ppo_epochs, self.minibatches) < 1:
            raise ValueError("iterations, prompts_per_iter, samples_per_prompt, max_new_tokens, ppo_epochs "
                             "and minibatches must all be at least 1.")
        if self.minibatches > self.batch_size:
            raise ValueError(f"minibatches={self.minibatches} exceeds the {self.batch_size} samples per "
                             "iteration; lower minibatches or sample more.")
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0 (0 switches the KL penalty off), got {self.beta}.")
        if self.lr <= 0 or self.value_lr <= 0:
            raise ValueError("lr and value_lr must be positive.")
        if self.clip_eps <= 0 or (self.vf_clip is not None and self.vf_clip <= 0):
            raise ValueError("clip_eps (and vf_clip unless None) must be positive; try 0.2.")
        if not (0 <= self.gamma <= 1 and 0 <= self.lam <= 1):
            raise ValueError("gamma and lam must lie in [0, 1]; RLHF uses gamma=1, lam=0.95.")

    @property
    def batch_size(self) -> int:
        """Responses per iteration: prompts_per_iter × samples_per_prompt."""
        return self.prompts_per_iter * self.samples_per_prompt

    def with_(self, **changes) -> "PPOConfig":
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)


PPO_PRESETS = {
    "fast": PPOConfig(iterations=30, prompts_per_iter=12, samples_per_prompt=4, max_new_tokens=48),
    "full": PPOConfig(iterations=150, prompts_per_iter=32, samples_per_prompt=4, max_new_tokens=64,
                      ppo_epochs=4, minibatches=4),
}


# --------------------------------------------------------------------------- batch level
@dataclass
class PPOBatch:
    """One rollout with everything the update needs; tensors (B, T) unless noted.

    Fields: ``rollout`` (:class:`sampling.Rollout`), ``rewards`` (B,) from ``reward_fn``,
    ``logps`` and ``ref_logps`` (log-probs under the rollout policy and the reference),
    ``values`` (value head at rollout time), ``token_rewards`` (:func:`kl_penalized_rewards`),
    ``advantages`` and ``returns`` (:func:`gae_advantages`, advantages whitened if configured).
    """
    rollout: sampling.Rollout
    rewards: torch.Tensor
    logps: torch.Tensor
    ref_logps: torch.Tensor
    values: torch.Tensor
    token_rewards: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor

    @property
    def mask(self) -> torch.Tensor:
        return self.rollout.response_mask

    def kl(self) -> torch.Tensor:
        """Per-sequence KL estimate Σ_t k1 = log π(y|x) − log π_ref(y|x), (B,)."""
        return ((self.logps - self.ref_logps) * self.mask).sum(-1)

    def select(self, idx) -> "PPOBatch":
        idx_t = torch.as_tensor(idx, dtype=torch.long, device=self.rewards.device)
        return PPOBatch(self.rollout.select(idx_t.cpu()).to(self.rewards.device), self.rewards[idx_t],
                        *(t[idx_t] for t in (self.logps, self.ref_logps, self.values, self.token_rewards,
                                             self.advantages, self.returns)))


def policy_and_values(agent: models.ValueHeadLM, rollout: sampling.Rollout) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log π(y_t|x, y_<t) and values V(x, y_<t) of the response tokens: ((B,T), (B,T)).

    The value at t is the head's output at the position that predicts y_t (the state before
    acting), so logps, values and rewards line up token by token. Zero on padding.
    """
    ids = torch.cat([rollout.prompt_ids, rollout.response_ids], dim=1)
    att = torch.cat([rollout.prompt_mask, rollout.response_mask], dim=1)
    logits, values = agent(ids, att, position_ids=sampling._position_ids(att))
    P, T = rollout.prompt_ids.shape[1], rollout.response_ids.shape[1]
    mask = rollout.response_mask
    logps = sampling.gather_logps(logits[:, P - 1:P - 1 + T], rollout.response_ids, mask)
    return logps, values[:, P - 1:P - 1 + T] * mask


@torch.no_grad()
def collect(agent: models.ValueHeadLM, ref, tokenizer, reward_fn: RewardFn, prompts: list[str],
            config: PPOConfig, generator: torch.Generator | None = None) -> PPOBatch:
    """Sample one response per prompt, score it, and compute rewards, advantages and returns.

    Log-probs are computed with the model in eval mode (dropout would skew KL and ratios).
    """
    if not prompts:
        raise ValueError("no prompts to sample from.")
    device = next(agent.parameters()).device
    agent.eval()
    roll = sampling.generate(agent.lm, tokenizer, prompts, config.max_new_tokens, 1.0, generator=generator)
    rewards = torch.as_tensor(reward_fn(roll.prompts, roll.responses), dtype=torch.float32).to(device)
    if rewards.shape != (len(prompts),):
        raise ValueError(f"reward_fn must return one number per response, shape ({len(prompts)},); "
                         f"got {tuple(rewards.shape)}.")
    logps, values = policy_and_values(agent, roll)
    ref_logps = sampling.token_logps(ref, roll)
    mask = roll.response_mask
    token_rewards = kl_penalized_rewards(rewards, logps, ref_logps, mask, config.beta)
    advantages, returns = gae_advantages(token_rewards, values, mask, config.gamma, config.lam)
    if config.whiten_advantages:
        advantages = whiten(advantages, mask)
    return PPOBatch(roll, rewards, logps, ref_logps, values, token_rewards, advantages, returns)


def make_optimizer(agent: models.ValueHeadLM, config: PPOConfig) -> torch.optim.Optimizer:
    """Adam with the policy at ``config.lr`` and the value head at ``config.value_lr``."""
    head = list(agent.value_head.parameters())
    head_ids = {id(p) for p in head}
    body = [p for p in agent.parameters() if p.requires_grad and id(p) not in head_ids]
    return torch.optim.Adam([{"params": body, "lr": config.lr}, {"params": head, "lr": config.value_lr}])


def update(agent: models.ValueHeadLM, optimizer: torch.optim.Optimizer, batch: PPOBatch,
           config: PPOConfig, generator: torch.Generator | None = None) -> dict[str, float]:
    """``ppo_epochs`` passes over ``batch`` in ``minibatches`` shuffled minibatches, one step each.

    Loss = :func:`ppo_clip_loss` + vf_coef · :func:`value_loss`. Returns the means of
    ``pg_loss``, ``value_loss``, ``clipfrac`` (share of tokens whose ratio left [1−ε, 1+ε]) and
    ``approx_kl`` (k3 of the new policy from the rollout policy).
    """
    agent.train()
    B = len(batch.rewards)
    stats: dict[str, list[float]] = {"pg_loss": [], "value_loss": [], "clipfrac": [], "approx_kl": []}
    for _ in range(config.ppo_epochs):
        order = torch.randperm(B, generator=generator)
        for idx in order.chunk(config.minibatches):
            mb = batch.select(idx)
            logps, values = policy_and_values(agent, mb.rollout)
            pg = ppo_clip_loss(logps, mb.logps, mb.advantages, mb.mask, config.clip_eps)
            vl = value_loss(values, mb.values, mb.returns, mb.mask, config.vf_clip)
            loss = pg + config.vf_coef * vl
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(agent.parameters(), config.max_grad_norm)
            optimizer.step()
            with torch.no_grad():
                log_ratio = (logps - mb.logps).detach()
                stats["pg_loss"].append(pg.item())
                stats["value_loss"].append(vl.item())
                stats["clipfrac"].append(masked_mean(((log_ratio.exp() - 1).abs() > config.clip_eps).float(),
                                                     mb.mask).item())
                stats["approx_kl"].append(masked_mean(kl_estimates(logps.detach(), mb.logps)[2], mb.mask).item())
    agent.eval()
    return {k: float(np.mean(v)) for k, v in stats.items()}


# --------------------------------------------------------------------------- the loop
def train(policy, ref, tokenizer, reward_fn: RewardFn, prompts: list[str], config: PPOConfig,
          eval_fn: EvalFn | None = None, desc: str = "PPO", agent: models.ValueHeadLM | None = None,
          ) -> dict[str, list]:
    """Optimize ``policy`` in place with PPO on ``reward_fn`` − β KL(π ‖ ``ref``).

    Each iteration draws ``prompts_per_iter`` prompts from ``prompts`` (with replacement),
    samples ``samples_per_prompt`` responses each (:func:`collect`), and runs :func:`update`.
    ``reward_fn(prompts, responses) -> (N,)`` is the training signal (any function: a reward
    model, a transformed reward); ``eval_fn(prompts, responses) -> {name: float}`` is only
    logged, e.g. the gold judges. A value head (:class:`models.ValueHeadLM`, sharing the
    policy's backbone) is created unless ``agent`` is given.

    Returns a history of per-iteration lists: ``reward`` (mean proxy reward of the samples),
    ``kl`` (mean Σ_t log π/π_ref per sequence), ``pg_loss``, ``value_loss``, ``clipfrac``,
    ``approx_kl``, eval_fn's keys, and ``samples`` (a few responses of each iteration).
    """
    if not prompts:
        raise ValueError("no prompts to train on.")
    if ref is None:
        raise ValueError("ref is required: pass models.frozen_copy(policy) before training starts.")
    device = next(policy.parameters()).device
    agent = agent if agent is not None else models.ValueHeadLM(policy)
    if agent.lm is not policy:
        raise ValueError("agent must wrap the policy being trained (agent.lm is not policy).")
    optimizer = make_optimizer(agent, config)
    rng = np.random.default_rng(config.seed)
    gen = torch.Generator(device=device).manual_seed(config.seed)
    shuffle = torch.Generator().manual_seed(config.seed)
    k = config.samples_per_prompt
    hist: dict[str, list] = {"reward": [], "kl": [], "samples": []}
    for _ in tqdm(range(config.iterations), desc=desc, leave=False):
        batch_prompts = [prompts[i] for i in rng.integers(len(prompts), size=config.prompts_per_iter)]
        batch_prompts = [p for p in batch_prompts for _ in range(k)]
        batch = collect(agent, ref, tokenizer, reward_fn, batch_prompts, config, gen)
        stats = update(agent, optimizer, batch, config, shuffle)
        hist["reward"].append(batch.rewards.mean().item())
        hist["kl"].append(batch.kl().mean().item())
        for name, value in stats.items():
            hist.setdefault(name, []).append(value)
        hist["samples"].append(batch.rollout.responses[::k][:4])
        if eval_fn is not None:
            for name, value in eval_fn(batch.rollout.prompts, batch.rollout.responses).items():
                hist.setdefault(name, []).append(float(value))
    policy.eval()
    return hist


# --------------------------------------------------------------------------- cached runs
def world_eval(prompts: list[str], responses: list[str]) -> dict[str, float]:
    """Evaluation-only numbers of a batch: mean gold helpfulness and harmlessness, share of
    list-formatted responses, mean repeated items and garbled sentences (how hacking shows)."""
    from . import world
    gold = world.gold_scores(prompts, responses)
    feats = [world.parse_response(p, r) for p, r in zip(prompts, responses)]
    return {"gold_helpful": float(np.mean(gold["helpful"])), "gold_harmless": float(np.mean(gold["harmless"])),
            "list_rate": float(np.mean([f.is_list for f in feats])),
            "repeats": float(np.mean([f.n_repeats for f in feats])),
            "garbled": float(np.mean([f.n_garbled for f in feats]))}


def trained_policy_path(beta: float, attribute: str = "helpful", config: PPOConfig | None = None,
                        preset: str | None = None, seed: int = 0, device=None, root=None):
    """Folder of the SFT policy trained by :func:`train` against the cached ``attribute`` reward model.

    Built on first use (lecture 03 trains these; later lectures load them): the policy and
    tokenizer (``models.load_causal_lm(path)``) and ``history.json`` (:func:`load_history`),
    logged with :func:`world_eval`. ``config`` defaults to the mode's preset with ``beta``.
    """
    import json
    from . import rewards, runtime, world
    name = preset or runtime.get_mode()
    device = device or runtime.get_device()
    config = (config or PPO_PRESETS[name]).with_(beta=beta, seed=seed)
    sft = models.sft_model_path(name, seed, root, device)
    rm_path = rewards.reward_model_path(attribute, name, seed, root, device)

    def build(folder):
        runtime.set_seed(seed)
        policy, tok = models.load_causal_lm(sft, device)
        ref = models.frozen_copy(policy)
        rm, rm_tok = rewards.load_reward_model(attribute, name, seed, device, root)
        prompts = [world.format_prompt(q) for q in world.all_questions()]
        hist = train(policy, ref, tok, lambda p, r: rewards.score(rm, rm_tok, p, r), prompts, config,
                     eval_fn=world_eval, desc=f"PPO β={beta}")
        policy.save_pretrained(folder); tok.save_pretrained(folder)
        (folder / "history.json").write_text(json.dumps(hist))

    cfg = {"ppo": {k: v for k, v in vars(config).items()}, "attribute": attribute, "sft": sft.name,
           "rm": rm_path.name, "seed": seed}
    return models.cached("ppo_policy", cfg, build, root)


def load_history(path) -> dict[str, list]:
    """The training history saved by :func:`trained_policy_path`."""
    import json
    from pathlib import Path
    return json.loads((Path(path) / "history.json").read_text())
