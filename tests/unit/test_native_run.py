"""The native runner's process plumbing, on real processes: sockets, RSS, process-group teardown."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from scripts.native import compose_model
from scripts.native.health import PollTimeout, poll_until
from scripts.native.run import (
    _pid_runs,
    kill_group,
    listening_sockets,
    non_loopback,
    proc_start_ticks,
    rss_bytes,
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_sockets_rss_and_group_teardown_of_a_real_process_tree() -> None:
    port = _free_port()
    # a parent that forks a listening child: teardown must reach the child through the group
    code = (
        "import subprocess, sys, time;"
        f"subprocess.Popen([sys.executable, '-m', 'http.server', '--bind', '127.0.0.1', '{port}']);"
        "time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        addrs = poll_until(lambda: listening_sockets(proc.pid), "the child to listen", 20, 0.1)
        assert f"127.0.0.1:{port}" in addrs
        assert non_loopback(addrs) == []
        assert rss_bytes(proc.pid) > 5 * 2**20  # two Python processes
        ticks = proc_start_ticks(proc.pid)
        assert _pid_runs(proc.pid, ticks) and not _pid_runs(proc.pid, (ticks or 0) + 1)
    finally:
        t = time.monotonic()
        kill_group(proc.pid, grace_s=10)
        proc.wait(timeout=5)
    assert time.monotonic() - t < 10
    with socket.socket() as s:  # the grandchild is gone too: its port is free again
        s.bind(("127.0.0.1", port))


def test_non_loopback_flags_wildcard_and_external_addresses() -> None:
    addrs = ["127.0.0.1:9090", "::ffff:127.0.0.1:9200", "::1:5432", "0.0.0.0:7946", ":::4317", "10.0.0.5:80"]
    assert non_loopback(addrs) == ["0.0.0.0:7946", ":::4317", "10.0.0.5:80"]


def test_poll_until_reports_the_last_error() -> None:
    calls = {"n": 0}

    def never() -> bool:
        calls["n"] += 1
        raise ValueError(f"attempt {calls['n']}")

    with pytest.raises(PollTimeout, match=r"waiting for the impossible; last: ValueError: attempt \d+"):
        poll_until(never, "the impossible", timeout=0.3, interval=0.05)
    assert calls["n"] >= 2


def test_depends_on_cycle_is_an_error() -> None:
    def svc(name: str, deps: dict[str, str]) -> compose_model.Service:
        return compose_model.Service(name, None, None, None, {}, [], [], None, deps)

    model = compose_model.ComposeModel(
        project_dir=compose_model.REPO_ROOT,
        services={"a": svc("a", {"b": "service_healthy"}), "b": svc("b", {"a": "service_healthy"})},
        volumes={},
        source="test",
    )
    with pytest.raises(compose_model.ComposeError, match="cycle"):
        model.start_order()
