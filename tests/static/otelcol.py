"""Start the real collector with collector/config.yaml rendered as the native runner renders it.

0.0.0.0 -> 127.0.0.1 and the queue dir -> a temp dir (the runner's mechanical rules), plus, for the
static tests only, every listen port moved to a free one and the peers (tempo:4319,
opensearch:9200) pointed wherever the test says, so a test can run beside a native stack.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.static.binaries import REPO, binary

CONFIG = REPO / "collector" / "config.yaml"
LISTEN_PORTS = (4317, 4318, 13133, 8888, 8889)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, accept: str = "*/*") -> tuple[int, str]:
    req = urllib.request.Request(url, headers={"Accept": accept})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def poll(
    fn: Callable[[], Any],
    what: str,
    timeout: float = 30.0,
    proc: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
) -> Any:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            pytest.fail(
                f"collector exited {proc.returncode} while waiting for {what}:\n"
                f"{log.read_text()[-4000:] if log else ''}"
            )
        with contextlib.suppress(OSError):
            last = fn()
            if last:
                return last
        time.sleep(0.5)
    pytest.fail(
        f"timed out after {timeout}s waiting for {what}; last: {str(last)[:2000]}\n"
        f"{log.read_text()[-4000:] if log else ''}"
    )


@contextlib.contextmanager
def running_collector(
    work: Path,
    *,
    tempo: str | None = None,
    opensearch: str | None = None,
    prometheus: str | None = None,
    binary_name: str = "otelcol-o11y",
    config_text: str | None = None,
) -> Iterator[dict[str, Any]]:
    """Yields {4317: port, 4318: port, 13133: ..., 8888: ..., 8889: ..., "log": Path} once healthy.

    ``binary_name``/``config_text``: another cached collector build and a config other than
    collector/config.yaml (rendered the same way), e.g. the compose-version check build."""
    ports = {p: free_port() for p in LISTEN_PORTS}
    text = (CONFIG.read_text() if config_text is None else config_text).replace("0.0.0.0", "127.0.0.1")
    text = text.replace("/var/lib/otelcol", str(work / "state"))
    for old, new in ports.items():
        text = re.sub(rf"(127\.0\.0\.1:){old}\b", rf"\g<1>{new}", text)
        text = re.sub(rf"(port: ){old}\b", rf"\g<1>{new}", text)
    # peers: where the test says, else a port nothing listens on (the backend is "down")
    text = text.replace("tempo:4319", tempo or f"127.0.0.1:{free_port()}")
    text = text.replace("opensearch:9200", opensearch or f"127.0.0.1:{free_port()}")
    text = text.replace("prometheus:9090", prometheus or f"127.0.0.1:{free_port()}")
    rendered = work / "config.yaml"
    rendered.write_text(text)
    log = work / "collector.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(binary(binary_name)), f"--config={rendered}"],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        poll(
            lambda: http_get(f"http://127.0.0.1:{ports[13133]}/")[0] == 200, "health_check 200", 60, proc, log
        )
        yield {**ports, "log": log}
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
