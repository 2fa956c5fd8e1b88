"""Submissions for a01's grading round trip (tests/test_grading.py).

WRONG: one plausible mistake per graded function, with the tests that must catch it.
CALLS_REFERENCE: answers that only call the kit's reference, which the hidden tests must fail.
"""

WRONG = [
    ("a01-sequence_logprob-solution",
     "def sequence_logprob(token_logps, mask):\n    return token_logps.sum(-1)  # forgot the mask\n",
     ["a01-sequence_logprob-visible", "a01-sequence_logprob-hidden"]),
    ("a01-reinforce_loss-solution",
     "def reinforce_loss(seq_logps, rewards, baseline=None):\n"
     "    adv = rewards if baseline is None else rewards - baseline  # forgot to detach\n"
     "    return -(adv * seq_logps).mean()\n",
     ["a01-reinforce_loss-detach", "a01-reinforce_loss-hidden"]),
    ("a01-leave_one_out_baseline-solution",
     "def leave_one_out_baseline(rewards):\n"
     "    if len(rewards) < 2:\n        raise ValueError('need 2')\n"
     "    return rewards.mean().expand_as(rewards)  # includes the sample itself\n",
     ["a01-leave_one_out_baseline-visible", "a01-leave_one_out_baseline-hidden"]),
]

CALLS_REFERENCE = [
    ("a01-sequence_logprob-solution",
     "from shared_utils import rl\n\ndef sequence_logprob(token_logps, mask):\n    return rl.sequence_logprob(token_logps, mask)\n",
     ["a01-sequence_logprob-hidden"]),
    ("a01-reinforce_loss-solution",
     "from shared_utils.rl import reinforce_loss as _ref\n\n"
     "def reinforce_loss(seq_logps, rewards, baseline=None):\n    return _ref(seq_logps, rewards, baseline)\n",
     ["a01-reinforce_loss-hidden"]),
    ("a01-leave_one_out_baseline-solution",
     "import shared_utils.rl\n\ndef leave_one_out_baseline(rewards):\n    return shared_utils.rl.leave_one_out_baseline(rewards)\n",
     ["a01-leave_one_out_baseline-hidden"]),
]
