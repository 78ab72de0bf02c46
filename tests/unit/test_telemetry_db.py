"""SQLAlchemy: one span per statement, statement histogram, and the pool metrics read from the pool.

A real SQLAlchemy QueuePool over sqlite (stdlib driver): the same pool code path (``_do_get``,
checkout/checkin events, TimeoutError) as the service's AsyncAdaptedQueuePool, minus asyncpg.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy
from opentelemetry.trace import SpanKind, StatusCode
from sqlalchemy import create_engine, text
from sqlalchemy.pool import QueuePool

from sample_service.telemetry import catalog
from tests.unit.test_telemetry_support import Rig, poll_until


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sqlalchemy.Engine]:
    engine = create_engine(
        f"sqlite:///{tmp_path / 'db.sqlite'}",
        poolclass=QueuePool,
        pool_size=1,
        max_overflow=0,
        pool_timeout=0.3,
        connect_args={"check_same_thread": False},
    )
    yield engine
    engine.dispose()


def pool_values(rig: Rig) -> dict[tuple[str, ...], float]:
    families = rig.scrape()
    values: dict[tuple[str, ...], float] = {}
    for metric in (catalog.DB_CONN_COUNT, catalog.DB_CONN_MAX, catalog.DB_CONN_PENDING):
        for s in families[metric.prom]:
            values[(metric.prom, *(s.labels[k] for k in metric.labels[1:]))] = s.value
    for metric in (catalog.DB_CONN_WAIT, catalog.DB_CONN_USE):
        for s in families[metric.prom]:
            if s.name.endswith(("_count", "_sum")):
                values[(s.name,)] = s.value
    for s in families[catalog.DB_CONN_TIMEOUTS.prom.removesuffix("_total")]:
        values[(s.name,)] = s.value
    return values


def test_statement_spans_not_duplicated_and_statement_histogram(rig: Rig, engine: sqlalchemy.Engine) -> None:
    rig.tel.instrument_engine(engine, "main")
    with rig.tel.tracer.start_as_current_span("request"):
        with engine.connect() as conn:
            conn.execute(text("create table t (x int)"))
            conn.execute(text("insert into t values (1)"))
            assert conn.execute(text("select x from t")).scalar() == 1

    spans = rig.finished_spans()
    db_spans = [s for s in spans if s.kind is SpanKind.CLIENT]
    assert len(db_spans) == 3  # one per statement
    assert all(
        s.attributes.get("db.system") == "sqlite" or s.attributes.get("db.system.name") == "sqlite"
        for s in db_spans
    )
    [request] = [s for s in spans if s.name == "request"]
    assert all(s.parent is not None and s.parent.span_id == request.context.span_id for s in db_spans)

    samples = rig.scrape()[catalog.DB_OPERATION_DURATION.prom]
    counts = {s.labels[catalog.L.DB_OPERATION]: s.value for s in samples if s.name.endswith("_count")}
    assert counts == {"CREATE": 1, "INSERT": 1, "SELECT": 1}
    assert {s.labels[catalog.L.DB_SYSTEM] for s in samples} == {"sqlite"}
    # The exemplar points at the statement's own span.
    [select_bucket] = [
        s for s in samples if s.exemplar is not None and s.labels[catalog.L.DB_OPERATION] == "SELECT"
    ]
    [select_span] = [
        s
        for s in db_spans
        if s.attributes.get("db.statement", s.attributes.get("db.query.text", "")).startswith("select")
    ]
    assert select_bucket.exemplar.labels["span_id"] == format(select_span.context.span_id, "016x")


def test_pool_gauges_wait_time_pending_and_timeouts(rig: Rig, engine: sqlalchemy.Engine) -> None:
    rig.tel.instrument_engine(engine, "main")
    held = engine.connect()
    values = pool_values(rig)
    assert values[(catalog.DB_CONN_COUNT.prom, "used")] == 1
    assert values[(catalog.DB_CONN_COUNT.prom, "idle")] == 0
    assert values[(catalog.DB_CONN_MAX.prom,)] == 1

    # Pool exhausted: a second checkout waits its pool_timeout and fails.
    with pytest.raises(sqlalchemy.exc.TimeoutError):
        engine.connect()
    values = pool_values(rig)
    assert values[(catalog.DB_CONN_TIMEOUTS.prom,)] == 1
    assert values[(f"{catalog.DB_CONN_WAIT.prom}_sum",)] >= 0.3

    # A waiter shows as pending until the held connection comes back.
    got: list[sqlalchemy.Connection] = []
    waiter = threading.Thread(target=lambda: got.append(engine.connect()))
    waiter.start()
    poll_until(lambda: pool_values(rig)[(catalog.DB_CONN_PENDING.prom,)] == 1, "a pending checkout")
    held.close()
    waiter.join(2)
    assert got, "the waiter got the returned connection"
    got[0].close()
    values = pool_values(rig)
    assert values[(catalog.DB_CONN_PENDING.prom,)] == 0
    assert values[(catalog.DB_CONN_COUNT.prom, "idle")] == 1
    assert values[(catalog.DB_CONN_COUNT.prom, "used")] == 0
    assert values[(f"{catalog.DB_CONN_WAIT.prom}_count",)] == 3  # first, timed out, waiter
    assert values[(f"{catalog.DB_CONN_USE.prom}_count",)] == 2  # held, waiter's
    assert values[(catalog.DB_CONN_TIMEOUTS.prom,)] == 1


def test_pool_wrap_survives_dispose_and_uninstrument_restores(rig: Rig, engine: sqlalchemy.Engine) -> None:
    instrumentation = rig.tel.instrument_engine(engine, "main")
    assert instrumentation is not None
    engine.dispose()  # a brand-new pool object
    with engine.connect():
        pass
    assert pool_values(rig)[(f"{catalog.DB_CONN_WAIT.prom}_count",)] == 1

    instrumentation.uninstrument()
    with engine.connect() as conn:
        conn.execute(text("select 1"))
    assert rig.scrape()[catalog.DB_CONN_COUNT.prom] == []  # the pool left the collector
    assert "_do_get" not in vars(engine.pool)


def test_two_pools_and_a_restarted_lifespan_share_one_collector(rig: Rig, tmp_path: Path) -> None:
    def make(name: str, size: int) -> sqlalchemy.Engine:
        return create_engine(
            f"sqlite:///{tmp_path / name}", poolclass=QueuePool, pool_size=size, max_overflow=1
        )

    main, starved, main_again = make("a.sqlite", 3), make("b.sqlite", 1), make("c.sqlite", 5)
    try:
        rig.tel.instrument_engine(main, "main")
        rig.tel.instrument_engine(starved, "starved")
        maxima = {s.labels[catalog.L.POOL_NAME]: s.value for s in rig.scrape()[catalog.DB_CONN_MAX.prom]}
        assert maxima == {"main": 4, "starved": 2}

        # Same pool name again (a second lifespan run): the new engine replaces the old one.
        rig.tel.instrument_engine(main_again, "main")
        maxima = {s.labels[catalog.L.POOL_NAME]: s.value for s in rig.scrape()[catalog.DB_CONN_MAX.prom]}
        assert maxima == {"main": 6, "starved": 2}
        with main.connect():  # the replaced engine no longer records
            pass
        with main_again.connect():
            pass
        waits = {
            s.labels[catalog.L.POOL_NAME]: s.value
            for s in rig.scrape()[catalog.DB_CONN_WAIT.prom]
            if s.name.endswith("_count")
        }
        assert waits == {"main": 1, "starved": 0}
    finally:
        for engine in (main, starved, main_again):
            engine.dispose()


def test_statement_spans_keep_sqlalchemy_on_its_non_evented_path(rig: Rig, engine: sqlalchemy.Engine) -> None:
    """No engine-level event listener: one would set ``engine._has_events`` and put every
    connection's execute/begin/commit on SQLAlchemy's evented path (the telemetry-off app never is)."""
    instrumentation = rig.tel.instrument_engine(engine, "main")
    assert instrumentation is not None
    assert engine._has_events is False
    with rig.tel.tracer.start_as_current_span("request"):
        with engine.connect() as conn:
            assert conn._has_events is False
            conn.execute(text("select 1"))
    assert [s.attributes["db.query.text"] for s in rig.finished_spans() if s.kind is SpanKind.CLIENT] == [
        "select 1"
    ]

    instrumentation.uninstrument()
    assert not {"do_execute", "do_executemany", "do_execute_no_params"} & set(vars(engine.dialect))
    assert "dispose" not in vars(engine)
    with engine.connect() as conn:
        conn.execute(text("select 2"))
    assert len([s for s in rig.finished_spans() if s.kind is SpanKind.CLIENT]) == 1  # no new span


def test_failed_statement_span_and_executemany(rig: Rig, engine: sqlalchemy.Engine) -> None:
    rig.tel.instrument_engine(engine, "main")
    with rig.tel.tracer.start_as_current_span("request"):
        with engine.connect() as conn:
            conn.execute(text("create table t (x int primary key)"))
            conn.execute(text("insert into t values (:x)"), [{"x": 1}, {"x": 2}])  # executemany
            with pytest.raises(sqlalchemy.exc.IntegrityError):
                conn.execute(text("insert into t values (1)"))
            with pytest.raises(sqlalchemy.exc.OperationalError):
                conn.execute(text("select nope from nowhere"))

    db_spans = {s.attributes["db.query.text"]: s for s in rig.finished_spans() if s.kind is SpanKind.CLIENT}
    assert list(db_spans) == [
        "create table t (x int primary key)", "insert into t values (?)", "insert into t values (1)",
        "select nope from nowhere",
    ]
    assert db_spans["insert into t values (?)"].status.status_code is StatusCode.UNSET
    for failed, error in (("insert into t values (1)", "IntegrityError"),
                          ("select nope from nowhere", "OperationalError")):
        span = db_spans[failed]
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes["error.type"] == error
        assert span.attributes["db.operation.name"] == failed.split()[0].upper()
    # The statement histogram counts the statements that completed, as before.
    samples = rig.scrape()[catalog.DB_OPERATION_DURATION.prom]
    counts = {s.labels[catalog.L.DB_OPERATION]: s.value for s in samples if s.name.endswith("_count")}
    assert counts == {"CREATE": 1, "INSERT": 1}
