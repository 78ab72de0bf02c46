"""stack/prometheus/rules/slo.yml against the catalog, the dashboards and the SRE workbook's pattern.

promtool parses the file and runs its unit tests (stack/prometheus/tests/slo_test.yml) in
test_prometheus_config.py; this holds the rules to the names the dashboards read, to the objectives
the dashboards colour against, and to the window/burn-rate pairs of multi-window, multi-burn-rate
alerting (Google SRE workbook, "Alerting on SLOs").
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from dashboards import common
from sample_service.telemetry import catalog
from tests.static.binaries import REPO

SLO_FILE = REPO / "stack" / "prometheus" / "rules" / "slo.yml"
SLIS = (catalog.SLO_AVAILABILITY, catalog.SLO_LATENCY)
# (long window, short window, burn rate, severity): the workbook's recommended table for a 30-day SLO
WORKBOOK = (
    ("1h", "5m", 14.4, "page"),
    ("6h", "30m", 6.0, "page"),
    ("1d", "2h", 3.0, "ticket"),
    ("3d", "6h", 1.0, "ticket"),
)


def rules() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(SLO_FILE.read_text())["groups"] for r in g["rules"]]


def test_recording_rules_are_the_catalog_names_per_job() -> None:
    recorded = {r["record"]: r["expr"] for r in rules() if "record" in r}
    assert set(recorded) == {catalog.slo_error_ratio(s, w) for s in SLIS for w in catalog.SLO_WINDOWS}
    for name, expr in recorded.items():
        window = name.rsplit("ratio_rate", 1)[1]
        groupings = set(re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr))
        assert groupings == {"job"}, f"{name}: the dashboards and alerts read one series per job"
        assert set(re.findall(r"\[(\w+)\]", expr)) == {window}, name
        # defined with no traffic: the denominator never reaches 0
        assert re.search(r"/\s*clamp_min\(", expr), name


def test_objectives_match_the_dashboards() -> None:
    text = SLO_FILE.read_text()
    (le,) = set(re.findall(r'le="([^"]+)"', text))
    assert float(le) == common.LATENCY_SLO_S, "latency SLI bucket != the dashboards' objective"
    assert float(le) in catalog.HTTP_DURATION_BUCKETS_S, "the latency SLI must sit on a bucket bound (exact)"
    assert set(re.findall(r'http_response_status_code=~"([^"]+)"', text)) == {common.SERVER_ERROR_STATUS_RE}
    budgets = {float(b) for b in re.findall(r"\* ([\d.]+)\)", text)}
    assert budgets == {common.ERROR_RATIO_SLO}, budgets


def test_alerts_are_multi_window_multi_burn_rate() -> None:
    alerts = {r["alert"]: r for r in rules() if "alert" in r}
    assert len(alerts) == 4
    for sli in SLIS:
        pairs_seen = []
        for a in (a for a in alerts.values() if a["labels"]["slo"] == sli):
            condition = (
                r"\(\S+?ratio_rate(\w+) > \(([\d.]+) \* [\d.]+\)"
                r" and \S+?ratio_rate(\w+) > \(([\d.]+) \* [\d.]+\)\)"
            )
            conditions = re.findall(condition, a["expr"].replace("\n", " "))
            assert conditions, a["alert"]
            for long_w, long_rate, short_w, short_rate in conditions:
                assert long_rate == short_rate, a["alert"]
                assert a["expr"].count(catalog.slo_error_ratio(sli, long_w)) == 1
                pairs_seen.append((long_w, short_w, float(long_rate), a["labels"]["severity"]))
            assert "for" not in a, f"{a['alert']}: the short window already debounces; `for` only delays"
        assert sorted(pairs_seen) == sorted(WORKBOOK), (sli, pairs_seen)
