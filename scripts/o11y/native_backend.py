"""The native stack (scripts/native/run.py) as a `Backend`: it acts on a *detached* stack through
the state file `python -m scripts.native.run up --detach` writes in the run dir ($O11Y_RUN_DIR).

Each component runs in its own process group (the runner starts it in a new session), so stop,
kill, pause and resume signal the group; `start` rebuilds the component's spec from the compose
model and records the new process in the state file (run.start_from_state).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx

from scripts.native import health, postgres, processes, run
from scripts.native.components import ComponentError
from scripts.native.compose_model import ComposeError
from scripts.o11y.backend import BackendError, ComponentStatus

HOST = health.HOST
# What a person opens, per urls() key. Natively Jaeger's UI stands in for Grafana's trace view, and
# there is no Grafana (AGPL: never built here).
URLS = {
    "service": f"http://{HOST}:8000/docs",
    "prometheus": f"http://{HOST}:9090",
    "traces": f"http://{HOST}:3200",
    "opensearch": f"http://{HOST}:9200",
}
COMPONENT_URLS = {"sample-service": "service", "prometheus": "prometheus", "tempo": "traces",
                  "opensearch": "opensearch"}
ADMIN_BASE = f"http://{HOST}:8000"
ADMIN_TIMEOUT_S = 30.0
STOP_GRACE_S = 30.0


def _clock_ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


def _boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise BackendError("no btime in /proc/stat")


def uptime_s(start_ticks: int | None) -> float | None:
    if start_ticks is None:
        return None
    return max(0.0, time.time() - (_boot_time() + start_ticks / _clock_ticks()))


def proc_state(pid: int) -> str | None:
    """The kernel's one-letter state (R, S, T = stopped, Z, …), None when there is no such process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


