"""scripts/push_dashboards.py: request body, usage errors and messages (no Grafana binary exists here)."""

from __future__ import annotations

import json
import socket

import httpx
import pytest

from dashboards import build
from scripts import push_dashboards as push


def test_payload_keeps_uid_drops_instance_id_and_sets_folder() -> None:
    d = json.loads((build.JSON_DIR / "o11y-logs.json").read_text())
    d["id"] = 42
    body = push.payload(d, "team-folder", "msg")
    assert body["overwrite"] is True and body["folderUid"] == "team-folder" and body["message"] == "msg"
    assert "id" not in body["dashboard"] and body["dashboard"]["uid"] == "o11y-logs"
    assert "id" in d  # the caller's dict is not modified
    assert "folderUid" not in push.payload(d, None, "msg")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "no Grafana URL"),
        (["--url", "http://127.0.0.1:1"], "no token"),
        (["--url", "http://127.0.0.1:1", "--token", "t", "/nonexistent-dir/"], "no such file"),
    ],
)
def test_usage_errors(
    argv: list[str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("GRAFANA_URL", raising=False)
    monkeypatch.delenv("GRAFANA_TOKEN", raising=False)
    with pytest.raises(SystemExit) as exc:
        push.main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_unreachable_grafana_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setenv("GRAFANA_URL", url)
    monkeypatch.setenv("GRAFANA_TOKEN", "token")
    assert push.main(["--timeout", "2"]) == 1
    err = capsys.readouterr().err
    assert f"cannot reach Grafana at {url}" in err and "ConnectError" in err


@pytest.mark.parametrize(
    ("status", "hint"),
    [(401, "token was rejected"), (403, "Editor role"), (404, "Grafana root"), (412, "another uid")],
)
def test_http_errors_explain_the_fix(status: int, hint: str) -> None:
    r = httpx.Response(
        status, json={"message": "nope"}, request=httpx.Request("POST", "http://g/api/dashboards/db")
    )
    text = str(push._explain(r, "pushing o11y-logs"))
    assert text.startswith(f"pushing o11y-logs: HTTP {status} nope") and hint in text
