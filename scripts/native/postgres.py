"""A real, throw-away PostgreSQL server from Debian's binaries, for the tests and the native stack runner.

    with PostgresServer.temporary() as pg:          # initdb in a temp dir, free loopback port
        url = pg.ensure_database("o11y", "secret", "o11y")   # SQLAlchemy asyncpg URL

Postgres refuses to run as root, so when we are root every server command runs as an unprivileged
system user (created on demand) through ``runuser``. The server listens on 127.0.0.1 only and keeps
its unix socket inside the data dir, so nothing leaks onto the host's /var/run/postgresql.
Every wait is bounded; a failed start raises with the tail of the server log.

CLI (handy for ``make run``): ``python -m scripts.native.postgres --port 5432 --data-dir DIR``.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_OS_USER = "o11y"
SUPERUSER = "postgres"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20


class PostgresError(RuntimeError):
    pass


def find_bin_dir() -> Path:
    """Newest ``/usr/lib/postgresql/<major>/bin`` with a server (``scripts/system_deps.sh`` installs one)."""
    override = os.environ.get("O11Y_PG_BIN_DIR")
    if override:
        return Path(override)
    candidates = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/postgres")]
    if not candidates:
        raise PostgresError(
            "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin; run `make system-deps` "
            "(scripts/system_deps.sh) or set O11Y_PG_BIN_DIR"
        )
    return max(candidates, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else -1)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def ensure_os_user(name: str = DEFAULT_OS_USER) -> pwd.struct_passwd:
    """The unprivileged account the server runs as when we are root; created as a system user if missing."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        check=True, capture_output=True, timeout=30,
    )
    return pwd.getpwnam(name)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def postmaster_pid(data_dir: Path) -> int | None:
    """The pid line 1 of ``data_dir/postmaster.pid`` records (None: no file, or not a pid yet)."""
    try:
        return int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


