"""The autograder: run an assignment's graded tests against a submission, score per part.

    grade(name, submission_dir, results_path)   the score table, Gradescope's results.json
    validate(name)                              reference full marks, stubs zero, every
                                                registered wrong solution and mutant killed

Who runs what (the threat model is in lectures/README.md, "What the grader protects"):

* The graded tests run in a process of the grader's (`runner.py`), from a private copy of
  the test files (0700). The submission's code runs in another process, the worker
  (`protocol.py`), which receives only the inputs of each call and sends back only its
  outputs: the tests, their reference values and the score never enter it.
* When the grader is root (a Gradescope container), the worker becomes `nobody` in a mount
  namespace in which the reference package and the grader's private folders are empty
  (`isolation.py`); it works on its own copy of the submission.
* A test has a time limit; past it, or if the worker dies, the worker is killed, that test
  fails with the reason, and the next test gets a fresh worker.
* The test files are hashed before and after the run; a change voids the grade. Scores
  come back on a pipe the worker never holds and are added up as fractions.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from minirlhf.assignments import GRADED_DIR, Assignment, get_assignment
from minirlhf.assignments.builder import build_package, make, package_dir
from minirlhf.assignments.handout import find_leaks

TEST_TIMEOUT_S = 60
"""A graded test's time limit (a test may ask for more with @pytest.mark.timeout)."""
SANDBOX_USER = "nobody"
"""The user the submission runs as when the grader is root."""
_OUTPUT_CHARS = 3000


@dataclass(frozen=True)
class TestResult:
    part: str
    name: str
    file: str
    passed: bool
    output: str
    hidden: bool
    seconds: float = 0.0
    """The test's time in the runner (calls into the submission included)."""


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
    links = [p for p in (submission / "minirlhf", submission / "minirlhf" / "__init__.py")
             if p.is_symlink()]
    if links:
        raise ValueError(f"--submission: {links[0]} is a symbolic link; a submission's "
                         f"package must be its own files")
    if not (submission / "minirlhf" / "__init__.py").is_file():
        raise ValueError(f"--submission {str(submission)!r} has no minirlhf/__init__.py: "
                         f"expected the folder that contains your minirlhf/ package (as "
                         f"`minirlhf assignment make` writes it)")
    return submission


def _digest(paths: list[Path]) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "missing"
            for p in paths}


