"""Driving the real compose.yaml under a real engine, for tests/stack/test_docker_e2e.py.

What runs differs from `docker compose up` only by two override files, both under tests/compose/:
- local-images.yaml: `image:` / `build.args` lines only (no registry here: third-party images are
  built locally from the same software, under o11y-box-local/ names; tests/static checks the file);
- jaeger-for-tempo.yaml: Jaeger (Apache-2.0) takes the `tempo` service's role, since Tempo is AGPL
  (not buildable here) and its image cannot be pulled.
Grafana is left out of `up` for the same two reasons (see ABSENT).

The stack publishes on BIND_ADDRESS=127.0.0.2 (still loopback), so a native stack on 127.0.0.1 can
run beside it; compose reads BIND_ADDRESS from the environment before .env, as a user's would.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scripts.engine.docker_engine import Engine
from scripts.native import compose_model
from tests.stack.backends import Backends

REPO = Path(__file__).resolve().parents[2]
PROJECT = "o11y-box-e2e"
BIND = "127.0.0.2"
LOCAL_IMAGES = REPO / "tests" / "compose" / "local-images.yaml"
JAEGER_FOR_TEMPO = REPO / "tests" / "compose" / "jaeger-for-tempo.yaml"
OVERRIDES = (LOCAL_IMAGES, JAEGER_FOR_TEMPO)
# Services that cannot run here, with why: the e2e names them instead of pretending.
ABSENT = {
    "grafana": "Grafana is AGPL (not-to-use here, so not built) and no registry answers to pull "
               "grafana/grafana; the doctor runs every panel's queries against the backends instead",
}
# Images compose builds from this repo's Dockerfiles (removed before the clean first `up`).
PROJECT_BUILT = ("o11y-box/sample-service", "o11y-box/otel-collector", "o11y-box/tempo", "o11y-box/grafana")


def compose_services() -> list[str]:
    return list(compose_model.load(REPO, prefer_binary=False).services)


def backends_at(host: str = BIND) -> Backends:
    return Backends(
        prometheus=f"http://{host}:9090", tempo=f"http://{host}:3200", opensearch=f"http://{host}:9200",
        collector_metrics=f"http://{host}:8888/metrics", service=f"http://{host}:8000",
        partner=f"http://{host}:8001",
    )


@dataclass
class Compose:
    engine: Engine
    project: str = PROJECT
    files: Sequence[Path] = (REPO / "compose.yaml", *OVERRIDES)
    env: dict[str, str] = field(default_factory=lambda: {"BIND_ADDRESS": BIND})
    log: list[str] = field(default_factory=list)
    absent: Mapping[str, str] = field(default_factory=lambda: dict(ABSENT))

    @property
    def label(self) -> dict[str, str]:
        return {"label": f"com.docker.compose.project={self.project}"}

    @property
    def services(self) -> list[str]:
        return [s for s in compose_services() if s not in self.absent]

    def run(self, *args: str, timeout: float = 900, env: Mapping[str, str] | None = None,
            files: Sequence[Path] | None = None) -> subprocess.CompletedProcess[str]:
        cmd = ["docker", "compose", "-p", self.project]
        for f in files or self.files:
            cmd += ["-f", str(f)]
        cmd += list(args)
        t0 = time.monotonic()
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                              env={**self.engine.run_env(), **self.env, **(env or {})})
        self.log.append(f"$ {' '.join(cmd[3:])}  -> {proc.returncode} in {time.monotonic() - t0:.1f}s")
        return proc

    def up(self, *extra: str, wait_timeout: int = 600, env: Mapping[str, str] | None = None,
           files: Sequence[Path] | None = None) -> tuple[subprocess.CompletedProcess[str], float]:
        t0 = time.monotonic()
        proc = self.run("up", "-d", "--wait", "--wait-timeout", str(wait_timeout), "--pull", "never",
                        *extra, *self.services, timeout=wait_timeout + 900, env=env, files=files)
        return proc, time.monotonic() - t0

    def down(self, *extra: str) -> tuple[subprocess.CompletedProcess[str], float]:
        t0 = time.monotonic()
        proc = self.run("down", "--remove-orphans", *extra, timeout=300)
        return proc, time.monotonic() - t0

    def logs(self, *services: str, tail: int = 80) -> str:
        proc = self.run("logs", "--no-color", "--tail", str(tail), *services, timeout=120)
        return proc.stdout + proc.stderr

    def explain(self, proc: subprocess.CompletedProcess[str], *services: str) -> str:
        return (f"exit {proc.returncode}\n--- stderr\n{proc.stderr[-4000:]}\n--- logs\n"
                f"{self.logs(*services)[-12000:]}")

    def exec(self, service: str, *cmd: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.run("exec", "-T", service, *cmd, timeout=timeout)

    def set_scenarios(self, active: list[str]) -> dict[str, Any]:
        """PUT /admin/scenarios the way the service's docs tell a compose user to: from inside the
        container (the endpoint answers loopback clients only; a published port is not loopback)."""
        return self._scenarios("PUT", json.dumps({"active": active}))

    def scenarios(self) -> dict[str, Any]:
        """GET /admin/scenarios, the same way (`docker compose exec`, not the CLI under test)."""
        return self._scenarios("GET", "")

    def _scenarios(self, method: str, body: str) -> dict[str, Any]:
        code = ("import sys, urllib.request as u; "
                "r = u.Request('http://127.0.0.1:8000/admin/scenarios', data=sys.argv[2].encode() or None, "
                "method=sys.argv[1], headers={'content-type': 'application/json'}); "
                "print(u.urlopen(r, timeout=10).read().decode())")
        proc = self.exec("sample-service", "python", "-c", code, method, body)
        if proc.returncode != 0:
            raise RuntimeError(f"{method} /admin/scenarios {body} via exec failed: {proc.stderr[-2000:]}")
        return dict(json.loads(proc.stdout))

    def o11y(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """The `o11y` console script as a user runs it against this project: the Docker SDK finds the
        engine through DOCKER_HOST and the project through COMPOSE_PROJECT_NAME, as compose does."""
        script = Path(sys.executable).parent / "o11y"
        assert script.is_file(), f"{script} missing: `pip install -e '.[tools]'` (make venv) installs it"
        env = {**self.engine.run_env(), "COMPOSE_PROJECT_NAME": self.project, "O11Y_BACKEND": "compose",
               # rich draws to the pipe at this width without colour codes, one table row per line
               "COLUMNS": "220", "NO_COLOR": "1", "TERM": "dumb"}
        t0 = time.monotonic()
        proc = subprocess.run([str(script), *args], cwd=REPO, capture_output=True, text=True,
                              timeout=timeout, env=env)
        self.log.append(f"$ o11y {' '.join(args)}  -> {proc.returncode} in {time.monotonic() - t0:.1f}s")
        return proc

    def states(self) -> dict[str, dict[str, Any]]:
        """Per service: state, health, exit code (from the engine, via the Docker SDK)."""
        client = self.engine.client()
        try:
            out: dict[str, dict[str, Any]] = {}
            for c in client.containers.list(all=True, filters=self.label):
                st = c.attrs["State"]
                out[c.labels["com.docker.compose.service"]] = {
                    "status": st.get("Status"), "health": (st.get("Health") or {}).get("Status"),
                    "exit_code": st.get("ExitCode"), "restarts": c.attrs.get("RestartCount", 0),
                    "started_at": st.get("StartedAt"),
                    "image": c.attrs["Config"]["Image"],
                }
            return out
        finally:
            client.close()

    def rss_mib(self) -> dict[str, float]:
        """Resident memory of each running container (cgroup rss, not page cache)."""
        client = self.engine.client()
        try:
            out: dict[str, float] = {}
            for c in client.containers.list(filters=self.label):
                mem = c.stats(stream=False).get("memory_stats", {})
                stats = mem.get("stats", {})
                rss = stats.get("rss", stats.get("anon", mem.get("usage", 0)))
                out[c.labels["com.docker.compose.service"]] = rss / 2**20
            return dict(sorted(out.items()))
        finally:
            client.close()

    def remove_project_images(self) -> list[str]:
        """The images compose builds from this repo, so the next `up --build` starts from none."""
        client = self.engine.client()
        removed = []
        try:
            for image in client.images.list():
                for tag in image.tags:
                    if tag.rsplit(":", 1)[0] in PROJECT_BUILT:
                        client.images.remove(tag, force=True)
                        removed.append(tag)
        finally:
            client.close()
        return removed


def registry_answers(engine: Engine, ref: str) -> str | None:
    """None when `docker pull ref` works (then every upstream image can be pulled, as for a user);
    else the engine's one-line reason (no registry here: the local images stand in)."""
    proc = subprocess.run(["docker", "pull", ref], capture_output=True, text=True, timeout=300,
                          env=engine.run_env())
    if proc.returncode == 0:
        return None
    return ((proc.stderr or proc.stdout).strip().splitlines() or ["docker pull failed"])[-1]


