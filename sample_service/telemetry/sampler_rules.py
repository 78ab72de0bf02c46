"""What the OTel SDK's built-in samplers answer, known without asking them.

Two questions the hot paths ask once per tracer, not per span: which sampling decision a sampler
would take (``fast_sampler``: the lean tracer then decides a span's fate itself, with the SDK's own
rules), and whether it looks at a span's start attributes at all (``sampler_ignores_attributes``:
if not, instrumentation sets them after start, and only on a span that records). Both recognise
exact types only: a subclass may decide otherwise, and is asked as the SDK asks it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from opentelemetry.sdk.trace import sampling

from sample_service.telemetry import compat
from sample_service.telemetry.compat import Allowed

RATIO_ID_MASK = sampling.TraceIdRatioBased.TRACE_ID_LIMIT  # the ratio sampler reads the low 64 bits
_PARENT_BASED = (sampling.ParentBased, sampling.ParentBasedTraceIdRatio)


class FastSampler(NamedTuple):
    """A sampler whose answer is known without asking it: the SDK's built-in ones (ALWAYS_ON/OFF,
    TraceIdRatioBased, and ParentBased over them with the default delegates). Their result keeps
    the parent's trace state (or none) and the given attributes, so only the decision is computed:
    ``follows_parent``: a parent's sampled flag decides; ``root_bound``: None samples, else sample
    when the trace id's low 64 bits are under it (the ratio sampler's own rule; 0 never samples)."""

    follows_parent: bool
    root_bound: int | None


def _root_bound(sampler: Any) -> tuple[bool, int | None]:
    if sampler is sampling.ALWAYS_ON:
        return True, None
    if sampler is sampling.ALWAYS_OFF:
        return True, 0
    if type(sampler) is sampling.TraceIdRatioBased:  # exact: a subclass may decide otherwise
        return True, sampler.bound
    return False, None


def fast_sampler(sampler: Any) -> FastSampler | None:
    """The sampler's rule when it is one of the SDK's built-ins above, else None (then the sampler
    itself is asked, exactly as the SDK asks it)."""
    known, bound = _root_bound(sampler)
    if known:
        return FastSampler(False, bound)
    if type(sampler) in _PARENT_BASED:
        on, off = sampling.ALWAYS_ON, sampling.ALWAYS_OFF
        # order: root, remote sampled, remote not sampled, local sampled, local not sampled
        delegates = compat.parent_based_delegates(sampler)
        if delegates is not None and all(d is want for d, want in zip(delegates[1:], (on, off, on, off),
                                                                          strict=True)):
            known, bound = _root_bound(delegates[0])
            if known:
                return FastSampler(True, bound)
    return None


# Exact types: a subclass may read the attributes. The ratio sampler decides by the trace id alone
# and hands the attributes through unchanged, so setting them right after start is the same span.
_ATTRIBUTE_BLIND = (sampling.StaticSampler, sampling.TraceIdRatioBased)


def sampler_ignores_attributes(tracer: Any, allowed: Allowed = compat.private_api) -> bool:
    """True when the tracer's sampler decides without looking at start attributes (always_on/off,
    the trace-id ratio, and parent-based over those — the default): then the attributes may be set
    right after start, and only on a span that records."""
    sampler = getattr(tracer, "sampler", None)
    if type(sampler) in _PARENT_BASED:
        delegates = compat.parent_based_delegates(sampler, allowed)
        return delegates is not None and all(type(d) in _ATTRIBUTE_BLIND for d in delegates)
    return type(sampler) in _ATTRIBUTE_BLIND
