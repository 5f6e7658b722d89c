"""Every public function that raises says so: a ``Raises:`` section in its docstring.

Public: a function named in the ``__all__`` of a public module (the ones
``test_exported_members`` pins).  It raises when its body has a ``raise``
statement, or calls by name a function of its own module whose body has one
(one level: what the caller can see without leaving the file).  Not counted:
a bare ``raise`` (it passes on what the caller already handles), a raise of an
exception its own ``try`` catches, and raises inside nested functions and
lambdas (they run elsewhere).  Read from the source, so it never runs them.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import FunctionType

import pytest

from .test_exported_members import PUBLIC_MODULES

_NESTED = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


def _name(node: ast.expr | None) -> str:
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


def _caught(handler: ast.ExceptHandler) -> set[str]:
    kinds = handler.type
    if isinstance(kinds, ast.Tuple):
        return {_name(kind) for kind in kinds.elts}
    return {_name(kinds)} if kinds is not None else {"*"}


def _raises(node: ast.AST, caught: frozenset[str] = frozenset()) -> bool:
    """A ``raise`` that leaves the function, not counting nested definitions."""
    if isinstance(node, ast.Raise):
        return node.exc is not None and _name(node.exc) not in caught and "*" not in caught
    if isinstance(node, ast.Try):
        inner = caught | {name for h in node.handlers for name in _caught(h)}
        return any(_raises(child, frozenset(inner)) for child in node.body) or any(
            _raises(child, caught) for part in (node.handlers, node.orelse, node.finalbody)
            for child in part)
    return any(_raises(child, caught) for child in ast.iter_child_nodes(node)
               if not isinstance(child, _NESTED))


def _calls(node: ast.AST, caught: frozenset[str] = frozenset()
           ) -> Iterator[tuple[str, frozenset[str]]]:
    """Functions called by name, each with what the caller's ``try`` catches around it."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, _NESTED):
            continue
        if isinstance(child, ast.Call) and isinstance(child.func, ast.Name):
            yield child.func.id, caught
        if isinstance(node, ast.Try) and child in node.body:
            inner = caught | {name for h in node.handlers for name in _caught(h)}
            yield from _calls(child, frozenset(inner))
        else:
            yield from _calls(child, caught)


def _functions(path: str) -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
    tree = ast.parse(Path(path).read_text())
    return {node.name: node for node in tree.body
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}


def _public_functions() -> Iterator[tuple[str, FunctionType]]:
    for module_name, names in sorted(PUBLIC_MODULES.items()):
        module = importlib.import_module(module_name)
        for name in sorted(names):
            value = getattr(module, name)
            if isinstance(value, FunctionType) and value.__module__.startswith("encroot"):
                yield f"{module_name}.{name}", value


def _raising(function: FunctionType) -> bool:
    source = inspect.getsourcefile(function)
    assert source is not None
    body = ast.parse(textwrap.dedent(inspect.getsource(function))).body[0]
    if _raises(body):
        return True
    siblings = _functions(source)
    return any(name in siblings and name != function.__name__
               and _raises(siblings[name], caught) for name, caught in set(_calls(body)))


CASES = dict(_public_functions())


def test_the_check_finds_raises() -> None:
    from encroot.zfs.commands import check_receive_flags

    assert _raising(check_receive_flags)  # type: ignore[arg-type]
    assert any(not _raising(function) for function in CASES.values())


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_public_function_that_raises_has_a_raises_section(name: str) -> None:
    function = CASES[name]
    if _raising(function):
        assert "Raises:" in (function.__doc__ or ""), f"{name}: no Raises: section"
