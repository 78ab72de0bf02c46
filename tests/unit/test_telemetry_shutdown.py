"""Collector unreachable: requests still succeed, exports never run on the event loop's thread,
and shutdown returns within settings.shutdown_timeout_s."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from sample_service.settings import Settings
from sample_service.telemetry import setup_telemetry
from tests.unit.test_telemetry_support import build_app, client_for, poll_until, unused_port

SHUTDOWN_BOUND_S = 1.5
SLACK_S = 0.5


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
async def test_dead_collector_never_blocks_requests_and_shutdown_is_bounded(
    protocol: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = unused_port()
    scheme_endpoint = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", scheme_endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    # Export often so the test sees export calls; the exporters keep their default 10 s timeout,
    # so a retrying export is in flight when shutdown starts.
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    monkeypatch.setenv("OTEL_BLRP_SCHEDULE_DELAY", "50")

    tel = setup_telemetry(Settings(shutdown_timeout_s=SHUTDOWN_BOUND_S, log_json_stdout=False,
                                   telemetry_global_providers=False))
    assert len(tel._exporters) == 2
    export_threads: dict[str, list[int]] = {}
    for exporter in tel._exporters:
        kind = type(exporter).__module__
        assert ("grpc" in kind) == (protocol == "grpc"), kind
        export_threads[kind] = []
        original = exporter.export

        def recording_export(batch, _original=original, _seen=export_threads[kind]):
            _seen.append(threading.get_ident())
            return _original(batch)

        exporter.export = recording_export  # instance attribute: what the batch worker calls

    loop_thread = threading.get_ident()
    try:
        async with client_for(build_app(tel)) as client:
            for i in range(20):
                response = await client.get(f"/items/{i}")
                assert response.status_code == 200
                logging.getLogger("tests.dead").warning("request %d", i)
            poll_until(lambda: all(export_threads.values()), "an export call per signal", timeout=10)
            # More data queued right before shutdown: the final flush has something to (fail to) send.
            for i in range(5):
                assert (await client.get(f"/items/{i}")).status_code == 200
    finally:
        started = time.monotonic()
        tel.shutdown()
        elapsed = time.monotonic() - started

    for kind, threads in export_threads.items():
        assert threads, kind
        assert loop_thread not in threads, f"{kind} exported on the event loop's thread"
    assert elapsed <= SHUTDOWN_BOUND_S + SLACK_S, f"shutdown took {elapsed:.2f} s"


def test_unbounded_sdk_shutdown_would_exceed_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """The control for the test above: the SDK's own shutdown on a dead collector takes longer."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{unused_port()}")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    tel = setup_telemetry(
        Settings(shutdown_timeout_s=SHUTDOWN_BOUND_S, log_json_stdout=False, logs_enabled=False,
                 telemetry_global_providers=False)
    )
    assert tel.tracer_provider is not None
    exported = threading.Event()
    [exporter] = tel._exporters
    original = exporter.export

    def recording_export(batch):
        exported.set()
        return original(batch)

    exporter.export = recording_export
    for _ in range(3):
        tel.tracer.start_span("x").end()
    assert exported.wait(5)
    tel.tracer.start_span("queued-at-shutdown").end()
    done = threading.Event()
    threading.Thread(target=lambda: (tel.tracer_provider.shutdown(), done.set()), daemon=True).start()
    assert not done.wait(SHUTDOWN_BOUND_S + SLACK_S), "SDK shutdown was fast: the bound test proves nothing"
    tel.shutdown()


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
async def test_shutdown_with_nothing_listening_does_not_wait_out_the_budget(
    protocol: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """compose `down` stops the collector before the service: found by the compose e2e, the
    service's stop then waited ~4.4 s of retries for a collector that refuses connections."""
    from sample_service.telemetry.bootstrap import collector_refuses_connections

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{unused_port()}")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    assert collector_refuses_connections()
    budget = 6.0
    tel = setup_telemetry(Settings(shutdown_timeout_s=budget, log_json_stdout=False,
                                   telemetry_global_providers=False))
    async with client_for(build_app(tel)) as client:
        for i in range(10):
            assert (await client.get(f"/items/{i}")).status_code == 200
            logging.getLogger("tests.dead").warning("request %d", i)
    started = time.monotonic()
    tel.shutdown()
    elapsed = time.monotonic() - started
    assert elapsed < budget / 3, f"shutdown took {elapsed:.2f} s of a {budget} s budget"


def test_a_listening_collector_is_not_taken_for_a_refusing_one(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from sample_service.telemetry.bootstrap import collector_refuses_connections

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        assert not collector_refuses_connections()
