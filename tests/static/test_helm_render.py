"""stack/scale-out/helm/: the values files held to the upstream charts and to the repository's own configs.

RENDERED (grafana, tempo, thanos): each values file is rendered with its upstream chart by the real
``helm template`` and every manifest validated by ``kubeconform -strict`` against the Kubernetes
API's schemas; then what the rendering carries is held to the repository's configs (Grafana
provisioning and dashboards, Tempo's and Thanos' choices), and every in-cluster address one release
gives another names a Service, and port, that a release renders. The charts come from the Go module
proxy (scripts/native/obtain/helm.py, ``obtain_helm_charts``: github.com/grafana-community/helm-charts
and github.com/bitnami/charts at pinned pseudo-versions, prepared in the cache, never in the repo).

NOT RENDERED (otel-agent, otel-gateway, otel-logs-gateway: chart opentelemetry-collector; opensearch:
chart opensearch). Their charts cannot be had from any registry here: the Go module proxy refuses
both repositories as modules, for every version (``go mod download -json <module>@latest`` ->
``reading https://proxy.golang.org/<module>/@v/list: 403 Forbidden / server response: This module
version is not available.``; the same 403 for ``@<commit>``), see UNOBTAINABLE. So there is NO
``helm template`` and NO kubeconform validation of those four releases here, and nothing checks that
their values keys mean what the chart makes of them. What is checked for them is what needs no
chart: their values against the repository's files (collector ``config:`` blocks equal
stack/scale-out/collector/*.yaml, opensearch.yml equals node 1's less the per-node keys, the
embedded index template / ISM policy equal stack/scale-out/opensearch/*.json), their pins and the
addresses they give each other. test_unobtainable_charts_are_not_rendered_and_say_so fails if such a
chart becomes obtainable (it is then to be rendered) or a values file stops saying it is not.

helm, kubeconform, the schemas and the charts come from the native cache (scripts/native/obtain/
helm.py); a missing one is a failure that says how to get it, never a skip.
"""

from __future__ import annotations

import configparser
import functools
import json
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts.native.obtain import helm as obtain_helm
from scripts.native.obtain.cache import Obtained, cached_entry
from scripts.native.obtain.helm import helm_charts_dir, helm_dir, kubeconform_dir
from scripts.native.obtain.pins import read_env_pins

REPO = Path(__file__).resolve().parents[2]
HELM_DIR = REPO / "stack" / "scale-out" / "helm"
SCALE_OUT = REPO / "stack" / "scale-out"
GRAFANA = REPO / "stack" / "grafana"
DASHBOARDS = REPO / "dashboards" / "json"
NAMESPACE = "o11y"


@dataclass(frozen=True)
class Release:
    name: str
    chart: str
    values: str
    grafana_dashboards: bool = False  # the --set-file flags of grafana.values.yaml's header

    @property
    def values_path(self) -> Path:
        return HELM_DIR / self.values


# Charts obtained (scripts/native/obtain/helm.py CHARTS): rendered and validated.
RENDERED = {
    r.name: r
    for r in (
        Release("tempo", "tempo-distributed", "tempo-distributed.values.yaml"),
        Release("thanos", "thanos", "thanos.values.yaml"),
        Release("grafana", "grafana", "grafana.values.yaml", grafana_dashboards=True),
    )
}
# Charts no registry here serves: values files checked without rendering (module docstring).
NOT_RENDERED = {
    r.name: r
    for r in (
        Release("otel-agent", "opentelemetry-collector", "otel-agent.values.yaml"),
        Release("otel-gateway", "opentelemetry-collector", "otel-gateway.values.yaml"),
        Release("otel-logs-gateway", "opentelemetry-collector", "otel-logs-gateway.values.yaml"),
        Release("opensearch", "opensearch", "opensearch.values.yaml"),
    )
}
RELEASES = {**RENDERED, **NOT_RENDERED}

