"""The native runner's rewrite of compose configs is mechanical: only the listed tokens change.

docs/native.md ("Differences from compose") lists three rewrites: `<service>:<port>` → 127.0.0.1:<port>,
container paths → host paths, 0.0.0.0 → 127.0.0.1. These tests render every config compose mounts
(and every command line and environment) and prove nothing else differs, using a normaliser written
independently of scripts/native/translate.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from scripts.native import compose_model, compose_spec
from scripts.native.components import ABSENT, JAEGER_FOR_TEMPO, image_component
from scripts.native.translate import (
    CONTRACT_PORTS,
    TranslateError,
    Translator,
    path_map_for,
    render_service,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", params=[(), (JAEGER_FOR_TEMPO,)], ids=["compose.yaml", "+jaeger-for-tempo"])
def model(request: pytest.FixtureRequest) -> compose_model.ComposeModel:
    # The PyYAML loader: unit tests need no binary. tests/stack checks it against the real
    # `docker-compose config`. Both what users run and what the e2e runs (Jaeger for Tempo).
    return compose_model.load(REPO, prefer_binary=False, compose_files=request.param)


def _native_services(model: compose_model.ComposeModel) -> list[str]:
    return [n for n in model.services if n not in ABSENT]


def _check_for(model: compose_model.ComposeModel, name: str) -> Any:
    from scripts.native import health

    stand_in = image_component(model.services[name])
    return health.stand_in_check(name, stand_in) if stand_in else health.checks().get(name)


def _normalise(text: str, path_map: dict[str, str]) -> str:
    """Map every allowed old token and its allowed replacement to the same placeholder."""
    names = "|".join(re.escape(n) for n in CONTRACT_PORTS)
    text = re.sub(
        rf"(?<![\w.\-@])(?<![^/]/)(?:{names}|127\.0\.0\.1|0\.0\.0\.0):(\d+)", r"<HOSTPORT:\1>", text
    )
    text = re.sub(rf"(?<=@)(?:{names}|127\.0\.0\.1):(\d+)", r"<HOSTPORT:\1>", text)
    text = re.sub(r"0\.0\.0\.0|127\.0\.0\.1", "<ADDR>", text)
    # host paths first (they are longer and unique), then container paths
    for target, host in sorted(path_map.items(), key=lambda kv: len(kv[1]), reverse=True):
        text = text.replace(host, f"<PATH:{target}>")
    for target in sorted(path_map, key=len, reverse=True):
        text = re.sub(
            rf"(?<![\w.\-/:@]){re.escape(target)}(?=/|$|[^\w.\-])", f"<PATH:{target}>", text, flags=re.M
        )
    return text


def _leftovers(text: str) -> list[str]:
    names = "|".join(re.escape(n) for n in CONTRACT_PORTS)
    found = re.findall(rf"(?<![\w.\-])(?<![^/]/)(?:{names}):\d+", text)
    found += re.findall(r"(?<![\d.])0\.0\.0\.0(?![\d.]*\d)", text)
    return found


def test_contract_table_matches_developers_md() -> None:
    """CONTRACT_PORTS is DEVELOPERS.md's network contract, parsed from the table itself."""
    text = (REPO / "DEVELOPERS.md").read_text()
    section = text.split("## Network contract", 1)[1].split("\n## ", 1)[0]
    table: dict[str, tuple[int, ...]] = {}
    for line in section.splitlines():
        m = re.match(r"\|\s*`([\w-]+)`\s*\|(.*)\|\s*$", line)
        if m:
            ports_text = re.sub(r"\([^)]*\)", "", m.group(2))  # "(not 4317: …)" is commentary
            table[m.group(1)] = tuple(int(p) for p in re.findall(r"\b(\d{4,5})\b", ports_text))
    assert table == CONTRACT_PORTS
    ports = [p for ps in table.values() for p in ps]
    assert len(ports) == len(set(ports)), "a port shared by two services cannot live on one loopback address"


def test_rendered_configs_differ_only_in_listed_tokens(
    model: compose_model.ComposeModel, tmp_path: Path
) -> None:
    checked = 0
    for name in _native_services(model):
        svc = model.services[name]
        rendered = render_service(svc, tmp_path)
        for original, copy in rendered.files:
            old, new = original.read_text(), copy.read_text()
            assert not _leftovers(new), f"{copy}: untranslated tokens {_leftovers(new)}"
            old_lines, new_lines = old.splitlines(keepends=True), new.splitlines(keepends=True)
            assert len(old_lines) == len(new_lines), f"{copy}: line count changed"
            for i, (a, b) in enumerate(zip(old_lines, new_lines, strict=True), 1):
                if a != b:
                    assert _normalise(a, rendered.path_map) == _normalise(b, rendered.path_map), (
                        f"{copy}:{i} changed beyond the listed tokens:\n- {a!r}\n+ {b!r}"
                    )
            checked += 1
        # bind mounts that are not text (none today) are copied byte for byte
        for m in svc.mounts:
            if m.type == "bind" and Path(m.source or "").is_file():
                assert Path(rendered.path_map[m.target]).read_bytes() == (
                    Path(m.source or "").read_bytes()
                    if not any(o == Path(m.source or "") for o, _ in rendered.files)
                    else Path(rendered.path_map[m.target]).read_bytes()
                )
    assert checked >= 4, "expected the collector, Prometheus, Tempo and OpenSearch configs to be rendered"


