"""The OpenSearch request Grafana's OpenSearch datasource plugin sends for one Lucene target.

Modelled on the plugin's backend at the version pinned in .env (``OPENSEARCH_DATASOURCE_PLUGIN_VERSION``,
grafana/opensearch-datasource ``pkg/opensearch/lucene_handler.go``, ``query_request.go`` and
``client/``), not on what our generator writes, so a target field the plugin ignores cannot make the
doctor pass a panel that Grafana would draw differently. What the plugin does, and so this module:

- time filter and histograms on the *datasource's* time field (``jsonData.timeField``); a target's
  ``timeField`` is ignored (the plugin dropped it);
- ``query_string`` (``analyze_wildcard``) only for a non-empty query;
- ``logs``: ``settings.size`` documents (500 when absent or not a number), newest first, plus a
  date histogram of the same range; ``raw_data``/``raw_document``: ``settings.size`` and ``settings.order``;
- metric aggregations: ``{"field": field, **settings}`` as written (percents stay strings);
  ``count`` is the bucket's doc_count; hidden metrics are still requested (only not drawn);
- ``date_histogram``: ``interval`` (``auto`` → the query interval, formatted like the plugin),
  ``min_doc_count`` (default 0), ``extended_bounds`` = the range, ``format`` epoch_millis;
- ``terms``: ``size`` (500 when absent, not a number or 0), ``min_doc_count`` only when set,
  ``orderBy`` a metric id → order by that metric (added inside the terms), ``_term`` → ``_key``;
- a query without bucket aggregations must be a raw-document one, else the plugin rejects it.

Anything else raises ``UnsupportedQuery`` so the doctor reports an error instead of guessing. The body
goes to ``_msearch`` with the plugin's header, one search per target.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from scripts.doctor.variables import TimeRange

# The plugin version this model was read from (.env OPENSEARCH_DATASOURCE_PLUGIN_VERSION; a static
# test fails when the pin moves, so the model is re-read against the new source).
PLUGIN_VERSION = "2.32.3"
# Target keys the plugin reads (query_request.go parseQuery; refId/datasource/hide are Grafana's own).
TARGET_KEYS = frozenset(
    {"refId", "datasource", "hide", "query", "queryType", "luceneQueryType", "alias", "format",
     "metrics", "bucketAggs", "tracesSize", "serviceMap", "serviceMapPrefetch", "services", "operations"}
)  # fmt: skip
AGG_KEYS = frozenset({"id", "type", "field", "settings", "hide", "pipelineAgg", "pipelineVariables", "meta"})
# settings keys read per aggregation type (lucene_handler.go, response_parser.go for trimEdges).
SETTINGS_KEYS = {
    "date_histogram": frozenset({"interval", "min_doc_count", "format", "offset", "missing", "trimEdges"}),
    "terms": frozenset({"size", "min_doc_count", "missing", "orderBy", "order", "execution_hint"}),
    "logs": frozenset({"size"}),
    "raw_data": frozenset({"size", "order"}),
    "raw_document": frozenset({"size", "order"}),
    # metric aggregations: every settings key goes into the OpenSearch aggregation as written
    "percentiles": frozenset({"percents", "missing", "script"}),
    "max": frozenset({"missing", "script"}),
    "avg": frozenset({"missing", "script"}),
    "count": frozenset(),
}
DEFAULT_TIME_FIELD = "@timestamp"
RAW_DOCUMENT_TYPES = ("raw_data", "raw_document")
LOGS_TYPE = "logs"
RAW_TYPES = (LOGS_TYPE, *RAW_DOCUMENT_TYPES)
DEFAULT_LOGS_SIZE = 500  # lucene_handler.go defaultLogsSize
DEFAULT_TERMS_SIZE = 500
_METRICS = ("avg", "sum", "min", "max", "cardinality", "percentiles", "extended_stats")
_METRIC_ID = re.compile(r"^(\d+)")
# The multisearch header the plugin writes before each body (client.go, search_type query_then_fetch).
MSEARCH_HEADER = {"ignore_unavailable": True, "search_type": "query_then_fetch"}


class UnsupportedQuery(ValueError):
    pass


def _int(value: Any) -> int | None:
    """The plugin's string → int: ``strconv.Atoi`` on strings, ints as they are, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip() or "x"):
        return int(value)
    return None


