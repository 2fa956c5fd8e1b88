"""Submissions for a02's grading round trip (tests/test_grading.py).

WRONG: one plausible mistake per graded function, with the tests that must catch it.
CALLS_REFERENCE: answers that only call the kit's reference, which the hidden tests must fail.
"""

WRONG = [
    ("a02-bradley_terry_loss-solution",
     "def bradley_terry_loss(chosen_rewards, rejected_rewards, margin=None):\n"
     "    diff = chosen_rewards - rejected_rewards - (0.0 if margin is None else margin)\n"
     "    return -torch.log(torch.sigmoid(diff)).mean()  # underflows to -inf for very negative diff\n",
     ["a02-bradley_terry_loss-hidden"]),
    ("a02-ranking_to_pairs-solution",
     "def ranking_to_pairs(ranked):\n"
     "    # all pairs, but duplicates are not removed\n"
     "    return [(ranked[i], ranked[j]) for i in range(len(ranked)) for j in range(i + 1, len(ranked))]\n",
     ["a02-ranking_to_pairs-hidden"]),
    ("a02-preference_accuracy-solution",
     "def preference_accuracy(chosen_rewards, rejected_rewards):\n"
     "    if chosen_rewards.shape != rejected_rewards.shape:\n"
     "        raise ValueError('shapes differ')\n"
     "    return float((chosen_rewards > rejected_rewards).float().mean())  # ties count 0, not 1/2\n",
     ["a02-preference_accuracy-visible", "a02-preference_accuracy-hidden"]),
]

CALLS_REFERENCE = [
    ("a02-bradley_terry_loss-solution",
     "from shared_utils import rewards\n\n"
     "def bradley_terry_loss(chosen_rewards, rejected_rewards, margin=None):\n"
     "    return rewards.bradley_terry_loss(chosen_rewards, rejected_rewards, margin)\n",
     ["a02-bradley_terry_loss-hidden"]),
    ("a02-ranking_to_pairs-solution",
     "from shared_utils.rewards import ranking_to_pairs as _ref\n\n"
     "def ranking_to_pairs(ranked):\n    return _ref(ranked)\n",
     ["a02-ranking_to_pairs-hidden"]),
    ("a02-preference_accuracy-solution",
     "import shared_utils.rewards\n\n"
     "def preference_accuracy(chosen_rewards, rejected_rewards):\n"
     "    return shared_utils.rewards.preference_accuracy(chosen_rewards, rejected_rewards)\n",
     ["a02-preference_accuracy-hidden"]),
]
