"""Submissions for a03's grading round trip (tests/test_grading.py).

WRONG: one plausible mistake per graded function, with the tests that must catch it.
CALLS_REFERENCE: answers that only call the kit's reference, which the hidden tests must fail.
"""

WRONG = [
    ("a03-kl_estimates-solution",
     "def kl_estimates(logps, ref_logps):\n"
     "    log_ratio = logps - ref_logps          # ratio upside down: pi / pi_ref\n"
     "    return log_ratio, 0.5 * log_ratio ** 2, torch.expm1(log_ratio) - log_ratio\n",
     ["a03-kl_estimates-visible", "a03-kl_estimates-hidden"]),
    ("a03-kl_penalized_rewards-solution",
     "def kl_penalized_rewards(rewards, logps, ref_logps, mask, beta):\n"
     "    out = (-beta * (logps - ref_logps) * mask).detach()\n"
     "    out[:, -1] += rewards                  # last column, not the last real token\n"
     "    return out\n",
     ["a03-kl_penalized_rewards-visible", "a03-kl_penalized_rewards-hidden"]),
    ("a03-gae_advantages-solution",
     "def gae_advantages(rewards, values, mask, gamma, lam):\n"
     "    m = mask.to(values.dtype)\n"
     "    adv = torch.zeros_like(values)\n"
     "    next_adv = torch.zeros_like(values[:, 0])\n"
     "    T = values.shape[1]\n"
     "    for t in reversed(range(T)):\n"
     "        next_value = values[:, t + 1] if t + 1 < T else torch.zeros_like(values[:, 0])  # bootstraps from padding\n"
     "        delta = rewards[:, t] + gamma * next_value - values[:, t]\n"
     "        next_adv = (delta + gamma * lam * next_adv) * m[:, t]\n"
     "        adv[:, t] = next_adv\n"
     "    return adv, (adv + values) * m\n",
     ["a03-gae_advantages-padding", "a03-gae_advantages-hidden"]),
    ("a03-ppo_clip_loss-solution",
     "def ppo_clip_loss(logps, old_logps, advantages, mask, clip_eps):\n"
     "    ratio = torch.exp(logps - old_logps.detach())\n"
     "    adv = advantages.detach()\n"
     "    surrogate = torch.minimum(ratio * adv, ratio.clamp(max=1 + clip_eps) * adv)   # clips one side only\n"
     "    m = mask.to(surrogate.dtype)\n"
     "    return -(surrogate * m).sum() / m.sum()\n",
     ["a03-ppo_clip_loss-clip", "a03-ppo_clip_loss-hidden"]),
]

CALLS_REFERENCE = [
    ("a03-kl_estimates-solution",
     "from shared_utils import ppo\n\ndef kl_estimates(logps, ref_logps):\n    return ppo.kl_estimates(logps, ref_logps)\n",
     ["a03-kl_estimates-hidden"]),
    ("a03-kl_penalized_rewards-solution",
     "from shared_utils.ppo import kl_penalized_rewards as _ref\n\n"
     "def kl_penalized_rewards(rewards, logps, ref_logps, mask, beta):\n"
     "    return _ref(rewards, logps, ref_logps, mask, beta)\n",
     ["a03-kl_penalized_rewards-hidden"]),
    ("a03-gae_advantages-solution",
     "import shared_utils.ppo\n\ndef gae_advantages(rewards, values, mask, gamma, lam):\n"
     "    return shared_utils.ppo.gae_advantages(rewards, values, mask, gamma, lam)\n",
     ["a03-gae_advantages-hidden"]),
    ("a03-ppo_clip_loss-solution",
     "from shared_utils import ppo\n\ndef ppo_clip_loss(logps, old_logps, advantages, mask, clip_eps):\n"
     "    return ppo.ppo_clip_loss(logps, old_logps, advantages, mask, clip_eps)\n",
     ["a03-ppo_clip_loss-hidden"]),
]
