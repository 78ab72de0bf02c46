"""A detached native stack (`run up --detach`), driven through its state file: down, status, and
starting one component again (`o11y chaos start`)."""

from __future__ import annotations

import atexit
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from scripts.native import health
from scripts.native.components import JAEGER_FOR_TEMPO
from scripts.native.processes import kill_group, proc_start_ticks, rss_bytes
from scripts.native.processes import pid_runs as _pid_runs
from scripts.native.stack import STATE_FILE, NativeStack, StackError, _probe_url, _url


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
        comps[name] = {
            "pid": pid,
            "start_ticks": proc_start_ticks(pid),
            "url": _url(specs[name]),
            "probe_url": _probe_url(specs[name]),
        }
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
