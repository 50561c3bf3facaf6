"""Single-point mutants of one Python module, found and applied with :mod:`ast` (no dependency).

Called by ``mutate.py``. A mutant changes exactly one thing:

* ``operator``: a binary operator (``+``↔``-``, ``*``↔``/``, ``&``↔``|``, ...), ``and``↔``or``, an
  augmented assignment (``+=``↔``-=``), or a dropped unary operator (``not x``/``-x``/``~x`` → ``x``);
* ``comparison``: one comparison operator (``<``↔``<=``, ``>``↔``>=``, ``==``↔``!=``, ``is``↔``is not``,
  ``in``↔``not in``);
* ``constant``: ``True``↔``False``, ``0``↔``1``, another int ``n`` → ``n + 1``, a float ``0.0`` → ``1.0``
  and any other float ``x`` → ``1.5·x``;
* ``return``: ``return x`` → ``return None``, and ``return not (x)`` when ``x`` is a boolean expression.

Strings are never mutated (messages, dict keys and docstrings would swamp the score with mutants
only a message test could notice), nor are annotations (``from __future__ import annotations``
makes them dead code, so every such mutant would be equivalent).

The mutated module keeps the original text everywhere except the changed expression, so line
numbers in tracebacks still match the real file. The patch is checked against the mutated syntax
tree; where text patching cannot reproduce it (never seen so far), the whole module is unparsed.
"""

from __future__ import annotations

import ast
import enum
from collections.abc import Callable, Iterator
from typing import NamedTuple


class MutantKind(str, enum.Enum):
    OPERATOR = "operator"
    COMPARISON = "comparison"
    CONSTANT = "constant"
    RETURN = "return"


class Mutant(NamedTuple):
    """One single-point change of ``path``; ``source`` is the whole mutated module."""

    path: str
    line: int
    col: int
    #: Qualified name of the enclosing function or class (``<module>`` at top level).
    scope: str
    #: 1 for the first mutant with this scope, original and mutated text; 2 for the next, ...
    occurrence: int
    kind: MutantKind
    original: str
    mutated: str
    source: str

    @property
    def key(self) -> str:
        """Identifier used in ``equivalent.txt``.

        Scope and text rather than line numbers: colleagues edit these modules in the same
        checkout, and an edit elsewhere in the file must not silently re-target an entry.
        """
        suffix = f" (#{self.occurrence})" if self.occurrence > 1 else ""
        return f"{self.path}::{self.scope}: {self.original} -> {self.mutated}{suffix}"


BINARY_SWAPS: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Div,
    ast.Mod: ast.FloorDiv,
    ast.Pow: ast.Mult,
    ast.MatMult: ast.Mult,
    ast.BitAnd: ast.BitOr,
    ast.BitOr: ast.BitAnd,
    ast.BitXor: ast.BitOr,
    ast.LShift: ast.RShift,
    ast.RShift: ast.LShift,
}

COMPARISON_SWAPS: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}

#: Unary operators whose removal is a mutant (``+x`` → ``x`` would change nothing).
DROPPED_UNARY = (ast.Not, ast.USub, ast.Invert)


class _Point(NamedTuple):
    """Where and how to mutate: ``apply`` edits the node (found by its walk index) in a fresh tree
    and returns the node whose source text is replaced."""

    index: int
    line: int
    col: int
    kind: MutantKind
    apply: Callable[[ast.AST, ast.AST], ast.AST]


def _annotation_nodes(tree: ast.AST) -> set[int]:
    """ids of every node inside an annotation (skipped: unevaluated under postponed annotations)."""
    roots: list[ast.AST] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and node.annotation is not None:
            roots.append(node.annotation)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None:
            roots.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            roots.append(node.annotation)
    return {id(n) for root in roots for n in ast.walk(root)}


def _mutated_constant(value: object) -> object | None:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return {0: 1, 1: 0}.get(value, value + 1)
    if isinstance(value, float):
        return 1.0 if value == 0.0 else value * 1.5
    return None  # str, bytes, None, Ellipsis, complex: not mutated


def _is_boolean_expression(node: ast.AST) -> bool:
    return isinstance(node, (ast.Compare, ast.BoolOp)) or (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not))