# chart -> (its repository as a Go module, what the Go module proxy answered, 2026-12-01)
_PROXY_403 = "403 Forbidden\n\tserver response: This module version is not available."
UNOBTAINABLE = {
    "opentelemetry-collector": (
        "github.com/open-telemetry/opentelemetry-helm-charts",
        "go mod download -json github.com/open-telemetry/opentelemetry-helm-charts@latest: reading "
        f"https://proxy.golang.org/github.com/open-telemetry/opentelemetry-helm-charts/@v/list: {_PROXY_403}"
        " (@dd5665c06f376c00a5e2147aa84b70c3d105ecfb, the commit of chart 0.170.0: the same 403)",
    ),
    "opensearch": (
        "github.com/opensearch-project/helm-charts",
        "go mod download -json github.com/opensearch-project/helm-charts@latest: reading "
        f"https://proxy.golang.org/github.com/opensearch-project/helm-charts/@v/list: {_PROXY_403}"
        " (@3c0157e74ff21122108c2fbc12f59e2d435795ac, the commit of chart 3.6.0: the same 403)",
    ),
}


# ------------------------------------------------------------------------------ tools and rendering
def _tool(component: str, final: Path) -> Obtained:
    got = cached_entry(component, final)
    if got is None:
        fn = "obtain_" + component.replace("-", "_")
        pytest.fail(
            f"{component} is not in the native component cache (expected at {final}). Get it with\n"
            f"  .venv/bin/python -c 'from scripts.native.obtain.helm import {fn} as o; o()'\n"
            f"(or `python -m scripts.native.obtain {component}` once it is registered there)."
        )
    return got


@functools.cache
def _pins() -> dict[str, str]:
    return read_env_pins(REPO)


@functools.cache
def _helm() -> Obtained:
    return _tool("helm", helm_dir(_pins()))


@functools.cache
def _kubeconform() -> Obtained:
    return _tool("kubeconform", kubeconform_dir(_pins()))


@functools.cache
def _charts() -> Obtained:
    return _tool("helm-charts", helm_charts_dir(_pins()))


def chart_dir(release: str) -> Path:
    return _charts().binaries[RENDERED[release].chart]


def _run(
    argv: list[str], *, stdin: str | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    home = Path(tempfile.gettempdir()) / "o11y-helm-test-home"
    env = dict(os.environ)
    # helm never needs its repository config or cache for a local chart; keep them off the user's.
    env.update(
        HELM_CACHE_HOME=str(home / "cache"),
        HELM_CONFIG_HOME=str(home / "config"),
        HELM_DATA_HOME=str(home / "data"),
    )
    return subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO, check=False
    )


def _explain(proc: subprocess.CompletedProcess[str]) -> str:
    return (
        f"`{' '.join(map(str, proc.args))}` exited {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}"
        f"\n--- stderr\n{proc.stderr[-4000:]}"
    )


def dashboard_set_files() -> list[str]:
    """The --set-file flags grafana.values.yaml's header tells users to pass: one per dashboard."""
    flags = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        flags += ["--set-file", f"dashboards.o11y-box.{path.stem}.json={path.relative_to(REPO)}"]
    return flags


def _kube_version() -> str:
    return _kubeconform().extra["kubernetes_version"]


@functools.cache
def rendered_text(release: str) -> str:
    r = RENDERED[release]
    argv = [
        str(_helm().binary),
        "template",
        r.name,
        str(chart_dir(release)),
        "--namespace",
        NAMESPACE,
        "--kube-version",
        _kube_version(),
        "-f",
        str(r.values_path),
    ]
    if r.grafana_dashboards:
        argv += dashboard_set_files()
    proc = _run(argv)
    assert proc.returncode == 0, _explain(proc)
    return proc.stdout


@functools.cache
def rendered(release: str) -> tuple[dict[str, Any], ...]:
    return tuple(d for d in yaml.safe_load_all(rendered_text(release)) if d)


def objects(release: str, kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in rendered(release) if d["kind"] == kind}


def one(release: str, kind: str, name: str | None = None) -> dict[str, Any]:
    found = objects(release, kind)
    if name is None:
        assert len(found) == 1, f"{release}: expected one {kind}, got {sorted(found)}"
        return next(iter(found.values()))
    assert name in found, f"{release}: no {kind} {name}; has {sorted(found)}"
    return found[name]


