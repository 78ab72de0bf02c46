"""Bounded traffic through every endpoint and every latency scenario of the sample service.

Used by the native e2e and the Docker-engine e2e. Every loop is bounded in count; every request has
a timeout. Scenarios are switched through the service's loopback-only admin endpoint and always
switched off again (finally), so a failure here cannot leave the stack in a scenario.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from sample_service.domain import random_ingredients
from sample_service.settings import Scenario

EVALUATE = "/v1/evaluate"
RECORDS = "/v1/users/{user_id}/records"


@dataclass
class TrafficReport:
    counts: Counter[tuple[str, str, int]] = field(default_factory=Counter)  # (scenario, route, status)
    errors: list[str] = field(default_factory=list)  # transport errors (not HTTP statuses)
    trace_ids: set[str] = field(default_factory=set)  # from successful evaluate responses

    def statuses(self, route: str | None = None) -> Counter[int]:
        c: Counter[int] = Counter()
        for (_, r, status), n in self.counts.items():
            if route is None or r == route:
                c[status] += n
        return c

    def total(self) -> int:
        return sum(self.counts.values())


def ingredients(rng: random.Random, users: int) -> dict[str, Any]:
    return random_ingredients(rng, users)


# Bad input the service must answer 4xx (never 5xx): wrong types, missing fields, huge numbers,
# an oversized body, a bad cursor, an out-of-range path parameter.
def bad_requests(rng: random.Random) -> list[tuple[str, str, dict[str, Any]]]:
    good = ingredients(rng, 100)
    missing = dict(good)
    missing.pop("country")
    return [
        ("POST", EVALUATE, {"json": {**good, "age": "forty"}}),
        ("POST", EVALUATE, {"json": missing}),
        ("POST", EVALUATE, {"json": {**good, "amount": 1e300}}),
        ("POST", EVALUATE, {"json": {**good, "user_id": 2**80}}),
        (
            "POST",
            EVALUATE,
            {
                "content": b'{"user_id": 1, "pad": "' + b"x" * 200_000 + b'"}',
                "headers": {"content-type": "application/json"},
            },
        ),
        ("GET", "/v1/users/1/records", {"params": {"cursor": "not-a-cursor"}}),
        ("GET", "/v1/users/0/records", {}),
        ("GET", "/v1/users/1/records", {"params": {"limit": 100_000}}),
    ]


class Driver:
    def __init__(self, base_url: str, *, users: int = 2000, seed: int = 7, concurrency: int = 8,
                 admin: Callable[[list[str]], dict[str, Any]] | None = None) -> None:
        """``admin``: how to PUT /admin/scenarios when the test is not a loopback client of the
        service (compose: through `docker compose exec`, as a user would); default over HTTP."""
        self.admin = admin
        self.base = base_url.rstrip("/")
        self.users = users
        self.rng = random.Random(seed)
        self.concurrency = concurrency
        self.report = TrafficReport()
        self.client = httpx.Client(
            base_url=self.base, timeout=httpx.Timeout(15.0), limits=httpx.Limits(max_connections=32)
        )

    def close(self) -> None:
        self.client.close()

    def _one(self, scenario: str, method: str, path: str, route: str, kwargs: dict[str, Any]) -> None:
        try:
            r = self.client.request(method, path, **kwargs)
            self.report.counts[(scenario, route, r.status_code)] += 1
            if route == EVALUATE and r.status_code == 200:
                self.report.trace_ids.add(r.json()["trace_id"])
        except httpx.HTTPError as exc:
            self.report.errors.append(f"{scenario} {method} {path}: {type(exc).__name__}: {exc}")

    def _batch(
        self, scenario: str, jobs: list[tuple[str, str, str, dict[str, Any]]], concurrency: int | None = None
    ) -> None:
        with ThreadPoolExecutor(max_workers=concurrency or self.concurrency) as pool:
            for f in [pool.submit(self._one, scenario, *job) for job in jobs]:
                f.result()

    def mixed(self, scenario: str, evaluates: int, reads: int, concurrency: int | None = None) -> None:
        jobs: list[tuple[str, str, str, dict[str, Any]]] = []
        for _ in range(evaluates):
            jobs.append(("POST", EVALUATE, EVALUATE, {"json": ingredients(self.rng, self.users)}))
        for i in range(reads):
            uid = 1 if i % 5 == 0 else self.rng.randint(2, self.users)
            jobs.append(("GET", f"/v1/users/{uid}/records", RECORDS, {"params": {"limit": 50}}))
        self.rng.shuffle(jobs)
        self._batch(scenario, jobs, concurrency)

    def paginate(self, scenario: str, user_id: int = 1, pages: int = 3) -> None:
        """Follow next cursors (keyset, or offset under offset_pagination) for a few pages."""
        cursor: str | None = None
        for _ in range(pages):
            params: dict[str, Any] = {"limit": 100}
            if cursor:
                params["cursor"] = cursor
            r = self.client.get(f"/v1/users/{user_id}/records", params=params)
            self.report.counts[(scenario, RECORDS, r.status_code)] += 1
            if r.status_code != 200:
                return
            cursor = r.json().get("next_cursor")
            if not cursor:
                return

    def set_scenarios(self, active: list[str]) -> None:
        if self.admin is not None:
            state = self.admin(active)
        else:
            r = self.client.put("/admin/scenarios", json={"active": active})
            r.raise_for_status()
            state = r.json()
        got = sorted(state.get("active") or [])
        if got != sorted(active):
            raise RuntimeError(f"admin endpoint set {got}, asked for {active}")

    def run_all(self, evaluates: int = 150, reads: int = 40, per_scenario: int = 30) -> TrafficReport:
        """Baseline, health endpoints, bad input, then each scenario in turn (always reset)."""
        for path in ("/healthz", "/readyz"):
            self._one("baseline", "GET", path, path, {})
        self.mixed("baseline", evaluates, reads)
        self.paginate("baseline")
        for method, path, kwargs in bad_requests(self.rng):
            route = EVALUATE if path == EVALUATE else RECORDS
            self._one("bad_input", method, path, route, kwargs)
        try:
            for scenario in Scenario:
                self.set_scenarios([scenario.value])
                # pool_starvation needs more concurrent requests than its tiny pool to show waits
                # and timeouts; the others are fine at the normal concurrency.
                conc = 24 if scenario is Scenario.POOL_STARVATION else None
                self.mixed(scenario.value, per_scenario, per_scenario // 3, concurrency=conc)
                if scenario is Scenario.OFFSET_PAGINATION:
                    self.paginate(scenario.value)
        finally:
            self.set_scenarios([])
        self.mixed("after", 30, 10)
        return self.report


class SteadyLoad:
    """A low, steady request rate in a background thread for the whole stack session.

    Dashboards show rates; a counter that only ever moved in one burst before its first scrape (the
    collector's span metrics flush every 15 s, Tempo's service graph on its own interval) looks flat
    to ``rate()``, which would make a healthy panel read "No data". A real service has continuous
    traffic; this gives the stack the same. Bounded: stops at ``stop()`` or after ``max_seconds``.
    """

    def __init__(
        self, base_url: str, *, rps: float = 4.0, max_seconds: float = 1800.0, users: int = 2000
    ) -> None:
        self._driver = Driver(base_url, users=users, seed=11, concurrency=1)
        self._interval = 1.0 / rps
        self._max_seconds = max_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="steady-load", daemon=True)

    @property
    def report(self) -> TrafficReport:
        return self._driver.report

    def start(self) -> SteadyLoad:
        self._thread.start()
        return self

    def _run(self) -> None:
        deadline = time.monotonic() + self._max_seconds
        i = 0
        while not self._stop.is_set() and time.monotonic() < deadline:
            if i % 4 == 3:
                uid = self._driver.rng.randint(1, self._driver.users)
                path = f"/v1/users/{uid}/records"
                self._driver._one("steady", "GET", path, RECORDS, {"params": {"limit": 20}})
            else:
                body = ingredients(self._driver.rng, self._driver.users)
                self._driver._one("steady", "POST", EVALUATE, EVALUATE, {"json": body})
            i += 1
            self._stop.wait(self._interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=20)
        self._driver.close()
