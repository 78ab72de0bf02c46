"""All configuration of the sample service, read once from the environment (prefix ``O11Y_``).

Telemetry exporters are configured by the standard ``OTEL_*`` variables, read by the SDK itself;
only switches that the SDK has no variable for live here.
"""

from __future__ import annotations

from enum import Enum

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from typing_extensions import Annotated


class Scenario(str, Enum):
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
    db_pool_size: int = Field(10, ge=1)
    db_max_overflow: int = Field(5, ge=0)
    db_pool_timeout_s: float = Field(2.0, gt=0)
    db_pool_recycle_s: int = 1800
    db_statement_timeout_ms: int = 5000

    # --- partner API ----------------------------------------------------------------------
    partner_base_url: str = "http://127.0.0.1:8001"
    partner_timeout_s: float = Field(1.0, gt=0)
    partner_max_connections: int = 100
    partner_max_keepalive: int = 20
    # Partner API process (when this process *is* the partner).
    partner_latency_ms: float = 5.0
    partner_jitter_ms: float = 2.0
    partner_error_rate: float = Field(0.0, ge=0.0, le=1.0)

    # --- caching --------------------------------------------------------------------------
    rules_cache_ttl_s: float = 30.0
    rules_cache_max_entries: int = 256

    # --- request limits -------------------------------------------------------------------
    max_body_bytes: int = 64 * 1024

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
    shutdown_timeout_s: float = Field(5.0, gt=0)

    @field_validator("scenarios", mode="before")
    @classmethod
    def _split_scenarios(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(Scenario(s.strip()) for s in value.split(",") if s.strip())
        return value

    def has(self, scenario: Scenario) -> bool:
        return scenario in self.scenarios
