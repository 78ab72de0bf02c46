"""Compose service → native process: which binary stands in for the image, and nothing else.

Everything a component is told (arguments, environment, config files, data dirs) comes from
compose.yaml through compose_model + translate. What this module adds is only what an image
provides implicitly and a native process has to be told explicitly:

- the image's entrypoint binary → the natively obtained binary of the same version
  (scripts/native/obtain/), or the venv's Python for the services built from this repo;
- OpenSearch: the image's entrypoint script turns `dotted.env.vars` into `-E` settings and keeps
  its config in /usr/share/opensearch/config; natively we do the same conversion and give it a
  config dir in the run dir, and run it as a non-root user (it refuses root);
- Postgres: the image's initdb-from-POSTGRES_* env → scripts/native/postgres.py (the harness).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scripts.native import health
from scripts.native.compose_model import ComposeModel, Service
from scripts.native.translate import CONTRACT_PORTS, RenderedService, render_service

REPO_ROOT = Path(__file__).resolve().parents[2]

# Natively absent, said so in the printout: Grafana is AGPL ("not-to-use" here), so it is never built.
ABSENT: dict[str, str] = {
    "grafana": "Grafana is AGPL (not-to-use here: never built); use `docker compose up`",
    # Left out on purpose: the native stack is what the tests drive, and the fault tests and the
    # percentile harness count every request they send; background traffic would spoil the counts.
    "loadgen": "background traffic is off natively (the tests count their own requests); "
    "send some with `o11y load --backend native`",
}

# compose service -> the scripts.native.obtain component whose binary replaces the image's entrypoint
BINARY_COMPONENTS = {"otel-collector": "otelcol", "prometheus": "prometheus"}
# An image an override file puts in a service's place -> the obtain component that runs it natively.
# tests/compose/jaeger-for-tempo.yaml gives the `tempo` service the (local) Jaeger image: Jaeger is
# the e2e's stand-in for Tempo (stack/jaeger/config.yaml).
IMAGE_COMPONENTS = {"o11y-box-local/jaeger": "jaeger"}
# The compose override that puts Jaeger in Tempo's place; `run up` layers it by default.
JAEGER_FOR_TEMPO = REPO_ROOT / "tests" / "compose" / "jaeger-for-tempo.yaml"
# Services absent natively unless an override file replaces their image (see IMAGE_COMPONENTS).
ABSENT_UNLESS_REPLACED: dict[str, str] = {
    "tempo": "Tempo is AGPL (not-to-use here: never built or downloaded); run with "
    f"--compose-file {JAEGER_FOR_TEMPO.relative_to(REPO_ROOT)} (the default of `run up`) for the "
    "Jaeger stand-in"
}
OPENSEARCH_HOME_IN_IMAGE = "/usr/share/opensearch"
# The unprivileged account Postgres (scripts/native/postgres.py) and scripts.native.obtain use as well.
OPENSEARCH_USER = "o11y"

# Environment we never inherit from the caller's shell: the component must see compose's values only.
_SCRUB_PREFIXES = ("OTEL_", "O11Y_", "OPENSEARCH_", "JAVA_", "PG", "POSTGRES_", "PYTHONPATH")


class ComponentError(RuntimeError):
    pass


@dataclass
class NativeSpec:
    name: str
    kind: str  # daemon | oneshot | postgres | absent
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cwd: str = str(REPO_ROOT)
    run_as: str | None = None  # OS user (OpenSearch refuses root)
    check: health.Check | None = None
    rendered: RenderedService | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    start_timeout_s: float = 120.0


# ------------------------------------------------------------------------------------------------
def base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB_PREFIXES)}


def native_binary(component: str) -> Path:
    """Path of an obtained binary (OpenSearch: its home): $O11Y_<NAME>_BIN, else the obtain cache."""
    override = os.environ.get(f"O11Y_{component.upper().replace('-', '_')}_BIN")
    if override:
        return Path(override)
    from scripts.native import obtain

    try:
        path = Path(obtain.cached_path(component))
    except obtain.NotObtained as exc:
        raise ComponentError(f"{exc} (or `make native-deps` for everything)") from exc
    if not path.exists():
        raise ComponentError(f"{component}: the cache names {path}, which is gone; run `make native-deps`")
    return path


def dockerfile_command(model: ComposeModel, svc: Service) -> list[str]:
    """ENTRYPOINT + CMD (exec form) of the Dockerfile a `build:` service uses, when compose sets none."""
    build = (model.raw.get("services", {}).get(svc.name) or {}).get("build")
    if not build:
        raise ComponentError(f"{svc.name}: no command in compose.yaml and no build to read a Dockerfile from")
    if isinstance(build, str):
        build = {"context": build}
    ctx = (model.project_dir / build.get("context", ".")).resolve()
    dockerfile = ctx / build.get("dockerfile", "Dockerfile")
    entry: list[str] = []
    cmd: list[str] = []
    for line in _dockerfile_instructions(dockerfile):
        m = re.match(r"(?i)^(ENTRYPOINT|CMD)\s+(.*)$", line)
        if not m:
            continue
        value = m.group(2).strip()
        args = json.loads(value) if value.startswith("[") else ["/bin/sh", "-c", value]
        if m.group(1).upper() == "ENTRYPOINT":
            entry, cmd = args, []
        else:
            cmd = args
    if not entry and not cmd:
        raise ComponentError(f"{dockerfile} has no ENTRYPOINT/CMD")
    return [*entry, *(svc.command if svc.command is not None else cmd)]


def _dockerfile_instructions(path: Path) -> list[str]:
    if not path.is_file():
        raise ComponentError(f"{path} does not exist")
    out: list[str] = []
    cur = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            cur += line[:-1] + " "
            continue
        out.append(cur + line)
        cur = ""
    return out


def _strip_entrypoint(svc: Service) -> list[str]:
    """Arguments for a binary-image service: the image entrypoint becomes the native binary.

    compose `entrypoint:` (if any) names the image's binary first; its further words are arguments.
    """
    args: list[str] = []
    if svc.entrypoint:
        args.extend(svc.entrypoint[1:])
    args.extend(svc.command or [])
    return args


# ------------------------------------------------------------------------------------------------
def build_specs(model: ComposeModel, run_root: Path, only: list[str] | None = None) -> dict[str, NativeSpec]:
    """A NativeSpec per compose service (``only``: those and what they depend on), in start order."""
    specs: dict[str, NativeSpec] = {}
    oneshots = {
        d
        for s in model.services.values()
        for d, c in s.depends_on.items()
        if c == "service_completed_successfully"
    }
    for name in model.start_order(only):
        svc = model.services[name]
        if name in ABSENT:
            specs[name] = NativeSpec(name, "absent", note=ABSENT[name])
            continue
        stand_in = image_component(svc)
        if stand_in is None and name in ABSENT_UNLESS_REPLACED:
            specs[name] = NativeSpec(name, "absent", note=ABSENT_UNLESS_REPLACED[name])
            continue
        rendered = render_service(svc, run_root)
        tr = rendered.translator
        env = {**base_env(), **tr.env(svc.environment)}
        check = health.checks().get(name)
        component = stand_in or BINARY_COMPONENTS.get(name)
        if component is not None:
            # The image's entrypoint -> the natively obtained binary; compose's (or, for a stand-in,
            # the override's) command as is.
            specs[name] = NativeSpec(
                name,
                "daemon",
                [str(native_binary(component)), *tr.args(_strip_entrypoint(svc))],
                env,
                cwd=str(run_root),
                check=health.stand_in_check(name, stand_in) if stand_in else check,
                rendered=rendered,
                note=f"{stand_in} stands in for {name} ({svc.image})" if stand_in else "",
                extra={"component": stand_in} if stand_in else {},
            )
        elif name == "postgres":
            specs[name] = _postgres_spec(svc, rendered, run_root, check)
        elif name == "opensearch":
            specs[name] = _opensearch_spec(svc, rendered, run_root, check)
        elif _is_repo_image(model, svc):
            # The image is this repo + its Python deps; natively the same words run with the venv's
            # bin dir first on PATH, so `python`, `uvicorn`, `sh -c "python …"` stay byte-identical.
            argv = svc.command if (svc.command and not svc.entrypoint) else dockerfile_command(model, svc)
            kind = "oneshot" if (name in oneshots or check is None) else "daemon"
            env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', os.defpath)}"
            specs[name] = NativeSpec(
                name,
                kind,
                tr.args(list(argv)),
                env,
                check=check,
                rendered=rendered,
                start_timeout_s=900.0 if kind == "oneshot" else 60.0,
            )
        else:
            raise ComponentError(
                f"compose service {name!r} (image {svc.image}) has no native counterpart; "
                "teach scripts/native/components.py about it"
            )
        if specs[name].kind == "daemon" and name not in CONTRACT_PORTS:
            raise ComponentError(f"{name} is a long-running service missing from the network contract")
    return specs


def image_component(svc: Service) -> str | None:
    """The scripts.native.obtain component for a service whose image an override replaced (else None)."""
    repo = (svc.image or "").rsplit(":", 1)[0] if ":" in (svc.image or "").rsplit("/", 1)[-1] else svc.image
    return IMAGE_COMPONENTS.get(repo or "")


def absent_services(model: ComposeModel) -> dict[str, str]:
    """Services that do not run natively under this model, with why."""
    out = {n: why for n, why in ABSENT.items() if n in model.services}
    for name, why in ABSENT_UNLESS_REPLACED.items():
        if name in model.services and image_component(model.services[name]) is None:
            out[name] = why
    return out


def _is_repo_image(model: ComposeModel, svc: Service) -> bool:
    """Built from this repo's sample_service/Dockerfile (the service, partner API and one-shots)."""
    build = (model.raw.get("services", {}).get(svc.name) or {}).get("build")
    if isinstance(build, str):
        build = {"context": build}
    if not isinstance(build, dict):
        return False
    ctx = (model.project_dir / build.get("context", ".")).resolve()
    return ctx == model.project_dir.resolve() and "sample_service" in str(build.get("dockerfile", ""))


