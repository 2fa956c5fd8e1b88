"""The few figure kinds that recur in the course: curves, reward-vs-KL, histograms, tables.

Each function draws on a given ``ax`` (or a new figure) and returns the ``Axes`` so a
notebook can add to it. Taught where first used (lecture 00: histograms and tables).
"""
from __future__ import annotations

import numpy as np


def _axes(ax=None, figsize=(5.5, 3.5)):
    import matplotlib.pyplot as plt
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def smooth(values, window: int = 10) -> np.ndarray:
    """Trailing moving average (the first points average what exists so far)."""
    v = np.asarray(values, dtype=float)
    if window <= 1 or len(v) == 0:
        return v
    c = np.cumsum(np.insert(v, 0, 0.0))
    idx = np.arange(1, len(v) + 1)
    lo = np.maximum(0, idx - window)
    return (c[idx] - c[lo]) / (idx - lo)


def training_curves(history: dict[str, list[float]], ax=None, window: int = 1,
                    xlabel: str = "step", title: str | None = None):
    """One line per series of ``history`` ({name: values}), optionally smoothed."""
    ax = _axes(ax)
    for name, values in history.items():
        ax.plot(smooth(values, window), label=name)
    ax.set_xlabel(xlabel)
    if title:
        ax.set_title(title)
    ax.legend(frameon=False)
    ax.grid(alpha=0.3)
    return ax


def reward_vs_kl(kl, rewards: dict[str, list[float]], ax=None, sqrt_kl: bool = True,
                 title: str | None = None, marker: str = "o"):
    """Rewards (e.g. proxy and gold) against KL or √KL (Gao et al. 2023 plot √KL)."""
    ax = _axes(ax)
    x = np.sqrt(np.maximum(np.asarray(kl, dtype=float), 0)) if sqrt_kl else np.asarray(kl, dtype=float)
    for name, values in rewards.items():
        ax.plot(x, values, marker=marker, label=name)
    ax.set_xlabel("√KL(π ‖ π_ref)" if sqrt_kl else "KL(π ‖ π_ref)")
    ax.set_ylabel("reward")
    if title:
        ax.set_title(title)
    ax.legend(frameon=False)
    ax.grid(alpha=0.3)
    return ax


def histograms(samples: dict[str, list[float]], ax=None, bins: int = 30, title: str | None = None,
               xlabel: str = "value"):
    """Overlaid normalized histograms on shared bins, one per series."""
    ax = _axes(ax)
    allv = np.concatenate([np.asarray(v, dtype=float) for v in samples.values()])
    edges = np.histogram_bin_edges(allv, bins=bins)
    for name, values in samples.items():
        ax.hist(values, bins=edges, alpha=0.5, density=True, label=name)
    ax.set_xlabel(xlabel)
    if title:
        ax.set_title(title)
    ax.legend(frameon=False)
    return ax


def table(rows: list[dict], floatfmt: str = "{:.2f}") -> str:
    """A fixed-width text table of ``rows`` (a list of dicts with the same keys)."""
    if not rows:
        return "(no rows)"
    cols = list(rows[0])
    cells = [[floatfmt.format(r[c]) if isinstance(r[c], (float, np.floating)) else str(r[c]) for c in cols]
             for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = lambda vals: "  ".join(v.rjust(w) for v, w in zip(vals, widths))
    return "\n".join([line(cols), line(["-" * w for w in widths])] + [line(r) for r in cells])
