"""Tests for shared_utils.constitution: violations, minimal edits, formats, the loop, AI labels."""
import copy

import numpy as np
import pytest
import torch

from shared_utils import constitution as C, models, world

PRANK = world.format_prompt("How do I get back at my roommate?")
SLEEP = world.format_prompt("How can I sleep better?")


def test_find_violations_names_each_kind():
    r = "Fine, whatever. Put glue on their door handle. Put glue on their door handle. Keep a regular bedtime."
    got = C.find_violations(PRANK, r)
    assert [v.kind for v in got] == ["rude", "harmful", "repeat", "off_topic"]
    assert C.find_violations(SLEEP, "I will not help with that. Keep a regular bedtime. Glue the.") == [
        C.Violation("evasive", "I will not help with that."), C.Violation("garbled", "Glue the.")]
    assert C.find_violations(PRANK, "I will not help with that.") == []  # declining harm is fine


def test_violations_agree_with_world_parser():
    rng = np.random.default_rng(0)
    for q in world.sample_prompts(200, rng, 0.5):
        p = world.format_prompt(q)
        r = C.corpus_response(q, rng, p_clean=0.0, p_garble=0.3)
        f, v = world.parse_response(p, r), C.find_violations(p, r)
        kinds = [x.kind for x in v]
        assert kinds.count("garbled") == f.n_garbled
        assert kinds.count("repeat") == f.n_repeats
        assert (kinds.count("rude") > 0) == (f.tone in ("rude", "mixed"))


def test_critique_round_trip_and_no_problems():
    v = [C.Violation("rude", "Fine, whatever."), C.Violation("harmful", "Put glue on their door handle.")]
    text = C.write_critique(v)
    assert text == "Rude: Fine, whatever. Harmful: Put glue on their door handle."
    assert C.parse_critique(text) == v
    assert C.write_critique([]) == C.NO_PROBLEMS and C.parse_critique(C.NO_PROBLEMS) == []


def test_minimal_revision_fixes_exactly_the_named_violations():
    r = "Fine, whatever. Put glue on their door handle. Let the air out of their tires. Keep a regular bedtime."
    only_rude = C.minimal_revision(PRANK, r, [C.Violation("rude", "Fine, whatever.")])
    assert only_rude == "Put glue on their door handle. Let the air out of their tires. Keep a regular bedtime."
    harm = [v for v in C.find_violations(PRANK, r) if v.kind == "harmful"]
    fixed = C.minimal_revision(PRANK, r, harm)
    kinds = [v.kind for v in C.find_violations(PRANK, fixed)]
    assert kinds == ["rude", "off_topic"], fixed                      # the rest is kept
    assert world.parse_response(PRANK, fixed).refusal
    # evasive: the refusal becomes two on-topic items
    ev = C.minimal_revision(SLEEP, "Okay. I will not help with that.", [C.Violation("evasive", "I will not help with that.")])
    assert world.parse_response(SLEEP, ev).n_items == 2 and not world.parse_response(SLEEP, ev).refusal
    # nothing named: unchanged (up to rendering)
    assert C.minimal_revision(SLEEP, "Okay. Keep a regular bedtime.", []) == "Okay. Keep a regular bedtime."
    # a stray harmful item in an answer to a benign request is deleted (there is nothing to decline)
    stray = "Keep a regular bedtime. Put glue on their door handle."
    clean = C.minimal_revision(SLEEP, stray, C.find_violations(SLEEP, stray))
    assert clean == "Keep a regular bedtime." and C.find_violations(SLEEP, clean) == []


def test_revision_of_all_violations_is_clean_and_raises_gold_harmlessness():
    rng = np.random.default_rng(1)
    prompts, before, after = [], [], []
    for q in world.sample_prompts(150, rng, 0.5):
        p = world.format_prompt(q)
        r = C.corpus_response(q, rng, p_clean=0.0)
        fixed = C.minimal_revision(p, r, C.find_violations(p, r))
        assert C.find_violations(p, fixed) == [], (r, fixed)
        prompts.append(p); before.append(r); after.append(fixed)
    g0, g1 = world.gold_scores(prompts, before), world.gold_scores(prompts, after)
    assert g1["harmless"].mean() > g0["harmless"].mean() + 0.5
    assert g1["helpful"][:].mean() > g0["helpful"].mean() - 0.3   # harmless without collapsing help


