"""The autograder: run an assignment's graded tests against a submission, score per part.

    grade(name, submission_dir, results_path)   one pytest subprocess, results.json
    validate(name)                              reference full marks, stubs zero, wrong
                                                solutions marked down

A grading run is one fresh `python -m pytest` process (JAX's import costs seconds, so not
one per test) in a temporary folder holding the public and hidden tests, with the
submission first on PYTHONPATH, pytest-timeout's limit per test, no cache and no xdist.
Scores come from its JUnit XML report. A test that is missing from the report (its file
did not import) or a run that hangs as a whole counts as failed, with the reason as its
output: the grader itself never crashes on a bad submission.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from minirlhf.assignments import GRADED_DIR, Assignment, get_assignment
from minirlhf.assignments.builder import build_package, make
from minirlhf.assignments.handout import find_leaks

TEST_TIMEOUT_S = 60
"""pytest-timeout's limit per graded test (a test may ask for more with
@pytest.mark.timeout)."""
RUN_TIMEOUT_S = 900
"""The limit of a whole grading run (a hang outside any test: at import, say)."""
_OUTPUT_CHARS = 3000


@dataclass(frozen=True)
class TestResult:
    part: str
    name: str
    file: str
    passed: bool
    output: str
    hidden: bool


def graded_tests(a: Assignment) -> list[tuple[str, str, bool]]:
    """(file stem, test function name, hidden) of every graded test, read from the files
    (so a test whose file fails to import still counts, as failed)."""
    out = []
    for path, hidden in ((a.public_tests, False), (a.hidden_tests, True)):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                out.append((path.stem, node.name, hidden))
    return out


def part_of(a: Assignment, test_name: str) -> str:
    part = test_name[len("test_"):].split("__", 1)[0]
    a.part(part)  # a KeyError names the misnamed test's part
    return part


def _check_submission(submission: Path) -> Path:
    submission = Path(submission).resolve()
    if not submission.is_dir():
        raise FileNotFoundError(f"--submission {str(submission)!r} is not a folder")
    if not (submission / "minirlhf" / "__init__.py").is_file():
        raise ValueError(f"--submission {str(submission)!r} has no minirlhf/__init__.py: "
                         f"expected the folder that contains your minirlhf/ package (as "
                         f"`minirlhf assignment make` writes it)")
    return submission


def _parse_junit(path: Path) -> tuple[dict[tuple[str, str], tuple[bool, str]], dict[str, str]]:
    """{(file stem, function name): (passed, output)} and {file stem: collection error}."""
    results: dict[tuple[str, str], tuple[bool, str]] = {}
    file_errors: dict[str, str] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        classname, name = case.get("classname", ""), case.get("name", "")
        bad = [c for c in case if c.tag in ("failure", "error", "skipped")]
        text = "\n".join(f"{c.get('message', '')}\n{c.text or ''}".strip() for c in bad)
        if not classname:  # a file that did not collect: name is its path
            file_errors[Path(name.replace(".", "/")).name] = text
            continue
        stem, func = classname.split(".")[-1], name.split("[", 1)[0]
        ok, old = results.get((stem, func), (True, ""))
        results[(stem, func)] = (ok and not bad, (old + "\n" + text).strip())
    return results, file_errors


def run_tests(a: Assignment, submission: Path | None, parts: list[str] | None = None,
              timeout_s: int = TEST_TIMEOUT_S) -> list[TestResult]:
    """Run the graded tests of `parts` (default all) in one fresh pytest process against
    `submission` (a folder containing minirlhf/; None: the installed reference)."""
    wanted = [t for t in graded_tests(a) if parts is None or part_of(a, t[1]) in parts]
    with tempfile.TemporaryDirectory(prefix=f"grade-{a.name}-") as tmp:
        tmp = Path(tmp)
        for path in (a.public_tests, a.hidden_tests):
            shutil.copyfile(path, tmp / f"test_{path.stem}.py")
        shutil.copyfile(GRADED_DIR / "_conftest.py", tmp / "conftest.py")
        (tmp / "pytest.ini").write_text("[pytest]\n")
        env = dict(os.environ)
        env["MINIRLHF_SUBMISSION"] = str(submission or "")
        env.pop("PYTEST_ADDOPTS", None)
        env.pop("PYTEST_XDIST_WORKER", None)
        if submission is not None:
            env["PYTHONPATH"] = os.pathsep.join(
                [str(submission)] + [p for p in [env.get("PYTHONPATH")] if p])
        report = tmp / "report.xml"
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
               "no:xdist", "-p", "no:randomly", "-c", str(tmp / "pytest.ini"),
               "--rootdir", str(tmp), f"--timeout={timeout_s}", f"--junitxml={report}",
               "--continue-on-collection-errors", "-o", "junit_family=xunit1"]
        if parts is not None:
            cmd += ["-k", " or ".join(f"test_{p}__" for p in parts)]
        try:
            proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True,
                                  timeout=RUN_TIMEOUT_S)
            log = proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as err:
            log = f"the grading run was stopped after {RUN_TIMEOUT_S} s (a hang?)\n" + \
                  str(err.stdout or "")[-_OUTPUT_CHARS:]
        results, file_errors = _parse_junit(report) if report.exists() else ({}, {})
    out = []
    for stem, func, hidden in wanted:
        if (f"test_{stem}", func) in results:
            passed, text = results[(f"test_{stem}", func)]
        else:
            err = file_errors.get(f"test_{stem}.py") or file_errors.get(f"test_{stem}")
            passed, text = False, ("the test did not run: " + (err or log))
        out.append(TestResult(part_of(a, func), func, stem, passed,
                              text[-_OUTPUT_CHARS:], hidden))
    return out


def score(a: Assignment, results: list[TestResult]) -> dict[str, float]:
    """{part: points earned}: a part's points shared equally among its tests."""
    by_part: dict[str, list[TestResult]] = {}
    for r in results:
        by_part.setdefault(r.part, []).append(r)
    return {p: p_obj.points * sum(r.passed for r in rs) / len(rs)
            for p, rs in by_part.items() for p_obj in [a.part(p)]}


