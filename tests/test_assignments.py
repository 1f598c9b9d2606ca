"""Course assignments: the marker builder by hand, `make` of every assignment, the grader on
broken submissions, `validate` of every assignment (the CI check that the reference scores
full marks, the student version zero and each wrong solution less), and the CLI's refusals."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import tomllib
from fractions import Fraction
from pathlib import Path

import nbformat
import numpy as np
import pytest

from minirlhf.assignments import ASSIGNMENTS, GRADED_DIR, grade, grader, make, stub_source, validate
from minirlhf.assignments.builder import build_package, package_dir, solution_regions
from minirlhf.assignments.handout import find_leaks, handout_notebook, lecture_notebook, stub_cell
from minirlhf.cli import main

SOURCE = '''\
import math


def area(r):
    """Area of a circle. (...) -> (...)"""
    r = float(r)
    # BEGIN SOLUTION
    out = math.pi * r ** 2
    # END SOLUTION
    return out


class Shape:
    def scale(self, k):
        """Scaled copy."""
        if k > 0:
            # BEGIN SOLUTION
            return Shape()
            # END SOLUTION
        return None
'''


def test_stub_source_replaces_only_the_named_region_and_keeps_the_rest():
    out = stub_source(SOURCE, {"area": "area: pi r^2"})
    compile(out, "<out>", "exec")
    lines = out.splitlines()
    assert "    raise NotImplementedError('area: pi r^2')" in lines
    assert "out = math.pi" not in out and "BEGIN SOLUTION" not in out
    assert "            return Shape()" in lines  # the other region keeps its reference body
    # Every line of the source outside the stubbed region and the markers is kept, in order.
    kept = [line for line in SOURCE.splitlines()
            if "SOLUTION" not in line and "math.pi" not in line]
    assert [line for line in lines if "NotImplementedError" not in line] == kept
    ns = {}
    exec(out, ns)
    with pytest.raises(NotImplementedError, match="area: pi r"):
        ns["area"](2)
    assert ns["Shape"]().scale(0) is None


def test_stub_source_stubs_a_method_and_patches_a_region():
    out = stub_source(SOURCE, {"Shape.scale": "scale"}, {"area": ("r ** 2", "r ** 3")})
    ns = {}
    exec(out, ns)
    assert ns["area"](2) == pytest.approx(8 * 3.141592653589793)
    with pytest.raises(NotImplementedError):
        ns["Shape"]().scale(2)
    # No stubs, no patches: the markers go and the code is the reference's.
    assert stub_source(SOURCE, {}) == "".join(
        line for line in SOURCE.splitlines(keepends=True) if "SOLUTION" not in line)


@pytest.mark.parametrize("bad,match", [
    (SOURCE.replace("    # END SOLUTION\n    return out", "    return out"), "inside another"),
    (SOURCE.replace("    # BEGIN SOLUTION\n    out", "    out"), "without a BEGIN"),
    ("# BEGIN SOLUTION\nx = 1\n# END SOLUTION\n", "inside a function"),
])
def test_bad_markers_are_named(bad, match):
    with pytest.raises(ValueError, match=match):
        solution_regions(bad)


def test_stub_of_a_function_without_a_region_is_an_error():
    with pytest.raises(ValueError, match="'volume' has 0 solution regions"):
        stub_source(SOURCE, {"volume": "x"})
    with pytest.raises(ValueError, match="is not in its solution region"):
        stub_source(SOURCE, {}, {"area": ("nope", "x")})


def test_the_library_has_one_region_per_registered_part():
    for a in ASSIGNMENTS.values():
        for p in a.parts:
            if p.function is None:
                continue
            regions = solution_regions((package_dir() / p.module).read_text())
            assert [r[0] for r in regions].count(p.function) == 1, (a.name, p.name)


_CHECK_STUDENT_COPIES = textwrap.dedent('''
    import sys, json
    from pathlib import Path
    folders = json.loads(sys.argv[1])
    for name, (folder, stubbed, kept) in folders.items():
        sys.path.insert(0, folder)
        for mod in [m for m in sys.modules if m == "minirlhf" or m.startswith("minirlhf.")]:
            del sys.modules[mod]
        import importlib
        import minirlhf
        assert Path(minirlhf.__file__).resolve().is_relative_to(Path(folder).resolve()), \\
            (name, minirlhf.__file__)
        import minirlhf.cli, minirlhf.ppo, minirlhf.rlhf, minirlhf.grpo, minirlhf.trex  # all import
        for module, func in stubbed:
            obj = importlib.import_module("minirlhf." + module)
            for attr in func.split("."):
                obj = getattr(obj, attr)
            assert obj.__doc__, (name, func)  # the docstring stays
        import jax.numpy as jnp
        from minirlhf.losses import bradley_terry_loss
        from minirlhf.advantages import discounted_returns
        if "bradley_terry" in kept:
            assert abs(float(bradley_terry_loss(jnp.asarray([1.23]), jnp.asarray([4.59])))
                       - 3.3941) < 1e-3, name
        else:
            try:
                bradley_terry_loss(jnp.asarray([1.0]), jnp.asarray([0.0]))
                raise AssertionError(name + ": the stub did not raise")
            except NotImplementedError as err:
                assert str(err).startswith("bradley_terry: "), err
        assert float(discounted_returns(jnp.ones((2,)), jnp.zeros((2,)), 0.5)[0]) == 1.5
        sys.path.remove(folder)
    print("ok")
''')


def test_make_writes_importable_student_folders_without_answers(tmp_path):
    folders = {}
    for name, a in ASSIGNMENTS.items():
        out = make(name, tmp_path / name, execute=False)
        files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
        assert f"tests/test_{name}.py" in files and "README.md" in files
        assert [f for f in files if f.startswith("tests/")] == sorted(
            ["tests/_grading.py", "tests/conftest.py", f"tests/test_{name}.py"])
        assert not any(f.startswith("minirlhf/assignments/") or f.endswith(
            ("_hidden.py", "/references.py")) for f in files), files
        assert f"{a.lecture}.ipynb" in files  # the handout
        text = "\n".join((out / f).read_text() for f in files
                         if f.endswith((".py", ".md", ".ipynb")))
        assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
        assert "np_gae" not in text and "for t in reversed" not in text  # no reference loops
        assert find_leaks(out, a) == []
        handout = nbformat.read(out / f"{a.lecture}.ipynb", as_version=4)
        nbformat.validate(handout)
        lecture = nbformat.read(lecture_notebook(a), as_version=4)
        assert len(handout.cells) == len(lecture.cells) + 2  # the header and the tests' cell
        for p in a.parts:
            if p.function:
                assert f"`{p.function}` in `minirlhf/{p.module}`" in handout.cells[0].source
        for h, c in zip(handout.cells[1:], lecture.cells):
            marked = "# BEGIN SOLUTION" in c.source
            assert ("exercise" in h.metadata.get("tags", [])) == marked
            assert (h.source == c.source) != marked
            if marked:  # the region, not the cell, is blanked
                assert "raise NotImplementedError(" in h.source
                assert c.source.splitlines()[0] == h.source.splitlines()[0]
        assert "pytest" in handout.cells[-1].source
        meta = tomllib.loads((out / "pyproject.toml").read_text())  # installable on its own
        for pkg in meta["tool"]["setuptools"]["packages"]:
            assert (out / pkg.replace(".", "/") / "__init__.py").is_file(), pkg
        assert any(d.startswith("jax") for d in meta["project"]["dependencies"])
        readme = (out / "README.md").read_text()
        for p in a.parts:
            assert f"| {p.name} | {p.points:g} |" in readme
            if p.function is None:
                continue
            src = (package_dir() / p.module).read_text()
            (_, begin, end), = [r for r in solution_regions(src) if r[0] == p.function]
            body = "".join(src.splitlines(keepends=True)[begin + 1:end])
            assert body not in text, (name, p.name)  # the answer is not in the folder
            stub = f"raise NotImplementedError({f'{p.name}: {p.hint}'!r})"
            assert stub in (out / "minirlhf" / p.module).read_text()
        # Everything but the stubbed modules is byte-identical to the reference (less markers).
        stubbed_modules = {p.module for p in a.parts if p.function}
        for f in ("tokenizer.py", "distributions.py", "envs/__init__.py"):
            assert f not in stubbed_modules
        assert (out / "minirlhf" / "tokenizer.py").read_bytes() == \
            (package_dir() / "tokenizer.py").read_bytes()
        stubbed = [(p.module[:-3], p.function) for p in a.parts if p.function]
        kept = [] if name == "preferences" else ["bradley_terry"]
        folders[name] = (str(out), stubbed, kept)
    proc = subprocess.run([sys.executable, "-c", _CHECK_STUDENT_COPIES, json.dumps(folders)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stdout + proc.stderr


def test_stub_cell_blanks_regions_at_their_indentation():
    cell = "x = 1\nif x:\n    # BEGIN SOLUTION\n    y = 2\n    # END SOLUTION\nprint(y)"
    assert stub_cell(cell, "do it") == ("x = 1\nif x:\n    # YOUR CODE HERE\n"
                                        "    raise NotImplementedError('do it')\nprint(y)")
    assert stub_cell("a = 1") == "a = 1"
    with pytest.raises(ValueError, match="without an END"):
        stub_cell("# BEGIN SOLUTION\nx = 1")
    with pytest.raises(ValueError, match="line 1: END SOLUTION without"):
        stub_cell("# END SOLUTION")


_TINY_LECTURE = [
    "# Lecture 99 — A tiny lecture",
    "x = 2 + 3\nprint('x is', x)",
    # Lecture 5 prints the source of functions a student writes: the output is an answer.
    "import inspect\nfrom minirlhf.advantages import group_advantages\n"
    "print(inspect.getsource(group_advantages))",
    "# BEGIN SOLUTION\ny = x * 2\n# END SOLUTION\nprint('y is', y)",
]


def test_handout_runs_the_lecture_and_keeps_no_answer(tmp_path, monkeypatch):
    from minirlhf.assignments import handout

    cells = [nbformat.v4.new_markdown_cell(_TINY_LECTURE[0])] + [
        nbformat.v4.new_code_cell(c) for c in _TINY_LECTURE[1:]]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, tmp_path / "99_tiny.ipynb")
    monkeypatch.setattr(handout, "LECTURES_DIR", tmp_path)
    a = dataclasses.replace(ASSIGNMENTS["grpo"], lecture="99_tiny")
    out = handout_notebook(a, execute=True)
    header, _, run, source, exercise, tests = out.cells
    assert "Lecture 99 — A tiny lecture" in header.source and "group_advantages" in header.source
    assert "x is 5" in run.outputs[0]["text"]  # a cell of the lecture, run by the reference
    assert source.outputs == [] and source.source == _TINY_LECTURE[2]  # its output was an answer
    assert exercise.outputs == [] and exercise.metadata["tags"] == ["exercise"]
    assert "y = x * 2" not in exercise.source and "NotImplementedError" in exercise.source
    assert out.metadata["minirlhf"]["executed"] is True
    (tmp_path / "student").mkdir()
    nbformat.write(out, tmp_path / "student" / "handout.ipynb")
    assert find_leaks(tmp_path / "student", a) == []
    (tmp_path / "student" / "notes.md").write_text(
        "    std = jnp.std(r, axis=1, keepdims=True, ddof=1)\n")  # a line of the answer
    assert find_leaks(tmp_path / "student", a) == [
        "notes.md: std = jnp.std(r, axis=1, keepdims=True, ddof=1)"]
    missing = dataclasses.replace(a, lecture="98_none")
    with pytest.raises(FileNotFoundError, match="98_none.ipynb, which is not there"):
        handout_notebook(missing, execute=False)


def _with_code(dest, code, patches=None):
    """A submission: the reference package (or `patches` of it) with `code` appended to
    its minirlhf/__init__.py (run when the worker imports it, before any test)."""
    build_package(dest, {}, patches or {})
    init = dest / "minirlhf" / "__init__.py"
    init.write_text(init.read_text() + "\n" + textwrap.dedent(code))
    return dest


def _outputs(res):
    return {t["name"]: t["output"] for t in res["tests"]}


def test_grader_gives_zero_with_the_reason_for_broken_submissions(tmp_path):
    # 1. A package that does not import: every part zero, the error in every test's output.
    broken = _with_code(tmp_path / "broken", "raise ImportError('my typo')")
    res = grade("trex", broken, tmp_path / "broken.json", verbose=False)
    assert res["score"] == 0 and res["parts"] == {"snippet_loss": 0}
    saved = json.loads((tmp_path / "broken.json").read_text())
    assert all("my typo" in t["output"] for t in saved["tests"]), saved
    # 2. os._exit at import: the reason is the exit, said for every test.
    exits = _with_code(tmp_path / "exits", "import os\nos._exit(0)")
    res = grade("trex", exits, verbose=False)
    assert res["score"] == 0
    assert all("exited with code 0" in o and "importing" in o for o in _outputs(res).values())
    # 3. Killed by a signal in one function: that part loses its points, with the signal.
    segv = build_package(tmp_path / "segv", {}, {"losses.py": {"trajectory_preference_loss": (
        "ret_a = ", "import os, signal\n    os.kill(os.getpid(), signal.SIGSEGV)\n    ret_a = ")}})
    res = grade("trex", segv.parent, verbose=False)
    assert res["score"] == 0
    assert all("SIGSEGV" in o for o in _outputs(res).values()), _outputs(res)


def test_a_hang_inside_a_bare_except_costs_only_its_part(tmp_path):
    # group_advantages swallows every exception in an endless loop (so an alarm signal
    # raised inside it would be swallowed too); grpo_loss is the reference's.
    sub = build_package(tmp_path / "hangs", {}, {"advantages.py": {"group_advantages": (
        "r = jnp.asarray(rewards, jnp.float32)",
        "while True:\n        try:\n            pass\n        except:  # noqa: E722\n"
        "            pass\n    r = jnp.asarray(rewards, jnp.float32)")}}).parent
    t0 = time.perf_counter()
    res = grade("grpo", sub, tmp_path / "results.json", verbose=False, timeout_s=5)
    n_hanging = sum(t["name"].startswith("group_advantages") for t in res["tests"])
    assert time.perf_counter() - t0 < 60 + 10 * n_hanging
    assert res["parts"] == {"group_advantages": 0, "grpo_loss": 4}
    assert res["score"] == 4 and isinstance(res["score"], int)
    for name, out in _outputs(res).items():
        if name.startswith("group_advantages"):
            assert "no answer within the test's time limit" in out, out


def test_printing_megabytes_costs_nothing_and_is_cut(tmp_path):
    chatty = build_package(tmp_path / "chatty", {}, {"losses.py": {
        "trajectory_preference_loss": ("ret_a = ", "print('x' * 3_000_000)\n    ret_a = ")}})
    res = grade("trex", chatty.parent, tmp_path / "r.json", verbose=False)
    assert res["score"] == 4
    assert (tmp_path / "r.json").stat().st_size < 20_000


def test_scores_are_exact_and_the_reference_scores_full_marks(tmp_path):
    ref = build_package(tmp_path / "ref", {}).parent
    res = grade("transformer", ref, tmp_path / "r.json", verbose=False)
    assert res["score"] == 10 and isinstance(res["score"], int)
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["score"] == 10 and sum(t["score"] for t in saved["tests"]) == \
        pytest.approx(10, abs=1e-3)
    assert grader.format_table(ASSIGNMENTS["transformer"], {"causal_mask": Fraction(1, 3)}) \
        .splitlines()[1].split()[1] == "0.3333"


_READ_AND_LEAK = """
import glob, os, pathlib
found = []
for pattern in {patterns!r}:
    for path in glob.glob(pattern, recursive=True):
        try:
            text = pathlib.Path(path).read_text()
        except OSError:
            continue
        found.append(path)
        for out in {targets!r}:
            try:
                pathlib.Path(out).write_text(text)
            except OSError:
                pass
