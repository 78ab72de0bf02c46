"""Names, tags and build order of the local stand-in images (scripts/engine/local_images.py builds them).

Pure: everything here follows from .env's pins and the constants below, so the static tests
(tests/static/test_local_images.py) check the compose override's image names without an engine.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO_PREFIX = "o11y-box-local/"
IMAGES_DIR = Path(__file__).resolve().parent / "images"
SUITE = "bookworm"
VARIANT = "minbase"
BASE_PACKAGES = ("ca-certificates",)
# As debian:<suite>-slim (debuerreotype's slimify): no docs but copyrights, no man/info/locale files.
# mmdebstrap keeps these in /etc/dpkg/dpkg.cfg.d/, so later apt-get installs honour them too.
BASE_DPKG_OPTS = (
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/groff/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/linda/*",
    "path-exclude=/usr/share/lintian/overrides/*",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/man/*",
)
# Debian bookworm's versions of the software that has no .env pin (the tags say these, not upstream's).
BUSYBOX_VERSION = "1.35.0"  # busybox-static 1:1.35.0-4+deb12u1
PYTHON_VERSION = "3.11.2"  # python3.11 3.11.2-6+deb12u*
PYTHON_TAG = "3.11-bookworm"

# name -> the local images it builds FROM (build order follows this tuple's order)
DEPENDS: dict[str, tuple[str, ...]] = {
    "debian-base": (),
    "busybox": ("debian-base",),
    "python": ("debian-base",),
    "postgres": ("debian-base",),
    "prometheus": ("busybox",),
    "opensearch": ("debian-base",),
    "otelcol-contrib-subset": ("debian-base",),
    "jaeger": ("debian-base", "busybox"),
}
NAMES = tuple(DEPENDS)
# the build arg through which a recipe receives each dependency
DEP_ARG = {"debian-base": "BASE_IMAGE", "busybox": "BUSYBOX_IMAGE"}


class LocalImageError(RuntimeError):
    """A local image could not be built; the message names the step and its log."""


def base_key() -> str:
    spec = json.dumps(
        {"suite": SUITE, "variant": VARIANT, "packages": sorted(BASE_PACKAGES), "dpkg": BASE_DPKG_OPTS}
    )
    return hashlib.sha256(spec.encode()).hexdigest()[:12]


def postgres_version(pins: Mapping[str, str]) -> tuple[str, str]:
    """``postgres:15.18-bookworm`` -> (``15``, ``15.18``)."""
    m = re.search(r":(\d+)\.(\d+)", pins.get("POSTGRES_IMAGE", ""))
    if not m:
        raise LocalImageError(f"POSTGRES_IMAGE={pins.get('POSTGRES_IMAGE')!r}: no <major>.<minor> tag")
    return m.group(1), f"{m.group(1)}.{m.group(2)}"


def jaeger_version(pins: Mapping[str, str]) -> str:
    """.env's JAEGER_VERSION (the Go module version, e.g. ``1.76.0``)."""
    return pins["JAEGER_VERSION"].removeprefix("v")


def image_refs(pins: Mapping[str, str]) -> dict[str, str]:
    """name -> ``o11y-box-local/<name>:<tag>`` for every local image, from the .env pins."""
    tags = {
        "debian-base": f"{SUITE}-{base_key()}",
        "busybox": BUSYBOX_VERSION,
        "python": PYTHON_TAG,
        "postgres": pins["POSTGRES_IMAGE"].split(":", 1)[1],
        "prometheus": pins["PROMETHEUS_VERSION"],
        "opensearch": pins["OPENSEARCH_VERSION"],
        # our native OCB build, so the native version, never the compose pin it does not hold
        "otelcol-contrib-subset": pins["OTELCOL_NATIVE_VERSION"],
        "jaeger": jaeger_version(pins),
    }
    return {name: f"{REPO_PREFIX}{name}:{tags[name]}" for name in NAMES}


def with_dependencies(only: Sequence[str] | None) -> list[str]:
    """The requested names plus everything they build FROM, in build order."""
    wanted = set(only or NAMES)
    unknown = wanted - set(NAMES)
    if unknown:
        raise LocalImageError(f"unknown local image(s) {sorted(unknown)}; known: {', '.join(NAMES)}")
    todo = list(wanted)
    while todo:
        for dep in DEPENDS[todo.pop()]:
            if dep not in wanted:
                wanted.add(dep)
                todo.append(dep)
    return [n for n in NAMES if n in wanted]
