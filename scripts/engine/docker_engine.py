"""A Docker engine for the compose e2e: the user's own if one answers, else a private one we start.

Order of preference:
1. ``DOCKER_HOST`` if set, else the default socket ``/var/run/docker.sock``: used as is when it
   answers a ping, never stopped by us.
2. Otherwise, where the machine allows it (root, Debian, ``O11Y_PRIVATE_ENGINE`` not ``0``):
   install Debian's ``docker.io`` (+ iptables, mmdebstrap) if missing and start ``dockerd`` on a
   private socket. Its image store lives in the cache (``$O11Y_CACHE/docker-engine/data``), so
   images built once are reused by the next run, as a registry pull would be.

dockerd changes the host while it runs (ip_forward, the iptables FORWARD policy and DOCKER chains,
the docker0 and br-* links, /run/containerd). ``PrivateEngine.stop()`` stops the daemon and undoes
every one of them from a snapshot taken before it started; callers use ``engine()`` as a context
manager so that teardown always runs.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import docker

from scripts.native import obtain
from scripts.native.run import kill_group

DEFAULT_SOCKET = "/var/run/docker.sock"
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


class EngineUnavailable(RuntimeError):
    """No engine answers and this machine cannot start one (the only reason the e2e may skip)."""


class EngineError(RuntimeError):
    """An engine should be startable here but did not come up: a failure, never a skip."""


@dataclass
class Engine:
    """How to talk to an engine: the environment for the docker CLI / compose, and what it is."""

    env: dict[str, str]
    description: str
    owned: bool = False

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.env["DOCKER_HOST"], timeout=120)

    def run_env(self) -> dict[str, str]:
        """os.environ with this engine's variables on top (for subprocesses)."""
        return {**os.environ, **self.env}


def _pings(host: str) -> bool:
    try:
        client = docker.DockerClient(base_url=host, timeout=10)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def compose_config_dir(root: Path) -> Path:
    """A private DOCKER_CONFIG whose cli-plugins hold the natively obtained Compose v2 binary, so
    `docker compose` works without touching ~/.docker."""
    plugins = root / "cli-plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    link = plugins / "docker-compose"
    target = Path(obtain.cached_path("compose"))
    if link.is_symlink() or link.exists():
        if link.resolve() == target.resolve():
            return root
        link.unlink()
    link.symlink_to(target)
    return root


def existing_engine(config_dir: Path) -> Engine | None:
    host = os.environ.get("DOCKER_HOST") or f"unix://{DEFAULT_SOCKET}"
    if not _pings(host):
        return None
    env = {"DOCKER_HOST": host, "DOCKER_CONFIG": str(compose_config_dir(config_dir))}
    return Engine(env, f"existing engine at {host}", owned=False)


def why_no_private_engine() -> str | None:
    if os.environ.get("O11Y_PRIVATE_ENGINE") == "0":
        return "O11Y_PRIVATE_ENGINE=0"
    if os.geteuid() != 0:
        return "not root: a private dockerd needs root"
    if not Path("/etc/debian_version").exists():
        return "not Debian: no docker.io package to install"
    return None


SYSTEM_DEPS = Path(__file__).resolve().parents[2] / "scripts" / "system_deps.sh"


def ensure_packages(log: Path) -> None:
    """dockerd, iptables and mmdebstrap, from the one list of Debian packages the project needs
    (scripts/system_deps.sh, which `make test` runs anyway): here for a bare `pytest`."""
    if all(shutil.which(exe) for exe in ("dockerd", "iptables", "mmdebstrap")):
        return
    with open(log, "a") as out:
        proc = subprocess.run(["bash", str(SYSTEM_DEPS)], stdout=out, stderr=subprocess.STDOUT, timeout=900)
    if proc.returncode != 0:
        raise EngineError(f"{SYSTEM_DEPS.name} failed ({proc.returncode}); see {log}")


