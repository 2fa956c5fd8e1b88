"""Submissions for a05's grading round trip (tests/test_grading.py).

WRONG: one plausible mistake per graded function, with the tests that must catch it.
CALLS_REFERENCE: answers that only call the kit's reference, which the hidden tests must fail.
"""

WRONG = [
    ("a05-build_critique_prompt-solution",
     "def build_critique_prompt(conversation, response, principle):\n"
     "    # everything on one line: the model cannot tell the parts apart\n"
     "    return f'{conversation} {response} Critique request: {principle.critique_request} Critique:'\n",
     ["a05-build_critique_prompt-visible", "a05-build_critique_prompt-hidden"]),
    ("a05-build_revision_prompt-solution",
     "def build_revision_prompt(conversation, response, critique, principle):\n"
     "    # forgets the direct case: writes 'Critique: None'\n"
     "    head = build_critique_prompt(conversation, response, principle) + ' ' + str(critique).strip()\n"
     "    return f'{head}\\nRevision request: {principle.revision_request}\\nRevision:'\n",
     ["a05-build_revision_prompt-visible", "a05-build_revision_prompt-hidden"]),
    ("a05-critique_revise-solution",
     "def critique_revise(generate_fn, conversation, response, principles, n_rounds, rng):\n"
     "    if n_rounds < 0 or not principles:\n"
     "        raise ValueError('bad arguments')\n"
     "    rounds = []\n"
     "    for _ in range(n_rounds):  # revises the ORIGINAL response every round\n"
     "        p = principles[rng.integers(len(principles))]\n"
     "        c = generate_fn(build_critique_prompt(conversation, response, p)).strip()\n"
     "        r = generate_fn(build_revision_prompt(conversation, response, c, p)).strip()\n"
     "        rounds.append({'principle': p, 'response': response.strip(), 'critique': c, 'revision': r})\n"
     "    return rounds\n",
     ["a05-critique_revise-visible", "a05-critique_revise-hidden"]),
    ("a05-ai_preference-solution",
     "import torch\n\n"
     "def ai_preference(logp_a_first, logp_b_first):\n"
     "    # only the first order: keeps the model's position bias\n"
     "    return float(torch.softmax(torch.as_tensor(logp_a_first, dtype=torch.float64), 0)[0])\n",
     ["a05-ai_preference-visible", "a05-ai_preference-hidden"]),
]

CALLS_REFERENCE = [
    ("a05-build_critique_prompt-solution",
     "from shared_utils import constitution\n\n"
     "def build_critique_prompt(conversation, response, principle):\n"
     "    return constitution.build_critique_prompt(conversation, response, principle)\n",
     ["a05-build_critique_prompt-hidden"]),
    ("a05-build_revision_prompt-solution",
     "from shared_utils.constitution import build_revision_prompt as _ref\n\n"
     "def build_revision_prompt(conversation, response, critique, principle):\n"
     "    return _ref(conversation, response, critique, principle)\n",
     ["a05-build_revision_prompt-hidden"]),
    ("a05-critique_revise-solution",
     "import shared_utils.constitution\n\n"
     "def critique_revise(generate_fn, conversation, response, principles, n_rounds, rng):\n"
     "    return shared_utils.constitution.critique_revise(generate_fn, conversation, response, principles, n_rounds, rng)\n",
     ["a05-critique_revise-hidden"]),
    ("a05-ai_preference-solution",
     "from shared_utils import constitution\n\n"
     "def ai_preference(logp_a_first, logp_b_first):\n"
     "    return constitution.ai_preference(logp_a_first, logp_b_first)\n",
     ["a05-ai_preference-hidden"]),
]
