"""The mechanical differences between a compose container and the same component run natively.

Exactly three kinds of token are rewritten, in command lines, environment values and *copies* of the
config files compose bind-mounts (rendered into the run dir; the repo's files are never touched):

1. ``<compose service>:<port>`` → ``127.0.0.1:<port>`` for the service names of the network contract
   in DEVELOPERS.md. Every port there is unique across services, so one loopback address can host
   the whole stack. A ``service:port`` pair whose port is not in the contract is an error: natively it
   would silently reach a different component.
2. Container paths → host paths, from the service's own mounts (bind mounts → the rendered copy of the
   repo file/dir, named volumes → ``<run root>/volumes/<name>``), longest prefix first.
3. Bind address ``0.0.0.0`` → ``127.0.0.1``: containers must listen on all of their interfaces to be
   reachable through the compose network; natively nothing may listen beyond loopback.

Everything else is byte-identical (tests/unit/test_native_translate.py proves it for every rendered
file). docs/native.md lists the same three rules under "Differences from compose".
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from scripts.native.compose_model import ComposeModel, Service

LOOPBACK = "127.0.0.1"
ANY_ADDRESS = "0.0.0.0"

# DEVELOPERS.md "Network contract": compose service name -> its ports. A unit test parses the table
# in DEVELOPERS.md and compares, so the two cannot drift.
CONTRACT_PORTS: dict[str, tuple[int, ...]] = {
    "postgres": (5432,),
    "sample-service": (8000,),
    "partner-api": (8001,),
    "otel-collector": (4317, 4318, 13133, 8888, 8889),
    "prometheus": (9090,),
    # + the e2e's Jaeger stand-in for Tempo (stack/jaeger/config.yaml): 13200 health, 14269 own metrics
    "tempo": (3200, 9095, 4319, 13200, 14269),
    "opensearch": (9200, 9300),
    "grafana": (3000,),
}


def _host_patterns(names: tuple[str, ...]) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """(userinfo@host:port, host:port) for the service names of a contract.

    `name:port` where name is a whole host token (not part of `my-tempo:3200`, `x.tempo:3200`, or a
    path segment like `/var/tempo:3200`; `//tempo:3200` in a URL is a host), port a whole number;
    and userinfo@host:port inside URLs such as postgresql://user:pw@postgres:5432/db.
    """
    alt = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    return (
        re.compile(r"(?<=@)(?P<host>" + alt + r"):(?P<port>\d+)(?!\d)"),
        re.compile(r"(?<![\w.\-@])(?<![^/]/)(?P<host>" + alt + r"):(?P<port>\d+)(?!\d)"),
    )


_ANY = re.compile(r"(?<![\d.])0\.0\.0\.0(?![\d.]*\d)")


class TranslateError(ValueError):
    pass


@dataclass(frozen=True)
class Rewrite:
    kind: str  # host | path | bind
    old: str
    new: str


@dataclass
class Translator:
    """Rewrites for one service: its container-path map plus the global host and bind rules."""

    path_map: dict[str, str] = field(default_factory=dict)  # container prefix -> host path
    where: str = ""  # for error messages
    # compose service -> its ports; an overlay with services of its own passes CONTRACT_PORTS + its own
    contract: Mapping[str, tuple[int, ...]] = field(default_factory=lambda: CONTRACT_PORTS)

    def __post_init__(self) -> None:
        self._after_at, self._hostport = _host_patterns(tuple(self.contract))
        prefixes = sorted(self.path_map, key=len, reverse=True)
        self._path_re = (
            re.compile(
                r"(?<![\w.\-/:@])(?P<p>"
                + "|".join(re.escape(p.rstrip("/")) for p in prefixes)
                + r")(?=/|$|[^\w.\-])"
            )
            if prefixes
            else None
        )

    def text(self, s: str) -> tuple[str, list[Rewrite]]:
        done: list[Rewrite] = []

        def host(m: re.Match[str]) -> str:
            name, port = m.group("host"), int(m.group("port"))
            if port not in self.contract[name]:
                raise TranslateError(
                    f"{self.where}: `{m.group(0)}` names port {port} of compose service {name}, which the "
                    f"network contract (DEVELOPERS.md) does not give it (its ports: {self.contract[name]})"
                )
            new = f"{LOOPBACK}:{port}"
            done.append(Rewrite("host", m.group(0), new))
            return new

        s = self._after_at.sub(host, s)
        s = self._hostport.sub(host, s)

        def any_addr(m: re.Match[str]) -> str:
            done.append(Rewrite("bind", m.group(0), LOOPBACK))
            return LOOPBACK

        s = _ANY.sub(any_addr, s)
        if self._path_re is not None:

            def path(m: re.Match[str]) -> str:
                old = m.group("p")
                new = self.path_map.get(old) or self.path_map[old + "/"]
                done.append(Rewrite("path", old, new))
                return new

            s = self._path_re.sub(path, s)
        return s, done

    def args(self, argv: list[str]) -> list[str]:
        return [self.text(a)[0] for a in argv]

    def env(self, env: dict[str, str]) -> dict[str, str]:
        return {k: self.text(v)[0] for k, v in env.items()}


# ------------------------------------------------------------------------------------------------
# Rendering one service's mounts into the run dir
# ------------------------------------------------------------------------------------------------
TEXT_SUFFIXES = {
    ".yaml",
    ".yml",
    ".json",
    ".conf",
    ".properties",
    ".options",
    ".txt",
    ".ini",
    ".toml",
    ".env",
    ".sh",
    ".py",
    ".rules",
    ".tmpl",
    "",
}


@dataclass
class RenderedService:
    service: str
    path_map: dict[str, str]  # container path -> host path (rendered copy or volume dir)
    files: list[tuple[Path, Path]]  # (original, rendered) for every text file copied
    rewrites: list[Rewrite]
    translator: Translator

    def host_path(self, container_path: str) -> str:
        return self.translator.text(container_path)[0]


def volume_dir(run_root: Path, volume: str) -> Path:
    return run_root / "volumes" / volume


def rendered_root(run_root: Path, service: str) -> Path:
    return run_root / "rendered" / service


def _is_text(path: Path) -> bool:
    if path.suffix.lower() not in TEXT_SUFFIXES:
        return False
    try:
        path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def path_map_for(service: Service, run_root: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    root = rendered_root(run_root, service.name)
    for m in service.mounts:
        if m.type == "bind":
            out[m.target] = str(root / m.target.lstrip("/"))
        elif m.type == "volume" and m.source:
            out[m.target] = str(volume_dir(run_root, m.source))
        else:  # anonymous volume / tmpfs: private to this run
            out[m.target] = str(run_root / "tmp" / service.name / m.target.lstrip("/"))
    return out


def render_service(
    service: Service, run_root: Path, contract: Mapping[str, tuple[int, ...]] = CONTRACT_PORTS
) -> RenderedService:
    """Copy every bind-mounted file/dir into the run dir, translating text files; create volume dirs."""
    path_map = path_map_for(service, run_root)
    tr = Translator(path_map, where=service.name, contract=contract)
    files: list[tuple[Path, Path]] = []
    rewrites: list[Rewrite] = []
    for m in service.mounts:
        dest = Path(path_map[m.target])
        if m.type != "bind":
            dest.mkdir(parents=True, exist_ok=True)
            continue
        src = Path(m.source or "")
        if not src.exists():
            raise TranslateError(f"{service.name}: bind mount source {src} does not exist")
        sources = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())
        for f in sources:
            out = dest if src.is_file() else dest / f.relative_to(src)
            out.parent.mkdir(parents=True, exist_ok=True)
            if _is_text(f):
                tr.where = f"{service.name}: {f}"
                text, done = tr.text(f.read_text())
                out.write_text(text)
                shutil.copymode(f, out)
                files.append((f, out))
                rewrites.extend(done)
            else:
                shutil.copy2(f, out)
    tr.where = service.name
    return RenderedService(service.name, path_map, files, rewrites, tr)


def render_all(
    model: ComposeModel, run_root: Path, services: list[str] | None = None
) -> dict[str, RenderedService]:
    return {n: render_service(model.services[n], run_root) for n in (services or list(model.services))}
