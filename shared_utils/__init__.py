"""shared_utils: the plumbing every notebook of the alignment course imports.

Modules, one job each (notebooks call ``module.name`` so every helper's origin is visible):

- ``runtime``  device, seeding, fast/full mode, dtypes, Colab, environment summary
- ``world``    the toy alignment world: prompts, grammar, gold judges, annotators, datasets
- ``models``   tokenizer, tiny GPT-2 presets, pretraining/SFT, cache, loading, heads
- ``sampling`` batched generation with a KV cache; per-token and sequence log-probs
- ``plotting`` training curves, reward vs KL, histograms, tables
- ``grading``  comparisons with teaching messages for assignment tests
- ``course``   nbgrader plumbing: release, validate, autograde, export
- algorithm modules, added as lectures derive them (e.g. ``rl`` for REINFORCE)
"""
__version__ = "0.1.0"
