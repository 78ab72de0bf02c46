"""stack/scale-out/prometheus/prometheus.yml is the base Prometheus config plus exactly one
`remote_write` block to Thanos Receive (so stack/prometheus/prometheus.yml stays the one source),
and the real promtool accepts it; stack/scale-out/thanos/ names the same ingestors everywhere."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tests.static.binaries import REPO, binary, explain, run

BASE = REPO / "stack" / "prometheus"
SCALE_OUT = REPO / "stack" / "scale-out"
SCALE_OUT_YML = SCALE_OUT / "prometheus" / "prometheus.yml"
THANOS = SCALE_OUT / "thanos"

# The whole difference, spelled out: a change to it is a decision, not drift.
REMOTE_WRITE = [
    {
        "name": "thanos",
        "url": "http://thanos-receive-router:19300/api/v1/receive",
        "protobuf_message": "prometheus.WriteRequest",
        "send_native_histograms": True,
        "send_exemplars": True,
    }
]
INGESTORS = ["thanos-receive-1:19201", "thanos-receive-2:19202"]


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), path
    return data


def test_scale_out_config_is_base_plus_remote_write() -> None:
    base, scale_out = _load(BASE / "prometheus.yml"), _load(SCALE_OUT_YML)
    assert "remote_write" not in base, "the base config gained remote_write: rethink the overlay"
    extra = {k: v for k, v in scale_out.items() if k not in base}
    assert extra == {"remote_write": REMOTE_WRITE}
    same = {k: v for k, v in scale_out.items() if k in base}
    assert same == base, (
        "stack/scale-out/prometheus/prometheus.yml drifted from stack/prometheus/prometheus.yml"
    )


def test_promtool_check_config(tmp_path: Path) -> None:
    """As compose mounts it: the overlay's file at /etc/prometheus/prometheus.yml, the base dir (its
    rules) around it; /etc/prometheus mapped to the repo's base dir, as the base config's test does."""
    rendered = tmp_path / "prometheus.yml"
    rendered.write_text(SCALE_OUT_YML.read_text().replace("/etc/prometheus", str(BASE)))
    proc = run([binary("promtool"), "check", "config", rendered])
    assert proc.returncode == 0, explain(proc)
    out = proc.stdout + proc.stderr
    rules = sorted((BASE / "rules").glob("*.yml"))
    assert rules
    for f in rules:
        assert str(f) in out, f"promtool did not check {f}:\n{out}"


def test_thanos_endpoints_agree() -> None:
    """The router's hashring and Query's store endpoints name the same ingestors (gRPC addresses)."""
    rings = json.loads((THANOS / "hashring.json").read_text())
    assert len(rings) == 1
    ring = rings[0]
    assert ring["hashring"] == "default" and ring["algorithm"] == "ketama"
    assert ring["endpoints"] == INGESTORS
    endpoints = _load(THANOS / "endpoints.yaml")
    assert [e["address"] for e in endpoints["endpoints"]] == INGESTORS


def _flags(command: list[str]) -> dict[str, str]:
    return dict(a.split("=", 1) for a in command if a.startswith("--") and "=" in a)


def test_overlay_thanos_services_agree() -> None:
    """stack/scale-out/compose.yaml's Thanos services (what the native harness runs, too) against the
    files here and the overlay's port plan (tests/stack/scale_out/ports.py)."""
    from scripts.native import compose_model
    from tests.stack.scale_out import ports
    from tests.stack.scale_out.tsdb import OVERLAY, QUERY, REPLICA_LABEL, ROUTER, overlay_services, receiver

    assert OVERLAY.is_file(), f"{OVERLAY} is missing"
    services = overlay_services(compose_model.load(REPO, compose_files=[OVERLAY]))
    binds = {n: {m.target: m.source for m in s.mounts if m.type == "bind"} for n, s in services.items()}
    for i in ports.THANOS_RECEIVERS:
        svc = services[receiver(i)]
        f = _flags(svc.command or [])
        assert svc.entrypoint == ["/bin/thanos"] and (svc.command or [])[0] == "receive"
        assert f["--http-address"] == f"0.0.0.0:{ports.thanos_receive_http(i)}"
        assert f["--grpc-address"] == f"0.0.0.0:{ports.thanos_receive_grpc(i)}"
        assert f["--remote-write.address"] == f"0.0.0.0:{ports.thanos_receive_remote_write(i)}"
        assert f["--receive.capnproto-address"] == f"0.0.0.0:{ports.thanos_receive_capnproto(i)}"
        assert f["--label"] == f'{REPLICA_LABEL}="{i}"', "Query deduplicates the replicas by this label"
        assert int(f["--tsdb.max-exemplars"]) > 0, "exemplars are dropped without it"
        assert "--receive.hashrings-file" not in f and "--receive.local-endpoint" not in f, "ingest only"
        assert any(m.type == "volume" and m.target == f["--tsdb.path"] for m in svc.mounts), (
            "TSDB on a volume"
        )
    router = services[ROUTER]
    f = _flags(router.command or [])
    assert f["--remote-write.address"] == f"0.0.0.0:{ports.THANOS_ROUTER_REMOTE_WRITE}"
    assert f["--receive.capnproto-address"] == f"0.0.0.0:{ports.thanos_receive_capnproto(0)}"
    assert "--receive.local-endpoint" not in f, "a local endpoint would make the router ingest too"
    assert binds[ROUTER][f["--receive.hashrings-file"]] == str(THANOS / "hashring.json")
    ring = json.loads((THANOS / "hashring.json").read_text())[0]
    assert 2 <= int(f["--receive.replication-factor"]) <= len(ring["endpoints"])
    query = _flags(services[QUERY].command or [])
    assert query["--http-address"] == f"0.0.0.0:{ports.THANOS_QUERY_HTTP}"
    assert query["--query.replica-label"] == REPLICA_LABEL
    assert binds[QUERY][query["--endpoint.sd-config-file"]] == str(THANOS / "endpoints.yaml")
    # every address the files name is that service's gRPC (ring, endpoints) / remote-write port
    assert INGESTORS == [f"{receiver(i)}:{ports.thanos_receive_grpc(i)}" for i in ports.THANOS_RECEIVERS]
    assert REMOTE_WRITE[0]["url"] == f"http://{ROUTER}:{ports.THANOS_ROUTER_REMOTE_WRITE}/api/v1/receive"
