"""Processes the benchmark starts: each in its own session (process group), pinned with ``taskset``,
stopped by group with SIGTERM then SIGKILL; every wait is bounded."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class ProcessError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """The runner's environment minus every O11Y_*/OTEL_* a developer may have exported."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("O11Y_", "OTEL_"))}
    env.update(extra)
    return env


def poll_until(fn: Callable[[], T], what: str, timeout: float, interval: float = 0.1) -> T:
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise ProcessError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def http_status(url: str, timeout: float = 1.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, urllib.error.URLError):
        return 0


def http_get_text(url: str, timeout: float = 5.0, accept: str | None = None) -> str:
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.read().decode("utf-8", "replace")


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def rss_bytes(self) -> int:
        """Resident set size of the process (VmRSS), 0 when it is gone."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM to the whole process group, SIGKILL after ``timeout``. Idempotent."""
        if self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)


def spawn(
    name: str,
    argv: Sequence[str],
    *,
    env: dict[str, str],
    log_dir: Path,
    core: int | None,
    cwd: Path | None = None,
    stdout_to_null: bool = False,
) -> Proc:
    """Start ``argv`` in a new session, pinned to ``core`` (taskset execs, so the pid is the program's)."""
    cmd = list(argv)
    if core is not None:
        cmd = ["taskset", "-c", str(core), *cmd]
    log_path = log_dir / f"{name}.log"
    with open(log_path, "ab") as log:
        popen = subprocess.Popen(
            cmd,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL if stdout_to_null else log,
            stderr=log,
            start_new_session=True,
        )
    return Proc(name, popen, log_path)


def wait_healthy(proc: Proc, url: str, timeout: float = 60.0) -> None:
    def ready() -> bool:
        if not proc.alive():
            raise ProcessError(
                f"{proc.name} exited with {proc.popen.returncode} during start-up:\n{proc.tail()}"
            )
        return http_status(url) == 200

    try:
        poll_until(ready, f"{proc.name} at {url}", timeout)
    except ProcessError as exc:
        proc.stop()
        raise ProcessError(f"{exc}\n--- {proc.log_path} ---\n{proc.tail()}") from None
