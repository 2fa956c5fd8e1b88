"""Unit tests for shared_utils.lsc (lecture 06): the transform, references, combining, best-of-k.

Tolerances: exact math in float64 to 1e-10 unless stated; the paper's worked examples to 1e-3.
"""
import itertools
import math

import pytest
import torch

from shared_utils import lsc


def test_lsc_transform_is_log_sigmoid_of_centred_reward():
    r = torch.tensor([-2.0, 0.0, 3.0], dtype=torch.float64)
    ref = torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64)
    expected = torch.log(1 / (1 + torch.exp(-(r - ref))))
    assert torch.allclose(lsc.lsc_transform(r, ref), expected, atol=1e-12)
    assert torch.allclose(lsc.lsc_transform(r, 0.5), torch.log(torch.sigmoid(r - 0.5)), atol=1e-12)


def test_lsc_transform_is_stable_for_large_differences():
    d = torch.tensor([-100.0, -40.0, 40.0, 100.0])
    u = lsc.lsc_transform(d, torch.zeros(4))
    assert torch.isfinite(u).all()
    assert torch.allclose(u[:2], d[:2], rtol=1e-6)                 # log σ(d) ≈ d for d ≪ 0
    assert (u[2:] <= 0).all() and (u[2:] > -1e-15).all()            # ≈ −e^{−d} for d ≫ 0
    d.requires_grad_(True)
    lsc.lsc_transform(d, 0.0).sum().backward()
    assert torch.allclose(d.grad, torch.sigmoid(-d.detach()))       # d/dr log σ(r) = σ(−r)


def test_lsc_transform_broadcasts_per_prompt_and_rejects_bad_shapes():
    r = torch.randn(3, 5)
    ref = torch.randn(3)
    assert torch.allclose(lsc.lsc_transform(r, ref[:, None]), torch.nn.functional.logsigmoid(r - ref[:, None]))
    with pytest.raises(ValueError):
        lsc.lsc_transform(r, torch.randn(4))
    with pytest.raises(ValueError):
        lsc.lsc_transform(torch.randn(3), torch.randn(3, 1))       # would broadcast to (3, 3)
    with pytest.raises(ValueError):
        lsc.lsc_transform([1.0, 2.0], 0.0)


def test_paper_worked_examples():
    logit = lambda p: math.log(p / (1 - p))
    t = lambda *v: torch.tensor(v, dtype=torch.float64)
    # one attribute: p(y_ref ≺ y0) = 0.99, p(y_ref ≺ y1) = 0.999, with r_ref = 0
    r = t(logit(0.99), logit(0.999))
    assert math.exp((r[1] - r[0]).item()) == pytest.approx(10.09, abs=1e-2)          # raw: ×10
    u = lsc.lsc_transform(r, 0.0)
    assert math.exp((u[1] - u[0]).item()) == pytest.approx(0.999 / 0.99, abs=1e-9)   # LSC: ×1.01
    # two attributes: y1 = (0.9, 0.9), y0 = (0.45, 0.99)
    r1, r2 = t(logit(0.45), logit(0.9)), t(logit(0.99), logit(0.9))                  # columns y0, y1
    raw = lsc.weighted_sum([r1, r2])
    assert math.exp((raw[1] - raw[0]).item()) == pytest.approx(1.0, abs=1e-9)
    comb = lsc.combine_rewards([r1, r2], [0.0, 0.0])
    assert math.exp((comb[1] - comb[0]).item()) == pytest.approx(0.81 / 0.4455, abs=1e-9)  # ≈ 1.82


def test_reference_reward_matches_numpy_quantile():
    np = pytest.importorskip("numpy")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 7, generator=g, dtype=torch.float64)
    for q in (0.0, 0.5, 0.85, 1.0):
        assert torch.allclose(lsc.reference_reward(x, q), torch.from_numpy(np.quantile(x.numpy(), q, axis=1)))
    assert lsc.reference_reward(torch.tensor([[1.0, 2.0, 3.0, 4.0]]), 0.5).item() == 2.5
    with pytest.raises(ValueError):
        lsc.reference_reward(torch.randn(5), 0.5)
    with pytest.raises(ValueError):
        lsc.reference_reward(torch.randn(2, 3), 1.5)
    with pytest.raises(ValueError):
        lsc.reference_reward(torch.zeros(0, 3), 0.5)


def test_gaussian_reference_approximates_quantile_of_normal_samples():
    g = torch.Generator().manual_seed(1)
    mu, sd = torch.tensor([[0.0], [2.0]]), torch.tensor([[1.0], [0.5]])
    x = mu + sd * torch.randn(2, 20000, generator=g)
    est = lsc.gaussian_reference(x, 0.85)
    assert torch.allclose(est, (mu + 1.0364 * sd).squeeze(1), atol=0.03)
    assert torch.allclose(est, lsc.reference_reward(x, 0.85), atol=0.03)
    assert torch.allclose(lsc.gaussian_reference(x, 0.5), x.mean(1))
    with pytest.raises(ValueError):
        lsc.gaussian_reference(x[:, :1], 0.85)


def test_combine_rewards_is_sum_of_transforms_and_validates():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(6, generator=g), torch.randn(6, generator=g)
    ra, rb = torch.randn(6, generator=g), torch.randn(6, generator=g)
    expected = lsc.lsc_transform(a, ra) + lsc.lsc_transform(b, rb)
    assert torch.allclose(lsc.combine_rewards([a, b], [ra, rb]), expected)
    # log P(good on all) = log Π σ(r_i − r_ref,i)
    assert torch.allclose(lsc.combine_rewards([a, b], [ra, rb]).exp(), torch.sigmoid(a - ra) * torch.sigmoid(b - rb))
    with pytest.raises(ValueError):
        lsc.combine_rewards([a, b], [ra])
    with pytest.raises(ValueError):
        lsc.combine_rewards([a, b[:3]], [ra, rb])
    with pytest.raises(ValueError):
        lsc.combine_rewards([], [])