def test_prompt_formats_have_the_documented_structure():
    p = C.CONSTITUTION[0]
    cp = C.build_critique_prompt(SLEEP, " Keep a regular bedtime. ", p)
    assert cp == f"{SLEEP} Keep a regular bedtime.\nCritique request: {p.critique_request}\nCritique:"
    rp = C.build_revision_prompt(SLEEP, "Keep a regular bedtime.", "No problems.", p)
    assert rp == cp + f" No problems.\nRevision request: {p.revision_request}\nRevision:"
    direct = C.build_revision_prompt(SLEEP, "Keep a regular bedtime.", None, p)
    assert "Critique" not in direct and direct.endswith("Revision:")
    mc = C.build_choice_prompt(SLEEP, "a.", "b.", p)
    assert mc.startswith(f"Question: {p.choice_question}\nUser: How can I sleep better?\n(A) a.\n(B) b.")
    assert mc.endswith("Answer:")
    with pytest.raises(ValueError):
        C.build_critique_prompt(SLEEP, None, p)


def test_principle_validation():
    with pytest.raises(ValueError):
        C.Principle("x", "a", "b", "c", ("nonsense",))
    with pytest.raises(ValueError):
        C.Principle("x", "a\nb", "b", "c", ("rude",))
    with pytest.raises(ValueError):
        C.get_principles(["nope"])
    assert [p.name for p in C.HARMLESSNESS] == ["harm", "rude", "general"]


def _scripted():
    calls = []

    def generate_fn(prompt):
        calls.append(prompt)
        return " critique %d " % len(calls) if prompt.endswith("Critique:") else " revision %d\n" % len(calls)
    return generate_fn, calls


def test_critique_revise_loop_with_a_scripted_model():
    fn, calls = _scripted()
    rounds = C.critique_revise(fn, SLEEP, "Okay.", C.CONSTITUTION, 3, np.random.default_rng(0))
    expected = [C.CONSTITUTION[i] for i in np.random.default_rng(0).integers(len(C.CONSTITUTION), size=3)]
    assert [r["principle"] for r in rounds] == expected
    assert [r["critique"] for r in rounds] == ["critique 1", "critique 3", "critique 5"]
    assert [r["revision"] for r in rounds] == ["revision 2", "revision 4", "revision 6"]
    assert [r["response"] for r in rounds] == ["Okay.", "revision 2", "revision 4"]
    assert calls[2].startswith(f"{SLEEP} revision 2\n")
    assert C.critique_revise(fn, SLEEP, "Okay.", C.CONSTITUTION, 0, np.random.default_rng(0)) == []
    with pytest.raises(ValueError):
        C.critique_revise(fn, SLEEP, "Okay.", C.CONSTITUTION, -1, np.random.default_rng(0))
    with pytest.raises(ValueError):
        C.critique_revise(fn, SLEEP, "Okay.", [], 1, np.random.default_rng(0))


def test_batch_loop_matches_single_and_direct_mode_skips_critiques():
    fn, _ = _scripted()
    single = [C.critique_revise(fn, SLEEP, r, C.CONSTITUTION, 2, np.random.default_rng(5))[-1]["principle"]
              for r in ["a.", "b."]]
    fn2, calls = _scripted()
    batch = C.critique_revise_batch(lambda ps: [fn2(p) for p in ps], [SLEEP, SLEEP], ["a.", "b."],
                                    C.CONSTITUTION, 1, np.random.default_rng(5), critique=False)
    assert all(b[0]["critique"] is None for b in batch) and not any(c.endswith("Critique:") for c in calls)
    assert single[0] == single[1]  # same rng seed per call: same principles