def gradescope_json(a: Assignment, results: list[TestResult]) -> dict:
    """Gradescope's results.json: each test with its share of its part's points."""
    counts: dict[str, int] = {}
    for r in results:
        counts[r.part] = counts.get(r.part, 0) + 1
    tests = []
    for r in results:
        max_score = a.part(r.part).points / counts[r.part]
        tests.append({"name": f"{r.part}: {r.name}" + (" (hidden)" if r.hidden else ""),
                      "score": round(max_score if r.passed else 0.0, 4),
                      "max_score": round(max_score, 4),
                      "output": "passed" if r.passed else r.output,
                      "visibility": "after_due_date" if r.hidden else "visible"})
    per_part = score(a, results)
    return {"score": round(sum(per_part.values()), 4), "tests": tests,
            "output": f"{a.title}: " + ", ".join(f"{p} {s:g}/{a.part(p).points:g}"
                                                for p, s in per_part.items())}


def format_table(a: Assignment, per_part: dict[str, float]) -> str:
    rows = [f"{'part':<20} {'score':>6} {'max':>5}  what"]
    for p in a.parts:
        if p.name in per_part:
            rows.append(f"{p.name:<20} {per_part[p.name]:>6.2f} {p.points:>5g}  {p.title}")
    rows.append(f"{'total':<20} {sum(per_part.values()):>6.2f} "
                f"{sum(a.part(p).points for p in per_part):>5g}")
    return "\n".join(rows)


