"""The compose stack as a `Backend`, through the Docker SDK (never the docker CLI).

Containers are found by the labels compose puts on them (project, service), so this works for any
`docker compose up` of compose.yaml: the user's (project `o11y-box`, or $COMPOSE_PROJECT_NAME) and
the e2e's. `docker.from_env()` honours DOCKER_HOST, which is how the e2e points it at its engine.
The parsing of the engine's answers is kept in plain functions over the API's dicts, so it can be
checked on recorded answers without an engine.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
import yaml
from docker.errors import DockerException

from scripts.native.health import PollTimeout, poll_until
from scripts.o11y.backend import BackendError, ComponentStatus

REPO = Path(__file__).resolve().parents[2]
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
# What a person opens, per urls() key: compose service and container port (DEVELOPERS.md contract).
URL_PORTS = {
    "service": ("sample-service", 8000),
    "grafana": ("grafana", 3000),
    "prometheus": ("prometheus", 9090),
    "traces": ("tempo", 3200),
    "opensearch": ("opensearch", 9200),
}
ADMIN_SERVICE, ADMIN_PORT = URL_PORTS["service"]
# OpenSearch alone takes up to its start_period (30 s) plus a few 10 s probes on a loaded machine.
START_TIMEOUT_S = 240.0
FREEZE_TIMEOUT_S = 30.0

# The sample service's /admin/* answers loopback clients only, and a published port is not loopback
# from the container's side: the call runs inside the container, with the image's Python (stdlib).
# A 4xx/5xx is an answer to report, not a failure of the exec.
_ADMIN_CALL = """\
import json, sys, urllib.error, urllib.request
method, url, body = sys.argv[1:4]
req = urllib.request.Request(url, data=body.encode() or None, method=method,
                             headers={"content-type": "application/json"})
try:
    with urllib.request.urlopen(req, timeout=30) as resp:
        status, text = resp.status, resp.read().decode()
except urllib.error.HTTPError as err:
    status, text = err.code, err.read().decode()
print(json.dumps({"status": status, "body": text}))
"""


def project_name() -> str:
    """compose's own rule: $COMPOSE_PROJECT_NAME, else the `name:` in compose.yaml."""
    return os.environ.get("COMPOSE_PROJECT_NAME") or str(_compose_file()["name"])


def compose_services() -> list[str]:
    """Every service compose.yaml declares (those without a container show as absent)."""
    return list(_compose_file()["services"])


def _compose_file() -> dict[str, Any]:
    return dict(yaml.safe_load((REPO / "compose.yaml").read_text()))


def compose_project_running(project: str | None = None) -> bool:
    """True when an engine answers and the project has containers (the CLI's default backend)."""
    with _client() as client:
        return bool(client.containers.list(all=True, filters=_label_filter(project or project_name())))


@contextmanager
def _client() -> Iterator[docker.DockerClient]:
    try:
        client = docker.from_env()
    except DockerException as exc:
        where = os.environ.get("DOCKER_HOST") or "the default socket"
        raise BackendError(f"no Docker engine answers at {where}: {exc}") from exc
    try:
        yield client
    finally:
        client.close()


def _label_filter(project: str, service: str | None = None) -> dict[str, list[str]]:
    labels = [f"{PROJECT_LABEL}={project}"]
    if service is not None:
        labels.append(f"{SERVICE_LABEL}={service}")
    return {"label": labels}


# --------------------------------------------------------------------- parsing the engine's dicts
def state_of(attrs: dict[str, Any]) -> str:
    """The contract's state from the container's State.Status (a restart loop is not running)."""
    status = (attrs.get("State") or {}).get("Status")
    if status in ("running", "paused"):
        return str(status)
    return "exited"


def health_of(attrs: dict[str, Any]) -> bool | None:
    """None without a healthcheck; True only when the engine says healthy (starting is not yet)."""
    health = (attrs.get("State") or {}).get("Health")
    if not health:
        return None
    return bool(health.get("Status") == "healthy")