def _points_of(index: int, node: ast.AST) -> Iterator[_Point]:
    """Every mutation of one node (the callbacks act on the same node of a fresh copy of the tree)."""
    where = (getattr(node, "lineno", 0), getattr(node, "col_offset", 0))

    if isinstance(node, ast.BinOp) and type(node.op) in BINARY_SWAPS:

        def swap_binary(n: ast.AST, _tree: ast.AST) -> ast.AST:
            n.op = BINARY_SWAPS[type(n.op)]()
            return n

        yield _Point(index, *where, MutantKind.OPERATOR, swap_binary)
    elif isinstance(node, ast.AugAssign) and type(node.op) in BINARY_SWAPS:

        def swap_augmented(n: ast.AST, _tree: ast.AST) -> ast.AST:
            n.op = BINARY_SWAPS[type(n.op)]()
            return n

        yield _Point(index, *where, MutantKind.OPERATOR, swap_augmented)
    elif isinstance(node, ast.BoolOp):

        def swap_boolean(n: ast.AST, _tree: ast.AST) -> ast.AST:
            n.op = ast.Or() if isinstance(n.op, ast.And) else ast.And()
            return n

        yield _Point(index, *where, MutantKind.OPERATOR, swap_boolean)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, DROPPED_UNARY):

        def drop_unary(n: ast.AST, tree: ast.AST) -> ast.AST:
            _replace_child(tree, n, n.operand)  # the operand's text replaces the UnaryOp's text
            return n.operand

        yield _Point(index, *where, MutantKind.OPERATOR, drop_unary)
    elif isinstance(node, ast.Compare):
        for position, op in enumerate(node.ops):
            if type(op) not in COMPARISON_SWAPS:
                continue

            def swap_comparison(n: ast.AST, _tree: ast.AST, position: int = position) -> ast.AST:
                n.ops[position] = COMPARISON_SWAPS[type(n.ops[position])]()
                return n

            yield _Point(index, *where, MutantKind.COMPARISON, swap_comparison)
    elif isinstance(node, ast.Constant) and _mutated_constant(node.value) is not None:

        def change_constant(n: ast.AST, _tree: ast.AST) -> ast.AST:
            n.value = _mutated_constant(n.value)
            return n

        yield _Point(index, *where, MutantKind.CONSTANT, change_constant)
    elif isinstance(node, ast.Return) and node.value is not None and not (
        isinstance(node.value, ast.Constant) and node.value.value is None
    ):

        def return_none(n: ast.AST, _tree: ast.AST) -> ast.AST:
            n.value = ast.Constant(None)
            return n.value

        yield _Point(index, *where, MutantKind.RETURN, return_none)
        if _is_boolean_expression(node.value):

            def return_negated(n: ast.AST, _tree: ast.AST) -> ast.AST:
                n.value = ast.UnaryOp(ast.Not(), n.value)
                return n.value

            yield _Point(index, *where, MutantKind.RETURN, return_negated)


def _replace_child(tree: ast.AST, old: ast.AST, new: ast.AST) -> None:
    """Put ``new`` where ``old`` is referenced (a field or an item of a list field)."""
    for parent in ast.walk(tree):
        for field, value in ast.iter_fields(parent):
            if value is old:
                setattr(parent, field, new)
                return
            if isinstance(value, list):
                for i, item in enumerate(value):
                    if item is old:
                        value[i] = new
                        return
    raise LookupError(f"node {ast.dump(old)} not found in its tree")


def _offset(lines: list[str], line: int, col: int) -> int:
    """Character offset of (1-based line, UTF-8 byte column) in the joined source."""
    text = lines[line - 1]
    return sum(len(x) for x in lines[: line - 1]) + len(text.encode("utf-8")[:col].decode("utf-8"))


def _patched_source(source: str, node_before: tuple[int, int, int, int], replacement: ast.AST, statement: bool) -> str:
    lines = source.splitlines(keepends=True)
    start = _offset(lines, node_before[0], node_before[1])
    end = _offset(lines, node_before[2], node_before[3])
    text = ast.unparse(replacement)
    if not statement:
        # Keep the line count (so later line numbers match the real file): newlines inside parentheses are free.
        text = f"({text}" + "\n" * source[start:end].count("\n") + ")"
    return source[:start] + text + source[end:]


def _span(node: ast.AST) -> tuple[int, int, int, int]:
    return node.lineno, node.col_offset, node.end_lineno, node.end_col_offset


def find_mutants(source: str, path: str) -> list[Mutant]:
    """Every single-point mutant of ``source`` (the module at repo-relative ``path``), in source order."""
    tree = ast.parse(source)
    skipped = _annotation_nodes(tree)
    points = [
        point
        for index, node in enumerate(ast.walk(tree))
        if id(node) not in skipped
        for point in _points_of(index, node)
    ]
    points.sort(key=lambda p: (p.line, p.col, p.index))
    scopes = _scopes(tree)
    nodes = list(ast.walk(tree))
    mutants: list[Mutant] = []
    seen: dict[tuple[str, str, str], int] = {}
    for point in points:
        scope = scopes.get(id(nodes[point.index]), "<module>")
        original, mutated, patched = _apply(source, point)
        occurrence = seen[(scope, original, mutated)] = seen.get((scope, original, mutated), 0) + 1
        mutants.append(Mutant(path, point.line, point.col, scope, occurrence, point.kind, original, mutated, patched))
    return mutants


def _scopes(tree: ast.AST) -> dict[int, str]:
    """id(node) → qualified name of the innermost function or class around it."""
    scopes: dict[int, str] = {}

    def visit(node: ast.AST, scope: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = scope
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                inner = child.name if scope == "<module>" else f"{scope}.{child.name}"
            scopes[id(child)] = inner
            visit(child, inner)

    visit(tree, "<module>")
    return scopes


def _apply(source: str, point: _Point) -> tuple[str, str, str]:
    """(original text, mutated text, whole mutated module) of one mutation point."""
    tree = ast.parse(source)
    node = list(ast.walk(tree))[point.index]
    before_span = _span(node.value if isinstance(node, ast.Return) else node)
    original = ast.unparse(node.value if isinstance(node, ast.Return) else node)
    if isinstance(node, ast.AugAssign):
        original = ast.unparse(node)
    replaced = point.apply(node, tree)
    statement = isinstance(replaced, ast.stmt)
    mutated_text = ast.unparse(replaced)
    patched = _patched_source(source, before_span, replaced, statement)
    try:
        same = ast.dump(ast.parse(patched)) == ast.dump(tree)
    except SyntaxError:
        same = False
    if not same:
        patched = ast.unparse(tree)
    return original, mutated_text, patched
