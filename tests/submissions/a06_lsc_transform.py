"""Submissions for a06's grading round trip (tests/test_grading.py).

WRONG: one plausible mistake per graded function, with the tests that must catch it.
CALLS_REFERENCE: answers that only call the kit's reference, which the hidden tests must fail.
"""

WRONG = [
    ("a06-lsc_transform-solution",
     "def lsc_transform(rewards, ref_rewards):\n"
     "    return torch.log(torch.sigmoid(rewards - ref_rewards))  # underflows: log(0) = -inf at d = -100\n",
     ["a06-lsc_transform-stable", "a06-lsc_transform-hidden"]),
    ("a06-reference_reward-solution",
     "def reference_reward(sample_rewards, quantile):\n"
     "    if sample_rewards.dim() != 2:\n        raise ValueError('need (P, k)')\n"
     "    return torch.quantile(sample_rewards, quantile)  # one quantile over all prompts, not per row\n",
     ["a06-reference_reward-visible", "a06-reference_reward-hidden"]),
    ("a06-combine_rewards-solution",
     "def combine_rewards(rewards_list, ref_list):\n"
     "    if len(rewards_list) != len(ref_list):\n        raise ValueError('one reference per reward')\n"
     "    return lsc_transform(sum(rewards_list), sum(ref_list))  # transformed the sum, not each reward\n",
     ["a06-combine_rewards-visible", "a06-combine_rewards-hidden", "a06-worked_examples"]),
    ("a06-best_of_k-solution",
     "def best_of_k(rewards, k):\n"
     "    if not 1 <= k <= rewards.shape[1]:\n        raise ValueError('k out of range')\n"
     "    return rewards.argmax(dim=1)  # looks at all K samples, not the first k\n",
     ["a06-best_of_k-visible", "a06-best_of_k-hidden"]),
]

CALLS_REFERENCE = [
    ("a06-lsc_transform-solution",
     "from shared_utils import lsc\n\ndef lsc_transform(rewards, ref_rewards):\n"
     "    return lsc.lsc_transform(rewards, ref_rewards)\n",
     ["a06-lsc_transform-hidden"]),
    ("a06-reference_reward-solution",
     "from shared_utils.lsc import reference_reward as _ref\n\n"
     "def reference_reward(sample_rewards, quantile):\n    return _ref(sample_rewards, quantile)\n",
     ["a06-reference_reward-hidden"]),
    ("a06-combine_rewards-solution",
     "import shared_utils.lsc\n\ndef combine_rewards(rewards_list, ref_list):\n"
     "    return shared_utils.lsc.combine_rewards(rewards_list, ref_list)\n",
     ["a06-combine_rewards-hidden"]),
    ("a06-best_of_k-solution",
     "from shared_utils import lsc\n\ndef best_of_k(rewards, k):\n    return lsc.best_of_k(rewards, k)\n",
     ["a06-best_of_k-hidden"]),
]