def uptime_of(attrs: dict[str, Any], now: datetime) -> float | None:
    """Seconds since StartedAt while the container runs (paused counts: the process lives)."""
    if state_of(attrs) == "exited":
        return None
    started = (attrs.get("State") or {}).get("StartedAt")
    if not started:
        return None
    return max(0.0, (now - engine_time(started)).total_seconds())


def engine_time(text: str) -> datetime:
    """The engine's RFC 3339 time with nanoseconds (fromisoformat keeps microseconds); the offset
    is Z from the engine, or the daemon's own zone in healthcheck log entries."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?", text)
    if m is None:
        raise ValueError(f"not an engine timestamp: {text!r}")
    head, frac, zone = m.groups()
    zone = "+00:00" if zone in (None, "Z") else zone
    return datetime.fromisoformat(f"{head}.{(frac or '0')[:6].ljust(6, '0')}{zone}")


def probed_healthy_since_start(attrs: dict[str, Any]) -> bool | None:
    """Like health_of, but only once a probe that ran after this start passed: right after a restart
    the engine may still show the last run's verdict. (A probe that timed out, exit -1, does not
    undo "healthy" until the retries run out, as the engine counts it.)"""
    state = attrs.get("State") or {}
    health = state.get("Health")
    if not health:
        return None
    started = engine_time(state["StartedAt"])
    log = health.get("Log") or []
    passed = any(e.get("ExitCode") == 0 and engine_time(e["Start"]) >= started for e in log)
    return passed and health.get("Status") == "healthy"


def memory_of(stats: dict[str, Any] | None) -> int | None:
    """What `docker stats` shows as MEM USAGE: usage minus the inactive page cache (cgroup v1
    `total_inactive_file`, v2 `inactive_file`), which the kernel reclaims before any limit bites."""
    mem = (stats or {}).get("memory_stats") or {}
    usage = mem.get("usage")
    if usage is None:
        return None
    detail = mem.get("stats") or {}
    inactive = detail.get("total_inactive_file", detail.get("inactive_file", 0))
    return int(usage - inactive) if inactive < usage else int(usage)


def published_url(attrs: dict[str, Any], container_port: int) -> str | None:
    """http://<host ip>:<host port> where the container port is published, else None."""
    ports = (attrs.get("NetworkSettings") or {}).get("Ports") or {}
    for binding in ports.get(f"{container_port}/tcp") or []:
        host = binding.get("HostIp") or "127.0.0.1"
        if host in ("0.0.0.0", "::"):  # published on every address: loopback is one of them
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{binding['HostPort']}"
    return None


def component_status(service: str, attrs: dict[str, Any] | None, stats: dict[str, Any] | None,
                     now: datetime) -> ComponentStatus:
    if attrs is None:
        return ComponentStatus(service, "absent", None, None, None, None)
    state = state_of(attrs)
    port = next((p for s, p in URL_PORTS.values() if s == service), None)
    return ComponentStatus(
        name=service,
        state=state,
        # an exited one-shot keeps the verdict of the image's HEALTHCHECK from while it ran
        healthy=health_of(attrs) if state != "exited" else None,
        uptime_s=uptime_of(attrs, now),
        memory_bytes=memory_of(stats) if state != "exited" else None,
        url=published_url(attrs, port) if port is not None and state != "exited" else None,
    )


def admin_answer(exit_code: int | None, stdout: bytes | None, stderr: bytes | None) -> tuple[int, Any]:
    """(HTTP status, JSON body or text) from the exec of _ADMIN_CALL."""
    if exit_code != 0:
        raise BackendError(f"admin call inside {ADMIN_SERVICE} exited {exit_code}: "
                           f"{(stderr or stdout or b'').decode(errors='replace')[-2000:]}")
    answer = json.loads(stdout or b"{}")
    try:
        return int(answer["status"]), json.loads(answer["body"])
    except ValueError:
        return int(answer["status"]), answer["body"]


