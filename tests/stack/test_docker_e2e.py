"""The real compose.yaml under a real Docker engine: the user flows, then the signal matrix and doctor.

The engine is the user's own if one answers, else a private dockerd this module starts (root +
Debian) and always stops, undoing its host changes (scripts/engine/docker_engine.py). It may skip
only where neither is possible, printing why. Third-party images are built locally
(scripts/engine/local_images.py) since no registry answers; what runs differs from compose.yaml
only as tests/stack/compose_e2e.py says.

The tests run in file order and share one compose project: first `up` from a clean engine, the
loadgen service's traffic in Prometheus before any test sends a request, what the stack proves while
up (loopback-only ports, container hardening, Prometheus refusing its admin and lifecycle APIs, no
.env secret in any image: docs/security.md), the `o11y` CLI driving it through the Docker SDK
(status, scenario, chaos, load), `down`/`up` keeping data, an `.env` credential edit, `up` without
builds, and a backend that fails to start.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sample_service.telemetry import catalog
from scripts.engine import docker_engine, local_images
from scripts.native import compose_model
from scripts.native.obtain import read_env_pins
from scripts.native.run import listening_sockets, non_loopback
from tests.stack.compose_e2e import (
    BIND,
    HARDENING,
    PROJECT_BUILT,
    REPO,
    Compose,
    backends_at,
    compose_for,
    container_pids,
    scan_image,
)
from tests.stack.conftest import FIGURES, poll_until
from tests.stack.doctor_check import assert_every_panel_has_data
from tests.stack.drill_checks import assert_drill_leads_to_slow_traces
from tests.stack.matrix import MATRIX, SERVICE, Ctx, Row, traces_with_partner_hop
from tests.stack.security import path_in_container, process_facts, prometheus_write_apis_refused
from tests.stack.traffic import Driver, SteadyLoad
from tests.static.test_security import secret_values

# The first test's set-up builds our images without cache: on a loaded 2-core machine that alone
# went past the suite's default 600 s (370 s build + local images + `up`).
pytestmark = [pytest.mark.docker, pytest.mark.stack, pytest.mark.timeout(2400)]
FAULTS = REPO / "tests" / "compose" / "faults"
# "a few seconds": every container handles SIGTERM, none needs the 10 s kill, and the services do
# not wait out their telemetry budget for a collector that `down` already stopped.
DOWN_BUDGET_S = 5.0
FIG: dict[str, Any] = FIGURES.setdefault("compose", {})


@pytest.fixture(scope="module")
def engine() -> Iterator[docker_engine.Engine]:
    try:
        with docker_engine.engine() as eng:
            FIG["engine"] = eng.description
            yield eng
    except docker_engine.EngineUnavailable as exc:
        print(f"\nDocker-engine e2e skipped: {exc}")
        pytest.skip(f"no Docker engine can be had here: {exc}")


@pytest.fixture(scope="module")
def compose(engine: docker_engine.Engine) -> Iterator[Compose]:
    pins = read_env_pins(REPO)
    c, source = compose_for(engine, pins["BUSYBOX_IMAGE"])
    FIG["third_party_images"] = source
    if c.absent:  # no registry: build the stand-ins for what cannot be pulled
        t0 = time.monotonic()
        FIG["local_images"] = local_images.build_local_images(engine.env, pins)
        FIG["local_images_s"] = time.monotonic() - t0
    try:
        yield c
    finally:
        _, took = c.down("-v")
        FIG["final_down_s"] = took
        FIG["commands"] = list(c.log)


@pytest.fixture(scope="module")
def first_up(compose: Compose) -> Compose:
    """The first `up` on a clean engine: no project images, no volumes; builds our images."""
    compose.down("-v")
    FIG["removed_images"] = compose.remove_project_images()
    # The build without the engine's layer cache, so the figure is what a clean engine pays.
    t0 = time.monotonic()
    proc = compose.run("build", "--no-cache", *compose.services, timeout=1800)
    assert proc.returncode == 0, f"`docker compose build` failed: {compose.explain(proc)}"
    FIG["build_our_images_s"] = time.monotonic() - t0
    proc, took = compose.up()
    assert proc.returncode == 0, f"first `docker compose up` failed: {compose.explain(proc)}"
    FIG["first_up_after_build_s"] = took
    FIG["clean_engine_to_healthy_with_builds_s"] = time.monotonic() - t0
    FIG["rss_mib_first_up"] = compose.rss_mib()
    FIG["images"] = {s: st["image"] for s, st in compose.states().items()}
    return compose


@pytest.fixture(scope="module")
def ctx(first_up: Compose) -> Iterator[Ctx]:
    backends = backends_at()
    steady = SteadyLoad(backends.service).start()
    try:
        driver = Driver(backends.service, admin=first_up.set_scenarios)
        try:
            report = driver.run_all()
        finally:
            driver.close()
        assert not report.errors, report.errors[:5]
        yield Ctx(backends, own_trace_ids=frozenset(report.trace_ids))
    finally:
        steady.stop()


# ------------------------------------------------------------------------------- while it is up
def test_first_up_reaches_healthy(first_up: Compose) -> None:
    states = first_up.states()
    assert set(states) == set(first_up.services), (sorted(states), first_up.services)
    for name, st in states.items():
        if name in ("migrate", "opensearch-setup"):
            assert st["status"] == "exited" and st["exit_code"] == 0, (name, st)
        else:
            assert st["status"] == "running" and st["health"] == "healthy", (name, st)
    for name, why in first_up.absent.items():
        assert name not in states, (name, why)
        print(f"\nabsent from the compose e2e: {name}: {why}")


def test_loadgen_traffic_reaches_prometheus_without_any_script(first_up: Compose) -> None:
    """Dashboards have data minutes after `up`: before any test sends a request, the loadgen
    service's requests show in the service's RED histogram and in the partner API's."""
    b, t0 = backends_at(), time.monotonic()
    m = catalog.HTTP_SERVER_DURATION
    for job, route in ((SERVICE, "/v1/evaluate"), (SERVICE, "/v1/users/{user_id}/records"),
                       ("partner-api", "/v1/score/{user_id}")):
        q = f'sum(increase({m.count}{{job="{job}",{catalog.L.HTTP_ROUTE}="{route}"}}[10m]))'
        poll_until(lambda q=q: (b.prom_value(q) or 0) > 0, f"loadgen's requests in Prometheus: {q}", 240)
    FIG["loadgen_visible_after_up_s"] = round(time.monotonic() - t0, 1)
    log = first_up.logs("loadgen")
    assert "load: " in log and "forever against http://sample-service:8000" in log, log[-2000:]


