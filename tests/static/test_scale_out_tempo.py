"""stack/scale-out/tempo/tempo.yaml: Tempo 3.0.3 in microservices mode, checked statically.

Configuration only: Tempo is AGPL, so nothing here builds, downloads or runs it and `-config.verify`
cannot run. These checks hold what can be held without a Tempo binary: the file parses and uses only
keys the pinned release has (none 3.0 removed); every `-target` the overlay's services use is a 3.0
component; the Kafka address, S3 endpoint, bucket, memberlist seeds, frontend and scheduler
addresses and partition owners agree with the services of stack/scale-out/compose.yaml (skipped,
with a message, only while that file does not exist); no secret is written in the config or the
overlay; the single-node config's choices (metrics-generator processors and remote write, ports,
retention) are carried over.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.static.binaries import REPO
from tests.static.test_tempo_config import TOP_LEVEL_KEYS_3_0_3, removed_keys

SCALE_OUT_TEMPO = REPO / "stack" / "scale-out" / "tempo" / "tempo.yaml"
SINGLE_NODE_TEMPO = REPO / "stack" / "tempo" / "tempo.yaml"
OVERLAY_COMPOSE = REPO / "stack" / "scale-out" / "compose.yaml"
BASE_COMPOSE = REPO / "compose.yaml"
CONFIG_IN_CONTAINER = "/etc/tempo/tempo.yaml"

# Tempo 3.0's components for microservices mode, each run with `-target=<name>` (one per process):
#   https://grafana.com/docs/tempo/v3.0.x/reference-tempo-architecture/deployment-modes/
#     ("Components by deployment mode": distributor, block-builder, live-store, query-frontend,
#      querier, backend scheduler, backend worker, metrics-generator; "-target=distributor",
#      "-target=querier")
#   https://grafana.com/docs/tempo/v3.0.x/configuration/#deployment-modes ("Each component runs as
#     a separate process with its own -target flag"; the table of config blocks per component)
# The hyphenated spellings of the others are the ones the 3.0 line's own integration harness starts
# (integration/util: "live-store", "block-builder", "backend-scheduler", "backend-worker").
TEMPO_3_0_TARGETS = frozenset(
    {
        "distributor",
        "live-store",
        "block-builder",
        "metrics-generator",
        "querier",
        "query-frontend",
        "backend-scheduler",
        "backend-worker",
    }
)
# Targets that are not 3.0 microservices: removed by 3.0 (ingester, compactor, scalable single
# binary), or the monolith (`all`), which does not belong in a scale-out overlay.
NOT_MICROSERVICES = {
    "ingester": "removed in 3.0 (live-store + block-builder replace it)",
    "compactor": "removed in 3.0 (backend-scheduler + backend-worker replace it)",
    "scalable-single-binary": "removed in 3.0 (microservices mode is the scalable form)",
    "all": "monolithic mode, not a microservice",
}

# The overlay's Tempo services (the compose snippet that goes with this file) and their targets.
OVERLAY_SERVICES = {
    "tempo-distributor": "distributor",
    "tempo-live-store": "live-store",
    "tempo-block-builder": "block-builder",
    "tempo-metrics-generator": "metrics-generator",
    "tempo-querier": "querier",
    "tempo-query-frontend": "query-frontend",
    "tempo-backend-scheduler": "backend-scheduler",
    "tempo-backend-worker": "backend-worker",
}
# Instance ids (= compose hostnames) from which Tempo derives a partition: `-<n>` at the end.
PARTITION_SUFFIX = re.compile(r"-([0-9]+)$")
ENV_REF = re.compile(r"^\$\{([A-Z][A-Z0-9_]*)\}$")  # what tempo.yaml may hold for a secret
COMPOSE_ENV_REF = re.compile(r"^\$\{([A-Z][A-Z0-9_]*)(?::?[-?][^}]*)?\}$")  # compose interpolation
SECRET_KEY_NAMES = re.compile(r"(password|secret|secret_key|access_key|session_token|api_key|token)$")


class _ComposeLoader(yaml.SafeLoader):
    """Reads compose's own tags (`!override`, `!reset`) as the plain value they wrap."""


