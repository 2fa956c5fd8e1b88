"""Unit tests for shared_utils.dpo (and the DPO helpers of shared_utils.bandit).

Tolerances: float64 math to 1e-10, model log-probs (float32) to 1e-5.
"""
import math

import pytest
import torch

from shared_utils import bandit, dpo, models, sampling, world


# --------------------------------------------------------------------------- sequence_logps
def _loop_logps(logits, labels, mask):
    out = []
    for b in range(labels.shape[0]):
        total = 0.0
        for t in range(1, labels.shape[1]):
            if mask[b, t]:
                total += torch.log_softmax(logits[b, t - 1].double(), -1)[labels[b, t]].item()
        out.append(total)
    return torch.tensor(out, dtype=torch.float64)


def test_sequence_logps_matches_a_loop_with_the_shift():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, 11, generator=g)
    labels = torch.randint(0, 11, (3, 7), generator=g)
    mask = torch.tensor([[0, 0, 1, 1, 1, 0, 0], [0, 1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0, 1]])
    got = dpo.sequence_logps(logits, labels, mask)
    assert got.shape == (3,)
    assert torch.allclose(got.double(), _loop_logps(logits, labels, mask), atol=1e-5)


def test_sequence_logps_ignores_padding_ids_and_accepts_bool_masks():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 5, 9, generator=g)
    labels = torch.randint(0, 9, (2, 5), generator=g)
    mask = torch.tensor([[0, 1, 1, 0, 0], [0, 1, 1, 1, 1]])
    other = labels.clone()
    other[0, 3:] = 0  # padding ids change, masked out
    assert torch.allclose(dpo.sequence_logps(logits, labels, mask), dpo.sequence_logps(logits, other, mask.bool()))


def test_sequence_logps_bad_shapes_raise():
    with pytest.raises(ValueError, match="shapes"):
        dpo.sequence_logps(torch.zeros(2, 5, 3), torch.zeros(2, 4, dtype=torch.long), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="at least 2"):
        dpo.sequence_logps(torch.zeros(2, 1, 3), torch.zeros(2, 1, dtype=torch.long), torch.ones(2, 1))


def test_sequence_logps_equals_sampling_on_the_model(tiny_sft):
    model, tok = tiny_sft
    prompts = [world.format_prompt("How can I sleep better?"), world.format_prompt("Any tips?")]
    chosen, rejected = [" Keep a regular bedtime.", " Sure."], [" No.", " Ugh, what a dumb question."]
    got_chosen, got_rejected = dpo.pair_logps(model, dpo.encode_pairs(tok, prompts, chosen, rejected))
    assert torch.allclose(got_chosen, sampling.sequence_logps(model, sampling.encode(tok, prompts, chosen)), atol=1e-5)
    assert torch.allclose(got_rejected, sampling.sequence_logps(model, sampling.encode(tok, prompts, rejected)),
                          atol=1e-5)


def test_too_long_pairs_raise_or_are_cut(tiny_sft):
    model, tok = tiny_sft
    long = " " + "Keep a regular bedtime. " * 40
    batch = dpo.encode_pairs(tok, ["User: hi\nAssistant:"], [long], [" No."])
    with pytest.raises(ValueError, match="max_length"):
        dpo.pair_logps(model, batch)
    limit = dpo.context_length(model)
    cut = dpo.encode_pairs(tok, ["User: hi\nAssistant:"], [long], [" No."], max_length=limit)
    assert cut["input_ids"].shape[1] == limit
    assert all(t.shape == (1,) for t in dpo.pair_logps(model, cut))
    with pytest.raises(ValueError, match="no room"):
        dpo.encode_pairs(tok, ["User: hi\nAssistant:"], [long], [" No."], max_length=2)


# --------------------------------------------------------------------------- dpo_loss
def test_dpo_loss_values_and_detached_rewards():
    pc = torch.tensor([-1.0, -3.0], requires_grad=True)
    pr = torch.tensor([-2.0, -1.0], requires_grad=True)
    rc, rr = torch.tensor([-1.5, -2.0]), torch.tensor([-1.5, -2.0])
    losses, cr, rj = dpo.dpo_loss(pc, pr, rc, rr, beta=0.5)
    h = torch.tensor([(-1.0 + 1.5) - (-2.0 + 1.5), (-3.0 + 2.0) - (-1.0 + 2.0)])
    assert torch.allclose(losses, -torch.log(torch.sigmoid(0.5 * h)), atol=1e-6)
    assert torch.allclose(cr, torch.tensor([0.25, -0.5])) and torch.allclose(rj, torch.tensor([-0.25, 0.5]))
    assert not cr.requires_grad and not rj.requires_grad and losses.requires_grad