def test_published_ports_are_loopback_only(first_up: Compose) -> None:
    client = first_up.engine.client()
    try:
        for c in client.containers.list(filters=first_up.label):
            for port, bindings in (c.attrs["NetworkSettings"]["Ports"] or {}).items():
                for b in bindings or []:
                    assert b["HostIp"] == BIND, (c.name, port, b)
    finally:
        client.close()


def test_every_compose_port_published_on_bind_address_only(first_up: Compose) -> None:
    """Coverage for the check above: every port compose.yaml publishes is published, on BIND only,
    and the host-side listeners (docker-proxy) listen on loopback only."""
    model = compose_model.load(REPO, prefer_binary=False)
    want = {(name, p.published) for name, svc in model.services.items() for p in svc.ports
            if name in first_up.services and name not in ("migrate", "opensearch-setup")}
    client = first_up.engine.client()
    got: set[tuple[str, int]] = set()
    try:
        for c in client.containers.list(filters=first_up.label):
            for port, bindings in (c.attrs["NetworkSettings"]["Ports"] or {}).items():
                for b in bindings or []:
                    assert b["HostIp"] == BIND, (c.name, port, b)
                    got.add((c.labels["com.docker.compose.service"], int(b["HostPort"])))
    finally:
        client.close()
    assert got == want, f"published {sorted(got)} != compose.yaml's {sorted(want)}"
    proxies = [int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit()
               and _comm(d) == "docker-proxy"]
    addrs = sorted({a for pid in proxies for a in listening_sockets(pid)})
    FIG["docker_proxy_listening"] = addrs
    assert {int(a.rsplit(":", 1)[1]) for a in addrs} == {port for _, port in want}, addrs
    assert not non_loopback(addrs), f"docker-proxy listens beyond loopback: {addrs}"


