"""The compose backend's reading of the engine's answers, on answers recorded from the e2e's engine.

tests/unit/data/docker_api_recorded.json holds the fields the backend reads, cut from real
`GET /containers/{id}/json` and one-shot stats answers of the e2e's compose project (Docker 20.10,
cgroup v1, 2026-12-01): the service running and healthy with two probes that timed out (exit -1),
the migrate one-shot exited after the image's HEALTHCHECK failed, loadgen (its image exposes 8000,
nothing is published), Prometheus paused, Postgres' memory. The backend against a running engine:
tests/stack/test_docker_e2e.py.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from scripts.o11y.backend import BackendError
from scripts.o11y.docker_backend import (
    admin_answer,
    component_status,
    engine_time,
    memory_of,
    probed_healthy_since_start,
    published_url,
)

RECORDED_FILE = Path(__file__).parent / "data" / "docker_api_recorded.json"
RECORDED: dict[str, Any] = json.loads(RECORDED_FILE.read_text())


def attrs(name: str) -> dict[str, Any]:
    return copy.deepcopy(RECORDED[name])


def test_engine_time_keeps_microseconds_of_the_engines_nanoseconds() -> None:
    assert engine_time("2026-12-01T03:21:26.482304582Z") == datetime(2026, 12, 1, 3, 21, 26, 482304, UTC)
    assert engine_time("0001-01-01T00:00:00Z").year == 1  # the engine's "never" (FinishedAt)
    with pytest.raises(ValueError):
        engine_time("yesterday")


def test_a_running_healthy_service() -> None:
    a = attrs("sample-service")
    now = engine_time(a["State"]["StartedAt"]) + timedelta(seconds=90)
    st = component_status("sample-service", a, {"memory_stats": RECORDED["postgres_memory_stats"]}, now)
    assert (st.state, st.healthy, st.uptime_s) == ("running", True, 90.0)
    assert st.url == "http://127.0.0.2:8000"  # published on the e2e's BIND_ADDRESS, not assumed
    assert st.memory_bytes == 308387840 - 169324544


def test_an_exited_one_shot_has_no_health_uptime_memory_or_url() -> None:
    """migrate's recorded Health is "unhealthy" (the image's HEALTHCHECK ran while it migrated):
    an exited one-shot must not make `o11y status` report a failure."""
    a = attrs("migrate")
    assert a["State"]["Health"]["Status"] == "unhealthy"
    st = component_status("migrate", a, None, datetime.now(UTC))
    assert (st.state, st.healthy, st.uptime_s, st.memory_bytes, st.url) == ("exited", None, None, None, None)


def test_exposed_but_unpublished_port_has_no_url() -> None:
    a = attrs("loadgen")
    assert a["NetworkSettings"]["Ports"] == {"8000/tcp": None}
    assert published_url(a, 8000) is None


def test_a_paused_component() -> None:
    a = attrs("prometheus_paused")
    st = component_status("prometheus", a, None, datetime.now(UTC))
    assert (st.state, st.healthy, st.url) == ("paused", False, "http://127.0.0.2:9090")
    assert st.uptime_s is not None and st.uptime_s > 0  # the process lives on, frozen


def test_published_on_every_address_is_reached_on_loopback() -> None:
    a = attrs("sample-service")
    a["NetworkSettings"]["Ports"]["8000/tcp"][0]["HostIp"] = "0.0.0.0"
    assert published_url(a, 8000) == "http://127.0.0.1:8000"


def test_memory_is_what_docker_stats_shows() -> None:
    stats = {"memory_stats": RECORDED["postgres_memory_stats"]}
    assert memory_of(stats) == 139063296  # usage minus the inactive page cache, not `cache` or `rss`
    assert memory_of(None) is None and memory_of({"memory_stats": {}}) is None


def test_healthy_after_start_needs_a_probe_that_passed_since() -> None:
    # loadgen: a timed-out probe, then one that passed, both after its start
    assert probed_healthy_since_start(attrs("loadgen")) is True
    # the service: "healthy", but both probes since its start timed out (exit -1): not proven yet
    assert probed_healthy_since_start(attrs("sample-service")) is False
    # a verdict from before the (re)start does not count, whatever the status says
    a = attrs("loadgen")
    a["State"]["StartedAt"] = "2026-12-01T03:40:00.000000000Z"
    assert a["State"]["Health"]["Status"] == "healthy" and probed_healthy_since_start(a) is False
    b = attrs("migrate")
    del b["State"]["Health"]
    assert probed_healthy_since_start(b) is None


def test_admin_answer() -> None:
    ok = json.dumps({"status": 200, "body": json.dumps({"active": ["cache_off"]})}).encode()
    assert admin_answer(0, ok, b"") == (200, {"active": ["cache_off"]})
    text = json.dumps({"status": 403, "body": "loopback only"}).encode()
    assert admin_answer(0, text, None) == (403, "loopback only")
    with pytest.raises(BackendError, match="ModuleNotFoundError"):
        admin_answer(1, b"", b"ModuleNotFoundError: no module named x")