def test_dpo_loss_gradient_is_the_papers_formula():
    """∇L = −β σ(r̂_l − r̂_w) [∇ log π(y_w) − ∇ log π(y_l)] (§4 of Rafailov et al. 2023)."""
    g = torch.Generator().manual_seed(2)
    pc, pr = (torch.randn(5, generator=g, dtype=torch.float64).requires_grad_() for _ in range(2))
    rc, rr = (torch.randn(5, generator=g, dtype=torch.float64) for _ in range(2))
    beta = 0.3
    losses, cr, rj = dpo.dpo_loss(pc, pr, rc, rr, beta)
    losses.sum().backward()
    weight = beta * torch.sigmoid(rj - cr)
    assert torch.allclose(pc.grad, -weight, atol=1e-12) and torch.allclose(pr.grad, weight, atol=1e-12)


def test_dpo_loss_is_finite_for_extreme_margins():
    big = torch.tensor([1e4, -1e4], dtype=torch.float32)
    losses, _, _ = dpo.dpo_loss(big, -big, torch.zeros(2), torch.zeros(2), beta=1.0)
    assert torch.isfinite(losses).all()
    assert losses[0].item() == pytest.approx(0.0, abs=1e-6) and losses[1].item() == pytest.approx(2e4, rel=1e-6)


def test_dpo_loss_bad_inputs_raise():
    x = torch.zeros(3)
    with pytest.raises(ValueError, match="same shape"):
        dpo.dpo_loss(x, torch.zeros(2), x, x, 0.1)
    with pytest.raises(ValueError, match="beta"):
        dpo.dpo_loss(x, x, x, x, 0.0)
    with pytest.raises(ValueError):
        dpo.dpo_loss(x.tolist(), x, x, x, 0.1)


def test_reward_accuracy_and_win_rate():
    assert dpo.reward_accuracy(torch.tensor([1.0, 0.0, 2.0]), torch.tensor([0.0, 0.0, 3.0])) == pytest.approx(1 / 3)
    assert dpo.win_rate([1, 2, 3], [0, 2, 4]) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        dpo.win_rate([], [])


# --------------------------------------------------------------------------- bandit: DPO recovers π*
def test_bandit_implicit_reward_recovers_reward_up_to_log_z():
    g = torch.Generator().manual_seed(3)
    pi_ref = torch.softmax(torch.randn(5, generator=g, dtype=torch.float64), 0)
    r = torch.randn(5, generator=g, dtype=torch.float64)
    beta = 0.7
    pi_star = bandit.kl_optimum(pi_ref, r, beta)
    log_z = torch.logsumexp(pi_ref.log() + r / beta, 0)
    assert torch.allclose(bandit.implicit_reward(pi_star, pi_ref, beta) + beta * log_z, r, atol=1e-12)
    P = bandit.bradley_terry_probs(r)
    assert torch.allclose(P + P.T, torch.ones(5, 5, dtype=torch.float64))
    assert torch.allclose(P, bandit.bradley_terry_probs(bandit.implicit_reward(pi_star, pi_ref, beta)), atol=1e-12)