def format_interval(seconds: float) -> str:
    """tsdb.FormatDuration: the largest whole unit, truncated (``90`` s → ``1m``, ``7.5`` → ``7s``)."""
    ms = int(seconds * 1000)
    units = (("y", 31_536_000_000), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000))
    for unit, size in units:
        if ms >= size:
            return f"{ms // size}{unit}"
    return f"{ms}ms" if ms >= 1 else "1ms"


def _metrics(target: dict[str, Any]) -> list[dict[str, Any]]:
    return list(target.get("metrics") or [{"type": "count", "id": "1"}])


def _metric_agg(metric: dict[str, Any]) -> dict[str, Any]:
    kind = metric.get("type")
    if kind not in _METRICS:
        raise UnsupportedQuery(f"metric aggregation {kind!r} is not supported by the doctor")
    if not metric.get("field"):
        raise UnsupportedQuery(f"{kind} metric without a field")
    body: dict[str, Any] = {"field": metric["field"]}
    body.update({k: v for k, v in (metric.get("settings") or {}).items() if k and v is not None})
    return {kind: body}


def _date_histogram(bucket: dict[str, Any], tr: TimeRange, time_field: str) -> dict[str, Any]:
    settings = bucket.get("settings") or {}
    interval = settings.get("interval") or "auto"
    agg: dict[str, Any] = {
        "field": bucket.get("field") or time_field,
        "interval": "$__interval" if interval == "auto" else interval,
        "min_doc_count": _int(settings.get("min_doc_count")) or 0,
        "extended_bounds": {"min": int(tr.start * 1000), "max": int(tr.end * 1000)},
        "format": settings.get("format") or "epoch_millis",
    }
    for key in ("offset", "missing"):
        if isinstance(settings.get(key), str):
            agg[key] = settings[key]
    return {"date_histogram": agg}


