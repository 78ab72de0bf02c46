"""The `o11y` CLI against the real native stack: status, load, compare, scenario, chaos, drill.

Invoked as a user would: typer's CliRunner for most commands, the installed `o11y` console script
(a subprocess) for `load`. The CLI's native backend acts on a detached stack through its state file,
so this module writes the session stack's state file first and, at the end, hands any component the
CLI restarted back to the session's NativeStack (later modules stop, restart and tear it down).

Named test_cli so it runs early in the session: every component it touches is healthy again and
every scenario off when it ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from sample_service.telemetry import catalog
from scripts.native import processes
from scripts.native.run import NativeStack
from scripts.o11y.backend import ComponentStatus
from scripts.o11y.main import app
from scripts.o11y.native_backend import NativeBackend, proc_state
from tests.stack.backends import Backends
from tests.stack.conftest import poll_until
from tests.stack.drill_checks import assert_drill_leads_to_slow_traces

pytestmark = pytest.mark.stack
SERVICE = "http://127.0.0.1:8000"
CHAOS = "partner-api"  # the service degrades without it (partner status in evaluate), nothing is lost
CONSOLE_SCRIPT = Path(sys.executable).parent / "o11y"


@pytest.fixture(scope="module")
def cli(native_stack: NativeStack) -> Iterator[dict[str, str]]:
    """The environment a user of the CLI has: O11Y_RUN_DIR naming a detached stack's run dir."""
    state = native_stack.write_state()
    env = {"O11Y_RUN_DIR": str(native_stack.run_dir), "O11Y_BACKEND": "native"}
    try:
        yield env
    finally:
        with contextlib.suppress(httpx.HTTPError):
            httpx.put(f"{SERVICE}/admin/scenarios", json={"active": []}, timeout=30)
        _hand_back(native_stack, state)


def _hand_back(stack: NativeStack, state_file: Path) -> None:
    """A component the CLI started again belongs to no NativeStack: stop it and let the session's
    stack start its own, so the session's teardown reaches it."""
    comps = json.loads(state_file.read_text()).get("components", {})
    for name, info in comps.items():
        pid = int(info["pid"])
        if pid != stack.pid_of(name):
            if processes.pid_runs(pid, info.get("start_ticks")):
                os.killpg(pid, signal.SIGCONT)  # a paused group never handles SIGTERM
                processes.kill_group(pid)
            stack.stop(name)
            stack.start(name)
    state_file.unlink()


def o11y(env: dict[str, str], *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, list(args), env=env)
    output = result.output  # click >= 8.2: stdout and stderr, interleaved
    assert result.exit_code == code, f"o11y {' '.join(args)} exited {result.exit_code}:\n{output}"
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return output


def _served(route: str) -> float:
    """The service's own request count for a route, from its /metrics (no scrape delay)."""
    text = httpx.get(f"{SERVICE}/metrics", timeout=10).text
    return sum(
        s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name == catalog.HTTP_SERVER_DURATION.count and s.labels.get(catalog.L.HTTP_ROUTE) == route
    )


# ------------------------------------------------------------------------------------------------
def test_status_lists_every_component_with_health_uptime_memory(cli: dict[str, str]) -> None:
    out = o11y(cli, "status", "--backend", "native")
    backend = NativeBackend(Path(cli["O11Y_RUN_DIR"]))
    daemons = ("postgres", "sample-service", "partner-api", "otel-collector", "prometheus", "tempo",
               "opensearch")

    def all_healthy() -> dict[str, ComponentStatus]:
        # a probe has 3 s: on a loaded machine one can miss once, hence the poll
        rows = {r.name: r for r in backend.status()}
        bad = [rows[n] for n in daemons if (rows[n].state, rows[n].healthy) != ("running", True)]
        assert not bad, bad
        return rows

    rows = poll_until(all_healthy, "every component running and healthy", 60)
    for name in daemons:
        r = rows[name]
        assert r.uptime_s and r.uptime_s > 0 and r.memory_bytes and r.memory_bytes > 0, r
        assert name in out
    assert rows["grafana"].state == "absent" and rows["migrate"].state == "exited"
    for url in ("http://127.0.0.1:9090", "http://127.0.0.1:3200", "http://127.0.0.1:8000/docs"):
        assert url in out


