"""The command line: python -m scripts.native.obtain [component ...|all] (usage: the package's docstring)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scripts.native import obtain as _package
from scripts.native.obtain.cache import NotObtained
from scripts.native.obtain.lookup import cached, obtain
from scripts.native.obtain.opensearch_smoke import smoke_test_opensearch
from scripts.native.obtain.pins import COMPONENTS, REPO_ROOT, canonical, read_env_pins
from scripts.native.obtain.steps import ObtainError, fmt_seconds, say


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m scripts.native.obtain", description=(_package.__doc__ or "").split("\n\n")[0]
    )
    p.add_argument(
        "components", nargs="*", default=["all"], help=f"all (default) or any of: {', '.join(COMPONENTS)}"
    )
    p.add_argument("--print-paths", action="store_true", help="print {component: {...}} JSON on stdout")
    p.add_argument(
        "--cached-only", action="store_true", help="build nothing; report (or fail on) what is cached"
    )
    p.add_argument(
        "--smoke", action="store_true", help="after obtaining OpenSearch, start it once and curl it"
    )
    p.add_argument(
        "--pin",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one .env pin for this run (e.g. to try another version)",
    )
    p.add_argument("--repo-root", type=Path, default=REPO_ROOT)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    names = list(COMPONENTS) if "all" in args.components else [canonical(c) for c in args.components]
    names = list(dict.fromkeys(names))
    pins = read_env_pins(args.repo_root)
    for item in args.pin:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--pin {item!r}: expected KEY=VALUE")
        pins[key] = value
    results: dict[str, Any] = {}
    failed: dict[str, str] = {}
    timings: list[tuple[str, str, float, bool]] = []
    for name in names:
        start = time.monotonic()
        try:
            got = (
                cached(name, pins, args.repo_root) if args.cached_only else obtain(name, pins, args.repo_root)
            )
        except (ObtainError, NotObtained, subprocess.CalledProcessError) as exc:
            failed[name] = str(exc)
            say(f"{name}: FAILED: {exc}")
            continue
        timings.append((name, got.version, time.monotonic() - start, got.cached))
        results[name] = got.to_json()
        if name == "opensearch" and args.smoke:
            try:
                smoke = smoke_test_opensearch(got)
                results[name]["smoke"] = {k: smoke[k] for k in ("modules", "plugins", "seconds_to_ready")}
            except ObtainError as exc:
                failed["opensearch-smoke"] = str(exc)
                say(f"opensearch smoke test FAILED: {exc}")
    say("summary:")
    for name, version, seconds, was_cached in timings:
        how = "cached" if was_cached else f"built in {fmt_seconds(seconds)}"
        say(f"  {name:<11} {version:<14} {how:<16} {results[name]['binaries']}")
    for name, err in failed.items():
        say(f"  {name:<11} FAILED ({err.splitlines()[0]})")
    if args.print_paths:
        print(json.dumps(results, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
