"""The capacity report: one table row per step, and per signal the highest rate held with 0 drops and
the first step that was not.
"""

from __future__ import annotations

from typing import Any

from benchmarks.capacity_step import Step


def table(steps: list[Step]) -> str:
    head = (
        f"{'signal':6} {'offered/s':>9} {'gen/s':>8} {'accepted':>9} {'exported':>9} {'stored':>9} "
        f"{'refused':>7} {'sdk_drop':>8} {'lost':>7} {'q_peak':>6} {'lag_s':>5} {'drain':>5} {'rss MiB':>7} "
        f"{'coll%':>5} {'tempo%':>6} {'os%':>5} {'gen%':>5} {'other%':>6} {'top cpu':14} verdict"
    )
    rows = [head]
    for s in steps:
        rows.append(
            f"{s.signal:6} {s.offered_rate:9.0f} {s.generated_rate:8.0f} {s.accepted:9d} {s.exported:9d} "
            f"{s.stored:9d} {s.refused:7d} {s.sdk_dropped:8d} {s.lost:7d} {s.queue_peak:6.0f} "
            f"{s.backlog_s:5.1f} {s.drain_s:5.0f} {s.collector_rss_peak_mib:7.0f} "
            f"{s.cpu_pct.get('otel-collector', 0):5.0f} "
            f"{s.cpu_pct.get('tempo', 0):6.0f} {s.cpu_pct.get('opensearch', 0):5.0f} "
            f"{s.cpu_pct.get('telemetrygen', 0):5.0f} {s.other_tenants_pct:6.0f} {s.top_cpu:14} {s.verdict}"
        )
    return "\n".join(rows)


def summary(steps: list[Step]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for sig in ("traces", "logs"):
        mine = [s for s in steps if s.signal == sig]
        if not mine:
            continue
        held = [s for s in mine if s.held]
        first_fail = next((s for s in mine if not s.held), None)
        if first_fail:  # a noisy later step may pass at a lower generated rate: not above a failure
            held = [s for s in held if s.generated_rate < first_fail.generated_rate]
        best = max(held, key=lambda s: s.generated_rate) if held else None
        out[sig] = {
            "max_held_rate": best.generated_rate if best else 0.0,
            "max_held_offered": best.offered_rate if best else 0.0,
            "first_not_held": first_fail.offered_rate if first_fail else None,
            "first_not_held_why": first_fail.verdict if first_fail else "",
            "bottleneck_at_limit": (first_fail or (best or mine[-1])).top_stack_cpu,
            "cpu_at_limit": (first_fail or (best or mine[-1])).cpu_pct,
        }
    return out
