"""The grading run (trusted side): pytest over the graded tests, in a process of the
grader's, with each call into the submission sent to a worker process (protocol.py).

    python -m minirlhf.assignments.runner SPEC RESULT_FD

SPEC is a JSON file of jobs, each {"label", "submission", "files", "parts", "exitfirst"};
the results of all of them go back as one JSON document on the pipe RESULT_FD, which the
worker never holds. Per test, the worker gets the test's time limit (its `timeout` marker,
else the job's): past it, or if the worker dies, it is killed and that test fails with the
reason (timeout, exit code, signal, exception); the next test starts a fresh worker.
"""

from __future__ import annotations

import inspect
import json
import os
import select
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from minirlhf.assignments import protocol

_TAIL_BYTES = 2000


class SubmissionError(Exception):
    """Something the submission did made a graded call fail (the base of the three below)."""


class SubmissionRaised(SubmissionError):
    """The submission's code raised; `error` is the exception's type name."""

    def __init__(self, error: str, message: str, tb: str = ""):
        super().__init__(f"{error}: {message}" + (f"\n{tb}" if tb else ""))
        self.error = error


class SubmissionTimeout(SubmissionError):
    """The call did not answer within the test's time limit (the worker was killed)."""


class SubmissionDied(SubmissionError):
    """The worker ended (exit code or signal) before it answered."""


def _write_all(fd: int, data: bytes, deadline: float) -> None:
    """Write to a non-blocking pipe by the deadline (a worker that stops reading cannot
    block the grader: select only promises room for some bytes, not for all)."""
    view = memoryview(data)
    while view:
        if not select.select([], [fd], [], max(0.0, deadline - time.monotonic()))[1]:
            raise TimeoutError
        try:
            view = view[os.write(fd, view[:1 << 16]):]
        except BlockingIOError:
            continue


def _read_exactly(fd: int, n: int, deadline: float) -> bytes:
    chunks, got = [], 0
    while got < n:
        if not select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
            raise TimeoutError
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def describe_exit(code: int | None) -> str:
    """'exited with code 3' / 'was killed by signal 9 (SIGKILL)'."""
    if code is None:
        return "is still running"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "?"
        extra = (f" (it wrote more than {protocol.LOG_LIMIT_BYTES >> 20} MiB of output)"
                 if name == "SIGXFSZ" else "")
        return f"was killed by signal {-code} ({name}){extra}"
    return f"exited with code {code}"


class Worker:
    """One process running the submission's code (see protocol.serve)."""

    def __init__(self, submission: Path, spec: dict, log: Path, deadline: float):
        to_r, self._to_w = os.pipe()
        self._from_r, from_w = os.pipe()
        self.log = log
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PYTEST"))}
        env.update(HOME=str(submission), TMPDIR=str(submission), MINIRLHF_QUIET="1",
                   MINIRLHF_CACHE_DIR="", MPLBACKEND="Agg")
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                protocol.worker_command(sys.executable, to_r, from_w, str(submission), spec),
                pass_fds=(to_r, from_w), stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, cwd=submission, env=env, start_new_session=True)
        os.close(to_r)
        os.close(from_w)
        os.set_blocking(self._to_w, False)
        self.hello = self._receive(deadline)

    def _receive(self, deadline: float) -> dict:
        try:
            (n,) = struct.unpack("<Q", _read_exactly(self._from_r, 8, deadline))
            if n > protocol.MAX_MESSAGE_BYTES:
                raise protocol.ProtocolError(f"a reply of {n} bytes")
            return protocol.decode(_read_exactly(self._from_r, n, deadline))
        except TimeoutError:
            self.kill()
            raise SubmissionTimeout("no answer within the test's time limit: the process "
                                    "running the submission was killed" + self.tail()) from None
        except (EOFError, OSError):
            code = self.kill()
            raise SubmissionDied(f"the process running the submission {describe_exit(code)} "
                                 f"before it answered" + self.tail()) from None
        except protocol.ProtocolError as err:
            self.kill()
            raise SubmissionDied(f"the process running the submission sent a bad reply "
                                 f"({err})" + self.tail()) from None

    def request(self, header: dict, value, deadline: float) -> object:
        try:
            _write_all(self._to_w, _frame(protocol.encode(header, value)), deadline)
        except TimeoutError:
            self.kill()
            raise SubmissionTimeout("the process running the submission did not read its "
                                    "input within the test's time limit (killed)") from None
        except (BrokenPipeError, OSError):
            code = self.kill()
            raise SubmissionDied(f"the process running the submission {describe_exit(code)}"
                                 + self.tail()) from None
        reply = self._receive(deadline)
        if not reply.get("ok"):
            raise SubmissionRaised(reply.get("error", "?"), reply.get("message", ""),
                                   reply.get("traceback", ""))
        return reply.get("value")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> int | None:
        """End the worker: SIGTERM first (as root its keeper then kills the submission's
        code and everything it started, isolation._keeper), then SIGKILL to the whole
        process group. Its exit status."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # as another user, what is left
        except (ProcessLookupError, PermissionError):
            pass
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            code = None
        for fd in (self._to_w, self._from_r):
            try:
                os.close(fd)
            except OSError:
                pass
        self._to_w = self._from_r = -1
        return code

    def tail(self) -> str:
        """The end of what the worker printed, for a failure's message."""
        try:
            with open(self.log, "rb") as f:
                f.seek(max(0, f.seek(0, 2) - _TAIL_BYTES))
                text = f.read().decode(errors="replace").strip()
        except OSError:
            return ""
        return f"\n--- the end of what it printed ---\n{text}" if text else ""


