"""Push dashboard JSON to any Grafana over its HTTP API.

    GRAFANA_URL=https://grafana.example GRAFANA_TOKEN=glsa_... python -m scripts.push_dashboards
    python -m scripts.push_dashboards --url URL --token TOKEN [--folder-uid UID | --folder TITLE] [FILES...]

Each dashboard is POSTed to ``/api/dashboards/db`` with ``overwrite: true`` under its fixed uid, so
pushing again updates it in place. ``--folder TITLE`` creates the folder when it does not exist.
The token is a Grafana service-account token (Editor role or more) sent as a bearer token.
Exit status: 0 all pushed, 1 some failed, 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "dashboards" / "json"


class PushError(RuntimeError):
    pass


def payload(dashboard: dict[str, Any], folder_uid: str | None, message: str) -> dict[str, Any]:
    """The /api/dashboards/db body: no numeric id (ids are per instance), the uid decides identity."""
    dash = dict(dashboard)
    dash.pop("id", None)
    body: dict[str, Any] = {"dashboard": dash, "overwrite": True, "message": message}
    if folder_uid:
        body["folderUid"] = folder_uid
    return body


def _explain(r: httpx.Response, what: str) -> PushError:
    try:
        detail = r.json().get("message", "") or r.text
    except ValueError:
        detail = r.text
    hint = {
        401: "the token was rejected: check GRAFANA_TOKEN (a service-account token, sent as Bearer)",
        403: "the token lacks permission: the service account needs the Editor role (Admin for folders)",
        404: "not found: is GRAFANA_URL the Grafana root (without /api)?",
        412: "precondition failed: a dashboard with the same name exists in the folder under another uid",
    }.get(r.status_code, "")
    return PushError(f"{what}: HTTP {r.status_code} {detail.strip()[:300]}" + (f" — {hint}" if hint else ""))


def ensure_folder(client: httpx.Client, title: str) -> str:
    r = client.get("/api/folders", params={"limit": 1000})
    if r.status_code != 200:
        raise _explain(r, "listing folders")
    for f in r.json():
        if f.get("title") == title:
            return str(f["uid"])
    r = client.post("/api/folders", json={"title": title})
    if r.status_code not in (200, 201):
        raise _explain(r, f"creating folder {title!r}")
    return str(r.json()["uid"])


def push(client: httpx.Client, dashboard: dict[str, Any], folder_uid: str | None, message: str) -> str:
    uid = dashboard.get("uid") or "?"
    r = client.post("/api/dashboards/db", json=payload(dashboard, folder_uid, message))
    if r.status_code != 200:
        raise _explain(r, f"pushing {uid}")
    body = r.json()
    status, version = body.get("status", "success"), body.get("version", "?")
    return f"{uid}: {status} version {version} {body.get('url', '')}".rstrip()


def _files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        out.extend(sorted(p.glob("*.json")) if p.is_dir() else [p])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.push_dashboards", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--url", default=os.environ.get("GRAFANA_URL"), help="Grafana root URL ($GRAFANA_URL)"
    )
    parser.add_argument(
        "--token", default=os.environ.get("GRAFANA_TOKEN"), help="service-account token ($GRAFANA_TOKEN)"
    )
    folder = parser.add_mutually_exclusive_group()
    folder.add_argument("--folder-uid", help="put the dashboards in this existing folder")
    folder.add_argument(
        "--folder", help="put the dashboards in the folder with this title (created if missing)"
    )
    parser.add_argument("--message", default="pushed by o11y-box scripts/push_dashboards.py")
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument(
        "files", nargs="*", type=Path, default=[DEFAULT_DIR], help="JSON files or directories"
    )
    args = parser.parse_args(argv)

    if not args.url:
        parser.error("no Grafana URL: set GRAFANA_URL or pass --url")
    if not args.token:
        parser.error("no token: set GRAFANA_TOKEN or pass --token (a Grafana service-account token)")
    missing = [p for p in args.files if not p.exists()]
    if missing:
        parser.error(f"no such file or directory: {', '.join(map(str, missing))}")
    files = _files(args.files)
    if not files:
        parser.error(f"no dashboard JSON in {', '.join(map(str, args.files))}")
    dashboards = []
    for f in files:
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            parser.error(f"cannot read {f}: {exc}")
        dashboards.append(data.get("dashboard", data))

    headers = {"Authorization": f"Bearer {args.token}", "Accept": "application/json"}
    failed = 0
    try:
        with httpx.Client(base_url=args.url.rstrip("/"), headers=headers, timeout=args.timeout) as client:
            folder_uid = args.folder_uid or (ensure_folder(client, args.folder) if args.folder else None)
            for d in dashboards:
                try:
                    print(push(client, d, folder_uid, args.message))
                except PushError as exc:
                    failed += 1
                    print(f"error: {exc}", file=sys.stderr)
    except PushError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except httpx.HTTPError as exc:
        print(f"error: cannot reach Grafana at {args.url}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"pushed {len(dashboards) - failed} of {len(dashboards)} dashboards to {args.url}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