def container(workload: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    containers = workload["spec"]["template"]["spec"]["containers"]
    if name is None:
        return dict(containers[0])
    return next(c for c in containers if c["name"] == name)


def env_of(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def values(release: str) -> dict[str, Any]:
    return dict(yaml.safe_load(RELEASES[release].values_path.read_text()))


def values_env(release: str) -> dict[str, Any]:
    """``extraEnvs`` of a values file (both unrendered charts take the containers' env there)."""
    return env_of({"env": values(release).get("extraEnvs", [])})


def header(release: str) -> str:
    lines = RELEASES[release].values_path.read_text().splitlines()
    return "\n".join(line for line in lines if line.startswith("#"))


def header_words(release: str) -> str:
    """The header's text as one line: comment markers gone, whitespace runs one space."""
    return " ".join(header(release).replace("#", " ").split())


def all_services() -> dict[str, set[int]]:
    """Every Service the RENDERED releases render (one namespace): name -> its ports."""
    out: dict[str, set[int]] = {}
    for release in RENDERED:
        for name, svc in objects(release, "Service").items():
            out.setdefault(name, set()).update(int(p["port"]) for p in svc["spec"].get("ports", []))
    return out


def _host_port(address: str, what: str) -> tuple[str, int]:
    m = re.match(r"^(?:[a-z]+://)?([^:/]+):(\d+)", address)
    assert m, f"{what}: {address!r} is not host:port"
    return m.group(1), int(m.group(2))


def assert_names_a_service(address: str, what: str) -> None:
    """``host:port`` or ``scheme://host:port/...``: the host's first label is a rendered Service
    (or a StatefulSet pod on a headless one) that has that port."""
    host, port = _host_port(address, what)
    services = all_services()
    labels = host.split(".")
    name = labels[1] if len(labels) > 1 and re.fullmatch(r".+-\d+", labels[0]) else labels[0]
    assert name in services, f"{what}: {address!r} names no Service the releases render ({sorted(services)})"
    assert port in services[name], f"{what}: Service {name} has ports {sorted(services[name])}, not {port}"


def opensearch_address() -> str:
    """The OpenSearch Service address the other releases must use. NOT checked against a rendering
    (the opensearch chart cannot be had, UNOBTAINABLE): its name is the values file's
    ``masterService`` (= ``fullnameOverride``), its port node 1's ``http.port``."""
    v = values("opensearch")
    node1 = yaml.safe_load((SCALE_OUT / "opensearch" / "opensearch-node1.yml").read_text())
    assert v["masterService"] == v["fullnameOverride"], "the chart's Service is masterService"
    return f"http://{v['masterService']}:{node1['http.port']}"


# ------------------------------------------------------------------------------ render + validate
@pytest.mark.parametrize("release", sorted(RENDERED))
def test_renders_and_every_manifest_is_valid_kubernetes(release: str) -> None:
    kc = _kubeconform()
    docs = rendered(release)
    assert docs, f"{release}: helm rendered nothing"
    proc = _run(
        [
            str(kc.binary),
            "-strict",
            "-summary",
            "-output",
            "text",
            "-schema-location",
            kc.extra["schema_location"],
            "-",
        ],
        stdin=rendered_text(release),
    )
    assert proc.returncode == 0, _explain(proc)
    m = re.search(
        r"(\d+) resources? found.*Valid: (\d+), Invalid: (\d+), Errors: (\d+), Skipped: (\d+)", proc.stdout
    )
    assert m, _explain(proc)
    found, valid, invalid, errors, skipped = map(int, m.groups())
    assert (found, valid, invalid, errors, skipped) == (len(docs), len(docs), 0, 0, 0), _explain(proc)


def test_the_validator_is_strict() -> None:
    """A manifest with a field the API does not have fails: the schemas reject unknown fields."""
    kc = _kubeconform()
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "b"}}
    ok = _run(
        [str(kc.binary), "-strict", "-schema-location", kc.extra["schema_location"], "-"],
        stdin=yaml.safe_dump(cm),
    )
    assert ok.returncode == 0, _explain(ok)
    bad = _run(
        [str(kc.binary), "-strict", "-schema-location", kc.extra["schema_location"], "-"],
        stdin=yaml.safe_dump({**cm, "spec": {"replicas": 1}}),
    )
    assert bad.returncode != 0 and "additional properties" in bad.stdout, _explain(bad)