def _frame(payload: bytes) -> bytes:
    return struct.pack("<Q", len(payload)) + payload


class _Target:
    def __init__(self, owner: "RemoteSubmission", path: str):
        self._owner, self._path = owner, path

    def __getattr__(self, name: str) -> "_Target":
        if name.startswith("__"):
            raise AttributeError(name)
        return _Target(self._owner, f"{self._path}.{name}")

    def __call__(self, *args, **kwargs):
        return self._owner.request({"op": "call", "target": self._path}, args, kwargs)


class RemoteSubmission:
    """The `sub` fixture under the grader: like protocol.LocalSubmission, but every call
    runs in the worker, within the current test's deadline."""

    def __init__(self, submission: Path, spec: dict, log: Path, default_timeout_s: float):
        self.submission, self.spec, self.log = submission, spec, log
        self.default_timeout_s = default_timeout_s
        self.deadline: float | None = None
        self.worker: Worker | None = None
        self.isolation: list[str] | None = None
        self._import_error: SubmissionError | None = None
        self._starts = 0
        self.mutation_error: str | None = None
        self.mutation: dict | None = None
        """{"module", "qualname", "source"}: validate's edit of the reference, applied to
        every worker this submission starts (protocol.mutate)."""

    def _ensure(self, deadline: float) -> Worker:
        if self._import_error is not None:  # it failed the same way for an earlier test
            raise self._import_error
        if self.worker is None or not self.worker.alive():
            self.worker = None
            self._starts += 1  # each worker its own log: the size limit is per worker
            log = self.log.with_name(f"{self.log.stem}-{self._starts}{self.log.suffix}")
            try:
                worker = Worker(self.submission, self.spec, log, deadline)
            except (SubmissionTimeout, SubmissionDied) as err:
                # It died (or hung) importing the submission: every later test would too.
                self._import_error = type(err)(f"{err} (while importing the submission)")
                raise self._import_error from None
            self.isolation = worker.hello.get("isolation")
            if not worker.hello.get("ready"):
                worker.kill()
                self._import_error = SubmissionRaised(
                    worker.hello.get("error", "?"), worker.hello.get("message", ""),
                    worker.hello.get("traceback", ""))
                raise self._import_error
            if self.mutation is not None:
                try:
                    worker.request({"op": "mutate", **self.mutation}, None, deadline)
                except SubmissionError as err:
                    worker.kill()
                    self.mutation_error = str(err)
                    raise
            self.worker = worker
        return self.worker

    def set_mutation(self, mutation: dict | None) -> None:
        """Apply `mutation` (None: the reference again) to the running worker, if any, and
        to every worker started after."""
        if self.worker is not None and self.worker.alive():
            undo = {k: v for k, v in (self.mutation or {}).items() if k != "source"}
            try:
                if self.mutation is not None:
                    self.worker.request({"op": "mutate", **undo}, None,
                                        time.monotonic() + 60)
                if mutation is not None:
                    self.worker.request({"op": "mutate", **mutation}, None,
                                        time.monotonic() + 60)
            except SubmissionError as err:
                self.close()
                self.mutation_error = str(err)
        self.mutation = mutation
        self._import_error = None

    def request(self, header: dict, args, kwargs):
        deadline = self.deadline or time.monotonic() + self.default_timeout_s
        try:
            return self._ensure(deadline).request(header, (tuple(args), dict(kwargs)),
                                                  deadline)
        except (SubmissionTimeout, SubmissionDied):
            self.worker = None  # killed: the next test starts a fresh one
            raise

    assert_close = staticmethod(protocol.assert_close)

    def __getattr__(self, name: str) -> _Target:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Target(self, name)

    def run(self, fn, *args, **kwargs):
        """Call `fn` (a module-level function of a test file, self-contained: it imports
        what it uses) in the worker; only its text and arguments travel."""
        source = textwrap.dedent(inspect.getsource(fn))
        return self.request({"op": "run", "source": source, "name": fn.__name__},
                            args, kwargs)

    def close(self) -> None:
        if self.worker is not None:
            self.worker.kill()
            self.worker = None