def _comm(d: Path) -> str:
    try:
        return (d / "comm").read_text().strip()
    except OSError:
        return ""


def test_containers_run_non_root_without_capabilities_read_only(first_up: Compose) -> None:
    """Every container against HARDENING: the engine's view (HostConfig) and the kernel's (the
    host's /proc of every process in it: uids, capabilities, no_new_privs, root mount)."""
    client = first_up.engine.client()
    table: dict[str, dict[str, Any]] = {}
    try:
        containers = client.containers.list(all=True, filters=first_up.label)
        assert {c.labels["com.docker.compose.service"] for c in containers} == set(first_up.services)
        for c in containers:
            name = c.labels["com.docker.compose.service"]
            want, hc = HARDENING[name], c.attrs["HostConfig"]
            assert hc["CapDrop"] == ["ALL"] and not hc.get("CapAdd"), (name, hc["CapDrop"], hc.get("CapAdd"))
            assert "no-new-privileges:true" in (hc.get("SecurityOpt") or []), (name, hc.get("SecurityOpt"))
            assert not hc["Privileged"], name
            assert hc["ReadonlyRootfs"] is want.read_only, (name, hc["ReadonlyRootfs"], want)
            assert set(hc.get("Tmpfs") or {}) == want.tmpfs, (name, hc.get("Tmpfs"), want)
            user = c.attrs["Config"]["User"]
            assert user and user.split(":")[0] not in ("root", "0"), (name, user)
            row: dict[str, Any] = {"user": user, "cap_drop": hc["CapDrop"], "read_only": hc["ReadonlyRootfs"],
                                   "tmpfs": sorted(hc.get("Tmpfs") or {}), "why": want.why}
            if c.status != "running":  # the one-shots: exit 0 under these settings is the proof
                assert c.attrs["State"]["ExitCode"] == 0, (name, c.attrs["State"])
                table[name] = row
                continue
            pids = container_pids(c)
            main = c.attrs["State"]["Pid"]
            assert main in pids, (name, main, pids)
            for pid in pids:
                try:
                    f = process_facts(pid)
                except FileNotFoundError:  # e.g. a healthcheck's exec that ended since `top`
                    assert pid != main, (name, pid)
                    continue
                assert set(f.uids) == {want.uid}, (name, pid, f.uids, want)
                assert f.cap_eff == f.cap_prm == f.cap_bnd == 0, (name, pid, f)
                assert f.no_new_privs and f.seccomp == 2, (name, pid, f)
                assert f.root_read_only is want.read_only, (name, pid, f.mounts["/"])
                for path in want.tmpfs:
                    at = path_in_container(pid, path)
                    assert f.mounts.get(at, ("",))[0] == "tmpfs", (name, path, at, f.mounts.get(at))
            f = process_facts(main)
            table[name] = {**row, "uid": f.uids[0], "gid": f.gids[0], "processes": len(pids),
                           "CapEff": f.cap_eff, "CapBnd": f.cap_bnd, "NoNewPrivs": f.no_new_privs,
                           "root_mount": f.mounts["/"][1].split(",")[0]}
    finally:
        client.close()
    FIG["hardening"] = table
    print("\n" + "\n".join(f"  {n}: {r}" for n, r in sorted(table.items())))


def test_prometheus_admin_and_lifecycle_apis_refused_under_compose(first_up: Compose) -> None:
    FIG["prometheus_refusals"] = prometheus_write_apis_refused(backends_at().prometheus)


def test_no_env_secret_in_any_image_layer_history_or_config(first_up: Compose) -> None:
    """.env's secret values appear in no image the stack runs or compose builds: not in a layer
    (`docker save`), not in the history (build args, RUN lines), not in the config (ENV, labels)."""
    values = secret_values(read_env_pins(REPO))
    needles = {k: v.encode() for k, v in values.items()}
    client = first_up.engine.client()
    findings: list[str] = []
    scanned: dict[str, float] = {}
    t0 = time.monotonic()
    try:
        refs = {c.attrs["Config"]["Image"] for c in client.containers.list(all=True, filters=first_up.label)}
        refs |= {tag for image in client.images.list() for tag in image.tags
                 if tag.rsplit(":", 1)[0] in PROJECT_BUILT}
        for ref in sorted(refs):
            found, size = scan_image(client, ref, needles)
            findings += found
            scanned[ref] = round(size / 2**20, 1)
    finally:
        client.close()
    FIG["secret_scan"] = {"images_mib": scanned, "seconds": round(time.monotonic() - t0, 1)}
    assert len(scanned) >= 6, scanned
    assert not findings, findings