@pytest.mark.parametrize("release", sorted(RENDERED))
def test_statefulsets_are_governed_by_a_rendered_headless_service(release: str) -> None:
    """Pods' stable DNS names (<pod>.<serviceName>) resolve only if serviceName is a headless
    Service of the release."""
    services = objects(release, "Service")
    for name, sts in objects(release, "StatefulSet").items():
        governing = sts["spec"]["serviceName"]
        assert governing in services, (
            f"{release}: StatefulSet {name} serviceName {governing!r}: no such Service"
        )
        assert services[governing]["spec"].get("clusterIP") == "None", f"{governing} is not headless"


@pytest.mark.parametrize("release", sorted(RENDERED))
def test_values_file_header_names_the_chart_it_is_checked_with(release: str) -> None:
    r = RENDERED[release]
    chart = yaml.safe_load((chart_dir(release) / "Chart.yaml").read_text())
    head = header(release)
    assert f"chart:   {chart['name']} {chart['version']}" in head, head[:800]
    module_at_version, path = _charts().extra[f"{r.chart}_source"].split()
    words = header_words(release)
    assert f"Go module proxy: {module_at_version}, {path}" in words, (
        f"{r.values}: the header's source must name {module_at_version} and {path}\n{head[:1500]}"
    )
    assert re.search(
        rf"helm install {r.name} \S+/{chart['name']} --version {re.escape(chart['version'])}", head
    ), head[:1500]
    assert f"-f stack/scale-out/helm/{r.values}" in head


@pytest.mark.parametrize("release", sorted(NOT_RENDERED))
def test_unobtainable_charts_are_not_rendered_and_say_so(release: str) -> None:
    """These releases are NOT rendered or validated here: their charts cannot be obtained
    (UNOBTAINABLE holds the Go module proxy's answers). Fails when the obtainer gets such a chart
    (then render it: move the release to RENDERED) or when the values file stops saying so."""
    r = NOT_RENDERED[release]
    assert r.chart in UNOBTAINABLE, f"{release}: chart {r.chart} is neither obtained nor known unobtainable"
    assert r.chart not in obtain_helm.CHARTS, (
        f"scripts/native/obtain/helm.py now obtains {r.chart}: move {release} to RENDERED"
    )
    module, _answer = UNOBTAINABLE[r.chart]
    head = header_words(release)
    assert f"https://{module}" in head, f"{r.values}: the header must name the chart's repository {module}"
    assert "NOT rendered by the tests" in head and "This module version is not available." in head, (
        f"{r.values}: the header must say the chart is not rendered here and quote the proxy's "
        f"answer:\n{UNOBTAINABLE[r.chart][1]}"
    )
    assert re.search(rf"chart: {re.escape(r.chart)} \d+\.\d+\.\d+", head), head[:800]
    assert f"helm install {r.name} " in head and f"-f stack/scale-out/helm/{r.values}" in head


# ------------------------------------------------------------------------------ collectors
# (chart opentelemetry-collector: NOT rendered, see the module docstring; values-file checks only)
COLLECTORS = {
    "otel-agent": SCALE_OUT / "collector" / "agent.yaml",
    "otel-gateway": SCALE_OUT / "collector" / "gateway.yaml",
    "otel-logs-gateway": SCALE_OUT / "collector" / "logs-gateway.yaml",
}


def _less_default_removals(ours: Any, given: Any, where: str = "config") -> Any:
    """``given`` (a values file's ``config:``) without the keys it nulls to remove the chart's
    defaults: a key that the repository's file ``ours`` does not have must be ``null``."""
    if not (isinstance(ours, dict) and isinstance(given, dict)):
        return given
    out = {}
    for k, v in given.items():
        if k in ours:
            out[k] = _less_default_removals(ours[k], v, f"{where}.{k}")
        else:
            assert v is None, (
                f"{where}.{k}: not in the repository's file, so only a `null` (removal) may be here"
            )
    return out


