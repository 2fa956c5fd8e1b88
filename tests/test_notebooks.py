"""Execute every notebook under lectures/ and solutions/ in fast mode; record wall times.

A notebook fails the test if any cell raises or if it runs over twice its fast-mode budget
(lectures: 3 min, solutions: 2 min, on a 2-core CPU with warm model caches). The measured
times are written to tests/_artifacts/notebook_times.md (the README's runtime table is
copied from it).
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


def _record(name: str, seconds: float) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    store = ARTIFACTS / "notebook_times.json"
    times = json.loads(store.read_text()) if store.exists() else {}
    times[name] = round(seconds, 1)
    store.write_text(json.dumps(times, indent=1, sort_keys=True))
    rows = "\n".join(f"| {k} | {v:.0f} s | {BUDGET[k.split('/')[0]]} s |" for k, v in sorted(times.items()))
    (ARTIFACTS / "notebook_times.md").write_text(
        "| notebook | fast-mode wall time | budget |\n|---|---|---|\n" + rows + "\n")


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[str(p.relative_to(ROOT)) for p in NOTEBOOKS])
def test_notebook_runs(path):
    nb = nbformat.read(path, as_version=4)
    os.environ.setdefault("ALIGNKIT_MODE", "fast")
    os.environ.setdefault("MPLBACKEND", "Agg")
    client = NotebookClient(nb, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    t0 = time.time()
    client.execute()
    elapsed = time.time() - t0
    name = str(path.relative_to(ROOT))
    _record(name, elapsed)
    budget = BUDGET[path.relative_to(ROOT).parts[0]]
    print(f"{name}: {elapsed:.0f} s (budget {budget} s)")
    assert elapsed < 2 * budget, f"{name} took {elapsed:.0f} s, over twice its {budget} s budget"
