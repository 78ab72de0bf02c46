"""Interleaved rounds of wrk runs over the arms of one case, and the per-round ratios between arms.

Every round runs each arm once; every other round runs them in reverse (AB BA …, OLS SLO …), so a
linear drift of the machine weighs on every arm equally over two rounds. A comparison is B/A within
one round, never across rounds: absolute figures from different moments are not comparable on a
shared machine.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.report import CaseResult, Pair, Target
from benchmarks.stack import log
from benchmarks.wrk import WrkResult

_TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Arm:
    # Short and unique within a case ("A", "off", "lean"…): comparisons name arms by it, and its
    # first letter spells the round's order in the reports.
    name: str
    label: str
    url: str
    script: Path
    prepare: Callable[[], None] | None = None
    pid: int | None = None


@dataclass
class Round:
    index: int
    order: str
    runs: dict[str, WrkResult]


# One wrk run of ``seconds`` against an arm.
Measure = Callable[[Arm, float], WrkResult]


def process_cpu_s(pid: int | None) -> float:
    """utime + stime of a process (every thread), in seconds; 0 when unknown."""
    if pid is None:
        return 0.0
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def run_order(arms: Sequence[Arm], index: int) -> list[Arm]:
    return list(arms) if index % 2 == 0 else list(reversed(arms))


def run_rounds(
    arms: Sequence[Arm],
    rounds: int,
    *,
    measure: Measure,
    warmup_s: float,
    run_warmup_s: float,
    duration_s: float,
) -> list[Round]:
    for arm in arms:
        if arm.prepare:
            arm.prepare()
        measure(arm, warmup_s)
    out = []
    for i in range(rounds):
        order = run_order(arms, i)
        runs: dict[str, WrkResult] = {}
        for arm in order:
            if arm.prepare:
                arm.prepare()
            if run_warmup_s > 0:
                measure(arm, run_warmup_s)
            load = os.getloadavg()[0]
            cpu0 = process_cpu_s(arm.pid)
            r = measure(arm, duration_s)
            r.service_cpu_s = process_cpu_s(arm.pid) - cpu0
            r.loadavg_before = load
            runs[arm.name] = r
            log(
                f"  round {i + 1}/{rounds} {arm.name} ({arm.label}): {r.throughput:,.0f} req/s "
                f"p99 {r.p99_ms:.2f} ms"
                f"{f' errors={r.errors}' if r.error_count else ''}"
            )
        out.append(Round(i + 1, "".join(a.name[0].upper() for a in order), runs))
    return out


def compare(
    name: str,
    description: str,
    rounds: Sequence[Round],
    a: Arm,
    b: Arm,
    *,
    comparison: str = "",
    target: Target | None = None,
) -> CaseResult:
    """B over A in every round."""
    result = CaseResult(name, description, a.label, b.label, target, comparison=comparison)
    for r in rounds:
        pair = Pair(r.index, r.order, r.runs[a.name], r.runs[b.name])
        result.pairs.append(pair)
        log(
            f"  {result.title} round {r.index}: throughput_ratio={pair.throughput_ratio:.2f} "
            f"p99_ratio={pair.p99_ratio:.2f} cpu_per_request_ratio={pair.cpu_ratio:.2f}"
        )
    if result.errors:
        result.notes.append(f"{result.errors} wrk errors (non-2xx, timeouts, socket errors) across the runs")
    return result
