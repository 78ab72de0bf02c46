"""NativeStack: compose's services as native processes, started in depends_on order, health-checked,
stopped as process groups; the engine behind `python -m scripts.native.run` (scripts/native/run.py).

The run dir keeps per-component logs (logs/<component>.log), the rendered config copies
(rendered/<service>/…) and the named volumes (volumes/<name>/). `detach()` leaves the processes
running and records them in <run dir>/state.json, which scripts/native/detached.py reads.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scripts.native import compose_model, health
from scripts.native.components import (
    NativeSpec,
    build_specs,
)
from scripts.native.processes import (
    STOP_GRACE_S,
    kill_group,
    port_in_use,
    proc_start_ticks,
    rss_bytes,
)
from scripts.native.processes import group_alive as _group_alive
from scripts.native.translate import CONTRACT_PORTS, LOOPBACK

REPO_ROOT = Path(__file__).resolve().parents[2]
STATE_FILE = "state.json"


class StackError(RuntimeError):
    pass


def default_run_dir() -> Path:
    return Path(os.environ.get("O11Y_RUN_DIR") or REPO_ROOT / ".native-run").absolute()


def log_tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text[-lines:])


# ------------------------------------------------------------------------------------------------
@dataclass
class Row:
    name: str
    url: str
    health: str
    rss: int
    pid: int | None
    note: str = ""


class NativeStack:
    """Start/stop the native stack; used by the CLI and by tests/stack/conftest.py."""

    def __init__(
        self,
        run_dir: Path | None = None,
        *,
        model: compose_model.ComposeModel | None = None,
        out: Any = sys.stdout,
        compose_files: list[Path] | tuple[Path, ...] = (),
    ) -> None:
        self.run_dir = (run_dir or default_run_dir()).absolute()
        self.model = model
        # override files layered over compose.yaml (docker compose -f compose.yaml -f …)
        self.compose_files = [Path(f) for f in compose_files]
        self.out = out
        self.specs: dict[str, NativeSpec] = {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.postgres: Any = None
        self.started_order: list[str] = []
        self.timings: dict[str, float] = {}
        self.startup_s: float | None = None
        self._abort = threading.Event()

    # --- helpers -------------------------------------------------------------------------------
    def log_path(self, name: str) -> Path:
        return self.run_dir / "logs" / f"{name}.log"

    def say(self, msg: str) -> None:
        print(msg, file=self.out, flush=True)

    def prepare(self, only: list[str] | None = None) -> dict[str, NativeSpec]:
        (self.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        _ensure_traversable(self.run_dir)
        if self.model is None:
            self.model = compose_model.load(REPO_ROOT, compose_files=self.compose_files)
        self.specs = build_specs(self.model, self.run_dir, only)
        return self.specs

    # --- lifecycle -----------------------------------------------------------------------------
    def up(self, only: list[str] | None = None) -> None:
        t0 = time.monotonic()
        if not self.specs:
            self.prepare(only)
        assert self.model is not None
        order = self.model.start_order(only)
        busy = [
            f"{n}:{p}"
            for n in order
            if self.specs[n].kind != "absent"
            for p in CONTRACT_PORTS.get(n, ())
            if port_in_use(p)
        ]
        if busy:
            raise StackError(
                f"ports already in use on {LOOPBACK}: {', '.join(busy)} — another stack running? "
                "(`python -m scripts.native.run down`)"
            )
        atexit.register(self.down)
        self.say(
            f"o11y-box native stack: compose model from {self.model.source} "
            f"({' + '.join(self.model.files)}); run dir {self.run_dir}"
        )
        # Like compose: each component starts as soon as everything it depends on is healthy (or,
        # for one-shots, completed), so OpenSearch's JVM warms up while Postgres is migrated/seeded.
        self._abort.clear()
        done = {n: threading.Event() for n in order}
        errors: list[BaseException] = []

        def worker(name: str) -> None:
            for dep in self.model.services[name].depends_on:  # type: ignore[union-attr]
                while dep in done and not done[dep].wait(0.2):
                    if self._abort.is_set():
                        return
            if self._abort.is_set():
                return
            try:
                self.start(name)
            except BaseException as exc:
                errors.append(exc)
                self._abort.set()
                return
            done[name].set()

        threads = [threading.Thread(target=worker, args=(n,), name=f"start-{n}", daemon=True) for n in order]
        try:
            for t in threads:
                t.start()
            deadline = time.monotonic() + sum(self.specs[n].start_timeout_s for n in order) + 60
            while any(t.is_alive() for t in threads):
                if time.monotonic() > deadline:
                    raise StackError("start-up did not finish in time")
                time.sleep(0.2)  # short sleeps keep Ctrl-C/SIGTERM responsive in the main thread
            if errors:
                raise errors[0]
        except BaseException:
            self._abort.set()
            for t in threads:  # every wait in start() checks _abort, so this is short
                t.join(timeout=STOP_GRACE_S)
            self.down()
            raise
        self.startup_s = time.monotonic() - t0

    def start(self, name: str) -> None:
        spec = self.specs[name]
        t = time.monotonic()
        if spec.kind == "absent":
            self.say(f"  {name:15} absent natively: {spec.note}")
            return
        self.say(f"  {name:15} starting …")
        if spec.kind == "postgres":
            self._start_postgres(spec)
        else:
            self._spawn(spec)
            if spec.kind == "oneshot":
                self._wait_oneshot(spec)
            else:
                self._wait_healthy(spec)
        if name not in self.started_order:
            self.started_order.append(name)
        self.timings[name] = time.monotonic() - t
        self.say(
            f"  {name:15} {'done' if spec.kind == 'oneshot' else 'healthy'} in {self.timings[name]:.1f}s"
        )

    def _start_postgres(self, spec: NativeSpec) -> None:
        from scripts.native.postgres import PostgresServer

        options = " ".join(shlex.quote(o) for o in spec.extra.get("options", []))

        class ComposePostgres(PostgresServer):
            """The harness's server plus compose's `postgres -c …` options (appended: later wins)."""

            def _server_options(self) -> str:
                return f"{super()._server_options()} {options}".strip()

        server = ComposePostgres(
            data_dir=Path(spec.extra["data_dir"]), port=int(spec.extra["port"]), durable=True
        )
        with self.log_path("postgres").open("a") as f:
            f.write(f"postgres log: {server.log_file}\n")
        server.start(timeout_s=spec.start_timeout_s)
        self.postgres = server
        server.ensure_database(spec.extra["role"], spec.extra["password"], spec.extra["db"])
        if spec.check:
            health.poll_until(spec.check, "postgres ready", 30)

    def _spawn(self, spec: NativeSpec) -> None:
        log = self.log_path(spec.name)
        kwargs: dict[str, Any] = {}
        if spec.run_as and os.geteuid() == 0:
            from scripts.native.postgres import ensure_os_user

            user = ensure_os_user(spec.run_as)
            for key in ("data", "logs", "conf", "home_logs"):
                if key in spec.extra:
                    Path(spec.extra[key]).mkdir(parents=True, exist_ok=True)
                    chown_tree(Path(spec.extra[key]), user.pw_uid, user.pw_gid)
            kwargs.update(user=user.pw_uid, group=user.pw_gid, extra_groups=[])
            spec.env["HOME"] = str(self.run_dir)
        with log.open("ab") as f:
            f.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(spec.argv)}\n".encode())
            f.flush()
            # start_new_session: a process group per component, so stop/teardown reaches every child.
            self.procs[spec.name] = subprocess.Popen(
                spec.argv,
                env=spec.env,
                cwd=spec.cwd,
                stdin=subprocess.DEVNULL,
                stdout=f,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **kwargs,
            )

    def _fail(self, spec: NativeSpec, why: str) -> StackError:
        log = self.log_path(spec.name)
        return StackError(f"{spec.name}: {why}\n--- {log} (tail) ---\n{log_tail(log)}")

    def _wait_oneshot(self, spec: NativeSpec) -> None:
        proc = self.procs[spec.name]
        deadline = time.monotonic() + spec.start_timeout_s
        while proc.poll() is None:
            if self._abort.is_set():
                raise StackError(f"{spec.name}: start-up aborted (another component failed)")
            if time.monotonic() > deadline:
                raise self._fail(spec, f"one-shot did not finish within {spec.start_timeout_s:.0f}s")
            time.sleep(0.2)
        rc = proc.returncode
        if rc != 0:
            raise self._fail(spec, f"one-shot exited with {rc}")

    def _wait_healthy(self, spec: NativeSpec) -> None:
        assert spec.check is not None, spec.name
        proc = self.procs[spec.name]
        deadline = time.monotonic() + spec.start_timeout_s
        last = "no attempt"
        while time.monotonic() < deadline and not self._abort.is_set():
            if proc.poll() is not None:  # fail fast: a dead process never becomes healthy
                raise self._fail(spec, f"exited with {proc.returncode} before becoming healthy ({last})")
            try:
                spec.check()
                return
            except Exception as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.5)
        if self._abort.is_set():
            raise StackError(f"{spec.name}: start-up aborted (another component failed)")
        raise self._fail(spec, f"not healthy at {spec.check.url} within {spec.start_timeout_s:.0f}s ({last})")

    def stop(self, name: str) -> None:
        spec = self.specs.get(name)
        if name == "postgres" and self.postgres is not None:
            self.postgres.stop()
            self.postgres = None
            return
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        if proc.poll() is None:
            kill_group(proc.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        if spec is not None and name in self.started_order:
            self.started_order.remove(name)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int | None:
        """Send ``sig`` to the component's whole process group (a crash, not a stop: no grace, no
        SIGTERM first), reap it and forget it, so ``start(name)`` brings it up again on the same data
        dirs. Returns the exit status (negative: killed by that signal), None if it was not running.
        Bounded: a process that outlives ``sig`` for 10 s gets SIGKILL (what ``stop`` does)."""
        proc = self.procs.pop(name, None)
        if proc is None:
            return None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            rc: int | None = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            kill_group(proc.pid, grace_s=0)
            rc = proc.wait(timeout=5)
        deadline = time.monotonic() + 10  # children of the group too (none outlive it normally)
        while time.monotonic() < deadline and _group_alive(proc.pid):
            time.sleep(0.05)
        if name in self.started_order:
            self.started_order.remove(name)
        return rc

    def restart(self, name: str) -> float:
        """Stop and start one component on the same run dir (data dirs kept); returns seconds taken."""
        t = time.monotonic()
        self.stop(name)
        self.start(name)
        return time.monotonic() - t

    def down(self) -> None:
        """Stop everything this object started, reverse start order. Idempotent, never raises."""
        with contextlib.suppress(Exception):
            atexit.unregister(self.down)
        names = list(dict.fromkeys([*reversed(self.started_order), *self.procs]))
        for name in names:
            try:
                self.stop(name)
            except Exception as exc:
                self.say(f"  {name}: stop failed: {exc}")
        if self.postgres is not None:
            with contextlib.suppress(Exception):
                self.postgres.stop()
            self.postgres = None

    # --- reporting -----------------------------------------------------------------------------
    def pid_of(self, name: str) -> int | None:
        if name == "postgres":
            return self.postgres._postmaster_pid() if self.postgres is not None else None
        proc = self.procs.get(name)
        return proc.pid if proc is not None and proc.poll() is None else None

    def rows(self) -> list[Row]:
        out = []
        for name, spec in self.specs.items():
            if spec.kind == "absent":
                out.append(Row(name, "-", "absent natively", 0, None, spec.note))
                continue
            if spec.kind == "oneshot":
                proc = self.procs.get(name)
                rc = proc.returncode if proc is not None else None
                out.append(Row(name, "-", f"completed (exit {rc})" if rc is not None else "not run", 0, None))
                continue
            pid = self.pid_of(name)
            status = "down"
            if pid is not None and spec.check is not None:
                try:
                    status = f"healthy ({spec.check()})"
                except Exception as exc:
                    status = f"UNHEALTHY: {exc}"
            out.append(
                Row(name, spec.check.url if spec.check else "-", status, rss_bytes(pid) if pid else 0, pid)
            )
        return out

    def report(self) -> str:
        rows = self.rows()
        lines = [f"{'component':16} {'url':28} {'rss':>9}  health"]
        for r in rows:
            rss = f"{r.rss / 2**20:7.0f}MB" if r.rss else "        -"
            lines.append(f"{r.name:16} {r.url:28} {rss}  {r.health}" + (f" — {r.note}" if r.note else ""))
        total = sum(r.rss for r in rows)
        lines.append(
            f"{'total':16} {'':28} {total / 2**20:7.0f}MB"
            + (f"  (started in {self.startup_s:.1f}s)" if self.startup_s else "")
        )
        lines.append(f"logs: {self.run_dir / 'logs'}")
        return "\n".join(lines)

    def total_rss(self) -> int:
        return sum(r.rss for r in self.rows())

    # --- detach state --------------------------------------------------------------------------
    def write_state(self) -> Path:
        state = {
            "run_dir": str(self.run_dir),
            "written_at": time.time(),
            "components": {
                n: {
                    "pid": p.pid,
                    "start_ticks": proc_start_ticks(p.pid),
                    "url": _url(self.specs[n]),
                    "probe_url": _probe_url(self.specs[n]),
                }
                for n, p in self.procs.items()
                if p.poll() is None
            },
            "order": self.started_order,
            # what start_from_state needs to rebuild one component's spec (the same overrides)
            "compose_files": [str(f) for f in self.compose_files],
            "absent": {n: sp.note for n, sp in self.specs.items() if sp.kind == "absent"},
            "postgres": (
                {"data_dir": str(self.postgres.data_dir), "port": self.postgres.port}
                if self.postgres is not None
                else None
            ),
        }
        path = self.run_dir / STATE_FILE
        path.write_text(json.dumps(state, indent=2))
        return path

    def detach(self) -> Path:
        """Leave the processes running past this Python process; `down` finds them via state.json."""
        path = self.write_state()
        with contextlib.suppress(Exception):
            atexit.unregister(self.down)
        if self.postgres is not None:
            with contextlib.suppress(Exception):
                atexit.unregister(self.postgres.stop)  # the harness registers its own teardown
        self.procs.clear()
        self.postgres = None
        self.started_order = []
        return path


def _url(spec: NativeSpec) -> str | None:
    return spec.check.url if spec.check is not None else None


def _probe_url(spec: NativeSpec) -> str | None:
    return spec.check.probe_url if spec.check is not None else None


def chown_tree(path: Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for n in dirs + files:
            with contextlib.suppress(FileNotFoundError):
                os.lchown(os.path.join(root, n), uid, gid)


def _ensure_traversable(run_dir: Path) -> None:
    """Postgres and OpenSearch run as a non-root user: every parent of the run dir must let it through."""
    if os.geteuid() != 0:
        return
    for p in [run_dir, *run_dir.parents]:
        if not (p.stat().st_mode & 0o001):
            raise StackError(
                f"{p} is not traversable by other users (mode {oct(p.stat().st_mode & 0o777)}); Postgres and "
                "OpenSearch run as an unprivileged user and need it: choose another --run-dir / $O11Y_RUN_DIR"
            )
