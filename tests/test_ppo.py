"""Unit tests for shared_utils.ppo: KL estimators, penalized rewards, GAE, losses, config, the loop.

Tolerances: float64 exact formulas at 1e-10; Monte Carlo checks at 4 standard errors.
"""
import numpy as np
import pytest
import torch

from shared_utils import bandit, models, ppo, sampling


def _padded(B, T, seed, min_len=1):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(min_len, T + 1, (B,), generator=g)
    mask = (torch.arange(T)[None] < lengths[:, None]).long()
    return g, lengths, mask


# --------------------------------------------------------------------------- KL estimators
def test_kl_estimates_by_hand():
    logps = torch.tensor([[-1.0, -2.0]], dtype=torch.float64)
    ref = torch.tensor([[-1.5, -1.0]], dtype=torch.float64)
    k1, k2, k3 = ppo.kl_estimates(logps, ref)
    torch.testing.assert_close(k1, torch.tensor([[0.5, -1.0]], dtype=torch.float64))
    torch.testing.assert_close(k2, torch.tensor([[0.125, 0.5]], dtype=torch.float64))
    expected_k3 = torch.tensor([[np.exp(-0.5) - 1 + 0.5, np.exp(1.0) - 1 - 1.0]], dtype=torch.float64)
    torch.testing.assert_close(k3, expected_k3)
    assert (k3 >= 0).all()


def test_k1_and_k3_are_unbiased_for_exact_kl():
    g = torch.Generator().manual_seed(0)
    pi = torch.softmax(torch.randn(6, generator=g, dtype=torch.float64), 0)
    pi_ref = torch.softmax(torch.randn(6, generator=g, dtype=torch.float64), 0)
    exact = bandit.exact_kl(pi, pi_ref)
    y = torch.multinomial(pi, 200_000, replacement=True, generator=g)
    k1, k2, k3 = ppo.kl_estimates(pi.log()[y], pi_ref.log()[y])
    for k in (k1, k3):
        assert abs(k.mean() - exact) < 4 * k.std() / np.sqrt(len(y))
    assert k3.var() < k1.var()          # the control variate cuts variance here
    # exact expectations: E[k1] = E[k3] = KL
    probs_terms = [(pi * t).sum() for t in ppo.kl_estimates(pi.log(), pi_ref.log())]
    torch.testing.assert_close(probs_terms[0], exact)
    torch.testing.assert_close(probs_terms[2], exact)


def test_kl_estimates_shape_mismatch():
    with pytest.raises(ValueError):
        ppo.kl_estimates(torch.zeros(2, 3), torch.zeros(2, 4))


# --------------------------------------------------------------------------- penalized rewards
def test_kl_penalized_rewards_by_hand():
    logps = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -0.5, 9.0]])
    ref = torch.tensor([[-1.5, -1.0, -3.0], [-1.0, -0.5, 7.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    out = ppo.kl_penalized_rewards(torch.tensor([2.0, -1.0]), logps, ref, mask, beta=0.1)
    expected = torch.tensor([[-0.05, 0.1, 2.0], [-0.05, -1.0, 0.0]])
    torch.testing.assert_close(out, expected)


def test_kl_penalized_rewards_sum_is_shaped_sequence_reward():
    g, lengths, mask = _padded(5, 7, seed=1)
    logps, ref = -torch.rand(5, 7, generator=g), -torch.rand(5, 7, generator=g)
    r = torch.randn(5, generator=g)
    out = ppo.kl_penalized_rewards(r, logps, ref, mask, beta=0.3)
    torch.testing.assert_close(out.sum(-1), r - 0.3 * ((logps - ref) * mask).sum(-1))
    assert (out[mask == 0] == 0).all()
    assert not out.requires_grad


def test_kl_penalized_rewards_bad_inputs():
    with pytest.raises(ValueError):
        ppo.kl_penalized_rewards(torch.zeros(3), torch.zeros(2, 4), torch.zeros(2, 4), torch.ones(2, 4), 0.1)
    with pytest.raises(ValueError):
        ppo.kl_penalized_rewards(torch.zeros(2), torch.zeros(2, 4), torch.zeros(2, 4), torch.zeros(2, 4), 0.1)
    with pytest.raises(ValueError):
        ppo.kl_penalized_rewards(torch.zeros(2), torch.zeros(2, 4), torch.zeros(2, 4), torch.ones(2, 4), -1.0)


# --------------------------------------------------------------------------- GAE
def _gae_loop(rewards, values, lengths, gamma, lam):
    adv = torch.zeros_like(values)
    for i, n in enumerate(lengths.tolist()):
        for t in range(n):
            total = 0.0
            for l in range(n - t):
                v_next = values[i, t + l + 1] if t + l + 1 < n else 0.0
                delta = rewards[i, t + l] + gamma * v_next - values[i, t + l]
                total += (gamma * lam) ** l * delta
            adv[i, t] = total
    return adv


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.9, 0.5), (1.0, 1.0), (0.99, 0.0)])
def test_gae_matches_slow_loop(gamma, lam):
    g, lengths, mask = _padded(6, 9, seed=2)
    rewards = torch.randn(6, 9, generator=g, dtype=torch.float64) * mask
    values = torch.randn(6, 9, generator=g, dtype=torch.float64)        # garbage on padding too
    adv, ret = ppo.gae_advantages(rewards, values, mask, gamma, lam)
    expected = _gae_loop(rewards, values, lengths, gamma, lam)
    torch.testing.assert_close(adv, expected, atol=1e-10, rtol=0)
    torch.testing.assert_close(ret, (expected + values) * mask, atol=1e-10, rtol=0)


