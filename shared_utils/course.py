"""nbgrader plumbing for the course: release, validate, autograde, export — and grade one file.

``python -m shared_utils.course COMMAND`` (the Makefile's targets call these):

- ``release``   regenerate every notebook in assignments/ from solutions/ (nbgrader
  ``generate_assignment`` in a scratch course, so no gradebook lands in the repo).
- ``validate PATH``  run a notebook's tests like the autograder; exit 1 if any fails
  (``nbgrader validate`` itself always exits 0).
- ``autograde``  autograde everything under submitted/<student>/<assignment>/.
- ``export``     write grades.csv from the gradebook.

:func:`grade_submission` grades one notebook in a temporary course and returns the score of
every graded cell; the tests use it for the full/zero/partial grading round trip.

Set up in lecture/assignment 01, used by every assignment.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _env() -> dict:
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)  # nbgrader needs `alembic` on PATH
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("ALIGNKIT_MODE", "fast")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _nbgrader(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "nbgrader", *args]
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"`nbgrader {' '.join(args)}` failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def assignment_names(source: Path | None = None) -> list[str]:
    """Names of the assignments in solutions/ (folders holding a notebook)."""
    source = Path(source or ROOT / "solutions")
    return sorted(p.name for p in source.iterdir() if p.is_dir() and any(p.glob("*.ipynb")))


def _scratch_course(tmp: Path, source: Path, names: list[str]) -> Path:
    """A course folder in ``tmp`` with the repo's config and a copy of the source notebooks."""
    shutil.copy(ROOT / "nbgrader_config.py", tmp / "nbgrader_config.py")
    for name in names:
        shutil.copytree(source / name, tmp / "solutions" / name,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    return tmp


def generate_release(dest: Path | None = None, names: list[str] | None = None,
                     source: Path | None = None) -> list[Path]:
    """Generate the release notebooks of ``names`` (default: all) from ``source`` into ``dest``.

    ``dest`` defaults to the repo's assignments/; every release folder is replaced whole.
    """
    source = Path(source or ROOT / "solutions")
    dest = Path(dest or ROOT / "assignments")
    names = names or assignment_names(source)
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        course = _scratch_course(Path(tmp), source, names)
        for name in names:
            _nbgrader(["generate_assignment", name, "--force"], cwd=course)
            shutil.rmtree(dest / name, ignore_errors=True)
            shutil.copytree(course / "assignments" / name, dest / name)
            written += sorted((dest / name).glob("*.ipynb"))
    return written


def validate(path: str | Path) -> bool:
    """Run ``path``'s tests the way the autograder does; print the result; True if all pass."""
    from nbgrader.validator import Validator
    results = Validator(config=_validator_config()).validate(str(path))
    failed = results.get("failed", []) or results.get("changed", []) or results.get("mismatch", [])
    if failed:
        print(f"VALIDATION FAILED for {path}:")
        for cell in failed:
            print("-" * 60)
            print(cell.get("source", "").strip()[:800])
            if cell.get("error"):
                print(_plain(cell["error"])[-1500:])
        return False
    if results.get("passed"):
        print(f"{path}: the notebook passes all visible tests it contains.")
    else:
        print(f"{path}: validated (no failing cells).")
    return True


def _plain(text: str) -> str:
    """Validator errors come as HTML with ANSI colours: keep only the text."""
    import html
    import re
    text = re.sub(r"<[^>]+>", "", text)
    return re.sub(r"\x1b\[[0-9;]*m", "", html.unescape(text))


def _validator_config():
    from traitlets.config import Config
    c = Config()
    c.Execute.timeout = 300
    c.Execute.kernel_name = "python3"
    return c


@dataclass
class GradeReport:
    """Scores of one graded submission: ``cells`` maps each grade_id to (score, max_score)."""
    cells: dict[str, tuple[float, float]]

    @property
    def score(self) -> float:
        return sum(s for s, _ in self.cells.values())

    @property
    def max_score(self) -> float:
        return sum(m for _, m in self.cells.values())

    def failed(self) -> list[str]:
        """grade_ids of graded cells that earned less than full points."""
        return [g for g, (s, m) in self.cells.items() if s < m]


def grade_submission(submission: str | Path, assignment: str, student: str = "student",
                     source: Path | None = None, workdir: Path | None = None) -> GradeReport:
    """Autograde one submitted notebook of ``assignment`` in a scratch course; return its scores.

    The grading run must itself succeed (an error in the student's code is a failed test, not
    a crashed grader); a RuntimeError is raised if nbgrader does not finish.
    """
    from nbgrader.api import Gradebook
    source = Path(source or ROOT / "solutions")
    submission = Path(submission)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        course = _scratch_course(Path(tmp), source, [assignment])
        _nbgrader(["generate_assignment", assignment, "--force"], cwd=course)
        target = course / "submitted" / student / assignment
        target.mkdir(parents=True)
        nb_name = next((source / assignment).glob("*.ipynb")).name
        shutil.copy(submission, target / nb_name)
        proc = _nbgrader(["autograde", assignment, "--force", "--student", student], cwd=course, check=False)
        if proc.returncode != 0 or not (course / "autograded" / student / assignment / nb_name).exists():
            raise RuntimeError(f"autograding did not finish:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
            nb = gb.find_submission_notebook(Path(nb_name).stem, assignment, student)
            cells = {g.name: (float(g.score), float(g.max_score)) for g in nb.grades}
    return GradeReport(cells)


def autograde_all(root: Path | None = None) -> bool:
    """Autograde every submission under ``root``/submitted/<student>/<assignment>/.

    The gradebook learns each assignment's graded cells from its source notebook first
    (``generate_assignment``, which rewrites the same release), then ``autograde`` runs with
    ``--create`` so new students are added. Returns False if nbgrader failed for an assignment.
    """
    root = Path(root or ROOT)
    submitted = root / "submitted"
    names = sorted({p.name for p in submitted.glob("*/*") if p.is_dir()}) if submitted.is_dir() else []
    if not names:
        print("nothing to grade: put submissions in submitted/<student>/<assignment>/ "
              "(nbgrader collect or zip_collect does this)")
        return False
    ok = True
    for name in names:
        _nbgrader(["generate_assignment", name, "--force"], cwd=root)
        proc = _nbgrader(["autograde", name, "--create", "--force"], cwd=root, check=False)
        print(f"== {name}: autograde exited {proc.returncode}")
        print((proc.stdout + proc.stderr)[-4000:])
        ok &= proc.returncode == 0
    return ok


def export_grades(root: Path | None = None) -> Path | None:
    """Write ``root``/grades.csv from the gradebook (one row per student and assignment)."""
    root = Path(root or ROOT)
    out = root / "grades.csv"
    proc = _nbgrader(["export", "--to", str(out)], cwd=root, check=False)
    print((proc.stdout + proc.stderr)[-2000:])
    return out if proc.returncode == 0 and out.exists() else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared_utils.course", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rel = sub.add_parser("release", help="regenerate assignments/ from solutions/")
    rel.add_argument("names", nargs="*", help="assignment folders (default: all)")
    val = sub.add_parser("validate", help="run one notebook's tests; exit 1 on failure")
    val.add_argument("path")
    sub.add_parser("autograde", help="autograde everything under submitted/")
    sub.add_parser("export", help="export grades to grades.csv")
    args = parser.parse_args(argv)
    if args.command == "release":
        for path in generate_release(names=args.names or None):
            print(f"wrote {path.relative_to(ROOT)}")
        return 0
    if args.command == "validate":
        if not args.path:
            parser.error("give a notebook: make validate NB=path/to/notebook.ipynb")
        return 0 if validate(args.path) else 1
    if args.command == "autograde":
        return 0 if autograde_all() else 1
    if args.command == "export":
        return 0 if export_grades() else 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
