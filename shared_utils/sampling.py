"""Sampling from a causal LM and scoring responses: the two things every RLHF method does.

The layout used everywhere in the kit (and by TRL):

    input_ids = [ left-padded prompt (B, P) | right-padded response (B, T) ]

- :func:`generate` — batched sampling with a KV cache (temperature, top-k, top-p, max new
  tokens, stop at eos), returning a :class:`Rollout` of texts and token ids.
- :func:`encode` — the same tensors from given prompt and response texts (for scoring
  datasets: reward models, DPO).
- :func:`token_logps` — per-token log π(y_t | x, y_<t) of the response tokens, (B, T),
  zero on padding; :func:`sequence_logps` — their sum, (B,).

Taught in lecture 00 (sampling) and lecture 01 (log-probs of sequences).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .models import check_pair


@dataclass
class Rollout:
    """Prompts and sampled responses, as texts and as padded token ids.

    Fields: ``prompts``/``responses`` (lists of str, length B); ``prompt_ids``/``prompt_mask``
    (B, P), left-padded; ``response_ids``/``response_mask`` (B, T), right-padded, the
    response mask covering every generated token up to and including eos.
    """
    prompts: list[str]
    responses: list[str]
    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    response_ids: torch.Tensor
    response_mask: torch.Tensor

    def __len__(self):
        return len(self.prompts)

    def to(self, device) -> "Rollout":
        return Rollout(self.prompts, self.responses, *(t.to(device) for t in (
            self.prompt_ids, self.prompt_mask, self.response_ids, self.response_mask)))

    def select(self, idx) -> "Rollout":
        """The rows ``idx`` (a list or 1-D tensor of indices) as a new Rollout."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        pick = idx.tolist()
        return Rollout([self.prompts[i] for i in pick], [self.responses[i] for i in pick],
                       self.prompt_ids[idx], self.prompt_mask[idx],
                       self.response_ids[idx], self.response_mask[idx])