class NativeBackend:
    name = "native"

    def __init__(self, run_dir: Path | None = None) -> None:
        self.run_dir = (run_dir or run.default_run_dir()).absolute()

    # --- the state file ------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        path = self.run_dir / run.STATE_FILE
        try:
            return dict(json.loads(path.read_text()))
        except FileNotFoundError:
            raise BackendError(
                f"no detached native stack in {self.run_dir} (no {run.STATE_FILE}): start one with "
                "`python -m scripts.native.run up --detach`, or point $O11Y_RUN_DIR at its run dir"
            ) from None

    def _pid(self, component: str, *, running: bool = True) -> int:
        """The component's process (group leader) pid; postgres: its postmaster."""
        state = self._state()
        if component == "postgres" and state.get("postgres"):
            pid = _postmaster_pid(Path(state["postgres"]["data_dir"]))
            if pid is None and running:
                raise BackendError("postgres is not running")
            return pid or 0
        info = state.get("components", {}).get(component)
        if info is None:
            known = sorted([*state.get("components", {}), *(["postgres"] if state.get("postgres") else [])])
            absent = state.get("absent", {})
            if component in absent:
                raise BackendError(f"{component} is absent natively: {absent[component]}")
            raise BackendError(f"unknown component {component!r}: the native stack runs {', '.join(known)}")
        pid = int(info["pid"])
        if running and not processes.pid_runs(pid, info.get("start_ticks")):
            raise BackendError(f"{component} is not running (pid {pid} gone): `o11y chaos start {component}`")
        return pid

    def _signal(self, component: str, sig: int) -> int:
        pid = self._pid(component)
        if component == "postgres":
            # pg_ctl daemonises the postmaster: its backends are its children, not a group of its own
            for p in processes.process_tree(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, sig)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, sig)
        return pid

    # --- Backend -------------------------------------------------------------------------------
    def status(self) -> list[ComponentStatus]:
        state = self._state()
        checks = health.checks()
        out: list[ComponentStatus] = []
        comps: dict[str, Any] = state.get("components", {})
        names = list(dict.fromkeys([*state.get("order", []), *comps]))
        if state.get("postgres") and "postgres" not in names:
            names.insert(0, "postgres")
        for name in names:
            if name == "postgres" and state.get("postgres"):
                out.append(self._postgres_status(Path(state["postgres"]["data_dir"]), checks["postgres"]))
                continue
            info = comps.get(name)
            if info is None:  # a one-shot (migrate, opensearch-setup): it ran and exited
                out.append(ComponentStatus(name, "exited", None, None, None, None))
                continue
            pid = int(info["pid"])
            alive = processes.pid_runs(pid, info.get("start_ticks"))
            check = checks.get(name)
            if info.get("probe_url") and (check is None or check.probe_url != info["probe_url"]):
                check = health.http_check(name, info["probe_url"])  # a stand-in (Jaeger as tempo)
            url = URLS.get(COMPONENT_URLS.get(name, ""))
            if not alive:
                out.append(ComponentStatus(name, "exited", False if check else None, None, None, url))
                continue
            paused = proc_state(pid) == "T"
            out.append(ComponentStatus(
                name, "paused" if paused else "running",
                None if check is None else (False if paused else _probe(check)),
                uptime_s(info.get("start_ticks")), processes.rss_bytes(pid), url,
            ))
        for name in state.get("absent") or {}:
            out.append(ComponentStatus(name, "absent", None, None, None, None))
        return out

    def _postgres_status(self, data_dir: Path, check: health.Check) -> ComponentStatus:
        pid = _postmaster_pid(data_dir)
        if pid is None:
            return ComponentStatus("postgres", "exited", False, None, None, None)
        paused = proc_state(pid) == "T"
        return ComponentStatus("postgres", "paused" if paused else "running",
                               False if paused else _probe(check),
                               uptime_s(processes.proc_start_ticks(pid)), processes.rss_bytes(pid), None)

    def urls(self) -> dict[str, str]:
        self._state()  # the URLs only mean something while a stack runs
        return dict(URLS)

    def stop(self, component: str) -> None:
        pid = self._pid(component)
        self._resume_if_paused(component, pid)  # a stopped (SIGSTOP) process never handles SIGTERM
        if component == "postgres":
            self._signal(component, signal.SIGTERM)
            data_dir = self._pg_dir()
            health.poll_until(lambda: _postmaster_pid(data_dir) is None, "postgres to stop", STOP_GRACE_S)
        else:
            processes.kill_group(pid, grace_s=STOP_GRACE_S)

    def kill(self, component: str) -> None:
        pid = self._signal(component, signal.SIGKILL)
        health.poll_until(lambda: not processes.pid_alive(pid), f"{component} (pid {pid}) to die", 10)

    def pause(self, component: str) -> None:
        self._signal(component, signal.SIGSTOP)

    def resume(self, component: str) -> None:
        self._signal(component, signal.SIGCONT)

    def start(self, component: str) -> None:
        self._pid(component, running=False)  # unknown or absent natively: the same clear error
        out = io.StringIO()
        try:
            run.start_from_state(self.run_dir, component, out=out)
        except (run.StackError, ComponentError, ComposeError) as exc:
            raise BackendError(f"cannot start {component}: {exc}\n{out.getvalue()}") from None

    def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        """The service's /admin API answers loopback clients: natively this process is one."""
        self._state()
        try:
            r = httpx.request(method, f"{ADMIN_BASE}{path}", json=body, timeout=ADMIN_TIMEOUT_S)
        except httpx.HTTPError as exc:
            raise BackendError(f"the sample service does not answer at {ADMIN_BASE}: {exc}") from None
        try:
            return r.status_code, r.json()
        except ValueError:
            return r.status_code, r.text

    # --- helpers -------------------------------------------------------------------------------
    def _pg_dir(self) -> Path:
        return Path(self._state()["postgres"]["data_dir"])

    def _resume_if_paused(self, component: str, pid: int) -> None:
        if proc_state(pid) == "T":
            self.resume(component)


def _probe(check: health.Check) -> bool:
    try:
        check()
        return True
    except Exception:
        return False


def _postmaster_pid(data_dir: Path) -> int | None:
    """The running postmaster's pid (a stale postmaster.pid names a dead one: None)."""
    pid = postgres.postmaster_pid(data_dir)
    return pid if pid is not None and processes.pid_alive(pid) else None