def _untagged(loader: yaml.SafeLoader, _suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)  # type: ignore[arg-type]


_ComposeLoader.add_multi_constructor("!", _untagged)


def _load(path: Path) -> Any:
    return yaml.load(path.read_text(), Loader=_ComposeLoader)  # a SafeLoader subclass


@pytest.fixture(scope="module")
def cfg() -> dict[str, Any]:
    loaded = _load(SCALE_OUT_TEMPO)
    assert isinstance(loaded, dict), f"{SCALE_OUT_TEMPO} does not parse to a mapping"
    return loaded


@pytest.fixture(scope="module")
def single() -> dict[str, Any]:
    loaded: dict[str, Any] = _load(SINGLE_NODE_TEMPO)
    return loaded


def _env_file() -> dict[str, str]:
    return dict(
        line.split("=", 1)
        for line in (REPO / ".env").read_text().splitlines()
        if re.match(r"^[A-Z_]+=", line)
    )


def _hostport(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    assert host and port.isdigit(), f"not host:port: {value!r}"
    return host, int(port)


# ----------------------------------------------------------------------------- the config alone


def test_parses_with_only_keys_the_release_has(cfg: dict[str, Any]) -> None:
    assert set(cfg) <= TOP_LEVEL_KEYS_3_0_3, set(cfg) - TOP_LEVEL_KEYS_3_0_3
    assert removed_keys(cfg) == []
    assert "target" not in cfg, "the target is per container (-target=), not in the shared file"
    assert "enabled" not in cfg["ingest"], "ingest.enabled was removed in 3.0"


def target_problems(targets: dict[str, str]) -> list[str]:
    """What is wrong with a service -> -target map (empty when every target is a 3.0 component
    and every component runs, the backend scheduler exactly once)."""
    found = []
    for service, target in sorted(targets.items()):
        if target in NOT_MICROSERVICES:
            found.append(f"{service}: -target={target}: {NOT_MICROSERVICES[target]}")
        elif target not in TEMPO_3_0_TARGETS:
            found.append(f"{service}: -target={target} is not a Tempo 3.0 component")
    missing = TEMPO_3_0_TARGETS - set(targets.values())
    found += [f"no service runs -target={t}" for t in sorted(missing)]
    schedulers = [s for s, t in targets.items() if t == "backend-scheduler"]
    if len(schedulers) > 1:
        found.append(f"the backend scheduler is a singleton, {len(schedulers)} run: {schedulers}")
    return found


def test_every_target_is_a_3_0_component() -> None:
    assert target_problems(OVERLAY_SERVICES) == []


@pytest.mark.parametrize("bad", ["ingester", "compactor", "scalable-single-binary", "all", "live_store"])
def test_target_check_can_fail(bad: str) -> None:
    assert target_problems({**OVERLAY_SERVICES, "tempo-extra": bad})


def test_two_schedulers_are_caught() -> None:
    assert target_problems({**OVERLAY_SERVICES, "tempo-backend-scheduler-2": "backend-scheduler"})


def test_object_storage_and_queue(cfg: dict[str, Any]) -> None:
    trace = cfg["storage"]["trace"]
    # `local` works only in monolithic mode (3.0 configuration reference, storage block)
    assert trace["backend"] == "s3"
    s3 = trace["s3"]
    assert s3["bucket"] == "tempo"
    assert _hostport(s3["endpoint"]) == ("seaweedfs", 8333)
    assert s3["insecure"] is True  # plain HTTP on the compose network
    assert s3["forcepathstyle"] is True  # `seaweedfs` is no DNS parent of the bucket
    kafka = cfg["ingest"]["kafka"]
    assert _hostport(kafka["address"]) == ("kafka", 9092)
    assert kafka["topic"]
    for path in (
        trace["wal"]["path"],
        cfg["block_builder"]["wal"]["path"],
        cfg["live_store"]["wal"]["path"],
        cfg["metrics_generator"]["storage"]["path"],
    ):
        assert path.startswith("/var/tempo/"), path


def test_partitions_fit_the_topic(cfg: dict[str, Any]) -> None:
    n_partitions = cfg["ingest"]["kafka"]["auto_create_topic_default_partitions"]
    assigned = cfg["block_builder"]["assigned_partitions"]
    assert assigned, "the block-builder must be given the live-store's partitions"
    for instance, partitions in assigned.items():
        assert PARTITION_SUFFIX.search(instance), instance
        assert all(0 <= p < n_partitions for p in partitions), (instance, partitions, n_partitions)
    assert cfg["live_store"]["partition_ring"]["kvstore"]["store"] == "memberlist"


def test_peer_addresses_are_compose_names_on_tempo_ports(cfg: dict[str, Any]) -> None:
    grpc = cfg["server"]["grpc_listen_port"]
    assert _hostport(cfg["querier"]["frontend_worker"]["frontend_address"]) == ("tempo-query-frontend", grpc)
    assert _hostport(cfg["backend_worker"]["backend_scheduler_addr"]) == ("tempo-backend-scheduler", grpc)
    seeds = [_hostport(m) for m in cfg["memberlist"]["join_members"]]
    assert {port for _, port in seeds} == {cfg["memberlist"]["bind_port"]}
    assert {host for host, _ in seeds} <= set(OVERLAY_SERVICES)
    assert "tempo-live-store" in {host for host, _ in seeds}  # the partition ring's owner


# ----------------------------------------------------------------------------- secrets


def secret_problems(cfg: dict[str, Any], raw: str) -> list[str]:
    """Literal secrets in the config, and `$` uses -config.expand-env would trip over."""
    found = []
    refs: set[str] = set()

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                here = f"{path}.{key}" if path else str(key)
                if SECRET_KEY_NAMES.search(str(key)) and not isinstance(value, (dict, list)):
                    match = ENV_REF.match(str(value or ""))
                    if not match:
                        found.append(f"{here}: a literal, not a ${{VAR}} reference")
                    else:
                        refs.add(match.group(1))
                walk(value, here)
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}[{i}]")

    walk(cfg, "")
    s3 = cfg["storage"]["trace"]["s3"]
    for key in ("access_key", "secret_key"):
        if not ENV_REF.match(str(s3.get(key) or "")):
            found.append(f"storage.trace.s3.{key}: must be a ${{VAR}} reference")
    # -config.expand-env expands the whole text (comments too) before parsing: the only `$` in the
    # file are the secret references.
    for i, line in enumerate(raw.splitlines(), 1):
        for dollar in re.finditer(r"\$(\{[^}]*\}?)?", line):
            name = ENV_REF.match(dollar.group(0))
            if not name or name.group(1) not in refs:
                found.append(f"line {i}: {dollar.group(0)!r} is not a secret reference")
    return found


