"""Direct Preference Optimization: the loss, its batch wrapper, a training loop, and its metrics.

DPO (Rafailov et al. 2023) fits a policy π_θ to preference pairs (x, y_w, y_l) directly, with
no reward model and no sampling: the implicit reward r̂_θ(x, y) = β log π_θ(y|x)/π_ref(y|x)
goes into the Bradley-Terry likelihood. Layers, as lecture 04 derives them and a04 has
students build them:

- :func:`sequence_logps` — log π(y|x) from a causal LM's logits over ``[prompt | response]``,
  shifted by one (position t predicts token t+1) and summed over the response mask.
- :func:`dpo_loss` — the pure tensor loss −log σ(β[(log π_θ(y_w) − log π_ref(y_w)) −
  (log π_θ(y_l) − log π_ref(y_l))]) per pair, plus the detached implicit rewards
  (Eq. (7) of Rafailov et al. 2023).
- :func:`encode_pairs` / :func:`pair_logps` / :func:`dpo_batch_loss` — the batch wrapper:
  chosen and rejected responses of B pairs as 2B rows of one forward pass (TRL's layout).
- :func:`dpo_train` — the loop over a preference ``Dataset`` (prompt/chosen/rejected); the loss
  and the log-prob function are parameters, so a04 plugs the student's versions in.
- :func:`evaluate_pairs` — implicit-reward accuracy, margins and loss on held-out pairs;
  :func:`implicit_rewards` — r̂_θ(x, y) of any (prompt, response) texts.
- :func:`policy_report` — what a policy's samples look like: KL(π_θ ‖ π_ref) per response
  (Monte-Carlo, in nats), gold scores (evaluation only), garbled-text rate;
  :func:`win_rate` — P(a > b) with ties counted half.

Taught in lecture 04; the exact bandit version of the same objects is in :mod:`bandit`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import sampling, world
from .models import context_length

LossFn = Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
LogpsFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------- the pure tensor functions
def sequence_logps(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Σ_t log softmax(logits)[t−1, labels[t]] over positions where ``mask[t]`` is 1: → (B,).

    ``logits`` (B, L, V) come from a causal LM run on ``labels`` (B, L) (the full
    ``[prompt | response]`` ids); ``mask`` (B, L) is 1 on the response tokens to score. Position
    t's logits predict token t+1, so the logits drop their last position and labels and mask
    drop their first. Padding may hold any id: it only has to be masked out.
    """
    if logits.dim() != 3 or labels.shape != logits.shape[:2] or mask.shape != labels.shape:
        raise ValueError(f"shapes do not fit: logits {tuple(logits.shape)}, labels {tuple(labels.shape)}, "
                         f"mask {tuple(mask.shape)}; expected (B, L, V), (B, L), (B, L).")
    if labels.shape[1] < 2:
        raise ValueError("sequences need at least 2 positions (a prompt token and a response token).")
    logits, labels, mask = logits[:, :-1], labels[:, 1:], mask[:, 1:]           # shift: t predicts t+1
    logps = torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)  # (B, L−1, V)
    token = logps.gather(-1, labels.long().unsqueeze(-1)).squeeze(-1)          # (B, L−1)
    return (token * mask.to(token.dtype)).sum(-1)                              # (B,)


def dpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
             ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor, beta: float
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The DPO loss per pair and the implicit rewards: 4 × (B,), float → (losses, chosen_rewards, rejected_rewards).

    losses = −log σ(β [(log π_θ(y_w) − log π_ref(y_w)) − (log π_θ(y_l) − log π_ref(y_l))]), (B,)
    (Eq. (7) of Rafailov et al. 2023), computed with ``logsigmoid`` so it stays finite for any
    margin. The implicit rewards r̂ = β (log π_θ − log π_ref) (Eq. (5), without the β log Z(x)
    that cancels in every pair) are returned detached: they are metrics, not part of the graph.
    """
    logps = (policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)
    if not all(isinstance(t, torch.Tensor) for t in logps):
        raise ValueError("the four log-prob arguments must be torch tensors of shape (B,).")
    if any(t.shape != policy_chosen_logps.shape for t in logps) or policy_chosen_logps.dim() != 1:
        raise ValueError("the four log-prob tensors must all have the same shape (B,), got "
                         f"{[tuple(t.shape) for t in logps]}.")
    if not beta > 0:
        raise ValueError(f"beta must be positive (it is the KL weight of the objective), got {beta}.")
    chosen_logratios = policy_chosen_logps - ref_chosen_logps          # (B,)
    rejected_logratios = policy_rejected_logps - ref_rejected_logps    # (B,)
    losses = -F.logsigmoid(beta * (chosen_logratios - rejected_logratios))
    return losses, beta * chosen_logratios.detach(), beta * rejected_logratios.detach()


def reward_accuracy(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> float:
    """Fraction of pairs whose chosen reward is strictly higher (TRL's ``rewards/accuracies``)."""
    if chosen_rewards.shape != rejected_rewards.shape or chosen_rewards.numel() == 0:
        raise ValueError("chosen_rewards and rejected_rewards must be non-empty tensors of the same shape.")
    return float((chosen_rewards > rejected_rewards).float().mean())


# --------------------------------------------------------------------------- the batch wrapper
def encode_pairs(tokenizer, prompts: list[str], chosen: list[str], rejected: list[str], device=None,
                 max_length: int | None = None) -> dict[str, torch.Tensor]:
    """B pairs as 2B rows ``[chosen_1..B, rejected_1..B]`` of ``[left-padded prompt | response + eos]``.

    Returns ``input_ids``, ``attention_mask``, ``position_ids`` (skipping left padding) and
    ``completion_mask`` (1 on response tokens incl. eos), each (2B, L). Tokenized with
    :func:`sampling.encode`, so the scores equal :func:`sampling.sequence_logps`. With
    ``max_length``, columns beyond it are cut (the ends of the longest responses, like TRL's
    ``truncation_mode='keep_start'``).
    """
    if not (len(prompts) == len(chosen) == len(rejected)) or not prompts:
        raise ValueError(f"need as many chosen ({len(chosen)}) and rejected ({len(rejected)}) responses "
                         f"as prompts ({len(prompts)}), and at least one.")
    roll = sampling.encode(tokenizer, list(prompts) * 2, list(chosen) + list(rejected), device=device)
    ids = torch.cat([roll.prompt_ids, roll.response_ids], dim=1)             # (2B, L)
    attn = torch.cat([roll.prompt_mask, roll.response_mask], dim=1)           # (2B, L)
    completion = torch.cat([torch.zeros_like(roll.prompt_mask), roll.response_mask], dim=1)
    out = {"input_ids": ids, "attention_mask": attn, "position_ids": (attn.cumsum(-1) - 1).clamp(min=0),
           "completion_mask": completion}
    if max_length is not None and out["input_ids"].shape[1] > max_length:
        if max_length <= roll.prompt_ids.shape[1]:
            raise ValueError(f"max_length={max_length} leaves no room for responses after prompts of "
                             f"{roll.prompt_ids.shape[1]} tokens; raise it.")
        out = {k: v[:, :max_length] for k, v in out.items()}
    return out


def pair_logps(model, batch: dict[str, torch.Tensor], logps_fn: LogpsFn = sequence_logps
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(chosen_logps, rejected_logps)``, each (B,), from one forward pass over the 2B rows."""
    limit = context_length(model)
    if limit is not None and batch["input_ids"].shape[1] > limit:
        raise ValueError(f"sequences of {batch['input_ids'].shape[1]} tokens exceed the model's context of "
                         f"{limit}; pass max_length={limit} to encode_pairs.")
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   position_ids=batch["position_ids"]).logits                 # (2B, L, V)
    logps = logps_fn(logits, batch["input_ids"], batch["completion_mask"])    # (2B,)
    return logps.chunk(2)


def dpo_batch_loss(policy, ref, batch: dict[str, torch.Tensor], beta: float, loss_fn: LossFn = dpo_loss,
                   logps_fn: LogpsFn = sequence_logps) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean DPO loss of a batch (scalar, with gradient through ``policy``) and its metrics.

    π_ref (``ref``) is scored without gradients. Metrics: loss, accuracy (implicit reward of y_w
    above y_l), margin (mean r̂_w − r̂_l), chosen_reward, rejected_reward, chosen_logp,
    rejected_logp (mean log π_θ: DPO can push both down while the margin grows).
    """
    policy_chosen, policy_rejected = pair_logps(policy, batch, logps_fn)
    with torch.no_grad():
        ref_chosen, ref_rejected = pair_logps(ref, batch, logps_fn)
    losses, chosen_rewards, rejected_rewards = loss_fn(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)
    loss = losses.mean()
    stats = {"loss": loss.item(), "accuracy": reward_accuracy(chosen_rewards, rejected_rewards),
             "margin": (chosen_rewards - rejected_rewards).mean().item(),
             "chosen_reward": chosen_rewards.mean().item(), "rejected_reward": rejected_rewards.mean().item(),
             "chosen_logp": policy_chosen.detach().mean().item(),
             "rejected_logp": policy_rejected.detach().mean().item()}
    return loss, stats


# --------------------------------------------------------------------------- the loop
@dataclass
class DPOTrainConfig:
    """Settings of :func:`dpo_train` (the kit's loop; TRL's equivalent is ``trl.DPOConfig``).

    Fields:
        beta (float, 0.1): KL weight β of the objective; smaller lets π_θ move further from π_ref.
        lr (float, 1e-4): AdamW learning rate (constant after ``warmup_steps`` linear warm-up).
        batch_size (int, 16): preference pairs per step.
        steps (int, 60): optimizer steps (the data are reshuffled every epoch).
        warmup_steps (int, 5): linear learning-rate warm-up.
        max_grad_norm (float, 1.0): gradient clipping.
        eval_every (int, 20): evaluate on ``eval_dataset`` every this many steps (and at the end).
        seed (int, 0): seeds the order of the pairs.
    """
    beta: float = 0.1
    lr: float = 1e-4
    batch_size: int = 16
    steps: int = 60
    warmup_steps: int = 5
    max_grad_norm: float = 1.0
    eval_every: int = 20
    seed: int = 0

    def __post_init__(self):
        if not self.beta > 0:
            raise ValueError(f"beta must be positive, got {self.beta}; try 0.1.")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}; try 1e-4 for the tiny model.")
        if self.batch_size < 1 or self.steps < 1 or self.eval_every < 1:
            raise ValueError("batch_size, steps and eval_every must be at least 1.")
        if self.warmup_steps < 0 or not self.max_grad_norm > 0:
            raise ValueError("warmup_steps must be >= 0 and max_grad_norm > 0.")


DPO_PRESETS = {
    "fast": DPOTrainConfig(beta=0.1, lr=5e-5, batch_size=16, steps=60, eval_every=30),
    "full": DPOTrainConfig(beta=0.1, lr=5e-5, batch_size=32, steps=400, eval_every=50),
}


def _epoch_batches(n: int, batch_size: int, rng: np.random.Generator):
    while True:
        order = rng.permutation(n)
        for i in range(0, n - batch_size + 1 if n >= batch_size else 1, batch_size):
            yield order[i:i + batch_size].tolist()


def dpo_train(policy, ref, tokenizer, dataset, config: DPOTrainConfig, eval_dataset=None,
              loss_fn: LossFn = dpo_loss, logps_fn: LogpsFn = sequence_logps, desc: str = "DPO"
              ) -> dict[str, list]:
    """Optimize ``policy`` (π_θ) in place on a preference ``dataset`` against the frozen ``ref`` (π_ref).

    Each step takes ``batch_size`` pairs, computes :func:`dpo_batch_loss` and takes one clipped
    AdamW step (sequences longer than the policy's context are cut, see :func:`encode_pairs`).
    ``eval_dataset`` (held-out pairs) is scored by :func:`evaluate_pairs` every
    ``eval_every`` steps. Returns a history: per step ``loss``, ``accuracy``, ``margin``,
    ``chosen_reward``, ``rejected_reward``, ``chosen_logp``, ``rejected_logp``; per evaluation
    ``eval_step``, ``eval_accuracy``, ``eval_margin``, ``eval_loss``. The policy ends in eval mode.
    """
    world.check_preference_dataset(dataset)
    if ref is policy:
        raise ValueError("ref must be a separate frozen model: pass models.frozen_copy(policy) before training.")
    device = next(policy.parameters()).device
    prompts, chosen, rejected = list(dataset["prompt"]), list(dataset["chosen"]), list(dataset["rejected"])
    opt = torch.optim.AdamW(policy.parameters(), lr=config.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / (config.warmup_steps + 1)))
    batches = _epoch_batches(len(prompts), config.batch_size, np.random.default_rng(config.seed))
    hist: dict[str, list] = {}

    def evaluate(step: int):
        res = evaluate_pairs(policy, ref, tokenizer, eval_dataset, config.beta, loss_fn=loss_fn, logps_fn=logps_fn)
        hist.setdefault("eval_step", []).append(step)
        for key in ("accuracy", "margin", "loss"):
            hist.setdefault(f"eval_{key}", []).append(res[key])

    if eval_dataset is not None:
        evaluate(0)
    for step in tqdm(range(1, config.steps + 1), desc=desc, leave=False):
        idx = next(batches)
        batch = encode_pairs(tokenizer, [prompts[i] for i in idx], [chosen[i] for i in idx],
                             [rejected[i] for i in idx], device, context_length(policy))
        policy.train()
        loss, stats = dpo_batch_loss(policy, ref, batch, config.beta, loss_fn, logps_fn)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), config.max_grad_norm)
        opt.step()
        sched.step()
        for key, value in stats.items():
            hist.setdefault(key, []).append(value)
        if eval_dataset is not None and (step % config.eval_every == 0 or step == config.steps):
            evaluate(step)
    policy.eval()
    return hist


