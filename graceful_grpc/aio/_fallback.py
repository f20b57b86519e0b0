"""The fallback call path: grpc's own multicallable makes the call, of the answering subclass.

Correct on any grpcio: besides the public call API it reads only what ``_abortable`` documents,
each guarded. A call gets the answering subclass of its class (``_abortable``) in one of two ways:

- **Built as it.** When the multicallable is one of grpc's own (its ``__call__`` a Python function
  of a ``grpc`` module: grpc.aio's multicallables, with or without interceptors), that function's
  code is run as a copy whose global names of call classes (the classes deriving from
  ``grpc.aio.Call`` among the module-level names its code reads) resolve to their answering
  subclasses: grpc runs its own code, line for line, and builds the call as the subclass. Not for
  code outside grpc, where a name of a call class might serve an ``isinstance()`` rather than
  build a call, nor for code that writes or deletes a global or reads one not bound when the
  copy is made. The copy's other globals are those of grpc's module at that moment (the direct
  path binds grpc's names once, too): a name rebound in grpc's module later (``mock.patch`` of a
  call class, say) is not seen by calls made this way.
- **Swapped.** A call that does not come out of its multicallable as a subclass of ours (a
  multicallable of another kind, a grpc.aio that builds its calls elsewhere) gets its class
  assigned. On CPython that moves the call's attributes from the instance's inline values to a
  dict: each later attribute read of grpc's is a dict lookup (measured: 7-8k instructions per unary
  call on CPython 3.11, about 3% of it).

A start watch costs a loop callback per call (about 3% of a unary call). A call with a stream of
requests, or of a class not known here, is watched from the start: a failed start would leave its
writers waiting. grpc.aio's unary-request calls report a failed start to whoever awaits them, so
their answering methods install the watch only then, or before waiting for the status or
metadata; such a call never awaited at all stays in flight until grpc collects it (which cancels
it) or a drain's deadline ends it.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

from grpc import aio

from ._abortable import abortable_subclass, watch_start

__all__ = ("fallback_factory", "make_abortable")

# call class -> the class to give its calls (None: keep it, it answers already or cannot be
# assigned), and whether its calls are watched from the start
_SUBCLASSES: dict[type, tuple[type | None, bool]] = {}

# multicallable function -> its copy that builds answering calls (None: no copy, the function is
# called as it is: it names no call class, is not grpc's, or its globals could change under a copy)
_BUILDING_COPIES: dict[types.FunctionType, types.FunctionType | None] = {}

try:
    from grpc.aio._call import UnaryStreamCall, UnaryUnaryCall
except ImportError:  # grpc.aio's internals moved: every call is watched from the start
    _UNARY_REQUEST: tuple[type, ...] = ()
else:
    _UNARY_REQUEST = (UnaryUnaryCall, UnaryStreamCall)


def _subclass_entry(cls: type) -> tuple[type | None, bool]:
    """``cls``'s entry in ``_SUBCLASSES``, made (with its subclass's own entry) on first use."""
    try:
        return _SUBCLASSES[cls]
    except KeyError:
        pass
    unwatched = issubclass(cls, _UNARY_REQUEST)
    subclass = abortable_subclass(cls, unwatched=unwatched)
    watched = subclass is None or not unwatched
    if subclass is not None:
        _SUBCLASSES.setdefault(subclass, (None, watched))  # built as it: nothing to assign
    return _SUBCLASSES.setdefault(cls, (subclass, watched))


def make_abortable(call: Any) -> None:
    """Gives ``call`` the answering subclass of its class (a no-op for unsupported types, and for
    a call built as it), and makes a local failure of its start end the call (see the module's
    docstring)."""
    cls = call.__class__
    subclass, watched = _subclass_entry(cls)
    if subclass is not None:
        try:
            call.__class__ = subclass
        except TypeError:  # an instance layout that forbids it: callers see CancelledError
            _SUBCLASSES[cls] = None, True
            watched = True
    if watched:
        watch_start(call, call)


def _building_copy(function: types.FunctionType) -> types.FunctionType | None:
    """A copy of ``function`` that builds the answering subclasses of the call classes it names,
    or None if it names none or must not be copied (see the module's docstring)."""
    try:
        return _BUILDING_COPIES[function]
    except KeyError:
        pass
    namespace = function.__globals__
    copy = None
    if str(namespace.get("__name__", "")).startswith("grpc."):
        replaced: dict[str, type] = {}
        for name in _global_names(function.__code__, namespace) or ():
            value = namespace[name]
            if isinstance(value, type) and issubclass(value, aio.Call):
                subclass = _subclass_entry(value)[0]
                if subclass is not None:
                    replaced[name] = subclass
        if replaced:
            copy = types.FunctionType(
                function.__code__,
                {**namespace, **replaced},
                function.__name__,
                function.__defaults__,
                function.__closure__,
            )
            copy.__kwdefaults__ = function.__kwdefaults__
            copy.__qualname__ = function.__qualname__
            copy.__module__ = function.__module__
            copy.__doc__ = function.__doc__
    return _BUILDING_COPIES.setdefault(function, copy)


def _global_names(code: types.CodeType, namespace: dict[str, Any]) -> set[str] | None:
    """The module-level names ``code`` (with the code nested in it) reads, or None if a copy of
    its globals could differ from the module's where it matters: the code writes or deletes a
    global, or reads one that neither the module nor the builtins bind (yet)."""
    import dis  # only for the first fallback multicallable of each kind: not at import

    names: set[str] = set()
    for instruction in dis.get_instructions(code):
        if instruction.opname in ("STORE_GLOBAL", "DELETE_GLOBAL"):
            return None
        if instruction.opname == "LOAD_GLOBAL":
            name = instruction.argval
            if name not in namespace:
                builtins = namespace.get("__builtins__")
                holder = builtins if isinstance(builtins, dict) else vars(builtins)
                if name not in holder:
                    return None
                continue
            names.add(name)
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            nested = _global_names(constant, namespace)
            if nested is None:
                return None
            names |= nested
    return names


def fallback_factory(raw: Any) -> Callable[..., Any]:
    """Starts calls with grpc multicallable ``raw``'s own code, each made abortable."""
    function = type(raw).__call__  # a class without its own: type's, not a Python function
    copy = _building_copy(function) if isinstance(function, types.FunctionType) else None
    make = raw if copy is None else types.MethodType(copy, raw)
    classes = _SUBCLASSES

    def start(
        request: Any,
        timeout: Any,
        metadata: Any,
        credentials: Any,
        wait_for_ready: Any,
        compression: Any,
    ) -> Any:
        call = make(
            request,
            timeout=timeout,
            metadata=metadata,
            credentials=credentials,
            wait_for_ready=wait_for_ready,
            compression=compression,
        )
        known = classes.get(call.__class__)
        if known is None:  # the first call of its class
            make_abortable(call)
            return call
        subclass, watched = known  # make_abortable's decisions, taken in line (a call per call)
        if subclass is not None:
            call.__class__ = subclass
        if watched:
            watch_start(call, call)
        return call

    return start
