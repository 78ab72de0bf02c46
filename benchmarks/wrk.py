"""wrk (Debian's package) driven from Python: Lua scripts generated per workload, results read from a
``done()`` hook that prints one JSON line (latency percentiles in microseconds straight from wrk's
HdrHistogram, so nothing is parsed out of the human-readable ``--latency`` table)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

MARKER = "O11Y_BENCH_RESULT "
# The latency CDF every run records (the plot draws it; the table reads p50/p90/p99/p99.9 from it).
PERCENTILES: tuple[float, ...] = (
    *[float(p) for p in range(1, 100)],
    99.5,
    99.9,
    99.99,
)

_DONE_HOOK = """
done = function(summary, latency, requests)
  local ps = {%(percentiles)s}
  local out = {}
  for i, p in ipairs(ps) do
    out[i] = string.format("[%%.2f,%%d]", p, latency:percentile(p))
  end
  local e = summary.errors
  io.write(string.format(
    '%(marker)s{"requests":%%d,"duration_us":%%d,"bytes":%%d,' ..
    '"errors":{"connect":%%d,"read":%%d,"write":%%d,"status":%%d,"timeout":%%d},' ..
    '"latency_mean_us":%%.1f,"latency_max_us":%%d,"percentiles":[%%s]}\\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, table.concat(out, ",")))
end
"""


def done_hook() -> str:
    return _DONE_HOOK % {
        "percentiles": ",".join(f"{p:g}" for p in PERCENTILES),
        "marker": MARKER,
    }


def _lua_string(s: str) -> str:
    return "[==[" + s + "]==]"


def get_script() -> str:
    """Plain GETs of the URL's path (wrk's own request path: no Lua per request)."""
    return done_hook()


def requests_script(requests: Sequence[tuple[str, str, str | None]]) -> str:
    """Round-robin over pre-formatted requests ``(method, path, json_body_or_None)``.

    Every request string is built once in ``init``; the per-request Lua cost is a table index.
    """
    entries = ",\n".join(
        f"  {{{_lua_string(method)}, {_lua_string(path)}, {'nil' if body is None else _lua_string(body)}}}"
        for method, path, body in requests
    )
    return f"""
local specs = {{
{entries}
}}
local prepared = {{}}
local n = 0
local i = 0
init = function(args)
  for k, s in ipairs(specs) do
    local headers = {{}}
    if s[3] ~= nil then headers["Content-Type"] = "application/json" end
    prepared[k] = wrk.format(s[1], s[2], headers, s[3])
  end
  n = #prepared
end
request = function()
  i = i + 1
  if i > n then i = 1 end
  return prepared[i]
end
""" + done_hook()


@dataclass
class WrkResult:
    requests: int
    duration_us: int
    errors: dict[str, int]
    latency_mean_us: float
    latency_max_us: int
    percentiles: list[tuple[float, int]] = field(default_factory=list)
    bytes: int = 0
    non_2xx: int = 0
    # Filled by the runner: the service process's CPU time over the run (all its threads) and the
    # 1-minute load average before it. CPU per request is robust to other load on the machine;
    # a service using much less than its core while wrk saturates it says the core was shared.
    service_cpu_s: float = 0.0
    loadavg_before: float = 0.0

    @property
    def cpu_us_per_request(self) -> float:
        return self.service_cpu_s * 1e6 / self.requests if self.requests else 0.0

    @property
    def service_cpu_util(self) -> float:
        return self.service_cpu_s / (self.duration_us / 1e6) if self.duration_us else 0.0

    @property
    def throughput(self) -> float:
        return self.requests / (self.duration_us / 1e6) if self.duration_us else 0.0

    def percentile_ms(self, p: float) -> float:
        for q, us in self.percentiles:
            if abs(q - p) < 1e-6:
                return us / 1000.0
        raise KeyError(p)

    @property
    def p99_ms(self) -> float:
        return self.percentile_ms(99.0)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def to_json(self) -> dict[str, object]:
        doc = asdict(self)
        doc["throughput_rps"] = round(self.throughput, 1)
        doc["p50_ms"] = self.percentile_ms(50.0)
        doc["p99_ms"] = self.p99_ms
        doc["cpu_us_per_request"] = round(self.cpu_us_per_request, 1)
        doc["service_cpu_util"] = round(self.service_cpu_util, 3)
        return doc


class WrkError(RuntimeError):
    pass


def wrk_binary() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise WrkError("wrk not found: run `make system-deps` (scripts/system_deps.sh installs Debian's wrk)")
    return path


def parse_output(stdout: str) -> WrkResult:
    for line in stdout.splitlines():
        if line.startswith(MARKER):
            doc = json.loads(line[len(MARKER) :])
            doc["percentiles"] = [(float(p), int(us)) for p, us in doc["percentiles"]]
            doc["non_2xx"] = doc["errors"].get("status", 0)
            return WrkResult(**doc)
    raise WrkError(f"no {MARKER.strip()} line in wrk output:\n{stdout[-2000:]}")


def run_wrk(
    url: str,
    script_path: Path,
    *,
    duration_s: float,
    connections: int,
    threads: int = 1,
    core: int | None = None,
    timeout_s: float = 5.0,
) -> WrkResult:
    """One wrk run; bounded by ``duration_s`` plus a margin (killed if it overstays)."""
    cmd = [
        wrk_binary(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        f"--timeout={timeout_s:g}s",
        "-s",
        str(script_path),
        url,
    ]
    if core is not None:
        cmd = ["taskset", "-c", str(core), *cmd]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + timeout_s + 30)
    except subprocess.TimeoutExpired as exc:
        raise WrkError(f"wrk overstayed its run: {' '.join(cmd)}") from exc
    if proc.returncode != 0:
        raise WrkError(f"wrk failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}")
    return parse_output(proc.stdout)