def test_no_literal_secrets(cfg: dict[str, Any]) -> None:
    assert secret_problems(cfg, SCALE_OUT_TEMPO.read_text()) == []


@pytest.mark.parametrize(
    ("key", "value", "raw_extra"),
    [
        ("secret_key", "supersecret", ""),
        ("access_key", "tempo", ""),
        ("secret_key", "${TEMPO_S3_SECRET_KEY}", "# costs $5\n"),
    ],
    ids=["literal-secret", "literal-access-key", "stray-dollar"],
)
def test_secret_check_can_fail(cfg: dict[str, Any], key: str, value: str, raw_extra: str) -> None:
    bad = copy.deepcopy(cfg)
    bad["storage"]["trace"]["s3"][key] = value
    assert secret_problems(bad, SCALE_OUT_TEMPO.read_text() + raw_extra)


# ----------------------------------------------------------------------------- single node carried over


def carry_over_problems(cfg: dict[str, Any], single: dict[str, Any]) -> list[str]:
    checks = {
        "metrics-generator processors": (
            lambda c: c["overrides"]["defaults"]["metrics_generator"]["processors"]
        ),
        "remote write": lambda c: c["metrics_generator"]["storage"]["remote_write"],
        "external labels": lambda c: c["metrics_generator"]["registry"]["external_labels"],
        "service-graph wait": lambda c: c["metrics_generator"]["processor"]["service_graphs"]["wait"],
        "OTLP receivers": lambda c: c["distributor"]["receivers"],
        "HTTP port": lambda c: c["server"]["http_listen_port"],
        "gRPC port": lambda c: c["server"]["grpc_listen_port"],
        "retention (backend worker)": lambda c: c["backend_worker"]["compaction"]["block_retention"],
        "streaming over HTTP": lambda c: c["stream_over_http_enabled"],
        "usage report": lambda c: c["usage_report"],
    }
    found = []
    for name, get in checks.items():
        try:
            mine, theirs = get(cfg), get(single)
        except (KeyError, TypeError) as missing:
            found.append(f"{name}: missing {missing}")
            continue
        if mine != theirs:
            found.append(f"{name}: {mine!r} here, {theirs!r} on the single node")
    # The scheduler's compaction provider holds the same retention as the workers that apply it.
    sched = cfg["backend_scheduler"]["provider"]["compaction"]["compaction"]["block_retention"]
    if sched != cfg["backend_worker"]["compaction"]["block_retention"]:
        found.append(f"retention: scheduler {sched!r} != worker")
    return found


