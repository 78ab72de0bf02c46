"""The local stand-in images and the compose override that selects them, checked without an engine.

- tests/compose/local-images.yaml changes nothing but ``image:`` and ``build.args`` of services
  compose.yaml has (as YAML, and in the model the real Compose binary produces);
- every image it names is an ``o11y-box-local/`` image whose tag is what scripts/engine/local_images.py
  builds from .env's pins;
- every recipe under scripts/engine/images/ carries the header (what it stands in for, what follows
  upstream, what differs) and has upstream's USER / ENTRYPOINT / WORKDIR / CMD in its final stage;
- the project's own Dockerfiles take their base image as a build arg whose default stays upstream's.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts.engine import local_image_names
from scripts.native.obtain import read_env_pins
from tests.static.binaries import REPO, binary, explain, run

OVERRIDE = REPO / "tests" / "compose" / "local-images.yaml"
COMPOSE = REPO / "compose.yaml"
PINS = read_env_pins(REPO)
PREFIX = "o11y-box-local/"


@dataclass(frozen=True)
class Upstream:
    """What the upstream image's final stage declares; ``read`` is the file it was read from."""

    read: str
    user: str | None
    entrypoint: list[str] | None
    workdir: str | None
    cmd: list[str] | None


# Read with the search tool from the upstream repositories named in `read`.
UPSTREAM = {
    "busybox": Upstream(
        "docker-library/busybox latest-1/glibc/Dockerfile.builder + amd64/image-config.json",
        None,
        None,
        None,
        ["sh"],
    ),
    "python": Upstream("docker-library/python 3.11/slim-bookworm/Dockerfile", None, None, None, ["python3"]),
    "postgres": Upstream(
        "docker-library/postgres 15/bookworm/Dockerfile", None, ["docker-entrypoint.sh"], None, ["postgres"]
    ),
    "prometheus": Upstream(
        "prometheus/prometheus Dockerfile (main, d15adb9: the 3.x recipe)",
        "nobody",
        ["/bin/prometheus"],
        "/prometheus",
        ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"],
    ),
    "opensearch": Upstream(
        "opensearch-project/opensearch-build docker/release/dockerfiles/opensearch.al2023.dockerfile",
        "1000",
        ["./opensearch-docker-entrypoint.sh"],
        "/usr/share/opensearch",
        ["opensearch"],
    ),
    "otelcol-contrib-subset": Upstream(
        "open-telemetry/opentelemetry-collector-releases distributions/otelcol-contrib/Dockerfile",
        "10001:10001",
        ["/otelcol-contrib"],
        None,
        ["--config", "/etc/otelcol-contrib/config.yaml"],
    ),
    "jaeger": Upstream(
        "jaegertracing/jaeger cmd/jaeger/Dockerfile (release stage, v1.76.0)",
        "10001",
        ["/cmd/jaeger/jaeger-linux"],
        None,
        None,
    ),
}
RECIPES = sorted(p.name for p in local_image_names.IMAGES_DIR.iterdir() if p.is_dir())


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, argument text) with continuations joined and comment lines dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        word, _, rest = (pending + line).partition(" ")
        out.append((word.upper(), rest.strip()))
        pending = ""
    return out


def final_stage(dockerfile: Path) -> dict[str, Any]:
    """USER / ENTRYPOINT / WORKDIR / CMD of the last stage (ARG defaults of that stage substituted)."""
    insts = _instructions(dockerfile)
    last_from = max(i for i, (word, _) in enumerate(insts) if word == "FROM")
    args: dict[str, str] = {}
    found: dict[str, Any] = {"USER": None, "ENTRYPOINT": None, "WORKDIR": None, "CMD": None}
    for word, rest in insts[last_from + 1 :]:
        if word == "ARG" and "=" in rest:
            key, _, value = rest.partition("=")
            args[key] = value
        elif word in found:
            value = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), rest)
            found[word] = json.loads(value) if word in ("ENTRYPOINT", "CMD") else value
    return found


def _interpolate(text: str) -> str:
    """compose-style ${VAR:-default} / ${VAR} against .env's pins."""

    def sub(m: re.Match[str]) -> str:
        return PINS.get(m.group(1)) or (m.group(3) or "")

    return re.sub(r"\$\{(\w+)(:?-([^}]*))?\}", sub, text)


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


