"""compose.yaml as data: what each service runs, with which environment, mounts, ports and health check.

The native runner derives every component's command line from this model, so `docker compose up`
and `make stack-native` cannot drift apart silently. The model comes from the real Compose v2 binary
(`docker-compose config --format json`: compose's own interpolation, `.env` handling and
normalisation) whenever the binary is available; otherwise compose_spec.py reproduces the subset of
the compose spec this project uses, and a unit test checks the two agree when both exist.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scripts.native import compose_spec
from scripts.native.compose_spec import ComposeError, read_env_file

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = "compose.yaml"




@dataclass(frozen=True)
class Mount:
    type: str  # bind | volume | tmpfs
    source: str | None  # absolute host path (bind) or volume name (volume)
    target: str  # container path
    read_only: bool = False


@dataclass(frozen=True)
class Port:
    host_ip: str
    published: int
    target: int
    protocol: str = "tcp"


@dataclass(frozen=True)
class Healthcheck:
    test: tuple[str, ...]
    interval_s: float | None = None
    timeout_s: float | None = None
    retries: int | None = None
    start_period_s: float | None = None
    disabled: bool = False


@dataclass
class Service:
    name: str
    image: str | None
    command: list[str] | None
    entrypoint: list[str] | None
    environment: dict[str, str]
    mounts: list[Mount]
    ports: list[Port]
    healthcheck: Healthcheck | None
    depends_on: dict[str, str]  # peer -> condition
    mem_limit_bytes: int | None = None
    working_dir: str | None = None
    profiles: list[str] = field(default_factory=list)

    def published(self) -> list[int]:
        return [p.published for p in self.ports]


@dataclass
class ComposeModel:
    project_dir: Path
    services: dict[str, Service]
    volumes: dict[str, dict[str, Any]]
    source: str  # which loader produced it: "docker-compose config" | "pyyaml fallback"
    raw: dict[str, Any] = field(repr=False, default_factory=dict)
    files: list[str] = field(default_factory=lambda: [COMPOSE_FILE])  # compose.yaml + overrides, in order

    def start_order(self, names: list[str] | None = None) -> list[str]:
        """Topological order over depends_on; peers by name, so the real compose binary (whose
        output is sorted) and the PyYAML fallback (file order) give the same order."""
        wanted = set(names) if names else set(self.services)
        # pull in dependencies of the wanted services
        stack = list(wanted)
        while stack:
            for dep in self.services[stack.pop()].depends_on:
                if dep not in wanted:
                    wanted.add(dep)
                    stack.append(dep)
        order: list[str] = []
        state: dict[str, int] = {}

        def visit(n: str, path: tuple[str, ...]) -> None:
            if state.get(n) == 2:
                return
            if state.get(n) == 1:
                raise ComposeError(f"depends_on cycle: {' -> '.join((*path, n))}")
            state[n] = 1
            for dep in sorted(self.services[n].depends_on):
                if dep not in self.services:
                    raise ComposeError(f"{n} depends on unknown service {dep}")
                visit(dep, (*path, n))
            state[n] = 2
            order.append(n)

        for n in sorted(self.services):
            if n in wanted:
                visit(n, ())
        return order

    def total_mem_limit_bytes(self) -> int:
        return sum(s.mem_limit_bytes or 0 for s in self.services.values())


# ------------------------------------------------------------------------------------------------
# Loading
# ------------------------------------------------------------------------------------------------
def find_compose_binary() -> str | None:
    """The real Compose v2 binary: $O11Y_DOCKER_COMPOSE_BIN, the native-builds cache, or PATH."""
    explicit = os.environ.get("O11Y_DOCKER_COMPOSE_BIN")
    if explicit:
        return explicit
    try:  # the native-builds engineer's obtain module knows where it cached the binary
        from scripts.native import obtain

        return str(obtain.cached_path("docker-compose"))
    except Exception:
        return shutil.which("docker-compose")


def load(
    project_dir: Path | str = REPO_ROOT,
    *,
    compose_binary: str | None = None,
    prefer_binary: bool = True,
    env: Mapping[str, str] | None = None,
    compose_files: Sequence[Path | str] = (),
) -> ComposeModel:
    """Load compose.yaml from project_dir with the real compose binary, else the PyYAML fallback.

    ``compose_files``: override files layered over compose.yaml in order, later wins, as with
    ``docker compose -f compose.yaml -f a.yaml -f b.yaml`` (relative paths: from project_dir).
    """
    project_dir = Path(project_dir).resolve()
    if not (project_dir / COMPOSE_FILE).is_file():
        raise ComposeError(f"{project_dir / COMPOSE_FILE} does not exist")
    extra = [_resolve_file(project_dir, f) for f in compose_files]
    binary = compose_binary or (find_compose_binary() if prefer_binary else None)
    if binary:
        return load_with_binary(project_dir, binary, env=env, compose_files=extra)
    return load_with_pyyaml(project_dir, env=env, compose_files=extra)


def _resolve_file(project_dir: Path, f: Path | str) -> Path:
    path = Path(f)
    path = path if path.is_absolute() else project_dir / path
    if not path.is_file():
        raise ComposeError(f"compose file {path} does not exist")
    return path.resolve()


def _compose_env(env: Mapping[str, str] | None) -> dict[str, str]:
    base = dict(os.environ if env is None else env)
    # COMPOSE_* variables in the caller's shell would change what compose reads; this is about the
    # project's own compose.yaml + .env only.
    for k in ("COMPOSE_FILE", "COMPOSE_PROJECT_NAME", "COMPOSE_PROFILES", "COMPOSE_ENV_FILES"):
        base.pop(k, None)
    return base


def load_with_binary(
    project_dir: Path,
    binary: str,
    *,
    env: Mapping[str, str] | None = None,
    compose_files: Sequence[Path] = (),
) -> ComposeModel:
    cmd = [binary]
    for f in (project_dir / COMPOSE_FILE, *compose_files):
        cmd += ["-f", str(f)]
    cmd += [
        "--project-directory",
        str(project_dir),
        "config",
        "--format",
        "json",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_compose_env(env), timeout=60, check=False)
    if proc.returncode != 0:
        raise ComposeError(f"`{' '.join(cmd)}` failed ({proc.returncode}):\n{proc.stderr.strip()}")
    # `config` prints a re-loadable file, so a literal `$` comes out escaped as `$$` again; the
    # process sees a single `$`.
    data = _unescape_dollars(json.loads(proc.stdout))
    return _model_from_normalised(
        project_dir, data, source="docker-compose config", files=[COMPOSE_FILE, *map(str, compose_files)]
    )


def _unescape_dollars(node: Any) -> Any:
    if isinstance(node, str):
        return node.replace("$$", "$")
    if isinstance(node, list):
        return [_unescape_dollars(x) for x in node]
    if isinstance(node, dict):
        return {k: _unescape_dollars(v) for k, v in node.items()}
    return node


def load_with_pyyaml(
    project_dir: Path, *, env: Mapping[str, str] | None = None, compose_files: Sequence[Path] = ()
) -> ComposeModel:
    variables = read_env_file(project_dir / ".env")
    # compose semantics: the shell environment wins over .env
    variables.update(_compose_env(env))
    data = compose_spec.load_normalised(project_dir, [project_dir / COMPOSE_FILE, *compose_files], variables)
    return _model_from_normalised(
        project_dir, data, source="pyyaml fallback", files=[COMPOSE_FILE, *map(str, compose_files)]
    )


# ------------------------------------------------------------------------------------------------
# Normalised data -> model
# ------------------------------------------------------------------------------------------------
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float):  # compose JSON may print nanoseconds as an integer
        return float(value) / 1e9 if value > 10_000 else float(value)
    total, pos = 0.0, 0
    s = str(value).strip()
    for m in _DURATION.finditer(s):
        if m.start() != pos:
            raise ComposeError(f"bad duration {value!r}")
        total += float(m.group(1)) * _UNIT_S[m.group(2)]
        pos = m.end()
    if pos != len(s) or not s:
        raise ComposeError(f"bad duration {value!r}")
    return total


_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?$", re.I)


def parse_size(value: Any) -> int | None:
    if value in (None, "", 0, "0"):
        return None
    if isinstance(value, int):
        return value
    m = _SIZE.match(str(value).strip())
    if not m:
        raise ComposeError(f"bad size {value!r}")
    mult = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}[m.group(2).lower()]
    return int(float(m.group(1)) * mult)


def _healthcheck(h: dict[str, Any] | None) -> Healthcheck | None:
    if not h:
        return None
    test = h.get("test") or []
    if isinstance(test, str):
        test = ["CMD-SHELL", test]
    return Healthcheck(
        test=tuple(str(t) for t in test),
        interval_s=parse_duration(h.get("interval")),
        timeout_s=parse_duration(h.get("timeout")),
        retries=h.get("retries"),
        start_period_s=parse_duration(h.get("start_period")),
        disabled=bool(h.get("disable")) or test[:1] == ["NONE"],
    )


def _mem_limit(svc: dict[str, Any]) -> int | None:
    limit = svc.get("mem_limit")
    if limit is None:
        limit = (((svc.get("deploy") or {}).get("resources") or {}).get("limits") or {}).get("memory")
    return parse_size(limit)


def _model_from_normalised(
    project_dir: Path, data: dict[str, Any], *, source: str, files: list[str] | None = None
) -> ComposeModel:
    services: dict[str, Service] = {}
    for name, svc in (data.get("services") or {}).items():
        mounts = [
            Mount(
                type=v.get("type", "volume"),
                source=v.get("source"),
                target=v["target"],
                read_only=bool(v.get("read_only")),
            )
            for v in svc.get("volumes") or []
        ]
        ports = [
            Port(
                host_ip=str(p.get("host_ip") or ""),
                published=int(p.get("published") or p["target"]),
                target=int(p["target"]),
                protocol=str(p.get("protocol") or "tcp"),
            )
            for p in svc.get("ports") or []
        ]
        deps = {
            d: (c.get("condition", "service_started") if isinstance(c, dict) else "service_started")
            for d, c in (svc.get("depends_on") or {}).items()
        }
        env = {k: ("" if v is None else str(v)) for k, v in (svc.get("environment") or {}).items()}
        services[name] = Service(
            name=name,
            image=svc.get("image"),
            command=[str(c) for c in svc["command"]] if svc.get("command") is not None else None,
            entrypoint=[str(c) for c in svc["entrypoint"]] if svc.get("entrypoint") is not None else None,
            environment=env,
            mounts=mounts,
            ports=ports,
            healthcheck=_healthcheck(svc.get("healthcheck")),
            depends_on=deps,
            mem_limit_bytes=_mem_limit(svc),
            working_dir=svc.get("working_dir"),
            profiles=list(svc.get("profiles") or []),
        )
    return ComposeModel(
        project_dir=project_dir,
        services=services,
        volumes=dict(data.get("volumes") or {}),
        source=source,
        raw=data,
        files=files or [COMPOSE_FILE],
    )
