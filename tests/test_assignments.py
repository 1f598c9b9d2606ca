"""Course assignments: the marker builder by hand, `make` of every assignment, the grader on
broken submissions, `validate` of every assignment (the CI check that the reference scores
full marks, the student version zero and each wrong solution less), and the CLI's refusals."""

import dataclasses
import json
import subprocess
import sys
import textwrap
import tomllib

import nbformat
import pytest

from minirlhf.assignments import ASSIGNMENTS, grade, make, stub_source, validate
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
        assert [f for f in files if f.startswith("tests/")] == [f"tests/test_{name}.py"]
        assert not any(f.startswith("minirlhf/assignments/") or f.endswith(
            ("_hidden.py", "/references.py", "conftest.py")) for f in files), files
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


def test_grader_gives_zero_with_a_message_for_broken_submissions(tmp_path):
    # 1. A package that does not import: every part zero, the error in the output.
    broken = tmp_path / "broken"
    make("trex", broken, execute=False)
    init = broken / "minirlhf" / "__init__.py"
    init.write_text(init.read_text() + "\nraise ImportError('my typo')\n")
    res = grade("trex", broken, tmp_path / "broken.json", verbose=False)
    assert res["score"] == 0 and res["parts"] == {"snippet_loss": 0}
    saved = json.loads((tmp_path / "broken.json").read_text())
    assert all("my typo" in t["output"] for t in saved["tests"]), saved
    # 2. One part hangs, the other raises: both zero, with the reason; the grader survives.
    sub = tmp_path / "hangs"
    build_package(sub, {}, {"advantages.py": {"group_advantages": (
                              "r = jnp.asarray(rewards, jnp.float32)",
                              "while True:\n        pass")},
                            "losses.py": {"grpo_loss": (
                                "per_token = clipped_surrogate(",
                                "raise RuntimeError('oops')\n    per_token = clipped_surrogate(")}})
    res = grade("grpo", sub, tmp_path / "results.json", verbose=False, timeout_s=5)
    assert res["parts"] == {"group_advantages": 0, "grpo_loss": 0}
    saved = json.loads((tmp_path / "results.json").read_text())
    assert set(saved) >= {"score", "tests"} and saved["score"] == 0
    assert sum(t["max_score"] for t in saved["tests"]) == pytest.approx(
        ASSIGNMENTS["grpo"].points)
    outputs = {t["name"].split(":")[0]: t["output"] for t in saved["tests"]}
    assert "Timeout" in outputs["group_advantages"], outputs
    assert "oops" in outputs["grpo_loss"], outputs


@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", list(ASSIGNMENTS))
def test_validate(name):
    scores = validate(name, verbose=False)
    assert scores["reference"] == {p.name: p.points for p in ASSIGNMENTS[name].parts}


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
