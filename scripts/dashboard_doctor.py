"""Dashboard doctor: run every panel query of Grafana dashboards against live backends.

    python -m scripts.dashboard_doctor [--prometheus URL] [--tempo URL] [--opensearch URL]
        [--var job=sample-service ...] [--from 1h] [dashboards/json/*.json]

Reports data / empty / error per panel (and per annotation query) with the query that was run, then
``doctor: N panels, D with data, E empty, X errors[, K not checkable (names)]``
(``--without-tempo``: panels that need Tempo are not checkable, counted and named). Exits 1 if any
panel errors or is empty without a justification in its description ("Empty is OK: <reason>"), 2 on
bad usage.

Backend URLs default to PROMETHEUS_URL, TEMPO_URL, OPENSEARCH_URL, else the local ports of the stack.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from scripts.doctor import Backends, run_doctor

DEFAULT_DASHBOARDS = Path(__file__).resolve().parent.parent / "dashboards" / "json"
DEFAULTS = {
    "prometheus": ("PROMETHEUS_URL", "http://127.0.0.1:9090"),
    "tempo": ("TEMPO_URL", "http://127.0.0.1:3200"),
    "opensearch": ("OPENSEARCH_URL", "http://127.0.0.1:9200"),
}


def _parse_var(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--var wants NAME=VALUE, got {text!r}")
    return name, value


def _load(paths: list[Path]) -> list[dict]:
    files: list[Path] = []
    for p in paths:
        files.extend(sorted(p.glob("*.json")) if p.is_dir() else [p])
    if not files:
        raise SystemExit(f"dashboard_doctor: no dashboard JSON found in {', '.join(map(str, paths))}")
    out = []
    for f in files:
        try:
            out.append(json.loads(f.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            raise SystemExit(f"dashboard_doctor: cannot read {f}: {exc}") from exc
    return out


def main(argv: list[str] | None = None) -> int:
    from sample_service.telemetry.catalog import LOGS_INDEX, all_metrics

    parser = argparse.ArgumentParser(
        prog="python -m scripts.dashboard_doctor", description=__doc__.split("\n\n")[0]
    )
    for name, (env, default) in DEFAULTS.items():
        parser.add_argument(
            f"--{name}", default=os.environ.get(env, default), help=f"{name} URL (${env}, default {default})"
        )
    parser.add_argument("--opensearch-index", default=os.environ.get("OPENSEARCH_LOGS_INDEX", LOGS_INDEX))
    parser.add_argument(
        "--opensearch-time-field",
        default=os.environ.get("OPENSEARCH_TIME_FIELD", "@timestamp"),
        help="the OpenSearch datasource's time field (its jsonData.timeField; default @timestamp as "
        "provisioned here): the plugin filters and buckets on it, whatever a query says",
    )
    parser.add_argument(
        "--var",
        action="append",
        type=_parse_var,
        default=[],
        metavar="NAME=VALUE",
        help="set a template variable (repeatable; comma-separate multi values)",
    )
    parser.add_argument("--from", dest="since", default="1h", help="time range: last DURATION (default 1h)")
    parser.add_argument(
        "--scrape-interval",
        default=os.environ.get("PROMETHEUS_SCRAPE_INTERVAL", "10s"),
        help="the Prometheus datasource's scrape interval, floor of $__interval/$__rate_interval "
        "(default 10s as provisioned here; 15s for a stock Grafana datasource)",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per backend request")
    parser.add_argument(
        "--without-tempo",
        metavar="REASON",
        help="the trace store is not Tempo (e.g. the e2e's Jaeger stand-in): report Tempo-datasource "
        "panels and panels on Tempo-only metrics as 'not checkable: needs Tempo' (counted and named) "
        "instead of running them",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="print the query of panels with data too"
    )
    parser.add_argument("--json", dest="json_out", type=Path, help="also write the report as JSON here")
    parser.add_argument("dashboards", nargs="*", type=Path, default=[DEFAULT_DASHBOARDS])
    args = parser.parse_args(argv)

    from scripts.doctor.variables import InterpolationError, parse_duration

    try:
        scrape_s = parse_duration(args.scrape_interval)
        parse_duration(args.since.removeprefix("now-"))
    except InterpolationError as exc:
        parser.error(str(exc))
    backends = Backends(
        prometheus=args.prometheus,
        tempo=args.tempo,
        opensearch=args.opensearch,
        opensearch_index=args.opensearch_index,
        opensearch_time_field=args.opensearch_time_field,
        scrape_interval_s=scrape_s,
        timeout_s=args.timeout,
        tempo_absent=args.without_tempo,
        tempo_only_metrics=tuple(m.prom for m in all_metrics() if m.source == "tempo"),
    )
    report = run_doctor(_load(args.dashboards), backends, dict(args.var), since=args.since)
    print(report.render(verbose=args.verbose))
    if args.json_out:
        args.json_out.write_text(
            json.dumps(
                {
                    "summary": report.summary_line(),
                    "ok": report.ok,
                    "problems": report.problems,
                    "warnings": report.warnings,
                    "not_checkable": report.not_checkable,
                    "panels": [
                        {
                            "dashboard": p.dashboard_uid,
                            "panel": p.title,
                            "status": p.status.value,
                            "empty_ok_reason": p.empty_ok_reason,
                            "targets": [
                                {
                                    "refId": t.ref_id,
                                    "backend": t.backend,
                                    "status": t.status.value,
                                    "detail": t.detail,
                                    "query": t.query,
                                }
                                for t in p.targets
                            ],
                        }
                        for p in report.panels
                    ],
                },
                indent=2,
                sort_keys=True,
            )
            + "\n",
            encoding="utf-8",
        )
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