# --------------------------------------------------------------------------- metrics
@torch.no_grad()
def evaluate_pairs(policy, ref, tokenizer, dataset, beta: float, batch_size: int = 64,
                   loss_fn: LossFn = dpo_loss, logps_fn: LogpsFn = sequence_logps) -> dict:
    """Implicit-reward metrics of π_θ on preference pairs, without gradients.

    Returns ``accuracy`` (r̂(y_w) > r̂(y_l), against the annotators' labels), ``margin`` (mean
    r̂_w − r̂_l), ``loss`` (mean DPO loss), ``n_pairs``, ``chosen_rewards``/``rejected_rewards``
    (N,) and, if the dataset has gold columns, ``gold_accuracy`` (order as gold, over pairs
    where gold differs). The policy's train/eval mode is restored afterwards.
    """
    world.check_preference_dataset(dataset)
    device = next(policy.parameters()).device
    was_training = policy.training
    policy.eval()
    losses, chosen_r, rejected_r = [], [], []
    for i in range(0, len(dataset), batch_size):
        rows = dataset[i:i + batch_size]
        batch = encode_pairs(tokenizer, rows["prompt"], rows["chosen"], rows["rejected"], device, context_length(policy))
        pc, pr = pair_logps(policy, batch, logps_fn)
        rc, rr = pair_logps(ref, batch, logps_fn)
        l, cr, rj = loss_fn(pc, pr, rc, rr, beta)
        losses.append(l.cpu()); chosen_r.append(cr.cpu()); rejected_r.append(rj.cpu())
    policy.train(was_training)
    chosen_r, rejected_r = torch.cat(chosen_r), torch.cat(rejected_r)
    out = {"accuracy": reward_accuracy(chosen_r, rejected_r), "margin": (chosen_r - rejected_r).mean().item(),
           "loss": torch.cat(losses).mean().item(), "n_pairs": len(dataset),
           "chosen_rewards": chosen_r, "rejected_rewards": rejected_r}
    if "gold_chosen" in dataset.column_names:
        gd = torch.tensor(dataset["gold_chosen"]) - torch.tensor(dataset["gold_rejected"])
        decided = gd.abs() > 1e-9
        if decided.any():
            agree = ((chosen_r - rejected_r)[decided] * gd[decided].sign()) > 0
            out["gold_accuracy"] = float(agree.float().mean())
    return out


