"""Run the o11y-box stack natively: `python -m scripts.native.run up|down|status` (`make stack-native`).

The same components as `docker compose up`, started in compose's depends_on order with the command
lines, environment and config files compose.yaml gives them (scripts/native/compose_model.py), the
only differences being the mechanical rewrites of scripts/native/translate.py (docs/native.md,
"Differences from compose"). Every component listens on 127.0.0.1 only. Override files layer over
compose.yaml as with `docker compose -f`; by default tests/compose/jaeger-for-tempo.yaml, which puts
Jaeger in the `tempo` service's place (Tempo is AGPL and never built here).

    up [--detach] [--compose-file F]
                    start everything, wait for each health URL, print URL/health/RSS; stay in the
                    foreground until Ctrl-C (then stop everything), or with --detach leave it running
                    and record pids in <run dir>/state.json for `down`
    down            stop a detached stack (process groups: SIGTERM, then SIGKILL after a grace period)
    status          health and RSS of a running stack

The run dir (`--run-dir`, $O11Y_RUN_DIR, default <repo>/.native-run) keeps per-component logs
(logs/<component>.log), the rendered config copies (rendered/<service>/…) and the named volumes
(volumes/<name>/), so data survives a restart on the same run dir, as with compose's volumes.
"""

from __future__ import annotations

import argparse
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
    JAEGER_FOR_TEMPO,
    ComponentError,
    NativeSpec,
    absent_services,
    build_specs,
)

# Callers (tests, benchmarks, the stack CLI) import these from here as well.
from scripts.native.processes import (  # noqa: F401
    STOP_GRACE_S,
    kill_group,
    listening_sockets,
    non_loopback,
    port_in_use,
    proc_start_ticks,
    process_tree,
    rss_bytes,
)
from scripts.native.processes import group_alive as _group_alive
from scripts.native.processes import pid_alive as _pid_alive  # noqa: F401
from scripts.native.processes import pid_runs as _pid_runs
from scripts.native.translate import CONTRACT_PORTS, LOOPBACK, TranslateError

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
                    _chown_tree(Path(spec.extra[key]), user.pw_uid, user.pw_gid)
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


def down_from_state(run_dir: Path, out: Any = sys.stdout) -> int:
    path = run_dir / STATE_FILE
    if not path.is_file():
        print(f"no {STATE_FILE} in {run_dir}: nothing detached to stop", file=out)
        return 0
    state = json.loads(path.read_text())
    comps: dict[str, Any] = state.get("components", {})
    for name in reversed([n for n in state.get("order", []) if n in comps] or list(comps)):
        info = comps[name]
        if _pid_runs(int(info["pid"]), info.get("start_ticks")):
            print(f"  stopping {name} (pid {info['pid']})", file=out)
            kill_group(int(info["pid"]))
        else:
            print(f"  {name}: not running", file=out)
    pg = state.get("postgres")
    if pg:
        from scripts.native.postgres import PostgresServer

        server = PostgresServer(data_dir=Path(pg["data_dir"]), port=int(pg["port"]))
        # The harness only stops servers it started itself; this one was started by the detached `up`.
        server._started = True
        print("  stopping postgres", file=out)
        server.stop()
    path.unlink()
    return 0


def start_from_state(run_dir: Path, name: str, out: Any = sys.stdout) -> float:
    """Start one component of a detached stack again (after a stop or a crash) with the spec compose
    gives it, on the same data dirs, and record the new process in the state file; returns seconds
    until healthy. The `o11y chaos start` command; the rest of the stack is left as it is."""
    path = run_dir / STATE_FILE
    if not path.is_file():
        raise StackError(f"no {STATE_FILE} in {run_dir}: no detached stack")
    state = json.loads(path.read_text())
    comps: dict[str, Any] = state.setdefault("components", {})
    info = comps.get(name)
    if info and _pid_runs(int(info["pid"]), info.get("start_ticks")):
        raise StackError(f"{name} is running (pid {info['pid']}): stop or kill it first")
    files = state.get("compose_files", [str(JAEGER_FOR_TEMPO)])
    stack = NativeStack(run_dir, out=out, compose_files=[Path(f) for f in files])
    specs = stack.prepare(only=[name])
    if specs[name].kind not in ("daemon", "postgres"):
        raise StackError(f"{name} is {specs[name].kind} natively: nothing to start")
    t = time.monotonic()
    stack.start(name)
    if name == "postgres":
        state["postgres"] = {"data_dir": str(stack.postgres.data_dir), "port": stack.postgres.port}
        with contextlib.suppress(Exception):
            atexit.unregister(stack.postgres.stop)  # it outlives this process, as after `up --detach`
    else:
        pid = stack.procs[name].pid
        comps[name] = {"pid": pid, "start_ticks": proc_start_ticks(pid), "url": _url(specs[name]),
                       "probe_url": _probe_url(specs[name])}
    if name not in state.setdefault("order", []):
        state["order"].append(name)
    path.write_text(json.dumps(state, indent=2))
    return time.monotonic() - t