@pytest.mark.parametrize("release", sorted(COLLECTORS))
def test_collector_config_is_the_repository_file(release: str) -> None:
    """The values' `config:`, less its nulls for the chart's defaults, is stack/scale-out/collector/*."""
    expected = yaml.safe_load(COLLECTORS[release].read_text())
    assert _less_default_removals(expected, values(release)["config"]) == expected, (
        f"{release}: `config:` differs from {COLLECTORS[release].relative_to(REPO)}; copy the "
        f"file's content into {RELEASES[release].values}'s `config:` (nulls for the chart's defaults stay)"
    )


def collector_config(release: str) -> dict[str, Any]:
    return dict(yaml.safe_load(COLLECTORS[release].read_text()))


@pytest.mark.parametrize("release", sorted(COLLECTORS))
def test_collector_image_and_persistent_queue(release: str) -> None:
    v = values(release)
    assert v["image"]["tag"] == _pins()["OTELCOL_VERSION"], v["image"]
    assert v["fullnameOverride"] == release
    assert v["mode"] == {"otel-agent": "daemonset"}.get(release, "statefulset")
    mounts = {m["mountPath"]: m["name"] for m in v["extraVolumeMounts"]}
    queue_dir = collector_config(release)["extensions"]["file_storage"]["directory"]
    default = re.fullmatch(r"\$\{env:[A-Z_]+:-(.*)\}", queue_dir)
    assert default and default.group(1) in mounts, f"the file_storage queue dir is not on a volume: {mounts}"
    volume = mounts[default.group(1)]
    if release == "otel-agent":
        assert any(x["name"] == volume and "hostPath" in x for x in v["extraVolumes"]), v["extraVolumes"]
    else:
        claims = [c["metadata"]["name"] for c in v["statefulset"]["volumeClaimTemplates"]]
        assert volume in claims, f"{release}: the queue volume {volume} is no volumeClaimTemplate ({claims})"


def test_agents_route_traces_to_every_gateway_pod_by_stable_name() -> None:
    agent = collector_config("otel-agent")
    lb = agent["exporters"]["load_balancing"]
    assert lb["routing_key"] == "traceID"
    assert agent["service"]["pipelines"]["traces"]["exporters"] == ["load_balancing"]
    assert "${env:GATEWAY_ENDPOINTS" in lb["resolver"]["static"]["hostnames"]
    env = values_env("otel-agent")
    endpoints = yaml.safe_load(env["GATEWAY_ENDPOINTS"])
    gw = values("otel-gateway")
    # the chart names the StatefulSet and its Service fullnameOverride (not rendered: see docstring)
    svc = gw["fullnameOverride"]
    assert gw["service"]["clusterIP"] == "None", "the gateways' Service must be headless"
    assert endpoints == [f"{svc}-{i}.{svc}:4317" for i in range(gw["replicaCount"])]
    grpc = collector_config("otel-gateway")["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    assert re.fullmatch(r"\$\{env:[A-Z_]+:-0\.0\.0\.0:4317\}", grpc), f"gateways' OTLP gRPC endpoint {grpc}"
    logs = values("otel-logs-gateway")
    assert env["LOGS_GATEWAY_ENDPOINT"] == f"{logs['fullnameOverride']}:4317"


def test_gateways_identify_themselves_and_reach_the_trace_store() -> None:
    env = values_env("otel-gateway")
    assert env["GATEWAY_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert_names_a_service(env["TRACE_STORE_ENDPOINT"], "TRACE_STORE_ENDPOINT")
    assert env["TRACE_STORE_ENDPOINT"].startswith("tempo-distributor:")
    cfg = collector_config("otel-gateway")
    assert "tail_sampling" in cfg["service"]["pipelines"]["traces/sampled"]["processors"]
    assert cfg["service"]["pipelines"]["traces/spanmetrics"]["exporters"] == ["span_metrics"]


def test_logs_gateways_write_to_the_opensearch_service() -> None:
    env = values_env("otel-logs-gateway")
    assert env["LOGS_GATEWAY_OPENSEARCH_ENDPOINT"] == opensearch_address()


# ------------------------------------------------------------------------------ grafana
def grafana_config() -> dict[str, Any]:
    return one("grafana", "ConfigMap", "grafana")


def test_every_dashboard_lands_unchanged() -> None:
    cm = one("grafana", "ConfigMap", "grafana-dashboards-o11y-box")
    files = sorted(DASHBOARDS.glob("*.json"))
    assert files, "dashboards/json is empty"
    assert sorted(cm["data"]) == [f.name for f in files]
    for f in files:
        assert json.loads(cm["data"][f.name]) == json.loads(f.read_text()), f.name
    deployment = one("grafana", "Deployment")
    mounts = {m["mountPath"] for m in container(deployment, "grafana")["volumeMounts"]}
    provider = yaml.safe_load(grafana_config()["data"]["dashboardproviders.yaml"])["providers"][0]
    for f in files:
        assert f"{provider['options']['path']}/{f.name}" in mounts


def test_dashboard_provider_is_stack_grafanas_but_for_the_path() -> None:
    ours = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "dashboards.yaml").read_text())
    got = yaml.safe_load(grafana_config()["data"]["dashboardproviders.yaml"])
    assert got["apiVersion"] == ours["apiVersion"]
    assert len(got["providers"]) == len(ours["providers"]) == 1
    g, o = dict(got["providers"][0]), dict(ours["providers"][0])
    g["options"] = {k: v for k, v in g["options"].items() if k != "path"}
    o["options"] = {k: v for k, v in o["options"].items() if k != "path"}
    assert g == o


