"""Execute every notebook under lectures/ and solutions/ in fast mode; record wall times.

A notebook fails the test if any cell raises or if it runs over twice its fast-mode budget
(lectures: 3 min, solutions: 2 min, on a 2-core CPU with warm model caches). A run that had
to build cached artifacts first (a new entry appeared in the cache) is a one-off cold run:
its time is recorded as such and not held to the budget. The measured times are written to
tests/_artifacts/notebook_times.md (the README's runtime table is copied from it).
"""
import json
import os
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(ROOT.glob("lectures/*.ipynb")) + sorted(ROOT.glob("solutions/*/*.ipynb"))
BUDGET = {"lectures": 180, "solutions": 120}
ARTIFACTS = ROOT / "tests" / "_artifacts"


def _record(name: str, seconds: float, cold: bool) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    store = ARTIFACTS / "notebook_times.json"
    times = json.loads(store.read_text()) if store.exists() else {}
    times[name] = {"seconds": round(seconds, 1), "cache": "cold" if cold else "warm"}
    store.write_text(json.dumps(times, indent=1, sort_keys=True))
    rows = "\n".join(f"| {k} | {v['seconds']:.0f} s | {v['cache']} | {BUDGET[k.split('/')[0]]} s |"
                     for k, v in sorted(times.items()))
    (ARTIFACTS / "notebook_times.md").write_text(
        "| notebook | fast-mode wall time | cache | budget (warm) |\n|---|---|---|---|\n" + rows + "\n")


def _cache_entries() -> set[str]:
    from shared_utils import runtime
    return {p.name for p in runtime.cache_dir().iterdir() if not p.name.startswith(".")}


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[str(p.relative_to(ROOT)) for p in NOTEBOOKS])
def test_notebook_runs(path):
    nb = nbformat.read(path, as_version=4)
    os.environ.setdefault("ALIGNKIT_MODE", "fast")
    os.environ.setdefault("MPLBACKEND", "Agg")
    client = NotebookClient(nb, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    before = _cache_entries()
    t0 = time.time()
    client.execute()
    elapsed = time.time() - t0
    cold = bool(_cache_entries() - before)
    name = str(path.relative_to(ROOT))
    _record(name, elapsed, cold)
    budget = BUDGET[path.relative_to(ROOT).parts[0]]
    print(f"{name}: {elapsed:.0f} s ({'cold cache: built artifacts' if cold else 'warm cache'}; budget {budget} s)")
    if not cold:
        assert elapsed < 2 * budget, f"{name} took {elapsed:.0f} s, over twice its {budget} s budget"
