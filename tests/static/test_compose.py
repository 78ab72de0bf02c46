"""compose.yaml, checked by the real Compose v2 binary (`docker-compose config`) and as plain YAML.

Compose's own interpolation, .env handling and normalisation produce the model these tests assert
on, so a typo compose would reject (or silently resolve differently) fails here, without an engine.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.static.binaries import REPO, binary, explain, run

COMPOSE = REPO / "compose.yaml"
ONE_SHOTS = {"migrate", "opensearch-setup"}
# Long-running clients that listen on nothing: their healthcheck asks their target (test_loadgen.py).
CLIENTS = {"loadgen"}
# service -> container path that must be a named volume (the service's state)
STATEFUL = {
    "postgres": "/var/lib/postgresql/data",
    "otel-collector": "/var/lib/otelcol",
    "prometheus": "/prometheus",
    "tempo": "/var/tempo",
    "opensearch": "/usr/share/opensearch/data",
    "grafana": "/var/lib/grafana",
}
# Components the native runner starts from a binary: their command line must be explicit.
NATIVE_COMMANDS = {
    "otel-collector",
    "prometheus",
    "tempo",
    "opensearch",
    "postgres",
    "migrate",
    "opensearch-setup",
    "sample-service",
    "partner-api",
}
# Bind sources that are generated rather than committed (docker creates an empty dir if absent).
GENERATED_BIND_SOURCES = {REPO / "dashboards" / "json"}
SECRET_KEYS = ("POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD")


def read_env_file(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        out[key.strip()] = value.strip()
    return out


ENV = read_env_file(REPO / ".env")


def compose_config(env_file: Path | None = None, extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    exe = binary("docker-compose")
    argv: list[str | Path] = [exe, "-f", COMPOSE, "--project-directory", REPO]
    if env_file is not None:
        argv += ["--env-file", env_file]
    argv += ["config", "--format", "json"]
    # The caller's shell must not leak into what compose resolves (compose: shell wins over .env).
    env = {k: v for k, v in os.environ.items() if k not in ENV and not k.startswith("COMPOSE_")}
    env.update(extra_env or {})
    proc = run(argv, env=env, timeout=60)
    assert proc.returncode == 0, explain(proc)
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def cfg() -> dict[str, Any]:
    return compose_config()


@pytest.fixture(scope="module")
def services(cfg: dict[str, Any]) -> dict[str, Any]:
    return cfg["services"]


def long_running(services: dict[str, Any]) -> list[str]:
    return [n for n in services if n not in ONE_SHOTS]


def test_expected_services(services: dict[str, Any]) -> None:
    assert set(services) == {
        "postgres",
        "migrate",
        "partner-api",
        "sample-service",
        "loadgen",
        "otel-collector",
        "prometheus",
        "tempo",
        "opensearch",
        "opensearch-setup",
        "grafana",
    }


def test_every_published_port_is_loopback_by_default(services: dict[str, Any]) -> None:
    published = []
    for name, svc in services.items():
        for p in svc.get("ports", []):
            assert p.get("host_ip") == "127.0.0.1", f"{name} publishes {p} beyond loopback"
            published.append(int(p["published"]))
    assert len(published) == len(set(published)), f"a host port is published twice: {sorted(published)}"
    # The network contract's user-facing ports are all reachable from the host.
    # 8889 (the collector's classic span-metrics exporter) is in no pipeline: span metrics are pushed.
    for port in (5432, 8000, 8001, 4317, 4318, 13133, 8888, 9090, 3200, 9200, 3000):
        assert port in published, port


def test_bind_address_is_configurable() -> None:
    s = compose_config(extra_env={"BIND_ADDRESS": "10.1.2.3"})["services"]
    ips = {p["host_ip"] for svc in s.values() for p in svc.get("ports", [])}
    assert ips == {"10.1.2.3"}


def test_healthcheck_on_every_long_running_service(services: dict[str, Any]) -> None:
    for name in set(long_running(services)) - CLIENTS:
        hc = services[name].get("healthcheck")
        assert hc, f"{name} has no healthcheck"
        assert not hc.get("disable"), f"{name}: healthcheck disabled"
        test = hc["test"]
        assert test and test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, f"{name}: {test}"
        # It must probe the component itself over the network (a TCP/HTTP answer), not just exist.
        joined = " ".join(test[1:])
        assert "127.0.0.1" in joined, f"{name}: healthcheck does not probe the local listener: {test}"
        assert hc.get("interval") and hc.get("timeout") and hc.get("retries"), f"{name}: {hc}"


def test_one_shots_do_not_restart(services: dict[str, Any]) -> None:
    for name in ONE_SHOTS:
        assert services[name].get("restart", "no") == "no", name
        assert "healthcheck" not in services[name] or services[name]["healthcheck"].get("disable")
    for name in long_running(services):
        assert services[name].get("restart") == "unless-stopped", name


# The telemetry path and the UI: none of them may wait for another component's health or one-shot,
# so one backend that fails to start (found by the first real `up`: OpenSearch unhealthy kept the
# collector, and so every trace, from starting) cannot hold back the others. Ordering only.
NEVER_HELD_BACK = ("otel-collector", "tempo", "grafana", "prometheus", "opensearch")


def test_depends_on_conditions(services: dict[str, Any]) -> None:
    seen = 0
    for name, svc in services.items():
        for dep, spec in (svc.get("depends_on") or {}).items():
            seen += 1
            cond = spec.get("condition")
            if dep in ONE_SHOTS:
                assert cond == "service_completed_successfully", f"{name} -> {dep}: {cond}"
            elif name in NEVER_HELD_BACK or dep in NEVER_HELD_BACK or name in ONE_SHOTS - {"migrate"}:
                assert cond == "service_started", f"{name} -> {dep}: {cond} (must not wait for health)"
            else:
                assert cond == "service_healthy", f"{name} -> {dep}: {cond}"
                assert services[dep].get("healthcheck"), f"{name} waits for {dep}, which has no healthcheck"
    assert seen >= 8
    # The orderings that matter for correctness, not just start-up speed:
    assert "migrate" in services["sample-service"]["depends_on"]
    assert "postgres" in services["migrate"]["depends_on"]
    assert "opensearch" in services["opensearch-setup"]["depends_on"]
    # Template before the first log record (the exporter drops records on a refused connection),
    # but bounded: the one-shot waits for OpenSearch itself and skips when it never gets ready.
    assert "opensearch-setup" in services["otel-collector"]["depends_on"]
    setup = " ".join(services["opensearch-setup"]["command"])
    assert "--skip-when-unavailable" in setup and re.search(r"--timeout \d+", setup), setup


def test_one_shots_run_on_every_up_are_idempotent(services: dict[str, Any]) -> None:
    """`migrate` runs on every `up`: found by reading, proven by the compose e2e: its seed TRUNCATEd
    users/records/decision_events on each start, wiping rows added since. It must seed only an
    empty database."""
    command = " ".join(services["migrate"]["command"])
    assert "sample_service.seed" in command
    assert "--if-empty" in command, command


def test_named_volume_for_every_stateful_service(cfg: dict[str, Any], services: dict[str, Any]) -> None:
    declared = set(cfg.get("volumes", {}))
    for name, target in STATEFUL.items():
        mounts = {m["target"]: m for m in services[name].get("volumes", [])}
        assert target in mounts, f"{name}: nothing mounted at {target}"
        m = mounts[target]
        assert m["type"] == "volume" and m.get("source") in declared, (
            f"{name}: {target} is not a named volume: {m}"
        )


def test_bind_mounts_exist_and_are_read_only(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        for m in svc.get("volumes", []):
            if m["type"] != "bind":
                continue
            src = Path(m["source"])
            assert src.is_relative_to(REPO), f"{name}: bind mount from outside the repo: {src}"
            if src not in GENERATED_BIND_SOURCES:
                assert src.exists(), f"{name}: bind source {src} does not exist"
            assert m.get("read_only"), f"{name}: config mount {src} -> {m['target']} is writable"


def test_memory_limit_everywhere_and_total_documented(services: dict[str, Any]) -> None:
    limits = {}
    for name, svc in services.items():
        limit = svc.get("mem_limit") or svc.get("deploy", {}).get("resources", {}).get("limits", {}).get(
            "memory"
        )
        assert limit, f"{name} has no memory limit"
        limits[name] = int(limit)
    header = COMPOSE.read_text().split("\nname:", 1)[0]
    mib = {n: v // 2**20 for n, v in limits.items()}
    long_total = sum(mib[n] for n in long_running(services))
    peak = sum(mib.values())
    m = re.search(r"=\s*(\d+)\s*\(", header)
    assert m, "compose header does not document the total memory limit"
    assert int(m.group(1)) == long_total, (
        f"header says {m.group(1)} MiB, limits add up to {long_total}: {mib}"
    )
    assert f"{peak} MiB" in header, f"header does not give the peak total {peak} MiB: {mib}"
    for name, v in mib.items():
        assert re.search(rf"\b{re.escape(name)} {v}\b", header), f"header does not list {name} {v}"


def test_images_use_env_pins(services: dict[str, Any]) -> None:
    assert services["postgres"]["image"] == ENV["POSTGRES_IMAGE"]
    assert services["prometheus"]["image"] == f"prom/prometheus:{ENV['PROMETHEUS_VERSION']}"
    assert services["opensearch"]["image"] == f"opensearchproject/opensearch:{ENV['OPENSEARCH_VERSION']}"
    col, tempo, graf = services["otel-collector"], services["tempo"], services["grafana"]
    assert col["build"]["args"]["OTELCOL_VERSION"] == ENV["OTELCOL_VERSION"]
    assert tempo["build"]["args"]["TEMPO_VERSION"] == ENV["TEMPO_VERSION"]
    assert graf["build"]["args"]["GRAFANA_VERSION"] == ENV["GRAFANA_VERSION"]
    assert (
        graf["build"]["args"]["OPENSEARCH_DATASOURCE_PLUGIN_VERSION"]
        == ENV["OPENSEARCH_DATASOURCE_PLUGIN_VERSION"]
    )
    for svc in (col, tempo):
        assert svc["build"]["args"]["BUSYBOX_IMAGE"] == ENV["BUSYBOX_IMAGE"]
    # ... and the Dockerfiles build FROM exactly those args: FROM ${<X>_IMAGE}, a build arg whose
    # default is the upstream image at the pinned version (tests/compose/local-images.yaml swaps it).
    froms = {
        REPO / "collector" / "Dockerfile": (
            "OTELCOL_IMAGE",
            "otel/opentelemetry-collector-contrib:${OTELCOL_VERSION}",
        ),
        REPO / "stack" / "tempo" / "Dockerfile": ("TEMPO_IMAGE", "grafana/tempo:${TEMPO_VERSION}"),
        REPO / "stack" / "grafana" / "Dockerfile": ("GRAFANA_IMAGE", "grafana/grafana:${GRAFANA_VERSION}"),
    }
    for path, (arg, default) in froms.items():
        lines = path.read_text().splitlines()
        assert f"ARG {arg}={default}" in lines, f"{path}: no `ARG {arg}={default}`"
        assert f"FROM ${{{arg}}}" in lines, f"{path}: no `FROM ${{{arg}}}`"
    # the ARG defaults (used by a plain `docker build`) are the pins too
    arg_defaults = {
        REPO / "collector" / "Dockerfile": ("OTELCOL_VERSION", "BUSYBOX_IMAGE"),
        REPO / "stack" / "tempo" / "Dockerfile": ("TEMPO_VERSION", "BUSYBOX_IMAGE"),
        REPO / "stack" / "grafana" / "Dockerfile": (
            "GRAFANA_VERSION",
            "OPENSEARCH_DATASOURCE_PLUGIN_VERSION",
        ),
    }
    for path, keys in arg_defaults.items():
        lines = path.read_text().splitlines()
        for key in keys:
            assert f"ARG {key}={ENV[key]}" in lines, f"{path}: ARG {key} default is not {ENV[key]}"
    for svc in services.values():
        image = svc.get("image", "")
        assert not image.endswith(":latest") and ":" in image, f"unpinned image {image}"


def test_defaults_in_compose_equal_env_pins(tmp_path: Path) -> None:
    """Without .env the stack resolves to the same versions (only the secrets must then be given)."""
    empty = tmp_path / "empty.env"
    empty.write_text("")
    secrets = {
        k: ENV[k]
        for k in (
            "POSTGRES_USER",
            "POSTGRES_PASSWORD",
            "POSTGRES_DB",
            "GRAFANA_ADMIN_USER",
            "GRAFANA_ADMIN_PASSWORD",
            "COMPOSE_PROFILES",  # the loadgen profile: .env's, not a version
        )
    }
    without = compose_config(env_file=empty, extra_env=secrets)["services"]
    with_env = compose_config()["services"]
    for name in with_env:
        assert without[name].get("image") == with_env[name].get("image"), name
        assert (without[name].get("build") or {}).get("args") == (with_env[name].get("build") or {}).get(
            "args"
        ), name
        assert without[name].get("ports") == with_env[name].get("ports"), name


def test_secrets_only_from_env_file(tmp_path: Path) -> None:
    text = COMPOSE.read_text()
    for key in SECRET_KEYS:
        assert ENV[key] not in text, f"the value of {key} is written in compose.yaml"
        assert re.search(rf"\$\{{{key}:\?", text), (
            f"{key} must be required (`${{{key}:?...}}`), not defaulted"
        )
    # Without .env and without the secrets, compose refuses instead of inventing a password.
    empty = tmp_path / "empty.env"
    empty.write_text("")
    env = {k: v for k, v in os.environ.items() if k not in ENV}
    proc = run(
        [
            binary("docker-compose"),
            "-f",
            COMPOSE,
            "--project-directory",
            REPO,
            "--env-file",
            empty,
            "config",
            "--format",
            "json",
        ],
        env=env,
        timeout=60,
    )
    # (compose names whichever required variable it meets first: any of the secrets' keys)
    assert proc.returncode != 0 and "required variable" in proc.stderr, explain(proc)
    assert re.search(r"(POSTGRES|GRAFANA_ADMIN)_[A-Z]+ is missing", proc.stderr), explain(proc)


def test_grafana_security_defaults(services: dict[str, Any]) -> None:
    env = services["grafana"]["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert env["GF_SECURITY_ADMIN_USER"] == ENV["GRAFANA_ADMIN_USER"] != "admin"
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == ENV["GRAFANA_ADMIN_PASSWORD"] != "admin"
    assert not any(k.startswith("GF_AUTH_ANONYMOUS_ORG_ROLE") for k in env)
    ini = (REPO / "stack" / "grafana" / "grafana.ini").read_text()
    assert re.search(r"^\[auth\.anonymous\]\s*(?:;.*\n)*\s*enabled\s*=\s*false", ini, re.M), (
        "anonymous not off"
    )
    assert re.search(r"^allow_sign_up\s*=\s*false", ini, re.M)
    for key in ("GRAFANA_ADMIN_PASSWORD", "POSTGRES_PASSWORD"):
        assert ENV[key] != "admin" and len(ENV[key]) >= 12, key


def test_service_environment(services: dict[str, Any]) -> None:
    env = services["sample-service"]["environment"]
    # the service's SDK default (sample_service/telemetry/providers.py) is http/protobuf -> 4318
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318"
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    partner = services["partner-api"]["environment"]
    assert partner["O11Y_PARTNER_HOST"] == "0.0.0.0" and partner["O11Y_PARTNER_PORT"] == "8001"
    assert partner["OTEL_EXPORTER_OTLP_ENDPOINT"] == env["OTEL_EXPORTER_OTLP_ENDPOINT"]
    assert env["OTEL_SEMCONV_STABILITY_OPT_IN"] == "http"
    assert env["OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED"] == "true"
    assert env["O11Y_PARTNER_BASE_URL"] == "http://partner-api:8001"
    assert env["O11Y_DATABASE_URL"].endswith("@postgres:5432/" + ENV["POSTGRES_DB"])


def test_explicit_commands_for_native_runner(services: dict[str, Any]) -> None:
    for name in NATIVE_COMMANDS:
        assert services[name].get("command"), f"{name}: no explicit command"
    assert services["otel-collector"]["command"] == ["--config=/etc/otelcol/config.yaml"]
    assert services["tempo"]["command"] == ["-config.file=/etc/tempo/tempo.yaml"]
    prom = services["prometheus"]["command"]
    for flag in (
        "--config.file=/etc/prometheus/prometheus.yml",
        "--storage.tsdb.path=/prometheus",
        "--enable-feature=exemplar-storage",
        "--web.enable-remote-write-receiver",
    ):
        assert flag in prom, flag
    # every container path a command names is inside one of the service's mounts (the runner maps it)
    for name in ("otel-collector", "tempo", "prometheus"):
        targets = [m["target"] for m in services[name].get("volumes", [])]
        for arg in services[name]["command"]:
            m = re.search(r"=(/\S+)", arg)
            if m:
                assert any(m.group(1) == t or m.group(1).startswith(t.rstrip("/") + "/") for t in targets), (
                    f"{name}: {arg} names a path no mount provides"
                )


def test_pure_yaml_header_and_defaults() -> None:
    """Without compose: the file parses, has its header, and every ${VAR:-default} equals .env."""
    text = COMPOSE.read_text()
    raw = yaml.safe_load(text)
    assert isinstance(raw, dict) and "services" in raw and "volumes" in raw
    assert text.startswith("# ")
    header = text.split("\nname:", 1)[0]
    assert "override" in header and "docker compose -f compose.yaml -f" in header
    defaults = re.findall(r"\$\{([A-Z_]+):-([^}]*)\}", text)
    assert defaults
    for var, default in defaults:
        if var in ENV:
            assert default == ENV[var], f"compose default for {var} is {default!r}, .env says {ENV[var]!r}"
    for name, svc in raw["services"].items():
        for key in ("environment",):
            assert not isinstance(svc.get(key), list), f"{name}: use the mapping form for {key}"


# ---- checks for the defect classes the first real `docker compose up` found ------------------
def test_no_ulimits_above_what_an_engine_may_allow(services: dict[str, Any]) -> None:
    """`ulimits.nofile: 65536` made OpenSearch's container fail to be created under an engine whose
    own hard limit is lower ("error setting rlimit type 7"). The engine's default applies instead."""
    assert not {n for n, s in services.items() if s.get("ulimits")}


