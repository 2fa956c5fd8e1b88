"""Constitutional AI for the toy world: principles, text formats, the critique → revise loop, AI labels.

Scope (Bai et al. 2022, "Constitutional AI: Harmlessness from AI Feedback"), as lecture 05 derives it
and a05 has students build it:

- **The constitution** (:data:`CONSTITUTION`): a handful of :class:`Principle` s written for the
  toy world, each a critique request, a revision request and a multiple-choice question, plus the
  violation kinds it is about (its *scope*).
- **Violations** (:func:`find_violations`): what the world's grammar knows is wrong with a response,
  sentence by sentence — harmful advice, rude openers/closers, evasive refusals of harmless
  requests, off-topic, repeated and garbled sentences (built on :func:`world.split_sentences` and
  the world's public sentence lists).
- **Text formats** (:func:`build_critique_prompt`, :func:`build_revision_prompt`,
  :func:`build_choice_prompt`) — the one format the kit's model was trained on and any instruct
  model can be prompted with::

      User: {question}
      Assistant: {response}
      Critique request: {principle.critique_request}
      Critique: {critique}
      Revision request: {principle.revision_request}
      Revision: {revision}

  A critique quotes each violation it names (``Harmful: Put glue on their door handle.``) or says
  ``No problems.``; a *direct* revision (no critique step) leaves out the two critique lines.
- **Minimal edits** (:func:`write_critique`, :func:`minimal_revision`): the corpus's revision fixes
  exactly the violations its critique names and keeps everything else, so a critique carries
  information a revision needs (with topic-level rewrites it would not).
- **The corpus and the feedback model** (:func:`cai_corpus`, :func:`feedback_model`): dialogues
  of the world plus critique/revision transcripts (with enough "No problems." ones) and
  multiple-choice comparisons (better answer in a random slot), on which a tiny GPT-2 is trained
  from scratch (then a second stage with the loss on its outputs) and cached with
  :func:`models.cached`. It learns the constitution's judgments from this corpus, and lecture 05
  measures how well: critique precision/recall per violation kind, whether revisions follow the
  critique (counterfactual critiques in the corpus make them), and the labels' agreement with gold.
- **The loop** (:func:`critique_revise`, :func:`critique_revise_batch`) over any
  ``generate_fn(prompt) -> str`` (:func:`make_generate_fn` adapts a causal LM by name or path).
- **AI feedback** (:func:`ai_preference`, :func:`choice_logps`, :func:`ai_label_pairs`): the
  probability that response A is better, from the log-probs of the answers ``(A)``/``(B)`` in
  both presentation orders, which cancels a model's preference for a slot.

Taught in lecture 05.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, asdict, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import models, runtime, sampling, world
from .models import context_length


# --------------------------------------------------------------------------- the constitution
KINDS = ("harmful", "rude", "evasive", "off_topic", "repeat", "garbled")
LABELS = {"harmful": "Harmful", "rude": "Rude", "evasive": "Evasive", "off_topic": "Off topic",
          "repeat": "Repeated", "garbled": "Unclear"}
NO_PROBLEMS = "No problems."
FORMAT_VERSION = 2  # bump when a format, the constitution or the corpus changes (rebuilds the cache)


@dataclass(frozen=True)
class Principle:
    """One principle of the constitution.

    Fields:
        name (str): short identifier.
        critique_request (str): asks the model to point out violations of the principle.
        revision_request (str): asks the model to rewrite the response accordingly.
        choice_question (str): the multiple-choice question comparing two responses.
        scope (tuple[str, ...]): the violation kinds (from :data:`KINDS`) the principle is about.
    """
    name: str
    critique_request: str
    revision_request: str
    choice_question: str
    scope: tuple = ()

    def __post_init__(self):
        unknown = set(self.scope) - set(KINDS)
        if unknown or not self.scope:
            raise ValueError(f"Principle.scope must be a non-empty tuple of kinds from {KINDS}; "
                             f"got {self.scope!r}.")
        for name in ("critique_request", "revision_request", "choice_question"):
            text = getattr(self, name)
            if not text.strip() or "\n" in text:
                raise ValueError(f"Principle.{name} must be one non-empty line of text.")


CONSTITUTION: tuple[Principle, ...] = (
    Principle("harm", "Point out any harmful advice in the response.",
              "Remove the harmful advice and decline the request.",
              "Which response is less harmful?", ("harmful",)),
    Principle("rude", "Point out anything rude in the response.",
              "Remove the rude parts.",
              "Which response is more polite?", ("rude",)),
    Principle("general", "Point out anything harmful, rude or toxic in the response.",
              "Remove everything harmful, rude or toxic.",
              "Which response is less harmful, rude or toxic?", ("harmful", "rude")),
    Principle("evasive", "Point out any refusal of a harmless request.",
              "Answer the harmless request instead of refusing it.",
              "Which response is more helpful without being harmful?", ("evasive",)),
    Principle("focus", "Point out advice that is off topic, repeated or unclear.",
              "Remove the off-topic, repeated or unclear parts.",
              "Which response stays more on topic?", ("off_topic", "repeat", "garbled")),
)
HARMLESSNESS = tuple(p for p in CONSTITUTION if p.name in ("harm", "rude", "general"))


def get_principles(names: Sequence[str] | None = None) -> list[Principle]:
    """Principles of :data:`CONSTITUTION` by name (all of them for ``None``)."""
    by_name = {p.name: p for p in CONSTITUTION}
    if names is None:
        return list(CONSTITUTION)
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(f"unknown principles {unknown}; choose from {sorted(by_name)}.")
    return [by_name[n] for n in names]


# --------------------------------------------------------------------------- violations
@dataclass(frozen=True)
class Violation:
    """One violating sentence of a response: its kind (from :data:`KINDS`) and the sentence."""
    kind: str
    sentence: str


def _sentence_kinds() -> dict[str, str]:
    """What each sentence of the world's grammar is, from the world's public lists."""
    table = {}
    for spec in world.TOPICS.values():
        table.update({s: "item" for s in spec["items"]})
    for spec in world.HARMFUL.values():
        table.update({s: "harmful_item" for s in spec["items"]})
        table.update({s: "alternative" for s in spec["alternatives"]})
    for tone in ("polite", "neutral", "rude"):
        table.update({s: tone for s in world.OPENERS[tone] + world.CLOSERS[tone]})
    table.update({s: "refusal" for s in world.REFUSALS})
    table.update({s: "deferral" for s in world.DEFERRALS})
    return table


_KINDS_OF = _sentence_kinds()
_TONE = ("polite", "neutral", "rude")


def _topic_items(info: world.PromptInfo) -> list[str]:
    return list(world.HARMFUL[info.topic]["items"] if info.harmful else world.TOPICS[info.topic]["items"])


def find_violations(prompt: str, response: str) -> list[Violation]:
    """Every violating sentence of ``response`` to ``prompt``, in order of appearance.

    harmful: a harmful item (any topic); rude: a rude opener or closer; evasive: a refusal of a
    benign request; off_topic: an advice item of another topic; repeat: a sentence said before;
    garbled: a sentence the grammar does not know. Consistent with :func:`world.parse_response`.
    """
    info = world.prompt_info(prompt)
    own = set(_topic_items(info))
    sentences, _ = world.split_sentences(response)
    out, seen = [], set()
    for s in sentences:
        kind = _KINDS_OF.get(s, "garbled")
        if kind in ("item", "harmful_item", "alternative") and s in seen:
            out.append(Violation("repeat", s))
        elif kind == "harmful_item":
            out.append(Violation("harmful", s))
        elif kind == "item" and s not in own:
            out.append(Violation("off_topic", s))
        elif kind == "rude":
            out.append(Violation("rude", s))
        elif kind == "refusal" and not info.harmful:
            out.append(Violation("evasive", s))
        elif kind == "garbled":
            out.append(Violation("garbled", s))
        seen.add(s)
    return out


def severity(prompt: str, response: str, principle: Principle) -> float:
    """How badly ``response`` violates ``principle``: 2 per harmful item, 1 per other violation in
    its scope (the constitution's own judgment, used to label the corpus's comparisons)."""
    v = [x for x in find_violations(prompt, response) if x.kind in principle.scope]
    return float(sum(2.0 if x.kind == "harmful" else 1.0 for x in v))


# --------------------------------------------------------------------------- critiques and minimal edits
def write_critique(violations: Sequence[Violation]) -> str:
    """The critique that names ``violations``: ``'Rude: Fine, whatever. Harmful: ...'`` or ``'No problems.'``."""
    if not violations:
        return NO_PROBLEMS
    return " ".join(f"{LABELS[v.kind]}: {v.sentence}" for v in violations)


_LABEL_RE = re.compile("(" + "|".join(re.escape(l) for l in LABELS.values()) + "): ")


def parse_critique(critique: str) -> list[Violation]:
    """Inverse of :func:`write_critique`: the violations a critique names (``[]`` for none)."""
    kind_of = {l: k for k, l in LABELS.items()}
    parts = _LABEL_RE.split(critique.strip())
    return [Violation(kind_of[parts[i]], parts[i + 1].strip()) for i in range(1, len(parts) - 1, 2)
            if parts[i + 1].strip()]


def _structure(sentences: list[str]) -> tuple[str | None, list[str], str | None]:
    """Split sentences into (opener, body, closer): tone sentences at either end frame the body."""
    opener = sentences[0] if sentences and _KINDS_OF.get(sentences[0]) in _TONE else None
    rest = sentences[1:] if opener else list(sentences)
    closer = rest[-1] if rest and _KINDS_OF.get(rest[-1]) in _TONE else None
    body = rest[:-1] if closer else rest
    return opener, body, closer


def minimal_revision(prompt: str, response: str, violations: Sequence[Violation]) -> str:
    """``response`` with exactly the named ``violations`` fixed and everything else kept.

    Rude, off-topic, repeated and garbled sentences are deleted; harmful items are deleted and,
    where the first one stood, the response to a harmful request declines (a refusal unless it has
    one) and offers the topic's safe alternatives (in a benign answer a stray harmful item is just
    deleted); an evasive refusal is replaced by the first two on-topic items
    the response does not have. A body left empty gets one on-topic item (benign request) or a
    refusal (harmful request). List formatting is kept while the body has two or more sentences.
    """
    info = world.prompt_info(prompt)
    sentences, is_list = world.split_sentences(response)
    opener, body, closer = _structure(sentences)
    named = {(v.kind, v.sentence) for v in violations}
    kinds_of = {}
    for v in find_violations(prompt, response):
        kinds_of.setdefault(v.sentence, []).append(v.kind)

    def flagged(s: str, kind: str) -> bool:
        return (kind, s) in named and kind in kinds_of.get(s, [])

    own = _topic_items(info)
    opener = None if opener and flagged(opener, "rude") else opener
    closer = None if closer and flagged(closer, "rude") else closer
    new, seen, declined = [], set(), False
    for s in body:
        repeat = s in seen
        seen.add(s)
        if (repeat and flagged(s, "repeat")) or flagged(s, "off_topic") or flagged(s, "garbled") \
                or flagged(s, "rude"):
            continue
        if flagged(s, "harmful") and not repeat:
            if not declined and info.harmful:   # a stray harmful item in a benign answer is just deleted
                has_refusal = any(_KINDS_OF.get(x) == "refusal" for x in body)
                new += ([] if has_refusal else [world.REFUSALS[1]])
                new += [a for a in world.HARMFUL[info.topic]["alternatives"] if a not in body]
                declined = True
            continue
        if flagged(s, "harmful"):
            continue
        if flagged(s, "evasive"):
            new += [x for x in own if x not in body][:2]
            continue
        new.append(s)
    if not any(_KINDS_OF.get(s) in ("item", "harmful_item", "alternative", "refusal") for s in new):
        new = ([world.REFUSALS[1]] if info.harmful else [x for x in own if x not in new][:1]) + new
    keep_list = is_list and len(new) >= 2
    return world.render(opener, new, keep_list, closer)


# --------------------------------------------------------------------------- text formats
CRITIQUE_REQUEST, CRITIQUE, REVISION_REQUEST, REVISION = (
    "Critique request:", "Critique:", "Revision request:", "Revision:")


def _check_text(name: str, value) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {type(value).__name__}.")
    return value.strip()


def build_critique_prompt(conversation: str, response: str, principle: Principle) -> str:
    """The prompt that asks for a critique of ``response`` under ``principle``.

    ``conversation`` ends with ``'Assistant:'`` (:func:`world.format_prompt`); the prompt is
    ``'{conversation} {response}\\nCritique request: {request}\\nCritique:'``.
    """
    conversation, response = _check_text("conversation", conversation), _check_text("response", response)
    return f"{conversation} {response}\n{CRITIQUE_REQUEST} {principle.critique_request}\n{CRITIQUE}"


def build_revision_prompt(conversation: str, response: str, critique: str | None,
                          principle: Principle) -> str:
    """The prompt that asks for a revision of ``response`` in light of ``critique``.

    The critique prompt followed by ``' {critique}\\nRevision request: {request}\\nRevision:'``;
    with ``critique=None`` a *direct* revision prompt without the two critique lines.
    """
    if critique is None:
        conversation, response = _check_text("conversation", conversation), _check_text("response", response)
        head = f"{conversation} {response}"
    else:
        head = f"{build_critique_prompt(conversation, response, principle)} {_check_text('critique', critique)}"
    return f"{head}\n{REVISION_REQUEST} {principle.revision_request}\n{REVISION}"


ANSWERS = (" (A)", " (B)")


def build_choice_prompt(conversation: str, response_a: str, response_b: str, principle: Principle) -> str:
    """The multiple-choice prompt; the answer is one of :data:`ANSWERS` (``' (A)'`` / ``' (B)'``)::

        Question: {principle.choice_question}
        User: {question}
        (A) {response_a}
        (B) {response_b}
        Answer:
    """
    question = world.question_of(_check_text("conversation", conversation))
    a, b = _check_text("response_a", response_a), _check_text("response_b", response_b)
    return (f"Question: {principle.choice_question}\n{world.USER_TAG} {question}\n"
            f"(A) {a}\n(B) {b}\nAnswer:")


# --------------------------------------------------------------------------- the corpus
def _garble(sentence: str, rng: np.random.Generator) -> str:
    """A sentence the grammar does not know: the first few words of ``sentence``, then a period."""
    words = sentence.rstrip(".!?").split()
    k = int(rng.integers(1, max(2, len(words) - 1)))
    out = " ".join(words[:k]) + "."
    return out if out not in _KINDS_OF else words[0] + " " + words[0].lower() + "."


# the grammar's mix with more of every flaw, so that critiques have something to find
CORPUS_BEHAVIOUR = world.Behaviour(p_polite=0.35, p_rude=0.3, p_refuse_benign=0.15, p_comply_harmful=0.7,
                                   p_defer=0.15, p_list=0.4, p_off_topic=0.2, p_repeat=0.1)


def corpus_response(question: str, rng: np.random.Generator, p_clean: float = 0.2,
                    p_garble: float = 0.15, behaviour=CORPUS_BEHAVIOUR) -> str:
    """A response for the corpus's transcripts: a grammar response, sometimes with one sentence
    garbled (as a tiny model's samples are), sometimes with every violation already fixed (so that
    enough transcripts find "No problems." — what a second round sees)."""
    response = world.sample_response(question, rng, behaviour)
    prompt = world.format_prompt(question)
    if rng.random() < p_garble:
        sentences, is_list = world.split_sentences(response)
        opener, body, closer = _structure(sentences)
        if body:
            i = int(rng.integers(len(body)))
            body[i] = _garble(body[i], rng)
            response = world.render(opener, body, is_list and len(body) >= 2, closer)
    if rng.random() < p_clean:
        response = minimal_revision(prompt, response, find_violations(prompt, response))
    return response


@dataclass
class CorpusConfig:
    """The mix of the feedback model's training corpus (fractions of ``n_examples`` rows).

    Fields:
        n_examples (int, 24000): training rows in all.
        frac_transcripts (float, 0.25): critique → revision transcripts (loss on every token).
        frac_direct (float, 0.05): direct revisions, no critique step.
        frac_counterfactual (float, 0.2): revisions after a critique that names a random subset
            (none … all) of the violations — loss on the revision only — so the revision must
            follow the critique: in a transcript the critique is a function of the response and
            the principle, and a model can learn to revise without reading it.
        frac_choice (float, 0.2): multiple-choice comparisons, better answer in a random slot.
        p_harmful (float, 0.5): share of harmful requests in transcripts and comparisons.
        p_clean (float, 0.2): share of transcripts whose response is already fixed ("No problems.").
        p_garble (float, 0.15): share of responses with one garbled sentence.
    The rest are the world's dialogues (``world.corpus``).
    """
    n_examples: int = 24000
    frac_transcripts: float = 0.25
    frac_direct: float = 0.05
    frac_counterfactual: float = 0.2
    frac_choice: float = 0.2
    p_harmful: float = 0.5
    p_clean: float = 0.2
    p_garble: float = 0.15

    def __post_init__(self):
        fracs = [self.frac_transcripts, self.frac_direct, self.frac_counterfactual, self.frac_choice]
        if self.n_examples < 10 or min(fracs) < 0 or sum(fracs) > 1:
            raise ValueError("CorpusConfig needs n_examples >= 10 and non-negative fractions summing to <= 1.")
        for name in ("p_harmful", "p_clean", "p_garble"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"CorpusConfig.{name} must be a probability in [0, 1].")


def transcript(prompt: str, response: str, principle: Principle, violations: Sequence[Violation] | None = None,
               direct: bool = False) -> tuple[str, str]:
    """``(prefix, revision)`` of one training transcript; the critique names ``violations``
    (default: the response's violations in the principle's scope) and the revision fixes exactly those."""
    if violations is None:
        violations = [v for v in find_violations(prompt, response) if v.kind in principle.scope]
    critique = None if direct else write_critique(violations)
    return (build_revision_prompt(prompt, response, critique, principle),
            " " + minimal_revision(prompt, response, violations))


def choice_example(prompt: str, rng: np.random.Generator, cfg: CorpusConfig) -> tuple[str, str] | None:
    """``(choice prompt, ' (A)' or ' (B)')`` for two responses that the principle ranks differently;
    the better response sits in slot (A) or (B) with probability 1/2 each. None if they tie."""
    principle = CONSTITUTION[int(rng.integers(len(CONSTITUTION)))]
    q = world.question_of(prompt)
    a = corpus_response(q, rng, cfg.p_clean, cfg.p_garble)
    b = corpus_response(q, rng, cfg.p_clean, cfg.p_garble)
    sa, sb = severity(prompt, a, principle), severity(prompt, b, principle)
    if sa == sb:
        return None
    better, worse = (a, b) if sa < sb else (b, a)
    if rng.random() < 0.5:
        return build_choice_prompt(prompt, better, worse, principle), ANSWERS[0]
    return build_choice_prompt(prompt, worse, better, principle), ANSWERS[1]


def _corpus_principle(prompt: str, response: str, rng: np.random.Generator, p_relevant: float = 0.9) -> Principle:
    """A principle for a corpus transcript: with probability ``p_relevant`` one that the response
    violates (if any), else any — so that about a third of transcripts find "No problems."."""
    kinds = {v.kind for v in find_violations(prompt, response)}
    relevant = [p for p in CONSTITUTION if kinds & set(p.scope)]
    pool = relevant if relevant and rng.random() < p_relevant else list(CONSTITUTION)
    return pool[int(rng.integers(len(pool)))]


def cai_corpus(cfg: CorpusConfig, seed: int = 0) -> dict[str, list]:
    """The feedback model's corpus: ``{'full': [texts with loss on every token],
    'prompted': [(prompt, completion) with loss on the completion only]}``."""
    rng = np.random.default_rng(seed)
    n = cfg.n_examples
    counts = {k: int(round(getattr(cfg, f"frac_{k}") * n)) for k in ("transcripts", "direct", "counterfactual", "choice")}
    full = world.corpus(max(1, n - sum(counts.values())), seed=seed + 1, behaviour="pretrain")
    prompted = []
    qs = world.sample_prompts(n, rng, cfg.p_harmful)
    for i in range(counts["transcripts"] + counts["direct"] + counts["counterfactual"]):
        prompt = world.format_prompt(qs[i])
        response = corpus_response(qs[i], rng, cfg.p_clean, cfg.p_garble)
        principle = _corpus_principle(prompt, response, rng)
        if i < counts["transcripts"]:
            full.append("".join(transcript(prompt, response, principle)))
        elif i < counts["transcripts"] + counts["direct"]:
            full.append("".join(transcript(prompt, response, principle, direct=True)))
        else:
            every = find_violations(prompt, response)    # name 0 … all of them, any kinds
            keep = set(rng.permutation(len(every))[:int(rng.integers(len(every) + 1))].tolist())
            some = [v for i, v in enumerate(every) if i in keep]
            prompted.append(transcript(prompt, response, principle, some))
    made = 0
    while made < counts["choice"]:
        ex = choice_example(world.format_prompt(qs[int(rng.integers(n))]), rng, cfg)
        if ex is not None:
            prompted.append(ex)
            made += 1
    return {"full": full, "prompted": prompted}


# --------------------------------------------------------------------------- the feedback model
@dataclass(frozen=True)
class FeedbackPreset:
    """The CAI feedback model: a tiny GPT-2 trained from scratch on :func:`cai_corpus`.

    Fields:
        model (models.Preset): size and context (the transcripts need ``n_positions`` ≥ 256).
        corpus (CorpusConfig): the training mix.
        epochs (float, 1.0): passes over the corpus.   lr (float, 3e-3): peak AdamW learning rate.
        batch_size (int, 64): rows per step (examples are packed into rows of n_positions tokens).
    """
    model: models.Preset
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    epochs: float = 1.0
    lr: float = 3e-3
    batch_size: int = 64

    def __post_init__(self):
        if self.model.n_positions < 256:
            raise ValueError("the feedback model needs n_positions >= 256 to fit a whole transcript.")
        if self.epochs <= 0 or self.lr <= 0 or self.batch_size < 1:
            raise ValueError("epochs and lr must be positive and batch_size at least 1.")


# Small batches and two passes: copying a response with one sentence changed (a minimal edit) needs
# many optimizer steps before a 2-layer model learns it; with 16-row batches and one pass the
# revisions ignored their critiques (lecture 05 §4.3 measures this).
FEEDBACK_PRESETS = {
    "fast": FeedbackPreset(models.Preset(n_layer=2, n_embd=128, n_head=4, n_positions=256),
                           CorpusConfig(n_examples=14000), epochs=2.0, lr=2e-3, batch_size=4),
    "full": FeedbackPreset(models.Preset(n_layer=4, n_embd=256, n_head=4, n_positions=256),
                           CorpusConfig(n_examples=80000), epochs=2.0, lr=1e-3, batch_size=16),
    "test": FeedbackPreset(models.Preset(n_layer=1, n_embd=32, n_head=2, n_positions=256, vocab_size=400),
                           CorpusConfig(n_examples=600), epochs=1.0, batch_size=8),
}


def _feedback_preset(preset) -> tuple[str, FeedbackPreset]:
    name = runtime.get_mode() if preset is None else preset
    if name not in FEEDBACK_PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(FEEDBACK_PRESETS)}.")
    return name, FEEDBACK_PRESETS[name]


def pack_examples(tokenizer, prompts: Sequence[str], completions: Sequence[str], loss_on_prompt: Sequence[bool],
                  max_len: int) -> dict[str, torch.Tensor]:
    """Examples ``prompt + completion + eos`` packed greedily into rows of at most ``max_len`` tokens.

    The :func:`models.tokenize_dialogues` layout (``input_ids``, ``attention_mask``, ``labels`` with
    −100 where no loss) plus ``position_ids`` that restart at 0 for every example, without the
    padding that short dialogues next to long transcripts would cost. :func:`models.lm_loss` turns
    restarting positions into a block-diagonal causal mask, so an example never attends to the one
    packed before it (it would otherwise learn to copy sentences from an unrelated transcript) and
    sees the positions it will see at inference. The loss covers the whole example where
    ``loss_on_prompt[i]``, else its completion only. An example longer than ``max_len`` is truncated.
    """
    if not (len(prompts) == len(completions) == len(loss_on_prompt)) or not prompts:
        raise ValueError("need equally many (≥ 1) prompts, completions and loss_on_prompt flags.")
    p_ids = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    c_ids = tokenizer(list(completions), add_special_tokens=False)["input_ids"]
    rows, row, lab, pos = [], [], [], []
    for p, c, whole in zip(p_ids, c_ids, loss_on_prompt):
        ids = (p + c + [tokenizer.eos_token_id])[:max_len]
        labels = ids if whole else ([-100] * len(p) + ids[len(p):])[:max_len]
        if len(row) + len(ids) > max_len:
            rows.append((row, lab, pos)); row, lab, pos = [], [], []
        row, lab, pos = row + ids, lab + labels, pos + list(range(len(ids)))
    rows.append((row, lab, pos))
    L = max(len(r) for r, _, _ in rows)
    out = torch.full((len(rows), L), tokenizer.pad_token_id, dtype=torch.long)
    labels = torch.full((len(rows), L), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), L), dtype=torch.long)
    positions = torch.zeros((len(rows), L), dtype=torch.long)
    for i, (r, l, q) in enumerate(rows):
        out[i, :len(r)] = torch.tensor(r)
        labels[i, :len(r)] = torch.tensor(l)
        mask[i, :len(r)] = 1
        positions[i] = torch.tensor(q + list(range(L - len(r))))   # the padding tail is a segment of its own
    return {"input_ids": out, "attention_mask": mask, "labels": labels, "position_ids": positions}


@dataclass(frozen=True)
class FocusPreset:
    """A second training stage of the feedback model on a transcript-heavy corpus, with the loss on
    what the model must write (critique, revision, answer) — not on the conversation it reads.

    Fields: corpus (CorpusConfig), epochs (float), lr (float), batch_size (int).
    """
    corpus: CorpusConfig
    epochs: float = 1.0
    lr: float = 1.5e-3
    batch_size: int = 16


FOCUS_PRESETS = {
    "fast": FocusPreset(CorpusConfig(n_examples=6000, frac_transcripts=0.35, frac_direct=0.05,
                                     frac_counterfactual=0.3, frac_choice=0.3), epochs=2.0, batch_size=4),
    "full": FocusPreset(CorpusConfig(n_examples=20000, frac_transcripts=0.35, frac_direct=0.05,
                                     frac_counterfactual=0.3, frac_choice=0.3), epochs=2.0, lr=5e-4,
                        batch_size=16),
}


def _loss_on_outputs(corpus: dict[str, list]) -> list[tuple[str, str, bool]]:
    """(prompt, completion, loss_on_prompt) rows: transcripts lose their conversation from the loss."""
    rows = []
    for text in corpus["full"]:
        for marker in (f"\n{CRITIQUE}", f"\n{REVISION}"):
            if marker in text:
                cut = text.index(marker) + len(marker)
                rows.append((text[:cut], text[cut:], False))
                break
        else:
            rows.append((text, "", True))
    return rows + [(a, b, False) for a, b in corpus["prompted"]]


def feedback_model_path(preset: str | None = None, seed: int = 0, root: Path | None = None,
                        device=None) -> Path:
    """Folder of the cached CAI feedback model (built on first use; see :data:`FEEDBACK_PRESETS`).

    Stage 1 trains a tiny GPT-2 from scratch on :func:`cai_corpus` (its tokenizer is trained on the
    same corpus, so the formats' words are single tokens); stage 2 (:data:`FOCUS_PRESETS`, where the
    preset has one) continues on a transcript-heavy corpus with the loss on the model's outputs.
    """
    name, p = _feedback_preset(preset)
    device = device or runtime.get_device()
    stage1 = _stage1_path(p, seed, root, device)
    focus = FOCUS_PRESETS.get(name)
    if focus is None:
        return stage1

    def build(folder: Path):
        model, tok = models.load_causal_lm(stage1, device)
        rows = _loss_on_outputs(cai_corpus(focus.corpus, seed + 1))
        data = pack_examples(tok, *zip(*rows), max_len=p.model.n_positions)
        losses = models.train_lm(model, data, focus.epochs, focus.batch_size, focus.lr, device, seed + 1,
                                 "CAI feedback model, stage 2")
        model.save_pretrained(folder); tok.save_pretrained(folder)
        (folder / "losses.json").write_text(json.dumps(models.training_losses(stage1) + losses))

    return models.cached("cai_feedback_focus", {"stage1": stage1.name, "focus": asdict(focus), "seed": seed},
                         build, root)


def _stage1_path(p: FeedbackPreset, seed: int, root, device) -> Path:
    """Folder of stage 1 of the feedback model (see :func:`feedback_model_path`)."""

    def build(folder: Path):
        corpus = cai_corpus(p.corpus, seed)
        pairs = [(t, "", True) for t in corpus["full"]] + [(a, b, False) for a, b in corpus["prompted"]]
        tok = models.train_tokenizer([a + b for a, b, _ in pairs], p.model.vocab_size)
        model = models.new_model(p.model, tok, seed).to(device)
        data = pack_examples(tok, *zip(*pairs), max_len=p.model.n_positions)
        losses = models.train_lm(model, data, p.epochs, p.batch_size, p.lr, device, seed, "CAI feedback model")
        model.save_pretrained(folder); tok.save_pretrained(folder)
        (folder / "losses.json").write_text(json.dumps(losses))

    config = {"preset": asdict(p), "seed": seed, "formats": FORMAT_VERSION}
    return models.cached("cai_feedback", config, build, root)


def feedback_model(preset: str | None = None, seed: int = 0, device=None, root: Path | None = None):
    """``(model, tokenizer)`` of the cached CAI feedback model, in eval mode, parameters frozen."""
    device = device or runtime.get_device()
    return models.load_causal_lm(feedback_model_path(preset, seed, root, device), device, trainable=False)


# --------------------------------------------------------------------------- the loop
GenerateFn = Callable[[str], str]


def critique_revise_batch(generate_batch: Callable[[list[str]], list[str]], conversations: Sequence[str],
                          responses: Sequence[str], principles: Sequence[Principle], n_rounds: int,
                          rng: np.random.Generator, critique: bool = True) -> list[list[dict]]:
    """:func:`critique_revise` for many conversations at once, one batched call per step.

    ``generate_batch(prompts) -> texts``. Round k draws one principle per conversation with
    ``rng.integers(len(principles), size=N)`` (for N = 1 the same draw as :func:`critique_revise`).
    With ``critique=False`` each round is a direct revision (its ``critique`` is ``None``).
    Returns, per conversation, the list of rounds (see :func:`critique_revise`).
    """
    if len(conversations) != len(responses):
        raise ValueError(f"{len(conversations)} conversations but {len(responses)} responses.")
    if not principles:
        raise ValueError("need at least one principle to critique against.")
    if not isinstance(n_rounds, (int, np.integer)) or n_rounds < 0:
        raise ValueError(f"n_rounds must be a non-negative int, got {n_rounds!r}.")
    current = [_check_text("response", r) for r in responses]
    history: list[list[dict]] = [[] for _ in conversations]
    for _ in range(n_rounds):
        picks = [principles[int(i)] for i in rng.integers(len(principles), size=len(conversations))]
        critiques = [None] * len(current)
        if critique:
            critiques = [c.strip() for c in generate_batch(
                [build_critique_prompt(x, r, p) for x, r, p in zip(conversations, current, picks)])]
        revisions = [r.strip() for r in generate_batch(
            [build_revision_prompt(x, r, c, p) for x, r, c, p in zip(conversations, current, critiques, picks)])]
        for h, p, r, c, v in zip(history, picks, current, critiques, revisions):
            h.append({"principle": p, "response": r, "critique": c, "revision": v})
        current = revisions
    return history


def critique_revise(generate_fn: GenerateFn, conversation: str, response: str,
                    principles: Sequence[Principle], n_rounds: int, rng: np.random.Generator) -> list[dict]:
    """Critique and revise ``response`` ``n_rounds`` times (Sec. 3.1 of Bai et al. 2022).

    Round k: draw ``principle = principles[rng.integers(len(principles))]``; ``critique =
    generate_fn(critique prompt).strip()``; ``revision = generate_fn(revision prompt).strip()``;
    the next round critiques this revision. Returns one dict per round with keys
    ``principle``, ``response`` (the text critiqued), ``critique``, ``revision``.
    """
    if not isinstance(conversation, str) or not isinstance(response, str):
        raise ValueError("conversation and response must be strings.")
    return critique_revise_batch(lambda prompts: [generate_fn(p) for p in prompts], [conversation],
                                 [response], principles, n_rounds, rng)[0]


STOP = ("\nCritique request:", "\nRevision request:", "\nUser:", "\nQuestion:")


def cut_at_stop(text: str, stop: Sequence[str] = STOP) -> str:
    """``text`` up to the first stop string (the start of the format's next line), stripped."""
    cut = min([i for i in (text.find(s) for s in stop) if i >= 0], default=len(text))
    return text[:cut].strip()


def fit_prompt(tokenizer, prompt: str, max_tokens: int | None) -> str:
    """``prompt`` cut to its last ``max_tokens`` tokens (unchanged if it fits or ``max_tokens`` is None).

    A tiny model's context is short; a long critique or list can overflow it. Keeping the end
    keeps the request the model must answer."""
    if max_tokens is None:
        return prompt
    if max_tokens < 1:
        raise ValueError(f"no room for the prompt: max_tokens={max_tokens}; lower max_new_tokens.")
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    return prompt if len(ids) <= max_tokens else tokenizer.decode(ids[-max_tokens:])


def make_generate_fn(model, tokenizer, max_new_tokens: int = 96, temperature: float = 0.0,
                     seed: int = 0, batch_size: int = 128, chat_template: bool = False,
                     stop: Sequence[str] = STOP):
    """``generate_fn(prompt) -> str`` over any causal LM + tokenizer (the kit's or an instruct model).

    Greedy by default; the text is cut where the format's next line would start (``stop``), as
    the kit's model writes whole transcripts; prompts too long for the model's context keep their
    last tokens (:func:`fit_prompt`). The returned function also has
    ``.batch(prompts) -> list[str]`` (one batched :func:`sampling.generate` call). With
    ``chat_template`` the prompt is sent as one user message through the tokenizer's chat template
    (for instruct models on Colab; e.g. ``models.load_causal_lm('Qwen/Qwen2.5-0.5B-Instruct')``).
    """
    if chat_template and not getattr(tokenizer, "chat_template", None):
        raise ValueError("this tokenizer has no chat template; use chat_template=False.")
    g = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)

    limit = context_length(model)
    budget = None if limit is None else limit - max_new_tokens

    def wrap(p: str) -> str:
        if chat_template:
            p = tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                              add_generation_prompt=True)
        return fit_prompt(tokenizer, p, budget)

    def batch(prompts: list[str]) -> list[str]:
        if not prompts:
            return []
        r = sampling.generate(model, tokenizer, [wrap(p) for p in prompts], max_new_tokens, temperature,
                              generator=g, batch_size=batch_size)
        return [cut_at_stop(t, stop) for t in r.responses]

    def generate_fn(prompt: str) -> str:
        return batch([prompt])[0]

    generate_fn.batch = batch
    return generate_fn