OVERRIDE_DATA = _load(OVERRIDE)
COMPOSE_SERVICES: dict[str, Any] = _load(COMPOSE)["services"]
REFS = local_image_names.image_refs(PINS)


def test_override_only_sets_image_and_build_args_of_existing_services() -> None:
    assert set(OVERRIDE_DATA) == {"services"}, "only `services:` at the top level"
    for name, svc in OVERRIDE_DATA["services"].items():
        assert name in COMPOSE_SERVICES, f"{name}: not a compose.yaml service"
        assert set(svc) <= {"image", "build"}, f"{name}: touches {sorted(set(svc) - {'image', 'build'})}"
        if "build" in svc:
            assert set(svc["build"]) == {"args"}, f"{name}: build keys other than args: {svc['build']}"
            assert isinstance(svc["build"]["args"], dict) and svc["build"]["args"]
            assert "build" in COMPOSE_SERVICES[name], f"{name}: build args for a service that does not build"


def _override_images() -> dict[str, str]:
    """'<service>' or '<service>.<ARG>' -> the interpolated image ref the override names (third-party
    stand-ins only: the `image:` of a service compose BUILDS names what that build is tagged, checked
    in test_built_images_are_tagged_with_what_they_hold)."""
    out: dict[str, str] = {}
    for name, svc in OVERRIDE_DATA["services"].items():
        if "image" in svc and "build" not in COMPOSE_SERVICES[name]:
            out[name] = _interpolate(svc["image"])
        for arg, value in svc.get("build", {}).get("args", {}).items():
            if arg.endswith("_IMAGE"):
                out[f"{name}.{arg}"] = _interpolate(str(value))
    return out


def test_every_image_the_override_names_is_a_local_image_this_repo_builds() -> None:
    images = _override_images()
    assert images
    for where, ref in images.items():
        assert ref.startswith(PREFIX), f"{where}: {ref} is not under {PREFIX}"
        assert ref in REFS.values(), f"{where}: {ref} is not built by local_images ({sorted(REFS.values())})"


def test_override_covers_every_third_party_image_that_can_be_built_here() -> None:
    services = OVERRIDE_DATA["services"]
    assert services["postgres"]["image"] and _interpolate(services["postgres"]["image"]) == REFS["postgres"]
    assert _interpolate(services["prometheus"]["image"]) == REFS["prometheus"]
    assert _interpolate(services["opensearch"]["image"]) == REFS["opensearch"]
    args = services["otel-collector"]["build"]["args"]
    assert _interpolate(args["OTELCOL_IMAGE"]) == REFS["otelcol-contrib-subset"]
    assert _interpolate(args["BUSYBOX_IMAGE"]) == REFS["busybox"]
    # every service built from sample_service/Dockerfile (the x-service-build anchor) gets the arg:
    # an override merges per service, an anchor in compose.yaml does not reach it
    python_builders = {
        name
        for name, svc in COMPOSE_SERVICES.items()
        if isinstance(svc.get("build"), dict)
        and svc["build"].get("dockerfile") == "sample_service/Dockerfile"
    }
    assert python_builders, "compose.yaml: no service builds sample_service/Dockerfile?"
    for name in python_builders:
        assert services[name]["build"]["args"]["PYTHON_IMAGE"] == REFS["python"], name
    # no local image for these: Tempo (AGPL; Jaeger's override stands in) and Grafana (AGPL, no image)
    assert "tempo" not in services and "grafana" not in services


def test_built_images_are_tagged_with_what_they_hold() -> None:
    """The e2e's collector image holds the native OCB build (OTELCOL_NATIVE_VERSION): its tag and its
    OTELCOL_VERSION build arg say so, never compose's OTELCOL_VERSION (docs/native.md)."""
    built = {
        n for n, svc in OVERRIDE_DATA["services"].items() if "image" in svc and "build" in COMPOSE_SERVICES[n]
    }
    assert built == {"otel-collector"}, built
    svc = OVERRIDE_DATA["services"]["otel-collector"]
    native = PINS["OTELCOL_NATIVE_VERSION"]
    image = _interpolate(svc["image"])
    assert image == f"o11y-box/otel-collector:native-{native}"
    assert image != _interpolate(COMPOSE_SERVICES["otel-collector"]["image"]), "would shadow the user image"
    assert _interpolate(str(svc["build"]["args"]["OTELCOL_VERSION"])) == native
    assert REFS["otelcol-contrib-subset"].endswith(f":{native}")