def status_from_state(run_dir: Path, out: Any = sys.stdout) -> int:
    path = run_dir / STATE_FILE
    if not path.is_file():
        print(f"no {STATE_FILE} in {run_dir}: no detached stack", file=out)
        return 1
    state = json.loads(path.read_text())
    checks = health.checks()
    bad = 0
    total = 0
    for name, info in state["components"].items():
        alive = _pid_runs(int(info["pid"]), info.get("start_ticks"))
        rss = rss_bytes(int(info["pid"])) if alive else 0
        total += rss
        check = checks.get(name)
        if info.get("probe_url") and (check is None or check.probe_url != info["probe_url"]):
            check = health.http_check(name, info["probe_url"])  # a stand-in (e.g. Jaeger as tempo)
        try:
            h = check() if check is not None else "running"
        except Exception as exc:
            h, bad = f"UNHEALTHY: {exc}", bad + 1
        print(
            f"{name:16} {info.get('url') or '-':28} {rss / 2**20:7.0f}MB  {h if alive else 'DOWN'}", file=out
        )
    if state.get("postgres"):
        try:
            h = checks["postgres"]()
        except Exception as exc:
            h, bad = f"UNHEALTHY: {exc}", bad + 1
        print(f"{'postgres':16} {checks['postgres'].url:28} {'':9}  {h}", file=out)
    for name, why in (state.get("absent") or {}).items():
        print(f"{name:16} {'-':28} {'':9}  absent natively — {why}", file=out)
    print(f"{'total':16} {'':28} {total / 2**20:7.0f}MB", file=out)
    return 1 if bad else 0


def _chown_tree(path: Path, uid: int, gid: int) -> None:
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


# ------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m scripts.native.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("command", choices=["up", "down", "status"])
    p.add_argument("--run-dir", type=Path, default=None, help="default $O11Y_RUN_DIR or <repo>/.native-run")
    p.add_argument(
        "--detach", action="store_true", help="up: leave the stack running, record state for `down`"
    )
    p.add_argument("--only", nargs="*", help="up: these services (and what they depend on)")
    p.add_argument(
        "--compose-file",
        action="append",
        type=Path,
        default=None,
        metavar="FILE",
        help="up: an override file layered over compose.yaml (repeatable, later wins; relative to the "
        f"repo). Default: {JAEGER_FOR_TEMPO.relative_to(REPO_ROOT)} (Jaeger stands in for Tempo, which "
        "is AGPL and never built here). Give --compose-file none for compose.yaml alone.",
    )
    args = p.parse_args(argv)
    run_dir = (args.run_dir or default_run_dir()).absolute()

    if args.command == "down":
        return down_from_state(run_dir)
    if args.command == "status":
        return status_from_state(run_dir)

    if (run_dir / STATE_FILE).is_file():
        print(
            f"{run_dir / STATE_FILE} exists: a detached stack may be running; `down` it first",
            file=sys.stderr,
        )
        return 1
    files = [JAEGER_FOR_TEMPO] if args.compose_file is None else args.compose_file
    files = [f for f in files if str(f) != "none"]
    stack = NativeStack(run_dir, compose_files=files)
    stop = {"now": False}

    def on_signal(signum: int, _frame: object) -> None:
        stop["now"] = True
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        stack.up(args.only)
        print(stack.report(), flush=True)
        assert stack.model is not None
        for name, why in absent_services(stack.model).items():
            print(f"note: {name} is absent natively — {why}")
        if args.detach:
            path = stack.detach()
            print(f"detached; state in {path}; stop with `python -m scripts.native.run down`")
            return 0
        print("stack is up; Ctrl-C stops it", flush=True)
        while not stop["now"]:
            for name, proc in list(stack.procs.items()):
                if stack.specs[name].kind == "daemon" and proc.poll() is not None:
                    print(
                        f"{name} exited with {proc.returncode}:\n{log_tail(stack.log_path(name))}",
                        file=sys.stderr,
                    )
                    return 1
            time.sleep(1.0)
    except KeyboardInterrupt:
        print("\nstopping …", flush=True)
    except (StackError, compose_model.ComposeError, ComponentError, TranslateError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        stack.down()
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
