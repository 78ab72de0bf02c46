"""The open-loop scheduler: request i is due at i/rate, whatever happened to the ones before it.

``run_open_loop(rate, duration_s, fire, pick)`` sends, records each request's latency from its due
time (no coordinated omission) and counts what went out late or never. It knows nothing of routes or
of the sample service: ``fire(route)`` does the request (``scripts/o11y/load.py``'s ``Traffic``).
Stdlib only: compose's ``loadgen`` runs it in the service image.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


class LoadError(ValueError):
    """Bad load parameters (a clear message for the command line)."""


def check_rate(rate: float) -> float:
    if not math.isfinite(rate) or rate <= 0:
        raise LoadError(f"rate {rate}: must be a number of requests per second > 0")
    return rate


@dataclass(frozen=True)
class Outcome:
    status: int | None  # HTTP status, None when no response came back
    error: str | None = None  # transport error / timeout
    trace_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and self.status < 400


@dataclass(frozen=True)
class Sample:
    route: str
    intended_s: float  # due time, seconds after the run's start
    sent_s: float
    latency_s: float  # response (or failure) time minus the due time
    service_s: float  # response (or failure) time minus the send time
    outcome: Outcome


@dataclass
class Recording:
    rate: float
    duration_s: float | None
    late_s: float
    samples: list[Sample] = field(default_factory=list)
    scheduled: int = 0  # due within the run
    unsent: int = 0  # due within the run, never sent (the in-flight cap stayed full)
    elapsed_s: float = 0.0  # from the first due time until the last response


Fire = Callable[[str], Awaitable[Outcome]]


async def run_open_loop(
    rate: float,
    duration_s: float | None,
    fire: Fire,
    pick: Callable[[], str],
    *,
    max_inflight: int = 256,
    late_s: float = 0.010,
    stop: asyncio.Event | None = None,
    progress: Callable[[Recording, int], None] | None = None,
    window_s: float | None = None,
    on_window: Callable[[list[Sample], float], None] | None = None,
) -> Recording:
    """Send request i at i/rate seconds (open loop) until ``duration_s`` (None: until ``stop``).

    ``progress(recording, inflight)`` is called about once a second; with ``window_s``,
    ``on_window(samples, seconds)`` gets each window's samples, which are then dropped (a run
    without an end keeps bounded memory).
    """
    check_rate(rate)
    if max_inflight < 1:
        raise LoadError("max in-flight requests must be >= 1")
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    rec = Recording(rate=rate, duration_s=duration_s, late_s=late_s)
    slots = asyncio.Semaphore(max_inflight)
    tasks: set[asyncio.Task[None]] = set()
    t0 = loop.time()
    last_tick = window_start = t0

    async def one(route: str, intended: float) -> None:
        sent = loop.time() - t0
        try:
            outcome = await fire(route)
        except Exception as exc:  # a bug in fire() must not lose the sample
            outcome = Outcome(None, f"{type(exc).__name__}: {exc}")
        finally:
            slots.release()
        done = loop.time() - t0
        rec.samples.append(Sample(route, intended, sent, done - intended, done - sent, outcome))

    i = 0
    while not stop.is_set():
        intended = i / rate
        if duration_s is not None and intended >= duration_s:
            break
        now = loop.time()
        if now - last_tick >= 1.0:
            last_tick = now
            if progress is not None:
                progress(rec, max_inflight - slots._value)
            if window_s is not None and on_window is not None and now - window_start >= window_s:
                window, rec.samples = rec.samples, []
                on_window(window, now - window_start)
                window_start = now
        delay = t0 + intended - now
        if delay > 0:
            # Woken early by stop; a timeout is the normal "it is due now".
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
            if stop.is_set():
                break
        if slots.locked():
            # Cap full: wait for a slot, but never past the end of the run.
            limit = None if duration_s is None else max(0.0, t0 + duration_s - loop.time())
            try:
                await asyncio.wait_for(slots.acquire(), timeout=limit)
            except TimeoutError:
                break
        else:
            await slots.acquire()
        task = asyncio.create_task(one(pick(), intended))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        i += 1
    rec.scheduled = math.ceil(duration_s * rate) if duration_s is not None else i
    rec.unsent = max(0, rec.scheduled - i)
    if tasks:
        await asyncio.gather(*tasks)
    rec.elapsed_s = loop.time() - t0
    if progress is not None:
        progress(rec, 0)
    return rec
