"""The load: the latency shapes (a narrow band, a bimodal mix, a long tail) and the client that drives
one for a phase.

Each shape stresses a different weakness of a bucketed histogram. The client keeps its own timings so
the report can show what the caller measured beside what the panels say.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx

from benchmarks.accuracy_backends import Endpoints

EVALUATE = "/v1/evaluate"
RECORDS = "/v1/users/{user_id}/records"


@dataclass
class ClientSample:
    end: float  # wall clock, s
    seconds: float
    status: int


def evaluate_body(rng: random.Random, users: int) -> dict[str, Any]:
    from sample_service.domain import random_ingredients

    return random_ingredients(rng, users)


@dataclass(frozen=True)
class Shape:
    name: str
    route: str
    description: str
    concurrency: int
    scenarios: tuple[str, ...] = ()
    slow_fraction: float = 0.0  # bimodal: share of requests behind the slow partner
    pareto_limit: bool = False  # long tail: page size ~ Pareto


SHAPES: dict[str, Shape] = {
    "narrow": Shape("narrow", EVALUATE, "evaluate behind slow_partner: ≈ 300 ms + 5 ± 2 ms", 4,
                    scenarios=("slow_partner",)),
    "bimodal": Shape("bimodal", EVALUATE, "evaluate, 80 % fast / 20 % behind slow_partner (≈ 310 ms)", 1,
                     slow_fraction=0.2),
    "long_tail": Shape("long_tail", RECORDS,
                       "records of user 1, n_plus_one, page size ~ Pareto(1.2) in 1…200",
                       2, scenarios=("n_plus_one",), pareto_limit=True),
}


def _set_scenarios(client: httpx.Client, active: Iterable[str]) -> None:
    r = client.put("/admin/scenarios", json={"active": sorted(active)})
    r.raise_for_status()


def drive(
    ep: Endpoints, shape: Shape, seconds: float, *, users: int = 2000, seed: int = 14
) -> list[ClientSample]:
    """Run the shape's load for ``seconds`` (bounded), scenarios always switched off afterwards."""
    samples: list[ClientSample] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    errors: list[str] = []
    admin = httpx.Client(base_url=ep.service, timeout=10.0)
    try:
        _set_scenarios(admin, shape.scenarios)

        def worker(i: int) -> None:
            rng = random.Random(seed * 100 + i)
            slow = False
            with httpx.Client(base_url=ep.service, timeout=10.0) as client:
                for _ in range(1_000_000):  # bounded; the deadline ends it
                    if time.monotonic() >= stop_at:
                        return
                    if shape.slow_fraction:
                        want = rng.random() < shape.slow_fraction
                        if want != slow:
                            _set_scenarios(client, ("slow_partner",) if want else ())
                            slow = want
                    t0 = time.perf_counter()
                    try:
                        if shape.route == EVALUATE:
                            r = client.post(EVALUATE, json=evaluate_body(rng, users))
                        else:
                            limit = 200
                            if shape.pareto_limit:
                                limit = min(200, max(1, int(2 * (1.0 - rng.random()) ** (-1 / 1.2))))
                            r = client.get("/v1/users/1/records", params={"limit": limit})
                    except httpx.HTTPError as exc:
                        errors.append(repr(exc))
                        if len(errors) > 50:
                            return
                        continue
                    dt_s = time.perf_counter() - t0
                    with lock:
                        samples.append(ClientSample(time.time(), dt_s, r.status_code))

        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(shape.concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(seconds + 30)
    finally:
        try:
            _set_scenarios(admin, ())
        finally:
            admin.close()
    if len(errors) > 50:
        raise RuntimeError(f"{shape.name}: too many transport errors, e.g. {errors[:3]}")
    return samples
