"""The private Docker engine's teardown gives the host back as it found it, even on SIGTERM.

dockerd turns ip_forward on, rewrites iptables (FORWARD policy DROP, DOCKER chains, NAT), adds the
docker0 and br-* links and /run paths. scripts/engine/docker_engine.py snapshots all of it before
the daemon starts and restores it after; this runs that path in a child process, with a bridge
network up, then SIGTERMs it and compares the host before and after.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from scripts.engine import docker_engine

pytestmark = [pytest.mark.docker, pytest.mark.stack]
REPO = Path(__file__).resolve().parents[2]


def _iptables() -> str:
    out = []
    for tool in ("iptables-save", "ip6tables-save"):
        proc = subprocess.run([tool], capture_output=True, text=True, timeout=60)
        # Comments carry timestamps and chain headers packet counters: not state.
        out += [re.sub(r"\[\d+:\d+\]", "", line)
                for line in proc.stdout.splitlines() if not line.startswith("#")]
    return "\n".join(out)


def _host() -> dict[str, Any]:
    return {
        "links": sorted(docker_engine._links()),
        "ip_forward": Path("/proc/sys/net/ipv4/ip_forward").read_text().strip(),
        "iptables": _iptables(),
        "run_paths": {p: Path(p).exists() for p in ("/run/containerd", "/run/docker")},
    }


def test_private_engine_restores_the_host_on_sigterm(tmp_path: Path) -> None:
    if docker_engine.existing_engine(tmp_path / "config") is not None:
        print("\nprivate-engine teardown test skipped: an engine already answers (the harness uses it)")
        pytest.skip("an engine already answers: the harness would not start a private one")
    reason = docker_engine.why_no_private_engine()
    if reason:
        print(f"\nprivate-engine teardown test skipped: {reason}")
        pytest.skip(reason)
    before = _host()
    proc = subprocess.Popen([sys.executable, "-m", "scripts.engine.docker_engine", "--hold"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 180
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip())
            if line.strip() == "ready" or time.monotonic() > deadline:
                break
        assert lines and lines[-1] == "ready", lines
        assert "private dockerd" in lines[0], lines
        during = _host()
        # The comparison below can fail: the running engine did change the host.
        assert during["links"] != before["links"] and during["iptables"] != before["iptables"], during
        # Neighbours cannot route to the containers around the loopback binding (docs/security.md).
        user_chain = subprocess.run(["iptables", "-S", "DOCKER-USER"], capture_output=True, text=True).stdout
        rules = user_chain.splitlines()
        assert "-A DOCKER-USER -j DROP" in rules, user_chain
        drop = rules.index("-A DOCKER-USER -j DROP")  # dockerd may append its own RETURN after it
        assert "-A DOCKER-USER -i br-+ -j RETURN" in rules[:drop], user_chain
        socket_dir = lines[0].split("unix://", 1)[1].split("/docker.sock", 1)[0]
    finally:
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=120)
        lines += rest.splitlines()
    assert proc.returncode == 0, lines
    assert "stopped" in lines, lines
    after = _host()
    assert after == before, {k: (before[k], after[k]) for k in before if before[k] != after[k]}
    assert not Path(socket_dir).exists(), socket_dir
    leftover = docker_engine.pids_whose_cmdline_has(socket_dir)
    assert not leftover, leftover

