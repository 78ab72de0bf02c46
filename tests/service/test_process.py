"""``python -m sample_service`` as users run it (uvloop + httptools, settings from O11Y_* variables),
talking to the partner process over the network."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from sample_service.telemetry import catalog
from tests.service.support import REPO, PartnerProcess, dead_port, free_port, poll_until
from tests.service.test_smoke import APPLICANT


def test_the_service_process_serves_decisions_metrics_and_stops_cleanly(
    database_url: str, partner: PartnerProcess, tmp_path: Path,
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("O11Y_", "OTEL_"))}
    env.update({
        "O11Y_PORT": str(port), "O11Y_DATABASE_URL": database_url, "O11Y_PARTNER_BASE_URL": partner.url,
        "O11Y_SCENARIOS": "cache_off,n_plus_one", "O11Y_SHUTDOWN_TIMEOUT_S": "2",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{dead_port()}",
    })
    log = tmp_path / "service.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "sample_service"], cwd=REPO, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        def ready() -> bool:
            assert proc.poll() is None, log.read_text()
            try:
                return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        poll_until(ready, "the service's /readyz", timeout=30)
        admin = httpx.get(f"{url}/admin/scenarios", timeout=5).json()
        assert admin["active"] == ["cache_off", "n_plus_one"]
        r = httpx.post(f"{url}/v1/evaluate", json=APPLICANT, timeout=5)
        assert r.status_code == 200 and r.json()["partner"]["status"] == "ok", r.text
        metrics = httpx.get(f"{url}/metrics", headers={"accept": "application/openmetrics-text"}, timeout=5)
        assert f'{catalog.HTTP_SERVER_DURATION.prom}_bucket{{' in metrics.text
        # Exemplars are on the wire, pointing at the request's trace.
        trace_id = r.json()["trace_id"]
        assert f'trace_id="{trace_id}"' in metrics.text
        assert f'{catalog.CACHE_REQUESTS.prom}{{{catalog.L.CACHE_NAME}="rules"' in metrics.text
    finally:
        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
            raise AssertionError("the service did not stop within 20 s of SIGTERM") from None
    # uvicorn re-raises the signal it handled once shut down, so a clean stop exits by SIGTERM.
    assert code in (0, -signal.SIGTERM), log.read_text()[-3000:]
    assert time.monotonic() - t0 < 10
    assert r.json()["trace_id"] in log.read_text()  # the JSON access record carries the trace id
