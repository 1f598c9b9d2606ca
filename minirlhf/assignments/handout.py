"""The handout notebook of an assignment: its lecture, with the answers left to the student.

    handout_notebook(assignment, execute=True)   the notebook (nbformat), not yet written
    solution_lines(assignment)                    the answer's lines, for `find_leaks`
    find_leaks(folder, assignment)                answer lines found in a student's folder

A lecture cell may mark the code a student should write the same way the package does
(`# BEGIN SOLUTION` ... `# END SOLUTION`, e.g. lecture 2's hand-written GAE loop). In the
handout that region becomes `# YOUR CODE HERE` and a `raise NotImplementedError`, as in
nbgrader's student notebooks, and the cell is tagged "exercise". With `execute`, the lecture
is first run top to bottom against the reference package (a fresh Jupyter kernel of this
interpreter), so every other cell comes with its outputs -- the figures and numbers the
student's code should reproduce. Outputs that would show an answer (lecture 5 prints the
source of `group_advantages`) are dropped. The handout opens with a cell naming the
functions to write and closes with one that runs the public tests.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from minirlhf.assignments.builder import BEGIN, END, package_dir, solution_regions

LECTURES_DIR = package_dir().parent / "lectures"
"""The repository's lectures (an editable install from a clone finds them here)."""

MIN_LINE = 25
"""An answer line shorter than this ("return out") is too common to count as a leak."""

EXERCISE = "exercise: write the missing code of this cell; the text above says what it computes"


def lecture_notebook(assignment) -> Path:
    """The lecture .ipynb a handout is made from; FileNotFoundError if this installation has
    no lectures (the handouts are made from a clone of the repository)."""
    path = LECTURES_DIR / f"{assignment.lecture}.ipynb"
    if not path.is_file():
        raise FileNotFoundError(
            f"assignment {assignment.name!r} is made from the lecture {path}, which is not "
            "there; make assignments from a clone of the repository (pip install -e .)")
    return path


def stub_cell(source: str, message: str = EXERCISE) -> str:
    """A cell's source with every marked region replaced by `# YOUR CODE HERE` and a
    `raise NotImplementedError(message)` at the marker's indentation. ValueError on
    unpaired markers."""
    out, inside = [], False
    for i, line in enumerate(source.split("\n")):
        if (m := BEGIN.match(line)):
            if inside:
                raise ValueError(f"cell line {i + 1}: BEGIN SOLUTION inside another region")
            inside = True
            out += [f"{m.group(1)}# YOUR CODE HERE",
                    f"{m.group(1)}raise NotImplementedError({message!r})"]
        elif END.match(line):
            if not inside:
                raise ValueError(f"cell line {i + 1}: END SOLUTION without a BEGIN SOLUTION")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError("BEGIN SOLUTION without an END SOLUTION in a cell")
    return "\n".join(out)


def _norm(line: str) -> str:
    return " ".join(line.split())


def _region_lines(source: str, spans) -> tuple[set[str], set[str]]:
    """(lines inside the spans, lines outside them) of `source`, whitespace-normalised."""
    lines = source.splitlines()
    inside = set()
    for begin, end in spans:
        inside |= {_norm(x) for x in lines[begin + 1:end]}
    keep = set(range(len(lines))) - {i for b, e in spans for i in range(b, e + 1)}
    return inside, {_norm(lines[i]) for i in keep}


def solution_lines(assignment) -> set[str]:
    """The lines of the assignment's answers: its regions in the package and in its lecture,
    whitespace-normalised, without comments, short lines, and lines that also appear outside
    every region of the package (those are not answers)."""
    answers, elsewhere = set(), set()
    stubs = assignment.stubs()
    for path in sorted(package_dir().rglob("*.py")):
        rel = path.relative_to(package_dir()).as_posix()
        if rel.startswith("assignments/"):
            continue
        text = path.read_text()
        regions = solution_regions(text) if "# BEGIN SOLUTION" in text else []
        wanted = [(b, e) for name, b, e in regions if name in stubs.get(rel, {})]
        inside, outside = _region_lines(text, [(b, e) for _, b, e in regions])
        elsewhere |= outside
        answers |= _region_lines(text, wanted)[0]
    try:
        cells = json.loads(lecture_notebook(assignment).read_text())["cells"]
    except FileNotFoundError:
        cells = []
    for cell in cells:
        lines = "".join(cell["source"]).splitlines()
        begins = [i for i, x in enumerate(lines) if BEGIN.match(x)]
        ends = [i for i, x in enumerate(lines) if END.match(x)]
        answers |= _region_lines("\n".join(lines), list(zip(begins, ends)))[0]
    return {x for x in answers - elsewhere if len(x) >= MIN_LINE and not x.startswith("#")}


