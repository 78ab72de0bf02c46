"""Results → ``benchmarks/results/<timestamp>.{json,md,png}`` and the closing ``bench …`` lines."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.wrk import WrkResult


def spread(values: list[float]) -> float:
    """max/min: one arm's noise across rounds."""
    return max(values) / min(values) if min(values) else float("nan")


@dataclass
class Target:
    min_throughput_ratio: float
    max_p99_ratio: float

    def met(self, throughput_ratio: float, p99_ratio: float) -> bool:
        return throughput_ratio >= self.min_throughput_ratio and p99_ratio <= self.max_p99_ratio

    def describe(self) -> str:
        return f"throughput ≥ {self.min_throughput_ratio:g}x, p99 ≤ {self.max_p99_ratio:g}x"


@dataclass
class Pair:
    index: int
    order: str  # the round's run order, one letter per arm: AB, BA; OLS, SLO (off, lean, stock)
    a: WrkResult
    b: WrkResult

    @property
    def throughput_ratio(self) -> float:
        return self.b.throughput / self.a.throughput if self.a.throughput else float("nan")

    @property
    def p99_ratio(self) -> float:
        return self.b.p99_ms / self.a.p99_ms if self.a.p99_ms else float("nan")

    @property
    def cpu_ratio(self) -> float:
        """A's service CPU per request over B's: the throughput ratio a CPU-bound one-core server
        would show, and robust to other load on the machine (nan when not measured)."""
        a, b = self.a.cpu_us_per_request, self.b.cpu_us_per_request
        return a / b if a and b else float("nan")


@dataclass
class CaseResult:
    name: str
    description: str
    a_label: str
    b_label: str
    target: Target | None
    pairs: list[Pair] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # "lean/off" when the case has more arms than two; then it prints one line per comparison.
    comparison: str = ""

    @property
    def title(self) -> str:
        return f"{self.name} {self.comparison}" if self.comparison else self.name

    @property
    def throughput_ratio(self) -> float:
        return statistics.median(p.throughput_ratio for p in self.pairs)

    @property
    def p99_ratio(self) -> float:
        return statistics.median(p.p99_ratio for p in self.pairs)

    @property
    def cpu_ratio(self) -> float:
        return statistics.median(p.cpu_ratio for p in self.pairs)

    def ranges(self) -> tuple[tuple[float, float], tuple[float, float]]:
        tr = [p.throughput_ratio for p in self.pairs]
        pr = [p.p99_ratio for p in self.pairs]
        return (min(tr), max(tr)), (min(pr), max(pr))

    def arm_noise(self) -> dict[str, dict[str, float]]:
        """Spread of each arm across pairs (max/min): the machine's noise, separate from the effect."""
        out = {}
        for label, runs in (("A", [p.a for p in self.pairs]), ("B", [p.b for p in self.pairs])):
            out[label] = {
                "throughput_max_over_min": spread([r.throughput for r in runs]),
                "p99_max_over_min": spread([r.p99_ms for r in runs]),
            }
        return out

    @property
    def errors(self) -> int:
        return sum(p.a.error_count + p.b.error_count for p in self.pairs)

    def line(self) -> str:
        (tmin, tmax), (pmin, pmax) = self.ranges()
        return (
            f"bench {self.title}: throughput_ratio={self.throughput_ratio:.2f} p99_ratio={self.p99_ratio:.2f}"
            f" (pairs={len(self.pairs)} throughput_ratio_range={tmin:.2f}-{tmax:.2f}"
            f" p99_ratio_range={pmin:.2f}-{pmax:.2f})"
        )

    def to_json(self) -> dict[str, Any]:
        (tmin, tmax), (pmin, pmax) = self.ranges()
        return {
            "name": self.name,
            "comparison": self.comparison or None,
            "description": self.description,
            "a": self.a_label,
            "b": self.b_label,
            "throughput_ratio": self.throughput_ratio,
            "p99_ratio": self.p99_ratio,
            "cpu_per_request_ratio": self.cpu_ratio,
            "throughput_ratio_range": [tmin, tmax],
            "p99_ratio_range": [pmin, pmax],
            "target": self.target.describe() if self.target else None,
            "target_met": self.target.met(self.throughput_ratio, self.p99_ratio) if self.target else None,
            "arm_noise": self.arm_noise(),
            "errors": self.errors,
            "notes": self.notes,
            "pairs": [
                {
                    "index": p.index,
                    "order": p.order,
                    "throughput_ratio": p.throughput_ratio,
                    "p99_ratio": p.p99_ratio,
                    "cpu_per_request_ratio": p.cpu_ratio,
                    "a": p.a.to_json(),
                    "b": p.b.to_json(),
                }
                for p in self.pairs
            ],
        }


