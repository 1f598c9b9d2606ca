"""How the grader talks to the process that runs a submission's code (the *worker*).

The graded tests and their reference values stay in the grader's own process; the worker
receives only the inputs of each call and sends back only its outputs:

    grader -> worker   {"op": "call", "target": "losses.grpo_loss", args, kwargs}
                       {"op": "run", "source": <a probe function's text>, args, kwargs}
    worker -> grader   {"ok": true, "value": ...}  or  {"ok": false, "error": ..., ...}

A message is a JSON header plus the arrays it names, stored with `numpy.save` and read back
with `allow_pickle=False`: a message from a submission is data, never code (no pickle), and
its size is capped before it is read.

This file imports only the standard library and numpy, because its text is also what the
worker runs (`worker_command`): the worker must never import the reference package, which
would shadow the submission's. It is copied into a student's `tests/` folder as well, so
that the public tests see the same values there as under the grader (`LocalSubmission`).
"""

import dataclasses
import io
import json
import os
import struct
import sys
import traceback

import numpy as np

MAX_MESSAGE_BYTES = 256 * 2**20
"""The largest message either side reads (a submission cannot fill the grader's memory)."""
LOG_LIMIT_BYTES = 64 * 2**20
"""RLIMIT_FSIZE of the worker: what it prints goes to a file, which may not grow past this
(past it the kernel stops the worker with SIGXFSZ, and that test fails saying so)."""


class ProtocolError(Exception):
    """A message that is not in the protocol's format (too big, truncated, bad JSON)."""


# ---- values: JSON + arrays ------------------------------------------------------------

def _is_namedtuple(x) -> bool:
    return isinstance(x, tuple) and hasattr(x, "_fields")


def to_plain(x, arrays: list | None = None):
    """A value made of arrays, numbers, strings, None, tuples, lists and str-keyed dicts,
    with every array (numpy, JAX, or anything with __array__) as a numpy array and every
    NamedTuple or dataclass as a dict of its fields. Raises TypeError naming the type for
    anything else (a function's result must be data)."""
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    if isinstance(x, np.generic):
        return x.item() if x.dtype.kind in "biuf" else np.asarray(x)
    if _is_namedtuple(x):
        return {k: to_plain(v) for k, v in zip(x._fields, x)}
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {f.name: to_plain(getattr(x, f.name)) for f in dataclasses.fields(x)}
    if isinstance(x, (tuple, list)):
        return type(x)(to_plain(v) for v in x)
    if isinstance(x, dict):
        bad = [k for k in x if not isinstance(k, str)]
        if bad:
            raise TypeError(f"a dict key {bad[0]!r} is not a string")
        return {k: to_plain(v) for k, v in x.items()}
    if hasattr(x, "__array__") or isinstance(x, np.ndarray):
        a = np.asarray(x)
        if a.dtype.kind not in "biufc":  # bfloat16 and the like: read as float32
            a = a.astype(np.float32)
        return a
    raise TypeError(f"a value of type {type(x).__module__}.{type(x).__qualname__} cannot be "
                    f"sent between the grader and the submission (arrays, numbers, strings, "
                    f"None, tuples, lists and dicts can)")


def _tree_to_json(x, arrays: list):
    if isinstance(x, np.ndarray):
        arrays.append(x)
        return {"__array__": len(arrays) - 1}
    if isinstance(x, tuple):
        return {"__tuple__": [_tree_to_json(v, arrays) for v in x]}
    if isinstance(x, list):
        return [_tree_to_json(v, arrays) for v in x]
    if isinstance(x, dict):
        return {"__dict__": {k: _tree_to_json(v, arrays) for k, v in x.items()}}
    if isinstance(x, float) and not np.isfinite(x):
        return {"__float__": repr(x)}
    return x


def _tree_from_json(x, arrays: list):
    if isinstance(x, list):
        return [_tree_from_json(v, arrays) for v in x]
    if isinstance(x, dict):
        if set(x) == {"__array__"}:
            return arrays[x["__array__"]]
        if set(x) == {"__tuple__"}:
            return tuple(_tree_from_json(v, arrays) for v in x["__tuple__"])
        if set(x) == {"__dict__"}:
            return {k: _tree_from_json(v, arrays) for k, v in x["__dict__"].items()}
        if set(x) == {"__float__"}:
            return float(x["__float__"])
        raise ProtocolError(f"unexpected object in a message: keys {sorted(x)[:5]}")
    return x


