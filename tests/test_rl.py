import pytest
import torch

from shared_utils import bandit, rl, world

CPU = torch.device("cpu")


def test_sequence_logprob_masks_padding():
    lp = torch.tensor([[-1.0, -2.0, 5.0], [-0.5, 7.0, 7.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert torch.allclose(rl.sequence_logprob(lp, mask), torch.tensor([-3.0, -0.5]))
    with pytest.raises(ValueError, match="same"):
        rl.sequence_logprob(lp, mask[:, :2])


def test_leave_one_out_baseline():
    assert torch.allclose(rl.leave_one_out_baseline(torch.tensor([1.0, 2.0, 3.0])), torch.tensor([2.5, 2.0, 1.5]))
    grouped = rl.leave_one_out_baseline(torch.tensor([[1.0, 3.0], [0.0, 10.0]]))
    assert torch.allclose(grouped, torch.tensor([[3.0, 1.0], [10.0, 0.0]]))
    with pytest.raises(ValueError, match="at least 2"):
        rl.leave_one_out_baseline(torch.tensor([1.0]))


def test_reinforce_loss_gradient_is_exact_policy_gradient():
    g = torch.Generator().manual_seed(0)
    theta = torch.randn(5, generator=g, dtype=torch.float64, requires_grad=True)
    R = torch.randn(5, generator=g, dtype=torch.float64)
    logp = torch.log_softmax(theta, 0)
    grad, = torch.autograd.grad(rl.reinforce_loss(logp, 5 * logp.exp() * R), theta)
    assert torch.allclose(grad, -bandit.expected_reward_grad(theta.detach(), R), atol=1e-12)


def test_reinforce_loss_detaches_and_validates():
    lp = torch.tensor([-1.0, -2.0], requires_grad=True)
    r = torch.tensor([1.0, 3.0], requires_grad=True)
    rl.reinforce_loss(lp, r, torch.tensor([0.5, 0.5])).backward()
    assert r.grad is None and torch.allclose(lp.grad, torch.tensor([-0.25, -1.25]))
    with pytest.raises(ValueError):
        rl.reinforce_loss(lp, r[:1])
    with pytest.raises(ValueError):
        rl.reinforce_loss(lp, r, torch.ones(3))


def test_config_validation():
    with pytest.raises(ValueError, match="baseline"):
        rl.ReinforceConfig(baseline="median")
    with pytest.raises(ValueError, match=">= 2"):
        rl.ReinforceConfig(samples_per_prompt=1)


@pytest.mark.slow
def test_reinforce_train_raises_reward_and_changes_parameters(trainable_copy):
    policy, ref, tok, before = trainable_copy
    prompts = [world.format_prompt(q) for q in world.all_questions(harmful=False)]

    def shortness(ps, rs):  # reward: end early
        return torch.tensor([-len(r) / 50 for r in rs])
    cfg = rl.ReinforceConfig(iterations=25, prompts_per_iter=8, samples_per_prompt=4, lr=3e-3, max_new_tokens=30)
    hist = rl.reinforce_train(policy, tok, shortness, prompts, cfg, ref=ref)
    assert any(not torch.equal(a, b) for a, b in zip(before, policy.parameters()))
    assert sum(hist["reward"][-5:]) / 5 > sum(hist["reward"][:5]) / 5
    assert hist["kl"][-1] > 0 and len(hist["samples"]) == 25