@dataclass
class PostgresServer:
    """One server: ``init()`` once, ``start()``, ``stop()``; or use :meth:`temporary` as a context manager."""

    data_dir: Path
    port: int = 0
    host: str = "127.0.0.1"
    os_user: str = DEFAULT_OS_USER
    # Tests trade durability for speed; a stack someone keeps running should stay durable.
    durable: bool = True
    max_connections: int = 200
    bin_dir: Path = field(default_factory=find_bin_dir)
    superuser_password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    _started: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).absolute()
        if not self.port:
            self.port = free_port(self.host)
        self._as_root = os.geteuid() == 0

    # --- paths / commands ------------------------------------------------------------------
    @property
    def log_file(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.log"

    def _cmd(self, tool: str, *args: str) -> list[str]:
        exe = str(self.bin_dir / tool)
        if self._as_root:
            return ["runuser", "-u", self.os_user, "--", exe, *args]
        return [exe, *args]

    def _run(self, tool: str, *args: str, timeout: float = 60, check: bool = True,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            self._cmd(tool, *args), capture_output=True, text=True, timeout=timeout,
            env={**os.environ, "LC_ALL": "C", **(env or {})}, cwd="/",
        )
        if check and proc.returncode != 0:
            raise PostgresError(
                f"{tool} {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}\n"
                f"--- server log tail ---\n{_tail(self.log_file)}"
            )
        return proc

    # --- lifecycle ---------------------------------------------------------------------------
    @property
    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> None:
        """initdb unless the data dir already holds a cluster (so a kept data dir is reused)."""
        if self.initialised:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._as_root:
            user = ensure_os_user(self.os_user)
            os.chown(self.data_dir, user.pw_uid, user.pw_gid)
            # The log sits next to the data dir, so the server user must own it too.
            self.log_file.touch()
            os.chown(self.log_file, user.pw_uid, user.pw_gid)
            probe = subprocess.run(["runuser", "-u", self.os_user, "--", "test", "-w", str(self.data_dir)],
                                   capture_output=True, timeout=10)
            if probe.returncode != 0:
                raise PostgresError(
                    f"{self.data_dir} is not writable by OS user {self.os_user!r}: every parent directory "
                    "must be traversable by it (use a directory under /tmp, or chmod o+x the parents)"
                )
        os.chmod(self.data_dir, 0o700)
        pwfile = self.data_dir.parent / f".{self.data_dir.name}.pw"
        pwfile.write_text(self.superuser_password + "\n")
        try:
            if self._as_root:
                user = pwd.getpwnam(self.os_user)
                os.chown(pwfile, user.pw_uid, user.pw_gid)
            os.chmod(pwfile, 0o600)
            self._run(
                "initdb", "-D", str(self.data_dir), "-U", SUPERUSER, f"--pwfile={pwfile}",
                "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C",
                *(() if self.durable else ("--no-sync",)), timeout=120,
            )
        finally:
            pwfile.unlink(missing_ok=True)

    def _server_options(self) -> str:
        opts = [
            f"-c listen_addresses={self.host}",
            f"-c port={self.port}",
            f"-c unix_socket_directories={self.data_dir}",
            f"-c max_connections={self.max_connections}",
            "-c logging_collector=off",
        ]
        if not self.durable:
            opts += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        return " ".join(opts)

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        self.init()
        # Marked started before pg_ctl runs: an interrupt from here on (Ctrl-C while pg_ctl or the
        # readiness loop runs) still has stop() find and stop the postmaster, which outlives pg_ctl.
        self._started = True
        atexit.register(self.stop)
        # -W: we do our own bounded readiness loop so a dying server fails fast with its log.
        self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_file), "-o", self._server_options(),
                  "-W", "start", timeout=30)
        started = time.monotonic()
        deadline = started + timeout_s
        while time.monotonic() < deadline:
            # Ready means *our* postmaster says so in its pid file; pg_isready alone would also
            # answer for some other server already holding the port.
            if self._postmaster_status() == "ready" and self._postmaster_alive():
                ready = subprocess.run(
                    [str(self.bin_dir / "pg_isready"), "-h", self.host, "-p", str(self.port), "-t", "1"],
                    capture_output=True, timeout=10,
                )
                if ready.returncode == 0:
                    return
            elif time.monotonic() - started > 1.0 and not self._postmaster_alive():
                break  # it died (port taken, bad option, ...): no point waiting out the timeout
            time.sleep(0.1)
        self.stop()
        raise PostgresError(
            f"postgres on {self.host}:{self.port} not ready within {timeout_s}s\n"
            f"--- server log tail ---\n{_tail(self.log_file)}"
        )

    def _postmaster_pid(self) -> int | None:
        return postmaster_pid(self.data_dir)

    def _postmaster_status(self) -> str | None:
        """Line 8 of postmaster.pid: "starting", "ready" or "stopping"."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return None
        return lines[7].strip() if len(lines) > 7 else None

    def _postmaster_alive(self) -> bool:
        pid = self._postmaster_pid()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def stop(self, mode: str = "fast") -> None:
        """Fast shutdown (rolls back open transactions); SIGKILL as a last resort. Idempotent.

        ``start()`` again brings it back on the same data dir and port: a database restart, as clients
        see one. ``mode="smart"`` waits (up to STOP_TIMEOUT_S) for the open sessions to end, refusing
        new connections meanwhile ("the database system is shutting down").
        """
        if mode not in ("fast", "smart"):
            raise ValueError(f"unsupported shutdown mode {mode!r}")
        if not self._started:
            return
        self._started = False
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        try:
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "-t", str(STOP_TIMEOUT_S),
                      "stop", timeout=STOP_TIMEOUT_S + 10, check=False)
        except subprocess.TimeoutExpired:
            pass
        pid = self._postmaster_pid()
        if pid is not None and self._postmaster_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    # --- SQL helpers ---------------------------------------------------------------------------
    def psql(self, sql: str, db: str = "postgres") -> str:
        """Run SQL as the superuser over the unix socket (trust auth, no password on the command line)."""
        proc = self._run("psql", "-h", str(self.data_dir), "-p", str(self.port), "-U", SUPERUSER, "-d", db,
                         "-v", "ON_ERROR_STOP=1", "-X", "-q", "-t", "-A", "-c", sql, timeout=60)
        return proc.stdout.strip()

    def ensure_database(self, role: str, password: str, db: str, *, template: str | None = None) -> str:
        """Create ``role`` (login, password) and ``db`` owned by it if missing; return its asyncpg URL."""
        pw = password.replace("'", "''")
        exists = self.psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{role}'")
        verb = "ALTER" if exists == "1" else "CREATE"
        self.psql(f"{verb} ROLE \"{role}\" LOGIN PASSWORD '{pw}'")
        if self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{db}'") != "1":
            tmpl = f' TEMPLATE "{template}"' if template else ""
            self.psql(f'CREATE DATABASE "{db}" OWNER "{role}"{tmpl}')
        return self.url(role, password, db)

    def drop_database(self, db: str) -> None:
        self.psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')

    def url(self, role: str, password: str, db: str, driver: str = "postgresql+asyncpg") -> str:
        from urllib.parse import quote

        return f"{driver}://{quote(role, safe='')}:{quote(password, safe='')}@{self.host}:{self.port}/{db}"

    # --- convenience ---------------------------------------------------------------------------
    @classmethod
    @contextlib.contextmanager
    def temporary(cls, **kwargs: object) -> Iterator[PostgresServer]:
        """initdb in a fresh temp dir, start, yield, stop, delete — whatever happens in between."""
        base = Path(tempfile.mkdtemp(prefix="o11y-pg-"))
        try:
            if os.geteuid() == 0:
                user = ensure_os_user(str(kwargs.get("os_user", DEFAULT_OS_USER)))
                os.chown(base, user.pw_uid, user.pw_gid)
            server = cls(data_dir=base / "data", **kwargs)  # type: ignore[arg-type]
            try:
                server.start()  # inside: a start interrupted half-way is stopped too
                yield server
            finally:
                server.stop()
        finally:
            shutil.rmtree(base, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run a loopback-only PostgreSQL from Debian's binaries.")
    p.add_argument("--data-dir", type=Path, help="kept between runs; a temp dir (deleted on exit) if omitted")
    p.add_argument("--port", type=int, default=5432)
    p.add_argument("--role", default=os.environ.get("POSTGRES_USER", "o11y"))
    p.add_argument("--password", default=os.environ.get("POSTGRES_PASSWORD", "o11y"))
    p.add_argument("--db", default=os.environ.get("POSTGRES_DB", "o11y"))
    args = p.parse_args(argv)

    stop = {"now": False}

    def _on_signal(*_: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    def serve(server: PostgresServer) -> None:
        url = server.ensure_database(args.role, args.password, args.db)
        print(f"postgres ready: O11Y_DATABASE_URL={url}", flush=True)
        while not stop["now"]:
            time.sleep(0.5)

    if args.data_dir:
        server = PostgresServer(data_dir=args.data_dir, port=args.port)
        server.start()
        try:
            serve(server)
        finally:
            server.stop()
    else:
        with PostgresServer.temporary(port=args.port) as server:
            serve(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
