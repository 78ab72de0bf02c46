"""stack/prometheus/ checked by the real promtool: config, rules, and the rules' unit tests."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from sample_service.telemetry import catalog
from tests.static.binaries import REPO, binary, explain, run

PROM_DIR = REPO / "stack" / "prometheus"
RULE_FILES = sorted((PROM_DIR / "rules").glob("*.yml"))
TEST_FILES = sorted((PROM_DIR / "tests").glob("*.yml"))
JOBS = {
    "sample-service": "sample-service:8000",
    "partner-api": "partner-api:8001",
    "otel-collector": "otel-collector:8888",
    "prometheus": "prometheus:9090",
    "tempo": "tempo:3200",
}


def test_files_present() -> None:
    assert RULE_FILES and TEST_FILES


def test_promtool_check_config(tmp_path: Path) -> None:
    """The config as compose mounts it, with /etc/prometheus mapped to the repo dir (as natively)."""
    rendered = tmp_path / "prometheus.yml"
    rendered.write_text((PROM_DIR / "prometheus.yml").read_text().replace("/etc/prometheus", str(PROM_DIR)))
    proc = run([binary("promtool"), "check", "config", rendered])
    assert proc.returncode == 0, explain(proc)
    out = proc.stdout + proc.stderr
    # the rule files were found through the glob and checked too, not silently zero of them
    for f in RULE_FILES:
        assert str(f) in out, f"promtool did not check {f}:\n{out}"


def test_promtool_check_rules() -> None:
    proc = run([binary("promtool"), "check", "rules", *RULE_FILES])
    assert proc.returncode == 0, explain(proc)


def test_promtool_test_rules() -> None:
    proc = run([binary("promtool"), "test", "rules", *TEST_FILES], cwd=PROM_DIR / "tests")
    assert proc.returncode == 0, explain(proc)
    assert "SUCCESS" in proc.stdout + proc.stderr


def test_scrape_jobs_match_contract() -> None:
    cfg = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    jobs = {
        j["job_name"]: [t for sc in j["static_configs"] for t in sc["targets"]] for j in cfg["scrape_configs"]
    }
    assert jobs == {k: [v] for k, v in JOBS.items()}
    # span metrics are pushed (collector otlphttp/prometheus), under the catalog's names
    assert cfg["otlp"]["translation_strategy"] == "UnderscoreEscapingWithSuffixes"
    assert cfg["global"]["scrape_protocols"][0] == "OpenMetricsText1.0.0", "exemplars need OpenMetrics first"
    assert cfg["rule_files"] == ["/etc/prometheus/rules/*.yml"]


def _known_names() -> set[str]:
    names = {"up"}
    for m in catalog.all_metrics():
        names |= {m.prom, m.series, m.count, m.sum}
    for stage in catalog.COLLECTOR_STAGES:
        for signal in ("spans", "log_records", "metric_points"):
            names.add(catalog.collector_metric(stage, signal))
    return names


def test_rules_use_catalog_metric_names() -> None:
    """Every metric a rule selects is in the catalog (or is a recording rule defined here)."""
    known = _known_names()
    recorded: set[str] = set()
    exprs: list[str] = []
    for f in RULE_FILES:
        for group in yaml.safe_load(f.read_text())["groups"]:
            for rule in group["rules"]:
                if "record" in rule:
                    recorded.add(rule["record"])
                exprs.append(rule["expr"])
    # selectors: a metric name followed by `{` or `[`, or a recording-rule name (contains `:`)
    selector = re.compile(r"(?<![\w:\"'])([a-zA-Z_:][\w:]*)\s*(?=[{\[])|(?<![\w:\"'])([a-z_]+:[\w:]+)")
    used: set[str] = set()
    for e in exprs:
        e = re.sub(r"\{[^}]*\}", "{}", e)  # label matchers are not metric names
        for m in selector.finditer(e):
            used.add(m.group(1) or m.group(2))
    assert used, "no selectors found: the parser of this test is broken"
    unknown = used - known - recorded
    assert not unknown, f"rules select metrics the catalog does not define: {sorted(unknown)}"


@pytest.mark.parametrize("quantile", ["p50", "p90", "p95", "p99"])
def test_percentile_recording_rules_exist(quantile: str) -> None:
    text = "".join(f.read_text() for f in RULE_FILES)
    assert f"job_http_route:{catalog.HTTP_SERVER_DURATION.prom}:{quantile}_1m" in text


def test_service_jobs_scrape_native_histograms_and_keep_classic_buckets() -> None:
    """Issue 14: protobuf first (native histograms only travel in it), both kinds stored."""
    cfg = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    for name in ("sample-service", "partner-api"):
        job = jobs[name]
        assert job["scrape_protocols"][0] == "PrometheusProto", name
        assert "OpenMetricsText1.0.0" in job["scrape_protocols"], f"{name}: exemplars need OpenMetrics next"
        assert job["scrape_native_histograms"] is True, name
        assert job["always_scrape_classic_histograms"] is True, f"{name}: `_bucket` readers and exemplars"