def encode(header: dict, value=None) -> bytes:
    """One message: header (JSON-able) with `value` (see to_plain) under "value"."""
    arrays: list[np.ndarray] = []
    body = dict(header)
    body["value"] = _tree_to_json(to_plain(value), arrays)
    buf = io.BytesIO()
    for a in arrays:
        np.save(buf, a, allow_pickle=False)  # (not ascontiguousarray: it makes 0-d 1-d)
    head = json.dumps(body).encode()
    return struct.pack("<QQ", len(head), len(arrays)) + head + buf.getvalue()


def decode(payload: bytes) -> dict:
    """The header dict of a message, its "value" decoded (arrays as numpy arrays)."""
    try:
        n_head, n_arrays = struct.unpack_from("<QQ", payload)
        body = json.loads(payload[16:16 + n_head].decode())
        buf = io.BytesIO(payload[16 + n_head:])
        arrays = [np.load(buf, allow_pickle=False) for _ in range(n_arrays)]
        if not isinstance(body, dict):
            raise ProtocolError("a message's header is not a JSON object")
        if "value" in body:
            body["value"] = _tree_from_json(body["value"], arrays)
    except ProtocolError:
        raise
    except Exception as err:  # noqa: BLE001 - anything a forged message can raise
        raise ProtocolError(f"a malformed message ({type(err).__name__}: "
                            f"{str(err)[:200]})") from None
    return body


def send(fd: int, payload: bytes) -> None:
    data = struct.pack("<Q", len(payload)) + payload
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def read_exactly(fd: int, n: int) -> bytes:
    """n bytes from fd; EOFError if the other end closed first."""
    chunks, got = [], 0
    while got < n:
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            raise EOFError("the other end closed the pipe")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def receive(fd: int) -> dict:
    (n,) = struct.unpack("<Q", read_exactly(fd, 8))
    if n > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"a message of {n} bytes (more than {MAX_MESSAGE_BYTES})")
    return decode(read_exactly(fd, n))


# ---- the worker -----------------------------------------------------------------------

def _to_jax(x):
    """Arguments reach the student's function as JAX arrays (as the library passes them)."""
    import jax.numpy as jnp

    if isinstance(x, np.ndarray):
        return jnp.asarray(x)
    if isinstance(x, tuple):
        return tuple(_to_jax(v) for v in x)
    if isinstance(x, list):
        return [_to_jax(v) for v in x]
    if isinstance(x, dict):
        return {k: _to_jax(v) for k, v in x.items()}
    return x


def resolve(target: str):
    """`"losses.grpo_loss"` or `"rlhf.AdaptiveKLController"`: the object in the imported
    package `minirlhf` (module path, then attributes)."""
    import importlib

    parts = target.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(["minirlhf"] + parts[:i - 1]))
        except ModuleNotFoundError:
            continue
        for attr in parts[i - 1:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(target)


def run_probe(source: str, name: str, args, kwargs):
    """Define the probe function from its text in a fresh namespace and call it."""
    namespace: dict = {"__name__": "graded_probe"}
    exec(compile(source, f"<probe {name}>", "exec"), namespace)
    return namespace[name](*args, **kwargs)


_ORIGINAL_CODE: dict = {}


def mutate(module: str, qualname: str, source: str | None) -> None:
    """Give the function `qualname` of minirlhf.<module> the body it has in `source` (the
    module's whole text, edited), or its own back with source None. Only `validate` asks
    for this, to grade many mutants of the reference in one worker: the function object
    stays the same, so every reference to it, `from ... import` copies included, sees the
    edit; JAX's caches are cleared so that nothing compiled before is reused."""
    import importlib

    import jax

    mod = importlib.import_module(f"minirlhf.{module}")
    func = mod
    for attr in qualname.split("."):
        func = getattr(func, attr)
    key = (module, qualname)
    _ORIGINAL_CODE.setdefault(key, func.__code__)
    if source is None:
        func.__code__ = _ORIGINAL_CODE[key]
    else:
        stack = [compile(source, mod.__file__, "exec")]
        while stack:
            code = stack.pop()
            if code.co_qualname == qualname and code.co_name == func.__name__:
                func.__code__ = code
                break
            stack += [c for c in code.co_consts if hasattr(c, "co_code")]
        else:
            raise ValueError(f"{qualname} is not in the edited source of {module}")
    jax.clear_caches()


def _answer(request: dict) -> bytes:
    try:
        args, kwargs = request.get("value") or ((), {})
        args, kwargs = _to_jax(tuple(args)), _to_jax(dict(kwargs))
        if request["op"] == "call":
            value = resolve(request["target"])(*args, **kwargs)
        elif request["op"] == "run":
            value = run_probe(request["source"], request["name"], args, kwargs)
        elif request["op"] == "mutate":
            value = mutate(request["module"], request["qualname"], request.get("source"))
        else:
            raise ValueError(f"unknown op {request['op']!r}")
        return encode({"ok": True}, value=value)
    except BaseException as err:  # noqa: BLE001 - anything the submission raises is reported
        if isinstance(err, KeyboardInterrupt):
            raise
        tb = traceback.format_exception(type(err), err, err.__traceback__)
        return encode({"ok": False, "error": type(err).__name__,
                       "message": str(err)[:2000], "traceback": "".join(tb)[-4000:]})


def _limit_resources() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_FSIZE, (LOG_LIMIT_BYTES, LOG_LIMIT_BYTES))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def serve(read_fd: int, write_fd: int, submission: str,
          isolation: tuple[str, str] = ("process", "")) -> None:
    """The worker's main loop: import the submission's `minirlhf` (from `submission`, which
    must be where it comes from), say so (with the isolation `isolation.enter` achieved),
    then answer requests until the pipe closes."""
    _limit_resources()
    sys.path.insert(0, submission)
    os.chdir(submission)
    try:
        if isolation[0] == "refused":
            raise PermissionError(isolation[1])
        import minirlhf

        where = os.path.realpath(minirlhf.__file__)
        if not where.startswith(os.path.realpath(submission) + os.sep):
            raise ImportError(f"minirlhf was imported from {where}, not from the submission")
        hello = encode({"ok": True, "ready": True, "isolation": list(isolation)})
    except BaseException as err:  # noqa: BLE001
        hello = encode({"ok": False, "ready": False, "isolation": list(isolation),
                        "error": type(err).__name__,
                        "message": f"the submission's minirlhf does not import: {err}"[:2000],
                        "traceback": traceback.format_exc()[-4000:]})
    send(write_fd, hello)
    while True:
        try:
            request = receive(read_fd)
        except EOFError:
            return
        send(write_fd, _answer(request))