def critique_scores(conversations: Sequence[str], responses: Sequence[str], critiques: Sequence[str],
                    principles: Sequence[Principle]) -> dict[str, dict[str, float]]:
    """Precision and recall of critiques per violation kind, against the world's violations.

    A critique of response i under principle i should name exactly the response's violations in
    the principle's scope; a named (kind, sentence) counts as a true positive if the response has
    it. Returns ``{kind: {'precision', 'recall', 'named', 'present'}}`` (NaN where undefined), and
    ``'no_problems'``: the share of critiques of violation-free responses that say "No problems.".
    """
    if not (len(conversations) == len(responses) == len(critiques) == len(principles)) or not conversations:
        raise ValueError("need equally many (≥ 1) conversations, responses, critiques and principles.")
    tp = {k: 0 for k in KINDS}; named = dict(tp); present = dict(tp)
    clean, clean_ok = 0, 0
    for c, r, crit, p in zip(conversations, responses, critiques, principles):
        truth = [v for v in find_violations(c, r) if v.kind in p.scope]
        said = parse_critique(crit)
        if not truth:
            clean += 1
            clean_ok += crit.strip() == NO_PROBLEMS
        left = list(truth)
        for v in said:
            named[v.kind] += 1
            if v in left:
                tp[v.kind] += 1
                left.remove(v)
        for v in truth:
            present[v.kind] += 1
    nan = float("nan")
    out = {k: {"precision": tp[k] / named[k] if named[k] else nan,
               "recall": tp[k] / present[k] if present[k] else nan,
               "named": named[k], "present": present[k]} for k in KINDS}
    out["no_problems"] = {"rate": clean_ok / clean if clean else nan, "n": clean}
    return out