def _postgres_spec(
    svc: Service, rendered: RenderedService, run_root: Path, check: health.Check | None
) -> NativeSpec:
    data_target = next((m for m in svc.mounts if m.type == "volume"), None)
    if data_target is None:
        raise ComponentError("postgres has no named volume in compose.yaml")
    data_dir = Path(rendered.path_map[data_target.target]) / "pgdata"
    env = svc.environment
    command = svc.command or ["postgres"]
    if Path(command[0]).name != "postgres":
        raise ComponentError(f"postgres command must start with `postgres`, got {command[0]!r}")
    return NativeSpec(
        "postgres",
        "postgres",
        env={},
        check=check,
        rendered=rendered,
        extra={
            # compose's `postgres -c k=v …` options, passed through the harness unchanged
            "options": rendered.translator.args(command[1:]),
            "data_dir": str(data_dir),
            "port": 5432,
            "role": env.get("POSTGRES_USER", "postgres"),
            "password": env.get("POSTGRES_PASSWORD", ""),
            "db": env.get("POSTGRES_DB", env.get("POSTGRES_USER", "postgres")),
        },
    )


# The image's entrypoint script (opensearch-docker-entrypoint.sh) passes env vars that look like
# settings (`discovery.type`, `bootstrap.memory_lock`, …) as `-E key=value`.
_SETTING_ENV = re.compile(r"^[a-z0-9_]+\.[a-z0-9_.]+$")
# Image-entrypoint switches for the security plugin / demo config / perf analyzer: the Maven
# integ-test distribution ships none of those plugins, so natively they have nothing to switch.
OPENSEARCH_IMAGE_ONLY_ENV = (
    "DISABLE_SECURITY_PLUGIN",
    "DISABLE_INSTALL_DEMO_CONFIG",
    "DISABLE_PERFORMANCE_ANALYZER_AGENT_CLI",
    "OPENSEARCH_INITIAL_ADMIN_PASSWORD",
)