# ---------------------------------------------------------------------------------- host state
def _read(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    return proc.stdout if proc.returncode == 0 else ""


def _links() -> set[str]:
    names = set()
    for line in _read(["ip", "-o", "link", "show"]).splitlines():
        parts = line.split(":", 2)
        if len(parts) > 1:
            names.add(parts[1].strip().split("@", 1)[0])
    return names


@dataclass
class HostState:
    """What dockerd changes, captured before it starts, restored after it stops."""

    ip_forward: str
    iptables: str
    ip6tables: str
    links: set[str]
    run_paths: dict[str, bool] = field(default_factory=dict)

    @classmethod
    def capture(cls) -> HostState:
        return cls(
            ip_forward=Path("/proc/sys/net/ipv4/ip_forward").read_text().strip(),
            iptables=_read(["iptables-save"]),
            ip6tables=_read(["ip6tables-save"]),
            links=_links(),
            run_paths={p: Path(p).exists() for p in ("/run/containerd", "/run/docker")},
        )

    def restore(self) -> list[str]:
        """Undo dockerd's changes; returns what could not be undone (empty when all was)."""
        problems: list[str] = []
        for link in sorted(_links() - self.links):
            if link == "docker0" or link.startswith(("br-", "veth")):
                proc = subprocess.run(["ip", "link", "delete", link], capture_output=True, text=True)
                if proc.returncode != 0 and link in _links():
                    problems.append(f"ip link delete {link}: {proc.stderr.strip()}")
        for tool, saved in (("iptables", self.iptables), ("ip6tables", self.ip6tables)):
            if not shutil.which(f"{tool}-restore"):
                continue
            if saved:
                proc = subprocess.run([f"{tool}-restore"], input=saved, capture_output=True, text=True)
                if proc.returncode != 0:
                    problems.append(f"{tool}-restore: {proc.stderr.strip()}")
            # A table absent from the snapshot was not in use before: drop what dockerd put there.
            for table in ("filter", "nat"):
                if f"*{table}" not in saved:
                    for flag in ("-F", "-X"):
                        subprocess.run([tool, "-t", table, flag], capture_output=True)
                    if table == "filter":
                        for chain in ("INPUT", "FORWARD", "OUTPUT"):
                            subprocess.run([tool, "-P", chain, "ACCEPT"], capture_output=True)
        try:
            Path("/proc/sys/net/ipv4/ip_forward").write_text(self.ip_forward + "\n")
        except OSError as exc:
            problems.append(f"ip_forward: {exc}")
        for path, existed in self.run_paths.items():
            if not existed:
                shutil.rmtree(path, ignore_errors=True)
        return problems


# ---------------------------------------------------------------------------------- the daemon
@dataclass
class PrivateEngine:
    """dockerd on a private socket; stop() always undoes what it changed on the host."""

    root: Path  # cache dir: data-root (images), logs
    run_dir: Path  # short path for the socket, exec-root and pidfile
    host_state: HostState
    proc: subprocess.Popen[bytes] | None = None
    stopped: bool = False

    @property
    def socket(self) -> Path:
        return self.run_dir / "docker.sock"

    @property
    def log(self) -> Path:
        return self.root / "dockerd.log"

    def start(self) -> Engine:
        self.root.mkdir(parents=True, exist_ok=True)
        out = open(self.log, "ab")
        self.proc = subprocess.Popen(
            ["dockerd", "-H", f"unix://{self.socket}", "--data-root", str(self.root / "data"),
             "--exec-root", str(self.run_dir / "exec"), "--pidfile", str(self.run_dir / "docker.pid")],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
        out.close()
        host = f"unix://{self.socket}"
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EngineError(f"dockerd exited ({self.proc.returncode}): {self._tail()}")
            if self.socket.exists() and _pings(host):
                close_direct_routing()
                env = {"DOCKER_HOST": host,
                       "DOCKER_CONFIG": str(compose_config_dir(self.run_dir / "config"))}
                return Engine(env, f"private dockerd at {host} (images in {self.root / 'data'})",
                              owned=True)
            time.sleep(0.2)
        raise EngineError(f"dockerd did not answer within {READY_TIMEOUT_S:.0f}s: {self._tail()}")

    def _tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def stop(self) -> list[str]:
        """Stop dockerd (its containers die with it) and restore the host; returns leftovers.
        Idempotent: the context manager and the atexit hook may both call it."""
        if self.stopped:
            return []
        self.stopped = True
        if self.proc is not None and self.proc.poll() is None:
            kill_group(self.proc.pid, STOP_TIMEOUT_S)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        # containerd shims of our daemon outlive it; their command lines name our exec-root.
        for pid in pids_whose_cmdline_has(str(self.run_dir), ("containerd", "dockerd")):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        problems = self.host_state.restore()
        shutil.rmtree(self.run_dir, ignore_errors=True)
        return problems


# Debian's docker.io (20.10) predates Engine 28.0.0, which stopped hosts on the same link from
# reaching a container's published port directly at its bridge address (moby/moby#49325), around
# the 127.0.0.x binding (docs/security.md). While our daemon runs, DOCKER-USER (the chain dockerd
# leaves to its admin, evaluated first in FORWARD) lets only the bridges themselves and replies to
# containers' own connections (builds reach PyPI) be forwarded to them. HostState.restore() removes
# it with everything else dockerd added.
DIRECT_ROUTING_RULES = (
    ["-i", "docker0", "-j", "RETURN"],
    ["-i", "br-+", "-j", "RETURN"],
    ["-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "RETURN"],
    ["-j", "DROP"],
)


def close_direct_routing() -> None:
    subprocess.run(["iptables", "-N", "DOCKER-USER"], capture_output=True)  # exists when dockerd made it
    subprocess.run(["iptables", "-F", "DOCKER-USER"], capture_output=True, check=True)
    for rule in DIRECT_ROUTING_RULES:
        subprocess.run(["iptables", "-A", "DOCKER-USER", *rule], capture_output=True, check=True)


def pids_whose_cmdline_has(marker: str, programs: tuple[str, ...] = ("",)) -> list[int]:
    """Processes (not this one) whose command line names `marker` and one of `programs`."""
    pids = []
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit():
            continue
        try:
            cmdline = (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline and any(p in cmdline for p in programs) and proc_dir.name != str(os.getpid()):
            pids.append(int(proc_dir.name))
    return pids


def engine_root() -> Path:
    return obtain.cache_root() / "docker-engine"


@contextlib.contextmanager
def engine(log: Path | None = None) -> Iterator[Engine]:
    """The user's engine if one answers, else a private one (stopped and cleaned up on exit).

    Raises EngineUnavailable only where no engine answers and none can be started here."""
    root = engine_root()
    root.mkdir(parents=True, exist_ok=True)
    found = existing_engine(root / "config")
    if found is not None:
        yield found
        return
    reason = why_no_private_engine()
    if reason:
        raise EngineUnavailable(f"no engine answers at $DOCKER_HOST/{DEFAULT_SOCKET} and {reason}")
    ensure_packages(log or root / "apt.log")
    # The socket path must stay short (108 bytes): not under the cache dir.
    private = PrivateEngine(root, Path(tempfile.mkdtemp(prefix="o11y-dkr-")), HostState.capture())
    # Teardown must run however the caller ends: SIGTERM becomes KeyboardInterrupt (so `finally`
    # blocks unwind, compose projects included), and atexit covers an exit that skips them.
    atexit.register(private.stop)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield private.start()
    finally:
        leftovers = private.stop()
        atexit.unregister(private.stop)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if leftovers:
            print(f"private dockerd teardown left: {leftovers}", file=sys.stderr)


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}: stopping the private Docker engine")


def docker_cli(eng: Engine, *args: str, timeout: float = 600,
               extra_env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout,
                          env={**eng.run_env(), **(extra_env or {})})


def main(argv: list[str] | None = None) -> int:
    """`python -m scripts.engine.docker_engine [--hold]`: find or start an engine, print it, stop it.

    --hold keeps it up, with one bridge network (the host changes a stack makes), until SIGTERM or
    Ctrl-C: what tests/stack/test_docker_engine.py uses to prove the teardown restores the host."""
    parser = argparse.ArgumentParser(description="Find or start a Docker engine, print it, stop it.")
    parser.add_argument("--hold", action="store_true", help="keep it up until SIGTERM / Ctrl-C")
    hold = parser.parse_args(argv).hold
    try:
        with engine() as eng:
            print(eng.description, flush=True)
            print(docker_cli(eng, "version", "--format", "{{.Server.Version}}").stdout.strip(), flush=True)
            if hold:
                network = "o11y-engine-probe"
                docker_cli(eng, "network", "create", network)
                try:
                    print("ready", flush=True)
                    while True:
                        time.sleep(3600)
                finally:
                    docker_cli(eng, "network", "rm", network)
    except KeyboardInterrupt:
        print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
