"""Where a p99 comes from: the event loop's stalls and the GC's pauses, inside the service.

``StallProbe`` (enabled by ``BENCH_STALL_PROBE=<dir>`` in benchmarks/app.py) runs a task that
asks the loop for a 1 ms sleep over and over and records how late it wakes: under load that is the
length of the loop iteration it had to wait for — a long batch of callbacks, a GC pause, or the GIL
held by another thread (a batch exporter, the log dispatcher). ``gc.callbacks`` time every
collection by generation. Both go to ``<dir>/stalls-<pid>.json`` every 2 s as histograms
(1 ms buckets up to 100 ms), so a run that is killed still leaves its figures.

    python -m benchmarks.stalls DIR       # a table per service process found in DIR
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

_BUCKETS_MS = 100


class _Histogram:
    def __init__(self) -> None:
        self.counts = [0] * (_BUCKETS_MS + 1)  # [i]: i..i+1 ms; the last: ≥ 100 ms
        self.total_ms = 0.0
        self.max_ms = 0.0

    def add(self, ms: float) -> None:
        self.counts[min(int(ms), _BUCKETS_MS)] += 1
        self.total_ms += ms
        if ms > self.max_ms:
            self.max_ms = ms

    def as_dict(self) -> dict[str, Any]:
        return {"counts": self.counts, "total_ms": round(self.total_ms, 3), "max_ms": round(self.max_ms, 3)}


class StallProbe:
    def __init__(self, directory: str, telemetry: bool | None) -> None:
        self._path = Path(directory) / f"stalls-{os.getpid()}.json"
        self._telemetry = telemetry
        self._lateness = _Histogram()
        self._gc = {g: _Histogram() for g in range(3)}
        self._gc_start = 0.0
        self._tasks: list[asyncio.Task[None]] = []

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
        else:
            self._gc[info["generation"]].add((time.perf_counter() - self._gc_start) * 1e3)

    async def _tick(self) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(0.001)
            self._lateness.add(max(0.0, (time.perf_counter() - start) * 1e3 - 1.0))

    async def _write(self) -> None:
        while True:
            await asyncio.sleep(2.0)
            self.dump()

    def dump(self) -> None:
        doc = {
            "pid": os.getpid(),
            "telemetry": self._telemetry,
            "loop_lateness": self._lateness.as_dict(),
            "gc": {str(g): h.as_dict() for g, h in self._gc.items()},
        }
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        tmp.replace(self._path)

    async def __aenter__(self) -> StallProbe:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        gc.callbacks.append(self._on_gc)
        self._tasks = [asyncio.create_task(self._tick()), asyncio.create_task(self._write())]
        return self

    async def __aexit__(self, *exc: Any) -> None:
        for task in self._tasks:
            task.cancel()
        gc.callbacks.remove(self._on_gc)
        self.dump()


def _quantile(counts: list[int], q: float) -> float:
    n = sum(counts)
    if not n:
        return 0.0
    seen = 0
    for i, c in enumerate(counts):
        seen += c
        if seen >= q * n:
            return float(i)
    return float(len(counts) - 1)


def main(argv: list[str]) -> int:
    for path in sorted(Path(argv[0]).glob("stalls-*.json")):
        doc = json.loads(path.read_text())
        lat = doc["loop_lateness"]
        n = sum(lat["counts"])
        counts = lat["counts"]
        print(
            f"{path.name} telemetry={doc['telemetry']}: loop ticks={n} lateness"
            f" p50<{_quantile(counts, .5) + 1:.0f}ms p99<{_quantile(counts, .99) + 1:.0f}ms"
            f" p99.9<{_quantile(counts, .999) + 1:.0f}ms max={lat['max_ms']}ms"
            f" ≥5ms={sum(counts[5:])} ≥10ms={sum(counts[10:])}"
        )
        for g, h in doc["gc"].items():
            c = sum(h["counts"])
            print(
                f"    gc gen{g}: n={c} total={h['total_ms']}ms max={h['max_ms']}ms"
                f" ≥1ms={sum(h['counts'][1:])} ≥5ms={sum(h['counts'][5:])}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