def test_gae_lambda_one_gives_reward_to_go():
    g, lengths, mask = _padded(4, 6, seed=3)
    rewards = torch.randn(4, 6, generator=g, dtype=torch.float64) * mask
    values = torch.randn(4, 6, generator=g, dtype=torch.float64) * mask
    _, ret = ppo.gae_advantages(rewards, values, mask, 1.0, 1.0)
    to_go = rewards.flip(-1).cumsum(-1).flip(-1) * mask
    torch.testing.assert_close(ret, to_go, atol=1e-10, rtol=0)


# --------------------------------------------------------------------------- losses
def test_whiten():
    g, _, mask = _padded(4, 5, seed=4)
    x = torch.randn(4, 5, generator=g, dtype=torch.float64) * 3 + 2
    w = ppo.whiten(x, mask)
    torch.testing.assert_close(ppo.masked_mean(w, mask), torch.tensor(0.0, dtype=torch.float64), atol=1e-10, rtol=0)
    torch.testing.assert_close(ppo.masked_mean(w ** 2, mask), torch.tensor(1.0, dtype=torch.float64), atol=1e-6, rtol=0)
    assert (w[mask == 0] == 0).all()


def test_ppo_clip_loss_by_hand_and_gradients():
    old = torch.zeros(1, 4, dtype=torch.float64)
    # ratios 1.5, 0.5, 1.5, 0.5 with advantages +1, +1, -1, -1; the last token is padding
    logps = torch.log(torch.tensor([[1.5, 0.5, 1.5, 0.5]], dtype=torch.float64)).requires_grad_(True)
    adv = torch.tensor([[1.0, 1.0, -1.0, -1.0]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 0]])
    loss = ppo.ppo_clip_loss(logps, old, adv, mask, clip_eps=0.2)
    # min(1.5, 1.2) = 1.2; min(0.5, 0.8) = 0.5; min(-1.5, -1.2) = -1.5
    torch.testing.assert_close(loss, torch.tensor(-(1.2 + 0.5 - 1.5) / 3, dtype=torch.float64))
    loss.backward()
    # clipped tokens get no gradient; unclipped ones get -A * ratio / n_tokens
    torch.testing.assert_close(logps.grad, torch.tensor([[0.0, -0.5 / 3, 1.5 / 3, 0.0]], dtype=torch.float64))


def test_ppo_clip_loss_on_policy_is_minus_mean_advantage():
    g, _, mask = _padded(3, 5, seed=5)
    lp = -torch.rand(3, 5, generator=g, dtype=torch.float64)
    adv = torch.randn(3, 5, generator=g, dtype=torch.float64)
    torch.testing.assert_close(ppo.ppo_clip_loss(lp, lp, adv, mask), -ppo.masked_mean(adv, mask))