def test_datasources_are_stack_grafanas_but_for_in_cluster_urls() -> None:
    ours = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "datasources.yaml").read_text())
    got = yaml.safe_load(grafana_config()["data"]["datasources.yaml"])
    assert [d["uid"] for d in got["datasources"]] == [d["uid"] for d in ours["datasources"]]
    for g, o in zip(got["datasources"], ours["datasources"], strict=True):
        assert {k: v for k, v in g.items() if k != "url"} == {k: v for k, v in o.items() if k != "url"}
        if g["type"] == "grafana-opensearch-datasource":  # its chart is not rendered (docstring)
            assert g["url"] == opensearch_address(), f"datasource {g['uid']}"
        else:
            assert_names_a_service(g["url"], f"datasource {g['uid']}")
    urls = {d["uid"]: d["url"] for d in got["datasources"]}
    assert urls["o11y-prometheus"].startswith("http://thanos-query:"), "Prometheus reads Thanos Query"
    assert urls["o11y-tempo"].startswith("http://tempo-query-frontend:")


def test_grafana_ini_carries_every_setting_of_stack_grafana() -> None:
    def parse(text: str) -> configparser.ConfigParser:
        cp = configparser.ConfigParser(interpolation=None)
        cp.read_string(text)
        return cp

    ours = parse((GRAFANA / "grafana.ini").read_text())
    got = parse(grafana_config()["data"]["grafana.ini"])
    for section in ours.sections():
        for key, value in ours.items(section):
            assert got.get(section, key, fallback=None) == value, f"[{section}] {key}"
    # where stack/grafana/Dockerfile bakes the OpenSearch plugin (the chart sets GF_PATHS_PLUGINS)
    dockerfile = (GRAFANA / "Dockerfile").read_text()
    plugins = re.search(r"GF_PATHS_PLUGINS=(\S+)", dockerfile)
    assert plugins and got.get("paths", "plugins") == plugins.group(1)
    env = env_of(container(one("grafana", "Deployment"), "grafana"))
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == {
        "secretKeyRef": {"name": "grafana-admin", "key": "admin-password"}
    }
    assert container(one("grafana", "Deployment"), "grafana")["image"].endswith(
        f"o11y-box/grafana:{_pins()['GRAFANA_VERSION']}"
    )


