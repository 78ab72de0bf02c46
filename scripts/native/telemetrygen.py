"""The collector-contrib OTLP load generator ``telemetrygen``, built once into the native-builds cache.

    python -m scripts.native.telemetrygen            # build when missing, print the binary's path
    python -m scripts.native.telemetrygen --cached-only   # print it, or exit 1 when not built

``GOBIN=<cache>/telemetrygen-<version>/ go install
github.com/open-telemetry/opentelemetry-collector-contrib/cmd/telemetrygen@v<version>`` (the module is
served by the Go module proxy; v0.161.0 was its newest version there and builds with the installed
Go). Built into a temp dir beside the final one and renamed into place, under a file lock, so
concurrent callers wait for one build; build output in ``<dir>.log``. Used by
``benchmarks/pipeline_capacity.py``; it is a load generator, not a stack component.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from scripts.native.obtain import cache_root

VERSION = "0.161.0"
MODULE = "github.com/open-telemetry/opentelemetry-collector-contrib/cmd/telemetrygen"
BINARY = "telemetrygen"
BUILD_TIMEOUT_S = 1800


class TelemetrygenError(RuntimeError):
    pass


def cache_dir(version: str = VERSION) -> Path:
    return cache_root() / f"telemetrygen-{version}"


def cached(version: str = VERSION) -> Path | None:
    path = cache_dir(version) / BINARY
    return path if path.is_file() and os.access(path, os.X_OK) else None


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build(version: str = VERSION) -> Path:
    """The cached binary, built with ``go install`` when missing (needs the network and Go)."""
    final = cache_dir(version)
    with _lock(final.with_name(final.name + ".lock")):
        got = cached(version)
        if got:
            return got
        go = shutil.which("go")
        if not go:
            raise TelemetrygenError("telemetrygen needs Go to build (`go` not on PATH)")
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
        log_path = final.with_name(final.name + ".log")
        env = {**os.environ, "GOBIN": str(tmp), "CGO_ENABLED": "0"}
        with open(log_path, "w") as log:
            try:
                rc = subprocess.run(
                    [go, "install", "-trimpath", "-ldflags=-s -w", f"{MODULE}@v{version}"],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=BUILD_TIMEOUT_S,
                    check=False,
                ).returncode
            except subprocess.TimeoutExpired:
                rc = -1
        if rc != 0 or not (tmp / BINARY).is_file():
            shutil.rmtree(tmp, ignore_errors=True)
            tail = log_path.read_text(errors="replace")[-2000:]
            raise TelemetrygenError(
                f"go install {MODULE}@v{version} failed (rc {rc}); log {log_path}:\n{tail}"
            )
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        os.chmod(final, 0o755)
        return final / BINARY


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", default=VERSION, help=f"module version without the v (default {VERSION})")
    p.add_argument("--cached-only", action="store_true", help="never build; exit 1 when not cached")
    args = p.parse_args(argv)
    if args.cached_only:
        got = cached(args.version)
        if not got:
            print(
                f"telemetrygen {args.version} is not built (python -m scripts.native.telemetrygen)",
                file=sys.stderr,
            )
            return 1
        print(got)
        return 0
    try:
        print(build(args.version))
    except TelemetrygenError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
