"""The grading round trip, for every assignment in solutions/ (a01 … a06 as they land).

(a) the committed release equals a fresh regeneration (no drift);
(b) the release holds no solution code and no hidden-test text;
(c) the solution scores full marks; (d) the untouched release scores 0 and grading finishes;
(e) plausible wrong answers (tests/submissions/<assignment>.py: WRONG) score partial credit,
    with the expected tests failing;
(f) answers that only call the kit's reference (CALLS_REFERENCE) fail the hidden tests.
"""
import copy
import importlib.util
import json
from pathlib import Path

import nbformat
import pytest

from shared_utils import course

ROOT = Path(__file__).resolve().parent.parent
NAMES = course.assignment_names(ROOT / "solutions") if (ROOT / "solutions").exists() else []


def _nb_path(base: Path, name: str) -> Path:
    return next((base / name).glob("*.ipynb"))


def _grade_id(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def _region_lines(source: str, begin: str, end: str) -> list[str]:
    lines, inside = [], False
    for line in source.splitlines():
        if line.strip().startswith(begin):
            inside = True
        elif line.strip().startswith(end):
            inside = False
        elif inside and len(line.strip()) > 12 and not line.strip().startswith("#"):
            lines.append(line.strip())
    return lines


def _submissions(name: str):
    path = ROOT / "tests" / "submissions" / f"{name}.py"
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location(f"submissions_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _filled_release(name: str, replacements: dict[str, str], tmp_path: Path) -> Path:
    """The release notebook with every solution cell filled (from solutions/ or ``replacements``)."""
    sol = nbformat.read(_nb_path(ROOT / "solutions", name), as_version=4)
    rel = nbformat.read(_nb_path(ROOT / "assignments", name), as_version=4)
    sources = {_grade_id(c): c.source for c in sol.cells if _grade_id(c)}
    for cell in rel.cells:
        gid = _grade_id(cell)
        if gid and cell.metadata["nbgrader"].get("solution"):
            cell.source = replacements.get(gid, sources[gid])
    out = tmp_path / _nb_path(ROOT / "solutions", name).name
    nbformat.write(rel, out)
    return out


@pytest.mark.parametrize("name", NAMES)
def test_release_matches_regeneration(name, tmp_path):
    course.generate_release(dest=tmp_path, names=[name])
    fresh = json.loads(_nb_path(tmp_path, name).read_text())
    committed = json.loads(_nb_path(ROOT / "assignments", name).read_text())
    assert fresh == committed, (f"assignments/{name} differs from a fresh release: run `make assignments` "
                                "and commit the result (never edit assignments/ by hand).")


@pytest.mark.parametrize("name", NAMES)
def test_release_has_no_solutions_or_hidden_tests(name):
    src = _nb_path(ROOT / "solutions", name).read_text()
    rel_nb = nbformat.read(_nb_path(ROOT / "assignments", name), as_version=4)
    rel = "\n".join(c.source for c in rel_nb.cells)
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
        assert marker not in rel
    src_nb = nbformat.read(_nb_path(ROOT / "solutions", name), as_version=4)
    secret = []
    for c in src_nb.cells:
        secret += _region_lines(c.source, "### BEGIN SOLUTION", "### END SOLUTION")
        secret += _region_lines(c.source, "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")
    assert secret, f"{name} has no solution or hidden-test regions at all"
    public = {line.strip() for c in rel_nb.cells for line in c.source.splitlines()}
    leaked = [s for s in secret if s in public and not _also_public(s, src_nb)]
    assert not leaked, f"release of {name} leaks: {leaked[:3]}"


def _also_public(line: str, nb) -> bool:
    """True if ``line`` also appears outside every secret region of the source (e.g. an import)."""
    for c in nb.cells:
        outside, inside = [], False
        for l in c.source.splitlines():
            s = l.strip()
            if s.startswith(("### BEGIN SOLUTION", "### BEGIN HIDDEN TESTS")):
                inside = True
            elif s.startswith(("### END SOLUTION", "### END HIDDEN TESTS")):
                inside = False
            elif not inside:
                outside.append(s)
        if line in outside:
            return True
    return False


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_grading_round_trip(name, tmp_path):
    subs = _submissions(name)
    assert subs is not None, f"tests/submissions/{name}.py is missing (WRONG and CALLS_REFERENCE lists)"

    full = course.grade_submission(_filled_release(name, {}, tmp_path), name)
    assert full.max_score > 0 and full.score == full.max_score, f"solution lost points on {full.failed()}"

    blank = course.grade_submission(_nb_path(ROOT / "assignments", name), name)
    assert blank.score == 0 and blank.max_score == full.max_score, blank.cells

    assert subs.WRONG, "give at least one plausible wrong answer per graded function"
    wrong = course.grade_submission(
        _filled_release(name, {gid: src for gid, src, _ in subs.WRONG}, tmp_path), name)
    expected = {t for _, _, tests in subs.WRONG for t in tests}
    assert expected <= set(wrong.failed()), f"these should fail but passed: {expected - set(wrong.failed())}"
    assert 0 < wrong.score < wrong.max_score, wrong.cells

    if subs.CALLS_REFERENCE:
        ref = course.grade_submission(
            _filled_release(name, {gid: src for gid, src, _ in subs.CALLS_REFERENCE}, tmp_path), name)
        expected = {t for _, _, tests in subs.CALLS_REFERENCE for t in tests}
        assert expected <= set(ref.failed()), f"reference-calling answers passed {expected - set(ref.failed())}"


def test_validate_reports_failure_with_exit_code(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = nbformat.v4.new_code_cell("assert 1 + 1 == 3, 'arithmetic is broken'")
    cell.metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True, "points": 1,
                                 "grade_id": "t-1", "schema_version": 3}
    nb.cells.append(cell)
    path = tmp_path / "bad.ipynb"
    nbformat.write(nb, path)
    assert course.main(["validate", str(path)]) == 1
    cell.source = "assert 1 + 1 == 2"
    nbformat.write(nb, path)
    assert course.main(["validate", str(path)]) == 0


@pytest.mark.slow
def test_instructor_loop_autograde_and_export(tmp_path):
    """`make grade` + `make export` on a course folder: submitted/ → gradebook → grades.csv."""
    import csv
    import shutil
    name = NAMES[0]
    shutil.copy(ROOT / "nbgrader_config.py", tmp_path)
    shutil.copytree(ROOT / "solutions" / name, tmp_path / "solutions" / name)
    for student, replacements in [("alice", {}), ("bob", None)]:
        target = tmp_path / "submitted" / student / name
        target.mkdir(parents=True)
        src = _nb_path(ROOT / "assignments", name) if replacements is None else _filled_release(name, {}, tmp_path)
        shutil.copy(src, target / _nb_path(ROOT / "solutions", name).name)
    assert course.autograde_all(tmp_path)
    out = course.export_grades(tmp_path)
    rows = {r["student_id"]: r for r in csv.DictReader(open(out))}
    assert float(rows["alice"]["score"]) == float(rows["alice"]["max_score"]) > 0
    assert float(rows["bob"]["score"]) == 0