@dataclass
class Run:
    case: str
    round: int
    order: str
    arm: str
    result: WrkResult


def runs(cases: list[CaseResult]) -> list[Run]:
    """Every run once, by case and round: the comparisons of a multi-arm case share their runs."""
    by_key: dict[tuple[str, int, str], Run] = {}
    for c in cases:
        for p in c.pairs:
            for label, r in ((c.a_label, p.a), (c.b_label, p.b)):
                by_key.setdefault((c.name, p.index, label), Run(c.name, p.index, p.order, label, r))
    case_rank = {name: i for i, name in enumerate(dict.fromkeys(c.name for c in cases))}
    return sorted(by_key.values(), key=lambda run: (case_rank[run.case], run.round))


def runs_by_arm(cases: list[CaseResult]) -> dict[str, dict[str, list[WrkResult]]]:
    out: dict[str, dict[str, list[WrkResult]]] = {}
    for run in runs(cases):
        out.setdefault(run.case, {}).setdefault(run.arm, []).append(run.result)
    return out


@dataclass
class OutageResult:
    seconds: float
    rss_before_mb: float
    rss_max_mb: float
    rss_end_mb: float
    rss_after_recovery_mb: float
    drops: dict[str, float]
    samples: list[dict[str, float]]
    requests: int = 0
    errors: int = 0

    @property
    def growth_mb(self) -> float:
        return self.rss_max_mb - self.rss_before_mb

    def line(self) -> str:
        return (
            f"bench collector_outage_rss: rss_growth_mb={self.growth_mb:.1f} minutes={self.seconds / 60:.1f}"
            f" spans_dropped={self.drops.get('spans_dropped', 0):.0f}"
            f" logs_dropped={self.drops.get('logs_dropped', 0):.0f}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "seconds": self.seconds,
            "rss_before_mb": self.rss_before_mb,
            "rss_max_mb": self.rss_max_mb,
            "rss_end_mb": self.rss_end_mb,
            "rss_after_recovery_mb": self.rss_after_recovery_mb,
            "rss_growth_mb": self.growth_mb,
            "drops": self.drops,
            "requests": self.requests,
            "errors": self.errors,
            "samples": self.samples,
        }