@pytest.mark.parametrize("row", MATRIX, ids=str)
def test_signal_under_compose(row: Row, ctx: Ctx) -> None:
    assert poll_until(lambda: row.check(ctx), f"[compose {row.signal} → {row.backend}] {row.expectation}",
                      row.timeout)


def test_dashboard_doctor_under_compose(ctx: Ctx) -> None:
    FIG["doctor"] = assert_every_panel_has_data(ctx.backends)


# ------------------------------------------------------------------- the o11y CLI under compose
ONE_SHOTS = ("migrate", "opensearch-setup")


def _status_rows(out: str) -> dict[str, list[str]]:
    """The `o11y status` table, cells by component (rich's box-drawing columns)."""
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("│┃").split("│")]
        if len(cells) == 6 and cells[0] and cells[0] != "component":
            rows[cells[0]] = cells[1:]
    return rows


def _mib(cell: str) -> float:
    assert cell.endswith(" MiB"), cell
    return float(cell.removesuffix(" MiB"))


def test_cli_status_lists_every_component_with_health_and_memory(first_up: Compose, ctx: Ctx) -> None:
    proc = first_up.o11y("status")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = _status_rows(proc.stdout)
    assert set(rows) == set(compose_model.load(REPO, prefer_binary=False).services), rows
    memory = {}
    for name, (state, healthy, uptime, mem, _url) in rows.items():
        if name in first_up.absent:
            assert state == "absent", (name, rows[name])
        elif name in ONE_SHOTS:
            assert state == "exited" and mem == "-", (name, rows[name])
        else:
            assert state == "running" and healthy == "yes", (name, rows[name])
            assert uptime != "-", (name, rows[name])
            memory[name] = _mib(mem)
            assert memory[name] > 0, (name, rows[name])
    # the URLs a person opens are the published ones, on BIND_ADDRESS
    assert rows[SERVICE][4] == f"http://{BIND}:8000" and rows["prometheus"][4] == f"http://{BIND}:9090"
    FIG["cli_status_memory_mib"] = memory


def test_cli_scenario_on_and_off_through_the_container(first_up: Compose, ctx: Ctx) -> None:
    """/admin/* answers loopback clients only: the CLI execs inside the service's container."""
    proc = first_up.o11y("scenario", "on", "cache_off")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert first_up.scenarios()["active"] == ["cache_off"], "the CLI said on, the service says otherwise"
    proc = first_up.o11y("scenario", "off", "all")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert first_up.scenarios()["active"] == []


def test_cli_chaos_pause_and_resume(first_up: Compose, ctx: Ctx) -> None:
    b = backends_at()
    proc = first_up.o11y("chaos", "pause", "prometheus")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    try:
        assert first_up.states()["prometheus"]["status"] == "paused"
        with pytest.raises(httpx.TimeoutException):  # frozen: the port accepts, nothing answers
            httpx.get(f"{b.prometheus}/-/ready", timeout=3)
        assert _status_rows(first_up.o11y("status").stdout)["prometheus"][0] == "paused"
    finally:
        proc = first_up.o11y("chaos", "resume", "prometheus")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert first_up.states()["prometheus"]["status"] == "running"
    poll_until(lambda: httpx.get(f"{b.prometheus}/-/ready", timeout=5).status_code == 200,
               "Prometheus answers after resume", 60)


@pytest.mark.parametrize("action", ["stop", "kill"])
def test_cli_chaos_stop_or_kill_then_start_is_healthy_again(action: str, first_up: Compose, ctx: Ctx) -> None:
    partner = backends_at().partner
    started = first_up.states()["partner-api"]["started_at"]
    proc = first_up.o11y("chaos", action, "partner")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    st = first_up.states()["partner-api"]
    assert st["status"] == "exited", st
    if action == "kill":
        assert st["exit_code"] == 137, st  # SIGKILL, not a clean stop
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{partner}/healthz", timeout=3)
    t0 = time.monotonic()
    proc = first_up.o11y("chaos", "start", "partner")
    FIG.setdefault("cli_chaos_start_s", {})[action] = round(time.monotonic() - t0, 1)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    st = first_up.states()["partner-api"]
    assert st["status"] == "running" and st["health"] == "healthy", st  # start waited for it
    assert httpx.get(f"{partner}/healthz", timeout=5).status_code == 200
    assert st["started_at"] != started, "the same process as before"


