"""Unit tests for shared_utils.rewards (Bradley-Terry loss, encoding, training, cached reward models)."""
import math

import pytest
import torch

from shared_utils import models, rewards, world

CPU = torch.device("cpu")


# --------------------------------------------------------------------------- the loss
def test_bradley_terry_loss_matches_formula_and_margin():
    g = torch.Generator().manual_seed(0)
    c, r = torch.randn(7, generator=g, dtype=torch.float64), torch.randn(7, generator=g, dtype=torch.float64)
    m = torch.rand(7, generator=g, dtype=torch.float64)
    expected = -torch.log(torch.sigmoid(c - r)).mean()
    assert torch.allclose(rewards.bradley_terry_loss(c, r), expected, atol=1e-12)
    assert torch.allclose(rewards.bradley_terry_loss(c, r, m), -torch.log(torch.sigmoid(c - r - m)).mean(), atol=1e-12)
    assert torch.allclose(rewards.bradley_terry_loss(c, r, 0.5), -torch.log(torch.sigmoid(c - r - 0.5)).mean(), atol=1e-12)
    # two-class cross-entropy with the chosen response as the label
    ce = torch.nn.functional.cross_entropy(torch.stack([c, r], 1), torch.zeros(7, dtype=torch.long))
    assert torch.allclose(rewards.bradley_terry_loss(c, r), ce, atol=1e-12)


def test_bradley_terry_loss_is_stable_and_has_the_right_gradient():
    c = torch.tensor([100.0, -100.0, 0.0], requires_grad=True)
    r = torch.zeros(3)
    loss = rewards.bradley_terry_loss(c, r)
    assert torch.isfinite(loss)
    assert math.isclose(loss.item(), (0.0 + 100.0 + math.log(2)) / 3, rel_tol=1e-5)
    loss.backward()
    # d/dc −log σ(c) / B = −σ(−c) / B
    assert torch.allclose(c.grad, -torch.sigmoid(-c.detach()) / 3, atol=1e-7)


def test_bradley_terry_loss_validates():
    with pytest.raises(ValueError, match=r"\(B,\)"):
        rewards.bradley_terry_loss(torch.zeros(3), torch.zeros(2))
    with pytest.raises(ValueError, match="empty"):
        rewards.bradley_terry_loss(torch.zeros(0), torch.zeros(0))
    with pytest.raises(ValueError, match="margin"):
        rewards.bradley_terry_loss(torch.zeros(3), torch.zeros(3), torch.zeros(2))


def test_preference_accuracy_counts_ties_half():
    c = torch.tensor([1.0, 0.0, 2.0, -1.0])
    r = torch.tensor([0.0, 0.0, 3.0, -2.0])
    assert rewards.preference_accuracy(c, r) == pytest.approx((1 + 0.5 + 0 + 1) / 4)
    with pytest.raises(ValueError):
        rewards.preference_accuracy(c, r[:2])


def test_ranking_to_pairs():
    assert rewards.ranking_to_pairs(["a", "b", "c"]) == [("a", "b"), ("a", "c"), ("b", "c")]
    assert len(rewards.ranking_to_pairs(list(range(6)))) == 15
    assert rewards.ranking_to_pairs(["a", "b", "a", "c"]) == [("a", "b"), ("a", "c"), ("b", "c")]
    assert rewards.ranking_to_pairs(["a"]) == [] and rewards.ranking_to_pairs([]) == []


def test_gold_accuracy_skips_gold_ties():
    acc = rewards.gold_accuracy(torch.tensor([1.0, 0.0, 5.0]), torch.tensor([0.0, 1.0, 0.0]),
                                torch.tensor([2.0, 1.0, 3.0]), torch.tensor([1.0, 1.0, 4.0]))
    assert acc == pytest.approx(0.5)  # pair 2 is a gold tie; pair 1 right, pair 3 wrong
    with pytest.raises(ValueError, match="undefined"):
        rewards.gold_accuracy(torch.ones(2), torch.zeros(2), torch.ones(2), torch.ones(2))


