"""All configuration of the sample service, read once from the environment (prefix ``O11Y_``).

Telemetry exporters are configured by the standard ``OTEL_*`` variables, read by the SDK itself;
only switches that the SDK has no variable for live here.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Scenario(StrEnum):
    """Latency scenarios: each one a real cause of p99 regressions (docs/scenarios.md)."""

    N_PLUS_ONE = "n_plus_one"
    CACHE_OFF = "cache_off"
    POOL_STARVATION = "pool_starvation"
    BLOCKING_CALL = "blocking_call"
    SLOW_PARTNER = "slow_partner"
    OFFSET_PAGINATION = "offset_pagination"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="O11Y_", env_file=None, extra="ignore")

    service_name: str = "sample-service"
    environment: str = "local"
    host: str = "127.0.0.1"
    port: int = 8000

    # --- database -------------------------------------------------------------------------
    database_url: str = "postgresql+asyncpg://o11y:o11y@127.0.0.1:5432/o11y"
    db_pool_size: Annotated[int, Field(ge=1)] = 10
    db_max_overflow: Annotated[int, Field(ge=0)] = 5
    db_pool_timeout_s: Annotated[float, Field(gt=0)] = 2.0
    db_pool_recycle_s: int = 1800
    db_statement_timeout_ms: int = 5000

    # --- partner API ----------------------------------------------------------------------
    partner_base_url: str = "http://127.0.0.1:8001"
    partner_timeout_s: Annotated[float, Field(gt=0)] = 1.0
    partner_max_connections: int = 100
    partner_max_keepalive: int = 20
    partner_keepalive_expiry_s: Annotated[float, Field(gt=0)] = 30.0
    # Partner API process (when this process *is* the partner).
    partner_service_name: str = "partner-api"
    partner_host: str = "127.0.0.1"
    partner_port: int = 8001
    partner_latency_ms: float = 5.0
    partner_jitter_ms: float = 2.0
    partner_error_rate: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0

    # --- caching --------------------------------------------------------------------------
    rules_cache_ttl_s: float = 30.0
    rules_cache_max_entries: int = 256

    # --- request limits -------------------------------------------------------------------
    max_body_bytes: Annotated[int, Field(ge=1)] = 64 * 1024
    records_page_default: Annotated[int, Field(ge=1)] = 50
    records_page_max: Annotated[int, Field(ge=1)] = 200
    readiness_timeout_s: Annotated[float, Field(gt=0)] = 1.0

    # --- decision events (background publisher) -------------------------------------------
    decision_queue_size: Annotated[int, Field(ge=1)] = 10_000
    decision_batch_size: Annotated[int, Field(ge=1)] = 200
    decision_drain_timeout_s: Annotated[float, Field(ge=0)] = 2.0

    # --- scenarios ------------------------------------------------------------------------
    scenarios: Annotated[frozenset[Scenario], NoDecode] = frozenset()
    admin_enabled: bool = True  # /admin/* answers loopback clients only
    pool_starvation_pool_size: int = 1
    pool_starvation_hold_s: float = 0.2
    blocking_call_s: float = 0.05
    slow_partner_extra_ms: float = 300.0

    # --- telemetry ------------------------------------------------------------------------
    telemetry_enabled: bool = True
    traces_enabled: bool = True
    logs_enabled: bool = True
    metrics_enabled: bool = True
    log_level: str = "INFO"
    log_json_stdout: bool = True
    shutdown_timeout_s: Annotated[float, Field(gt=0)] = 5.0
    # The OTel API's global tracer/logger providers become ours, so ``trace.get_tracer()`` in user code
    # and any contrib instrumentation a team adds join our traces. Off only where several Telemetry
    # objects share a process and must not see each other (tests): the globals can be set once.
    telemetry_global_providers: bool = True
    # lean: the measured-cheaper pieces (lean span, wire encoder, fast observe, …; docs/telemetry.md).
    # stock: the SDK's span, tracer, OTLP exporters, drop counting and log route, prometheus-client's
    # own observe — no private name of any library used. Same metric names, span names, log fields.
    telemetry_mode: Literal["lean", "stock"] = "lean"
    # Native (exponential, schema 5) histograms beside the classic buckets on every latency histogram,
    # served in the protobuf exposition Prometheus asks for (issue 14, docs/architecture.md).
    native_histograms: bool = True
    # --- runtime (sample_service/telemetry/gc_tuning.py) ----------------------------------
    gc_freeze: bool = True  # gc.freeze() once start-up is done
    # 0 keeps CPython's default (700). A raised threshold (10 000) bought ~10 % throughput but let RSS
    # climb through a collector outage (+35 MB in 3 min vs +15 MB, docs/performance.md): not worth it.
    gc_gen0_threshold: Annotated[int, Field(ge=0)] = 0

    @field_validator("scenarios", mode="before")
    @classmethod
    def _split_scenarios(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(Scenario(s.strip()) for s in value.split(",") if s.strip())
        return value

    def has(self, scenario: Scenario) -> bool:
        return scenario in self.scenarios
