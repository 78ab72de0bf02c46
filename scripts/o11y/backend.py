"""What every stack backend (compose via the Docker SDK, native via scripts/native/run.py) offers the CLI.

The commands in scripts/o11y/main.py only talk to a `Backend`, so `--backend native|compose` changes
where a command acts, never what it does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Protocol

BACKENDS = ("native", "compose")


class BackendError(RuntimeError):
    """A backend cannot do what was asked (unknown component, stack not running, engine gone)."""


@dataclass(frozen=True)
class ComponentStatus:
    name: str  # compose service name: otel-collector, prometheus, tempo, sample-service, partner-api, ...
    state: str  # "running" | "paused" | "exited" | "absent"
    healthy: bool | None  # None when the component has no health check
    uptime_s: float | None
    memory_bytes: int | None
    url: str | None  # what a person opens (Grafana, Prometheus UI, trace UI, service docs), None if none


class Backend(Protocol):
    name: str  # "native" | "compose"

    def status(self) -> list[ComponentStatus]: ...

    def urls(self) -> dict[str, str]: ...  # keys: service, grafana, prometheus, traces, opensearch

    def stop(self, component: str) -> None: ...

    def start(self, component: str) -> None: ...  # after stop/kill; waits until healthy (bounded)

    def kill(self, component: str) -> None: ...  # SIGKILL

    def pause(self, component: str) -> None: ...  # freeze (SIGSTOP / docker pause)

    def resume(self, component: str) -> None: ...

    def admin(self, method: str, path: str, body: dict | None = None) -> tuple[int, Any]: ...


def _compose_has_containers() -> bool:
    """True when a Docker engine answers and the compose project has containers.

    Any failure (no SDK, no socket, engine down) means "no": the native backend is the fallback.
    """
    try:
        from scripts.o11y import docker_backend

        return bool(docker_backend.compose_project_running())
    except Exception:
        return False


def get_backend(name: str | None) -> Backend:
    """The backend called `name`, else $O11Y_BACKEND, else compose when its containers exist, else native."""
    chosen = name or os.environ.get("O11Y_BACKEND") or ("compose" if _compose_has_containers() else "native")
    if chosen == "native":
        from scripts.o11y.native_backend import NativeBackend

        return NativeBackend()
    if chosen == "compose":
        from scripts.o11y.docker_backend import DockerBackend

        return DockerBackend()
    raise BackendError(f"unknown backend {chosen!r}: choose one of {', '.join(BACKENDS)}")
