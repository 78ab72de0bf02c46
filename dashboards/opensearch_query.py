"""A dataquery variant for Grafana's OpenSearch datasource (plugin ``grafana-opensearch-datasource``).

grafana-foundation-sdk ships query types for core datasources only. Its documented extension point for
third-party plugins is a ``cog.variants.Dataquery`` subclass with ``to_json``/``from_json`` plus a
builder, registered with the cog runtime so ``Dashboard.from_json`` can read such targets back.

The JSON shape follows the query model the pinned plugin's backend reads (``pkg/opensearch/models.go``
and ``lucene_handler.go`` at the version in .env): a Lucene ``query`` string,
``metrics`` (metric aggregations: count, percentiles, avg, …, or ``logs``/``raw_data`` for documents)
and ``bucketAggs`` (``date_histogram``, ``terms``, …), nested outermost first. Only the parts our
dashboards use get typed helpers; ``metric``/``bucket`` accept any other aggregation as a dict. There is
no per-query time field: the plugin ignores one and always uses the datasource's ``timeField``. The
dashboard doctor (scripts/doctor/opensearch.py) builds the _search body the plugin would send.
"""

from __future__ import annotations

import copy
from typing import Any, Self

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import common as cm

PLUGIN_ID = "grafana-opensearch-datasource"

QUERY_TYPE_LUCENE = "lucene"
LUCENE_QUERY_TYPE_METRIC = "Metric"
LUCENE_QUERY_TYPE_LOGS = "Logs"


class OpenSearchQuery(cogvariants.Dataquery):
    """One target of an OpenSearch panel; fields mirror the plugin's ``OpenSearchQuery`` interface."""

    def __init__(
        self,
        *,
        ref_id: str | None = None,
        hide: bool | None = None,
        datasource: cm.DataSourceRef | None = None,
        query: str = "",
        query_type: str = QUERY_TYPE_LUCENE,
        lucene_query_type: str | None = None,
        alias: str | None = None,
        metrics: list[dict[str, Any]] | None = None,
        bucket_aggs: list[dict[str, Any]] | None = None,
        format: str | None = None,
    ) -> None:
        self.ref_id = ref_id
        self.hide = hide
        self.datasource = datasource
        self.query = query
        self.query_type = query_type
        self.lucene_query_type = lucene_query_type
        self.alias = alias
        self.metrics = metrics if metrics is not None else []
        self.bucket_aggs = bucket_aggs if bucket_aggs is not None else []
        self.format = format

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {
            "query": self.query,
            "queryType": self.query_type,
            "metrics": copy.deepcopy(self.metrics),
            "bucketAggs": copy.deepcopy(self.bucket_aggs),
        }
        optional = {
            "refId": self.ref_id,
            "hide": self.hide,
            "datasource": self.datasource.to_json() if self.datasource is not None else None,
            "luceneQueryType": self.lucene_query_type,
            "alias": self.alias,
            "format": self.format,
        }
        payload.update({k: v for k, v in optional.items() if v is not None})
        return payload

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        ds = data.get("datasource")
        return cls(
            ref_id=data.get("refId"),
            hide=data.get("hide"),
            datasource=cm.DataSourceRef.from_json(ds) if isinstance(ds, dict) else None,
            query=data.get("query", ""),
            query_type=data.get("queryType", QUERY_TYPE_LUCENE),
            lucene_query_type=data.get("luceneQueryType"),
            alias=data.get("alias"),
            metrics=copy.deepcopy(data.get("metrics", [])),
            bucket_aggs=copy.deepcopy(data.get("bucketAggs", [])),
            format=data.get("format"),
        )


class OpenSearchQueryBuilder(cogbuilder.Builder[OpenSearchQuery]):
    """Fluent builder in the SDK's style; aggregation ids are assigned in call order ("1", "2", …)."""

    def __init__(self, query: str = "") -> None:
        self._internal = OpenSearchQuery(query=query)
        self._next_id = 1

    def build(self) -> OpenSearchQuery:
        return self._internal

    def _id(self) -> str:
        out = str(self._next_id)
        self._next_id += 1
        return out

    # --- plain fields ---
    def ref_id(self, ref_id: str) -> Self:
        self._internal.ref_id = ref_id
        return self

    def hide(self, hide: bool) -> Self:
        self._internal.hide = hide
        return self

    def datasource(self, ref: cm.DataSourceRef) -> Self:
        self._internal.datasource = ref
        return self

    def query(self, lucene: str) -> Self:
        self._internal.query = lucene
        return self

    def alias(self, alias: str) -> Self:
        self._internal.alias = alias
        return self

    # --- metric aggregations ---
    def metric(self, agg: dict[str, Any]) -> Self:
        agg = {"id": self._id(), **agg}
        self._internal.metrics.append(agg)
        if self._internal.lucene_query_type is None:
            self._internal.lucene_query_type = LUCENE_QUERY_TYPE_METRIC
        return self

    def count(self) -> Self:
        return self.metric({"type": "count"})

    def percentiles(self, field: str, percents: list[float]) -> Self:
        # The plugin stores percents as strings (what its editor writes); keep that for round-trips.
        return self.metric(
            {"type": "percentiles", "field": field, "settings": {"percents": [f"{p:g}" for p in percents]}}
        )

    def avg(self, field: str) -> Self:
        return self.metric({"type": "avg", "field": field})

    def max(self, field: str) -> Self:
        return self.metric({"type": "max", "field": field})

    def logs(self, size: int = 100) -> Self:
        """Raw log documents (the Logs panel); a query of this kind has no bucket aggregations.

        The plugin reads the number of documents from ``settings.size`` (500 when absent or not a
        number); its editor's "limit" is stored there too."""
        self._internal.metrics.append({"id": self._id(), "type": "logs", "settings": {"size": str(size)}})
        self._internal.lucene_query_type = LUCENE_QUERY_TYPE_LOGS
        self._internal.format = "logs"
        return self

    # --- bucket aggregations (nested in call order, first = outermost) ---
    def bucket(self, agg: dict[str, Any]) -> Self:
        self._internal.bucket_aggs.append({"id": self._id(), **agg})
        return self

    def date_histogram(self, field: str, interval: str = "auto", min_doc_count: int = 0) -> Self:
        return self.bucket(
            {
                "type": "date_histogram",
                "field": field,
                "settings": {"interval": interval, "min_doc_count": str(min_doc_count), "trimEdges": "0"},
            }
        )

    def terms(
        self,
        field: str,
        size: int = 10,
        order: str = "desc",
        order_by: str = "_count",
        min_doc_count: int = 1,
    ) -> Self:
        return self.bucket(
            {
                "type": "terms",
                "field": field,
                "settings": {
                    "size": str(size),
                    "order": order,
                    "orderBy": order_by,
                    "min_doc_count": str(min_doc_count),
                },
            }
        )


def register() -> None:
    """Let the cog runtime decode targets of this plugin type (``Dashboard.from_json`` round-trips)."""
    cogruntime.register_dataquery_variant(
        cogruntime.DataqueryConfig(identifier=PLUGIN_ID, from_json_hook=OpenSearchQuery.from_json)
    )


register()
