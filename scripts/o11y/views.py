"""Rich tables for the CLI: status, load results, before/after deltas, a drill's findings."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from scripts.o11y.backend import ComponentStatus
from scripts.o11y.compare import LATENCY_KEYS, Delta

STATE_STYLE = {"running": "green", "paused": "yellow", "exited": "red", "absent": "dim"}


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s // 86400}d{s % 86400 // 3600}h" if s >= 86400 else (
        f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s")


def _mib(n: int | None) -> str:
    return f"{n / 2**20:.0f} MiB" if n else "-"


def status_table(rows: list[ComponentStatus], backend: str) -> Table:
    t = Table(title=f"o11y-box ({backend})")
    for col in ("component", "state", "healthy", "uptime", "memory", "open"):
        t.add_column(col, justify="right" if col in ("uptime", "memory") else "left",
                     overflow="fold" if col == "open" else "ellipsis")
    for r in rows:
        healthy = "-" if r.healthy is None else ("[green]yes[/]" if r.healthy else "[red]no[/]")
        t.add_row(r.name, f"[{STATE_STYLE.get(r.state, 'white')}]{r.state}[/]", healthy,
                  _duration(r.uptime_s), _mib(r.memory_bytes), r.url or "")
    return t


def urls_table(urls: dict[str, str]) -> Table:
    t = Table(title="open")
    t.add_column("what")
    t.add_column("url", overflow="fold")
    for k, v in urls.items():
        t.add_row(k, v)
    return t


def load_table(result: dict[str, Any], title: str = "load") -> Table:
    cfg = result["config"]
    t = Table(title=f"{title}: {cfg['rate']:g} req/s for {result['window_s']:.0f}s, latency ms "
                    "from the intended send time")
    for col in ("route", "requests", "req/s", "errors", "late", *LATENCY_KEYS, "max"):
        t.add_column(col, justify="left" if col == "route" else "right")
    for name, g in [*result["routes"].items(), ("total", result["total"])]:
        lat = g["latency_ms"]
        t.add_row(name, str(g["completed"]), f"{g['throughput_rps']:.1f}",
                  f"{g['errors']}" + (f" ({g['error_ratio']:.1%})" if g["errors"] else ""),
                  str(g["late"]), *(f"{lat[k]:.1f}" if k in lat else "-" for k in [*LATENCY_KEYS, "max"]),
                  style="bold" if name == "total" else None)
    total = result["total"]
    if total.get("unsent"):
        t.caption = f"{total['unsent']} of {total['scheduled']} requests never sent (in-flight cap full)"
    return t


def _fmt(metric: str, v: float | None) -> str:
    if v is None:
        return "-"
    if metric == "error_ratio":
        return f"{v:.2%}"
    if metric in ("completed", "errors", "late"):
        return f"{v:.0f}"
    return f"{v:.1f}"


def deltas_table(ds: list[Delta], labels: tuple[str, str] = ("before", "after"), title: str = "") -> Table:
    t = Table(title=title or f"{labels[0]} -> {labels[1]}")
    for col in ("route", "figure", labels[0], labels[1], "change", "ratio"):
        t.add_column(col, justify="left" if col in ("route", "figure") else "right")
    for d in ds:
        unit = " ms" if d.metric in LATENCY_KEYS else ""
        change = d.change
        style = None
        if change and d.metric in (*LATENCY_KEYS, "errors", "error_ratio", "late"):
            style = "red" if change > 0 else "green"
        sign = "+" if change and change > 0 else ""
        t.add_row(d.group, d.metric + unit, _fmt(d.metric, d.before), _fmt(d.metric, d.after),
                  sign + _fmt(d.metric, change), f"{d.ratio:.2f}" if d.ratio is not None else "-",
                  style=style)
    return t


def exemplars_table(exemplars: list[dict[str, Any]]) -> Table:
    t = Table(title="slowest exemplars in the scenario's window (Prometheus)")
    for col in ("trace id", "ms", "bucket le", "one of this load's slowest", "open"):
        t.add_column(col, overflow="fold" if col == "open" else "ellipsis")
    for e in exemplars:
        t.add_row(e["trace_id"], f"{e['value_ms']:.1f}", str(e.get("le") or "-"),
                  "yes" if e.get("slowest_of_this_load") else "-", e.get("trace_url") or "")
    return t


def panel_lines(panels: list[dict[str, Any]], grafana_available: bool) -> list[str]:
    """One block per panel; whole URLs on their own lines, so they can be copied from a terminal."""
    note = "" if grafana_available else " (Grafana runs under compose; natively the Prometheus link shows it)"
    lines = ["panels to open" + note]
    for p in panels:
        lines.append(f"  {p['dashboard']} ({p['dashboard_uid']}) > panel {p['panel_id']}: {p['title']}")
        lines.append(f"    grafana:    {p['grafana_url']}")
        if not grafana_available and p.get("prometheus_url"):
            lines.append(f"    prometheus: {p['prometheus_url']}")
    return lines
