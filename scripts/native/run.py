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
import contextlib
import signal
import sys
import time
from pathlib import Path

from scripts.native import compose_model
from scripts.native.components import JAEGER_FOR_TEMPO, ComponentError, absent_services

# Callers (tests, benchmarks, the stack CLI) import these from here as well.
from scripts.native.detached import down_from_state, start_from_state, status_from_state  # noqa: F401
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
from scripts.native.processes import pid_alive as _pid_alive  # noqa: F401
from scripts.native.processes import pid_runs as _pid_runs  # noqa: F401
from scripts.native.stack import (
    REPO_ROOT,
    STATE_FILE,
    NativeStack,
    StackError,
    default_run_dir,
    log_tail,
)
from scripts.native.translate import TranslateError


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
