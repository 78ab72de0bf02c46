"""Open-loop load at a constant arrival rate over the sample service's routes.

    python -m scripts.o11y.load --rate 20 --duration 60 --base-url http://127.0.0.1:8000 \
        --mix evaluate=0.7,records=0.25,partner=0.05 --out run.json

Request i is due at start + i/rate whatever happened to the requests before it (open loop), and
its latency is measured from that *intended* time, not from when it was sent: a stalled service
therefore shows its stall in every request that should have gone out during it, instead of the
generator politely waiting and recording only one slow request (coordinated omission). A request
sent more than --late-ms after its due time is counted as late; one still unsent when the run
ends (the --max-inflight cap was full the whole time) is counted as unsent.

Stdlib + httpx + sample_service.domain only: compose's `loadgen` service runs this module in the
service image, which has no CLI libraries (`--duration forever` prints one line per window).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from sample_service.domain import random_ingredients
from scripts.o11y import stats
from scripts.o11y.open_loop import LoadError, Outcome, Recording, Sample, check_rate, run_open_loop

# Route name in the mix -> the http_route label the server's histogram carries for it.
ROUTES: dict[str, str] = {
    "evaluate": "/v1/evaluate",
    "records": "/v1/users/{user_id}/records",
    "partner": "/v1/score/{user_id}",  # the partner API's own route (job partner-api)
}
DEFAULT_MIX = "evaluate=0.7,records=0.25,partner=0.05"
RECORDS_LIMIT = 50
HEAVY_USER = 1  # the seed's user with many records: its reads walk the pages (see Traffic.records)
HEAVY_USER_SHARE = 0.2
# The network contract (DEVELOPERS.md): the partner API is partner-api:8001 beside sample-service:8000.
SERVICE_PORT, PARTNER_PORT = 8000, 8001
COMPOSE_HOSTS = {"sample-service": "partner-api"}



# ------------------------------------------------------------------------------------------------
# parameters
# ------------------------------------------------------------------------------------------------
def parse_mix(text: str) -> dict[str, float]:
    """'evaluate=0.7,records=0.3' -> weights normalised to sum 1 (only routes with weight > 0)."""
    weights: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in ROUTES:
            raise LoadError(
                f"mix entry {part!r}: expected ROUTE=WEIGHT with ROUTE one of {', '.join(ROUTES)}"
            )
        try:
            weight = float(value)
        except ValueError:
            raise LoadError(f"mix entry {part!r}: weight {value!r} is not a number") from None
        if not math.isfinite(weight) or weight < 0:
            raise LoadError(f"mix entry {part!r}: weight must be a finite number >= 0")
        if name in weights:
            raise LoadError(f"mix names {name!r} twice")
        weights[name] = weight
    total = sum(weights.values())
    if total <= 0:
        raise LoadError(f"mix {text!r}: at least one route needs a weight > 0")
    return {k: v / total for k, v in weights.items() if v > 0}


def parse_duration(text: str) -> float | None:
    """'30', '30s', '2m', '1h' -> seconds; 'forever' -> None."""
    t = text.strip().lower()
    if t == "forever":
        return None
    scale = {"s": 1.0, "m": 60.0, "h": 3600.0}.get(t[-1:], 1.0)
    number = t[:-1] if t[-1:] in "smh" else t
    try:
        seconds = float(number) * scale
    except ValueError:
        raise LoadError(f"duration {text!r}: expected seconds (30, 30s, 2m, 1h) or 'forever'") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise LoadError(f"duration {text!r}: must be > 0")
    return seconds


def partner_url_for(base_url: str) -> str:
    """The partner API next to the service, by the network contract (port 8001 beside 8000)."""
    parts = urlsplit(base_url)
    if parts.port != SERVICE_PORT or not parts.hostname:
        raise LoadError(
            f"cannot tell the partner API's address from {base_url!r} (not port {SERVICE_PORT}): "
            "give --partner-url, or leave partner out of --mix"
        )
    host = COMPOSE_HOSTS.get(parts.hostname, parts.hostname)
    return urlunsplit((parts.scheme, f"{host}:{PARTNER_PORT}", "", "", ""))


# ------------------------------------------------------------------------------------------------
# the sample service's routes
# ------------------------------------------------------------------------------------------------
class Traffic:
    """Builds and sends one request per route, the way the seed's data makes each route work."""

    def __init__(self, base_url: str, partner_url: str | None, mix: dict[str, float], *,
                 users: int = 2000, seed: int = 1, timeout_s: float = 10.0, max_inflight: int = 256) -> None:
        if users < 2:
            raise LoadError("users must be >= 2 (user 1 is the seed's heavy reader)")
        if "partner" in mix and not partner_url:
            partner_url = partner_url_for(base_url)
        self.base = base_url.rstrip("/")
        self.partner = (partner_url or "").rstrip("/")
        self.mix = mix
        self.users = users
        self.rng = random.Random(seed)
        self._names = list(mix)
        self._weights = [mix[n] for n in self._names]
        # Page through the heavy user's records across requests, from the first page of each run:
        # deep pages are where offset pagination costs (docs/scenarios.md, offset_pagination).
        self._heavy_cursor: str | None = None
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=max_inflight, max_keepalive_connections=max_inflight),
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    def pick(self) -> str:
        return self.rng.choices(self._names, self._weights)[0]

    async def fire(self, route: str) -> Outcome:
        try:
            if route == "evaluate":
                return await self._evaluate()
            if route == "records":
                return await self._records()
            return await self._partner()
        except httpx.TimeoutException as exc:
            return Outcome(None, f"timeout ({type(exc).__name__})")
        except httpx.HTTPError as exc:
            return Outcome(None, f"{type(exc).__name__}: {exc}")

    async def _evaluate(self) -> Outcome:
        r = await self.client.post(f"{self.base}/v1/evaluate", json=random_ingredients(self.rng, self.users))
        trace_id = None
        if r.status_code == 200:
            with contextlib.suppress(ValueError, AttributeError):
                trace_id = r.json().get("trace_id")
        return Outcome(r.status_code, trace_id=trace_id)

    async def _records(self) -> Outcome:
        heavy = self.rng.random() < HEAVY_USER_SHARE
        user = HEAVY_USER if heavy else self.rng.randint(2, self.users)
        params: dict[str, Any] = {"limit": RECORDS_LIMIT}
        if heavy and self._heavy_cursor:
            params["cursor"] = self._heavy_cursor
        r = await self.client.get(f"{self.base}/v1/users/{user}/records", params=params)
        if heavy:
            nxt = None
            if r.status_code == 200:
                with contextlib.suppress(ValueError, AttributeError):
                    nxt = r.json().get("next_cursor")
            self._heavy_cursor = nxt  # None: back to the first page
        return Outcome(r.status_code)

    async def _partner(self) -> Outcome:
        r = await self.client.get(f"{self.partner}/v1/score/{self.rng.randint(1, self.users)}")
        return Outcome(r.status_code, trace_id=r.headers.get("x-trace-id") or None)


