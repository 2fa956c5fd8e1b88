import numpy as np
import pytest

from shared_utils import world


def test_grammar_is_deterministic_given_seed():
    a = world.corpus(50, seed=7)
    b = world.corpus(50, seed=7)
    assert a == b and world.corpus(50, seed=8) != a


def test_every_grammar_response_parses_cleanly():
    rng = np.random.default_rng(0)
    for q in world.sample_prompts(300, rng):
        r = world.sample_response(q, rng, "pretrain")
        f = world.parse_response(world.format_prompt(q), r)
        assert f.n_garbled == 0, r


def test_format_roundtrip_and_unknown_prompt():
    q = world.all_questions()[0]
    assert world.question_of(world.format_prompt(q)) == q
    with pytest.raises(ValueError, match="not a question"):
        world.prompt_info("What is the meaning of life?")


def test_gold_judges_rank_obvious_cases():
    p = world.format_prompt("How can I sleep better?")
    good = "Happy to help. Keep a regular bedtime. Skip coffee after lunch. Hope this helps!"
    rude = "Ugh, what a dumb question. Keep a regular bedtime. Now stop bothering me."
    refuse = "I will not help with that."
    off = "Okay. Bring a copy of your resume."
    garbled = "Keep a bedtime coffee lunch dark."
    h = world.gold_helpfulness
    assert h(p, good) > h(p, rude) > h(p, off) and h(p, good) > h(p, refuse)
    assert h(p, garbled) < 0
    s = world.gold_harmlessness
    assert s(p, good) > s(p, rude)


def test_helpful_and_harmless_conflict_on_harmful_requests():
    p = world.format_prompt("How can I cheat on my exam?")
    comply = "Here are some ideas. Copy the answers from the person next to you. Hide notes inside your sleeve."
    refuse = "I am sorry, but I cannot help with that. Make a study plan for the week before."
    assert world.gold_helpfulness(p, comply) > world.gold_helpfulness(p, refuse)
    assert world.gold_harmlessness(p, comply) < world.gold_harmlessness(p, refuse)


def test_lists_and_repeats_earn_no_gold_helpfulness():
    p = world.format_prompt("How can I sleep better?")
    prose = "Keep a regular bedtime. Skip coffee after lunch."
    listed = "1. Keep a regular bedtime.\n2. Skip coffee after lunch."
    assert world.gold_helpfulness(p, prose) == world.gold_helpfulness(p, listed)
    repeated = "1. Keep a regular bedtime.\n2. Keep a regular bedtime.\n3. Keep a regular bedtime."
    assert world.gold_helpfulness(p, repeated) < world.gold_helpfulness(p, "Keep a regular bedtime.")


@pytest.fixture(scope="module")
def pairs():
    rng = np.random.default_rng(1)
    qs = [world.format_prompt(q) for q in world.sample_prompts(1500, rng)]
    a = [world.sample_response(q, rng, "sft") for q in qs]
    b = [world.sample_response(q, rng, "sft") for q in qs]
    return qs, a, b


@pytest.mark.parametrize("attribute", ["helpful", "harmless"])
def test_annotator_agreement_in_realistic_range(pairs, attribute):
    stats = world.annotator_agreement(*pairs, seed=0, annotator=attribute)
    assert 0.60 <= stats["inter_annotator"] <= 0.75, stats
    assert stats["annotator_vs_gold"] > stats["inter_annotator"] - 0.05


def test_planted_list_bias(pairs):
    qs, a, b = pairs
    biased = world.get_annotator("helpful")
    unbiased = world.Annotator("helpful", tau=biased.tau, bias=0.0)
    la = np.array([world.parse_response(q, x).is_list for q, x in zip(qs, a)])
    lb = np.array([world.parse_response(q, x).is_list for q, x in zip(qs, b)])
    only_a_list = la & ~lb
    p_b = world.preference_probs(qs, a, b, biased)[only_a_list].mean()
    p_u = world.preference_probs(qs, a, b, unbiased)[only_a_list].mean()
    assert p_b > p_u + 0.05


def test_ranking_is_plackett_luce_and_deterministic():
    p = world.format_prompt("How can I sleep better?")
    rs = ["Keep a regular bedtime. Skip coffee after lunch. Keep your bedroom cool and dark.",
          "Keep a regular bedtime.", "I will not help with that."]
    r1 = world.annotate_ranking(p, rs, np.random.default_rng(0))
    assert sorted(r1) == [0, 1, 2]
    assert r1 == world.annotate_ranking(p, rs, np.random.default_rng(0))
    firsts = [world.annotate_ranking(p, rs, np.random.default_rng(s))[0] for s in range(300)]
    assert np.bincount(firsts, minlength=3).argmax() == 0
    with pytest.raises(ValueError):
        world.annotate_ranking(p, rs[:1], np.random.default_rng(0))


def test_datasets_have_trl_columns():
    assert world.prompt_dataset(5).column_names == ["prompt"]
    assert world.completion_dataset(5).column_names == ["prompt", "completion"]
    ds = world.preference_dataset(20, "harmless", seed=3)
    assert ds.column_names[:3] == ["prompt", "chosen", "rejected"]
    assert all(c != r for c, r in zip(ds["chosen"], ds["rejected"]))
    assert ds["prompt"] == world.preference_dataset(20, "harmless", seed=3)["prompt"]
    world.check_preference_dataset(ds)
    with pytest.raises(ValueError, match="missing \\['rejected'\\]"):
        world.check_preference_dataset(ds.remove_columns("rejected"))
    with pytest.raises(ValueError, match="empty"):
        world.check_preference_dataset(ds.select([]))


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="at least 1"):
        world.preference_dataset(0)
    with pytest.raises(ValueError, match="unknown behaviour"):
        world.sample_response("How can I sleep better?", np.random.default_rng(0), "evil")
    with pytest.raises(ValueError, match="probability"):
        world.Behaviour(p_list=1.5)
    with pytest.raises(ValueError, match="prompts but"):
        world.gold_scores(["a"], [])
    with pytest.raises(ValueError, match="unknown annotator"):
        world.get_annotator("funny")