def test_single_node_choices_are_carried_over(cfg: dict[str, Any], single: dict[str, Any]) -> None:
    assert carry_over_problems(cfg, single) == []
    rw = cfg["metrics_generator"]["storage"]["remote_write"]
    assert rw == [{"url": "http://prometheus:9090/api/v1/write", "send_exemplars": True}]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda c: c["overrides"]["defaults"]["metrics_generator"].update(processors=["span-metrics"]),
        lambda c: c["metrics_generator"]["storage"]["remote_write"][0].update(
            url="http://x:9090/api/v1/write"
        ),
        lambda c: c["backend_worker"]["compaction"].update(block_retention="336h"),
        lambda c: c["backend_scheduler"]["provider"]["compaction"]["compaction"].update(block_retention="1h"),
        lambda c: c["distributor"]["receivers"]["otlp"]["protocols"]["grpc"].update(endpoint="0.0.0.0:4317"),
    ],
    ids=["processors", "remote-write", "retention", "scheduler-retention", "otlp-port"],
)
def test_carry_over_check_can_fail(cfg: dict[str, Any], single: dict[str, Any], mutate: Any) -> None:
    bad = copy.deepcopy(cfg)
    mutate(bad)
    assert carry_over_problems(bad, single)


# ----------------------------------------------------------------------------- against the overlay


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    return command.split() if isinstance(command, str) else [str(c) for c in command]


def _target(service: dict[str, Any]) -> str | None:
    for arg in _command(service):
        if arg.startswith(("-target=", "--target=")):
            return arg.split("=", 1)[1]
    return None


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (str(item).partition("=") for item in env)
        return {key: value for key, _, value in pairs}
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """container path -> source of every bind/volume mount."""
    mounts = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            mounts[str(volume.get("target"))] = str(volume.get("source"))
        else:
            parts = str(volume).split(":")
            if len(parts) >= 2:
                mounts[parts[1]] = parts[0]
    return mounts


def _compose_var(value: str) -> str | None:
    match = COMPOSE_ENV_REF.match(value)
    return match.group(1) if match else None


