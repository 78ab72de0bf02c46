"""Telemetry for the sample service, built to be copied into other services (docs/telemetry.md).

It imports nothing from the rest of sample_service (tests/static/test_telemetry_standalone.py):
settings come in as any object with the fields of ``TelemetrySettings``.

tel = setup_telemetry(settings)          # providers, exporters, registry, logging
app = FastAPI(telemetry=FASTAPI_NATIVE_TELEMETRY_OFF)  # our middleware owns the server span
tel.instrument_app(app)                  # lean ASGI server middleware (spans, RED metrics, access log)
tel.instrument_engine(engine, "main")    # SQLAlchemy spans + pool metrics
tel.instrument_httpx(client)             # client spans + W3C propagation + duration histogram
@traced("rules.evaluate")                # per-function spans under the request span
tel.shutdown()                           # bounded by settings.shutdown_timeout_s
"""

from sample_service.telemetry.bootstrap import FASTAPI_NATIVE_TELEMETRY_OFF, Telemetry, setup_telemetry
from sample_service.telemetry.config import TelemetrySettings
from sample_service.telemetry.metrics import ServiceMetrics
from sample_service.telemetry.spans import span, traced

__all__ = [
    "FASTAPI_NATIVE_TELEMETRY_OFF", "ServiceMetrics", "Telemetry", "TelemetrySettings", "setup_telemetry",
    "span", "traced",
]
