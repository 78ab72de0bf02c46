"""scripts/native/postgres.py: fails fast with the server log when Postgres cannot start, and leaves
nothing behind; a server it started really runs as the unprivileged user, on loopback only."""

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
