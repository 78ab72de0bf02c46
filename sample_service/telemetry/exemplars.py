"""Exemplars: the link from a histogram bucket to the trace that landed in it."""

from __future__ import annotations

from opentelemetry.trace import Span, TraceFlags, get_current_span

_SAMPLED = TraceFlags.SAMPLED


def exemplar_for(span: Span) -> dict[str, str] | None:
    """``{trace_id, span_id}`` of ``span`` when it is sampled, else None.

    Unsampled spans are never exported, so an exemplar pointing at one would be a dead link.
    """
    ctx = span.get_span_context()
    if not ctx.trace_flags & _SAMPLED:  # the int test: ``.sampled`` is a property call per request
        return None
    return {"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x")}


def current_exemplar() -> dict[str, str] | None:
    return exemplar_for(get_current_span())
