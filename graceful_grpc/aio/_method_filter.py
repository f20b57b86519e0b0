"""Which methods a channel treats specially: the ``cancel_on_drain`` option, checked and compiled.

The option is decided once per multicallable (per method), never per call.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TypeAlias

__all__ = ("MethodFilter", "MethodPredicate", "compile_method_filter")

MethodPredicate: TypeAlias = Callable[[str], bool]
MethodFilter: TypeAlias = Collection[str | MethodPredicate] | MethodPredicate
"""Which methods an option (``cancel_on_drain``) applies to: a collection of full method names
(``"/pkg.Service/Method"``) and/or predicates on the full method name, or one predicate; e.g.
``["/pkg.Service/Watch", lambda method: method.endswith("/Poll")]``. A single string is refused
(``TypeError``: wrap it in a list), as is a malformed name (``ValueError``). It is read once, when
the channel or server is made; a predicate is asked when a multicallable (on a server: a method)
is first seen, never per call."""


def compile_method_filter(spec: MethodFilter | None, name: str) -> MethodPredicate | None:
    """Turns ``spec`` into one predicate (None when nothing matches).

    Args:
        spec: Method names and/or predicates, or one predicate, or None.
        name: The argument's name, for errors.

    Raises:
        TypeError: ``spec`` is a single string (a collection of its characters is never meant),
            or holds something that is neither a string nor a callable.
        ValueError: a method name that is not of the form ``/pkg.Service/Method``.
    """
    if spec is None:
        return None
    if isinstance(spec, str | bytes):
        raise TypeError(f"{name} must be a collection of method names, not one string: [{spec!r}]")
    if callable(spec):
        return spec
    names: set[str] = set()
    predicates: list[MethodPredicate] = []
    for item in spec:
        if isinstance(item, str):
            if not (item.startswith("/") and item.count("/") == 2 and all(item.split("/")[1:])):
                raise ValueError(
                    f"{name}: {item!r} is not a full method name '/pkg.Service/Method'"
                )
            names.add(item)
        elif callable(item):
            predicates.append(item)
        else:
            raise TypeError(f"{name} items must be method names or callables, got {item!r}")
    if not names and not predicates:
        return None
    if not predicates:
        return names.__contains__
    return lambda method: method in names or any(predicate(method) for predicate in predicates)
