"""Repository hygiene: clean notebooks, one pinned dependency set, README commands = CI's."""
import json
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(p for d in ("lectures", "solutions", "assignments") for p in (ROOT / d).glob("**/*.ipynb")
                   if ".ipynb_checkpoints" not in p.parts)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[str(p.relative_to(ROOT)) for p in NOTEBOOKS])
def test_notebook_is_clean(path):
    nb = json.loads(path.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert not cell.get("outputs") and cell.get("execution_count") is None, \
                f"{path.name} is committed with outputs: clear them"


def _pins_pyproject() -> dict[str, str]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = meta["dependencies"] + sum(meta["optional-dependencies"].values(), [])
    return {m.group(1).lower(): m.group(2) for r in reqs if (m := re.match(r"([A-Za-z0-9_.-]+)==(\S+)", r))}


def _pins_environment() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "environment.yml").read_text().splitlines():
        m = re.match(r"\s*-\s*([A-Za-z0-9_.-]+)==(\S+)", line)
        if m:
            pins[m.group(1).lower()] = m.group(2)
    return pins


def test_environment_yml_matches_pyproject():
    py, env = _pins_pyproject(), _pins_environment()
    assert py and py == env, f"pyproject vs environment.yml differ: {set(py.items()) ^ set(env.items())}"


def test_installed_versions_are_the_pinned_ones():
    from importlib.metadata import version
    for name, pin in _pins_pyproject().items():
        assert version(name).split("+")[0] == pin, f"{name} {version(name)} installed, {pin} pinned"


def test_readme_commands_are_the_ones_ci_and_make_use():
    readme = (ROOT / "README.md").read_text()
    ci = [l for l in (ROOT / ".ci/run").read_text().splitlines() if l.strip() and not l.startswith(("#", "set ", "cd "))]
    assert ci == ["make test"], ci
    assert "make test" in readme and "make lab" in readme
    make = (ROOT / "Makefile").read_text()
    assert re.search(r"^test:", make, re.M) and re.search(r"^lab:", make, re.M)