def test_utility_transforms_and_centering_invariance():
    g = torch.Generator().manual_seed(3)
    r = [torch.randn(4, 8, generator=g) for _ in range(2)]
    ref = [torch.randn(4, 1, generator=g) for _ in range(2)]
    assert torch.allclose(lsc.utility(r, None, "raw", [0.3, 0.7]), 0.3 * r[0] + 0.7 * r[1])
    center = lsc.utility(r, ref, "center")
    assert torch.allclose(center, r[0] + r[1] - ref[0] - ref[1])
    # centering alone shifts each prompt's utilities by a constant: same best-of-k choice as raw
    for k in (1, 3, 8):
        assert torch.equal(lsc.best_of_k(center, k), lsc.best_of_k(lsc.utility(r, None, "raw"), k))
    assert torch.allclose(lsc.utility(r, None, "logsigmoid"), lsc.combine_rewards(r, [0.0, 0.0]))
    assert torch.allclose(lsc.utility(r, ref, "lsc"), lsc.combine_rewards(r, ref))
    with pytest.raises(ValueError):
        lsc.utility(r, None, "lsc")
    with pytest.raises(ValueError):
        lsc.utility(r, ref, "softplus")
    with pytest.raises(ValueError):
        lsc.weighted_sum(r, [1.0])


def test_best_of_k_picks_best_of_first_k():
    rewards = torch.tensor([[0.1, 0.9, 0.5, 2.0], [3.0, 1.0, 4.0, 0.0]])
    assert lsc.best_of_k(rewards, 1).tolist() == [0, 0]
    assert lsc.best_of_k(rewards, 2).tolist() == [1, 0]
    assert lsc.best_of_k(rewards, 3).tolist() == [1, 2]
    assert lsc.best_of_k(rewards, 4).tolist() == [3, 2]
    assert lsc.best_of_k(torch.tensor([[1.0, 1.0]]), 2).tolist() == [0]    # ties: first
    for bad in (0, 5, 2.0):
        with pytest.raises(ValueError):
            lsc.best_of_k(rewards, bad)


def test_expected_best_of_k_averages_over_all_subsets():
    g = torch.Generator().manual_seed(4)
    proxy, value = torch.randn(3, 7, generator=g, dtype=torch.float64), torch.randn(3, 7, generator=g, dtype=torch.float64)
    for k in (1, 2, 4, 7):
        subsets = list(itertools.combinations(range(7), k))
        loop = torch.tensor([sum(value[p, list(c)][proxy[p, list(c)].argmax()].item() for c in subsets) / len(subsets)
                             for p in range(3)], dtype=torch.float64)
        assert torch.allclose(lsc.expected_best_of_k(proxy, value, k), loop, atol=1e-10)
    assert torch.allclose(lsc.expected_best_of_k(proxy, value, 1), value.mean(1))
    wins = lsc.expected_best_of_k(proxy, value > 0, 3)                     # bool values → rates
    assert wins.dtype == torch.float32 and ((wins >= 0) & (wins <= 1)).all()
    with pytest.raises(ValueError):
        lsc.expected_best_of_k(proxy, value[:, :3], 2)


def test_best_of_k_kl_and_wins():
    assert lsc.best_of_k_kl(1) == 0.0
    assert lsc.best_of_k_kl(16) == pytest.approx(math.log(16) - 15 / 16)
    gold_a = torch.tensor([[1.0, 2.0, 3.0]])
    gold_b = torch.tensor([[5.0, -1.0, 5.0]])
    w = lsc.wins([gold_a, gold_b], [torch.tensor([[1.5]]), torch.tensor([[0.0]])])
    assert w.tolist() == [[False, False, True]]                            # AND, strictly above
    assert lsc.win_rate([gold_a, gold_b], [torch.tensor([[0.5]]), torch.tensor([[0.0]])]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        lsc.wins([gold_a], [])


@pytest.mark.slow
def test_make_reward_fn_scores_and_transforms(tiny_sft, tiny_cache):
    from shared_utils import models, world
    judge = models.reward_model_from(models.sft_model_path("test", root=tiny_cache, device=torch.device("cpu")),
                                     torch.device("cpu"))
    judge[0].eval()
    prompts = [world.format_prompt(q) for q in world.all_questions()[:3]]
    responses = [" Keep a regular bedtime.", " I will not help with that.", " Okay."]
    from shared_utils import rewards
    raw = rewards.score(*judge, prompts, responses)
    refs = {p: 0.25 * i for i, p in enumerate(prompts)}
    fn = lsc.make_reward_fn([judge, judge], [refs, refs], "lsc")
    expected = 2 * torch.nn.functional.logsigmoid(raw - torch.tensor([0.0, 0.25, 0.5]))
    assert torch.allclose(fn(prompts, responses), expected, atol=1e-5)
    fn_raw = lsc.make_reward_fn([judge, judge], transform="raw", weights=[0.25, 0.75])
    assert torch.allclose(fn_raw(prompts, responses), raw, atol=1e-5)
    with pytest.raises(ValueError, match="reference"):
        lsc.make_reward_fn([judge], [{}], "lsc")(prompts, responses)
    with pytest.raises(ValueError):
        lsc.make_reward_fn([judge], None, "lsc")