class GradingPlugin:
    """pytest plugin of a grading run: the `sub` fixture, per-test deadlines, the report."""

    def __init__(self, sub: RemoteSubmission):
        self._sub = sub
        self.results: dict[str, list] = {}
        self.file_errors: dict[str, str] = {}

    @pytest.fixture(scope="session")
    def sub(self):
        return self._sub

    def pytest_configure(self, config):
        config.addinivalue_line("markers", "timeout(seconds): this test's time limit")

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item):
        marker = item.get_closest_marker("timeout")
        limit = marker.args[0] if marker else self._sub.default_timeout_s
        self._sub.deadline = time.monotonic() + limit
        try:
            return (yield)
        finally:
            self._sub.deadline = None

    def pytest_runtest_logreport(self, report):
        stem = Path(report.location[0]).stem
        func = report.location[2].split("[", 1)[0]
        key = f"{stem}::{func}"
        passed, text, seconds = self.results.get(key, [True, "", 0.0])
        if report.failed or (report.skipped and report.when == "call"):
            passed = False
            text = (text + "\n" + report.longreprtext).strip()
        self.results[key] = [passed, text, seconds + report.duration]

    def pytest_collectreport(self, report):
        if report.failed:
            self.file_errors[Path(report.nodeid.split("::")[0]).stem] = report.longreprtext


def run_job(job: dict, private: Path, spec: dict, shared: dict) -> dict:
    """Run one job's tests. Jobs with a "mutation" share one RemoteSubmission (and so one
    worker) per submission folder: validate's mutants cost no process start each."""
    spec = dict(spec, workdir=job["submission"], private=str(private))
    if job.get("mutation") is not None:
        if job["submission"] not in shared:
            shared[job["submission"]] = RemoteSubmission(
                Path(job["submission"]), spec, private / f"log-{job['index']}.txt",
                job["timeout_s"])
        sub = shared[job["submission"]]
        sub.mutation_error = None
        sub.set_mutation(job["mutation"])
    else:
        sub = RemoteSubmission(Path(job["submission"]), spec,
                               private / f"log-{job['index']}.txt", job["timeout_s"])
    plugin = GradingPlugin(sub)
    args = list(job["files"]) + ["-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-p",
                                 "no:randomly", "-p", "no:timeout", "-c",
                                 str(private / "pytest.ini"), "--rootdir", str(private),
                                 "--continue-on-collection-errors", "-W", "ignore", "--tb=short"]
    if job.get("parts"):
        args += ["-k", " or ".join(f"test_{p}__" for p in job["parts"])]
    if job.get("exitfirst"):
        args += ["-x"]
    try:
        with open(private / f"pytest-{job['index']}.txt", "w") as out:
            old = sys.stdout
            sys.stdout = out
            try:
                pytest.main(args, plugins=[plugin])
            finally:
                sys.stdout = old
    finally:
        if job.get("mutation") is None:
            sub.close()
    return {"results": plugin.results, "file_errors": plugin.file_errors,
            "isolation": sub.isolation, "mutation_error": sub.mutation_error}


def main(argv: list[str]) -> int:
    spec_path, result_fd = Path(argv[0]), int(argv[1])
    spec = json.loads(spec_path.read_text())
    private = spec_path.parent
    shared: dict = {}
    out = {job["label"]: run_job(job, private, spec["isolation"], shared)
           for job in spec["jobs"]}
    for sub in shared.values():
        sub.close()
    protocol.send(result_fd, json.dumps(out).encode())
    os.close(result_fd)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