@torch.no_grad()
def implicit_rewards(policy, ref, tokenizer, prompts: list[str], responses: list[str], beta: float,
                     batch_size: int = 128) -> torch.Tensor:
    """r̂_θ(x, y) = β (log π_θ(y|x) − log π_ref(y|x)) of (prompt, response) texts: → (N,) on CPU.

    Responses longer than the policy's context are cut as in :func:`encode_pairs`.
    """
    if len(prompts) != len(responses) or not prompts:
        raise ValueError(f"need one response per prompt and at least one: {len(prompts)} prompts, "
                         f"{len(responses)} responses.")
    device = next(policy.parameters()).device
    roll = sampling.encode(tokenizer, prompts, responses, device=device)
    limit = context_length(policy)
    if limit is not None and roll.prompt_ids.shape[1] + roll.response_ids.shape[1] > limit:  # cut as encode_pairs does
        keep = limit - roll.prompt_ids.shape[1]
        roll = sampling.Rollout(roll.prompts, roll.responses, roll.prompt_ids, roll.prompt_mask,
                                roll.response_ids[:, :keep], roll.response_mask[:, :keep])
    diff = sampling.batched_token_logps(policy, roll, batch_size) - sampling.batched_token_logps(ref, roll, batch_size)
    return beta * diff.sum(-1).cpu()


