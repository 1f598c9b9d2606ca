"""Build a student's version of the package from the marked reference code.

    stub_source(source, {"gae": "gae: hint"})   one module's text, regions blanked
    build_package(dest, stubs, patches)          the whole package, blanked or patched
    make(name, out)                              an assignment's folder for students

Only the lines of a blanked region change (they become one `raise NotImplementedError`);
every other line of every file is copied byte for byte, and the markers of regions that
stay are dropped (they are comments, so the code is the reference's).
"""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import minirlhf

BEGIN = re.compile(r"^(\s*)# BEGIN SOLUTION\s*$")
END = re.compile(r"^\s*# END SOLUTION\s*$")


def _qualnames(tree: ast.AST) -> list[tuple[str, int, int]]:
    """(qualified name, first line, last line) of every function, methods as Class.method."""
    out = []

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = prefix + child.name
                if not isinstance(child, ast.ClassDef):
                    out.append((name, child.lineno, child.end_lineno))
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    return out


def solution_regions(source: str) -> list[tuple[str, int, int]]:
    """The marked regions of a module: (enclosing function's qualname, BEGIN line index,
    END line index), 0-based line indices. Raises ValueError on unpaired or nested markers
    or a region outside any function."""
    lines = source.splitlines(keepends=True)
    funcs = _qualnames(ast.parse(source))
    regions, start = [], None
    for i, line in enumerate(lines):
        if BEGIN.match(line):
            if start is not None:
                raise ValueError(f"line {i + 1}: BEGIN SOLUTION inside another region "
                                 f"(opened on line {start + 1})")
            start = i
        elif END.match(line):
            if start is None:
                raise ValueError(f"line {i + 1}: END SOLUTION without a BEGIN SOLUTION")
            # The END line itself may follow the function's last statement (a trailing
            # comment is outside the AST's line range), so the BEGIN line decides.
            inside = [(name, a, b) for name, a, b in funcs if a < start + 1 <= b]
            if not inside:
                raise ValueError(f"line {start + 1}: a solution region must be inside a "
                                 f"function's body")
            name = max(inside, key=lambda f: f[1])[0]  # the innermost function
            regions.append((name, start, i))
            start = None
    if start is not None:
        raise ValueError(f"line {start + 1}: BEGIN SOLUTION without an END SOLUTION")
    return regions


def stub_source(source: str, stubs: dict[str, str],
                patches: dict[str, tuple[str, str]] | None = None) -> str:
    """`source` with the regions of the functions in `stubs` replaced by
    `raise NotImplementedError(message)` (at the BEGIN marker's indentation), the regions
    of `patches` ({qualname: (old, new)}) edited by one text replacement, and every other
    region's marker lines removed. Every line outside the regions is kept as it is.

    Raises ValueError if a function named in `stubs` or `patches` has no region (or more
    than one), or if `old` is not found in its region.
    """
    patches = patches or {}
    regions = solution_regions(source)
    for name in list(stubs) + list(patches):
        n = sum(r[0] == name for r in regions)
        if n != 1:
            raise ValueError(f"function {name!r} has {n} solution regions, expected exactly 1")
    lines = source.splitlines(keepends=True)
    out, pos = [], 0
    for name, begin, end in regions:
        out += lines[pos:begin]
        body = lines[begin + 1:end]
        if name in stubs:
            indent = BEGIN.match(lines[begin]).group(1)
            newline = "\r\n" if lines[begin].endswith("\r\n") else "\n"
            out.append(f"{indent}raise NotImplementedError({stubs[name]!r}){newline}")
        elif name in patches:
            old, new = patches[name]
            text = "".join(body)
            if old not in text:
                raise ValueError(f"patch for {name!r}: {old!r} is not in its solution region")
            out.append(text.replace(old, new, 1))
        else:
            out += body
        pos = end + 1
    out += lines[pos:]
    result = "".join(out)
    compile(result, "<stubbed>", "exec")  # a region that leaves invalid Python fails here
    return result


def package_dir() -> Path:
    """The reference package's folder (the installed minirlhf)."""
    return Path(minirlhf.__file__).parent


def envs_dir() -> Path:
    import minirlhf.envs

    return Path(minirlhf.envs.__file__).parent


_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "assignments")


def build_package(dest: str | Path, stubs: dict[str, dict[str, str]],
                  patches: dict[str, dict[str, tuple[str, str]]] | None = None) -> Path:
    """Copy the package to dest/minirlhf (with minirlhf.envs inside it, and without this
    `assignments` subpackage: it holds the hidden tests and the wrong solutions), then
    apply `stub_source` to every module with markers. stubs and patches: {module file
    relative to the package: {qualname: ...}}. Returns dest/minirlhf."""
    patches = patches or {}
    pkg = Path(dest) / "minirlhf"
    if pkg.exists():
        raise FileExistsError(f"{pkg} exists already; choose an empty --out folder")
    shutil.copytree(package_dir(), pkg, ignore=_IGNORE)
    if not (pkg / "envs").exists():
        shutil.copytree(envs_dir(), pkg / "envs", ignore=_IGNORE)
    for module in set(stubs) | set(patches):
        if not (pkg / module).is_file():
            raise ValueError(f"no module {module!r} in the package")
    for path in sorted(pkg.rglob("*.py")):
        text = path.read_bytes().decode()
        if "# BEGIN SOLUTION" not in text:
            continue
        rel = path.relative_to(pkg).as_posix()
        try:
            new = stub_source(text, stubs.get(rel, {}), patches.get(rel))
        except ValueError as err:
            raise ValueError(f"{rel}: {err}") from None
        path.write_bytes(new.encode())
    return pkg


