"""The native stack itself: healthy, loopback-only, same versions as compose, same model as compose."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import httpx
import pytest

from scripts.native import compose_model, obtain
from scripts.native.components import ABSENT, JAEGER_FOR_TEMPO
from scripts.native.run import NativeStack, listening_sockets, non_loopback
from scripts.native.translate import CONTRACT_PORTS

pytestmark = pytest.mark.stack
REPO = Path(__file__).resolve().parents[2]


def _binary(name: str) -> Path:
    try:
        return Path(obtain.cached_path(name))
    except obtain.NotObtained as exc:  # a missing component fails with the way to get it
        pytest.fail(f"{exc} (or `make native-deps`)")


def test_every_component_healthy(native_stack: NativeStack) -> None:
    rows = {r.name: r for r in native_stack.rows()}
    assert set(rows) == set(native_stack.model.services), "every compose service is accounted for"  # type: ignore[union-attr]
    for name, row in rows.items():
        if name in ABSENT:
            assert row.health == "absent natively" and row.note, row
        elif native_stack.specs[name].kind == "oneshot":
            assert row.health == "completed (exit 0)", row
        else:
            assert row.health.startswith("healthy"), row
            assert row.rss > 0, row
    report = native_stack.report()
    assert "grafana" in report and "absent natively" in report


def test_listens_on_loopback_only(native_stack: NativeStack) -> None:
    """No component listens beyond 127.0.0.1, and each listens on its contract ports."""
    for name, spec in native_stack.specs.items():
        if spec.kind not in ("daemon", "postgres"):
            continue
        pid = native_stack.pid_of(name)
        assert pid, f"{name} has no pid"
        addrs = listening_sockets(pid)
        assert not non_loopback(addrs), f"{name} listens beyond loopback: {addrs}"
        ports = {int(a.rsplit(":", 1)[1]) for a in addrs}
        published = {p.published for p in native_stack.model.services[name].ports}  # type: ignore[union-attr]
        assert published <= ports, (
            f"{name}: compose publishes {published}, natively listening on {sorted(ports)}"
        )
        assert published <= set(CONTRACT_PORTS[name])
        # nothing listens outside the network contract (one loopback address holds the stack)
        assert ports <= set(CONTRACT_PORTS[name]), (
            f"{name} listens on {sorted(ports)}: not all in the contract"
        )


def _version_of(binary: Path) -> str:
    proc = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30)
    return (proc.stdout + proc.stderr).strip()


def test_native_versions_equal_compose_pins(native_stack: NativeStack) -> None:
    pins = compose_model.read_env_file(REPO / ".env")
    errors = []

    out = _version_of(_binary("otelcol-o11y"))
    # the native collector is at OTELCOL_NATIVE_VERSION (compose's OTELCOL_VERSION differs: docs/native.md)
    if not re.search(rf"\b{re.escape(pins['OTELCOL_NATIVE_VERSION'])}\b", out):
        errors.append(f"otelcol-o11y: {out!r} != OTELCOL_NATIVE_VERSION {pins['OTELCOL_NATIVE_VERSION']}")

    want = pins["PROMETHEUS_VERSION"].lstrip("v")
    for tool in ("prometheus", "promtool"):
        out = _version_of(_binary(tool))
        if not re.search(rf"version {re.escape(want)}\b", out):
            errors.append(f"{tool}: {out!r} != PROMETHEUS_VERSION {want}")

    # Tempo is absent natively (AGPL, never built): its stand-in Jaeger runs in the tempo service.
    assert native_stack.specs["tempo"].extra.get("component") == "jaeger", native_stack.specs["tempo"]
    assert native_stack.specs["tempo"].argv[0] == str(_binary("jaeger"))
    out = _version_of(_binary("jaeger"))
    if not re.search(rf"\bv{re.escape(pins['JAEGER_VERSION'])}\b", out):
        errors.append(f"jaeger: {out!r} != JAEGER_VERSION {pins['JAEGER_VERSION']}")

    root = httpx.get("http://127.0.0.1:9200/", timeout=10).json()
    if root["version"]["number"] != pins["OPENSEARCH_VERSION"]:
        errors.append(
            f"opensearch: {root['version']['number']} != OPENSEARCH_VERSION {pins['OPENSEARCH_VERSION']}"
        )

    # Postgres comes from Debian, whose point release need not be the image's: the major must match
    # (data-dir format and behaviour); docs/native.md says so.
    out = _version_of(_binary("postgres"))
    image_major = re.search(r":(\d+)", pins["POSTGRES_IMAGE"])
    native_major = re.search(r"PostgreSQL\)\s+(\d+)", out)
    if not (image_major and native_major and image_major.group(1) == native_major.group(1)):
        errors.append(f"postgres: {out!r} major != image {pins['POSTGRES_IMAGE']}")
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("overrides", [(), (JAEGER_FOR_TEMPO,)], ids=["compose.yaml", "+jaeger-for-tempo"])
def test_model_from_real_compose_binary_equals_fallback(overrides: tuple[Path, ...]) -> None:
    """The runner reads compose.yaml (and override files) through `docker-compose config`; its
    PyYAML fallback agrees, override merging (`!reset`, `!override`) included."""
    binary = _binary("docker-compose")
    real = compose_model.load(REPO, compose_binary=str(binary), compose_files=overrides)
    fallback = compose_model.load(REPO, prefer_binary=False, compose_files=overrides)
    assert real.services["tempo"].image == fallback.services["tempo"].image
    assert real.source == "docker-compose config"
    assert list(real.services) != [] and set(real.services) == set(fallback.services)
    for name, a in real.services.items():
        b = fallback.services[name]
        for attr in ("image", "command", "entrypoint", "environment", "depends_on", "mem_limit_bytes"):
            assert getattr(a, attr) == getattr(b, attr), (
                f"{name}.{attr}: {getattr(a, attr)} != {getattr(b, attr)}"
            )
        assert sorted(a.mounts, key=str) == sorted(b.mounts, key=str), name
        assert sorted(a.ports, key=str) == sorted(b.ports, key=str), name
        assert (a.healthcheck is None) == (b.healthcheck is None), name
        if a.healthcheck and b.healthcheck:
            assert a.healthcheck.test == b.healthcheck.test, name
    assert real.start_order() == fallback.start_order()
