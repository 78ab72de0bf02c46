"""Processes of the native stack, read from /proc: process trees, RSS, listening sockets, process
groups stopped with a grace period. No knowledge of the stack: the runner, the stack CLI and the
benchmarks share these."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from pathlib import Path

from scripts.native.translate import LOOPBACK

# How long a component gets between SIGTERM and SIGKILL (collector queues drain, OpenSearch flushes).
STOP_GRACE_S = 30.0


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    return kids


def process_tree(pid: int) -> list[int]:
    kids = _children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        if Path(f"/proc/{p}").exists():
            out.append(p)
            todo.extend(kids.get(p, []))
    return out


def rss_bytes(pid: int) -> int:
    """Sum of VmRSS over the process tree (shared pages counted once per process, like `ps`)."""
    total = 0
    for p in process_tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def _socket_inodes(pids: list[int]) -> set[str]:
    inodes: set[str] = set()
    for p in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{p}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{p}/fd/{fd}")
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
    return inodes


def _hex_addr(h: str) -> str:
    addr, port = h.split(":")
    if len(addr) == 8:
        ip = socket.inet_ntop(socket.AF_INET, bytes.fromhex(addr)[::-1])
    else:
        raw = bytes.fromhex(addr)
        ip = socket.inet_ntop(socket.AF_INET6, b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4)))
    return f"{ip}:{int(port, 16)}"


def listening_sockets(pid: int) -> list[str]:
    """Every TCP listening address of the process tree, e.g. ['127.0.0.1:9090']."""
    inodes = _socket_inodes(process_tree(pid))
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                if cols[3] == "0A" and cols[9] in inodes:  # 0A = LISTEN
                    out.append(_hex_addr(cols[1]))
    return sorted(set(out))


def non_loopback(addresses: list[str]) -> list[str]:
    """Addresses outside loopback (Java listens on IPv4-mapped ``::ffff:127.0.0.1``: loopback too)."""
    return [a for a in addresses if not a.startswith(("127.", "::1:", "::ffff:127."))]


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((LOOPBACK, port)) == 0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is not alive
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def proc_start_ticks(pid: int) -> int | None:
    """The process's start time (clock ticks since boot): with the pid, a unique identity."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def pid_runs(pid: int, start_ticks: int | None) -> bool:
    """True when pid is alive *and* still the process we started (guards against pid reuse).

    Not the command line: OpenSearch's launcher script execs java, so argv[0] changes.
    """
    return pid_alive(pid) and proc_start_ticks(pid) == start_ticks


def kill_group(pgid: int, grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM the process group, wait (bounded), then SIGKILL what is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not group_alive(pgid):
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and group_alive(pgid):
        time.sleep(0.1)


def group_alive(pgid: int) -> bool:
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            fields = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False
