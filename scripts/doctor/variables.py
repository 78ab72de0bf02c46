"""Grafana template-variable and macro interpolation, as Grafana does it before a query leaves.

Supported syntaxes: ``$var``, ``${var}``, ``${var:format}``, ``[[var]]``, ``[[var:format]]``; macros
``$__interval``, ``$__interval_ms``, ``$__rate_interval``, ``$__rate_interval_ms``, ``$__range``,
``$__range_s``, ``$__range_ms``, ``$__from``, ``$__to``. The default format of a multi-value or
"All" selection depends on the datasource (regex alternation for Prometheus, ``("a" OR "b")`` for
Lucene), as in Grafana's datasource plugins.
"""

from __future__ import annotations

import json
import math
import re
import time
import urllib.parse
from dataclasses import dataclass, field

# Grafana's own variable regex (public/app/features/variables/utils.ts), same groups.
VARIABLE_RE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^\}]+))?(?::([^\}]+))?\}")

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


class InterpolationError(ValueError):
    pass


def parse_duration(text: str) -> float:
    """``"1h30m"`` → 5400.0 seconds; accepts Grafana/Prometheus duration strings."""
    text = text.strip()
    if not text:
        raise InterpolationError("empty duration")
    pos, total = 0, 0.0
    for m in _DURATION_RE.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_S[m.group(2)]
        pos = m.end()
    if pos != len(text):
        raise InterpolationError(f"not a duration: {text!r}")
    return total


def format_duration(seconds: float) -> str:
    """Seconds → the shortest Prometheus duration (``60`` → ``1m``, ``0.5`` → ``500ms``)."""
    ms = round(seconds * 1000)
    if ms <= 0:
        raise InterpolationError(f"non-positive duration {seconds}")
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


# Grafana's interval rounding table (rangeutil.roundInterval): the step snaps to a "nice" value.
_NICE_MS = (
    (15, 10),
    (35, 20),
    (75, 50),
    (150, 100),
    (350, 200),
    (750, 500),
    (1500, 1000),
    (3500, 2000),
    (7500, 5000),
    (12500, 10000),
    (17500, 15000),
    (25000, 20000),
    (45000, 30000),
    (90000, 60000),
    (210000, 120000),
    (450000, 300000),
    (750000, 600000),
    (1050000, 900000),
    (1500000, 1200000),
    (2700000, 1800000),
    (5400000, 3600000),
    (9000000, 7200000),
    (16200000, 10800000),
    (32400000, 21600000),
    (86400000, 43200000),
    (604800000, 86400000),
)


def round_interval_ms(ms: float) -> int:
    for upper, nice in _NICE_MS:
        if ms < upper:
            return nice
    return 604800000


@dataclass(frozen=True)
class TimeRange:
    start: float  # unix seconds
    end: float

    @classmethod
    def last(cls, since: str, now: float | None = None) -> TimeRange:
        """``since`` like ``1h`` or ``now-1h``."""
        now = time.time() if now is None else now
        s = since.removeprefix("now-")
        return cls(now - parse_duration(s), now)

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Intervals:
    """Grafana's query interval and Prometheus' rate interval for one panel/time range."""

    interval_s: float
    rate_interval_s: float

    @classmethod
    def compute(
        cls,
        tr: TimeRange,
        scrape_interval_s: float = 15.0,
        max_data_points: int = 1000,
        min_interval_s: float = 0,
    ) -> Intervals:
        raw_ms = tr.seconds * 1000 / max_data_points
        interval_ms = max(round_interval_ms(raw_ms), min_interval_s * 1000 or scrape_interval_s * 1000)
        interval_s = interval_ms / 1000
        # Grafana: $__rate_interval = max($__interval + scrape interval, 4 * scrape interval)
        rate_s = max(interval_s + scrape_interval_s, 4 * scrape_interval_s)
        return cls(interval_s, rate_s)


@dataclass
class VarValue:
    """The selection of one variable: its values, and whether "All" is selected."""

    values: list[str]
    multi: bool = False
    include_all: bool = False
    is_all: bool = False
    all_value: str | None = None

    @classmethod
    def single(cls, value: str) -> VarValue:
        return cls([value])


# --- escaping as Grafana's datasources do -----------------------------------------------------
_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|{}\[\]/]")
_LUCENE_SPECIAL = re.compile(r'([+\-=&|><!(){}\[\]^"~*?:\\/ ])')


def regex_escape(value: str) -> str:
    return _REGEX_SPECIAL.sub(lambda m: "\\" + m.group(0), value)