def markdown(meta: dict[str, Any], cases: list[CaseResult], outage: OutageResult | None) -> str:
    lines = [
        f"# make bench — {meta['timestamp']}",
        "",
        f"mode: {meta['mode']}; wrk -t{meta['threads']} -c{meta['connections']} -d{meta['duration_s']:g}s; "
        f"pairs: {meta['pairs']}; dataset: {meta['dataset']}; cores: service={meta['service_core']} "
        f"load={meta['load_core']}",
        "",
        "Ratios are B/A per interleaved round (every arm once per round, the order reversed every "
        "other round: AB, BA, … or OLS, SLO, … for off, lean, stock); the figure is their median, "
        "the range is min-max across rounds. CPU/request A/B is the service process's CPU time per "
        "request (all threads) of A over B's: what a CPU-bound one-core server's throughput ratio "
        "would be, and robust to other load on the machine — a 'service core busy' well under 100 % "
        "while wrk saturates it means the core was shared.",
        "",
        "| case | A | B | throughput ratio | p99 ratio | range (tp / p99) | CPU/request A/B | target | met |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cases:
        (tmin, tmax), (pmin, pmax) = c.ranges()
        met = c.target.met(c.throughput_ratio, c.p99_ratio) if c.target else None
        lines.append(
            f"| {c.title} | {c.a_label} | {c.b_label} | {c.throughput_ratio:.2f} | {c.p99_ratio:.2f} | "
            f"{tmin:.2f}-{tmax:.2f} / {pmin:.2f}-{pmax:.2f} | {c.cpu_ratio:.2f} | "
            f"{c.target.describe() if c.target else ''} | "
            f"{'yes' if met else 'no' if met is not None else ''} |"
        )
    lines += [
        "",
        "## Runs",
        "",
        "| case | round | arm | req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | errors | service CPU us/req "
        "| service core busy | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs(cases):
        r = run.result
        lines.append(
            f"| {run.case} | {run.round} ({run.order}) | {run.arm} | {r.throughput:,.0f} | "
            f"{r.percentile_ms(50):.2f} | {r.percentile_ms(90):.2f} | {r.p99_ms:.2f} | "
            f"{r.percentile_ms(99.9):.2f} | {r.error_count} | {r.cpu_us_per_request:.0f} | "
            f"{r.service_cpu_util:.0%} | {r.loadavg_before:.1f} |"
        )
    lines += [
        "",
        "## Noise (max/min of one arm across rounds)",
        "",
        "| case | arm | throughput | p99 |",
        "|---|---|---|---|",
    ]
    for case, arms in runs_by_arm(cases).items():
        for arm, results in arms.items():
            lines.append(
                f"| {case} | {arm} | {spread([r.throughput for r in results]):.2f} | "
                f"{spread([r.p99_ms for r in results]):.2f} |"
            )
    if outage is not None:
        lines += [
            "",
            "## Collector outage under load",
            "",
            f"{outage.seconds / 60:.1f} min with the collector stopped: RSS {outage.rss_before_mb:.1f} MB "
            f"before → max {outage.rss_max_mb:.1f} MB (growth {outage.growth_mb:.1f} MB), "
            f"{outage.rss_end_mb:.1f} MB at the end, {outage.rss_after_recovery_mb:.1f} MB after the "
            f"collector came back. Dropped (SDK self-metrics): spans "
            f"{outage.drops.get('spans_dropped', 0):.0f}, "
            f"log records {outage.drops.get('logs_dropped', 0):.0f}; "
            f"{outage.requests} requests served, {outage.errors} wrk errors.",
        ]
    for c in cases:
        for note in c.notes:
            lines.append(f"- {c.title}: {note}")
    lines += ["", "```", *[c.line() for c in cases], *([outage.line()] if outage else []), "```", ""]
    return "\n".join(lines)


def plot(path: Path, cases: list[CaseResult], outage: OutageResult | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_case = runs_by_arm(cases)
    panels = len(by_case) + (1 if outage is not None else 0)
    if panels == 0:
        return
    cols = 2 if panels > 1 else 1
    rows = (panels + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(7 * cols, 4.2 * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    colors = ("tab:blue", "tab:orange", "tab:green", "tab:purple")
    for ax, (case, arms) in zip(flat, by_case.items(), strict=False):
        for (label, results), color in zip(arms.items(), colors, strict=False):
            for i, r in enumerate(results):
                xs = [1.0 / (1.0 - q / 100.0) for q, _ in r.percentiles]
                ys = [us / 1000.0 for _, us in r.percentiles]
                ax.plot(xs, ys, color=color, alpha=0.8, linewidth=1.2, label=label if i == 0 else None)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ticks = [2, 10, 100, 1000, 10000]
        ax.set_xticks(ticks, ["p50", "p90", "p99", "p99.9", "p99.99"])
        ax.set_ylabel("latency (ms)")
        ratios = "; ".join(
            f"{c.comparison + ' ' if c.comparison else ''}tpx{c.throughput_ratio:.2f} p99x{c.p99_ratio:.2f}"
            for c in cases
            if c.name == case
        )
        several = len(arms) > 2  # three comparisons do not fit on the title's line
        sep = "\n" if several else " "
        ax.set_title(f"{case}:{sep}{ratios}", fontsize=9 if several else 10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    if outage is not None:
        ax = flat[len(by_case)]
        ts = [s["t"] for s in outage.samples]
        ax.plot(ts, [s["rss_mb"] for s in outage.samples], color="tab:red", label="service RSS (MB)")
        ax.set_xlabel("seconds since the collector stopped")
        ax.set_ylabel("RSS (MB)")
        ax2 = ax.twinx()
        ax2.plot(
            ts,
            [s.get("spans_dropped", 0) for s in outage.samples],
            color="tab:gray",
            linestyle="--",
            label="spans dropped",
        )
        ax2.set_ylabel("spans dropped")
        ax.set_title(f"collector outage: RSS growth {outage.growth_mb:.1f} MB", fontsize=10)
        ax.legend(loc="upper left", fontsize=8)
        ax2.legend(loc="lower right", fontsize=8)
    for ax in flat[panels:]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_all(
    out_dir: Path, stamp: str, meta: dict[str, Any], cases: list[CaseResult], outage: OutageResult | None
) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out_dir / f"{stamp}.json",
        "md": out_dir / f"{stamp}.md",
        "png": out_dir / f"{stamp}.png",
    }
    doc = {
        "meta": meta,
        "cases": [c.to_json() for c in cases],
        "outage": outage.to_json() if outage else None,
    }
    paths["json"].write_text(json.dumps(doc, indent=2, default=str))
    paths["md"].write_text(markdown(meta, cases, outage))
    plot(paths["png"], cases, outage)
    return paths