def test_cli_load_against_the_published_port(first_up: Compose, ctx: Ctx, tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    # A long per-request timeout: other work on the machine may starve the containers for seconds,
    # and this checks that every request is answered, not how fast.
    proc = first_up.o11y("load", "--rate", "5", "--duration", "10s", "--timeout", "120", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    assert result["config"]["base_url"] == f"http://{BIND}:8000", result["config"]
    total = result["total"]
    assert total["completed"] == total["scheduled"] == 50 and total["errors"] == 0, total
    assert {"evaluate", "records"} <= set(result["routes"]), result["routes"].keys()
    assert "p99" in total["latency_ms"] and "p99" in proc.stdout, proc.stdout
    FIG["cli_load"] = {k: total[k] for k in ("completed", "errors", "throughput_rps", "latency_ms")}


def test_cli_drill_under_compose(first_up: Compose, ctx: Ctx, tmp_path: Path) -> None:
    """One drill end to end under compose: the scenario switched through the container, both loads
    against the published port, the slowest exemplars from Prometheus, links that open."""
    out = tmp_path / "drill.json"
    proc = first_up.o11y("drill", "pool_starvation", "--rate", "5", "--duration", "8", "--out", str(out),
                         timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    drill = json.loads(out.read_text())
    assert first_up.scenarios()["active"] == [], "the drill must switch its scenario off again"
    assert drill["scenario"] == "pool_starvation" and drill["route"] == "evaluate"
    assert_drill_leads_to_slow_traces(drill, proc.stdout, backends_at(), hold_ms=200)
    FIG["cli_drill"] = {"moved": [m["group"] for m in drill["moved"]],
                        "slowest_exemplar_ms": drill["exemplars"][0]["value_ms"]}


def test_every_service_healthy_after_the_cli_tests(first_up: Compose) -> None:
    """The chaos above leaves nothing behind for the tests after it."""
    states = first_up.states()
    for name, st in states.items():
        if name not in ONE_SHOTS:
            assert st["status"] == "running", (name, st)
            assert st["health"] == "healthy", (name, st)


# ------------------------------------------------------------------------- down / up keeps data
def _psql(c: Compose, sql: str) -> str:
    pins = read_env_pins(REPO)
    proc = c.exec("postgres", "psql", "-v", "ON_ERROR_STOP=1", "-At", "-U", pins["POSTGRES_USER"],
                  "-d", pins["POSTGRES_DB"], "-c", sql)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_down_then_up_keeps_every_piece_of_data(first_up: Compose, ctx: Ctx) -> None:
    c, b = first_up, ctx.backends
    marker = f"e2e-{secrets.token_hex(6)}"
    _psql(c, "CREATE TABLE IF NOT EXISTS e2e_user_rows (v text PRIMARY KEY)")
    _psql(c, f"INSERT INTO e2e_user_rows VALUES ('{marker}')")
    users = int(_psql(c, "SELECT count(*) FROM users"))
    decisions = poll_until(lambda: int(_psql(c, "SELECT count(*) FROM decision_events")) or None,
                           "decision events written by the traffic", 60)
    # One of our own complete traces, looked up by id: by the time this runs, the loadgen's traces
    # fill the trace store's search window (its most recent 200) and ours are out of it.
    trace_id = poll_until(lambda: next((t for t in ctx.trace_ids if b.trace(t)), None)
                          or traces_with_partner_hop(ctx)[0], "a complete trace in the trace store", 90)
    series = f'{catalog.HTTP_SERVER_DURATION.count}{{job="{SERVICE}"}}'
    at = time.time()
    samples = poll_until(lambda: b.prom_value(f"sum(count_over_time({series}[1h]))"), "samples", 60)
    log_query = {"match": {catalog.LogField.SERVICE_NAME: SERVICE}}
    logs = poll_until(lambda: b.os_count(log_query), "log documents", 60)

    proc, took = c.down()
    assert proc.returncode == 0, c.explain(proc)
    FIG["down_s"] = took
    assert took <= DOWN_BUDGET_S, f"`docker compose down` took {took:.1f}s (> {DOWN_BUDGET_S}s)"

    proc, took = c.up()
    assert proc.returncode == 0, f"second `up` failed: {c.explain(proc)}"
    FIG["second_up_s"] = took

    assert _psql(c, f"SELECT v FROM e2e_user_rows WHERE v = '{marker}'") == marker, "a row a user added"
    assert int(_psql(c, "SELECT count(*) FROM users")) == users, "the migrate one-shot re-seeded"
    assert int(_psql(c, "SELECT count(*) FROM decision_events")) >= decisions
    poll_until(lambda: b.trace(trace_id), f"trace {trace_id} after down/up", 90)

    def samples_kept() -> bool:
        value = b.prom_value(f"sum(count_over_time({series}[1h]))", at=at) or 0.0
        assert value >= samples, f"{value} samples before the restart point < {samples}"
        return True

    poll_until(samples_kept, "Prometheus keeps its samples across down/up", 60)
    poll_until(lambda: b.os_count(log_query) >= logs or None, "OpenSearch keeps its log documents", 90)


# ------------------------------------------------------------------- a credential edited in .env
def test_changed_postgres_password_fails_fast_and_says_why(first_up: Compose) -> None:
    """.env's POSTGRES_PASSWORD applies only when the volume is created: after the first `up`, an edit
    makes `up` fail within a bounded time naming the cause and the ways out (README: Changing .env)."""
    c = first_up
    c.down()
    t0 = time.monotonic()
    proc, _ = c.up(wait_timeout=240, env={"POSTGRES_PASSWORD": "edited-" + secrets.token_hex(4)})
    took = time.monotonic() - t0
    FIG["changed_password_fails_after_s"] = took
    assert proc.returncode != 0, "up with a changed password must not report success"
    assert "migrate" in proc.stderr, proc.stderr[-2000:]
    migrate_log = c.logs("migrate")
    assert "InvalidPasswordError" in migrate_log and "down -v" in migrate_log, migrate_log[-3000:]
    assert took < 180, f"failing took {took:.0f}s"
    c.down()


# ------------------------------------------------------------------ clean volumes, images present
def test_up_without_builds_from_empty_volumes(first_up: Compose) -> None:
    c = first_up
    c.down("-v")
    proc, took = c.up()
    assert proc.returncode == 0, c.explain(proc)
    FIG["clean_up_without_builds_s"] = took
    FIG["rss_mib"] = c.rss_mib()


# ------------------------------------------------------------------- one backend fails to start
def _healthy(c: Compose, names: tuple[str, ...]) -> dict[str, Any] | None:
    states = c.states()
    bad = {n: states.get(n) for n in names if (states.get(n) or {}).get("health") != "healthy"}
    assert not bad, f"not healthy yet: {bad}"
    return states


def test_opensearch_failing_does_not_block_collector_or_traces(first_up: Compose) -> None:
    c = first_up
    files = [*c.files, FAULTS / "opensearch-fails.yaml"]
    # No --wait: `up` itself must not block on OpenSearch; the rest is polled, bounded.
    proc = c.run("up", "-d", "--pull", "never", *c.services, files=files, timeout=600)
    others = ("otel-collector", "tempo", "prometheus", "sample-service", "partner-api", "postgres")
    states = poll_until(lambda: _healthy(c, others), "every service but OpenSearch healthy", 240)
    assert states["opensearch"]["health"] != "healthy", states["opensearch"]
    FIG["opensearch_fault_up_exit"] = proc.returncode

    # Traces still flow end to end: a request's trace id comes back from the trace store.
    b = backends_at()
    r = httpx.post(f"{b.service}/v1/evaluate", json=json.loads(
        (REPO / "docs" / "example-evaluate.json").read_text()), timeout=30)
    assert r.status_code == 200, r.text
    trace_id = r.json()["trace_id"]
    poll_until(lambda: b.trace(trace_id), f"trace {trace_id} with OpenSearch down", 90)
    c.down()