def prometheus_special_regex_escape(value: str) -> str:
    # Prometheus: backslash-escape regex specials, and double the backslashes for the PromQL string.
    return re.sub(r"[\\^$*+?.()|{}\[\]]", lambda m: "\\\\" + m.group(0), value)


def lucene_escape(value: str) -> str:
    if not value:
        return value
    return _LUCENE_SPECIAL.sub(lambda m: "\\" + m.group(1), value)


FORMATS = (
    "raw",
    "regex",
    "pipe",
    "csv",
    "json",
    "lucene",
    "doublequote",
    "singlequote",
    "glob",
    "text",
    "percentencode",
    "queryparam",
    "sqlstring",
)


def apply_format(values: list[str], fmt: str, name: str) -> str:
    if fmt == "raw":
        return ",".join(values)
    if fmt == "regex":
        escaped = [regex_escape(v) for v in values]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
    if fmt == "pipe":
        return "|".join(values)
    if fmt == "csv":
        return ",".join(values)
    if fmt == "json":
        return json.dumps(values if len(values) != 1 else values[0])
    if fmt == "lucene":
        if len(values) == 1:
            return lucene_escape(values[0])
        return "(" + " OR ".join(f'"{lucene_escape(v)}"' for v in values) + ")"
    if fmt == "doublequote":
        return ",".join('"' + v.replace('"', '\\"') + '"' for v in values)
    if fmt == "singlequote":
        return ",".join("'" + v.replace("'", "\\'") + "'" for v in values)
    if fmt == "sqlstring":
        return ",".join("'" + v.replace("'", "''") + "'" for v in values)
    if fmt == "glob":
        return values[0] if len(values) == 1 else "{" + ",".join(values) + "}"
    if fmt == "text":
        return " + ".join(values)
    if fmt == "percentencode":
        return urllib.parse.quote(",".join(values), safe="")
    if fmt == "queryparam":
        return "&".join(f"var-{name}={urllib.parse.quote(v, safe='')}" for v in values)
    raise InterpolationError(f"unsupported variable format {fmt!r} for ${{{name}}}")


def default_format(v: VarValue, ds_type: str) -> str:
    """How Grafana renders ``$var`` with no explicit format, per datasource type."""
    values = v.values
    if ds_type == "prometheus":
        if not v.multi and not v.include_all:
            return values[0].replace("\\", "\\\\").replace("'", "\\'") if values else ""
        escaped = [prometheus_special_regex_escape(x) for x in values]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
    if ds_type in ("grafana-opensearch-datasource", "elasticsearch"):
        return apply_format(values, "lucene", "") if values else ""
    if ds_type == "tempo":
        if len(values) == 1:
            return values[0]
        return "(" + "|".join(regex_escape(x) for x in values) + ")"
    return ",".join(values)


@dataclass
class Interpolator:
    variables: dict[str, VarValue]
    time_range: TimeRange
    intervals: Intervals
    unresolved: list[str] = field(default_factory=list)

    def macros(self) -> dict[str, str]:
        tr, iv = self.time_range, self.intervals
        rng = max(1, round(tr.seconds))
        return {
            "__interval": format_duration(iv.interval_s),
            "__interval_ms": str(round(iv.interval_s * 1000)),
            "__rate_interval": format_duration(iv.rate_interval_s),
            "__rate_interval_ms": str(round(iv.rate_interval_s * 1000)),
            "__range": f"{rng}s",
            "__range_s": str(rng),
            "__range_ms": str(rng * 1000),
            "__from": str(math.floor(tr.start * 1000)),
            "__to": str(math.floor(tr.end * 1000)),
        }

    def interpolate(self, text: str, ds_type: str) -> str:
        """Replace every variable and macro in ``text``; unknown names are recorded in ``unresolved``."""
        macros = self.macros()

        def repl(m: re.Match[str]) -> str:
            name = m.group(1) or m.group(2) or m.group(4)
            fmt = m.group(3) or m.group(6)
            if name in macros:
                if fmt:
                    raise InterpolationError(f"format {fmt!r} on macro ${name} is not supported")
                return macros[name]
            if name not in self.variables:
                self.unresolved.append(name)
                return m.group(0)
            v = self.variables[name]
            if v.is_all and v.all_value is not None:
                # Grafana passes a custom "All" value through unescaped, whatever the format.
                return v.all_value
            if fmt:
                return apply_format(v.values, fmt, name)
            return default_format(v, ds_type)

        return VARIABLE_RE.sub(repl, text)
