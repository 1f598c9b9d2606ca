"""`validate`: the checks an assignment must pass before it is handed out.

    validate(name)   no answer line in the student's folder; the reference and each
                     registered differently-written correct solution at full marks; the
                     untouched student version at zero; every registered wrong solution and
                     every mutant of the reference (mutants.py) killed -- marked down on its
                     part -- except the registered equivalent ones.

It prints the kill rate per assignment and raises AssertionError naming what failed.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from minirlhf.assignments import Assignment, get_assignment
from minirlhf.assignments.builder import build_package, make, package_dir, stub_source
from minirlhf.assignments.grader import Job, TestResult, reason, run_jobs, score
from minirlhf.assignments.handout import find_leaks
from minirlhf.assignments.mutants import mutants


def registered_mutants(a: Assignment) -> tuple[list, list]:
    """(the mutants validate must see killed, the equivalent ones it skips), over the
    assignment's parts. An equivalent entry that matches no mutant is an error: the
    registry would otherwise hide a change of the reference."""
    equivalent = dict(a.equivalent)
    kept, skipped = [], []
    for p in a.parts:
        if p.function is None:
            continue
        for m in mutants(p):
            (skipped if f"{p.name}: {m.description}" in equivalent else kept).append(m)
    unknown = set(equivalent) - {f"{m.part}: {m.description}" for m in skipped}
    if unknown:
        raise ValueError(f"assignment {a.name!r}: equivalent mutants that the reference no "
                         f"longer has: {sorted(unknown)}")
    return kept, skipped


def validate(name: str, jobs: int = 2, verbose: bool = True) -> dict:
    """See the module docstring. Returns {"scores": {run: {part: points}}, "killed": k,
    "mutants": n, "survivors": [...], "seconds": s}."""
    a = get_assignment(name)
    t0 = time.perf_counter()
    kept, skipped = registered_mutants(a)
    with tempfile.TemporaryDirectory(prefix=f"validate-{name}-") as tmp:
        tmp = Path(tmp)
        make(name, tmp / "student", execute=False)
        leaks = find_leaks(tmp / "student", a)
        build_package(tmp / "reference", {})
        runs = [Job("reference", tmp / "reference"), Job("student", tmp / "student")]
        expect_full = {}
        for i, c in enumerate(a.correct):
            p = a.part(c.part)
            build_package(tmp / f"correct{i}", {}, {p.module: {p.function: (c.old, c.new)}})
            label = f"correct: {c.part}: {c.description}"
            runs.append(Job(label, tmp / f"correct{i}", [c.part]))
            expect_full[label] = c.part
        wrong = {}
        for i, w in enumerate(list(a.wrong) + kept):
            p = a.part(w.part)
            source = stub_source((package_dir() / p.module).read_text(), {},
                                 {p.function: (w.old, w.new)})
            label = (f"mutant: {w.part}: {w.description}" if i >= len(a.wrong)
                     else f"wrong: {w.part}: {w.description}")
            mutation = {"module": p.module[:-3].replace("/", "."), "qualname": p.function,
                        "source": source}
            runs.append(Job(label, tmp / "reference", [w.part], exitfirst=True,
                            mutation=mutation))
            wrong[label] = w.part
        results = run_jobs(a, runs, parallel=jobs)
    scores = {k: score(a, r) for k, (r, _) in results.items()}
    problems = [f"an answer line is in the student's folder: {x}" for x in leaks]
    for p in a.parts:
        if scores["reference"].get(p.name) != p.points:
            problems.append(f"part {p.name!r}: the reference scores "
                            f"{float(scores['reference'].get(p.name, 0)):g} of {p.points:g} "
                            f"({_why(results['reference'][0], p.name)})")
        if scores["student"].get(p.name) != 0:
            problems.append(f"part {p.name!r}: the untouched student version scores "
                            f"{float(scores['student'][p.name]):g}, expected 0")
    for label, part in expect_full.items():
        if scores[label].get(part) != a.part(part).points:
            problems.append(f"{label} scores {float(scores[label].get(part, 0)):g} of "
                            f"{a.part(part).points:g} ({_why(results[label][0], part)})")
    survivors = [label for label, part in wrong.items()
                 if scores[label].get(part, 0) >= a.part(part).points]
    problems += [f"{label} scores full marks: the graded tests miss it" for label in survivors]
    n_mut = len(kept)
    killed_mut = sum(1 for label in wrong if label.startswith("mutant: ")
                     and label not in survivors)
    out = {"scores": scores, "killed": killed_mut, "mutants": n_mut, "survivors": survivors,
           "equivalent": len(skipped), "wrong": len(a.wrong),
           "seconds": time.perf_counter() - t0}
    if verbose:
        for k in ("reference", "student", *expect_full):
            print(f"{name:<18} {k:<58} " + ", ".join(f"{p} {float(v):g}"
                                                     for p, v in scores[k].items()))
        print(f"{name:<18} wrong solutions killed {len(a.wrong) - sum(1 for s in survivors if s.startswith('wrong: '))}/{len(a.wrong)}, "
              f"mutants killed {killed_mut}/{n_mut} "
              f"({100 * killed_mut / max(n_mut, 1):.0f}%; {len(skipped)} equivalent ones "
              f"registered), {out['seconds']:.0f} s")
        for s in survivors:
            print(f"{name:<18} SURVIVED {s}")
    if problems:
        raise AssertionError(f"assignment {name!r} does not validate:\n  "
                             + "\n  ".join(problems))
    return out


def _why(results: list[TestResult], part: str) -> str:
    return "; ".join(f"{r.name}: {reason(r.output)[:200]}" for r in results
                     if r.part == part and not r.passed)
