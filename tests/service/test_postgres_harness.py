"""scripts/native/postgres.py: fails fast with the server log when Postgres cannot start, and leaves
nothing behind, even when the start is interrupted; a server it started really runs as the
unprivileged user, on loopback only."""

from __future__ import annotations

import os
import time

import pytest

from scripts.native.postgres import PostgresError, PostgresServer


def test_a_port_conflict_fails_fast_with_the_log_tail(postgres: PostgresServer) -> None:
    t0 = time.monotonic()
    with pytest.raises(PostgresError) as excinfo:
        with PostgresServer.temporary(port=postgres.port, durable=False):
            pass
    assert time.monotonic() - t0 < 30
    message = str(excinfo.value)
    assert "server log tail" in message and "could not" in message.lower(), message


def test_the_session_server_runs_unprivileged_on_loopback(postgres: PostgresServer) -> None:
    assert postgres.psql("SHOW listen_addresses") == "127.0.0.1"
    assert postgres.psql("SHOW unix_socket_directories") == str(postgres.data_dir)
    pid = int((postgres.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    uid = os.stat(f"/proc/{pid}").st_uid
    assert uid != 0 or os.geteuid() != 0


def test_an_interrupted_start_leaves_no_server_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C while the postmaster is up but not yet ready (pg_ctl has returned, the readiness loop
    runs): the context manager must still stop it — it used to outlive the run."""
    seen: dict[str, object] = {}
    real_status = PostgresServer._postmaster_status

    def interrupted(self: PostgresServer) -> str | None:
        if self._postmaster_alive():
            seen["pid"], seen["dir"] = self._postmaster_pid(), self.data_dir
            raise KeyboardInterrupt
        return real_status(self)

    monkeypatch.setattr(PostgresServer, "_postmaster_status", interrupted)
    with pytest.raises(KeyboardInterrupt):
        with PostgresServer.temporary(durable=False):
            pass
    assert seen, "the postmaster never came up, so nothing was interrupted"
    # stop() waits for the shutdown itself; the grace is for reaping only. (An orphaned server does
    # exit by itself once it notices its data dir is gone, but only after tens of seconds.)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and _running(int(seen["pid"])):  # type: ignore[call-overload]
        time.sleep(0.1)
    assert not _running(int(seen["pid"])), "the interrupted server is still running"  # type: ignore[call-overload]
    assert not seen["dir"].exists()  # type: ignore[attr-defined]


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped."""
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
