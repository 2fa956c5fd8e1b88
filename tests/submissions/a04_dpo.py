"""Submissions for a04's grading round trip (tests/test_grading.py).

WRONG: one plausible mistake per graded function, with the tests that must catch it.
CALLS_REFERENCE: answers that only call the kit's reference, which the hidden tests must fail.
"""

WRONG = [
    ("a04-sequence_logps-solution",
     "def sequence_logps(logits, labels, mask):\n"
     "    logps = torch.log_softmax(logits[:, :-1], dim=-1)\n"
     "    token = logps.gather(-1, labels[:, 1:].unsqueeze(-1)).squeeze(-1)\n"
     "    m = mask[:, 1:].to(token.dtype)\n"
     "    return (token * m).sum(-1) / m.sum(-1).clamp(min=1)  # a per-token mean, not log pi(y|x)\n",
     ["a04-sequence_logps-visible", "a04-sequence_logps-hidden"]),
    ("a04-dpo_loss-solution",
     "import torch.nn.functional as F\n\n"
     "def dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta):\n"
     "    chosen = beta * (policy_chosen_logps - ref_chosen_logps)      # rewards not detached\n"
     "    rejected = beta * (policy_rejected_logps - ref_rejected_logps)\n"
     "    return -F.logsigmoid(chosen - rejected), chosen, rejected\n",
     ["a04-dpo_loss-detach", "a04-dpo_loss-hidden"]),
]

CALLS_REFERENCE = [
    ("a04-sequence_logps-solution",
     "from shared_utils import dpo as _dpo\n\n"
     "def sequence_logps(logits, labels, mask):\n    return _dpo.sequence_logps(logits, labels, mask)\n",
     ["a04-sequence_logps-hidden"]),
    ("a04-dpo_loss-solution",
     "from shared_utils.dpo import dpo_loss as _ref\n\n"
     "def dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta):\n"
     "    return _ref(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta)\n",
     ["a04-dpo_loss-hidden"]),
]
