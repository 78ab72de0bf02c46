"""stack/opensearch/: the logs index template and retention policy against the catalog's field paths."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sample_service.telemetry import catalog
from scripts import opensearch_setup
from tests.static.binaries import REPO

OS_DIR = REPO / "stack" / "opensearch"

# LogField path -> the mapping type it must have (keyword to filter/aggregate exactly, numbers for
# percentiles computed from logs, date for the time axis).
EXPECTED = {
    catalog.LogField.TIMESTAMP: "date",
    catalog.LogField.TRACE_ID: "keyword",
    catalog.LogField.SPAN_ID: "keyword",
    catalog.LogField.BODY: "text",
    catalog.LogField.SEVERITY_TEXT: "keyword",
    catalog.LogField.SERVICE_NAME: "keyword",
    catalog.LogField.ROUTE: "keyword",
    catalog.LogField.METHOD: "keyword",
    catalog.LogField.STATUS: "long",
    catalog.LogField.DURATION_S: "double",
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return opensearch_setup.load_json(OS_DIR / opensearch_setup.TEMPLATE_FILE)


def _field_type(mappings: dict[str, Any], dotted: str) -> str | None:
    node: dict[str, Any] = mappings
    parts = dotted.split(".")
    # OpenSearch expands dotted keys into objects: walk properties one part at a time
    for i, part in enumerate(parts):
        props = node.get("properties", {})
        if part not in props:
            return None
        node = props[part]
        if i == len(parts) - 1:
            return node.get("type")
    return None


def test_template_targets_the_catalog_index(template: dict[str, Any]) -> None:
    assert catalog.LOGS_INDEX == opensearch_setup.LOGS_INDEX
    assert template["index_patterns"] == [f"{catalog.LOGS_INDEX}*"]
    assert "data_stream" in template, "o11y-logs is a data stream (rollover + retention)"
    assert "_comment" not in json.dumps(template), "comments must be stripped before sending"


@pytest.mark.parametrize("field", sorted(EXPECTED))
def test_every_catalog_field_is_mapped(template: dict[str, Any], field: str) -> None:
    assert _field_type(template["template"]["mappings"], field) == EXPECTED[field], field


def test_attributes_cannot_cause_mapping_conflicts(template: dict[str, Any]) -> None:
    assert template["template"]["mappings"]["dynamic"] is False


def test_retention_policy() -> None:
    policy = opensearch_setup.load_json(OS_DIR / opensearch_setup.POLICY_FILE)["policy"]
    states = {s["name"]: s for s in policy["states"]}
    assert policy["default_state"] in states
    assert any("delete" in a for a in states["delete"]["actions"])
    assert policy["ism_template"][0]["index_patterns"] == [f"{catalog.LOGS_INDEX}*"]
    for s in states.values():
        for t in s["transitions"]:
            assert t["state_name"] in states
