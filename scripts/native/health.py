"""One explicit health check per component, and `poll_until` for everything eventually consistent.

A health check here answers "is this component able to do its job", not "is the port open":
Prometheus `/-/ready` (TSDB loaded), Tempo `/ready` (natively: the Jaeger stand-in's `/status`),
the collector's health_check extension,
OpenSearch cluster health yellow or green, the service's `/readyz` (database reachable).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

T = TypeVar("T")
HOST = "127.0.0.1"


class PollTimeout(AssertionError):
    """Raised by poll_until: an AssertionError so pytest shows it as a failed expectation."""


def poll_until(fn: Callable[[], T], what: str, timeout: float, interval: float = 0.5) -> T:
    """Call ``fn`` until it returns a truthy value (returned) or ``timeout`` s pass.

    An exception from ``fn`` counts as "not yet"; on timeout the last error (or last falsy value) is
    in the message, so a failing test says *why* it never became true.
    """
    deadline = time.monotonic() + timeout
    last: str = "never called"
    attempts = 0
    while True:
        attempts += 1
        try:
            value = fn()
            if value:
                return value
            last = f"returned {value!r}"
        except Exception as exc:
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            raise PollTimeout(
                f"timed out after {timeout:.0f}s ({attempts} attempts) waiting for {what}; last: {last}"
            )
        time.sleep(interval)


@dataclass(frozen=True)
class Check:
    component: str
    url: str  # what the printout shows; for postgres a postgresql:// URL
    probe: Callable[[], str]  # returns a short status text, raises when unhealthy
    probe_url: str = ""  # what the probe asks (the same path as compose's healthcheck)

    def __call__(self) -> str:
        return self.probe()


def _http_ok(url: str, expect: Callable[[httpx.Response], str] | None = None) -> Callable[[], str]:
    def probe() -> str:
        r = httpx.get(url, timeout=3.0)
        if r.status_code != 200:
            raise RuntimeError(f"GET {url} -> {r.status_code} {r.text[:200]!r}")
        return expect(r) if expect else "ok"

    return probe


def _opensearch_status(r: httpx.Response) -> str:
    status = r.json().get("status")
    if status not in ("green", "yellow"):
        raise RuntimeError(f"cluster status {status}")
    return status


def _pg_isready(port: int) -> Callable[[], str]:
    """compose's healthcheck runs pg_isready over TCP too: fails while in recovery or down."""

    def probe() -> str:
        from scripts.native.postgres import find_bin_dir

        r = subprocess.run(
            [str(find_bin_dir() / "pg_isready"), "-h", HOST, "-p", str(port), "-t", "2"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if r.returncode != 0:
            raise RuntimeError(f"pg_isready: {r.stdout.strip() or r.returncode}")
        return "accepting connections"

    return probe


def _collector(r: httpx.Response) -> str:
    body: dict[str, Any] = r.json()
    status = str(body.get("status", "?"))
    if status.lower() not in ("server available", "ok", "statusok"):
        raise RuntimeError(f"collector health {body}")
    return status


# Component -> (URL printed to the user, probe). Ports are the network contract's (DEVELOPERS.md).
def checks() -> dict[str, Check]:
    def http(name: str, port: int, path: str, expect: Callable[[httpx.Response], str] | None = None) -> Check:
        probe_url = f"http://{HOST}:{port}{path}"
        return Check(name, f"http://{HOST}:{port}", _http_ok(probe_url, expect), probe_url)

    return {
        "postgres": Check("postgres", f"postgresql://{HOST}:5432", _pg_isready(5432), "pg_isready"),
        "opensearch": http("opensearch", 9200, "/_cluster/health", _opensearch_status),
        "tempo": http("tempo", 3200, "/ready"),
        "prometheus": http("prometheus", 9090, "/-/ready"),
        "otel-collector": http("otel-collector", 13133, "/", _collector),
        "partner-api": http("partner-api", 8001, "/healthz"),
        "sample-service": http("sample-service", 8000, "/readyz"),
    }


# A stand-in component (an override's image in a service's place) -> (health port, path). The URL
# shown stays the service's own contract URL; the probe asks what the override's healthcheck asks.
STAND_IN_PROBES: dict[str, tuple[int, str]] = {
    # Jaeger's healthcheckv2 extension (stack/jaeger/config.yaml), as tests/compose/jaeger-for-tempo.yaml
    "jaeger": (13200, "/status"),
}


def stand_in_check(service: str, component: str) -> Check:
    """The readiness probe of ``component`` running in ``service``'s place (e.g. Jaeger as tempo)."""
    port, path = STAND_IN_PROBES[component]
    shown = checks().get(service)
    probe_url = f"http://{HOST}:{port}{path}"
    return Check(service, shown.url if shown else probe_url, _http_ok(probe_url), probe_url)


def http_check(service: str, probe_url: str) -> Check:
    """A plain HTTP 200 probe (status of a detached stack whose state names the probe URL)."""
    return Check(service, probe_url, _http_ok(probe_url), probe_url)


def health_url(component: str) -> str:
    return checks()[component].url
