"""Per-function spans: ``@traced("rules.evaluate")`` and ``with span("rules.load"):``.

The decorator is applied at import time, long before any Telemetry exists, so it cannot hold a
tracer. It looks the tracer up in a ContextVar that the server middleware sets for each request
(and that ``Telemetry.activate()`` sets for work outside requests). Why not the OTel global
TracerProvider: it can be set only once per process, which would tie every Telemetry (and every
test) to the first one. With no active tracer the function runs bare: the disabled path costs one
ContextVar lookup.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any, TypeVar

from opentelemetry.trace import Span, Tracer

from sample_service.telemetry import compat
from sample_service.telemetry.compat import Allowed
from sample_service.telemetry.lean_trace import LeanSpan

_ACTIVE_TRACER: ContextVar[Tracer | None] = ContextVar("o11y_active_tracer", default=None)

F = TypeVar("F", bound=Callable[..., Any])


def active_tracer() -> Tracer | None:
    return _ACTIVE_TRACER.get()


def set_active_tracer(tracer: Tracer | None) -> Any:
    """Returns a token for ``reset_active_tracer``."""
    return _ACTIVE_TRACER.set(tracer)


def reset_active_tracer(token: Any) -> None:
    _ACTIVE_TRACER.reset(token)


@contextlib.contextmanager
def span(name: str, attributes: dict[str, Any] | None = None) -> Iterator[Span | None]:
    """An internal span named ``name`` under the current span; yields None when tracing is off."""
    tracer = _ACTIVE_TRACER.get()
    if tracer is None:
        yield None
        return
    # start_as_current_span records exceptions and sets ERROR status on the way out.
    with tracer.start_as_current_span(name, attributes=attributes) as current:
        yield current


def traced(name: str | None = None) -> Callable[[F], F]:
    """Decorator: one internal span per call, for sync and async functions alike."""

    def decorate(func: F) -> F:
        span_name = name or func.__qualname__

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                tracer = _ACTIVE_TRACER.get()
                if tracer is None:
                    return await func(*args, **kwargs)
                with tracer.start_as_current_span(span_name):
                    return await func(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            tracer = _ACTIVE_TRACER.get()
            if tracer is None:
                return func(*args, **kwargs)
            with tracer.start_as_current_span(span_name):
                return func(*args, **kwargs)

        return sync_wrapper  # type: ignore[return-value]

    return decorate


def set_clean_attributes(
    span: Any, attributes: dict[str, Any], allowed: Allowed = compat.private_api
) -> None:
    """``span.set_attributes(attributes)`` for values already valid (str/int/bool/float, built by us).

    The SDK's path re-validates every value (an ``isinstance`` cascade through the ``Sequence`` ABC)
    and takes two locks per call: ≈1 µs per attribute, ≈20 µs for a server span's ten, on the event
    loop. When the span is a live SDK span whose limits cannot bite (no value-length limit, room
    under the count limit), the values go straight into its attribute dict; otherwise — or with a
    future SDK that moved the field — the public call. The span belongs to one request's task, so
    nothing else writes it concurrently.
    """
    if span.__class__ is LeanSpan:
        span.set_clean_attributes(attributes)
        return
    found = compat.bounded_attributes_dict(span, allowed)
    if found is not None and (found[1] is None or len(found[0]) + len(attributes) <= found[1]):
        found[0].update(attributes)
    else:
        span.set_attributes(attributes)