def test_compose_model_differs_only_in_image_and_build_args() -> None:
    """The real Compose binary merges the files: nothing but image / build.args may change."""
    compose = binary("docker-compose")

    def model(*files: Path) -> dict[str, Any]:
        argv: list[str | Path] = [compose, "-p", "o11y-img-static"]
        for f in files:
            argv += ["-f", f]
        proc = run([*argv, "config", "--format", "json"])
        assert proc.returncode == 0, explain(proc)
        services: dict[str, Any] = json.loads(proc.stdout)["services"]
        for svc in services.values():
            svc.pop("image", None)
            if isinstance(svc.get("build"), dict):
                svc["build"].pop("args", None)
        return services

    assert model(COMPOSE, OVERRIDE) == model(COMPOSE)


def test_local_image_names_are_distinct_and_never_upstream_names() -> None:
    repos = [ref.rsplit(":", 1)[0] for ref in REFS.values()]
    assert len(set(repos)) == len(repos)
    for ref in REFS.values():
        assert ref.startswith(PREFIX), ref
    assert set(REFS) == set(RECIPES) | {"debian-base"}, (
        "a recipe dir per local image (the base is mmdebstrap)"
    )


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_has_the_header(name: str) -> None:
    text = (local_image_names.IMAGES_DIR / name / "Dockerfile").read_text()
    header = text.split("\nARG ", 1)[0].split("\nFROM ", 1)[0]
    for marker in ("# Stands in for:", "# Follows upstream:", "# Differs from upstream"):
        assert marker in header, f"{name}: header lacks {marker!r}"


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_final_stage_matches_upstream(name: str) -> None:
    up = UPSTREAM[name]
    got = final_stage(local_image_names.IMAGES_DIR / name / "Dockerfile")
    want = {"USER": up.user, "ENTRYPOINT": up.entrypoint, "WORKDIR": up.workdir, "CMD": up.cmd}
    assert got == want, f"{name}: final stage differs from upstream ({up.read})"


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_pulls_nothing(name: str) -> None:
    """Every FROM is a build arg (a local image) or scratch: a recipe never names a registry image."""
    for word, rest in _instructions(local_image_names.IMAGES_DIR / name / "Dockerfile"):
        if word == "FROM":
            base = rest.split()[0]
            assert base == "scratch" or re.fullmatch(r"\$\{\w+\}", base), f"{name}: FROM {base}"


@pytest.mark.parametrize(
    "script", ["postgres/docker-entrypoint.sh", "opensearch/opensearch-docker-entrypoint.sh"]
)
def test_entrypoints_exec_the_server(script: str) -> None:
    """PID 1 must be the server (SIGTERM from `docker stop` reaches it): the script ends in exec."""
    path = local_image_names.IMAGES_DIR / script
    assert path.stat().st_mode & 0o111, f"{script} is not executable"
    code = [
        ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.strip().startswith("#")
    ]
    assert code[-1].startswith('exec "$@"'), f"{script}: last command is {code[-1]!r}"


@pytest.mark.parametrize(
    ("dockerfile", "arg", "default"),
    [
        ("collector/Dockerfile", "OTELCOL_IMAGE", "otel/opentelemetry-collector-contrib:${OTELCOL_VERSION}"),
        ("stack/tempo/Dockerfile", "TEMPO_IMAGE", "grafana/tempo:${TEMPO_VERSION}"),
        ("stack/grafana/Dockerfile", "GRAFANA_IMAGE", "grafana/grafana:${GRAFANA_VERSION}"),
        ("sample_service/Dockerfile", "PYTHON_IMAGE", "python:3.11-slim-bookworm"),
    ],
)
def test_project_dockerfiles_take_the_base_as_a_build_arg(dockerfile: str, arg: str, default: str) -> None:
    insts = _instructions(REPO / dockerfile)
    assert ("ARG", f"{arg}={default}") in insts, f"{dockerfile}: no `ARG {arg}={default}` (upstream default)"
    froms = [rest.split()[0] for word, rest in insts if word == "FROM"]
    assert f"${{{arg}}}" in froms, f"{dockerfile}: no stage is FROM ${{{arg}}}"