def compose_disagreements(
    cfg: dict[str, Any], overlay: dict[str, Any], base_services: set[str], tempo_version: str
) -> list[str]:
    """Every way the overlay's services and tempo.yaml disagree (empty when they agree)."""
    services: dict[str, dict[str, Any]] = overlay.get("services") or {}
    found: list[str] = []
    tempo = {name: t for name, svc in services.items() if (t := _target(svc))}
    if not tempo:
        return ["no service of the overlay runs Tempo (-target=...)"]
    found += target_problems(tempo)
    by_target: dict[str, list[str]] = {}
    for name, target in tempo.items():
        by_target.setdefault(target, []).append(name)
    grpc = cfg["server"]["grpc_listen_port"]

    # every Tempo container runs this file, expanded, at the pinned release
    for name in sorted(tempo):
        svc = services[name]
        args = _command(svc)
        if f"-config.file={CONFIG_IN_CONTAINER}" not in args:
            found.append(f"{name}: command lacks -config.file={CONFIG_IN_CONTAINER}")
        if "-config.expand-env=true" not in args:
            found.append(f"{name}: command lacks -config.expand-env=true (the S3 keys are ${{VAR}})")
        source = _mounts(svc).get(CONFIG_IN_CONTAINER, "")
        if not source.endswith("stack/scale-out/tempo/tempo.yaml"):
            found.append(f"{name}: {CONFIG_IN_CONTAINER} is {source or 'not mounted'}, not this file")
        pinned = re.search(r"\$\{TEMPO_VERSION:-([^}]+)\}", str(svc.get("image", "")))
        if not pinned or pinned.group(1) != tempo_version:
            found.append(f"{name}: image {svc.get('image')!r} is not ${{TEMPO_VERSION:-{tempo_version}}}")

    # Kafka
    k_host, k_port = _hostport(cfg["ingest"]["kafka"]["address"])
    if k_host not in services:
        found.append(f"ingest.kafka.address: no overlay service {k_host!r}")
    else:
        k_env = _environment(services[k_host])
        advertised = k_env.get("KAFKA_ADVERTISED_LISTENERS", "")
        if f"//{k_host}:{k_port}" not in advertised:
            found.append(f"{k_host}: advertises {advertised!r}, Tempo dials {k_host}:{k_port}")
        partitions = cfg["ingest"]["kafka"]["auto_create_topic_default_partitions"]
        if "KAFKA_NUM_PARTITIONS" in k_env and int(k_env["KAFKA_NUM_PARTITIONS"]) != partitions:
            found.append(f"{k_host}: KAFKA_NUM_PARTITIONS {k_env['KAFKA_NUM_PARTITIONS']} != {partitions}")

    # S3: endpoint service, bucket, one set of credentials shared with the object store
    s3 = cfg["storage"]["trace"]["s3"]
    s_host, _ = _hostport(s3["endpoint"])
    key_vars = {k: ENV_REF.match(str(s3.get(k) or "")) for k in ("access_key", "secret_key")}
    tempo_side: dict[str, set[str | None]] = {"access_key": set(), "secret_key": set()}
    for name in sorted(tempo):
        env = _environment(services[name])
        for key, ref in key_vars.items():
            if not ref:
                continue
            value = env.get(ref.group(1))
            if value is None:
                found.append(f"{name}: no {ref.group(1)} in its environment ({key})")
            elif not _compose_var(value):
                found.append(f"{name}: {ref.group(1)} is a literal, not a ${{VAR}} from .env")
            else:
                tempo_side[key].add(_compose_var(value))
    if s_host not in services:
        found.append(f"storage.trace.s3.endpoint: no overlay service {s_host!r}")
    else:
        s_env = _environment(services[s_host])
        buckets = [b.strip() for b in s_env.get("S3_BUCKET", "").split(",")]
        if s3["bucket"] not in buckets:
            found.append(f"{s_host}: S3_BUCKET {s_env.get('S3_BUCKET')!r} does not create {s3['bucket']!r}")
        for key, store_var in (("access_key", "AWS_ACCESS_KEY_ID"), ("secret_key", "AWS_SECRET_ACCESS_KEY")):
            value = s_env.get(store_var, "")
            if not _compose_var(value):
                found.append(f"{s_host}: {store_var} is not a ${{VAR}} from .env")
            elif tempo_side[key] and tempo_side[key] != {_compose_var(value)}:
                found.append(
                    f"{s_host}: {store_var} from {_compose_var(value)}, Tempo's {key} from {tempo_side[key]}"
                )

    # memberlist seeds, query-frontend and scheduler addresses are Tempo services
    for member in cfg["memberlist"]["join_members"]:
        host, _ = _hostport(member)
        if host not in tempo:
            found.append(f"memberlist.join_members: {host!r} is no Tempo service of the overlay")
    for what, addr, target in (
        (
            "querier.frontend_worker.frontend_address",
            cfg["querier"]["frontend_worker"]["frontend_address"],
            "query-frontend",
        ),
        (
            "backend_worker.backend_scheduler_addr",
            cfg["backend_worker"]["backend_scheduler_addr"],
            "backend-scheduler",
        ),
    ):
        host, port = _hostport(addr)
        if tempo.get(host) != target or port != grpc:
            found.append(f"{what}: {addr} is not a {target} service's gRPC port {grpc}")
    rw_host = re.sub(
        r"^https?://([^:/]+).*$", r"\1", cfg["metrics_generator"]["storage"]["remote_write"][0]["url"]
    )
    if rw_host not in services and rw_host not in base_services:
        found.append(f"remote_write: no service {rw_host!r} in compose.yaml or the overlay")

    # partitions: live-stores own -<n>, block-builders are the assigned_partitions keys
    owned = set()
    for name in by_target.get("live-store", []):
        match = PARTITION_SUFFIX.search(str(services[name].get("hostname", "")))
        if not match:
            found.append(f"{name}: hostname {services[name].get('hostname')!r} has no -<n> partition suffix")
        else:
            owned.add(int(match.group(1)))
    assigned = cfg["block_builder"]["assigned_partitions"]
    builders = {str(services[n].get("hostname", "")) for n in by_target.get("block-builder", [])}
    if builders != set(assigned):
        found.append(
            f"block-builder hostnames {sorted(builders)} != assigned_partitions keys {sorted(assigned)}"
        )
    built = {p for ps in assigned.values() for p in ps}
    if owned != built:
        found.append(f"live-stores own partitions {sorted(owned)}, block-builders build {sorted(built)}")
    return found