# ------------------------------------------------------------------------------ opensearch
# (chart opensearch: NOT rendered, see the module docstring; values-file checks only)
PER_NODE_KEYS = ("node.name", "node.roles", "discovery.seed_hosts", "cluster.initial_cluster_manager_nodes")


def test_opensearch_yml_is_node1s_less_the_per_node_keys() -> None:
    ours = yaml.safe_load((SCALE_OUT / "opensearch" / "opensearch-node1.yml").read_text())
    v = values("opensearch")
    got = yaml.safe_load(v["config"]["opensearch.yml"])
    assert got == {k: val for k, val in ours.items() if k not in PER_NODE_KEYS}
    assert v["replicas"] == 2
    assert v["clusterName"] == ours["cluster.name"]
    env = values_env("opensearch")
    assert env["DISABLE_SECURITY_PLUGIN"] == "true"
    assert v["securityConfig"]["enabled"] is False and v["protocol"] == "http"
    assert v["image"]["tag"] == _pins()["OPENSEARCH_VERSION"]


def _extra_object(kind: str, name: str) -> dict[str, Any]:
    found = [
        o for o in values("opensearch")["extraObjects"] if o["kind"] == kind and o["metadata"]["name"] == name
    ]
    assert len(found) == 1, f"opensearch.values.yaml extraObjects: {len(found)} {kind} {name}"
    return dict(found[0])


def test_opensearch_setup_job_applies_the_repository_files() -> None:
    cm = _extra_object("ConfigMap", "opensearch-setup")
    for name in ("index-template-logs.json", "ism-policy-logs.json"):
        assert json.loads(cm["data"][name]) == json.loads((SCALE_OUT / "opensearch" / name).read_text()), name
    job = _extra_object("Job", "opensearch-setup")
    cmd = container(job)["command"]
    assert cmd[:3] == ["python", "-m", "scripts.opensearch_setup"]
    assert cmd[cmd.index("--url") + 1] == opensearch_address()


# ------------------------------------------------------------------------------ tempo
def tempo_config() -> dict[str, Any]:
    return dict(yaml.safe_load(one("tempo", "ConfigMap", "tempo-config")["data"]["tempo.yaml"]))


def test_tempo_carries_the_choices_of_the_overlay_config() -> None:
    ours = yaml.safe_load((SCALE_OUT / "tempo" / "tempo.yaml").read_text())
    got = tempo_config()
    assert got["stream_over_http_enabled"] is True
    assert got["usage_report"] == ours["usage_report"]
    assert got["ingest"]["kafka"]["topic"] == ours["ingest"]["kafka"]["topic"]
    for key in ("backend", "s3"):
        assert got["storage"]["trace"][key] == ours["storage"]["trace"][key], key
    assert (
        got["backend_worker"]["compaction"]["block_retention"]
        == ours["backend_worker"]["compaction"]["block_retention"]
    )
    sched = got["backend_scheduler"]["provider"]["compaction"]["compaction"]["block_retention"]
    assert sched == ours["backend_scheduler"]["provider"]["compaction"]["compaction"]["block_retention"]
    mg, omg = got["metrics_generator"], ours["metrics_generator"]
    assert mg["registry"]["external_labels"] == omg["registry"]["external_labels"]
    assert mg["processor"]["service_graphs"]["wait"] == omg["processor"]["service_graphs"]["wait"]
    assert [rw["send_exemplars"] for rw in mg["storage"]["remote_write"]] == [True]
    assert got["overrides"]["defaults"] == ours["overrides"]["defaults"]
    assert "otlp" in got["distributor"]["receivers"]
    # one partition per live-store / block-builder pair (the chart's own rule)
    parts = got["ingest"]["kafka"]["auto_create_topic_default_partitions"]
    sts = objects("tempo", "StatefulSet")
    assert sts["tempo-live-store"]["spec"]["replicas"] == parts
    assert sts["tempo-block-builder"]["spec"]["replicas"] == parts
    for name, workload in {**objects("tempo", "Deployment"), **sts}.items():
        c = container(workload)
        assert c["image"].endswith(f"grafana/tempo:{_pins()['TEMPO_VERSION']}"), name
        if "s3" in str(got["storage"]["trace"]):
            assert "-config.expand-env=true" in c["args"], f"{name}: the S3 keys are ${{VAR}}s"