# --------------------------------------------------------------------------- encoding and scoring
@pytest.fixture(scope="module")
def tiny_rm(tiny_sft, tiny_cache):
    torch.manual_seed(0)
    return models.reward_model_from(models.sft_model_path("test", root=tiny_cache, device=CPU), CPU)


def test_encode_texts_matches_trl_tokenization(tiny_rm):
    _, tok = tiny_rm
    prompts = [world.format_prompt("How can I sleep better?")] * 2
    responses = [" Keep a regular bedtime.", " Okay."]
    ids, mask = rewards.encode_texts(tok, prompts, responses)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        expected = tok(text=p + r + tok.eos_token)["input_ids"]  # what trl's _tokenize produces
        n = int(mask[i].sum())
        assert ids[i, :n].tolist() == expected and ids[i, n - 1].item() == tok.eos_token_id
        assert (ids[i, n:] == tok.pad_token_id).all() and mask[i, :n].all()
    with pytest.raises(ValueError, match="prompts"):
        rewards.encode_texts(tok, prompts, responses[:1])


def test_score_reads_the_last_real_token_and_is_batch_invariant(tiny_rm):
    model, tok = tiny_rm
    ds = world.preference_dataset(6, seed=3)
    prompts, responses = list(ds["prompt"]), list(ds["chosen"])
    batched = rewards.score(model, tok, prompts, responses, batch_size=6)
    assert batched.shape == (6,) and not batched.requires_grad
    one_by_one = torch.cat([rewards.score(model, tok, [p], [r]) for p, r in zip(prompts, responses)])
    assert torch.allclose(batched, one_by_one, atol=1e-5)
    with pytest.raises(ValueError):
        rewards.score(model, tok, [], [])


# --------------------------------------------------------------------------- training and cache
@pytest.mark.slow
def test_train_reward_model_fits_pairs_and_changes_parameters(tiny_rm):
    model, tok = tiny_rm
    model = models.frozen_copy(model).requires_grad_(True)
    train = world.preference_dataset(256, seed=11)
    before = [p.detach().clone() for p in model.parameters()]
    start = rewards.evaluate_reward_model(model, tok, train)
    calls = []

    def loss_fn(c, r, margin=None):
        calls.append(c.shape[0])
        return rewards.bradley_terry_loss(c, r, margin)

    hist = rewards.train_reward_model(model, tok, train, epochs=3, lr=1e-3, batch_size=32, device=CPU,
                                      loss_fn=loss_fn, eval_dataset=train)
    assert len(calls) == len(hist["loss"]) == 24 and calls[0] == 32
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert hist["eval"]["loss"] < start["loss"] - 0.02          # fits its training pairs
    assert hist["eval"]["accuracy"] > start["accuracy"]
    assert not model.training


def test_train_reward_model_validates(tiny_rm):
    model, tok = tiny_rm
    with pytest.raises(ValueError, match="columns"):
        rewards.train_reward_model(model, tok, world.prompt_dataset(4), epochs=1)
    with pytest.raises(ValueError, match="lr"):
        rewards.train_reward_model(model, tok, world.preference_dataset(4), epochs=1, lr=0)


@pytest.mark.slow
def test_cached_reward_model_loads_frozen_in_eval_mode(tiny_cache):
    path = rewards.reward_model_path("harmless", preset="test", root=tiny_cache, device=CPU)
    assert path == rewards.reward_model_path("harmless", preset="test", root=tiny_cache, device=CPU)
    metrics = rewards.reward_model_metrics(path)
    assert set(metrics["eval"]) >= {"accuracy", "gold_accuracy", "loss"}
    model, tok = rewards.load_reward_model("harmless", preset="test", root=tiny_cache, device=CPU)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    _, held_out = rewards.preference_splits("harmless", "test")
    again = rewards.evaluate_reward_model(model, tok, held_out)
    assert again["accuracy"] == pytest.approx(metrics["eval"]["accuracy"], abs=1e-6)
    with pytest.raises(ValueError, match="attribute"):
        rewards.reward_model_path("funny", preset="test", root=tiny_cache)