def worker_command(python: str, read_fd: int, write_fd: int, submission: str,
                   spec: dict) -> list[str]:
    """The command line of a worker, run by `python -I` (isolated: no PYTHONPATH, no user
    site, no current folder on sys.path): isolation.py's text and `enter(spec)` first (still
    trusted: it may leave root), then this file's text and `serve`."""
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "isolation.py"), encoding="utf-8") as f:
        prelude = f.read()
    with open(__file__, encoding="utf-8") as f:
        source = f.read()
    return [python, "-I", "-c", "\n".join([
        prelude, f"_ISOLATION = enter({spec!r})", source,
        f"serve({read_fd}, {write_fd}, {submission!r}, _ISOLATION)", ""])]


def assert_close(actual, desired, rtol: float = 1e-7, atol: float = 0.0,
                 err_msg: str = "") -> None:
    """numpy's assert_allclose, but the shapes must be equal too: against a scalar it
    would broadcast, and an empty array would pass."""
    if np.shape(actual) != np.shape(desired):
        raise AssertionError(f"shape {np.shape(actual)}, expected {np.shape(desired)}"
                             + (f" ({err_msg})" if err_msg else ""))
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=atol, err_msg=err_msg)


# ---- a student's own run of the public tests --------------------------------------------

class _LocalTarget:
    def __init__(self, path: str):
        self._path = path

    def __getattr__(self, name: str) -> "_LocalTarget":
        if name.startswith("__"):
            raise AttributeError(name)
        return _LocalTarget(f"{self._path}.{name}")

    def __call__(self, *args, **kwargs):
        args, kwargs = _to_jax(to_plain(args)), _to_jax(to_plain(kwargs))
        return to_plain(resolve(self._path)(*args, **kwargs))


class LocalSubmission:
    """The `sub` fixture of a student's own test run (tests/conftest.py of an assignment's
    folder): the same calls as under the grader, made directly on the imported package, so
    that a failure shows its whole traceback.

        sub.losses.grpo_loss(logp, ...)    minirlhf.losses.grpo_loss, arguments as JAX
                                           arrays, the result as numpy arrays
        sub.run(probe, *args)              probe(*args) (under the grader: in the process
                                           that runs the submission)
        sub.assert_close(x, want)          assert_allclose that also checks the shape
    """

    assert_close = staticmethod(assert_close)

    def __getattr__(self, name: str) -> _LocalTarget:
        if name.startswith("__"):
            raise AttributeError(name)
        return _LocalTarget(name)

    def run(self, fn, *args, **kwargs):
        args, kwargs = _to_jax(to_plain(args)), _to_jax(to_plain(kwargs))
        return to_plain(fn(*args, **kwargs))