def _copied_paths(dockerfile: Path) -> list[str]:
    paths = []
    # An instruction may continue over several lines (a trailing backslash): join them first.
    for line in dockerfile.read_text().replace("\\\n", " ").splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            words = [w for w in line.split()[1:] if not w.startswith("--")]
            paths += words[:-1]
    return paths


def test_every_python_module_a_service_runs_is_in_its_image(services: dict[str, Any]) -> None:
    """opensearch-setup ran `python -m scripts.opensearch_setup` from an image that held only
    sample_service/: ModuleNotFoundError on the first real `up`."""
    dockerfile = REPO / "sample_service" / "Dockerfile"
    copied = _copied_paths(dockerfile)
    checked = 0
    for name, svc in services.items():
        build = svc.get("build") or {}
        if not build or Path(build.get("dockerfile", "")).name != "Dockerfile" \
                or "sample_service" not in build.get("dockerfile", ""):
            continue
        command = " ".join(svc.get("command") or [])
        for module in re.findall(r"python -m ([\w.]+)", command) + re.findall(
                r"'python', '-m', '([\w.]+)'", repr(svc.get("command"))):
            path = module.replace(".", "/")
            candidates = {f"{path}.py", f"{path}/__main__.py"}
            assert any((REPO / c).is_file() for c in candidates), f"{name}: no module {module}"
            assert any(c == p or c.startswith(p.rstrip("/") + "/") for c in candidates for p in copied), (
                f"{name} runs `python -m {module}` but {dockerfile.name} copies only {copied}")
            checked += 1
    assert checked >= 4


def test_build_context_excludes_the_venv_and_git() -> None:
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()}
    assert {".git", ".venv", ".native-run"} <= ignored
