"""Frozen config dataclasses: field documentation, JSON round trips, and overrides.

Every config field carries a docstring right under it. Python drops those at run time, so
`field_docs` reads them back from the source; the CLI uses them as --help text. Nested
configs (a `model: ModelConfig` field) are addressed with dots: ``--model.d_model 64``.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import textwrap
import typing
from functools import cache
from pathlib import Path
from typing import Any


@cache
def field_docs(cls) -> dict[str, str]:
    """{field name: the docstring written under it} for a dataclass."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        body = tree.body[0].body
        for node, nxt in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _resolved_types(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def flat_fields(cls, prefix: str = "", instance=None) -> list[tuple[str, Any, Any, str]]:
    """(dotted name, type, default, doc) of every leaf field, descending into nested configs.

    Defaults are read from `instance` (default: `cls()`), so a nested config's defaults are
    the parent's (e.g. SFTConfig's optimiser), not those of the nested class alone.
    """
    out = []
    types = _resolved_types(cls)
    docs = field_docs(cls)
    instance = cls() if instance is None else instance
    for f in dataclasses.fields(cls):
        typ = types[f.name]
        value = getattr(instance, f.name)
        if dataclasses.is_dataclass(typ):
            out.extend(flat_fields(typ, prefix + f.name + ".", value))
        else:
            out.append((prefix + f.name, typ, value, docs.get(f.name, "")))
    return out


def to_dict(cfg) -> dict:
    """A JSON-ready dict of a (nested) config."""
    return dataclasses.asdict(cfg)


def from_dict(cls, data: dict):
    """Rebuild a (nested) config from `to_dict` output; unknown keys are an error."""
    types = _resolved_types(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown field(s) {sorted(unknown)} for {cls.__name__}; "
                         f"known fields: {sorted(names)}")
    kwargs = {}
    for key, value in data.items():
        typ = types[key]
        kwargs[key] = from_dict(typ, value) if dataclasses.is_dataclass(typ) else value
    return cls(**kwargs)


def override(cfg, updates: dict[str, Any]):
    """A copy of `cfg` with dotted-name fields replaced, e.g. {"model.d_model": 64}."""
    data = to_dict(cfg)
    valid = {name for name, *_ in flat_fields(type(cfg))}
    for dotted, value in updates.items():
        if dotted not in valid:
            raise ValueError(f"{type(cfg).__name__} has no field {dotted!r}; "
                             f"fields: {sorted(valid)}")
        *path, leaf = dotted.split(".")
        node = data
        for part in path:
            node = node[part]
        node[leaf] = value
    return from_dict(type(cfg), data)


def check_positive_ints(cfg, *names: str) -> None:
    """Raise ValueError naming the first field among `names` that is not a positive int."""
    for name in names:
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{type(cfg).__name__}.{name} must be a positive integer, "
                             f"got {value!r}")


def check_same_config(run_dir: str | Path, cfg) -> None:
    """Refuse to resume a run folder that was started with a different config.

    A field the saved config lacks (one added to minirlhf after that run started) counts
    as its default value, so an older run folder still resumes if it used the defaults.
    """
    path = Path(run_dir) / "config.json"
    if not path.exists():
        return
    new = json.loads(json.dumps(to_dict(cfg)))
    old = json.loads(path.read_text())
    try:
        old = _with_defaults(old, json.loads(json.dumps(to_dict(type(cfg)()))))
    except TypeError:  # a config class without defaults for every field
        pass
    if old != new:
        diffs = _diff(old, new)
        raise ValueError(f"run folder {run_dir} holds a run with a different config "
                         f"({'; '.join(diffs[:5])}); use another output folder or delete it")


def _with_defaults(saved: dict, defaults: dict) -> dict:
    """`saved`, with the fields it lacks taken from `defaults` (nested dicts too)."""
    out = dict(saved)
    for k, v in defaults.items():
        if k not in out:
            out[k] = v
        elif isinstance(v, dict) and isinstance(out[k], dict):
            out[k] = _with_defaults(out[k], v)
    return out


def _diff(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _diff(a, b, prefix + k + ".")
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} there, {b!r} now")
    return out
