"""What every drill run must show, native or under compose: the slowest exemplars of the scenario's
window are stored traces, and the links it prints open (the trace's JSON, each panel's PromQL)."""

from __future__ import annotations

from typing import Any

import httpx

from scripts.native.health import poll_until
from tests.stack.backends import Backends


def assert_drill_leads_to_slow_traces(drill: dict[str, Any], printed: str, backends: Backends,
                                      hold_ms: float) -> None:
    # every request of the scenario held at least `hold_ms`: a lower bound, whatever the machine's load
    on = drill["scenario_run"]["routes"][drill["route"]]
    assert min(ms for _, ms in on["curve_ms"]) >= hold_ms, on["latency_ms"]
    assert any(m["group"] == drill["route"] for m in drill["moved"]), drill["moved"]
    ex = drill["exemplars"]
    assert ex, drill["exemplar_note"]
    assert [e["value_ms"] for e in ex] == sorted((e["value_ms"] for e in ex), reverse=True)
    assert ex[0]["value_ms"] >= hold_ms
    poll_until(lambda: backends.trace(ex[0]["trace_id"]), f"exemplar trace {ex[0]['trace_id']} stored", 60)
    assert ex[0]["trace_id"] in printed
    trace_doc = httpx.get(ex[0]["trace_url"], timeout=10)
    assert trace_doc.status_code == 200 and ex[0]["trace_id"] in trace_doc.text, ex[0]["trace_url"]
    prom_links = [p["prometheus_url"] for p in drill["panels"] if p.get("prometheus_url")]
    assert prom_links, drill["panels"]
    for url in prom_links:
        answer = httpx.get(url, timeout=10)
        assert answer.status_code == 200 and answer.json()["status"] == "success", (url, answer.text[:300])