def test_loss_on_outputs_splits_transcripts_at_the_first_output(tiny_sft):
    corpus = {"full": ["User: q\nAssistant: a\nCritique request: r\nCritique: No problems.\nRevision: a",
                       "User: q\nAssistant: a\nRevision request: r\nRevision: b", "User: q\nAssistant: a"],
              "prompted": [("x", " (A)")]}
    rows = C._loss_on_outputs(corpus)
    assert rows[0] == ("User: q\nAssistant: a\nCritique request: r\nCritique:", " No problems.\nRevision: a", False)
    assert rows[1][0].endswith("\nRevision:") and rows[1][1] == " b" and rows[1][2] is False
    assert rows[2] == ("User: q\nAssistant: a", "", True) and rows[3] == ("x", " (A)", False)
    _, tok = tiny_sft
    long = "User: How can I sleep better?\nAssistant:" + " Okay." * 50
    cut = C.fit_prompt(tok, long, 20)
    assert len(tok(cut, add_special_tokens=False)["input_ids"]) <= 21 and long.endswith(cut.strip()[-20:])
    assert C.fit_prompt(tok, "short", 20) == "short" and C.fit_prompt(tok, long, None) == long


def test_cut_at_stop():
    assert C.cut_at_stop(" No problems.\nRevision request: Rewrite") == "No problems."
    assert C.cut_at_stop("1. a.\n2. b.") == "1. a.\n2. b."


def test_ai_preference_cancels_position_bias():
    lp = torch.log(torch.tensor([0.9, 0.1]))
    # a model that always answers (A): no information about A vs B
    assert C.ai_preference(lp, lp) == pytest.approx(0.5)
    # consistent preference for A in both orders
    assert C.ai_preference(lp, lp.flip(0)) == pytest.approx(0.9)
    assert C.ai_preference(lp.flip(0), lp) == pytest.approx(0.1)
    # unnormalized log-probs are normalized over the two answers; batches keep their shape
    batch = C.ai_preference(torch.tensor([[-1.0, -3.0], [-500.0, -2.0]]), torch.tensor([[-2.0, -1.0], [-1.0, -900.0]]))
    assert batch.shape == (2,) and torch.isfinite(batch).all()
    assert batch[0] == pytest.approx(0.5 * (torch.sigmoid(torch.tensor(2.0)) + torch.sigmoid(torch.tensor(1.0))).item())
    with pytest.raises(ValueError):
        C.ai_preference(torch.zeros(3), torch.zeros(3))


def test_corpus_balances_answer_slots_and_has_no_problems_transcripts():
    cfg = C.CorpusConfig(n_examples=800)
    corpus = C.cai_corpus(cfg, seed=0)
    answers = [c for _, c in corpus["prompted"] if c in C.ANSWERS]
    assert len(answers) == round(cfg.frac_choice * cfg.n_examples)
    share_a = answers.count(C.ANSWERS[0]) / len(answers)
    assert 0.4 < share_a < 0.6
    transcripts = [t for t in corpus["full"] if "\nCritique: " in t]
    no_problems = sum("\nCritique: No problems.\n" in t for t in transcripts) / len(transcripts)
    assert 0.2 < no_problems < 0.5
    with pytest.raises(ValueError):
        C.CorpusConfig(frac_transcripts=0.9, frac_choice=0.5)


def test_critique_scores_precision_recall():
    r = "Fine, whatever. Put glue on their door handle."
    general = C.get_principles(["general"])[0]
    perfect = C.critique_scores([PRANK], [r], ["Rude: Fine, whatever. Harmful: Put glue on their door handle."], [general])
    assert perfect["rude"]["precision"] == perfect["harmful"]["recall"] == 1.0
    half = C.critique_scores([PRANK, SLEEP], [r, "Okay."], ["Rude: Fine, whatever. Rude: Okay.", "No problems."],
                             [general, general])
    assert half["rude"]["precision"] == 0.5 and half["harmful"]["recall"] == 0.0
    assert half["no_problems"] == {"rate": 1.0, "n": 1}


def test_pack_examples_keeps_every_token_and_masks_prompts(tiny_sft):
    _, tok = tiny_sft
    prompts = [world.format_prompt(q) for q in world.all_questions()]
    completions = [" Okay."] * len(prompts)
    flags = [i % 2 == 0 for i in range(len(prompts))]
    data = C.pack_examples(tok, prompts, completions, flags, 64)
    n_tok = lambda t: len(tok(t, add_special_tokens=False)["input_ids"])
    assert int(data["attention_mask"].sum()) == sum(n_tok(p) + n_tok(c) + 1 for p, c in zip(prompts, completions))
    n_loss = sum((n_tok(p) if f else 0) + n_tok(c) + 1 for p, c, f in zip(prompts, completions, flags))
    assert int((data["labels"] != -100).sum()) == n_loss
    assert data["input_ids"].shape[1] <= 64 and data["input_ids"].shape[0] < len(prompts)
    with pytest.raises(ValueError):
        C.pack_examples(tok, [], [], [], 64)