def _terms(bucket: dict[str, Any], metrics: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(terms aggregation, metric aggregations the plugin puts inside it for its ordering)."""
    settings = bucket.get("settings") or {}
    if not bucket.get("field"):
        raise UnsupportedQuery("terms aggregation without a field")
    size = _int(settings.get("size"))
    agg: dict[str, Any] = {"field": bucket["field"], "size": size or DEFAULT_TERMS_SIZE}
    min_doc_count = _int(settings.get("min_doc_count"))
    if min_doc_count is not None:
        agg["min_doc_count"] = min_doc_count
    if isinstance(settings.get("missing"), str):
        agg["missing"] = settings["missing"]
    inner: dict[str, Any] = {}
    order_by = settings.get("orderBy")
    if isinstance(order_by, str):
        order = settings.get("order") or "desc"
        metric_id = _METRIC_ID.match(order_by)
        if metric_id:
            m = next((m for m in metrics if str(m.get("id")) == metric_id.group(1)), None)
            if m is None:
                raise UnsupportedQuery(f"terms orderBy {order_by!r} names no metric of the query")
            if m.get("type") == "count":
                agg["order"] = {"_count": order}
            else:
                agg["order"] = {order_by: order}
                # The plugin adds the metric without its settings here (nil settings callback).
                inner[str(m["id"])] = {m["type"]: {"field": m.get("field", "")}}
        else:
            agg["order"] = {"_key" if order_by == "_term" else order_by: order}
    return {"terms": agg}, inner


def _query(lucene: str, tr: TimeRange, time_field: str) -> dict[str, Any]:
    filters: list[dict[str, Any]] = [
        {
            "range": {
                time_field: {"gte": int(tr.start * 1000), "lte": int(tr.end * 1000), "format": "epoch_millis"}
            }
        }
    ]
    if lucene:
        filters.append({"query_string": {"analyze_wildcard": True, "query": lucene}})
    return {"bool": {"filter": filters}}


def search_body(
    target: dict[str, Any],
    lucene: str,
    tr: TimeRange,
    interval_s: float,
    time_field: str = DEFAULT_TIME_FIELD,
) -> dict[str, Any]:
    """The search body the plugin sends for one (already interpolated) target."""
    if target.get("queryType") not in (None, "lucene"):
        raise UnsupportedQuery(f"queryType {target.get('queryType')!r} (only Lucene queries are supported)")
    if target.get("luceneQueryType") == "Traces":
        raise UnsupportedQuery("Lucene trace queries are not supported by the doctor")
    metrics = _metrics(target)
    buckets = target.get("bucketAggs") or []
    first = metrics[0].get("type")
    if not buckets and first not in RAW_TYPES:
        raise UnsupportedQuery("invalid query, missing metrics and aggregations (the plugin rejects it)")
    body: dict[str, Any] = {"size": 0, "query": _query(lucene, tr, time_field)}
    time_format = [{"field": time_field, "format": "strict_date_optional_time_nanos"}]
    settings = metrics[0].get("settings") or {}
    size = _int(settings.get("size"))
    documents = DEFAULT_LOGS_SIZE if size is None else size
    if first == LOGS_TYPE:
        body["size"] = documents
        body["sort"] = [{time_field: {"order": "desc", "unmapped_type": "boolean"}}]
        body["docvalue_fields"] = [time_field]
        body["fields"] = time_format
        hist = _date_histogram({"settings": {"interval": "auto"}}, tr, time_field)
        body["aggs"] = {"1": hist}
    elif first in RAW_DOCUMENT_TYPES:
        order = settings.get("order") if settings.get("order") in ("asc", "desc") else "desc"
        body["size"] = documents
        body["sort"] = [
            {time_field: {"order": order, "unmapped_type": "boolean"}},
            {"_doc": {"order": order}},
        ]
        body["fields"] = time_format
    else:
        aggs: dict[str, Any] = {}
        for m in metrics:
            if m.get("type") != "count":
                aggs[str(m["id"])] = _metric_agg(m)
        for b in reversed(buckets):
            kind = b.get("type")
            inner: dict[str, Any] = {}
            if kind == "date_histogram":
                node = _date_histogram(b, tr, time_field)
            elif kind == "terms":
                node, inner = _terms(b, metrics)
            else:
                raise UnsupportedQuery(f"bucket aggregation {kind!r} is not supported by the doctor")
            children = {**inner, **aggs}
            if children:
                node["aggs"] = children
            aggs = {str(b["id"]): node}
        body["aggs"] = aggs
    # The plugin's client substitutes the interval macros in the encoded body (client.go).
    text = json.dumps(body)
    text = text.replace("$__interval_ms", str(int(interval_s * 1000)))
    text = text.replace("$__interval", format_interval(interval_s))
    out: dict[str, Any] = json.loads(text)
    return out


def msearch_payload(index: str, body: dict[str, Any]) -> str:
    """The newline-delimited ``_msearch`` request: the plugin's header line, then the body."""
    header = {"index": index, **copy.deepcopy(MSEARCH_HEADER)}
    return json.dumps(header) + "\n" + json.dumps(body) + "\n"


def _metric_has_value(bucket: dict[str, Any], metrics: list[dict]) -> bool:
    for m in metrics:
        kind = m.get("type")
        if kind == "count":
            if bucket.get("doc_count", 0) > 0:
                return True
            continue
        agg = bucket.get(str(m.get("id")))
        if not isinstance(agg, dict):
            continue
        if kind == "percentiles":
            if any(v is not None for v in (agg.get("values") or {}).values()):
                return True
        elif agg.get("value") is not None:
            return True
    return False


def count_data_points(target: dict[str, Any], response: dict[str, Any]) -> int:
    """How many values the panel would draw: documents for raw queries, non-empty buckets otherwise."""
    metrics = [m for m in _metrics(target) if not m.get("hide")]
    if metrics and metrics[0].get("type") in RAW_TYPES:
        return len(response.get("hits", {}).get("hits", []))
    buckets = target.get("bucketAggs") or []

    def walk(aggs: dict[str, Any], depth: int) -> int:
        node = aggs.get(str(buckets[depth]["id"]))
        if not isinstance(node, dict):
            return 0
        raw = node.get("buckets", [])
        items = raw.values() if isinstance(raw, dict) else raw
        n = 0
        for b in items:
            if depth + 1 < len(buckets):
                n += walk(b, depth + 1)
            elif _metric_has_value(b, metrics):
                n += 1
        return n

    return walk(response.get("aggregations") or {}, 0)
