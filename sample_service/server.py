"""Run an app under uvicorn the way production does: one process, uvloop, httptools.

One worker on purpose: prometheus-client exemplars need a single process per container, and the
container (not a process manager) is the unit of scaling.
"""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI


def serve(app: FastAPI, *, host: str, port: int) -> None:
    uvicorn.run(
        app, host=host, port=port, workers=1, loop="uvloop", http="httptools",
        access_log=False,  # the telemetry middleware writes the access record (with trace ids)
        log_config=None,  # keep the JSON logging telemetry configured
        timeout_graceful_shutdown=10,
        proxy_headers=False,  # the admin loopback check must see the real peer
    )
