"""What every resource namespace shares: the transport, the per-call options, and the
decorators that wrap a call in its operation span (``gateway.runs.create``, ...)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeAlias, TypeVar

from .._config import Timeouts
from .._telemetry import Attributes
from .._transport import Transport

__all__ = ["CallTimeout", "Resource", "traced", "traced_pages"]

CallTimeout: TypeAlias = float | Timeouts | None

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S", bound="Resource")


class Resource:
    """A namespace of calls sharing one transport."""

    __slots__ = ("_transport",)

    def __init__(self, transport: Transport) -> None:
        self._transport = transport


def traced(
    name: str,
    describe: Callable[..., Attributes] | None = None,
    outcome: Callable[[Any], Attributes] | None = None,
) -> Callable[
    [Callable[Concatenate[S, P], Coroutine[Any, Any, R]]],
    Callable[Concatenate[S, P], Coroutine[Any, Any, R]],
]:
    """Run the decorated call inside the INTERNAL span ``name`` when telemetry is on.

    ``describe`` gets the call's arguments, ``outcome`` its result; both return span
    attributes. The wrapper is a plain function handing back the call's coroutine, so the
    uninstrumented path costs one check and no extra coroutine frame.
    """

    def decorate(
        method: Callable[Concatenate[S, P], Coroutine[Any, Any, R]],
    ) -> Callable[Concatenate[S, P], Coroutine[Any, Any, R]]:
        @functools.wraps(method)
        def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]:
            call = method(self, *args, **kwargs)
            observer = self._transport.telemetry
            if observer is None or not observer.tracing():
                return call
            attributes = describe(*args, **kwargs) if describe is not None else None
            return observer.traced(name, call, attributes, outcome)

        return wrapper

    return decorate


def traced_pages(
    name: str,
) -> Callable[
    [Callable[Concatenate[S, P], AsyncIterator[R]]], Callable[Concatenate[S, P], AsyncIterator[R]]
]:
    """``traced`` for a paging async generator: one span from the first page to the last."""

    def decorate(
        method: Callable[Concatenate[S, P], AsyncIterator[R]],
    ) -> Callable[Concatenate[S, P], AsyncIterator[R]]:
        @functools.wraps(method)
        def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> AsyncIterator[R]:
            items = method(self, *args, **kwargs)
            observer = self._transport.telemetry
            if observer is None or not observer.tracing():
                return items
            return observer.traced_iter(name, items)

        return wrapper

    return decorate
