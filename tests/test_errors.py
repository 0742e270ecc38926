"""Every refusal derives from ColdstreamError: each ``raise`` in the package raises a ColdstreamError subclass (by
class, or through a function or method annotated to return one), re-raises, or is ``NotImplementedError`` in an
abstract method."""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import typing
from pathlib import Path

import pytest

import coldstream
from coldstream.errors import ColdstreamError

PACKAGE = Path(coldstream.__file__).resolve().parent
ALLOWED = {"NotImplementedError", "KeyboardInterrupt"}  # abstract methods; the trainer's own Ctrl-C path


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    return ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)


def _is_error_class(obj) -> bool:
    return inspect.isclass(obj) and issubclass(obj, ColdstreamError)


def _returns_error(fn) -> bool:
    return _is_error_class(typing.get_type_hints(fn).get("return"))


def _offences(path: Path) -> list[str]:
    try:
        module = importlib.import_module(_module_name(path))
    except ImportError as e:  # an optional dependency the module needs at import (none today)
        pytest.skip(f"{path.name}: {e}")
    tree = ast.parse(path.read_text())
    classes = {n.name: n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
    found = []

    def check(expr: ast.expr, node: ast.Raise, cls_name: str | None) -> None:
        if isinstance(expr, ast.IfExp):
            check(expr.body, node, cls_name)
            check(expr.orelse, node, cls_name)
            return
        call = expr.func if isinstance(expr, ast.Call) else expr
        where = f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
        if isinstance(call, ast.Name):
            if call.id in ALLOWED:
                return
            obj = getattr(module, call.id, getattr(builtins, call.id, None))
            if obj is None:  # a local variable: an exception caught or built above
                return
            ok = _is_error_class(obj) or (not inspect.isclass(obj) and callable(obj) and _returns_error(obj))
        elif isinstance(call, ast.Attribute) and isinstance(call.value, ast.Name) and call.value.id == "self":
            owner = getattr(module, cls_name, None) if cls_name else None
            method = getattr(owner, call.attr, None)
            ok = method is not None and _returns_error(method)
        elif isinstance(call, ast.Attribute):
            ok = _is_error_class(eval(ast.unparse(call), vars(module)))  # noqa: S307 - e.g. errors.InputError
        else:
            ok = False
        if not ok:
            found.append(f"{where}: raise {ast.unparse(expr)[:80]}")

    def visit(node: ast.AST, cls_name: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            name = child.name if isinstance(child, ast.ClassDef) and child.name in classes else cls_name
            if isinstance(child, ast.Raise) and child.exc is not None:
                check(child.exc, child, cls_name)
            visit(child, name)

    visit(tree, None)
    return found


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_every_raise_is_a_coldstream_error(path):
    assert _offences(path) == []


def test_errors_refine_the_builtin_classes():
    from coldstream import errors

    assert issubclass(errors.InputError, ValueError) and issubclass(errors.InputTypeError, TypeError)
    assert issubclass(errors.MissingDependencyError, ImportError)
    assert issubclass(errors.MissingFileError, FileNotFoundError)
    for name, obj in vars(errors).items():
        if inspect.isclass(obj) and issubclass(obj, Exception) and obj is not ColdstreamError:
            assert issubclass(obj, ColdstreamError), name
