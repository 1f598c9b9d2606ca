"""conftest.py of a grading run (copied there by the grader; not a test module).

Checks that `import minirlhf` resolves to the submission (MINIRLHF_SUBMISSION, empty for the
installed reference) and turns an import failure into a readable failure of every test,
instead of a crash of the grader.
"""

import os
import traceback
from pathlib import Path

import pytest

os.environ.setdefault("MINIRLHF_QUIET", "1")
os.environ.setdefault("MINIRLHF_CACHE_DIR", "")

_PROBLEM = None
try:
    import minirlhf

    _sub = os.environ.get("MINIRLHF_SUBMISSION", "")
    if _sub and not Path(minirlhf.__file__).resolve().is_relative_to(Path(_sub).resolve()):
        _PROBLEM = (f"minirlhf was imported from {minirlhf.__file__}, not from the "
                    f"submission {_sub}")
except BaseException as err:  # noqa: BLE001 - any failure of the student's code
    _PROBLEM = ("the submission's minirlhf does not import: "
                + "".join(traceback.format_exception_only(type(err), err)).strip()
                + "\n" + traceback.format_exc(limit=-3))


@pytest.fixture(autouse=True)
def _submission_imports():
    if _PROBLEM:
        pytest.fail(_PROBLEM, pytrace=False)