print("read", found)
"""


def test_a_submission_cannot_read_the_tests_or_write_outside_its_folder(tmp_path):
    """As root (CI, a Gradescope container) the submission runs as nobody in a mount
    namespace: the hidden tests, the reference and the grader's folders are not there, and
    nothing it writes outside its folder outlives it. (Run as another user, the grader can
    only isolate by process: the threat model in lectures/README.md.)"""
    leak = tmp_path / "leak.txt"
    beside = package_dir().parent / f"leak-{os.getpid()}.txt"
    shared = Path("/tmp") / f"minirlhf-leak-{os.getpid()}.txt"
    code = _READ_AND_LEAK.format(
        patterns=[str(GRADED_DIR / "*_hidden.py"), str(package_dir() / "losses.py"),
                  "/tmp/grade-*/*.py", "/tmp/**/*_hidden.py",
                  # the checkout an editable install comes from: lectures, tests, git
                  str(package_dir().parent / "lectures" / "*.py"),
                  str(package_dir().parent / "tests" / "*.py"),
                  str(package_dir().parent / ".git" / "**" / "*"),
                  str(package_dir().parent / "envs" / "*.py")],
        targets=[str(leak), str(beside), str(shared)])
    stub = tmp_path / "stub"
    make("trex", stub, execute=False)
    init = stub / "minirlhf" / "__init__.py"
    init.write_text(init.read_text() + code)
    try:
        res = grade("trex", stub, verbose=False)
        assert res["score"] == 0  # the stub scores nothing, whatever it read
        if os.geteuid() != 0:
            pytest.skip("the grader is not root: a submission runs as the grader's user")
        assert res["isolation"][0] == "user+namespace", res["isolation"]
        for path in (leak, beside, shared):
            assert not path.exists(), path  # nothing was readable, or nowhere to write it
    finally:
        for path in (beside, shared):
            path.unlink(missing_ok=True)


def test_what_a_submission_starts_does_not_outlive_its_grading(tmp_path):
    tag = f"{os.getpid() % 10000 + 20000}"
    sub = _with_code(tmp_path / "spawns", f"""
        import subprocess
        subprocess.Popen(["sleep", "{tag}1"], start_new_session=True)
        subprocess.Popen(["sh", "-c", "(setsid sleep {tag}2 &); exit 0"])
        """)
    assert grade("trex", sub, verbose=False)["score"] == 4
    if os.geteuid() != 0:
        pytest.skip("the grader is not root: a detached process can outlive the worker")
    time.sleep(0.5)
    left = subprocess.run(["pgrep", "-f", f"sleep {tag}"], capture_output=True, text=True)
    assert left.stdout.strip() == "", left.stdout


def test_empty_answers_and_linked_packages_score_nothing(tmp_path):
    """Empty arrays broadcast against a scalar in numpy's assert_allclose; the graded tests
    compare shapes too (sub.assert_close). A package that is a link to the reference is
    refused before any work."""
    for name in ("grpo", "trex"):
        a = ASSIGNMENTS[name]
        sub = tmp_path / name
        make(name, sub, execute=False)
        for p in a.parts:
            if p.function:
                path = sub / "minirlhf" / p.module
                text = path.read_text()
                stub = f"raise NotImplementedError({f'{p.name}: {p.hint}'!r})"
                path.write_text(text.replace(stub, "return jnp.zeros((0,))"))
        assert grade(name, sub, verbose=False)["score"] == 0, name
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "minirlhf").symlink_to(package_dir())
    with pytest.raises(ValueError, match="is a symbolic link"):
        grade("trex", linked, verbose=False)


def test_forged_replies_and_hidden_failures_show_nothing_they_should_not():
    from minirlhf.assignments import protocol

    good = protocol.encode({"ok": True}, value=(np.zeros(3), {"a": [1.0, None]}))
    assert protocol.decode(good)["value"][1] == {"a": [1.0, None]}
    deep = json.dumps({"ok": True, "value": [[[[[[]]]]]] * 1}).encode()
    for header in (b'{"ok": true, "value": {"__array__": 5}}',
                   b'{"ok": true, "value": {"__array__": "x"}}',
                   b"[1, 2]", b"\xff", b'{"value": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
                   deep[:-3]):
        payload = protocol.struct.pack("<QQ", len(header), 0) + header
        with pytest.raises(protocol.ProtocolError):
            protocol.decode(payload)
    report = ("E   AssertionError: \nE   Not equal to tolerance rtol=1e-05, atol=0\nE   \n"
              "E   Mismatched elements: 2 / 2 (100%)\nE    ACTUAL: array([1., 2.])\n"
              "E    DESIRED: array([-0.387298, 0.5])")
    shown = grader.hidden_reason(report)
    assert "Mismatched elements: 2 / 2" in shown and "0.387" not in shown and "array" not in shown


def test_rewriting_the_graded_tests_voids_the_grade(tmp_path):
    """A submission that rewrites the test files (bodies `pass`) when it is imported: with
    the user change it cannot (root's files); without it (user=None, as for a grader that is
    not root) the rewrite happens and the hashes void the grade. Either way no points."""
    graded = tmp_path / "graded"
    graded.mkdir()
    for f in ("trex_public.py", "trex_hidden.py"):
        shutil.copyfile(GRADED_DIR / f, graded / f)
    a = dataclasses.replace(ASSIGNMENTS["trex"], graded_dir=graded)
    code = f"""
        import glob, re
        for path in glob.glob({str(graded)!r} + "/*.py") + glob.glob("/tmp/grade-*/test_*.py"):
            try:
                text = open(path).read()
                open(path, "w").write(re.sub(r"(def test_\\w+\\(.*\\):)", r"\\1\\n    return",
                                             text))
            except OSError:
                pass
        """
    stub = tmp_path / "stub"
    make("trex", stub, execute=False)
    init = stub / "minirlhf" / "__init__.py"
    init.write_text(init.read_text() + textwrap.dedent(code))
    before = {f: (graded / f).read_text() for f in ("trex_public.py", "trex_hidden.py")}
    res = grade(a, stub, verbose=False, user=None)  # the grader's own user: files writable
    assert res["score"] == 0
    assert any((graded / f).read_text() != t for f, t in before.items())  # it did rewrite
    assert all("this grade is void" in o for o in _outputs(res).values()), _outputs(res)
    if os.geteuid() == 0:
        for f, t in before.items():
            (graded / f).write_text(t)
        res = grade(a, stub, verbose=False)  # as nobody: the files are out of reach
        assert res["score"] == 0
        assert {f: (graded / f).read_text() for f in before} == before


@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", list(ASSIGNMENTS))
def test_validate_kills_every_registered_mutant(name):
    out = validate(name, verbose=False)
    a = ASSIGNMENTS[name]
    assert out["scores"]["reference"] == {p.name: p.points for p in a.parts}
    assert out["survivors"] == [] and out["killed"] == out["mutants"] >= 10


def test_mutants_are_single_edits_that_compile():
    from minirlhf.assignments.mutants import mutants

    part = ASSIGNMENTS["grpo"].part("group_advantages")
    ms = mutants(part)
    assert len({m.description for m in ms}) == len(ms)  # names are unique: the registry's key
    ops = {m.operator for m in ms}
    assert {"AOR", "ROR", "CRP", "KWD", "ARG", "FSR"} <= ops, ops
    for m in ms:
        assert m.old != m.new
        changed = [(a, b) for a, b in zip(m.old.splitlines(), m.new.splitlines()) if a != b]
        assert len(changed) == 1, m.description  # one line differs
    # Dropping ddof=1 (the population std, a plausible slip) is one of them.
    ddof = [m for m in ms if m.operator == "KWD" and "ddof=1" in m.description
            and "ddof" not in m.description.split("->")[1]]
    assert len(ddof) == 1
    assert "std = jnp.std(r, axis=1, keepdims=True)\n" in ddof[0].new


def test_an_equivalent_entry_the_reference_no_longer_has_is_refused():
    from minirlhf.assignments.validation import registered_mutants

    a = dataclasses.replace(ASSIGNMENTS["trex"], equivalent=(("snippet_loss: gone", "x"),))
    with pytest.raises(ValueError, match="no longer has"):
        registered_mutants(a)


def test_cli_refuses_unknown_names_and_bad_folders(tmp_path, capsys):
    assert main(["assignment", "make", "nope", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "unknown assignment 'nope'" in err and "transformer" in err
    assert main(["assignment", "grade", "nope", "--submission", str(tmp_path)]) == 2
    assert main(["assignment", "validate", "nope"]) == 2
    assert main(["assignment", "grade", "rlhf", "--submission", str(tmp_path)]) == 2
    assert "has no minirlhf/__init__.py" in capsys.readouterr().err
    assert main(["assignment", "grade", "rlhf", "--submission", str(tmp_path / "no")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    t = str(tmp_path / "t")
    assert main(["assignment", "make", "trex", "--out", t, "--no-execute"]) == 0
    assert main(["assignment", "make", "trex", "--out", t, "--no-execute"]) == 2
    assert "exists already" in capsys.readouterr().err
    assert main(["assignment", "list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ASSIGNMENTS)