def _at(tree: dict[str, Any], dotted: str) -> Any:
    for key in dotted.split("."):
        tree = tree[key]
    return tree


@pytest.mark.parametrize(
    "release", sorted(r for r in RENDERED if RENDERED[r].chart in obtain_helm.STRIPPED_DEPENDENCIES)
)
def test_dependencies_left_out_of_the_cached_chart_are_switched_off(release: str) -> None:
    """obtain_helm_charts removes these dependencies from the cached Chart.yaml; the values file must
    set each one's condition false (else a real install would get them, and here they are missing)."""
    chart = RENDERED[release].chart
    stripped = json.loads(_charts().extra["stripped_dependencies"])[chart]
    assert sorted(stripped) == sorted(obtain_helm.STRIPPED_DEPENDENCIES[chart])
    v = values(release)
    for dep, condition in stripped.items():
        assert _at(v, condition) is False, (
            f"{RENDERED[release].values}: {condition} (dependency {dep}) must be false"
        )
    deps = yaml.safe_load((chart_dir(release) / "Chart.yaml").read_text()).get("dependencies") or []
    assert not {d["name"] for d in deps} & set(stripped)


# ------------------------------------------------------------------------------ thanos
def _args(workload: dict[str, Any]) -> list[str]:
    return list(container(workload)["args"])


def _compose_receive_flag(flag: str) -> str:
    overlay = (SCALE_OUT / "compose.yaml").read_text()
    found = set(re.findall(rf'"--{re.escape(flag)}=([^"]+)"', overlay))
    assert len(found) == 1, f"compose overlay: --{flag} has values {found}"
    return found.pop()


def test_thanos_router_ingestors_and_query_as_in_the_overlay() -> None:
    hashring_file = json.loads((SCALE_OUT / "thanos" / "hashring.json").read_text())
    router = _args(one("thanos", "Deployment", "thanos-receive-distributor"))
    assert f"--receive.replication-factor={_compose_receive_flag('receive.replication-factor')}" in router
    assert f"--receive.hashrings-algorithm={hashring_file[0]['algorithm']}" in router
    ingestors = one("thanos", "StatefulSet", "thanos-receive")
    hashring = json.loads(one("thanos", "ConfigMap", "thanos-receive")["data"]["hashrings.json"])
    assert len(hashring) == 1
    assert len(hashring[0]["endpoints"]) == ingestors["spec"]["replicas"]
    assert ingestors["spec"]["replicas"] == len(hashring_file[0]["endpoints"])
    ing = _args(ingestors)
    assert f"--tsdb.retention={_compose_receive_flag('tsdb.retention')}" in ing
    assert f"--tsdb.max-exemplars={_compose_receive_flag('tsdb.max-exemplars')}" in ing
    assert '--label=receive_replica="$(NAME)"' in ing
    query = _args(one("thanos", "Deployment", "thanos-query"))
    assert f"--query.replica-label={_compose_receive_flag('query.replica-label')}" in query
    assert any(a.endswith("thanos-receive-headless.o11y.svc.cluster.local") for a in query), query
    for workload in (*objects("thanos", "Deployment").values(), *objects("thanos", "StatefulSet").values()):
        assert container(workload)["image"] == f"docker.io/thanosio/thanos:{_pins()['THANOS_VERSION']}"


def test_thanos_gets_bitnami_common_from_the_same_module() -> None:
    deps = yaml.safe_load((chart_dir("thanos") / "Chart.yaml").read_text())["dependencies"]
    assert [d["name"] for d in deps] == ["common"]
    common = yaml.safe_load((chart_dir("thanos") / "charts" / "common" / "Chart.yaml").read_text())
    assert common["name"] == "common" and common["type"] == "library"
    assert str(common["version"]).startswith("2."), f"thanos wants common {deps[0]['version']}"