def win_rate(a, b) -> float:
    """P(a_i > b_i) over paired scores, ties counting half: (N,), (N,) → float."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"need two non-empty score arrays of the same shape, got {a.shape} and {b.shape}.")
    return float(np.mean((a > b) + 0.5 * (a == b)))


@torch.no_grad()
def policy_report(policy, ref, tokenizer, prompts: list[str], max_new_tokens: int = 64,
                  temperature: float = 1.0, seed: int = 0) -> dict:
    """Sample one response per prompt from π_θ and measure it (gold judges evaluate, never train).

    Returns ``kl`` — mean over samples y ∼ π_θ of Σ_t log π_θ(y_t|·) − log π_ref(y_t|·), an
    unbiased Monte-Carlo estimate of KL(π_θ ‖ π_ref) per response, in nats (0 if ``ref`` is
    None) — ``helpful``/``harmless`` (mean gold scores), ``garbled`` (fraction of responses with
    a sentence the world does not know), the arrays ``gold_helpful``/``gold_harmless`` (N,) and
    the ``responses``.
    """
    device = next(policy.parameters()).device
    roll = sampling.generate(policy, tokenizer, prompts, max_new_tokens, temperature,
                             generator=torch.Generator(device=device).manual_seed(seed))
    kl = 0.0
    if ref is not None:
        logratio = sampling.batched_token_logps(policy, roll) - sampling.batched_token_logps(ref, roll)
        kl = logratio.sum(-1).mean().item()
    gold = world.gold_scores(roll.prompts, roll.responses)
    garbled = np.mean([world.parse_response(p, r).n_garbled > 0 for p, r in zip(roll.prompts, roll.responses)])
    return {"kl": kl, "helpful": float(gold["helpful"].mean()), "harmless": float(gold["harmless"].mean()),
            "garbled": float(garbled), "gold_helpful": gold["helpful"], "gold_harmless": gold["harmless"],
            "responses": roll.responses}
