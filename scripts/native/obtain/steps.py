"""Logged build steps: a subprocess whose output goes to the component's log, with progress on stderr."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

HEARTBEAT_S = 60.0


class ObtainError(RuntimeError):
    """A component could not be obtained; the message names the failing step and its log."""


def say(msg: str) -> None:
    print(f"[obtain] {msg}", file=sys.stderr, flush=True)


def fmt_seconds(seconds: float) -> str:
    return f"{seconds / 60:.0f}m{seconds % 60:02.0f}s" if seconds >= 60 else f"{seconds:.1f}s"


def run_step(
    cmd: Sequence[str],
    *,
    log: Path,
    step: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> str:
    """Run ``cmd``; its output is appended to ``log`` (never to the terminal). Returns the output.

    Prints the step, a heartbeat every minute, and the step's elapsed time; on failure raises
    ObtainError with the last lines of output and the log's path.
    """
    say(f"  {step}: {' '.join(cmd)}")
    start = time.monotonic()
    with log.open("a", encoding="utf-8") as fh:
        fh.write(f"\n### {step}\n$ {' '.join(cmd)}\n")
        fh.flush()
        proc = subprocess.Popen(
            list(cmd),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        stop = threading.Event()

        def heartbeat() -> None:
            while not stop.wait(HEARTBEAT_S):
                say(f"    ... {step} still running ({fmt_seconds(time.monotonic() - start)})")

        threading.Thread(target=heartbeat, daemon=True).start()
        out: list[str] = []
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                out.append(line)
                fh.write(line)
                fh.flush()
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            rc = -9
        finally:
            stop.set()
        fh.write(f"### {step}: exit {rc} after {time.monotonic() - start:.1f}s\n")
    text = "".join(out)
    if rc != 0:
        tail = "\n".join(ln for ln in text.splitlines() if not ln.startswith("go: downloading"))[-3000:]
        raise ObtainError(f"{step} failed (exit {rc}); full log: {log}\n{tail}")
    say(f"    {step} done in {fmt_seconds(time.monotonic() - start)}")
    return text
