"""Checks that a Faust/aiokafka private internal a Clarion patch wraps is still there.

The patches in this package replace private methods. A Faust or aiokafka release that
renames one, moves it to another class or changes its parameters would otherwise leave the
patch wrapping nothing (an ``AttributeError`` at import, far from the cause) or, worse,
installed beside a method Faust no longer calls: the worker starts and silently loses the
guarantee the patch restored. Checked at ``install()``, a change stops the worker at
start-up with a message naming the patch to revisit.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any


class PatchTargetError(RuntimeError):
    """A private internal a Clarion patch relies on is missing or has changed shape."""


def original_method(
    owner: type,
    name: str,
    *,
    parameters: Sequence[str],
    coroutine: bool,
    patch: str,
) -> Callable[..., Any]:
    """``owner.name`` as the library defines it, checked for the shape ``patch`` calls.

    It must be defined on ``owner`` itself (a method inherited from a base class is one the
    library moved: wrapping it would change behaviour the patch never meant to), take
    exactly ``parameters`` in that order (the patch passes them positionally) and be a
    coroutine function exactly when ``coroutine`` is true (the patch awaits it or not).
    """
    where = f"{owner.__module__}.{owner.__qualname__}.{name}"
    method = vars(owner).get(name)
    if method is None:
        raise PatchTargetError(f"{patch} patches {where}, which no longer exists")
    require_signature(method, where=where, parameters=parameters, coroutine=coroutine, patch=patch)
    return method  # type: ignore[no-any-return]


def require_signature(
    method: Callable[..., Any],
    *,
    where: str,
    parameters: Sequence[str],
    coroutine: bool,
    patch: str,
) -> None:
    """Raise unless ``method`` takes ``parameters`` and is (or is not) a coroutine function."""
    found = tuple(inspect.signature(method).parameters)
    if found != tuple(parameters):
        raise PatchTargetError(
            f"{patch} calls {where} with {tuple(parameters)}, but it now takes {found}"
        )
    if inspect.iscoroutinefunction(method) is not coroutine:
        kind = "a coroutine function" if coroutine else "a plain function"
        raise PatchTargetError(f"{patch} expects {where} to be {kind}; it no longer is")


def require_attribute(owner: type, name: str, *, patch: str) -> None:
    """Raise unless ``owner`` has ``name`` (defined on it or inherited): one the patch uses."""
    if not hasattr(owner, name):
        where = f"{owner.__module__}.{owner.__qualname__}.{name}"
        raise PatchTargetError(f"{patch} uses {where}, which no longer exists")


def require_instance_attribute(
    owner: type, name: str, *, set_in: str, read_in: str, patch: str
) -> None:
    """Raise unless ``owner.set_in`` assigns ``self.name`` and ``owner.read_in`` reads it.

    For an attribute that only instances carry: checked in the methods' compiled code, so
    no instance has to be built (an aiokafka consumer needs a running loop).
    """
    for method_name in (set_in, read_in):
        method = getattr(owner, method_name, None)
        code = getattr(method, "__code__", None)
        if code is None or name not in code.co_names:
            where = f"{owner.__module__}.{owner.__qualname__}.{method_name}"
            raise PatchTargetError(f"{patch} relies on {where} using self.{name}; it does not")