def opensearch_home() -> Path:
    return native_binary("opensearch")


def _opensearch_spec(
    svc: Service, rendered: RenderedService, run_root: Path, check: health.Check | None
) -> NativeSpec:
    home = _readable_home(opensearch_home(), run_root)
    # The image keeps its config in $OPENSEARCH_HOME/config with compose's files mounted over it:
    # natively, the distribution's config dir copied into the run dir with the rendered files over it.
    conf = run_root / "opensearch" / "config"
    if conf.exists():
        shutil.rmtree(conf)
    shutil.copytree(home / "config", conf)
    conf_in_image = f"{OPENSEARCH_HOME_IN_IMAGE}/config"
    data_dir: str | None = None
    for m in svc.mounts:
        host = rendered.path_map[m.target]
        if m.target == conf_in_image or m.target.startswith(conf_in_image + "/"):
            rel = m.target[len(conf_in_image) :].lstrip("/")
            dest = conf / rel if rel else conf
            if Path(host).is_dir():
                shutil.copytree(host, dest, dirs_exist_ok=True)
            else:
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(host, dest)
        elif m.target == f"{OPENSEARCH_HOME_IN_IMAGE}/data":
            data_dir = host
        else:
            raise ComponentError(f"opensearch mount {m.target} has no native equivalent yet")
    if data_dir is None:
        raise ComponentError("opensearch has no data volume at /usr/share/opensearch/data in compose.yaml")
    command = svc.command or ["opensearch"]
    if Path(command[0]).name != "opensearch":
        raise ComponentError(f"opensearch command must start with `opensearch`, got {command[0]!r}")
    settings: list[str] = []
    env = {**base_env()}
    for k, v in rendered.translator.env(svc.environment).items():
        if _SETTING_ENV.match(k):  # what the image's entrypoint script does with such variables
            settings.append(f"-E{k}={v}")
        elif k in OPENSEARCH_IMAGE_ONLY_ENV:
            continue
        else:
            env[k] = v
    # Heap: compose's value unless the caller asks for another (the tests use a smaller one).
    if os.environ.get("O11Y_OPENSEARCH_JAVA_OPTS"):
        env["OPENSEARCH_JAVA_OPTS"] = os.environ["O11Y_OPENSEARCH_JAVA_OPTS"]
    logs = run_root / "logs" / "opensearch"
    env["OPENSEARCH_PATH_CONF"] = str(conf)
    java_home = _opensearch_java_home()
    if java_home:
        env["OPENSEARCH_JAVA_HOME"] = java_home
    # path.logs: the image writes to $OPENSEARCH_HOME/logs; natively the home is a shared read-only
    # install, so logs go to the run dir.
    argv = [
        str(home / "bin" / "opensearch"),
        *rendered.translator.args(command[1:]),
        *settings,
        f"-Epath.logs={logs}",
    ]
    # bin/opensearch cds to $OPENSEARCH_HOME, and jvm.options writes logs/gc.log (and hs_err files)
    # relative to it: that one dir of the home copy must be writable by the service user.
    return NativeSpec(
        "opensearch",
        "daemon",
        argv,
        env,
        cwd=str(home),
        run_as=OPENSEARCH_USER,
        check=check,
        rendered=rendered,
        extra={
            "home": str(home),
            "conf": str(conf),
            "data": data_dir,
            "logs": str(logs),
            "home_logs": str(home / "logs"),
        },
        start_timeout_s=180.0,
    )


def _readable_home(home: Path, run_root: Path) -> Path:
    """OpenSearch runs as a non-root user, who cannot read a cache under /root (mode 700): obtain's
    readable_copy gives a hard-linked copy in the run dir then (no space, about a second)."""
    from scripts.native import obtain

    if not (home / "bin" / "opensearch").is_file():
        raise ComponentError(f"{home} is not an OpenSearch home (no bin/opensearch)")
    return Path(obtain.readable_copy(home, run_root / "opensearch" / "home", OPENSEARCH_USER))


def _opensearch_java_home() -> str | None:
    """The Java the obtain package found for OpenSearch (2.x runs on 17), else JAVA_HOME, else `java`."""
    with contextlib.suppress(Exception):
        from scripts.native import obtain

        found = obtain.cached("opensearch").extra.get("java_home")
        if found:
            return str(found)
    return os.environ.get("JAVA_HOME") or _java_home()


def _java_home() -> str | None:
    java = shutil.which("java")
    if not java:
        return None
    return str(Path(os.path.realpath(java)).parent.parent)