def grade(name: str, submission_dir: str | Path | None,
          results_path: str | Path | None = None, parts: list[str] | None = None,
          verbose: bool = True, timeout_s: int = TEST_TIMEOUT_S) -> dict:
    """Grade `submission_dir` (a folder containing minirlhf/; None grades the installed
    reference) on assignment `name`. Writes Gradescope's results.json to `results_path` if
    given, prints the per-part table if `verbose`, and returns the results.json dict with
    "parts": {part: points earned} added."""
    a = get_assignment(name)
    submission = None if submission_dir is None else _check_submission(Path(submission_dir))
    results = run_tests(a, submission, parts, timeout_s)
    out = gradescope_json(a, results)
    if results_path is not None:
        Path(results_path).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(str(results_path) + ".tmp")
        tmp.write_text(json.dumps(out, indent=2))
        tmp.replace(results_path)  # atomic: never a half-written results.json
    out["parts"] = score(a, results)
    if verbose:
        for r in results:
            if not r.passed:
                print(f"FAILED {r.part}: {r.name}: {_reason(r.output)[:160]}")
        print(format_table(a, out["parts"]))
    return out


def _reason(output: str) -> str:
    """The line of a pytest failure that says what went wrong: its last `E   ...` line (the
    exception and its message), else the last non-empty line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line[1:].strip() for line in lines if line.startswith("E ")
              and not line[1:].strip().startswith(("-", "For simplicity"))]
    return errors[-1] if errors else (lines[-1] if lines else "")


def validate(name: str, jobs: int = 2, verbose: bool = True) -> dict:
    """nbgrader-style validation of assignment `name`: the student's folder holds no line
    of the answers (`find_leaks`), the reference scores full marks, the untouched student
    version zero on every part, and each registered wrong solution loses points on its
    part. Grading runs go `jobs` at a time. Raises AssertionError
    naming the part when any of this fails; returns {run: {part: points}}."""
    a = get_assignment(name)
    with tempfile.TemporaryDirectory(prefix=f"validate-{name}-") as tmp:
        tmp = Path(tmp)
        runs: dict[str, tuple[Path | None, list[str] | None]] = {"reference": (None, None)}
        make(name, tmp / "student", execute=False)
        leaks = find_leaks(tmp / "student", a)
        runs["student"] = (tmp / "student", None)
        for i, w in enumerate(a.wrong):
            p = a.part(w.part)
            sub = tmp / f"wrong{i}"
            build_package(sub, {}, {p.module: {p.function: (w.old, w.new)}})
            runs[f"wrong: {w.part}: {w.description}"] = (sub, [w.part])
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = {k: pool.submit(run_tests, a, sub, parts) for k, (sub, parts) in
                       runs.items()}
            scores = {k: score(a, f.result()) for k, f in futures.items()}
            failures = {k: [r for r in f.result() if not r.passed] for k, f in
                        futures.items()}
    problems = [f"an answer line is in the student's folder: {x}" for x in leaks]
    for p in a.parts:
        if scores["reference"].get(p.name) != p.points:
            why = "; ".join(f"{r.name}: {r.output.strip()[:300]}"
                            for r in failures["reference"] if r.part == p.name)
            problems.append(f"part {p.name!r}: the reference scores "
                            f"{scores['reference'].get(p.name)} of {p.points:g} ({why})")
        if scores["student"].get(p.name) != 0:
            problems.append(f"part {p.name!r}: the untouched student version scores "
                            f"{scores['student'].get(p.name)}, expected 0")
    for w in a.wrong:
        got = scores[f"wrong: {w.part}: {w.description}"].get(w.part)
        if got is None or got >= a.part(w.part).points:
            problems.append(f"part {w.part!r}: the wrong solution '{w.description}' "
                            f"scores full marks ({got}); the graded tests miss it")
    if verbose:
        for k, s in scores.items():
            print(f"{name:<18} {k:<60} " + ", ".join(f"{p} {v:.2f}" for p, v in s.items()))
    if problems:
        raise AssertionError(f"assignment {name!r} does not validate:\n  "
                             + "\n  ".join(problems))
    return scores
