"""`o11y compare` deltas, what counts as moved, and the before/after plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts.o11y import compare, load, open_loop, plot


def _result(latencies_ms: dict[str, list[float]], failures: int = 0) -> dict:
    rec = open_loop.Recording(rate=10, duration_s=10.0, late_s=0.01)
    for route, values in latencies_ms.items():
        for i, ms in enumerate(values):
            status = 503 if i < failures else 200
            outcome = open_loop.Outcome(status)
            rec.samples.append(open_loop.Sample(route, i / 10, i / 10, ms / 1000, ms / 1000, outcome))
    rec.scheduled = len(rec.samples)
    return load.result_dict(rec, {"rate": 10}, 0.0)


def test_deltas_per_route_and_total() -> None:
    before = _result({"evaluate": [10.0] * 99 + [100.0], "records": [5.0] * 50})
    after = _result({"evaluate": [10.0] * 98 + [300.0, 400.0], "partner": [20.0] * 5}, failures=2)
    ds = {(d.group, d.metric): d for d in compare.deltas(before, after)}
    p99 = ds[("evaluate", "p99")]
    assert (p99.before, p99.after, p99.change, p99.ratio) == (10.0, 300.0, 290.0, 30.0)
    assert ds[("evaluate", "errors")].change == 2
    assert ds[("records", "p50")].after is None and ds[("records", "p50")].change is None
    assert ds[("partner", "p50")].before is None
    assert {g for g, _ in ds} == {"evaluate", "records", "partner", "total"}


def test_moved_ignores_noise_and_the_generators_own_lateness() -> None:
    before = _result({"evaluate": [10.0] * 100})
    after = _result({"evaluate": [10.5] * 99 + [50.0]})
    moved = {(d.group, d.metric) for d in compare.moved(compare.deltas(before, after))}
    assert ("evaluate", "p99.9") in moved  # 10 -> 50 ms
    assert ("evaluate", "p50") not in moved  # +5 %: noise
    assert not any(m == "late" for _, m in moved)


def test_ratio_is_undefined_from_zero() -> None:
    d = compare.Delta("total", "errors", 0.0, 3.0)
    assert d.ratio is None and d.change == 3.0
    assert d.as_dict()["ratio"] is None


def test_plot_is_a_png(tmp_path: Path) -> None:
    before = _result({"evaluate": [float(v) for v in range(1, 200)], "records": [3.0, 4.0]})
    after = _result({"evaluate": [float(v) * 2 for v in range(1, 200)]})
    out = plot.percentile_plot(before, after, tmp_path / "sub" / "cmp.png")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_load_result_rejects_other_files(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text(json.dumps({"kind": "something"}))
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(open_loop.LoadError, match="not an `o11y load --out` file"):
        load.load_result(tmp_path / "x.json")
    with pytest.raises(open_loop.LoadError, match="not JSON"):
        load.load_result(tmp_path / "bad.json")
    with pytest.raises(open_loop.LoadError, match="cannot read"):
        load.load_result(tmp_path / "missing.json")


def test_a_handful_of_requests_never_moves() -> None:
    before = _result({"evaluate": [10.0] * 100, "partner": [10.0] * 5})
    after = _result({"evaluate": [10.0] * 100, "partner": [90.0] * 5})
    ds = compare.deltas(before, after)
    assert next(d for d in ds if (d.group, d.metric) == ("partner", "p50")).ratio == 9.0
    assert not [d for d in compare.moved(ds) if d.group == "partner"]
    assert [d.metric for d in compare.moved(ds, min_requests=5) if d.group == "partner"] == [
        "p50", "p90", "p95", "p99", "p99.9"]
