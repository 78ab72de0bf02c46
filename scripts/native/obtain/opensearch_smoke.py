"""Start the obtained OpenSearch once, as the service user on loopback, and read what it answers."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from scripts.native.obtain.cache import Obtained
from scripts.native.obtain.lookup import cached
from scripts.native.obtain.opensearch import find_java_home
from scripts.native.obtain.service_user import ensure_service_user, readable_copy
from scripts.native.obtain.steps import ObtainError, fmt_seconds, say


def _free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise ObtainError("no free loopback port")


def smoke_test_opensearch(
    got: Obtained | None = None, *, http_port: int = 9200, timeout: float = 180.0, probe: Any = None
) -> dict[str, Any]:
    """Start the obtained OpenSearch once as the service user on loopback (single-node, temp data
    dir), GET / and /_cat/plugins + /_nodes/plugins, stop it, remove the temp dir. Returns
    {"root": <GET / JSON>, "modules": [...], "plugins": [...], "port": N, "seconds_to_ready": s}
    (+ "probe": probe(base_url) when a ``probe`` callable is given: extra checks while it runs)."""
    got = got or cached("opensearch")
    user = ensure_service_user()
    java_home = got.extra.get("java_home") or str(find_java_home())
    work = Path(tempfile.mkdtemp(prefix="o11y-opensearch-smoke-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        home = readable_copy(got.home, work / "home", user)
        conf = work / "config"
        shutil.copytree(home / "config", conf)
        for d in ("data", "logs", "tmp"):
            (work / d).mkdir()
        subprocess.run(["chown", "-R", f"{user}:", str(work)], check=True)
        os.chmod(work, 0o755)
        port = _free_port(http_port)
        tport = _free_port(9300 if port == 9200 else 0)
        env = {
            "PATH": "/usr/bin:/bin",
            "OPENSEARCH_JAVA_HOME": java_home,
            "OPENSEARCH_PATH_CONF": str(conf),
            "OPENSEARCH_JAVA_OPTS": "-Xms512m -Xmx512m",
            "OPENSEARCH_TMPDIR": str(work / "tmp"),
        }
        argv = [
            "runuser",
            "-u",
            user,
            "--",
            "env",
            *(f"{k}={v}" for k, v in env.items()),
            str(home / "bin" / "opensearch"),
            "-Ediscovery.type=single-node",
            "-Enetwork.host=127.0.0.1",
            f"-Ehttp.port={port}",
            f"-Etransport.port={tport}",
            f"-Epath.data={work / 'data'}",
            f"-Epath.logs={work / 'logs'}",
            "-Ecluster.name=o11y-smoke",
        ]
        say(f"opensearch smoke: starting on 127.0.0.1:{port} as {user} (JAVA {java_home})")
        start = time.monotonic()
        out = (work / "stdout.log").open("wb")
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        root: dict[str, Any] | None = None
        while time.monotonic() - start < timeout:
            if proc.poll() is not None:
                raise ObtainError(
                    f"opensearch exited with {proc.returncode}:\n{(work / 'stdout.log').read_text()[-3000:]}"
                )
            try:
                with urllib.request.urlopen(base + "/", timeout=5) as r:
                    root = json.loads(r.read())
                break
            except OSError:
                time.sleep(1)
        if root is None:
            raise ObtainError(f"opensearch not answering on {base} after {timeout:.0f}s")
        ready_s = time.monotonic() - start
        with urllib.request.urlopen(base + "/_nodes/plugins", timeout=10) as r:
            nodes = json.loads(r.read())["nodes"]
        node = next(iter(nodes.values()))
        modules = sorted(m["name"] for m in node.get("modules", []))
        plugins = sorted(p["name"] for p in node.get("plugins", []))
        say(
            f"opensearch smoke: {root.get('version', {}).get('number')} answered in {fmt_seconds(ready_s)}; "
            f"modules={modules} plugins={plugins or 'none'}"
        )
        result = {
            "root": root,
            "modules": modules,
            "plugins": plugins,
            "port": port,
            "seconds_to_ready": round(ready_s, 1),
        }
        if probe is not None:
            result["probe"] = probe(base)
        return result
    finally:
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 15)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, 9)
                proc.wait()
        shutil.rmtree(work, ignore_errors=True)
