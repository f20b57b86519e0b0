"""Names the public signatures use are importable from where users look, and documented."""

from __future__ import annotations

import ast
import inspect
import itertools
from typing import Any

import pytest

from graceful_grpc import aio
from graceful_grpc.aio import _call_factory, _method_filter, _options


def _attribute_docstrings(module: Any) -> dict[str, str]:
    """Module-level names documented by a string right after their assignment (as mkdocstrings
    and IDEs read them)."""
    documented = {}
    for statement, following in itertools.pairwise(ast.parse(inspect.getsource(module)).body):
        if isinstance(statement, ast.AnnAssign):
            target: ast.expr | None = statement.target
        elif isinstance(statement, ast.Assign):
            target = statement.targets[0]
        else:
            continue
        if (
            isinstance(target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            documented[target.id] = following.value.value
    return documented


@pytest.mark.parametrize(
    ("name", "module"),
    [
        ("MethodFilter", _method_filter),
        ("AdmitPolicy", _options),
        ("DIRECT_AVAILABLE", _call_factory),
        ("DIRECT_REASON", _call_factory),
    ],
)
def test_importable_from_aio_and_documented(name: str, module: Any) -> None:
    assert name in aio.__all__
    assert getattr(aio, name) is getattr(module, name)
    assert len(_attribute_docstrings(module).get(name, "")) > 80


def test_the_signatures_name_the_public_aliases() -> None:
    for function in (aio.GracefulChannel.__init__, aio.insecure_channel, aio.server):
        hints = inspect.signature(function).parameters
        assert hints["cancel_on_drain"].annotation.startswith("MethodFilter")
    assert inspect.signature(aio.insecure_channel).parameters["admit_during_drain"].annotation == (
        "AdmitPolicy"
    )
