"""OTLP protobuf written as bytes: ``ExportTraceServiceRequest`` / ``ExportLogsServiceRequest`` from SDK
spans and log records, without building ``opentelemetry-proto`` message objects.

Why: the SDK's encoder builds one Python protobuf object per span, attribute, key and value, then
serializes them — measured ≈70 µs per server span and ≈45 µs per log record (``benchmarks/micro.py``),
all of it on the batch worker threads, which on a one-core service take the GIL (and the core) from
the event loop. This writes the wire format directly (varints, length-delimited fields) and caches
what repeats: the resource and scope blocks once per object, and each ``(key, value)`` attribute
pair in a bounded table (method, route, status, scheme, … repeat on every span). ≈10x cheaper.

Correctness: the output *parses* (with the official ``opentelemetry-proto`` messages) into a
message equal to the SDK encoder's, including oneof/submessage presence (an empty ``status``, an
empty ``body`` ``AnyValue``, ``bool_value=False``) — ``tests/unit/test_telemetry_otlp_wire.py`` holds
it to that over spans/records of every shape. Field numbers: opentelemetry-proto v1
(``trace.proto``, ``logs.proto``, ``common.proto``, ``resource.proto``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from struct import Struct
from time import sleep
from typing import Any

from opentelemetry.trace import SpanKind, StatusCode

from sample_service.telemetry.compat import dropped_attributes, plain_attributes, span_fields

_logger = logging.getLogger(__name__)

# Encoding runs on the exporters' worker threads, in batches of up to 512 items (≈5-8 ms of CPU).
# The event loop, back from epoll with a request to serve, must wait for the GIL until the worker
# drops it — after the 5 ms switch interval, once per burst: a latency spike for every in-flight
# request (the p99 of issue 5). Yielding every 64 items bounds that wait to ≈1 ms.
YIELD_EVERY = 64


def yield_gil() -> None:
    """Let a thread waiting for the GIL (the event loop) run now, instead of after the switch interval."""
    sleep(0)

_FIXED64 = Struct("<Q").pack
_FIXED32 = Struct("<I").pack
_DOUBLE = Struct("<d").pack
_BYTE = [bytes((i,)) for i in range(128)]
_U64 = (1 << 64) - 1


def _varint(n: int) -> bytes:
    if n < 0x80:
        return _BYTE[n]
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _ld(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    n = len(payload)
    return tag + (_BYTE[n] if n < 0x80 else _varint(n)) + payload


def _str(s: str) -> bytes:
    return s.encode("utf-8", "replace")


# --- common.proto: AnyValue / KeyValue -------------------------------------------------------------
def any_value(value: Any) -> bytes:
    """AnyValue body. The oneof member is always written, even at its default (presence matters)."""
    if value is None:
        return b""
    if isinstance(value, bool):  # before int: bool is an int
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _ld(b"\x0a", _str(value))
    if isinstance(value, int):
        return b"\x18" + _varint(value & _U64)  # int64: two's complement, 10 bytes when negative
    if isinstance(value, float):
        return b"\x21" + _DOUBLE(value)
    if isinstance(value, bytes):
        return _ld(b"\x3a", value)
    if isinstance(value, Sequence):
        return _ld(b"\x2a", b"".join([_ld(b"\x0a", any_value(v)) for v in value]))
    if isinstance(value, Mapping):
        return _ld(b"\x32", b"".join([_ld(b"\x0a", _key_value(str(k), v)) for k, v in value.items()]))
    raise TypeError(f"Invalid type {type(value)} of value {value}")


def _key_value(key: str, value: Any) -> bytes:
    return _ld(b"\x0a", _str(key)) + _ld(b"\x12", any_value(value))


# Floats are not cached: they are durations and sizes, almost never equal twice, and caching them
# would only fill the table until it is cleared, evicting the pairs that do repeat.
_CACHED = frozenset({str, int, bool})
_KV_CACHE_MAX = 8192  # entries per table
_SHORT = 64  # longer string values are unlikely to repeat: not cached


# One table per field tag (the same pair is field 9 in a span, 6 in a log record), so the cache key
# stays a cheap ``(key, type, value)`` tuple — the type because ``True == 1`` and ``1 == 1.0``.
def _attributes_for(tag: bytes) -> Any:
    """The encoder of a repeated KeyValue field ``tag``; scalar pairs cached (bounded)."""
    table: dict[tuple[str, type, Any], bytes] = {}

    def encode(attrs: Mapping[str, Any] | None) -> bytes:
        if not attrs:
            return b""
        parts = []
        for key, value in attrs.items():
            cls = value.__class__
            if cls in _CACHED and (cls is not str or len(value) <= _SHORT):
                ck = (key, cls, value)
                encoded = table.get(ck)
                if encoded is None:
                    encoded = _ld(tag, _key_value(key, value))
                    if len(table) >= _KV_CACHE_MAX:
                        table.clear()  # crude but bounded; the hot pairs come straight back
                    table[ck] = encoded
                parts.append(encoded)
                continue
            try:
                parts.append(_ld(tag, _key_value(key, value)))
            except Exception as error:  # the SDK encoder logs and skips a bad attribute too
                _logger.exception("Failed to encode key %s: %s", key, error)
        return b"".join(parts)

    return encode


_span_attributes = _attributes_for(b"\x4a")  # Span.attributes = 9
_event_attributes = _attributes_for(b"\x1a")  # Span.Event.attributes = 3
_link_attributes = _attributes_for(b"\x22")  # Span.Link.attributes = 4
_log_attributes = _attributes_for(b"\x32")  # LogRecord.attributes = 6
_kv_list = _attributes_for(b"\x0a")  # Resource.attributes = 1


# --- resource / scope, encoded once per object ----------------------------------------------------
class _Blocks:
    """Encoded Resource / InstrumentationScope messages, by object identity (they are immutable).

    The objects are kept referenced, so an id cannot be reused by another object while cached."""

    def __init__(self) -> None:
        self._resources: dict[int, tuple[Any, bytes]] = {}
        self._scopes: dict[int, tuple[Any, bytes]] = {}

    def resource(self, resource: Any) -> bytes:
        hit = self._resources.get(id(resource))
        if hit is None:
            hit = self._resources[id(resource)] = (resource, _kv_list(resource.attributes))
        return hit[1]

    def scope(self, scope: Any) -> bytes:
        hit = self._scopes.get(id(scope))
        if hit is None:
            if scope is None:
                body = b""
            else:
                body = _ld(b"\x0a", _str(scope.name)) if scope.name else b""
                if scope.version:
                    body += _ld(b"\x12", _str(scope.version))
                body += _attributes_for(b"\x1a")(scope.attributes)
            hit = self._scopes[id(scope)] = (scope, body)
        return hit[1]


_BLOCKS = _Blocks()


def _group(
    items: Sequence[Any], encode_item: Any
) -> dict[int, tuple[Any, dict[int, tuple[Any, list[bytes]]]]]:
    """resource → scope → encoded items, grouped like the SDK (which merges equal resources/scopes)."""
    groups: dict[int, tuple[Any, dict[int, tuple[Any, list[bytes]]]]] = {}
    for n, item in enumerate(items, 1):
        if not n % YIELD_EVERY:
            yield_gil()
        resource = item.resource  # ReadableSpan: a plain property; ReadableLogRecord: a field
        scope = item.instrumentation_scope or None
        by_scope = groups.get(id(resource))
        if by_scope is None:
            by_scope = groups[id(resource)] = (resource, {})
        entry = by_scope[1].get(id(scope))
        if entry is None:
            entry = by_scope[1][id(scope)] = (scope, [])
        entry[1].append(encode_item(item))
    return _merge_equal(groups)


def _merge_equal(groups: dict[int, Any]) -> dict[int, Any]:
    """Distinct but equal resource/scope objects are one group in the SDK's encoding: merge them
    (rare: one process normally has one resource, and one scope object per tracer)."""
    if len(groups) > 1:
        merged: dict[int, Any] = {}
        for key, (resource, scopes) in groups.items():
            for other, other_scopes in merged.values():
                if other == resource:
                    for sk, (scope, items) in scopes.items():
                        other_scopes.setdefault(sk, (scope, []))[1].extend(items)
                    break
            else:
                merged[key] = (resource, scopes)
        groups = merged
    for _resource, scopes in groups.values():
        if len(scopes) > 1:
            merged_scopes: dict[int, Any] = {}
            for sk, (scope, items) in scopes.items():
                for _ok, (other, other_items) in merged_scopes.items():
                    if other == scope:
                        other_items.extend(items)
                        break
                else:
                    merged_scopes[sk] = (scope, items)
            scopes.clear()
            scopes.update(merged_scopes)
    return groups


def _request(groups: dict[int, Any], items_tag: bytes) -> bytes:
    out = []
    for resource, scopes in groups.values():
        scope_blocks = []
        for scope, items in scopes.values():
            body = _ld(b"\x0a", _BLOCKS.scope(scope)) + b"".join([_ld(items_tag, i) for i in items])
            schema = scope.schema_url if scope is not None else None
            if schema:
                body += _ld(b"\x1a", _str(schema))
            scope_blocks.append(_ld(b"\x12", body))
        body = _ld(b"\x0a", _BLOCKS.resource(resource)) + b"".join(scope_blocks)
        if resource.schema_url:
            body += _ld(b"\x1a", _str(resource.schema_url))
        out.append(_ld(b"\x0a", body))
    return b"".join(out)


# --- trace.proto ------------------------------------------------------------------------------------
# Span.kind = 6: the SDK's SpanKind.value + 1; Span.flags = 16 (fixed32): HAS_IS_REMOTE [| IS_REMOTE].
_KIND = {kind: b"\x30" + _varint(kind.value + 1) for kind in SpanKind}
_FLAGS_LOCAL = b"\x85\x01" + _FIXED32(0x100)
_FLAGS_REMOTE = b"\x85\x01" + _FIXED32(0x300)
_STATUS_CODE = {code: code.value for code in StatusCode}
_STATUS_UNSET = b"\x7a\x00"  # the SDK always writes a Status, empty when unset


def _trace_state(ts: Any) -> str:
    return ",".join([f"{k}={v}" for k, v in ts.items()])


def encode_span(span: Any) -> bytes:
    ctx, parent, name, kind, start_time, end_time, attrs, events, links, status = span_fields(span)
    parts = [
        b"\x0a\x10" + ctx.trace_id.to_bytes(16, "big"),
        b"\x12\x08" + ctx.span_id.to_bytes(8, "big"),
    ]
    if ctx.trace_state:
        parts.append(_ld(b"\x1a", _str(_trace_state(ctx.trace_state))))
    if parent is not None:
        parts.append(b"\x22\x08" + parent.span_id.to_bytes(8, "big"))
    if name:
        parts.append(_ld(b"\x2a", _str(name)))
    parts.append(_KIND[kind])
    if start_time:
        parts.append(b"\x39" + _FIXED64(start_time))
    if end_time:
        parts.append(b"\x41" + _FIXED64(end_time))
    if attrs:
        parts.append(_span_attributes(plain_attributes(attrs)))
        dropped = dropped_attributes(span, attrs)
        if dropped:
            parts.append(b"\x50" + _varint(dropped))
    if events:
        for event in events:
            body = b"\x09" + _FIXED64(event.timestamp) if event.timestamp else b""
            if event.name:
                body += _ld(b"\x12", _str(event.name))
            if event.attributes:
                body += _event_attributes(plain_attributes(event.attributes))
            if event.dropped_attributes:
                body += b"\x20" + _varint(event.dropped_attributes)
            parts.append(_ld(b"\x5a", body))
        if getattr(events, "dropped", 0):
            parts.append(b"\x60" + _varint(events.dropped))
    if links:
        for link in links:
            lctx = link.context
            body = (
                b"\x0a\x10"
                + lctx.trace_id.to_bytes(16, "big")
                + b"\x12\x08"
                + lctx.span_id.to_bytes(8, "big")
            )
            if link.attributes:
                body += _link_attributes(plain_attributes(link.attributes))
            if link.dropped_attributes:
                body += b"\x28" + _varint(link.dropped_attributes)
            body += b"\x35" + _FIXED32(0x300 if lctx.is_remote else 0x100)  # Link.flags = 6
            parts.append(_ld(b"\x6a", body))
        if getattr(links, "dropped", 0):
            parts.append(b"\x70" + _varint(links.dropped))
    if status is not None:
        code = _STATUS_CODE[status.status_code]
        if not code and not status.description:
            parts.append(_STATUS_UNSET)
        else:
            body = _ld(b"\x12", _str(status.description)) if status.description else b""
            if code:
                body += b"\x18" + _varint(code)
            parts.append(_ld(b"\x7a", body))
    parts.append(_FLAGS_REMOTE if parent is not None and parent.is_remote else _FLAGS_LOCAL)
    return b"".join(parts)


def encode_spans(spans: Sequence[Any]) -> bytes:
    """The serialized ``ExportTraceServiceRequest`` for ``spans`` (ReadableSpan)."""
    return _request(_group(spans, encode_span), b"\x12")


# --- logs.proto ----------------------------------------------------------------------------------
def encode_log(readable: Any) -> bytes:
    rec = readable.log_record
    parts = []
    if rec.timestamp:
        parts.append(b"\x09" + _FIXED64(rec.timestamp))
    severity = getattr(rec.severity_number, "value", None)
    if severity:
        parts.append(b"\x10" + _varint(severity))
    if rec.severity_text:
        parts.append(_ld(b"\x1a", _str(rec.severity_text)))
    parts.append(_ld(b"\x2a", any_value(rec.body)))  # always present, like the SDK's
    attrs = rec.attributes
    if attrs:
        parts.append(_log_attributes(plain_attributes(attrs)))
        dropped = getattr(attrs, "dropped", 0)
        if dropped:
            parts.append(b"\x38" + _varint(dropped))
    flags = int(rec.trace_flags) if rec.trace_flags is not None else 0
    if flags:
        parts.append(b"\x45" + _FIXED32(flags))
    if rec.trace_id:
        parts.append(b"\x4a\x10" + rec.trace_id.to_bytes(16, "big"))
    if rec.span_id:
        parts.append(b"\x52\x08" + rec.span_id.to_bytes(8, "big"))
    if rec.observed_timestamp:
        parts.append(b"\x59" + _FIXED64(rec.observed_timestamp))
    if rec.event_name:
        parts.append(_ld(b"\x62", _str(rec.event_name)))
    return b"".join(parts)


def encode_logs(batch: Sequence[Any]) -> bytes:
    """The serialized ``ExportLogsServiceRequest`` for ``batch`` (ReadableLogRecord)."""
    return _request(_group(batch, encode_log), b"\x12")
