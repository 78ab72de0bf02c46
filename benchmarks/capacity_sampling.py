"""What the capacity bench reads without asking anyone: Prometheus text exposition (the collector's
and the trace store's own metrics) and /proc (CPU ticks, RSS, load average, who listens on a port).

Plain parsers over text and /proc, so a step can be measured on a stack this process did not start
and without a Prometheus server in the loop.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

import httpx

from scripts.native.translate import CONTRACT_PORTS

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


# --- Prometheus text ---------------------------------------------------------------------------
Samples = list[tuple[str, dict[str, str], float]]


def scrape(client: httpx.Client, url: str) -> Samples:
    try:
        r = client.get(url, timeout=5.0)
        r.raise_for_status()
    except httpx.HTTPError:
        return []
    out: Samples = []
    for line in r.text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        with contextlib.suppress(ValueError):
            out.append((m.group(1), dict(_LABEL.findall(m.group(2) or "")), float(m.group(3))))
    return out


def total(samples: Samples, name: str, **match: str) -> float:
    """Sum of every series of ``name`` (with or without the _total suffix) whose labels match."""
    names = {name, name + "_total"} if not name.endswith("_total") else {name, name[: -len("_total")]}
    return sum(
        v for n, labels, v in samples if n in names and all(labels.get(k) == x for k, x in match.items())
    )


# --- /proc --------------------------------------------------------------------------------------
def cpu_ticks(pids: set[int]) -> int:
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs."""
    cols = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = cols[3] + (cols[4] if len(cols) > 4 else 0)
    return sum(cols) - idle, sum(cols)


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def rss_of(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def components_by_port() -> dict[str, set[int]]:
    """Root pids of the stack's components in THIS network namespace, found by their listening ports
    (contract ports, DEVELOPERS.md): for a stack this process did not start."""
    port_of: dict[str, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                if cols[3] == "0A":
                    port_of[cols[9]] = int(cols[1].rsplit(":", 1)[1], 16)
    service_of = {p: s for s, ports in CONTRACT_PORTS.items() for p in ports}
    own_ns = os.readlink("/proc/self/ns/net")
    found: dict[str, set[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/ns/net") != own_ns:
                continue
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                    port = port_of.get(target[8:-1]) if target.startswith("socket:[") else None
                    if port in service_of:
                        found.setdefault(service_of[port], set()).add(pid)
    return found
