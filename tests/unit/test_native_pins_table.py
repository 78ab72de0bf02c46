"""docs/native.md "Compose pin vs native version" holds every version pin of .env: the pin's value,
what the native build gets, and why they differ. This test reads both and fails when they disagree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from scripts.native import obtain

REPO = Path(__file__).resolve().parents[2]
PINS = obtain.read_env_pins(REPO)
# .env key -> the obtain.py component that gets it natively (absent ones must not be obtainable)
COMPONENT_OF = {
    "OTELCOL_VERSION": "otelcol",
    "OTELCOL_NATIVE_VERSION": "otelcol",
    "PROMETHEUS_VERSION": "prometheus",
    "OPENSEARCH_VERSION": "opensearch",
    "POSTGRES_IMAGE": "postgres",
    "TEMPO_VERSION": "tempo",
    "JAEGER_VERSION": "jaeger",
    "GRAFANA_VERSION": "grafana",
    "OPENSEARCH_DATASOURCE_PLUGIN_VERSION": "grafana-opensearch-plugin",
    "BUSYBOX_IMAGE": "busybox",
    "OTELCOL_SCALE_OUT_VERSION": "otelcol-scale-out",
    "THANOS_VERSION": "thanos",
    "KAFKA_IMAGE": "kafka",
    "SEAWEEDFS_IMAGE": "seaweedfs",
}


def parse_table(text: str) -> dict[str, tuple[str, str, str]]:
    """{env key: (pin value, native version or "absent", why)} from the section's table."""
    section = text.split("## Compose pin vs native version", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, tuple[str, str, str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[1].startswith("`"):
            continue
        m = re.fullmatch(r"`([A-Z_]+)=([^`]*)`", cells[1])
        assert m, f"pin cell must be `KEY=VALUE`: {cells[1]!r}"
        native = re.fullmatch(r"`([^`]+)`|\*\*(absent)\*\*", cells[2])
        assert native, f"native cell must be `version` or **absent**: {cells[2]!r}"
        assert m.group(1) not in rows, f"{m.group(1)} twice in the table"
        rows[m.group(1)] = (m.group(2), native.group(1) or "absent", cells[3])
    return rows


def comparable(key: str, value: str) -> str:
    """The form of a pin the native version is compared with (Postgres: its major)."""
    if key == "POSTGRES_IMAGE":
        return obtain.postgres_major({key: value})
    return value.removeprefix("v")


def native_actual(key: str) -> str:
    """What obtain.py / the build manifest would give natively for this pin."""
    comp = COMPONENT_OF[key]
    if comp == "otelcol":
        return obtain.builder_config_version(REPO / obtain.BUILDER_CONFIG)
    if comp == "otelcol-scale-out":
        return obtain.builder_config_version(REPO / obtain.SCALE_OUT_BUILDER_CONFIG)
    if comp == "postgres":
        return obtain.postgres_major(PINS)  # obtain_postgres picks Debian's server of the image's major
    return obtain.component_dir(comp, PINS, REPO).name.removeprefix(f"{comp}-")


def check(table: dict[str, tuple[str, str, str]]) -> list[str]:
    errors = []
    version_keys = {k for k in PINS if k.endswith(("_VERSION", "_IMAGE"))}
    errors += [f"{k} is pinned in .env but not in the table" for k in sorted(version_keys - set(table))]
    for key, (pin, native, why) in table.items():
        if PINS.get(key) != pin:
            errors.append(f"{key}: table says {pin!r}, .env says {PINS.get(key)!r}")
            continue
        if not why:
            errors.append(f"{key}: no reason given")
        if native == "absent":
            try:
                obtain.canonical(COMPONENT_OF[key])
                errors.append(f"{key}: table says absent, but obtain.py obtains {COMPONENT_OF[key]}")
            except ValueError:
                pass
            continue
        try:
            actual = native_actual(key)
        except ValueError as exc:
            errors.append(f"{key}: table says native {native!r}, but obtain.py cannot get it ({exc})")
            continue
        if native != actual:
            errors.append(
                f"{key}: table says native {native!r}, the native build gets {native_actual(key)!r}"
            )
        same = native == comparable(key, pin)
        if same != why.startswith("same"):
            errors.append(f"{key}: native {native!r} vs pin {pin!r}: 'same' only when equal ({why[:40]!r}…)")
    return errors


def test_table_agrees_with_env_and_the_native_build() -> None:
    table = parse_table((REPO / "docs" / "native.md").read_text())
    assert len(table) >= 9
    assert check(table) == []


@pytest.mark.parametrize(
    ("key", "cell", "expect"),
    [
        ("PROMETHEUS_VERSION", ("v3.15.0", "3.15.0", "same version"), "table says 'v3.15.0'"),
        ("OTELCOL_VERSION", (PINS["OTELCOL_VERSION"], "0.138.0", "same version"), "native build gets"),
        ("TEMPO_VERSION", (PINS["TEMPO_VERSION"], "3.0.3", "same"), "obtain.py cannot get it"),
        ("JAEGER_VERSION", (PINS["JAEGER_VERSION"], "absent", "reason"), "obtain.py obtains jaeger"),
    ],
)
def test_the_check_fails_on_disagreement(key: str, cell: tuple[str, str, str], expect: str) -> None:
    table = parse_table((REPO / "docs" / "native.md").read_text())
    table[key] = cell
    errors = check(table)
    assert any(expect in e for e in errors), errors


def test_a_pin_missing_from_the_table_fails() -> None:
    table = parse_table((REPO / "docs" / "native.md").read_text())
    del table["GRAFANA_VERSION"]
    assert check(table) == ["GRAFANA_VERSION is pinned in .env but not in the table"]


def test_collector_row_says_what_is_proven_at_the_compose_version() -> None:
    """The compose collector differs from the native one: its row names the reason and the check build."""
    pin, native, why = parse_table((REPO / "docs" / "native.md").read_text())["OTELCOL_VERSION"]
    assert (
        native
        == PINS["OTELCOL_NATIVE_VERSION"]
        == obtain.builder_config_version(REPO / obtain.BUILDER_CONFIG)
    )
    assert obtain.builder_config_version(REPO / obtain.COMPOSE_CHECK_BUILDER_CONFIG) == pin
    for needed in (
        "opensearchexporter",
        "v0.138.0",
        "collector/builder-config.compose-check.yaml",
        "validate",
    ):
        assert needed in why, needed


def test_e2e_jaeger_image_is_the_pin() -> None:
    text = (REPO / "tests" / "compose" / "jaeger-for-tempo.yaml").read_text()
    assert f"o11y-box-local/jaeger:${{JAEGER_VERSION:-{PINS['JAEGER_VERSION']}}}" in text