# --------------------------------------------------------------------------- AI feedback
def ai_preference(logp_a_first, logp_b_first):
    """P(A ≻ B) from answer log-probs in both presentation orders: (..., 2), (..., 2) → (...) or float.

    ``logp_a_first = [log p('(A)'), log p('(B)')]`` with A shown in slot (A);
    ``logp_b_first`` the same with B shown in slot (A). Each order gives a normalized choice
    probability (softmax over the two answers); A's probability is the mean of "A chosen in
    slot (A)" and "A chosen in slot (B)", so a model that always picks one slot gets 0.5
    (Sec. 4.1 of Bai et al. 2022 normalize over the choices and ensemble; here over orders).
    Returns a float for one pair, a tensor of shape (...) for a batch.
    """
    a = torch.as_tensor(logp_a_first, dtype=torch.float64)
    b = torch.as_tensor(logp_b_first, dtype=torch.float64)
    if a.shape != b.shape or a.dim() == 0 or a.shape[-1] != 2:
        raise ValueError(f"both inputs need shape (..., 2) = [logp of '(A)', logp of '(B)'], "
                         f"got {tuple(a.shape)} and {tuple(b.shape)}.")
    p_first = torch.softmax(a, -1)[..., 0]    # A shown first and chosen as (A)
    p_second = torch.softmax(b, -1)[..., 1]   # A shown second and chosen as (B)
    p = 0.5 * (p_first + p_second)
    return float(p) if p.dim() == 0 else p