# ------------------------------------------------------------------------------------------------
# results
# ------------------------------------------------------------------------------------------------
SLOWEST_KEPT = 5


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


def group_stats(samples: list[Sample], seconds: float, late_s: float) -> dict[str, Any]:
    """Counts, throughput and exact latency percentiles (ms) of one route's (or all) samples."""
    latencies = [s.latency_s for s in samples]
    statuses: Counter[str] = Counter(
        str(s.outcome.status) if s.outcome.status is not None else "no response" for s in samples
    )
    errors = sum(1 for s in samples if not s.outcome.ok)
    slowest = sorted(samples, key=lambda s: s.latency_s, reverse=True)[:SLOWEST_KEPT]
    return {
        "completed": len(samples),
        "ok": len(samples) - errors,
        "errors": errors,
        "error_ratio": errors / len(samples) if samples else 0.0,
        "statuses": dict(sorted(statuses.items())),
        "late": sum(1 for s in samples if s.sent_s - s.intended_s > late_s),
        "throughput_rps": len(samples) / seconds if seconds > 0 else 0.0,
        "ok_rps": (len(samples) - errors) / seconds if seconds > 0 else 0.0,
        "latency_ms": {k: _ms(v) for k, v in stats.summarize(latencies).items()},
        "service_time_ms": {k: _ms(v) for k, v in stats.summarize([s.service_s for s in samples]).items()},
        "curve_ms": [[q, _ms(v)] for q, v in stats.curve(latencies)],
        "slowest": [
            {"latency_ms": _ms(s.latency_s), "at_s": round(s.intended_s, 3), "status": s.outcome.status,
             "trace_id": s.outcome.trace_id, "error": s.outcome.error}
            for s in slowest
        ],
    }


def result_dict(rec: Recording, config: dict[str, Any], started_at: float) -> dict[str, Any]:
    """The JSON `o11y load --out` writes and `compare`/`drill` read."""
    seconds = rec.duration_s if rec.duration_s is not None else rec.elapsed_s
    by_route: dict[str, list[Sample]] = {}
    for s in rec.samples:
        by_route.setdefault(s.route, []).append(s)
    total = group_stats(rec.samples, seconds, rec.late_s)
    total.update(scheduled=rec.scheduled, unsent=rec.unsent)
    return {
        "kind": "o11y-load",
        "version": 1,
        "config": config,
        "started_at": started_at,
        "started_at_iso": datetime.fromtimestamp(started_at, UTC).isoformat(timespec="seconds"),
        "window_s": seconds,
        "elapsed_s": round(rec.elapsed_s, 3),
        "total": total,
        "routes": {r: group_stats(by_route[r], seconds, rec.late_s) for r in ROUTES if r in by_route},
    }