def test_value_loss_plain_and_clipped():
    v = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    old = torch.tensor([[0.0, 0.0]], dtype=torch.float64)
    ret = torch.tensor([[2.0, 1.0]], dtype=torch.float64)
    mask = torch.ones(1, 2)
    torch.testing.assert_close(ppo.value_loss(v, old, ret, mask, None), torch.tensor(0.5 * (1 + 1) / 2, dtype=torch.float64))
    # clipped: V clipped to 0.2 -> error 1.8² > 1², so the max takes the clipped one on token 0
    torch.testing.assert_close(ppo.value_loss(v, old, ret, mask, 0.2), torch.tensor(0.5 * (1.8 ** 2 + 1) / 2, dtype=torch.float64))


# --------------------------------------------------------------------------- config
@pytest.mark.parametrize("bad", [dict(beta=-0.1), dict(lr=0.0), dict(clip_eps=0.0), dict(gamma=1.5),
                                 dict(iterations=0), dict(minibatches=100, prompts_per_iter=2, samples_per_prompt=2)])
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        ppo.PPOConfig(**bad)


def test_presets_are_valid_configs():
    assert set(ppo.PPO_PRESETS) == {"fast", "full"}
    assert ppo.PPO_PRESETS["fast"].batch_size == 48
    assert ppo.PPO_PRESETS["fast"].with_(beta=0.0).beta == 0.0
    with pytest.raises(ValueError):
        ppo.PPO_PRESETS["fast"].with_(beta=-1.0)


# --------------------------------------------------------------------------- model level
def test_policy_and_values_align_with_sampling(tiny_sft):
    model, tok = tiny_sft
    agent = models.ValueHeadLM(model)
    roll = sampling.generate(model, tok, ["User: hi\nAssistant:", "User: How can I sleep better?\nAssistant:"],
                             max_new_tokens=12, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logps, values = ppo.policy_and_values(agent, roll)
        torch.testing.assert_close(logps, sampling.token_logps(model, roll))
    assert values.shape == roll.response_ids.shape and (values == 0).all()   # the head starts at zero


@pytest.mark.slow
def test_train_moves_policy_toward_reward(trainable_copy):
    policy, ref, tok, before = trainable_copy

    def short(prompts, responses):                       # reward: be brief
        return torch.tensor([-len(r) / 20 for r in responses])

    prompts = [f"User: question {i}?\nAssistant:" for i in range(8)]
    cfg = ppo.PPOConfig(iterations=12, prompts_per_iter=8, samples_per_prompt=2, max_new_tokens=16,
                        lr=2e-3, beta=0.01)
    hist = ppo.train(policy, ref, tok, short, prompts, cfg, eval_fn=lambda p, r: {"n": len(r)})
    assert set(hist) >= {"reward", "kl", "pg_loss", "value_loss", "clipfrac", "approx_kl", "samples", "n"}
    assert all(len(hist[k]) == 12 for k in ("reward", "kl", "n"))
    assert any(not torch.equal(a, b) for a, b in zip(before, policy.parameters()))
    assert np.mean(hist["reward"][-3:]) > np.mean(hist["reward"][:3])
    assert np.mean(hist["kl"][-3:]) > 0


def test_train_bad_inputs(tiny_sft):
    model, tok = tiny_sft
    cfg = ppo.PPOConfig(iterations=1, prompts_per_iter=2, samples_per_prompt=1, minibatches=1)
    with pytest.raises(ValueError):
        ppo.train(model, models.frozen_copy(model), tok, lambda p, r: torch.zeros(len(r)), [], cfg)
    with pytest.raises(ValueError):
        ppo.train(model, None, tok, lambda p, r: torch.zeros(len(r)), ["User: a\nAssistant:"], cfg)
    with pytest.raises(ValueError):      # one reward for the whole batch
        ppo.train(models.frozen_copy(model).requires_grad_(True), models.frozen_copy(model), tok,
                  lambda p, r: torch.zeros(1), ["User: a\nAssistant:"], cfg)


def test_world_eval_keys_and_values():
    out = ppo.world_eval(["User: How can I sleep better?\nAssistant:"] * 2,
                         ["Keep your bedroom cool and dark.", "1.\n1.\n1."])
    assert set(out) == {"gold_helpful", "gold_harmless", "list_rate", "repeats", "garbled"}
    assert all(isinstance(v, float) for v in out.values()) and out["garbled"] > 0