def _output_text(output) -> str:
    if "text" in output:
        return "".join(output["text"])
    data = output.get("data", {})
    return "".join(data.get("text/plain", "")) + "".join(output.get("traceback", []))


def _shows(text: str, answers: set[str]) -> list[str]:
    return [x for x in map(_norm, text.splitlines()) if x in answers]


def find_leaks(folder: str | Path, assignment) -> list[str]:
    """"path: line" for every answer line (`solution_lines`) found in a file of `folder`:
    Python sources, Markdown, and notebooks (their cells and their outputs)."""
    answers = solution_lines(assignment)
    found = []
    for path in sorted(Path(folder).rglob("*")):
        if path.suffix not in (".py", ".md", ".ipynb", ".txt") or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if path.suffix == ".ipynb":
            cells = json.loads(text)["cells"]
            text = "\n".join("".join(c["source"]) + "\n" + "\n".join(
                _output_text(o) for o in c.get("outputs", [])) for c in cells)
        found += [f"{path.relative_to(folder)}: {x}" for x in _shows(text, answers)]
    return found


def _execute(nb, timeout_s: int) -> None:
    """Run `nb` in place in a fresh kernel of this interpreter, in a temporary folder (run
    folders of the lecture land there); the kernel sees MINIRLHF_QUIET=1."""
    from ipykernel.kernelspec import write_kernel_spec
    from nbclient import NotebookClient

    with tempfile.TemporaryDirectory(prefix="minirlhf_handout_") as tmp:
        write_kernel_spec(Path(tmp) / "jupyter" / "kernels" / "python3")
        saved = {k: os.environ.get(k) for k in ("JUPYTER_PATH", "TMPDIR", "MINIRLHF_QUIET")}
        os.environ.update(JUPYTER_PATH=str(Path(tmp) / "jupyter"), TMPDIR=tmp,
                          MINIRLHF_QUIET="1")
        try:
            NotebookClient(nb, kernel_name="python3", timeout=timeout_s,
                           resources={"metadata": {"path": tmp}}).execute()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


_HEADER = """# Assignment {title}: handout

This is {lecture}, with the answers left to you. You write:

{parts}

in the package `minirlhf/` of this folder (each raises `NotImplementedError` with a hint until
you do); cells of this notebook that call them fail until then.{exercises} {outputs}

Start Jupyter from this folder (or `pip install -e .` it) so that `import minirlhf` finds
*your* package. The last cell runs the public tests; the grader runs hidden ones too.
"""

_RUN_TESTS = """# The public tests of this assignment (`python -m pytest -q tests` in this folder).
import subprocess
import sys

proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "tests"], capture_output=True,
                      text=True)
print(proc.stdout[-3000:] or proc.stderr[-3000:])"""


def handout_notebook(assignment, execute: bool = True, timeout_s: int = 600):
    """The assignment's handout (an nbformat notebook; see the module's docstring)."""
    import nbformat

    nb = nbformat.read(lecture_notebook(assignment), as_version=4)
    if execute:
        _execute(nb, timeout_s)
    answers = solution_lines(assignment)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if "# BEGIN SOLUTION" in cell.source:
            cell.source = stub_cell(cell.source)
            cell.outputs, cell.execution_count = [], None
            cell.metadata["tags"] = sorted(set(cell.metadata.get("tags", [])) | {"exercise"})
        elif any(_shows(_output_text(o), answers) for o in cell.get("outputs", [])):
            cell.outputs, cell.execution_count = [], None  # e.g. the printed source of an answer
    parts = "\n".join(f"* **{p.name}** ({p.points:g} points): `{p.function}` in "
                      f"`minirlhf/{p.module}` -- {p.title}" for p in assignment.parts
                      if p.function)
    outputs = ("The other cells show the outputs of the reference solution: yours should "
               "reproduce them (up to sampling noise in the training runs)." if execute else
               "Run the notebook top to bottom as you go.")
    lecture = nb.cells[0].source.splitlines()[0].lstrip("# ")  # "Lecture 2 — Policy ..."
    n = sum("exercise" in c.metadata.get("tags", []) for c in nb.cells)
    exercises = (f" The {n} cell{'s' * (n > 1)} marked `# YOUR CODE HERE` "
                 f"{'are exercises' if n > 1 else 'is an exercise'} of the notebook itself "
                 "(ungraded)." if n else "")
    header = _HEADER.format(title=assignment.title, lecture=lecture, parts=parts,
                            exercises=exercises, outputs=outputs)
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(header))
    nb.cells.append(nbformat.v4.new_code_cell(_RUN_TESTS))
    nb.metadata["minirlhf"] = {"assignment": assignment.name, "executed": execute,
                               "python": sys.version.split()[0]}
    return nb
