"""Translate a Grafana OpenSearch/Elasticsearch datasource target into an OpenSearch ``_search`` body.

Covers the subset the o11y-box dashboards use, in the plugin's semantics: a Lucene query string over
the time range; metric aggregations ``count``, ``avg``/``sum``/``min``/``max``/``cardinality``,
``percentiles``; bucket aggregations ``date_histogram`` and ``terms`` nested outermost first; and raw
documents (``logs``, ``raw_data``, ``raw_document``). Anything else raises ``UnsupportedQuery`` so
the doctor reports an error instead of guessing.
"""

from __future__ import annotations

from typing import Any

from scripts.doctor.variables import TimeRange, format_duration

DEFAULT_TIME_FIELD = "@timestamp"
RAW_TYPES = ("logs", "raw_data", "raw_document")
_SIMPLE_METRICS = ("avg", "sum", "min", "max", "cardinality")


class UnsupportedQuery(ValueError):
    pass


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _metric_agg(metric: dict[str, Any]) -> dict[str, Any]:
    kind = metric.get("type")
    field = metric.get("field")
    settings = metric.get("settings") or {}
    if kind in _SIMPLE_METRICS or kind == "percentiles":
        if not field:
            raise UnsupportedQuery(f"{kind} metric without a field")
        body: dict[str, Any] = {"field": field}
        if kind == "percentiles":
            percents = settings.get("percents") or ["25", "50", "75", "95", "99"]
            body["percents"] = [float(p) for p in percents]
        if settings.get("missing") not in (None, ""):
            body["missing"] = settings["missing"]
        return {kind: body}
    raise UnsupportedQuery(f"metric aggregation {kind!r} is not supported by the doctor")


def _bucket_agg(
    bucket: dict[str, Any], tr: TimeRange, interval_s: float, metrics: list[dict]
) -> dict[str, Any]:
    kind = bucket.get("type")
    settings = bucket.get("settings") or {}
    field = bucket.get("field")
    if kind == "date_histogram":
        interval = settings.get("interval") or "auto"
        fixed = format_duration(interval_s) if interval in ("auto", "$__interval") else interval
        return {
            "date_histogram": {
                "field": field or DEFAULT_TIME_FIELD,
                "fixed_interval": fixed,
                "min_doc_count": _int(settings.get("min_doc_count"), 0),
                "extended_bounds": {"min": int(tr.start * 1000), "max": int(tr.end * 1000)},
                "format": "epoch_millis",
            }
        }
    if kind == "terms":
        if not field:
            raise UnsupportedQuery("terms aggregation without a field")
        order_by = settings.get("orderBy") or "_count"
        if order_by == "_term":
            order_by = "_key"
        elif order_by not in ("_count", "_key") and not any(m.get("id") == order_by for m in metrics):
            raise UnsupportedQuery(f"terms orderBy {order_by!r} names no metric of the query")
        body: dict[str, Any] = {
            "field": field,
            "size": _int(settings.get("size"), 10) or 500,
            "order": {order_by: settings.get("order") or "desc"},
            "min_doc_count": _int(settings.get("min_doc_count"), 1),
        }
        if settings.get("missing") not in (None, ""):
            body["missing"] = settings["missing"]
        return {"terms": body}
    raise UnsupportedQuery(f"bucket aggregation {kind!r} is not supported by the doctor")


def search_body(target: dict[str, Any], lucene: str, tr: TimeRange, interval_s: float) -> dict[str, Any]:
    """The ``_search`` request body for one (already interpolated) target."""
    if target.get("queryType") not in (None, "lucene"):
        raise UnsupportedQuery(f"queryType {target.get('queryType')!r} (only Lucene queries are supported)")
    time_field = target.get("timeField") or DEFAULT_TIME_FIELD
    metrics = [m for m in target.get("metrics") or [{"type": "count", "id": "1"}] if not m.get("hide")]
    buckets = target.get("bucketAggs") or []
    query = {
        "bool": {
            "filter": [
                {
                    "range": {
                        time_field: {
                            "gte": int(tr.start * 1000),
                            "lte": int(tr.end * 1000),
                            "format": "epoch_millis",
                        }
                    }
                },
                {"query_string": {"analyze_wildcard": True, "query": lucene.strip() or "*"}},
            ]
        }
    }
    if metrics and metrics[0].get("type") in RAW_TYPES:
        settings = metrics[0].get("settings") or {}
        size = _int(settings.get("limit") or settings.get("size"), 500)
        return {
            "size": size,
            "query": query,
            "sort": [{time_field: {"order": "desc", "unmapped_type": "boolean"}}],
        }

    inner: dict[str, Any] = {}
    for m in metrics:
        if m.get("type") == "count":
            continue  # doc_count of the enclosing bucket
        inner[str(m["id"])] = _metric_agg(m)
    aggs = inner
    for b in reversed(buckets):
        node = _bucket_agg(b, tr, interval_s, metrics)
        if aggs:
            node["aggs"] = aggs
        aggs = {str(b["id"]): node}
    body: dict[str, Any] = {"size": 0, "query": query, "track_total_hits": True}
    if aggs:
        body["aggs"] = aggs
    return body


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
    metrics = [m for m in target.get("metrics") or [{"type": "count", "id": "1"}] if not m.get("hide")]
    if metrics and metrics[0].get("type") in RAW_TYPES:
        return len(response.get("hits", {}).get("hits", []))
    buckets = target.get("bucketAggs") or []
    if not buckets:
        total = response.get("hits", {}).get("total", {})
        count = total.get("value", 0) if isinstance(total, dict) else int(total or 0)
        root = {"doc_count": count, **(response.get("aggregations") or {})}
        return 1 if _metric_has_value(root, metrics) else 0

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
