"""Course assignments built from the reference code, and their autograder (layer 3).

One source of truth: inside the bodies of the reference functions, the lines a student
writes sit between two comment lines (the convention of nbgrader and otter-grader)

    # BEGIN SOLUTION
    ...the reference implementation...
    # END SOLUTION

Comments only, so a user of the library never sees them. For an assignment, `make` copies
the package and replaces *that assignment's* regions by `raise NotImplementedError("<part>:
<hint>")`, keeping signature and docstring; every other region just loses its two marker
lines and keeps the reference, so later assignments never need a student's earlier answers.

    minirlhf assignment list
    minirlhf assignment make NAME --out DIR
    minirlhf assignment grade NAME --submission DIR [--results results.json]
    minirlhf assignment validate [NAME]

How a grading run keeps the submission away from the tests and the score: grader.py (and
the threat model in lectures/README.md). How `validate` knows the tests catch mistakes:
mutants.py and validation.py.

The graded tests live next to this file, in `graded/`: `<name>_public.py` (copied to the
student's folder) and `<name>_hidden.py` (never). Each test is named `test_<part>__<what>`,
which is how scores add up per part, and reaches the student's code only through its `sub`
fixture (`sub.losses.grpo_loss(...)`, `sub.run(probe, ...)`): under the grader those calls
run in another process, and only their inputs and outputs cross (protocol.py).

Why not nbgrader or otter-grader (both installable here): each takes a *notebook* as the
assignment. nbgrader's ClearSolutions preprocessor clears every marked region of every
cell of a notebook (no per-assignment choice, no `.py` modules of a package) and its
pipeline wants a course directory and a gradebook database; `otter assign` turns a master
notebook (or Rmd) into a student notebook and otter's own test format. Here the assignment
is a Python package whose modules import each other, and a region is stubbed or kept
depending on which assignment is built; that is a hundred lines (`builder.py`), and
grading is plain pytest against reference values, the shape courses such as Stanford
CS336 use (students fill in functions, tests compare them with stored references).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

GRADED_DIR = Path(__file__).parent / "graded"


@dataclass(frozen=True)
class Part:
    """One graded piece of an assignment: a marked region a student fills in (or, with
    `function=None`, an integration test of the assignment's other parts)."""

    name: str
    """Identifier; graded tests of this part are named test_<name>__<what>."""
    points: float
    """Points for passing all of the part's graded tests (shared equally among them)."""
    title: str
    """One line for the README and the score table."""
    module: str | None = None
    """The file, relative to the package, holding the marked region (e.g. "losses.py")."""
    function: str | None = None
    """Qualified name of the function whose body holds the region ("Class.method")."""
    hint: str = ""
    """What the NotImplementedError says to the student."""


@dataclass(frozen=True)
class WrongSolution:
    """A plausible mistake: `old` replaced by `new` inside one part's marked region of the
    reference. `validate` checks that the autograder marks it down on that part."""

    part: str
    description: str
    old: str
    new: str


@dataclass(frozen=True)
class CorrectSolution:
    """A differently-written right answer (a loop for a vectorised reference, say): `old`
    replaced by `new` inside one part's region. `validate` checks it gets full marks."""

    part: str
    description: str
    old: str
    new: str


@dataclass(frozen=True)
class Assignment:
    name: str
    title: str
    lecture: str
    """The lecture its handout notebook is made from (lectures/<lecture>.ipynb)."""
    parts: tuple[Part, ...]
    wrong: tuple[WrongSolution, ...] = field(default=())
    """Hand-written plausible mistakes, each of which must lose points on its part."""
    correct: tuple[CorrectSolution, ...] = field(default=())
    equivalent: tuple[tuple[str, str], ...] = field(default=())
    """("<part>: <mutant description>", why no test can kill it): the generated mutants
    (mutants.py) that cannot change any result, which validate leaves out."""
    graded_dir: Path = GRADED_DIR
    """Where its `<name>_public.py` and `<name>_hidden.py` are."""

    @property
    def public_tests(self) -> Path:
        return self.graded_dir / f"{self.name}_public.py"

    @property
    def hidden_tests(self) -> Path:
        return self.graded_dir / f"{self.name}_hidden.py"

    @property
    def points(self) -> float:
        return sum(p.points for p in self.parts)

    def part(self, name: str) -> Part:
        for p in self.parts:
            if p.name == name:
                return p
        raise KeyError(f"assignment {self.name!r} has no part {name!r}; its parts: "
                       f"{', '.join(p.name for p in self.parts)}")

    def stubs(self) -> dict[str, dict[str, str]]:
        """{module file: {function qualname: NotImplementedError message}} of the regions
        this assignment blanks."""
        out: dict[str, dict[str, str]] = {}
        for p in self.parts:
            if p.function is not None:
                out.setdefault(p.module, {})[p.function] = f"{p.name}: {p.hint}"
        return out


from minirlhf.assignments.registry import ASSIGNMENTS, get_assignment  # noqa: E402
from minirlhf.assignments.builder import make, stub_source  # noqa: E402
from minirlhf.assignments.grader import grade  # noqa: E402
from minirlhf.assignments.validation import validate  # noqa: E402

__all__ = ["ASSIGNMENTS", "Assignment", "CorrectSolution", "Part", "WrongSolution",
           "get_assignment", "make", "stub_source", "grade", "validate"]