def test_bandit_minimizing_the_dpo_loss_gives_the_kl_optimum():
    g = torch.Generator().manual_seed(4)
    K, beta = 6, 0.5
    pi_ref = torch.softmax(torch.randn(K, generator=g, dtype=torch.float64), 0)
    r = torch.randn(K, generator=g, dtype=torch.float64)
    theta = torch.zeros(K, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([theta], max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-14,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = bandit.exact_dpo_loss(theta, pi_ref, bandit.bradley_terry_probs(r), beta)
        loss.backward()
        return loss

    opt.step(closure)
    assert torch.allclose(torch.softmax(theta, 0), bandit.kl_optimum(pi_ref, r, beta), atol=1e-6)


def test_exact_dpo_loss_rejects_a_wrong_preference_matrix():
    with pytest.raises(ValueError, match="matrix"):
        bandit.exact_dpo_loss(torch.zeros(3), torch.full((3,), 1 / 3), torch.zeros(2, 2), 0.1)


# --------------------------------------------------------------------------- config, wrapper, loop
def test_config_validation():
    for bad in ({"beta": 0.0}, {"lr": -1.0}, {"batch_size": 0}, {"steps": 0}, {"max_grad_norm": 0.0}):
        with pytest.raises(ValueError):
            dpo.DPOTrainConfig(**bad)
    assert set(dpo.DPO_PRESETS) == {"fast", "full"}


def test_encode_pairs_layout_and_errors(tiny_sft):
    _, tok = tiny_sft
    batch = dpo.encode_pairs(tok, ["User: hi\nAssistant:"] * 2, [" Hello.", " Hi there."], [" No.", " Go away."])
    assert batch["input_ids"].shape[0] == 4
    assert all(v.shape == batch["input_ids"].shape for v in batch.values())
    assert (batch["completion_mask"] <= batch["attention_mask"]).all()
    ends = batch["input_ids"][batch["completion_mask"].bool()]
    assert (ends == tok.eos_token_id).sum() == 4  # one eos per response
    with pytest.raises(ValueError):
        dpo.encode_pairs(tok, ["a"], [" b", " c"], [" d"])


def test_batch_loss_is_log2_when_policy_equals_ref(tiny_sft):
    model, tok = tiny_sft
    ref = models.frozen_copy(model)
    ds = world.preference_dataset(4, "helpful", seed=5)
    batch = dpo.encode_pairs(tok, ds["prompt"], ds["chosen"], ds["rejected"], max_length=dpo.context_length(model))
    loss, stats = dpo.dpo_batch_loss(model, ref, batch, 0.1)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-6)
    assert stats["accuracy"] == 0.0 and stats["margin"] == pytest.approx(0.0, abs=1e-6)


def test_dpo_train_refuses_the_policy_as_its_own_reference(tiny_sft):
    model, tok = tiny_sft
    with pytest.raises(ValueError, match="frozen"):
        dpo.dpo_train(model, model, tok, world.preference_dataset(4, seed=0), dpo.DPOTrainConfig(steps=1))
    with pytest.raises(ValueError, match="columns"):
        dpo.dpo_train(model, models.frozen_copy(model), tok, world.prompt_dataset(4), dpo.DPOTrainConfig(steps=1))


@pytest.mark.slow
def test_dpo_train_moves_parameters_and_raises_accuracy(tiny_sft):
    import copy
    model, tok = tiny_sft
    policy = copy.deepcopy(model)
    policy.requires_grad_(True)
    ref = models.frozen_copy(model)
    train = world.preference_dataset(256, "helpful", seed=6)
    held = world.preference_dataset(64, "helpful", seed=7)
    before = [p.detach().clone() for p in policy.parameters()]
    cfg = dpo.DPOTrainConfig(beta=0.1, lr=1e-3, batch_size=16, steps=20, eval_every=20)
    hist = dpo.dpo_train(policy, ref, tok, train, cfg, eval_dataset=held)
    assert any(not torch.equal(a, b) for a, b in zip(before, policy.parameters()))
    assert hist["eval_step"] == [0, 20]
    assert hist["eval_accuracy"][0] == 0.0 and hist["eval_accuracy"][-1] > 0.55
    assert hist["eval_loss"][-1] < math.log(2)
    assert not policy.training
    r = dpo.implicit_rewards(policy, ref, tok, held["prompt"][:8], held["chosen"][:8], cfg.beta)
    assert torch.allclose(r, dpo.evaluate_pairs(policy, ref, tok, held.select(range(8)), cfg.beta)["chosen_rewards"],
                          atol=1e-5)


def test_policy_report_of_the_reference_has_zero_kl(tiny_sft):
    model, tok = tiny_sft
    prompts = [world.format_prompt(q) for q in world.all_questions()[:4]]
    rep = dpo.policy_report(model, models.frozen_copy(model), tok, prompts, max_new_tokens=16)
    assert rep["kl"] == pytest.approx(0.0, abs=1e-5)
    assert len(rep["responses"]) == 4 and 0.0 <= rep["garbled"] <= 1.0
