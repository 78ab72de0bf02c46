"""Loopback ports of the scale-out overlay's native test topology (stack/scale-out/).

Distinct from the native stack's (compose's published ports), which stays up for the whole test
session: both topologies run side by side, the scale-out one reusing the native stack's Postgres
and partner API as the "shared" services a second service host would use.
"""

from __future__ import annotations

# collector agent (one per service host): OTLP in, loadbalancing exporter out
AGENT_OTLP_GRPC = 14317
AGENT_OTLP_HTTP = 14318
AGENT_HEALTH = 14133
AGENT_TELEMETRY = 14888

# collector gateways i = 1..3: tail sampling, span metrics
GATEWAYS = (1, 2, 3)


def gateway_otlp_grpc(i: int) -> int:
    return 15310 + i


def gateway_health(i: int) -> int:
    return 15130 + i


def gateway_telemetry(i: int) -> int:
    return 15880 + i


# the trace store the gateways export to (Jaeger, standing in for Tempo's role): 166xx
TRACE_STORE_OTLP_GRPC = 16617
TRACE_STORE_OTLP_HTTP = 16618
TRACE_STORE_QUERY = 16686 + 1  # the native stack's Jaeger has 16686
# the rest of the trace store's listeners (stack/jaeger/config.yaml's 9095, 13200, 14269)
TRACE_STORE_QUERY_GRPC = 16695
TRACE_STORE_HEALTH = 16633
TRACE_STORE_TELEMETRY = 16669
# a test sink for OTLP/HTTP metrics (the gateways' span metrics, the agent's metrics pipeline) when
# no Prometheus runs beside them (tests/stack/scale_out/collectors.py)
METRICS_SINK_HTTP = 16690
# a closed port: where the agent's logs pipeline points when no logs gateway runs beside it
CLOSED = 16699

# logs gateways (the main distribution: the opensearch exporter): 17xxx
LOGS_GATEWAY_OTLP_GRPC = 17317
LOGS_GATEWAY_OTLP_HTTP = 17318
LOGS_GATEWAY_HEALTH = 17133
LOGS_GATEWAY_TELEMETRY = 17888

# a second host of the sample service, exporting to the agent
SERVICE_REPLICA = 18000
PARTNER_REPLICA = 18001

# Prometheus (scale-out config: remote-writes to Thanos) and Thanos: 19xxx
PROMETHEUS = 19090


def thanos_receive_http(i: int) -> int:
    return 19100 + i


def thanos_receive_grpc(i: int) -> int:
    return 19200 + i


def thanos_receive_remote_write(i: int) -> int:
    return 19300 + i


THANOS_QUERY_HTTP = 19190
THANOS_QUERY_GRPC = 19290


# Thanos Receive's Cap'n Proto replication listener (it always binds one; default 19391): i = 0 router
def thanos_receive_capnproto(i: int) -> int:
    return 19390 + i


# The Thanos Receive router (stateless, no TSDB: forwards by the hashring to ingestors 1..2) is i = 0
THANOS_RECEIVERS = (1, 2)
THANOS_ROUTER_HTTP = thanos_receive_http(0)
THANOS_ROUTER_GRPC = thanos_receive_grpc(0)
THANOS_ROUTER_REMOTE_WRITE = thanos_receive_remote_write(0)

# OpenSearch cluster nodes i = 1..2


def opensearch_http(i: int) -> int:
    return 9200 + i


def opensearch_transport(i: int) -> int:
    return 9300 + i