# ------------------------------------------------------------------------------------ the backend
class DockerBackend:
    name = "compose"

    def __init__(self, project: str | None = None) -> None:
        self.project = project or project_name()

    def _containers(self, client: docker.DockerClient, service: str | None = None) -> list[Any]:
        return list(client.containers.list(all=True, filters=_label_filter(self.project, service)))

    def _one(self, client: docker.DockerClient, component: str) -> Any:
        found = self._containers(client, component)
        if not found:
            known = sorted({c.labels.get(SERVICE_LABEL, "?") for c in self._containers(client)})
            raise BackendError(f"no container of {component!r} in compose project {self.project!r} "
                               f"(its services with containers: {', '.join(known) or 'none'})")
        return found[0]

    def status(self) -> list[ComponentStatus]:
        now = datetime.now(UTC)
        with _client() as client:
            by_service = {c.labels.get(SERVICE_LABEL): c for c in self._containers(client)}
            live = [c for c in by_service.values() if state_of(c.attrs) != "exited"]
            # The engine takes about a second per one-shot stats answer: ask for all at once.
            with ThreadPoolExecutor(max_workers=max(1, len(live))) as pool:
                stats = dict(zip([c.id for c in live],
                                 pool.map(lambda c: c.stats(stream=False, one_shot=True), live), strict=True))
            names = [*compose_services(), *sorted(set(by_service) - set(compose_services()))]
            return [component_status(n, by_service[n].attrs, stats.get(by_service[n].id), now)
                    if n in by_service else component_status(n, None, None, now) for n in names]

    def urls(self) -> dict[str, str]:
        with _client() as client:
            by_service = {c.labels.get(SERVICE_LABEL): c for c in self._containers(client)}
            out = {}
            for key, (service, port) in URL_PORTS.items():
                c = by_service.get(service)
                url = published_url(c.attrs, port) if c is not None else None
                if url:
                    out[key] = url
        return out

    def stop(self, component: str) -> None:
        with _client() as client:
            self._one(client, component).stop()

    def kill(self, component: str) -> None:
        with _client() as client:
            self._one(client, component).kill()

    def pause(self, component: str) -> None:
        """Freeze it (cgroup freezer). Under load the freezer can give up while a process is being
        forked ("unable to freeze"); that is retried, bounded."""
        with _client() as client:
            container = self._one(client, component)

            def frozen() -> bool:
                container.reload()
                if container.status != "paused":
                    container.pause()
                return True

            try:
                poll_until(frozen, f"{component} paused", FREEZE_TIMEOUT_S, interval=1.0)
            except PollTimeout as exc:
                raise BackendError(str(exc)) from exc

    def resume(self, component: str) -> None:
        with _client() as client:
            self._one(client, component).unpause()

    def start(self, component: str) -> None:
        """Start it again and wait, bounded, until the engine calls it healthy (or running, for a
        component without a healthcheck)."""
        with _client() as client:
            container = self._one(client, component)
            container.start()

            def ready() -> bool:
                container.reload()
                if state_of(container.attrs) != "running":
                    raise BackendError(f"{component} is {container.status}")
                return probed_healthy_since_start(container.attrs) is not False

            try:
                poll_until(ready, f"{component} healthy after start", START_TIMEOUT_S, interval=1.0)
            except PollTimeout as exc:
                raise BackendError(str(exc)) from exc

    def admin(self, method: str, path: str, body: dict | None = None) -> tuple[int, Any]:
        with _client() as client:
            container = self._one(client, ADMIN_SERVICE)
            url = f"http://127.0.0.1:{ADMIN_PORT}{path}"
            payload = json.dumps(body) if body is not None else ""
            argv = ["python", "-c", _ADMIN_CALL, method.upper(), url, payload]
            result = container.exec_run(argv, demux=True)
            stdout, stderr = result.output if result.output else (None, None)
            return admin_answer(result.exit_code, stdout, stderr)
