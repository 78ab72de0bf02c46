"""The accuracy report: the shape x panel x quantile table, the before/after summary, the plot and
the JSON file under benchmarks/results/.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import asdict
from pathlib import Path

from benchmarks.accuracy_queries import DEFAULT_RANGE, SCRAPE_INTERVAL_S
from benchmarks.accuracy_results import BOUND, MIN_SPANS, QUANTILES, PanelResult, PhaseResult, summarised

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def _short(panel_key: str) -> str:
    dash, title, ref = panel_key.split(" | ", 2)
    return f"{dash.replace('o11y-', '')}: {title} [{ref}]"


def table(phases: list[PhaseResult]) -> list[str]:
    """One line per shape and panel, the relative error per quantile (signed, %)."""
    lines = [f"{'shape':<10} {'panel':<96} " + " ".join(f"{f'p{round(q * 100)}':>8}" for q in QUANTILES)]
    for ph in phases:
        by_panel: dict[str, dict[float, PanelResult]] = {}
        for r in ph.rows:
            title = _short(r.panel).rsplit(" [", 1)[0]
            if "functions |" in r.panel:
                title += f" {{{r.series}}}" + (" whole phase" if r.scope == "phase" else "")
                if not summarised(r) and r.scope == "phase":
                    title += f" (n={r.requests}, counted {r.counted})"
            elif not r.series:
                title += " (all routes)"
            by_panel.setdefault(title, {})[r.quantile] = r
        for title, cells in sorted(by_panel.items()):
            row = []
            for q in QUANTILES:
                cell = cells.get(q)
                err = cell.rel_error if cell is not None else None
                row.append(f"{err * 100:+7.1f}%" if err is not None else f"{'—':>8}")
            lines.append(f"{ph.shape:<10} {title[:96]:<96} " + " ".join(row))
        worst = ph.worst()
        lines.append(
            f"{ph.shape:<10} {'exact (access records, ' + str(len(ph.durations)) + ' requests)':<96} "
            + " ".join(f"{ph.exact.get(f'p{round(q * 100)}', math.nan) * 1000:6.1f}ms" for q in QUANTILES)
            + (f"   worst |err| {worst * 100:.1f}%" if worst is not None else "")
        )
    return lines


def _variant(panel_key: str) -> str:
    return panel_key.split(": ", 1)[0] if panel_key.startswith("before: ") else ""


def summary_table(phases: list[PhaseResult], spans: bool = False) -> list[str]:
    """The closing-note table: variant x shape x quantile, worst |relative error| over the request
    latency panels and rules (``spans``: over the span-metrics panels instead)."""
    head = " ".join(f"{f'p{round(q * 100)}':>8}" for q in QUANTILES)
    what = (
        f"span-metrics panels over the whole phase, span names with >= {MIN_SPANS} spans" if spans
        else "request-latency panels + rules"
    )
    lines = [f"{'variant':<8} {'shape':<10} {head}  (worst |err| over {what})"]
    variants = sorted({_variant(r.panel) for ph in phases for r in ph.rows}, key=lambda v: v != "before")
    for variant in variants:
        for ph in phases:
            cells = []
            for q in QUANTILES:
                errs = [
                    abs(r.rel_error) for r in ph.rows
                    if r.quantile == q and r.rel_error is not None and summarised(r)
                    and _variant(r.panel) == variant and ("functions |" in r.panel) == spans
                ]
                cells.append(f"{max(errs) * 100:7.1f}%" if errs else f"{'—':>8}")
            lines.append(f"{variant or 'now':<8} {ph.shape:<10} " + " ".join(cells))
    return lines


def plot(phases: list[PhaseResult], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # the bench extra carries matplotlib
        return None
    n = max(1, len(phases))
    fig, axes = plt.subplots(2, n, figsize=(6 * n, 8.5), squeeze=False)
    colors = {0.5: "tab:blue", 0.9: "tab:green", 0.95: "tab:orange", 0.99: "tab:red"}
    styles = {"before": ":", "": "--"}
    for ax, bx, ph in zip(axes[0], axes[1], phases, strict=False):
        ms = [d * 1000 for d in ph.durations if d > 0]
        if ms:
            lo, hi = min(ms), max(ms)
            bins = [lo * (hi / lo) ** (i / 60) for i in range(61)] if hi > lo else 30
            ax.hist(ms, bins=bins, color="#bbb", label="exact (access records)")
            ax.set_xscale("log")
        for q in QUANTILES:
            ex = ph.exact.get(f"p{round(q * 100)}")
            if ex:
                ax.axvline(ex * 1000, color=colors[q], linestyle="-", linewidth=1.5,
                           label=f"exact p{round(q * 100)}")
            for variant, style in styles.items():
                vals = sorted({round(r.panel_value * 1000, 3) for r in ph.rows
                               if r.quantile == q and r.series and r.panel_value
                               and _variant(r.panel) == variant and "functions |" not in r.panel})
                for v in vals:
                    ax.axvline(v, color=colors[q], linestyle=style, linewidth=1.0)
        ax.set_title(f"{ph.shape}: solid = exact, dashed = panels now, dotted = before", fontsize=9)
        ax.set_xlabel("request duration (ms)")
        ax.legend(fontsize=7)
        # worst |relative error| per quantile over the request-latency panels, per variant
        variants = [v for v in ("before", "") if any(_variant(r.panel) == v for r in ph.rows)]
        width = 0.8 / max(1, len(variants))
        for i, variant in enumerate(variants):
            worst = []
            for q in QUANTILES:
                errs = [abs(r.rel_error) * 100 for r in ph.rows if r.quantile == q and r.rel_error is not None
                        and _variant(r.panel) == variant and "functions |" not in r.panel]
                worst.append(max(errs) if errs else 0.0)
            bx.bar([j + i * width for j in range(len(QUANTILES))], worst, width,
                   label=variant or "now", color="#c66" if variant else "#4a4")
        bx.axhline(BOUND * 100, color="k", linestyle="--", linewidth=1, label=f"{BOUND * 100:g} % bound")
        bx.set_xticks([j + width * (len(variants) - 1) / 2 for j in range(len(QUANTILES))],
                      [f"p{round(q * 100)}" for q in QUANTILES])
        bx.set_ylabel("worst |relative error| over panels + rules (%)")
        bx.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_results(phases: list[PhaseResult], label: str = "") -> tuple[Path, Path | None]:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    base = RESULTS_DIR / f"percentile-accuracy-{stamp}{'-' + label if label else ''}"
    doc = {
        "bound": BOUND,
        "default_range": DEFAULT_RANGE,
        "scrape_interval_s": SCRAPE_INTERVAL_S,
        "phases": [
            {**{k: v for k, v in asdict(ph).items() if k != "durations"}, "exact_requests": len(ph.durations)}
            for ph in phases
        ],
        "summary": summary_table(phases),
        "summary_span_metrics": summary_table(phases, spans=True),
    }
    json_path = base.with_suffix(".json")
    json_path.write_text(json.dumps(doc, indent=1))
    return json_path, plot(phases, base.with_suffix(".png"))