def _gateway_port_problems(cfg: dict[str, Any], texts: dict[str, str]) -> list[str]:
    otlp = _hostport(cfg["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"])[1]
    return [
        f"{where}: exports to tempo-distributor:{port}, the distributor receives OTLP on {otlp}"
        for where, text in texts.items()
        for port in re.findall(r"tempo-distributor:(\d+)", text)
        if int(port) != otlp
    ]


def _synthetic_overlay(cfg: dict[str, Any]) -> dict[str, Any]:
    """The smallest overlay that agrees with tempo.yaml (the shape of the compose snippet)."""
    creds = {
        "TEMPO_S3_ACCESS_KEY": "${TEMPO_S3_ACCESS_KEY:?set it in .env}",
        "TEMPO_S3_SECRET_KEY": "${TEMPO_S3_SECRET_KEY:?set it in .env}",
    }
    hostnames = {"tempo-live-store": "tempo-live-store-0", "tempo-block-builder": "tempo-block-builder-0"}
    services: dict[str, Any] = {
        name: {
            "image": "o11y-box/tempo:${TEMPO_VERSION:-3.0.3}",
            "command": [
                f"-config.file={CONFIG_IN_CONTAINER}",
                "-config.expand-env=true",
                f"-target={target}",
            ],
            "volumes": [f"./stack/scale-out/tempo/tempo.yaml:{CONFIG_IN_CONTAINER}:ro"],
            "environment": dict(creds),
            **({"hostname": hostnames[name]} if name in hostnames else {}),
        }
        for name, target in OVERLAY_SERVICES.items()
    }
    services["kafka"] = {
        "environment": {"KAFKA_ADVERTISED_LISTENERS": "PLAINTEXT://kafka:9092", "KAFKA_NUM_PARTITIONS": "4"}
    }
    services["seaweedfs"] = {
        "environment": {
            "AWS_ACCESS_KEY_ID": "${TEMPO_S3_ACCESS_KEY:?set it in .env}",
            "AWS_SECRET_ACCESS_KEY": "${TEMPO_S3_SECRET_KEY:?set it in .env}",
            "S3_BUCKET": "tempo",
        }
    }
    return {"services": services}