_README = """# Assignment {title}

Fill in the functions below in the package `minirlhf/` of this folder. Each one raises
`NotImplementedError` with a hint; its docstring gives the equation, the shapes and the
paper. Everything else in the package is the reference implementation, so you can run the
rest of the library around your code.

| part | points | what | where |
| --- | --- | --- | --- |
{rows}

Total: {total:g} points.

The notebook `{lecture}.ipynb` is the lecture this assignment comes from, with its
answers left to you (cells marked `# YOUR CODE HERE`); it calls your functions as it goes.

## Run the public tests

    pip install -e .            # or: run from this folder, which puts ./minirlhf first
    python -m pytest -q tests

The public tests are a sample of the graded ones; hidden tests check more cases. A test
named `test_<part>__...` counts for that part; a part's points are shared equally among
its tests (public and hidden).

## Submit

Hand in the `minirlhf/` folder of this directory (zipped, or as your course says). The
grader runs `minirlhf assignment grade {name} --submission DIR`, where DIR contains your
`minirlhf/`; each test has a time limit, and code that does not import, hangs or raises
scores zero for its part.
"""

_CONFTEST = '''"""The `sub` fixture of the public tests: your package, called the way the grader calls
it (under the grader the calls run in a separate process; here they are direct, so a
failure shows its whole traceback)."""

import pytest
from _grading import LocalSubmission


@pytest.fixture(scope="session")
def sub():
    return LocalSubmission()
'''

_PYPROJECT = """[build-system]
requires = ["setuptools>=68", "wheel"]
build-backend = "setuptools.build_meta"

[project]
name = "minirlhf"
version = "0.1.0+{name}"
description = "minirlhf, student version of assignment {name!r}"
requires-python = ">=3.11"
dependencies = {deps}

[tool.setuptools]
packages = ["minirlhf", "minirlhf.envs"]

[tool.pytest.ini_options]
testpaths = ["tests"]
addopts = "-p no:cacheprovider"
"""


def make(name: str, out: str | Path, execute: bool = True) -> Path:
    """Write assignment `name`'s folder for students to `out`: the package with the
    assignment's regions blanked (out/minirlhf), its public tests (out/tests), the handout
    notebook (its lecture with the answers blanked; with `execute`, run first against the
    reference so the other cells keep their outputs: minutes), a README with the parts and
    points, and a pyproject.toml so that `pip install -e out` works.

    The slow part (running the lecture) comes before anything is written, so a failure
    leaves no half-made folder."""
    from importlib.metadata import PackageNotFoundError, requires

    from minirlhf.assignments import get_assignment
    from minirlhf.assignments.handout import handout_notebook

    a = get_assignment(name)
    out = Path(out)
    if (out / "minirlhf").exists():
        raise FileExistsError(f"{out / 'minirlhf'} exists already; choose an empty --out folder")
    try:
        import nbformat
    except ModuleNotFoundError:
        raise ModuleNotFoundError("making a handout notebook needs nbformat, nbclient and "
                                  "ipykernel: pip install -e \".[course]\"") from None
    notebook = handout_notebook(a, execute=execute)
    out.mkdir(parents=True, exist_ok=True)
    build_package(out, a.stubs())
    nbformat.write(notebook, out / f"{a.lecture}.ipynb")
    (out / "tests").mkdir(exist_ok=True)
    shutil.copyfile(a.public_tests, out / "tests" / f"test_{name}.py")
    # The tests call the package through `sub`, as under the grader (protocol.py).
    shutil.copyfile(Path(__file__).parent / "protocol.py", out / "tests" / "_grading.py")
    (out / "tests" / "conftest.py").write_text(_CONFTEST)
    rows = "\n".join(
        f"| {p.name} | {p.points:g} | {p.title} | "
        + (f"`minirlhf/{p.module}`: `{p.function}`" if p.function else "(uses the parts above)")
        + " |" for p in a.parts)
    (out / "README.md").write_text(_README.format(title=a.title, rows=rows, total=a.points,
                                                  name=name, lecture=a.lecture))
    try:
        deps = [r for r in requires("minirlhf") or [] if "extra ==" not in r]
    except PackageNotFoundError:
        deps = []
    (out / "pyproject.toml").write_text(_PYPROJECT.format(name=name, deps=deps + ["pytest>=8"]))
    return out
