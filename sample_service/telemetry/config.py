"""The settings this package reads, as a Protocol: any object with these fields will do.

A Protocol rather than the sample service's own ``Settings`` class, so the package can be copied into
another service without it (tests/static/test_telemetry_standalone.py); the service's pydantic
``Settings`` satisfies it, which mypy checks where ``setup_telemetry(settings)`` is called.
Read-only properties, so frozen dataclasses and pydantic models alike fit.

Optional, read with ``getattr`` and a default, so older settings classes keep working:
``telemetry_mode`` (``"lean"``), ``telemetry_global_providers`` (``True``), ``native_histograms`` (``True``).
"""

from __future__ import annotations

from typing import Protocol


class TelemetrySettings(Protocol):
    @property
    def service_name(self) -> str: ...
    @property
    def environment(self) -> str: ...
    @property
    def telemetry_enabled(self) -> bool: ...
    @property
    def traces_enabled(self) -> bool: ...
    @property
    def logs_enabled(self) -> bool: ...
    @property
    def metrics_enabled(self) -> bool: ...
    @property
    def log_level(self) -> str: ...
    @property
    def log_json_stdout(self) -> bool: ...
    @property
    def shutdown_timeout_s(self) -> float: ...