@pytest.mark.parametrize(
    "mutate",
    [
        lambda o: o["services"].update(broker=o["services"].pop("kafka")),
        lambda o: o["services"]["kafka"]["environment"].update(
            KAFKA_ADVERTISED_LISTENERS="PLAINTEXT://localhost:9092"
        ),
        lambda o: o["services"]["seaweedfs"]["environment"].update(S3_BUCKET="traces"),
        lambda o: o["services"].update(minio=o["services"].pop("seaweedfs")),
        lambda o: o["services"]["tempo-querier"]["environment"].update(TEMPO_S3_SECRET_KEY="supersecret"),
        lambda o: o["services"]["seaweedfs"]["environment"].update(AWS_ACCESS_KEY_ID="${OTHER_KEY}"),
        lambda o: o["services"].update(frontend=o["services"].pop("tempo-query-frontend")),
        lambda o: o["services"].update(tempo=o["services"].pop("tempo-backend-worker")),
        lambda o: o["services"]["tempo-block-builder"].update(hostname="tempo-block-builder"),
        lambda o: o["services"]["tempo-live-store"].update(hostname="tempo-live-store-1"),
        lambda o: o["services"]["tempo-distributor"].update(command=["-target=distributor"]),
        lambda o: o["services"]["tempo-querier"].update(image="grafana/tempo:2.9.0"),
        lambda o: o["services"]["tempo-querier"].update(command=["-target=ingester"]),
    ],
    ids=[
        "kafka-renamed",
        "kafka-advertises-localhost",
        "bucket",
        "object-store-renamed",
        "literal-secret",
        "other-credentials",
        "frontend-renamed",
        "memberlist-seed-renamed",
        "builder-hostname",
        "live-store-partition",
        "no-config-flags",
        "unpinned-image",
        "removed-target",
    ],
)
def test_compose_check_can_fail(cfg: dict[str, Any], mutate: Any) -> None:
    good = _synthetic_overlay(cfg)
    assert compose_disagreements(cfg, good, {"prometheus"}, "3.0.3") == []
    bad = copy.deepcopy(good)
    mutate(bad)
    assert compose_disagreements(cfg, bad, {"prometheus"}, "3.0.3")


def test_gateway_port_check_can_fail(cfg: dict[str, Any]) -> None:
    assert _gateway_port_problems(cfg, {"ok": "endpoint: tempo-distributor:4319"}) == []
    assert _gateway_port_problems(cfg, {"bad": "endpoint: tempo-distributor:4317"})


def test_overlay_compose_agrees_with_the_config(cfg: dict[str, Any]) -> None:
    assert OVERLAY_COMPOSE.exists(), f"{OVERLAY_COMPOSE.relative_to(REPO)} is missing"
    overlay = _load(OVERLAY_COMPOSE)
    base_services = set(_load(BASE_COMPOSE)["services"])
    problems = compose_disagreements(cfg, overlay, base_services, _env_file()["TEMPO_VERSION"])
    # anything in the overlay (compose, collector configs) that sends traces to the distributor
    texts = {
        str(p.relative_to(REPO)): p.read_text()
        for p in sorted((REPO / "stack" / "scale-out").rglob("*"))
        if p.is_file() and p.suffix in {".yaml", ".yml"} and p != SCALE_OUT_TEMPO
        # Helm values address the charts' Kubernetes services, whose ports are the charts' own
        and "helm" not in p.relative_to(REPO / "stack" / "scale-out").parts
    }
    texts |= {str(p.relative_to(REPO)): p.read_text() for p in sorted((REPO / "collector").glob("*.y*ml"))}
    problems += _gateway_port_problems(cfg, texts)
    assert problems == [], "\n".join(problems)
