"""/metrics: catalog names, seconds, buckets, exemplars carrying the request span's trace id."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sample_service.domain_metrics import domain_metrics
from sample_service.telemetry import catalog
from tests.unit.test_telemetry_support import Rig, build_app, client_for, make_rig, server_spans


@pytest.fixture
def rig() -> Iterator[Rig]:
    rig = make_rig()
    yield rig
    rig.tel.shutdown()


async def test_http_histogram_in_seconds_with_trace_exemplar(rig: Rig) -> None:
    async with client_for(build_app(rig.tel)) as client:
        assert (await client.get("/items/5")).status_code == 200
        metrics = await client.get("/metrics", headers={"accept": "application/openmetrics-text"})
    assert metrics.headers["content-type"].startswith("application/openmetrics-text")
    [server] = server_spans(rig.finished_spans())

    samples = [
        s
        for s in rig.scrape()[catalog.HTTP_SERVER_DURATION.prom]
        if s.labels.get(catalog.L.HTTP_ROUTE) == "/items/{item_id}"
    ]
    labels = {k: v for k, v in samples[0].labels.items() if k != "le"}
    assert labels == {
        catalog.L.HTTP_METHOD: "GET",
        catalog.L.HTTP_ROUTE: "/items/{item_id}",
        catalog.L.HTTP_STATUS: "200",
        catalog.L.ERROR_TYPE: "",
    }
    buckets = [s for s in samples if s.name == f"{catalog.HTTP_SERVER_DURATION.prom}_bucket"]
    assert [float(s.labels["le"]) for s in buckets[:-1]] == list(catalog.HTTP_DURATION_BUCKETS_S)

    # Seconds, not milliseconds: the recorded sum matches the span's own duration.
    [total] = [s for s in samples if s.name.endswith("_sum")]
    span_seconds = (server.end_time - server.start_time) / 1e9
    assert 0 < total.value < 1.0
    assert abs(total.value - span_seconds) < 0.05

    exemplars = [s.exemplar for s in buckets if s.exemplar is not None]
    assert len(exemplars) == 1
    assert exemplars[0].labels == {
        "trace_id": format(server.context.trace_id, "032x"),
        "span_id": format(server.context.span_id, "016x"),
    }
    assert exemplars[0].value == pytest.approx(total.value)


async def test_plain_prometheus_format_when_openmetrics_not_asked(rig: Rig) -> None:
    async with client_for(build_app(rig.tel)) as client:
        await client.get("/items/5")
        response = await client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    assert f"{catalog.HTTP_SERVER_DURATION.prom}_bucket{{" in response.text
    assert "trace_id" not in response.text  # exemplars only exist in OpenMetrics


async def test_unsampled_requests_carry_no_exemplar(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    rig = make_rig()
    try:
        async with client_for(build_app(rig.tel)) as client:
            assert (await client.get("/items/5")).status_code == 200
        assert rig.finished_spans() == []
        samples = rig.scrape()[catalog.HTTP_SERVER_DURATION.prom]
        assert [s.value for s in samples if s.name.endswith("_count")] == [1]
        assert all(s.exemplar is None for s in samples)
    finally:
        rig.tel.shutdown()


def test_cache_rules_and_decision_metrics_use_catalog_names(rig: Rig) -> None:
    metrics = domain_metrics(rig.tel)
    cache = metrics.cache("rules")
    cache.hit()
    cache.hit()
    cache.miss()
    cache.evicted(3)
    cache.set_entries(7)
    metrics.rules_evaluated("DE:loan", "approve", 0.0004, rules_count=4)
    metrics.decision_event("published")
    metrics.decision_event("dropped")

    families = rig.scrape()

    def value(metric: catalog.Metric, name: str, **labels: str) -> float:
        family = metric.prom.removesuffix("_total")
        [sample] = [s for s in families[family] if s.name == name and s.labels == labels]
        return sample.value

    assert (
        value(catalog.CACHE_REQUESTS, catalog.CACHE_REQUESTS.prom, cache_name="rules", cache_result="hit")
        == 2
    )
    assert (
        value(catalog.CACHE_REQUESTS, catalog.CACHE_REQUESTS.prom, cache_name="rules", cache_result="miss")
        == 1
    )
    assert value(catalog.CACHE_EVICTIONS, catalog.CACHE_EVICTIONS.prom, cache_name="rules") == 3
    assert value(catalog.CACHE_ENTRIES, catalog.CACHE_ENTRIES.prom, cache_name="rules") == 7
    assert value(catalog.RULES_EVALUATED, catalog.RULES_EVALUATED.prom, rule_segment="DE:loan") == 4
    assert value(
        catalog.RULES_EVAL_DURATION,
        catalog.RULES_EVAL_DURATION.sum,
        rule_segment="DE:loan",
        decision="approve",
    ) == pytest.approx(0.0004)
    assert value(catalog.DECISION_EVENTS, catalog.DECISION_EVENTS.prom, outcome="dropped") == 1
    # The same object comes back for the same cache: children are bound once.
    assert metrics.cache("rules") is cache


def test_every_service_metric_family_is_registered(rig: Rig) -> None:
    """Each catalog 'service' metric except the pool ones (they need an engine: test_telemetry_db),
    the package's and the service's own domain metrics together."""
    domain_metrics(rig.tel)
    families = rig.scrape()
    expected = {
        m.prom.removesuffix("_total")
        for m in catalog.service_metrics()
        if not m.otel.startswith("db.client.connection.") or m.kind is not catalog.Kind.GAUGE
    }
    assert expected - set(families) == set()


def test_fast_observe_matches_prometheus_client_observe() -> None:
    """``_FastObserve`` (bisect, no per-call exemplar validation) leaves the same buckets, sum and
    exemplars as prometheus-client's own ``observe``, edges and +Inf included."""
    from prometheus_client import CollectorRegistry, Histogram

    from sample_service.telemetry.metrics import _FastObserve, fast_observe

    bounds = (0.001, 0.005, 0.01, 0.1, 1.0)
    plain = Histogram("x", "d", ["a"], registry=CollectorRegistry(), buckets=bounds).labels("q")
    fast_metric = Histogram("x", "d", ["a"], registry=CollectorRegistry(), buckets=bounds)
    fast = fast_observe(fast_metric.labels("q"))
    assert isinstance(fast, _FastObserve)
    values = [0.0, 0.001, 0.0010001, 0.005, 0.0049, 0.1, 0.10001, 1.0, 1.5, 1e9, -1.0, float("nan")]
    for i, value in enumerate(values):
        exemplar = {"trace_id": format(i, "032x"), "span_id": format(i, "016x")} if i % 2 else None
        plain.observe(value, exemplar)
        fast.observe(value, exemplar)

    def state(child: object) -> list[tuple[float, object]]:
        buckets = child._buckets  # type: ignore[attr-defined]
        return [(b.get(), (e.labels, e.value) if (e := b.get_exemplar()) else None) for b in buckets]

    assert state(fast_metric.labels("q")) == state(plain)
    assert str(fast_metric.labels("q")._sum.get()) == str(plain._sum.get())  # nan == nan as text


def test_fast_observe_falls_back_to_the_child_when_the_layout_is_unknown() -> None:
    from sample_service.telemetry.metrics import fast_observe

    class Foreign:
        def observe(self, amount: float, exemplar: object = None) -> None:
            pass

    child = Foreign()
    assert fast_observe(child) is child
