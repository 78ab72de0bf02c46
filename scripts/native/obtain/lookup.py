"""Any component by name or alias: obtain it, or find it in the cache without building."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from scripts.native.obtain.cache import NotObtained, Obtained, cached_entry, component_dir
from scripts.native.obtain.collector import obtain_otelcol, obtain_otelcol_compose_check
from scripts.native.obtain.compose import obtain_compose
from scripts.native.obtain.helm import obtain_helm, obtain_helm_charts, obtain_kubeconform
from scripts.native.obtain.jaeger import obtain_jaeger
from scripts.native.obtain.opensearch import obtain_opensearch
from scripts.native.obtain.pins import canonical, pins_or_env
from scripts.native.obtain.postgres import obtain_postgres
from scripts.native.obtain.prometheus import obtain_prometheus
from scripts.native.obtain.scale_out import obtain_otelcol_scale_out, obtain_thanos
from scripts.native.obtain.steps import ObtainError

OBTAINERS = {
    "otelcol": obtain_otelcol,
    "otelcol-compose-check": obtain_otelcol_compose_check,
    "otelcol-scale-out": obtain_otelcol_scale_out,
    "jaeger": obtain_jaeger,
    "prometheus": obtain_prometheus,
    "opensearch": obtain_opensearch,
    "compose": obtain_compose,
    "postgres": obtain_postgres,
    "thanos": obtain_thanos,
    "helm": obtain_helm,
    "kubeconform": obtain_kubeconform,
    "helm-charts": obtain_helm_charts,
}


def obtain(
    component: str, pins: Mapping[str, str] | None = None, repo_root: Path | str | None = None
) -> Obtained:
    """Obtain one component (name or alias, e.g. ``promtool``, ``docker-compose``)."""
    return OBTAINERS[canonical(component)](pins, repo_root)


def cached(
    component: str, pins: Mapping[str, str] | None = None, repo_root: Path | str | None = None
) -> Obtained:
    """The cached component at its pinned version, without building; raises NotObtained if absent."""
    name = canonical(component)
    pins = pins_or_env(pins, repo_root)
    if name == "postgres":
        try:
            return (
                obtain_postgres(pins, repo_root)
                if list(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
                else _raise(NotObtained("postgres: no /usr/lib/postgresql/*/bin/postgres"))
            )
        except ObtainError as exc:
            raise NotObtained(str(exc)) from exc
    final = component_dir(name, pins, repo_root)
    got = cached_entry(name, final)
    if got is None:
        raise NotObtained(
            f"{name}: not in the cache at {final}; run `python -m scripts.native.obtain {name}`"
        )
    return got


def _raise(exc: BaseException) -> Any:
    raise exc


def cached_path(
    component: str, pins: Mapping[str, str] | None = None, repo_root: Path | str | None = None
) -> Path:
    """Path of a cached component's binary by name, without building (raises NotObtained).

    ``otelcol``/``otelcol-o11y``, ``otelcol-compose-check``/``otelcol-o11y-compose-check``, ``jaeger``,
    ``prometheus``, ``promtool``, ``compose``/``docker-compose``,
    ``postgres`` (the server binary) -> that binary; ``opensearch`` -> the OpenSearch *home* dir.
    """
    got = cached(component, pins, repo_root)
    if got.component == "opensearch":
        return got.home
    if component in got.binaries:
        return got.binaries[component]
    return got.binary
