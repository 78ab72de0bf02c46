"""Garbage-collector settings for a long-running service that allocates telemetry objects per request.

Every traced request leaves objects that outlive it: the span (its attribute dict, events, links,
context) and the access record wait in the batch queues until the worker exports them. Surviving
objects push CPython's generation-0 counter over its threshold (700 by default), and every few
young collections an older generation is scanned — at the top, the whole heap: after FastAPI,
pydantic, SQLAlchemy and the SDK are imported that is several hundred thousand objects, tens of
milliseconds per full collection, paid as a latency spike by whichever request is running.

``tune_gc`` is called once, after start-up (the app's lifespan, before it yields):
* ``gc.collect(); gc.freeze()`` moves everything alive after start-up (modules, classes, routes,
  pydantic models, pools) into the permanent generation, which the collector never scans again;
  older-generation collections then only see objects created since.
* optionally (``gc_gen0_threshold`` > 0; off by default: it made RSS climb through a collector
  outage, docs/performance.md) a larger generation-0 threshold: per-request objects get time to die
  by refcount (or be exported) before a young collection would promote them.
Measured in ``benchmarks/telemetry_cost.py`` (docs/performance.md): both the telemetry-off and the
telemetry-on service get faster; the telemetry-on one more.
"""

from __future__ import annotations

import gc


def tune_gc(*, freeze: bool, gen0_threshold: int) -> None:
    if gen0_threshold > 0:
        _, gen1, gen2 = gc.get_threshold()
        gc.set_threshold(gen0_threshold, gen1, gen2)
    if freeze:
        gc.collect()
        gc.freeze()
