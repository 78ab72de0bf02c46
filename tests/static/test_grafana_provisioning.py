"""stack/grafana/ provisioning: valid YAML, the catalog's fixed uids, and links that resolve.

No Grafana binary exists here (a later issue adds one), so this checks the files against the
catalog and compose: every cross-datasource link must name a provisioned uid, and every field a
link or the logs view uses must be a field the OpenSearch documents really have (LogField).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from sample_service.telemetry import catalog
from tests.static.binaries import REPO

PROV = REPO / "stack" / "grafana" / "provisioning"
DS_FILE = PROV / "datasources" / "datasources.yaml"
UIDS = {catalog.DatasourceUID.PROMETHEUS, catalog.DatasourceUID.TEMPO, catalog.DatasourceUID.OPENSEARCH}


@pytest.fixture(scope="module")
def datasources() -> dict[str, dict[str, Any]]:
    data = yaml.safe_load(DS_FILE.read_text())
    assert data["apiVersion"] == 1
    return {d["uid"]: d for d in data["datasources"]}


def _linked_uids(node: Any) -> list[str]:
    """Every datasourceUid anywhere in a jsonData tree."""
    found: list[str] = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "datasourceUid":
                found.append(v)
            else:
                found.extend(_linked_uids(v))
    elif isinstance(node, list):
        for v in node:
            found.extend(_linked_uids(v))
    return found


def test_all_yaml_valid() -> None:
    files = sorted(PROV.rglob("*.yaml")) + sorted(PROV.rglob("*.yml"))
    assert len(files) >= 2
    for f in files:
        assert isinstance(yaml.safe_load(f.read_text()), dict), f


def test_fixed_uids(datasources: dict[str, dict[str, Any]]) -> None:
    assert set(datasources) == UIDS
    assert datasources[catalog.DatasourceUID.PROMETHEUS]["type"] == "prometheus"
    assert datasources[catalog.DatasourceUID.TEMPO]["type"] == "tempo"
    assert datasources[catalog.DatasourceUID.OPENSEARCH]["type"] == "grafana-opensearch-datasource"
    assert [u for u, d in datasources.items() if d.get("isDefault")] == [catalog.DatasourceUID.PROMETHEUS]
    for d in datasources.values():
        assert d.get("editable") is False, f"{d['uid']}: provisioned links must not drift in the UI"


def test_urls_follow_network_contract(datasources: dict[str, dict[str, Any]]) -> None:
    assert datasources[catalog.DatasourceUID.PROMETHEUS]["url"] == "http://prometheus:9090"
    assert datasources[catalog.DatasourceUID.TEMPO]["url"] == "http://tempo:3200"
    assert datasources[catalog.DatasourceUID.OPENSEARCH]["url"] == "http://opensearch:9200"


def test_every_link_resolves(datasources: dict[str, dict[str, Any]]) -> None:
    links = [(uid, target) for uid, d in datasources.items() for target in _linked_uids(d.get("jsonData"))]
    assert len(links) >= 5, links
    for source, target in links:
        assert target in datasources, f"{source} links to unknown datasource uid {target!r}"
        assert target != source, f"{source} links to itself"


def test_exemplars_to_tempo(datasources: dict[str, dict[str, Any]]) -> None:
    dest = datasources[catalog.DatasourceUID.PROMETHEUS]["jsonData"]["exemplarTraceIdDestinations"]
    assert {"name": "trace_id", "datasourceUid": catalog.DatasourceUID.TEMPO} in dest


def test_tempo_links(datasources: dict[str, dict[str, Any]]) -> None:
    jd = datasources[catalog.DatasourceUID.TEMPO]["jsonData"]
    t2l = jd["tracesToLogsV2"]
    assert t2l["datasourceUid"] == catalog.DatasourceUID.OPENSEARCH
    # the query filters the log documents' trace id field by the trace's id ($$ = literal $ after
    # Grafana's env expansion of provisioning files)
    assert t2l["customQuery"] is True
    assert t2l["query"] == f'{catalog.LogField.TRACE_ID}:"$${{__trace.traceId}}"'
    assert jd["serviceMap"]["datasourceUid"] == catalog.DatasourceUID.PROMETHEUS
    assert jd["nodeGraph"]["enabled"] is True
    for q in jd["tracesToMetrics"]["queries"]:
        assert catalog.SPAN_DURATION.series in q["query"]


def test_opensearch_logs_settings(datasources: dict[str, dict[str, Any]]) -> None:
    jd = datasources[catalog.DatasourceUID.OPENSEARCH]["jsonData"]
    assert jd["database"] == catalog.LOGS_INDEX
    assert jd["timeField"] == catalog.LogField.TIMESTAMP
    assert jd["logMessageField"] == catalog.LogField.BODY
    assert jd["logLevelField"] == catalog.LogField.SEVERITY_TEXT
    assert jd["flavor"] == "opensearch"
    links = jd["dataLinks"]
    assert {
        "field": catalog.LogField.TRACE_ID,
        "url": "$${__value.raw}",
        "datasourceUid": catalog.DatasourceUID.TEMPO,
    } in links


def test_no_unescaped_grafana_variables() -> None:
    """`${__x}` / `$__x` unescaped would be eaten by Grafana's env-var expansion of provisioning files."""
    text = DS_FILE.read_text()
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert not re.search(r"(?<!\$)\$\{?__", body), "use $$ before Grafana link variables"


def test_dashboards_provider_matches_compose_mount() -> None:
    prov = yaml.safe_load((PROV / "dashboards" / "dashboards.yaml").read_text())
    (provider,) = prov["providers"]
    path = provider["options"]["path"]
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./dashboards/json:{path}:ro" in mounts
    assert "./stack/grafana/provisioning:/etc/grafana/provisioning:ro" in mounts


def test_plugin_baked_into_image_not_downloaded_at_start() -> None:
    dockerfile = (REPO / "stack" / "grafana" / "Dockerfile").read_text()
    assert re.search(
        r"grafana cli .*plugins install\s*\\?\s*\n?\s*grafana-opensearch-datasource "
        r"\"\$\{OPENSEARCH_DATASOURCE_PLUGIN_VERSION\}\"",
        dockerfile,
    )
    compose = (REPO / "compose.yaml").read_text()
    assert "GF_INSTALL_PLUGINS" not in compose and "GF_PLUGINS_PREINSTALL" not in compose
    ini = (REPO / "stack" / "grafana" / "grafana.ini").read_text()
    assert re.search(r"^preinstall_disabled\s*=\s*true", ini, re.M)