def test_load_from_the_console_script_then_compare(cli: dict[str, str], tmp_path: Path) -> None:
    assert CONSOLE_SCRIPT.is_file(), f"{CONSOLE_SCRIPT} missing: `make venv` installs the tools extra"
    before = _served("/v1/evaluate")
    outs = [tmp_path / "a.json", tmp_path / "b.json"]
    args = ["load", "--backend", "native", "--rate", "8", "--duration", "4", "--seed", "3", "--out"]
    proc = subprocess.run([str(CONSOLE_SCRIPT), *args, str(outs[0])], env={**os.environ, **cli},
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "p99.9" in proc.stdout and "evaluate" in proc.stdout
    o11y(cli, *args, str(outs[1]))
    a = json.loads(outs[0].read_text())
    total = a["total"]
    assert total["scheduled"] == 32
    assert total["completed"] + total["unsent"] == 32
    assert "no response" not in total["statuses"], total["statuses"]  # every request was answered
    assert total["error_ratio"] < 0.05, total["statuses"]
    assert set(a["routes"]) <= {"evaluate", "records", "partner"} and "evaluate" in a["routes"]
    lat = total["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p95"] <= lat["p99"] <= lat["p99.9"] <= lat["max"]
    # both runs reached the service: its own counter moved by at least what they sent to evaluate
    sent = sum(json.loads(o.read_text())["routes"]["evaluate"]["completed"] for o in outs)
    assert _served("/v1/evaluate") - before >= sent

    png = tmp_path / "a-vs-b.png"
    shown = o11y(cli, "compare", str(outs[0]), str(outs[1]), "--plot", str(png))
    assert "p99.9 ms" in shown and "evaluate" in shown and str(png) in shown
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_scenario_on_moves_latency_and_off_restores(cli: dict[str, str], tmp_path: Path) -> None:
    o11y(cli, "scenario", "on", "slow_partner", "--backend", "native")
    try:
        assert httpx.get(f"{SERVICE}/admin/scenarios", timeout=10).json()["active"] == ["slow_partner"]
        assert "on   slow_partner" in o11y(cli, "scenario", "list", "--backend", "native")
        out = tmp_path / "slow.json"
        o11y(cli, "load", "--backend", "native", "--rate", "5", "--duration", "3", "--mix", "evaluate=1",
             "--out", str(out))
        slow = json.loads(out.read_text())["routes"]["evaluate"]
        # the partner answers O11Y_SLOW_PARTNER_EXTRA_MS (300) later to every evaluate: a lower bound
        assert slow["ok"] > 0 and min(ms for _, ms in slow["curve_ms"]) >= 300, slow["latency_ms"]
    finally:
        o11y(cli, "scenario", "off", "slow_partner", "--backend", "native")
    assert httpx.get(f"{SERVICE}/admin/scenarios", timeout=10).json()["active"] == []


def test_chaos_pause_resume_kill_start(cli: dict[str, str]) -> None:
    backend = NativeBackend(Path(cli["O11Y_RUN_DIR"]))

    def row(name: str) -> ComponentStatus:
        return next(r for r in backend.status() if r.name == name)

    pid = backend._pid(CHAOS)
    o11y(cli, "chaos", "pause", "partner", "--backend", "native")  # the alias of partner-api
    try:
        assert proc_state(pid) == "T"
        assert (row(CHAOS).state, row(CHAOS).healthy) == ("paused", False)
    finally:
        o11y(cli, "chaos", "resume", CHAOS, "--backend", "native")
    poll_until(lambda: row(CHAOS).healthy, f"{CHAOS} healthy after resume", 30)

    o11y(cli, "chaos", "kill", CHAOS, "--backend", "native")
    assert not processes.pid_alive(pid)
    assert row(CHAOS).state == "exited"
    out = o11y(cli, "chaos", "start", CHAOS, "--backend", "native")
    assert "now running, healthy" in out
    assert backend._pid(CHAOS) != pid
    assert httpx.get("http://127.0.0.1:8001/healthz", timeout=10).status_code == 200


def test_bad_input_is_a_clear_error(cli: dict[str, str]) -> None:
    assert "unknown component 'nosuch'" in o11y(cli, "chaos", "kill", "nosuch", "-b", "native", code=2)
    assert "grafana is absent natively" in o11y(cli, "chaos", "stop", "grafana", "-b", "native", code=2)
    assert "unknown scenario nope" in o11y(cli, "scenario", "on", "nope", "-b", "native", code=2)
    assert "unknown scenario 'nope'" in o11y(cli, "drill", "nope", "-b", "native", code=2)
    assert "must be a number" in o11y(cli, "load", "--rate", "0", "-b", "native", code=2)
    assert "choose native or compose" in o11y(cli, "status", "--backend", "k8s", code=2)
    assert "pyproject.toml is not JSON" in o11y(cli, "compare", "pyproject.toml", "README.md", code=2)


def test_drill_pool_starvation(cli: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "drill.json"
    text = o11y(cli, "drill", "pool_starvation", "--backend", "native", "--rate", "8", "--duration", "5",
                "--out", str(out))
    drill = json.loads(out.read_text())
    assert httpx.get(f"{SERVICE}/admin/scenarios", timeout=10).json()["active"] == []
    assert drill["scenario"] == "pool_starvation" and drill["route"] == "evaluate"
    assert_drill_leads_to_slow_traces(drill, text, Backends(), hold_ms=200)
    titles = {p["title"] for p in drill["panels"]}
    assert any("Pending checkouts" in t or "wait" in t.lower() for t in titles), titles
    assert all(p["grafana_url"].startswith("http://127.0.0.1:3000/d/") for p in drill["panels"])