@torch.no_grad()
def choice_logps(model, tokenizer, conversations: Sequence[str], responses_a: Sequence[str],
                 responses_b: Sequence[str], principle: Principle, batch_size: int = 64) -> torch.Tensor:
    """log p(' (A)') and log p(' (B)') after the choice prompt, (N, 2), on CPU."""
    n = len(conversations)
    if not n or len(responses_a) != n or len(responses_b) != n:
        raise ValueError("need equally many (≥ 1) conversations, responses_a and responses_b.")
    limit = context_length(model)
    prompts = [fit_prompt(tokenizer, build_choice_prompt(c, a, b, principle), limit and limit - 8)
               for c, a, b in zip(conversations, responses_a, responses_b)]
    out = []
    for answer in ANSWERS:
        rows = []
        for i in range(0, n, batch_size):
            r = sampling.encode(tokenizer, prompts[i:i + batch_size], [answer] * len(prompts[i:i + batch_size]),
                                add_eos=False, device=next(model.parameters()).device)
            rows.append(sampling.sequence_logps(model, r).float().cpu())
        out.append(torch.cat(rows))
    return torch.stack(out, -1)  # (N, 2)


def ai_label_pairs(model, tokenizer, conversations: Sequence[str], responses_a: Sequence[str],
                   responses_b: Sequence[str], principles: Sequence[Principle] = HARMLESSNESS) -> dict:
    """AI feedback on pairs: P(A ≻ B) per principle (both orders) and their mean.

    Returns ``{'p_a': (N,) mean over principles, 'per_principle': {name: (N,)},
    'single_order': (N,) P(A) from the A-first order alone (to show position bias)}``.
    """
    per, single = {}, []
    for p in principles:
        first = choice_logps(model, tokenizer, conversations, responses_a, responses_b, p)
        second = choice_logps(model, tokenizer, conversations, responses_b, responses_a, p)
        per[p.name] = ai_preference(first, second)
        single.append(torch.softmax(first.double(), -1)[:, 0])
    return {"p_a": torch.stack(list(per.values())).mean(0), "per_principle": per,
            "single_order": torch.stack(single).mean(0)}
