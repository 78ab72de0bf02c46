"""The before/after plot: latency percentile curves per route (HdrHistogram style: the x axis
stretches the tail, so p99 and p99.9 get as much room as the median)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server or in a container
import matplotlib.pyplot as plt
from matplotlib import ticker

TICKS = (50.0, 90.0, 99.0, 99.9, 99.99)


def _nines(q: float) -> float:
    """0 -> 0, 90 -> 1, 99 -> 2, 99.9 -> 3 … (100 is drawn at the last finite point's place)."""
    return -math.log10(max(1e-4, 1.0 - q / 100.0))


def percentile_plot(before: dict[str, Any], after: dict[str, Any], out: Path, *,
                    labels: tuple[str, str] = ("before", "after"), title: str | None = None) -> Path:
    """Write a PNG with one panel per route (and the total): latency (ms, log) by percentile."""
    groups = [*dict.fromkeys([*before.get("routes", {}), *after.get("routes", {})]), "total"]
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 4.0), squeeze=False)
    for ax, group in zip(axes[0], groups, strict=True):
        for run, label, style in ((before, labels[0], "-"), (after, labels[1], "--")):
            data = run["total"] if group == "total" else run.get("routes", {}).get(group)
            curve = (data or {}).get("curve_ms") or []
            if curve:
                ax.plot([_nines(q) for q, _ in curve], [max(ms, 1e-3) for _, ms in curve], style,
                        label=f"{label} (n={data['completed']})" if data else label, linewidth=1.6)
        ax.set_yscale("log")
        plain = ticker.FuncFormatter(lambda v, _pos: f"{v:g}")  # "200", not "2 x 10^2"
        ax.yaxis.set_major_formatter(plain)
        low, high = ax.get_ylim()
        # within one decade there is at most one major tick: label the minor ones instead
        ax.yaxis.set_minor_formatter(plain if high / max(low, 1e-9) < 10 else ticker.NullFormatter())
        ax.set_xticks([_nines(q) for q in TICKS], [f"p{q:g}" for q in TICKS])
        ax.set_title(group)
        ax.set_xlabel("percentile")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("latency from intended send time (ms)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=100)
    plt.close(fig)
    return out
