"""A lean Tracer/Span over the SDK's TracerProvider: same sampler, ids, resource, limits, processors.

Why: on a one-core service the SDK's span object is the largest telemetry cost left on the event
loop (issue 5). Per span the SDK builds a ``BoundedAttributes`` (a lock, a validation cascade per
value), a ``BoundedList`` per events/links, a ``threading.Lock``, then a second object — a
``ReadableSpan`` copy — at ``end()``, and ``start_as_current_span`` adds a generator-based context
manager around ``use_span``. ``LeanSpan`` is one ``__slots__`` object that is its own readable form:
it is handed to the provider's span processors (``BatchSpanProcessor``, or an in-memory exporter in
tests) as is, with the ReadableSpan surface (``name``, ``context``, ``parent``, ``attributes``,
``events``, ``status``, ``resource``, …) and the private fields the wire encoder reads
(``otlp_wire.encode_span``).

What stays the SDK's: the TracerProvider (``OTEL_TRACES_SAMPLER``, id generator, resource,
``SpanLimits`` from ``OTEL_SPAN_*``), the processors and exporters, shutdown and flush. What is the
same as the SDK's span, by test (``tests/unit/test_telemetry_lean_trace.py``): the exported OTLP
bytes for the same span, sampling decisions and trace flags, status rules (OK is final, UNSET is
ignored), exception events, attribute validation and count limits, ``end()`` idempotence.

Not supported (falls back to the SDK tracer): a provider whose tracer is disabled by a tracer
configurator, and ``OTEL_SDK_DISABLED`` (the provider hands out a no-op tracer itself).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Mapping, Sequence
from operator import attrgetter
from random import getrandbits
from time import time_ns
from types import TracebackType
from typing import Any

from opentelemetry import trace as trace_api
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context, attach, detach
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    get_current_span,
    set_span_in_context,
)

from sample_service.telemetry import compat
from sample_service.telemetry.sampler_rules import RATIO_ID_MASK, fast_sampler

_logger = logging.getLogger(__name__)

_UNSET = Status(StatusCode.UNSET)
_INTERNAL = SpanKind.INTERNAL
_TRACE_ID_MAX = (1 << 128) - 1
_SPAN_ID_MAX = (1 << 64) - 1
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_DEFAULT = TraceFlags(TraceFlags.DEFAULT)
_SAMPLED_RANDOM = TraceFlags(TraceFlags.SAMPLED | TraceFlags.RANDOM_TRACE_ID)
_DEFAULT_RANDOM = TraceFlags(TraceFlags.DEFAULT | TraceFlags.RANDOM_TRACE_ID)
_EMPTY_TRACE_STATE = trace_api.DEFAULT_TRACE_STATE
_NEW = tuple.__new__


def _span_context(
    trace_id: int, span_id: int, sampled: bool, random_ids: bool, trace_state: Any
) -> SpanContext:
    """``SpanContext(...)`` without its checks: is_valid is re-derived from range checks there, and our
    ids are valid by construction. What it also does is kept: no trace state becomes the empty one."""
    if random_ids:
        flags = _SAMPLED_RANDOM if sampled else _DEFAULT_RANDOM
    else:
        flags = _SAMPLED if sampled else _DEFAULT
    if trace_state is None:
        trace_state = _EMPTY_TRACE_STATE
    return _NEW(SpanContext, (trace_id, span_id, False, flags, trace_state, True))  # type: ignore[no-any-return]


class _Bounded(list):  # type: ignore[type-arg]
    """Events or links, newest kept (the SDK's BoundedList), with the count of what was dropped."""

    __slots__ = ("dropped",)

    def __init__(self) -> None:
        super().__init__()
        self.dropped = 0

    def add(self, item: Any, limit: int | None) -> None:
        if limit is not None and len(self) >= limit:
            if not limit:
                self.dropped += 1
                return
            del self[0]
            self.dropped += 1
        self.append(item)


class LeanSpan(trace_api.Span):
    __slots__ = (
        "_attributes",
        "_context",
        "_dropped_attributes",
        "_end_time",
        "_events",
        "_kind",
        "_links",
        "_name",
        "_parent",
        "_record_exception",
        "_set_status_on_exception",
        "_start_time",
        "_status",
        "_tracer",
    )

    def __init__(
        self,
        tracer: LeanTracer,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        start_time: int,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> None:
        self._tracer = tracer
        self._name = name
        self._context = context
        self._parent = parent
        self._kind = kind
        self._start_time = start_time
        self._end_time: int | None = None
        # A plain dict: with only str/int/float/bool values CPython leaves it untracked by the
        # cyclic GC — one object fewer per queued span for every young collection to scan.
        self._attributes: dict[str, Any] = {}
        self._dropped_attributes = 0
        self._events: _Bounded | None = None
        self._links: _Bounded | None = None
        self._status = _UNSET
        self._record_exception = record_exception
        self._set_status_on_exception = set_status_on_exception

    # --- trace_api.Span -------------------------------------------------------------------------
    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return self._end_time is None

    def end(self, end_time: int | None = None) -> None:
        if self._end_time is not None:
            _logger.warning("Calling end() on an ended span.")
            return
        self._end_time = end_time if end_time is not None else time_ns()
        self._tracer.processor.on_end(self)

    def update_name(self, name: str) -> None:
        if self._end_time is None:
            self._name = name

    def set_attribute(self, key: str, value: Any) -> None:
        self.set_attributes({key: value})

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        if self._end_time is not None:
            _logger.warning("Setting attribute on ended span.")
            return
        # The SDK's own cleaning (types, keys, string length), applied the way BoundedAttributes does.
        cleaned = compat.clean_attribute_value(attributes, self._tracer.max_value_len)
        self._dropped_attributes += len(attributes) - len(cleaned)
        self._store(cleaned)

    def set_clean_attributes(self, attributes: Mapping[str, Any]) -> None:
        """``set_attributes`` for values already valid and within the length limit (built by us)."""
        if self._end_time is not None:
            return
        if self._tracer.max_value_len is not None:  # a length limit: values must be cut, by the SDK's rules
            self.set_attributes(attributes)
        else:
            self._store(attributes)

    def _store(self, attributes: Mapping[str, Any]) -> None:
        attrs = self._attributes
        limit = self._tracer.max_attributes
        if limit is None or len(attrs) + len(attributes) <= limit:
            attrs.update(attributes)  # (a key set again keeps its place; the SDK moves it last)
            return
        for key, value in attributes.items():  # BoundedAttributes: full → the oldest pair goes
            if key in attrs:
                del attrs[key]
            elif len(attrs) >= limit:
                _logger.warning("Attributes dict is full. Dropping the oldest key-value pair from attributes "
                                "to make space for the new key-value pair.")
                del attrs[next(iter(attrs))]
                self._dropped_attributes += 1
            attrs[key] = value

    def add_event(self, name: str, attributes: Any = None, timestamp: int | None = None) -> None:
        if self._end_time is not None:
            _logger.warning("Setting attribute on ended span.")
            return
        limits = self._tracer.limits
        bounded = BoundedAttributes(
            limits.max_event_attributes, attributes, max_value_len=limits.max_attribute_length, immutable=True
        )
        if self._events is None:
            self._events = _Bounded()
        self._events.add(Event(name=name, attributes=bounded, timestamp=timestamp), limits.max_events)

    def add_link(self, context: SpanContext, attributes: Any = None) -> None:
        if self._end_time is not None:
            _logger.warning("Setting attribute on ended span.")
            return
        if not (context and (context.is_valid or attributes or context.trace_state)):
            return  # the SDK's rule for a link worth keeping
        limits = self._tracer.limits
        if self._links is None:
            self._links = _Bounded()
        self._links.add(trace_api.Link(context, BoundedAttributes(
            limits.max_link_attributes, attributes, max_value_len=limits.max_attribute_length, immutable=True
        )), limits.max_links)

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self._end_time is not None:
            _logger.warning("Setting attribute on ended span.")
            return
        if self._status.status_code is StatusCode.OK:  # OK is final
            return
        if isinstance(status, Status):
            if status.status_code is StatusCode.UNSET:
                return
            if description is not None:
                _logger.warning("Description %s ignored. Use either `Status` or `(StatusCode, Description)`",
                                description)
            self._status = status
        elif status is not StatusCode.UNSET:
            self._status = Status(status, description)

    def record_exception(
        self,
        exception: BaseException,
        attributes: Any = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        module = type(exception).__module__
        qualname = type(exception).__qualname__
        event_attributes: dict[str, Any] = {
            "exception.type": f"{module}.{qualname}" if module and module != "builtins" else qualname,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
        }
        if attributes:
            event_attributes.update(attributes)
        self.add_event("exception", event_attributes, timestamp)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        if exc_val is not None and self._end_time is None:
            if self._record_exception:
                self.record_exception(exc_val, escaped=True)
            if self._set_status_on_exception:
                self.set_status(Status(StatusCode.ERROR, f"{type(exc_val).__name__}: {exc_val}"))
        self.end()

    # --- the ReadableSpan surface (processors, exporters, tests) -------------------------------------
    # Plain fields, read-only (the wire encoder reads the slots themselves).
    name = property(attrgetter("_name"))
    context = property(attrgetter("_context"))
    parent = property(attrgetter("_parent"))
    kind = property(attrgetter("_kind"))
    start_time = property(attrgetter("_start_time"))
    end_time = property(attrgetter("_end_time"))
    status = property(attrgetter("_status"))
    dropped_attributes = property(attrgetter("_dropped_attributes"))
    resource = property(attrgetter("_tracer.resource"))
    instrumentation_scope = property(attrgetter("_tracer.instrumentation_scope"))
    instrumentation_info = property(attrgetter("_tracer.instrumentation_info"))

    # Copies, like the SDK's ReadableSpan hands out.
    @property
    def attributes(self) -> Mapping[str, Any]:
        return dict(self._attributes)

    @property
    def events(self) -> tuple[Event, ...]:
        return tuple(self._events or ())

    @property
    def links(self) -> tuple[trace_api.Link, ...]:
        return tuple(self._links or ())

    @property
    def dropped_events(self) -> int:
        return self._events.dropped if self._events is not None else 0

    @property
    def dropped_links(self) -> int:
        return self._links.dropped if self._links is not None else 0

    def readable(self) -> ReadableSpan:
        """The SDK's ``ReadableSpan`` with this span's fields, for exporters that need more than the
        surface above (``ConsoleSpanExporter`` calls ``to_json``). Off the hot path: a copy."""
        return ReadableSpan(
            name=self._name, context=self._context, parent=self._parent, resource=self.resource,
            attributes=self._attributes, events=self.events, links=self.links, kind=self._kind,
            status=self._status, start_time=self._start_time, end_time=self._end_time,
            instrumentation_scope=self.instrumentation_scope,
        )

    def to_json(self, indent: int | None = 4) -> str:
        return self.readable().to_json(indent)

    def __repr__(self) -> str:
        return f'{type(self).__name__}(name="{self._name}", context={self._context})'


class _UseSpan:
    """``with tracer.start_as_current_span(...)``: activate, record the escaping exception, end.

    The SDK's equivalent is a generator context manager wrapping ``use_span``; the semantics are the
    same (an ``Exception`` is recorded and sets ERROR, a ``BaseException`` like ``GeneratorExit``
    is not; the span ends after its context is detached)."""

    __slots__ = ("_end_on_exit", "_record_exception", "_set_status", "_span", "_token")

    def __init__(self, span: Any, end_on_exit: bool, record_exception: bool, set_status: bool) -> None:
        self._span = span
        self._end_on_exit = end_on_exit
        self._record_exception = record_exception
        self._set_status = set_status

    def __enter__(self) -> Any:
        self._token = attach(set_span_in_context(self._span))
        return self._span

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        span = self._span
        try:
            detach(self._token)
            if isinstance(exc, Exception) and span.is_recording():
                if self._record_exception:
                    span.record_exception(exc)
                if self._set_status:
                    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        finally:
            if self._end_on_exit:
                span.end()


class LeanTracer(trace_api.Tracer):
    """Hands out ``LeanSpan``s; everything it decides with comes from the SDK tracer it wraps."""

    def __init__(self, sdk_tracer: SdkTracer) -> None:
        self.sampler = sdk_tracer.sampler
        self.resource = sdk_tracer.resource
        self.instrumentation_scope, self.limits = compat.sdk_tracer_scope_and_limits(sdk_tracer)
        self.instrumentation_info = sdk_tracer.instrumentation_info
        # Any: the processors are typed for the SDK's span classes; a LeanSpan has their surface.
        self.processor: Any = sdk_tracer.span_processor
        self.max_attributes = self.limits.max_span_attributes
        self.max_value_len = self.limits.max_span_attribute_length
        self._id_generator = sdk_tracer.id_generator
        self._random_ids = type(self._id_generator) is RandomIdGenerator  # may draw the bits itself
        self._random_flag = bool(self._id_generator.is_trace_id_random())  # W3C random-trace-id flag
        self._fast = fast_sampler(self.sampler)

    def _new_trace_id(self) -> int:
        if self._random_ids:
            trace_id = getrandbits(128)
            while not trace_id:
                trace_id = getrandbits(128)
            return trace_id
        return self._id_generator.generate_trace_id()  # type: ignore[no-any-return]

    def _new_span_id(self) -> int:
        if self._random_ids:
            span_id = getrandbits(64)
            while not span_id:
                span_id = getrandbits(64)
            return span_id
        return self._id_generator.generate_span_id()  # type: ignore[no-any-return]

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = _INTERNAL,
        attributes: Any = None,
        links: Sequence[trace_api.Link] | None = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace_api.Span:
        parent: SpanContext | None = get_current_span(context).get_span_context()
        if parent is not None and not parent.is_valid:
            parent = None

        fast = self._fast
        if fast is not None and not links:
            # The built-in sampler's answer (sampler_rules.FastSampler), the SDK's flags and trace state.
            if parent is None:
                trace_id = self._new_trace_id()
                random_ids = self._random_flag
                trace_state = _EMPTY_TRACE_STATE
            else:
                trace_id = parent.trace_id
                random_ids = parent.trace_flags.random_trace_id
                trace_state = parent.trace_state
            if fast.follows_parent and parent is not None:
                sampled = parent.trace_flags.sampled
            else:
                sampled = fast.root_bound is None or trace_id & RATIO_ID_MASK < fast.root_bound
            span_context = _span_context(trace_id, self._new_span_id(), sampled, random_ids, trace_state)
            if not sampled:
                return NonRecordingSpan(span_context)
            initial = attributes
        else:
            trace_id = self._new_trace_id() if parent is None else parent.trace_id
            result = self.sampler.should_sample(context, trace_id, name, kind, attributes, links)
            sampled = result.decision.is_sampled()
            random_ids = self._random_flag if parent is None else parent.trace_flags.random_trace_id
            span_context = _span_context(
                trace_id, self._new_span_id(), sampled, random_ids, result.trace_state
            )
            if not result.decision.is_recording():
                return NonRecordingSpan(span_context)
            initial = result.attributes  # the SDK's span starts with what the sampler returns

        span = LeanSpan(
            self, name, span_context, parent, kind,
            start_time if start_time is not None else time_ns(),
            record_exception, set_status_on_exception,
        )
        if initial:
            span.set_attributes(initial)
        for link in links or ():
            span.add_link(link.context, link.attributes)
        self.processor.on_start(span, parent_context=context)
        return span

    def start_as_current_span(  # type: ignore[override]
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = _INTERNAL,
        attributes: Any = None,
        links: Sequence[trace_api.Link] | None = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> _UseSpan:
        span = self.start_span(name, context, kind, attributes, links, start_time, record_exception,
                               set_status_on_exception)
        return _UseSpan(span, end_on_exit, record_exception, set_status_on_exception)


def lean_tracer(sdk_tracer: Any, allowed: compat.Allowed = compat.private_api) -> Any:
    """``LeanTracer`` over an SDK tracer; any other tracer (no-op, disabled, foreign) is returned as is."""
    if not isinstance(sdk_tracer, SdkTracer) or not compat.lean_span_usable(sdk_tracer, allowed):
        return sdk_tracer
    return LeanTracer(sdk_tracer)