def load_result(path: Path) -> dict[str, Any]:
    """Read a load JSON, with a clear error for anything else."""
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise LoadError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise LoadError(f"{path} is not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("kind") != "o11y-load":
        raise LoadError(f"{path} is not an `o11y load --out` file")
    return data


def format_summary(result: dict[str, Any]) -> str:
    """Plain-text summary (the rich CLI draws tables; this is for the loadgen container's log)."""
    lines = []
    for name, group in [*result["routes"].items(), ("total", result["total"])]:
        lat = group["latency_ms"]
        pct = " ".join(f"{k} {lat[k]:.1f}" for k in map(stats.label, stats.REPORTED) if k in lat)
        lines.append(
            f"{name:9} {group['completed']:6d} req {group['throughput_rps']:7.1f}/s "
            f"errors {group['errors']} late {group['late']}  ms: {pct or '-'}"
        )
    return "\n".join(lines)


async def run(
    *, rate: float, duration_s: float | None, base_url: str, mix: dict[str, float],
    partner_url: str | None = None, users: int = 2000, seed: int = 1, max_inflight: int = 256,
    late_ms: float = 10.0, timeout_s: float = 10.0, stop: asyncio.Event | None = None,
    progress: Callable[[Recording, int], None] | None = None, window_s: float | None = None,
    on_window: Callable[[list[Sample], float], None] | None = None,
) -> dict[str, Any]:
    """One load run against a live service; returns the result JSON (see result_dict)."""
    traffic = Traffic(base_url, partner_url, mix, users=users, seed=seed, timeout_s=timeout_s,
                      max_inflight=max_inflight)
    config = {
        "rate": rate, "duration_s": duration_s, "base_url": traffic.base,
        "partner_url": traffic.partner or None, "mix": mix, "users": users, "seed": seed,
        "max_inflight": max_inflight, "late_ms": late_ms, "timeout_s": timeout_s,
    }
    started_at = time.time()
    try:
        rec = await run_open_loop(
            rate, duration_s, traffic.fire, traffic.pick, max_inflight=max_inflight, late_s=late_ms / 1000.0,
            stop=stop, progress=progress, window_s=window_s, on_window=on_window,
        )
    finally:
        await traffic.aclose()
    return result_dict(rec, config, started_at)


# ------------------------------------------------------------------------------------------------
def _window_line(samples: list[Sample], seconds: float, late_s: float) -> str:
    g = group_stats(samples, seconds, late_s)
    lat = g["latency_ms"]
    return (
        f"{datetime.now(UTC).isoformat(timespec='seconds')} {g['completed']} req in {seconds:.0f}s "
        f"({g['throughput_rps']:.1f}/s) errors {g['errors']} late {g['late']} "
        f"p50 {lat.get('p50', 0):.1f} ms p99 {lat.get('p99', 0):.1f} ms max {lat.get('max', 0):.1f} ms"
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.o11y.load", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, required=True, help="requests per second (arrival rate)")
    p.add_argument("--duration", default="30s", help="seconds (30, 30s, 2m) or 'forever' (default 30s)")
    p.add_argument("--base-url", default="http://127.0.0.1:8000", help="the sample service")
    p.add_argument("--partner-url", default=None,
                   help="the partner API (default: port 8001 beside the service)")
    p.add_argument("--mix", default=DEFAULT_MIX, help=f"route weights (default {DEFAULT_MIX})")
    p.add_argument("--users", type=int, default=2000, help="user ids 1..N exist (compose's SEED_USERS)")
    p.add_argument("--seed", type=int, default=1, help="random seed for bodies and the route choice")
    p.add_argument("--max-inflight", type=int, default=256, help="cap on concurrent requests")
    p.add_argument("--late-ms", type=float, default=10.0, help="a send this much past its due time is late")
    p.add_argument("--timeout", type=float, default=10.0, help="per-request timeout, seconds")
    p.add_argument("--report-every", type=float, default=60.0, help="forever: seconds per log line")
    p.add_argument("--out", type=Path, default=None, help="write the result JSON here")
    return p


def main(argv: Iterable[str] | None = None) -> int:
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    try:
        duration_s = parse_duration(args.duration)
        mix = parse_mix(args.mix)
        check_rate(args.rate)
    except LoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    async def go() -> dict[str, Any]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)  # a clean last window on `docker compose stop`
        late_s = args.late_ms / 1000.0
        return await run(
            rate=args.rate, duration_s=duration_s, base_url=args.base_url, mix=mix,
            partner_url=args.partner_url, users=args.users, seed=args.seed, max_inflight=args.max_inflight,
            late_ms=args.late_ms, timeout_s=args.timeout, stop=stop,
            window_s=args.report_every if duration_s is None else None,
            on_window=lambda s, secs: print(_window_line(s, secs, late_s), flush=True),
        )

    print(f"load: {args.rate:g} req/s for {args.duration} against {args.base_url}, mix {mix}", flush=True)
    try:
        result = asyncio.run(go())
    except LoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_summary(result), flush=True)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
