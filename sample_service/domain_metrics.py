"""The sample service's own business metrics: the rules cache, rule evaluation, decision events.

Registered by the service on the telemetry's registry, not by the telemetry package, which holds only
what any HTTP + SQL service records (docs/telemetry.md, "Adopt it in your service"). Names and labels
from the catalog, like every other metric; histograms get the package's cheap observe and native
buckets through ``LabelChildren``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from sample_service.telemetry import Telemetry, compat
from sample_service.telemetry import catalog as c
from sample_service.telemetry.compat import Allowed
from sample_service.telemetry.metrics import LabelChildren, ServiceMetrics, counter, gauge, histogram
from sample_service.telemetry.native_histograms import NativeIndex

# What this module registers, for the tests that tell the package's metrics from the service's.
DOMAIN_METRICS: tuple[c.Metric, ...] = (
    c.CACHE_REQUESTS, c.CACHE_EVICTIONS, c.CACHE_ENTRIES, c.RULES_EVAL_DURATION, c.RULES_EVALUATED,
    c.DECISION_EVENTS,
)


class CacheMetrics:
    """Hit/miss/eviction/size of one named cache; the children are bound once."""

    __slots__ = ("_entries", "_evictions", "_hit", "_miss")

    def __init__(self, requests: Counter, evictions: Counter, entries: Gauge, name: str) -> None:
        self._hit = requests.labels(name, "hit")
        self._miss = requests.labels(name, "miss")
        self._evictions = evictions.labels(name)
        self._entries = entries.labels(name)

    def hit(self) -> None:
        self._hit.inc()

    def miss(self) -> None:
        self._miss.inc()

    def evicted(self, n: int = 1) -> None:
        self._evictions.inc(n)

    def set_entries(self, n: int) -> None:
        self._entries.set(n)


class DomainMetrics:
    enabled = True

    def __init__(self, registry: CollectorRegistry, native: NativeIndex | None = None,
                 allowed: Allowed = compat.private_api) -> None:
        self.cache_requests = counter(c.CACHE_REQUESTS, registry)
        self.cache_evictions = counter(c.CACHE_EVICTIONS, registry)
        self.cache_entries = gauge(c.CACHE_ENTRIES, registry)
        self.rules_duration = histogram(c.RULES_EVAL_DURATION, registry, c.FAST_DURATION_BUCKETS_S)
        self.rules_count = counter(c.RULES_EVALUATED, registry)
        self.decision_events = counter(c.DECISION_EVENTS, registry)
        self._rules_duration = LabelChildren(self.rules_duration, native, allowed)
        self._rules_count = LabelChildren(self.rules_count)
        self._decision = LabelChildren(self.decision_events)
        self._caches: dict[str, CacheMetrics] = {}

    def cache(self, name: str) -> CacheMetrics:
        metrics = self._caches.get(name)
        if metrics is None:
            metrics = self._caches[name] = CacheMetrics(
                self.cache_requests, self.cache_evictions, self.cache_entries, name
            )
        return metrics

    def rules_evaluated(
        self,
        segment: str,
        decision: str,
        seconds: float,
        rules_count: int,
        exemplar: dict[str, str] | None = None,
    ) -> None:
        self._rules_duration.get((segment, decision)).observe(seconds, exemplar)
        self._rules_count.get((segment,)).inc(rules_count)

    def decision_event(self, outcome: str) -> None:
        self._decision.get((outcome,)).inc()


class _NoOpCacheMetrics:
    __slots__ = ()

    def hit(self) -> None:
        pass

    def miss(self) -> None:
        pass

    def evicted(self, n: int = 1) -> None:
        pass

    def set_entries(self, n: int) -> None:
        pass


_NOOP_CACHE = _NoOpCacheMetrics()


class NoOpDomainMetrics:
    """Same surface, nothing recorded: telemetry or metrics off."""

    enabled = False

    def cache(self, name: str) -> _NoOpCacheMetrics:
        return _NOOP_CACHE

    def rules_evaluated(self, *args: object, **kwargs: object) -> None:
        pass

    def decision_event(self, outcome: str) -> None:
        pass


def domain_metrics(tel: Telemetry) -> DomainMetrics | NoOpDomainMetrics:
    """Registered once per registry: build it where the app is built, not in the lifespan (which may
    run more than once on one app)."""
    if not isinstance(tel.metrics, ServiceMetrics):
        return NoOpDomainMetrics()
    return DomainMetrics(tel.registry, tel.metrics.native, tel.allowed)