def _position_ids(mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding: 0 at each row's first real token."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


def _filter_logits(logits: torch.Tensor, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """Mask logits (B, V) outside the top-k and outside the top-p nucleus with −inf."""
    if top_k is not None and top_k > 0 and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop = cum - sorted_logits.softmax(-1) > top_p  # keep the token that crosses top_p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits


def encode_prompts(tokenizer, prompts: list[str], device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded prompt ids and mask, (B, P)."""
    if not prompts:
        raise ValueError("no prompts given (empty list).")
    ids = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    P = max(len(r) for r in ids)
    out = torch.full((len(ids), P), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(ids), P), dtype=torch.long)
    for i, r in enumerate(ids):
        if r:
            out[i, P - len(r):] = torch.tensor(r)
            mask[i, P - len(r):] = 1
    return out.to(device), mask.to(device)


def encode(tokenizer, prompts: list[str], responses: list[str], add_eos: bool = True,
           device=None) -> Rollout:
    """A :class:`Rollout` for given prompt and response texts (eos appended to each response)."""
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses.")
    p_ids, p_mask = encode_prompts(tokenizer, prompts, device)
    r_ids = tokenizer(list(responses), add_special_tokens=False)["input_ids"]
    if add_eos:
        r_ids = [r + [tokenizer.eos_token_id] for r in r_ids]
    T = max(1, max(len(r) for r in r_ids))
    ids = torch.full((len(r_ids), T), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(r_ids), T), dtype=torch.long)
    for i, r in enumerate(r_ids):
        ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, :len(r)] = 1
    return Rollout(list(prompts), list(responses), p_ids, p_mask, ids.to(device), mask.to(device))


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], max_new_tokens: int = 64,
             temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
             generator: torch.Generator | None = None, batch_size: int = 256) -> Rollout:
    """Sample one response per prompt with a KV cache; stop each row at eos.

    ``temperature=0`` is greedy decoding. ``generator`` (a ``torch.Generator`` on the
    model's device) makes sampling reproducible. Returns a :class:`Rollout` on the model's
    device; response texts are decoded without special tokens.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    check_pair(model, tokenizer)
    if len(prompts) > batch_size:
        parts = [generate(model, tokenizer, prompts[i:i + batch_size], max_new_tokens, temperature,
                          top_k, top_p, generator, batch_size) for i in range(0, len(prompts), batch_size)]
        return _concat(parts, tokenizer.pad_token_id)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    p_ids, p_mask = encode_prompts(tokenizer, prompts, device)
    B = p_ids.shape[0]
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    mask = p_mask
    out = model(input_ids=p_ids, attention_mask=mask, position_ids=_position_ids(mask), use_cache=True)
    past, logits = out.past_key_values, out.logits[:, -1]
    tokens, done = [], torch.zeros(B, dtype=torch.bool, device=device)
    for _ in range(max_new_tokens):
        logits = logits.float()
        if temperature == 0:
            nxt = logits.argmax(-1)
        else:
            probs = _filter_logits(logits / temperature, top_k, top_p).softmax(-1)
            nxt = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
        tokens.append(nxt)
        done = done | (nxt == eos)
        if done.all():
            break
        mask = torch.cat([mask, (~done | (nxt == eos)).long()[:, None]], dim=1)
        pos = _position_ids(mask)[:, -1:]
        out = model(input_ids=nxt[:, None], attention_mask=mask, position_ids=pos,
                    past_key_values=past, use_cache=True)
        past, logits = out.past_key_values, out.logits[:, -1]
    r_ids = torch.stack(tokens, dim=1)  # (B, T)
    # response mask: every token up to and including the first eos
    is_eos = (r_ids == eos).long()
    r_mask = ((is_eos.cumsum(1) - is_eos) == 0).long()
    r_ids = r_ids.masked_fill(r_mask == 0, pad)
    texts = tokenizer.batch_decode(r_ids.masked_fill(r_ids == eos, pad), skip_special_tokens=True)
    model.train(was_training)
    return Rollout(list(prompts), [t.strip() for t in texts], p_ids, p_mask, r_ids, r_mask)


def _concat(parts: list[Rollout], pad: int) -> Rollout:
    def cat(tensors, left: bool):
        width = max(t.shape[1] for t in tensors)
        return torch.cat([F.pad(t, (width - t.shape[1], 0) if left else (0, width - t.shape[1]))
                          for t in tensors])

    p_ids = cat([p.prompt_ids for p in parts], True)
    p_mask = cat([p.prompt_mask for p in parts], True)
    r_ids = cat([p.response_ids for p in parts], False)
    r_mask = cat([p.response_mask for p in parts], False)
    p_ids = p_ids.masked_fill(p_mask == 0, pad)
    r_ids = r_ids.masked_fill(r_mask == 0, pad)
    return Rollout(sum((p.prompts for p in parts), []), sum((p.responses for p in parts), []),
                   p_ids, p_mask, r_ids, r_mask)


def forward_response(model, rollout: Rollout) -> torch.Tensor:
    """Logits (B, T, V) that predict each response token (prompt and padding included in context)."""
    ids = torch.cat([rollout.prompt_ids, rollout.response_ids], dim=1)
    mask = torch.cat([rollout.prompt_mask, rollout.response_mask], dim=1)
    if ids.shape[0] == 0:
        raise ValueError("empty rollout: nothing to score.")
    logits = model(input_ids=ids, attention_mask=mask, position_ids=_position_ids(mask)).logits
    P, T = rollout.prompt_ids.shape[1], rollout.response_ids.shape[1]
    return logits[:, P - 1:P - 1 + T]  # position t predicts token t+1


def gather_logps(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[label] per position, zero where ``mask`` is 0: (B, T, V) → (B, T)."""
    if logits.shape[:2] != labels.shape or labels.shape != mask.shape:
        raise ValueError(f"shapes do not fit: logits {tuple(logits.shape)}, labels "
                         f"{tuple(labels.shape)}, mask {tuple(mask.shape)}; expected (B,T,V), (B,T), (B,T).")
    logps = torch.log_softmax(logits.float(), dim=-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    return logps * mask


def token_logps(model, rollout: Rollout) -> torch.Tensor:
    """Per-token log π(y_t | x, y_<t) of the rollout's response tokens, (B, T), 0 on padding.

    Gradients flow through ``model`` unless called under ``torch.no_grad()``.
    """
    return gather_logps(forward_response(model, rollout), rollout.response_ids, rollout.response_mask)


def sequence_logps(model, rollout: Rollout) -> torch.Tensor:
    """log π(y | x) = Σ_t log π(y_t | x, y_<t) over response tokens, (B,)."""
    return token_logps(model, rollout).sum(-1)


@torch.no_grad()
def batched_token_logps(model, rollout: Rollout, batch_size: int = 128) -> torch.Tensor:
    """:func:`token_logps` without gradients, in chunks (for references and evaluation)."""
    chunks = [token_logps(model, rollout.select(list(range(i, min(i + batch_size, len(rollout))))))
              for i in range(0, len(rollout), batch_size)]
    return torch.cat(chunks)