def _sandbox_copy(submission: Path, dest: Path, user: str | None) -> Path:
    """dest/minirlhf: the worker's own copy of the submission's package (links kept as
    links, not followed), owned by the sandbox user when there is one."""
    shutil.copytree(submission / "minirlhf", dest / "minirlhf", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    os.chmod(dest, 0o755)
    if user is not None:
        import pwd

        pw = pwd.getpwnam(user)
        for root, dirs, files in os.walk(dest):
            for name in [root] + [os.path.join(root, x) for x in dirs + files]:
                os.lchown(name, pw.pw_uid, pw.pw_gid)
    return dest


def _sandbox_user() -> str | None:
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        pwd.getpwnam(SANDBOX_USER)
    except KeyError:
        return None
    return SANDBOX_USER


@dataclass(frozen=True)
class Job:
    label: str
    submission: Path
    parts: list[str] | None = None
    exitfirst: bool = False
    mutation: dict | None = None
    """validate's edit of the submission's code, {"module", "qualname", "source"}: jobs
    with one share a worker (protocol.mutate)."""


def run_jobs(a: Assignment, jobs: list[Job], timeout_s: int = TEST_TIMEOUT_S,
             parallel: int = 1, user: str | None = "auto"
             ) -> dict[str, tuple[list[TestResult], list[str]]]:
    """Run the graded tests of each job (its parts, default all) against its submission:
    {label: (results, isolation)}. Jobs go to `parallel` runner processes. `user`: whom
    the submission runs as when the grader is root ("auto": SANDBOX_USER; None: the
    grader's own user, the "process" isolation, as for a grader that is not root)."""
    user = _sandbox_user() if user == "auto" else user
    groups = [jobs[i::max(1, parallel)] for i in range(max(1, parallel))]
    # Parsed here, once: CPython 3.11's ast.parse is not safe in several threads at once.
    wanted = graded_tests(a)
    with ThreadPoolExecutor(max_workers=len(groups)) as pool:
        outs = list(pool.map(lambda g: _run_group(a, g, wanted, timeout_s, user),
                             [g for g in groups if g]))
    return {k: v for out in outs for k, v in out.items()}


def _run_group(a: Assignment, jobs: list[Job], wanted: list, timeout_s: int,
               user: str | None) -> dict:
    sources = [a.public_tests, a.hidden_tests]
    before = _digest(sources)
    with tempfile.TemporaryDirectory(prefix=f"grade-{a.name}-") as private, \
            tempfile.TemporaryDirectory(prefix=f"submission-{a.name}-") as work:
        private, work = Path(private), Path(work)
        os.chmod(private, 0o700)
        os.chmod(work, 0o755)
        files = []
        for path in sources:
            dst = private / f"test_{path.stem}.py"
            shutil.copyfile(path, dst)
            files.append(dst)
        (private / "pytest.ini").write_text("[pytest]\n")
        copies_before = _digest(files)
        specs, copies = [], {}
        for i, job in enumerate(jobs):
            if job.submission not in copies:
                copies[job.submission] = _sandbox_copy(job.submission, work / str(i), user)
            specs.append({"label": job.label, "index": i,
                          "submission": str(copies[job.submission]),
                          "files": [str(f) for f in files], "parts": job.parts,
                          "exitfirst": job.exitfirst, "timeout_s": timeout_s,
                          "mutation": job.mutation})
        isolation = {"user": user, "hide": [str(package_dir()), str(private),
                                            str(GRADED_DIR), str(a.graded_dir)],
                     # The checkout an editable install runs from holds the answers too
                     # (.git, lectures, tests): emptied but for what the worker needs.
                     "cover": [str(package_dir().parent)]}
        (private / "spec.json").write_text(json.dumps({"jobs": specs, "isolation": isolation}))
        # A safety net only (each test has its own deadline): parametrized items and
        # timeout markers are not counted here, so allow for them generously.
        limit = 600 + len(jobs) * len(wanted) * 8 * (timeout_s + 5)
        report, log = _run_runner(private, limit)
        changed = [p for p, h in {**_digest(sources), **_digest(files)}.items()
                   if h != {**before, **copies_before}[p]]
    out = {}
    for job in jobs:
        got = report.get(job.label) if report else None
        results = []
        for stem, func, hidden in wanted:
            seconds = 0.0
            part = part_of(a, func)
            if job.parts is not None and part not in job.parts:
                continue
            if changed:
                passed, text = False, ("the graded tests changed while the submission ran ("
                                       + ", ".join(Path(p).name for p in changed)
                                       + "): this grade is void")
            elif got is None:
                passed, text = False, "the grading run failed: " + log[-_OUTPUT_CHARS:]
            elif f"test_{stem}::{func}" in got["results"]:
                passed, text, seconds = got["results"][f"test_{stem}::{func}"]
                if hidden and not passed:  # what failed, not the test's code or its values
                    text = hidden_reason(text)
                elif not passed:
                    text = _submission_error(text) or text
            elif f"test_{stem}" in got["file_errors"]:
                passed, text = False, "the test file did not load: " + \
                    got["file_errors"][f"test_{stem}"]
            else:
                passed, text = False, ("not run: an earlier test of this run failed first"
                                       if job.exitfirst else "the test did not run")
            results.append(TestResult(part, func, stem, bool(passed), text[-_OUTPUT_CHARS:],
                                      hidden, seconds))
        if got and got.get("mutation_error"):  # validate's edit did not apply: not a kill
            raise RuntimeError(f"{job.label}: the edit did not apply: "
                               f"{got['mutation_error'][:500]}")
        out[job.label] = (results, (got or {}).get("isolation") or ["none", ""])
    return out


def _run_runner(private: Path, limit_s: float) -> tuple[dict | None, str]:
    """Start runner.py on private/spec.json; its JSON report (None if it failed) and log."""
    read_fd, write_fd = os.pipe()
    log_path = private / "runner.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "minirlhf.assignments.runner",
                                 str(private / "spec.json"), str(write_fd)],
                                pass_fds=(write_fd,), stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, env=env, cwd=private)
    os.close(write_fd)
    chunks, deadline = [], time.monotonic() + limit_s
    try:
        while True:
            if not select.select([read_fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
                proc.kill()
                break
            chunk = os.read(read_fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_fd)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    text = log_path.read_text(errors="replace")
    data = b"".join(chunks)
    try:
        return json.loads(data[8:].decode()), text
    except ValueError:
        return None, f"the runner {('exited with code ' + str(proc.returncode))}\n" + text


def run_tests(a: Assignment, submission: Path, parts: list[str] | None = None,
              timeout_s: int = TEST_TIMEOUT_S, user: str | None = "auto"
              ) -> tuple[list[TestResult], list[str]]:
    """The graded tests of `parts` (default all) against `submission` (a folder containing
    minirlhf/): their results and the isolation the worker had."""
    return run_jobs(a, [Job("submission", Path(submission), parts)], timeout_s,
                    user=user)["submission"]


def score(a: Assignment, results: list[TestResult]) -> dict[str, Fraction]:
    """{part: points earned}: a part's points shared equally among its tests (exact)."""
    by_part: dict[str, list[TestResult]] = {}
    for r in results:
        by_part.setdefault(r.part, []).append(r)
    return {p: Fraction(a.part(p).points) * sum(r.passed for r in rs) / len(rs)
            for p, rs in by_part.items()}


def _number(x: Fraction) -> int | float:
    """An integer where it is one (10, not 9.9999), else 4 decimals."""
    return int(x) if x.denominator == 1 else round(float(x), 4)


def gradescope_json(a: Assignment, results: list[TestResult]) -> dict:
    """Gradescope's results.json: each test with its share of its part's points."""
    counts: dict[str, int] = {}
    for r in results:
        counts[r.part] = counts.get(r.part, 0) + 1
    tests = []
    for r in results:
        max_score = Fraction(a.part(r.part).points) / counts[r.part]
        tests.append({"name": f"{r.part}: {r.name}" + (" (hidden)" if r.hidden else ""),
                      "score": _number(max_score if r.passed else Fraction(0)),
                      "max_score": _number(max_score),
                      "output": "passed" if r.passed else r.output,
                      "visibility": "after_due_date" if r.hidden else "visible"})
    per_part = score(a, results)
    return {"score": _number(sum(per_part.values(), Fraction(0))), "tests": tests,
            "output": f"{a.title}: " + ", ".join(f"{p} {_number(s)}/{a.part(p).points:g}"
                                                for p, s in per_part.items())}


def format_table(a: Assignment, per_part: dict[str, Fraction]) -> str:
    rows = [f"{'part':<20} {'score':>6} {'max':>5}  what"]
    for p in a.parts:
        if p.name in per_part:
            rows.append(f"{p.name:<20} {_number(per_part[p.name]):>6g} {p.points:>5g}  "
                        f"{p.title}")
    rows.append(f"{'total':<20} {_number(sum(per_part.values(), Fraction(0))):>6g} "
                f"{sum(a.part(p).points for p in per_part):>5g}")
    return "\n".join(rows)


def grade(name: str | Assignment, submission_dir: str | Path,
          results_path: str | Path | None = None, parts: list[str] | None = None,
          verbose: bool = True, timeout_s: int = TEST_TIMEOUT_S,
          user: str | None = "auto") -> dict:
    """Grade `submission_dir` (a folder containing minirlhf/) on assignment `name` (or an
    Assignment). Writes Gradescope's results.json to `results_path` if given, prints the
    per-part table if `verbose`, and returns the results.json dict with "parts": {part:
    points earned} and "isolation": [level, why not more] added. `user`: see run_jobs."""
    a = name if isinstance(name, Assignment) else get_assignment(name)
    submission = _check_submission(Path(submission_dir))
    results, isolation = run_tests(a, submission, parts, timeout_s, user)
    out = gradescope_json(a, results)
    if results_path is not None:
        Path(results_path).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(str(results_path) + ".tmp")
        tmp.write_text(json.dumps(out, indent=2))
        tmp.replace(results_path)  # atomic: never a half-written results.json
    out["parts"] = {p: _number(s) for p, s in score(a, results).items()}
    out["isolation"] = isolation
    if verbose:
        for r in results:
            if not r.passed:
                print(f"FAILED {r.part}: {r.name}: {reason(r.output)[:200]}")
        print(format_table(a, score(a, results)))
        print(f"isolation: {isolation[0]}" + (f" ({isolation[1]})" if isolation[1] else ""))
    return out


def _submission_error(text: str) -> str | None:
    """The whole message of a SubmissionError in a pytest report (the submission's own
    traceback and printout included), without the runner's frames; None if there is none."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("E ") and "Submission" in line.split(":", 1)[0]:
            body = [x[1:].strip() if x.startswith("E ") else x for x in lines[i:]
                    if x.startswith("E ")]
            return "\n".join([body[0].split(":", 1)[1].strip()] + body[1:])
    return None


def hidden_reason(text: str) -> str:
    """What a hidden test's failure may show: the submission's own error, or the assertion's
    message lines without the arrays it compared (the expected values stay hidden)."""
    err = _submission_error(text)
    if err is not None:
        return err
    lines = [x[1:].strip() for x in text.splitlines() if x.startswith("E ")]
    keep = [x for x in lines if x and not x.startswith(("ACTUAL", "DESIRED", "x:", "y:", "[",
                                                          "array(", "+", "-", "?"))
            and "array(" not in x and not x[0].isdigit()]
    return "\n".join(keep[:6]) or "failed"


def reason(output: str) -> str:
    """The line of a failure that says what went wrong: the submission's exception, time-out
    or exit (a SubmissionError's message), else the last `E   ...` line of pytest's report,
    else the last non-empty line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line[1:].strip() for line in lines if line.startswith("E ")
              and not line[1:].strip().startswith(("-", "For simplicity"))]
    for line in errors:
        for kind in ("SubmissionRaised", "SubmissionTimeout", "SubmissionDied"):
            if kind in line:
                return line.split(":", 1)[-1].strip() if ":" in line else line
    return errors[-1] if errors else (lines[-1] if lines else "")