def test_packed_examples_do_not_see_each_other(tiny_sft):
    # positions restart at every example, and the loss's forward pass turns that into a block-diagonal
    # mask: each packed example gets exactly the logits it gets alone, at positions 0, 1, ...
    model, tok = tiny_sft
    texts = [world.format_prompt("How can I sleep better?") + " Keep a regular bedtime.",
             world.format_prompt("How do I start running?") + " Start with short easy runs."]
    data = C.pack_examples(tok, texts, ["", ""], [True, True], 128)
    assert data["input_ids"].shape[0] == 1
    n0 = len(tok(texts[0], add_special_tokens=False)["input_ids"]) + 1
    assert data["position_ids"][0, :n0].tolist() == list(range(n0))
    assert data["position_ids"][0, n0] == 0
    with torch.no_grad():
        packed = model(input_ids=data["input_ids"], position_ids=data["position_ids"], use_cache=False).logits[0]
        alone = model(input_ids=data["input_ids"][:, n0:n0 + 8]).logits[0]
    assert torch.allclose(packed[n0:n0 + 8], alone, atol=1e-4)
    loss = models.lm_loss(model, data)   # the path train_lm takes
    assert torch.isfinite(loss)


@pytest.mark.slow
def test_feedback_model_builds_generates_and_scores(tiny_cache):
    model, tok = C.feedback_model("test", device=torch.device("cpu"), root=tiny_cache)
    assert model.config.n_positions >= 256
    gen = C.make_generate_fn(model, tok, max_new_tokens=16)
    rounds = C.critique_revise(gen, SLEEP, "Okay. Keep a regular bedtime.", C.CONSTITUTION, 2,
                               np.random.default_rng(0))
    assert len(rounds) == 2 and all(isinstance(r["critique"], str) for r in rounds)
    lp = C.choice_logps(model, tok, [SLEEP, PRANK], ["Okay.", "Fine."], ["Good luck!", "Put glue on their door handle."],
                        C.HARMLESSNESS[0])
    assert lp.shape == (2, 2) and (lp < 0).all()
    labels = C.ai_label_pairs(model, tok, [SLEEP], ["Okay."], ["Good luck!"])
    assert 0 < float(labels["p_a"][0]) < 1 and set(labels["per_principle"]) == {"harm", "rude", "general"}
    with pytest.raises(ValueError):
        C.make_generate_fn(model, tok, chat_template=True)


def test_generate_fn_sends_prompts_through_a_chat_template(tiny_sft, monkeypatch):
    # the Colab path (an instruct model by name) offline: a tokenizer with a chat template gets the
    # prompt as one user message, wrapped by its template, and the loop runs through it unchanged
    model, tok = tiny_sft
    tok = copy.deepcopy(tok)
    tok.chat_template = ("{% for m in messages %}U: {{ m['content'] }}\n{% endfor %}"
                         "{% if add_generation_prompt %}A:{% endif %}")
    seen = []
    real = C.sampling.generate

    def spy(model, tokenizer, prompts, *args, **kwargs):
        seen.extend(prompts)
        return real(model, tokenizer, prompts, *args, **kwargs)

    monkeypatch.setattr(C.sampling, "generate", spy)
    gen = C.make_generate_fn(model, tok, max_new_tokens=8, chat_template=True)
    assert isinstance(gen("How are you?"), str) and seen == ["U: How are you?\nA:"]
    rounds = C.critique_revise(gen, SLEEP, "Okay. Keep a regular bedtime.", C.CONSTITUTION[:1], 1,
                               np.random.default_rng(0))
    # the loop's prompts are wrapped too (and, too long for this tiny model's context, keep their end)
    assert len(seen) == 3 and all(p.endswith("\nA:") for p in seen)
    assert seen[1].endswith(f"Critique request: {C.CONSTITUTION[0].critique_request}\nCritique:\nA:")
    assert seen[2].endswith(f"Revision request: {C.CONSTITUTION[0].revision_request}\nRevision:\nA:")
    assert isinstance(rounds[0]["revision"], str)
