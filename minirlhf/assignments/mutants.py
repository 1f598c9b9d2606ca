"""Plausible wrong answers made from the reference by small edits (mutation testing).

A graded test suite is only as good as the mistakes it catches. For each marked region,
`mutants(part)` applies every operator below at every place it fits, one edit per mutant,
and `validate` grades each mutant on its part: a mutant that keeps full marks *survives*,
and the tests miss a mistake a student could make. The operators, after the classic set
of Offutt et al. (1996, "An experimental determination of sufficient mutant operators"),
with the ones array code needs:

    AOR   arithmetic operator:    a + b -> a - b, a - b -> a + b, * <-> /
    ROR   relational operator:    < <-> <=, > <-> >=, == <-> !=
    LCR   logical connector:      & <-> |, and <-> or
    UOD   unary operator deleted: -x -> x, ~x -> x, not x -> x
    CRP   constant replaced:      integer k -> k + 1 and k - 1, float c -> 0 (1 if c is 0)
    FSR   function swapped:       minimum <-> maximum, min <-> max, argmax <-> argmin,
                                  tril <-> triu, log_sigmoid(x) -> log(sigmoid(x)) is not
                                  a mistake, so not here
    KWD   keyword dropped:        f(x, axis=1, keepdims=True) -> f(x, axis=1)  (defaults)
    ARG   arguments swapped:      f(a, b, ...) -> f(b, a, ...)
    MSK   mask dropped:           where(m, a, b) -> a
    IDX   slice shifted:          x[:, 1:] -> x[:, :-1]

A mutant that cannot change any result (e.g. swapping the operands of `&`) is *equivalent*
and cannot be killed; the operators above do not make such swaps, and the assignments'
registry lists the few equivalent ones left, each with the reason (`Assignment.equivalent`).
"""

from __future__ import annotations

import ast
import copy
import textwrap
from dataclasses import dataclass

from minirlhf.assignments.builder import BEGIN, package_dir, solution_regions

_SWAPS = {"minimum": "maximum", "maximum": "minimum", "min": "max", "max": "min",
          "argmax": "argmin", "argmin": "argmax", "tril": "triu", "triu": "tril",
          "amin": "amax", "amax": "amin"}
_BINOPS = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
           ast.BitAnd: ast.BitOr, ast.BitOr: ast.BitAnd}
_CMPOPS = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
           ast.Eq: ast.NotEq, ast.NotEq: ast.Eq}


@dataclass(frozen=True)
class Mutant:
    """One edit of a part's region: `old` (the region's text) becomes `new`."""

    part: str
    operator: str
    description: str
    """e.g. "line 3: `jnp.minimum(` -> `jnp.maximum(`", the same for every run."""
    old: str
    new: str


def _edits(tree: ast.AST):
    """(operator, node, replacement node) for every place an operator fits."""
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            op = "LCR" if isinstance(node.op, (ast.BitAnd, ast.BitOr)) else "AOR"
            yield op, node, ast.BinOp(node.left, _BINOPS[type(node.op)](), node.right)
        elif isinstance(node, ast.BoolOp):
            other = ast.Or() if isinstance(node.op, ast.And) else ast.And()
            yield "LCR", node, ast.BoolOp(other, node.values)
        elif isinstance(node, ast.Compare) and len(node.ops) == 1 and \
                type(node.ops[0]) in _CMPOPS:
            yield "ROR", node, ast.Compare(node.left, [_CMPOPS[type(node.ops[0])]()],
                                           node.comparators)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.Invert,
                                                                    ast.Not)):
            yield "UOD", node, node.operand
        elif isinstance(node, ast.Constant) and type(node.value) in (int, float):
            if isinstance(node.value, int):
                for k in (node.value + 1, node.value - 1):
                    yield "CRP", node, ast.Constant(k)
            else:
                yield "CRP", node, ast.Constant(0.0 if node.value != 0 else 1.0)
        elif isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else \
                getattr(node.func, "id", None)
            if name in _SWAPS:
                func = copy.deepcopy(node.func)
                if isinstance(func, ast.Attribute):
                    func.attr = _SWAPS[name]
                else:
                    func.id = _SWAPS[name]
                yield "FSR", node, ast.Call(func, node.args, node.keywords)
            for i, kw in enumerate(node.keywords):
                if kw.arg is not None:
                    yield "KWD", node, ast.Call(node.func, node.args,
                                                node.keywords[:i] + node.keywords[i + 1:])
            if len(node.args) >= 2 and not any(isinstance(a, ast.Starred) for a in node.args):
                a = node.args
                if ast.dump(a[0]) != ast.dump(a[1]):
                    yield "ARG", node, ast.Call(node.func, [a[1], a[0]] + a[2:],
                                                node.keywords)
            if name == "where" and len(node.args) == 3:
                yield "MSK", node, node.args[1]
        elif isinstance(node, ast.Slice):
            for bound in ("lower", "upper"):
                b = getattr(node, bound)
                if isinstance(b, ast.Constant) and isinstance(b.value, int):
                    flipped = copy.deepcopy(node)
                    setattr(flipped, "lower", None)
                    setattr(flipped, "upper", None)
                    other = "upper" if bound == "lower" else "lower"
                    setattr(flipped, other, ast.UnaryOp(ast.USub(), ast.Constant(b.value))
                            if b.value > 0 else ast.Constant(-b.value) if b.value else None)
                    yield "IDX", node, flipped


def _splice(text: str, node: ast.AST, new: str) -> str:
    lines = text.splitlines(keepends=True)
    start = sum(len(x) for x in lines[:node.lineno - 1]) + node.col_offset
    end = sum(len(x) for x in lines[:node.end_lineno - 1]) + node.end_col_offset
    return text[:start] + new + text[end:]


def _short(s: str) -> str:
    s = " ".join(s.split())
    return s if len(s) <= 60 else s[:57] + "..."


def region_text(module: str, function: str) -> tuple[str, str]:
    """(the region's lines as in the file, the indentation of its BEGIN marker)."""
    source = (package_dir() / module).read_text()
    lines = source.splitlines(keepends=True)
    (_, begin, end), = [r for r in solution_regions(source) if r[0] == function]
    return "".join(lines[begin + 1:end]), BEGIN.match(lines[begin]).group(1)


def mutants(part) -> list[Mutant]:
    """Every single-edit mutant of `part`'s region (a Part with a function), in a fixed
    order; those whose text equals the reference's or another's are left out."""
    body, indent = region_text(part.module, part.function)
    dedented = textwrap.dedent(body)
    tree = ast.parse(dedented)
    seen, out = {dedented}, []
    for op, node, replacement in _edits(tree):
        old_src = ast.get_source_segment(dedented, node)
        try:
            new_src = ast.unparse(ast.fix_missing_locations(replacement))
        except (AttributeError, TypeError, ValueError):
            continue
        if isinstance(node, ast.BinOp | ast.BoolOp | ast.Compare | ast.UnaryOp):
            new_src = f"({new_src})"
        text = _splice(dedented, node, new_src)
        if text in seen:
            continue
        try:
            ast.parse(text)
        except SyntaxError:
            continue
        seen.add(text)
        out.append(Mutant(part.name, op, f"{op} {node.lineno}:{node.col_offset}: `{_short(old_src)}` -> "
                                         f"`{_short(new_src)}`",
                          body, textwrap.indent(text, indent)))
    return out