def test_command_lines_and_environment_differ_only_in_listed_tokens(
    model: compose_model.ComposeModel, tmp_path: Path
) -> None:
    for name in _native_services(model):
        svc = model.services[name]
        tr = Translator(path_map_for(svc, tmp_path), where=name)
        pm = tr.path_map
        for old in [*(svc.entrypoint or []), *(svc.command or []), *svc.environment.values()]:
            new = tr.text(old)[0]
            assert not _leftovers(new), f"{name}: {new!r} still holds {_leftovers(new)}"
            assert _normalise(old, pm) == _normalise(new, pm), f"{name}: {old!r} -> {new!r}"


def test_every_peer_reference_is_rewritten(model: compose_model.ComposeModel, tmp_path: Path) -> None:
    """The configs really name their peers (else the test above would pass vacuously)."""
    rewrites = []
    for name in _native_services(model):
        rewrites += render_service(model.services[name], tmp_path).rewrites
    kinds = {r.kind for r in rewrites}
    assert kinds == {"host", "path", "bind"}, kinds
    olds = {r.old for r in rewrites if r.kind == "host"}
    # prometheus:9090: the collector's span-metrics push (otlphttp/prometheus) names Prometheus
    assert {"tempo:4319", "opensearch:9200", "sample-service:8000", "prometheus:9090"} <= olds


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://tempo:3200/ready", "http://127.0.0.1:3200/ready"),
        ("postgresql+asyncpg://u:p@postgres:5432/db", "postgresql+asyncpg://u:p@127.0.0.1:5432/db"),
        ('targets: ["otel-collector:8889"]', 'targets: ["127.0.0.1:8889"]'),
        ("endpoint: 0.0.0.0:4317", "endpoint: 127.0.0.1:4317"),
        ("host: 0.0.0.0", "host: 127.0.0.1"),
        ("my-tempo:3200 x.tempo:3200 /var/tempo:3200", "my-tempo:3200 x.tempo:3200 /var/tempo:3200"),
        ("10.0.0.0/8 and 0.0.0.01", "10.0.0.0/8 and 0.0.0.01"),
        ("job_name: prometheus", "job_name: prometheus"),
        ("--storage.tsdb.path=/prometheus", "--storage.tsdb.path=/H/prom-data"),
        ("/etc/prometheus/rules/*.yml", "/H/etc-prom/rules/*.yml"),
        ("/etc/prometheus-x /etc/prometheus.yml", "/etc/prometheus-x /etc/prometheus.yml"),
        ("http://x:9090/prometheus", "http://x:9090/prometheus"),
    ],
)
def test_translator_tokens(text: str, expected: str) -> None:
    tr = Translator({"/prometheus": "/H/prom-data", "/etc/prometheus": "/H/etc-prom"})
    assert tr.text(text)[0] == expected


def test_port_outside_the_contract_is_an_error() -> None:
    # tempo:4317 would natively reach the collector (4317 is its port): refuse, don't guess.
    with pytest.raises(TranslateError, match="4317"):
        Translator().text("endpoint: tempo:4317")


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("${A:-x}", {}, "x"),
        ("${A:-x}", {"A": ""}, "x"),
        ("${A-x}", {"A": ""}, ""),
        ("${A:+y}", {"A": "1"}, "y"),
        ("$$HOME ${A}", {"A": "a"}, "$HOME a"),
        ("$A/b", {"A": "a"}, "a/b"),
        ("${A:-${B:-z}}", {}, "z"),
    ],
)
def test_fallback_interpolation(text: str, env: dict[str, str], expected: str) -> None:
    assert compose_spec.interpolate(text, env) == expected


def test_fallback_interpolation_required_variable() -> None:
    with pytest.raises(compose_model.ComposeError, match="set it"):
        compose_spec.interpolate("${A:?set it}", {})


def test_start_order_follows_depends_on(model: compose_model.ComposeModel) -> None:
    order = model.start_order()
    for name, svc in model.services.items():
        for dep in svc.depends_on:
            assert order.index(dep) < order.index(name), f"{dep} must start before {name}"


def test_native_health_checks_ask_what_compose_healthchecks_ask(model: compose_model.ComposeModel) -> None:
    """Each native readiness probe hits the same path (or tool) as the service's compose healthcheck."""
    for name in _native_services(model):
        svc = model.services[name]
        check = _check_for(model, name)
        if check is None:
            assert name not in CONTRACT_PORTS, f"{name} is long-running but has no native health check"
            continue
        assert svc.healthcheck is not None, f"{name} has a native health check but no compose healthcheck"
        test = " ".join(svc.healthcheck.test)
        probe = check.probe_url
        if probe == "pg_isready":
            assert "pg_isready" in test, test
            continue
        path = re.sub(r"^http://127\.0\.0\.1:\d+", "", probe)
        port = re.search(r":(\d+)", probe).group(1)  # type: ignore[union-attr]
        assert re.search(rf"(127\.0\.0\.1|localhost):{port}{re.escape(path)}(['?\s\"]|$)", test), (
            f"{name}: compose healthcheck {test!r} does not probe {probe}"
        )
