"""Resource, OTLP exporters and batch processors, configured by the standard OTEL_* variables.

Protocol: ``OTEL_EXPORTER_OTLP_{TRACES,LOGS}_PROTOCOL`` / ``OTEL_EXPORTER_OTLP_PROTOCOL``, default
``http/protobuf`` (the spec's default; see docs/telemetry.md for why we keep it). Endpoint,
headers, timeout, compression are read by the exporters themselves; queue size, batch size and
schedule delay by the batch processors (``OTEL_BSP_*``, ``OTEL_BLRP_*``); the sampler by the
TracerProvider (``OTEL_TRACES_SAMPLER[_ARG]``).
"""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from opentelemetry.metrics import MeterProvider, NoOpMeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Tracer

from sample_service.telemetry import compat
from sample_service.telemetry.compat import (
    Allowed,
    BatchLogRecordProcessor,
    LoggerProvider,
    LogRecordExporter,
)
from sample_service.telemetry.lean_trace import lean_tracer

HTTP_PROTOBUF = "http/protobuf"
GRPC = "grpc"


def service_version() -> str:
    try:
        return version("o11y-box")
    except PackageNotFoundError:
        return "0.0.0"


def build_resource(service_name: str, environment: str, extra: dict[str, Any] | None = None) -> Resource:
    attributes: dict[str, Any] = {
        "service.version": service_version(),
        "deployment.environment.name": environment,
    }
    # OTEL_SERVICE_NAME, when set, is the operator's word and wins over the settings default.
    if not os.environ.get("OTEL_SERVICE_NAME"):
        attributes["service.name"] = service_name
    attributes.update(extra or {})
    # Resource.create also merges OTEL_RESOURCE_ATTRIBUTES and the SDK's telemetry.sdk.* attributes.
    return Resource.create(attributes)


def otlp_protocol(signal: str) -> str:
    return (
        (
            os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL")
            or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            or HTTP_PROTOBUF
        )
        .strip()
        .lower()
    )


def otlp_span_exporter(
    meter_provider: MeterProvider, *, allowed: Allowed = compat.private_api
) -> SpanExporter:
    if otlp_protocol("traces") == GRPC:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter(meter_provider=meter_provider)
    if not compat.wire_encoder_usable(allowed):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(meter_provider=meter_provider)
    from sample_service.telemetry.otlp_http import WireOTLPSpanExporter

    return WireOTLPSpanExporter(meter_provider=meter_provider)


def otlp_log_exporter(
    meter_provider: MeterProvider, *, allowed: Allowed = compat.private_api
) -> LogRecordExporter:
    if otlp_protocol("logs") == GRPC:
        return compat.otlp_grpc_log_exporter_class()(meter_provider=meter_provider)  # type: ignore[no-any-return]
    if not compat.wire_encoder_usable(allowed):
        return compat.OTLPHttpLogExporter(meter_provider=meter_provider)  # type: ignore[no-any-return]
    from sample_service.telemetry.otlp_http import WireOTLPLogExporter

    return WireOTLPLogExporter(meter_provider=meter_provider)


def build_tracer_provider(
    resource: Resource, exporter: SpanExporter, self_metrics: MeterProvider
) -> tuple[TracerProvider, BatchSpanProcessor]:
    # shutdown_on_exit=False: the SDK's atexit hook would wait up to 30 s on a dead collector;
    # Telemetry.shutdown() is the bounded replacement.
    provider = TracerProvider(resource=resource, shutdown_on_exit=False, meter_provider=NoOpMeterProvider())
    processor = BatchSpanProcessor(exporter, meter_provider=self_metrics)
    provider.add_span_processor(processor)
    return provider, processor


def build_logger_provider(
    resource: Resource, exporter: LogRecordExporter, self_metrics: MeterProvider
) -> tuple[LoggerProvider, BatchLogRecordProcessor]:
    provider = LoggerProvider(resource=resource, shutdown_on_exit=False, meter_provider=NoOpMeterProvider())
    processor = BatchLogRecordProcessor(exporter, meter_provider=self_metrics)
    provider.add_log_record_processor(processor)
    return provider, processor


def tracer_for(
    provider: TracerProvider, name: str, version: str | None = None, *, allowed: Allowed = compat.private_api
) -> Tracer:
    """``provider.get_tracer`` minus the SDK's per-span self-metrics.

    With OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED the SDK also counts every span start/end
    (``otel.sdk.span.*``) — even into a no-op MeterProvider it builds an attribute dict and a
    closure per span. We want only the processor/exporter metrics (queue drops, export failures),
    so the tracer's private counter object is swapped for the SDK's own no-op one when present.

    The result is a ``lean_trace.LeanTracer`` over that SDK tracer (same sampler, ids, resource,
    limits, processors; a cheaper span object — see lean_trace.py), which does not call the SDK's
    per-span self-metrics at all; the swap above still matters if the SDK tracer is kept (a
    disabled or non-SDK tracer is returned as is).
    """
    tracer = provider.get_tracer(name, version)
    compat.quiet_tracer_metrics(tracer, allowed)
    return lean_tracer(tracer, allowed)