def compose_for(engine: Engine, busybox_ref: str) -> tuple[Compose, str]:
    """Upstream images where a registry answers (compose.yaml as a user runs it, Grafana included;
    Jaeger still stands in for Tempo so one signal matrix serves both), else the local images."""
    reason = registry_answers(engine, busybox_ref)
    if reason is None:
        return Compose(engine, files=(REPO / "compose.yaml", JAEGER_FOR_TEMPO), absent={}), "pulled"
    return Compose(engine), f"built locally (no registry: {reason})"


# --------------------------------------------------------------------------------- security
@dataclass(frozen=True)
class Hardening:
    """What each container must look like under the engine (docs/security.md has the same table)."""

    uid: int
    read_only: bool
    tmpfs: frozenset[str] = frozenset()
    why: str = ""


_PY = Hardening(10001, True, frozenset({"/tmp"}), "image USER 10001; /tmp for tempfile")
HARDENING = {
    "postgres": Hardening(999, True, frozenset({"/var/run/postgresql", "/tmp"}),
                          "compose `user: postgres` (the image starts as root); socket dir + /tmp"),
    "migrate": _PY, "opensearch-setup": _PY, "partner-api": _PY, "sample-service": _PY, "loadgen": _PY,
    "otel-collector": Hardening(10001, True, why="image USER 10001; writes only its queue volume"),
    "prometheus": Hardening(65534, True, why="image USER nobody; writes only its TSDB volume"),
    # here Jaeger (USER 10001) stands in: Tempo's own read-only root is not proven, so not set
    "tempo": Hardening(10001, False, why="image USER 10001; writable root: unproven for Tempo"),
    "opensearch": Hardening(1000, False, why="image USER 1000; writable root: keystore, gc log, tmp"),
    "grafana": Hardening(472, False, why="image USER 472; writable root: unproven, undocumented"),
}


def container_pids(container: Any) -> list[int]:
    """Host pids of every process in the container (the engine's `top`)."""
    top = container.top()
    col = top["Titles"].index("PID")
    return [int(p[col]) for p in top["Processes"]]


def scan_image(client: Any, ref: str, needles: Mapping[str, bytes]) -> tuple[list[str], int]:
    """Where any needle occurs in an image: its history, its config, or any byte of its layers
    (`docker save`: uncompressed tar, so a file's content is contiguous). Returns (findings, bytes)."""
    image = client.images.get(ref)
    found: list[str] = []
    history = json.dumps(image.history()).encode()
    config = json.dumps(image.attrs.get("Config") or {}).encode()
    for name, value in needles.items():
        if value in history:
            found.append(f"{ref}: {name} in the image history")
        if value in config:
            found.append(f"{ref}: {name} in the image config (Env/Cmd/Labels)")
    keep = max(len(v) for v in needles.values()) - 1
    tail, total = b"", 0
    for chunk in image.save(named=False):
        total += len(chunk)
        window = tail + chunk
        for name, value in needles.items():
            if value in window and f"{ref}: {name} in a layer" not in found:
                found.append(f"{ref}: {name} in a layer")
        tail = window[-keep:]
    return found, total
