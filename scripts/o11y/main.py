"""`o11y`: operate the o11y-box stack (compose or native) — status, load, compare, scenario, chaos, drill.

Every command takes `--backend native|compose`; the default is compose when a Docker engine answers
and the compose project has containers, else native ($O11Y_BACKEND overrides). docs/cli.md.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from scripts.o11y import compare as cmp
from scripts.o11y import load as engine
from scripts.o11y import open_loop, views
from scripts.o11y.backend import Backend, BackendError, get_backend
from scripts.o11y.drill import FOCUS, run_drill, scenarios_state, set_scenarios

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
scenario_app = typer.Typer(help="Latency scenarios of the sample service (docs/scenarios.md).",
                           no_args_is_help=True)
app.add_typer(scenario_app, name="scenario")
# Not a terminal (a log, a pipe, a test): wide enough that tables keep whole URLs and numbers.
console = Console(width=None if sys.stdout.isatty() else 200)
errors = Console(stderr=True)

# Short names a person types -> compose service names.
ALIASES = {"collector": "otel-collector", "service": "sample-service", "partner": "partner-api",
           "traces": "tempo"}

BackendOpt = Annotated[str | None, typer.Option(
    "--backend", "-b", help="native | compose (default: compose when its containers run, else native; "
    "$O11Y_BACKEND)")]
Rate = Annotated[float, typer.Option(help="arrival rate, requests per second (open loop)")]
Duration = Annotated[str, typer.Option(help="seconds (30, 30s, 2m)")]
Mix = Annotated[str, typer.Option(help="route weights, e.g. evaluate=0.7,records=0.25,partner=0.05")]
Users = Annotated[int, typer.Option(help="user ids 1..N exist (compose's SEED_USERS)")]
Seed = Annotated[int, typer.Option(help="random seed: the same seed sends the same requests")]


def fail(message: str, code: int = 2) -> NoReturn:
    errors.print(f"[red]error:[/] {message}")
    raise typer.Exit(code)


def backend_of(name: str | None) -> Backend:
    if name is not None and name not in ("native", "compose"):
        fail(f"--backend {name!r}: choose native or compose")
    try:
        return get_backend(name)
    except BackendError as exc:
        fail(str(exc))


def service_base(backend: Backend) -> str:
    try:
        url = backend.urls().get("service")
    except BackendError as exc:
        fail(str(exc))
    if not url:
        fail(f"the {backend.name} stack has no sample service to send load to")
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "", "", ""))


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
    console.print(f"wrote {path}")


def run_load(base_url: str, *, rate: float, duration_s: float, mix: dict[str, float], users: int, seed: int,
             title: str = "load", **options: Any) -> dict[str, Any]:
    """One open-loop load run with a progress bar."""
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[info]}"))
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(title, total=duration_s, info="")
        t0 = time.monotonic()

        def tick(rec: open_loop.Recording, inflight: int) -> None:
            failed = sum(1 for s in rec.samples if not s.outcome.ok)
            progress.update(task, completed=min(duration_s, time.monotonic() - t0),
                            info=f"{len(rec.samples)} done, {failed} errors, {inflight} in flight")

        try:
            return asyncio.run(engine.run(rate=rate, duration_s=duration_s, base_url=base_url, mix=mix,
                                          users=users, seed=seed, progress=tick, **options))
        except open_loop.LoadError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            # a drill's `finally` still switches its scenario off on the way out
            fail("interrupted", code=130)


def parse_load_args(rate: float, duration: str, mix: str) -> tuple[float, dict[str, float]]:
    try:
        open_loop.check_rate(rate)
        duration_s = engine.parse_duration(duration)
        weights = engine.parse_mix(mix)
    except open_loop.LoadError as exc:
        fail(str(exc))
    if duration_s is None:
        fail("--duration forever is for the loadgen service (python -m scripts.o11y.load); give seconds")
    return duration_s, weights


# ------------------------------------------------------------------------------------------------
@app.command()
def status(backend: BackendOpt = None) -> None:
    """Each component's state, health, uptime and memory, and the URLs to open. Exit 1 if one is unhealthy."""
    b = backend_of(backend)
    try:
        rows = b.status()
        urls = b.urls()
    except BackendError as exc:
        fail(str(exc))
    console.print(views.status_table(rows, b.name))
    console.print(views.urls_table(urls))
    if any(r.healthy is False for r in rows):
        raise typer.Exit(1)


@app.command()
def load(
    rate: Rate = 10.0, duration: Duration = "30s", mix: Mix = engine.DEFAULT_MIX,
    out: Annotated[Path | None, typer.Option(help="write the result JSON here (for compare)")] = None,
    base_url: Annotated[str | None, typer.Option(help="the sample service (default: the backend's)")] = None,
    partner_url: Annotated[str | None, typer.Option(help="the partner API (default: :8001 beside)")] = None,
    users: Users = 2000, seed: Seed = 1,
    max_inflight: Annotated[int, typer.Option(help="cap on concurrent requests")] = 256,
    late_ms: Annotated[float, typer.Option(help="a send this much past its due time counts as late")] = 10.0,
    timeout: Annotated[float, typer.Option(help="per-request timeout, seconds")] = 10.0,
    backend: BackendOpt = None,
) -> None:
    """Open-loop load at a constant arrival rate; prints p50…p99.9, throughput and errors per route."""
    duration_s, weights = parse_load_args(rate, duration, mix)
    base = base_url or service_base(backend_of(backend))
    result = run_load(base, rate=rate, duration_s=duration_s, mix=weights, users=users, seed=seed,
                      partner_url=partner_url, max_inflight=max_inflight, late_ms=late_ms, timeout_s=timeout)
    console.print(views.load_table(result))
    if out:
        write_json(out, result)


@app.command()
def compare(
    before: Annotated[Path, typer.Argument(help="load JSON (before)")],
    after: Annotated[Path, typer.Argument(help="load JSON (after)")],
    plot: Annotated[Path | None, typer.Option(help="PNG to write (default BEFORE-vs-AFTER.png)")] = None,
) -> None:
    """Deltas between two `o11y load --out` files, and a before/after percentile plot (PNG)."""
    try:
        a, b = engine.load_result(before), engine.load_result(after)
    except open_loop.LoadError as exc:
        fail(str(exc))
    labels = (before.stem, after.stem)
    console.print(views.deltas_table(cmp.deltas(a, b), labels))
    target = plot or Path(f"{before.stem}-vs-{after.stem}.png")
    from scripts.o11y.plot import percentile_plot  # matplotlib: seconds to import, only here

    percentile_plot(a, b, target, labels=labels, title=f"{before.stem} vs {after.stem}")
    console.print(f"wrote {target}")


# ------------------------------------------------------------------------------------------------
def _scenario_state(b: Backend) -> dict[str, Any]:
    try:
        return scenarios_state(b)
    except BackendError as exc:
        fail(str(exc))


def _set(b: Backend, active: list[str]) -> None:
    try:
        state = set_scenarios(b, active)
    except BackendError as exc:
        fail(str(exc))
    console.print(f"active scenarios: {', '.join(state['active']) or 'none'}")


def _known(names: list[str], state: dict[str, Any]) -> None:
    unknown = [n for n in names if n not in state.get("available", [])]
    if unknown:
        fail(f"unknown scenario {', '.join(unknown)}: choose from {', '.join(state.get('available', []))}")


@scenario_app.command("list")
def scenario_list(backend: BackendOpt = None) -> None:
    """The service's scenarios and which are on."""
    state = _scenario_state(backend_of(backend))
    for name in state.get("available", []):
        on = name in state.get("active", [])
        console.print(f"{'[red]on [/]' if on else 'off'}  {name}")


@scenario_app.command("on")
def scenario_on(names: Annotated[list[str], typer.Argument(help="scenario(s) to switch on")],
                backend: BackendOpt = None) -> None:
    """Switch scenarios on (the others stay as they are)."""
    b = backend_of(backend)
    state = _scenario_state(b)
    _known(names, state)
    _set(b, sorted({*state.get("active", []), *names}))


@scenario_app.command("off")
def scenario_off(names: Annotated[list[str], typer.Argument(help="scenario(s) to switch off, or 'all'")],
                 backend: BackendOpt = None) -> None:
    """Switch scenarios off."""
    b = backend_of(backend)
    state = _scenario_state(b)
    if names != ["all"]:
        _known(names, state)
    _set(b, [] if names == ["all"] else sorted(set(state.get("active", [])) - set(names)))


class Action(StrEnum):
    stop = "stop"
    kill = "kill"
    pause = "pause"
    resume = "resume"
    start = "start"


@app.command()
def chaos(action: Annotated[Action, typer.Argument(help="stop | kill (SIGKILL) | pause | resume | start")],
          component: Annotated[str, typer.Argument(help="compose service name (or collector, service, "
                                                   "partner, traces)")],
          backend: BackendOpt = None) -> None:
    """Stop, kill, pause, resume or start one component; `start` waits until it is healthy."""
    b = backend_of(backend)
    name = ALIASES.get(component, component)
    t0 = time.monotonic()
    try:
        getattr(b, action.value)(name)
        row = next((r for r in b.status() if r.name == name), None)
    except (BackendError, AssertionError) as exc:  # poll_until's timeout is an AssertionError
        fail(str(exc))
    console.print(f"{action.value} {name}: done in {time.monotonic() - t0:.1f}s"
                  + (f"; now {row.state}" + ("" if row.healthy is None else
                                             f", {'healthy' if row.healthy else 'not healthy'}")
                     if row else ""))


@app.command()
def drill(
    name: Annotated[str, typer.Argument(help=f"scenario: {', '.join(FOCUS)}")],
    rate: Rate = 20.0, duration: Duration = "30s", mix: Mix = engine.DEFAULT_MIX,
    out: Annotated[Path | None, typer.Option(help="write the drill JSON here (both loads, what moved, "
                                             "exemplars, links)")] = None,
    plot: Annotated[Path | None, typer.Option(help="also write the before/after percentile plot")] = None,
    users: Users = 2000, seed: Seed = 1, backend: BackendOpt = None,
) -> None:
    """Baseline load, scenario on, the same load, scenario off: what moved, exemplars, panels, traces."""
    if name not in FOCUS:
        fail(f"unknown scenario {name!r}: choose one of {', '.join(FOCUS)}")
    duration_s, weights = parse_load_args(rate, duration, mix)
    b = backend_of(backend)
    base = service_base(b)

    def one(phase: str) -> dict[str, Any]:
        # the same seed in both phases: the same requests, in the same order, at the same times
        return run_load(base, rate=rate, duration_s=duration_s, mix=weights, users=users, seed=seed,
                        title=phase)

    try:
        result = run_drill(b, name, one, rate=rate, duration_s=duration_s, say=console.print)
    except BackendError as exc:
        fail(str(exc))
    show_drill(result)
    if out:
        write_json(out, result)
    if plot:
        from scripts.o11y.plot import percentile_plot

        percentile_plot(result["baseline"], result["scenario_run"], plot, labels=("baseline", name),
                        title=f"drill {name}")
        console.print(f"wrote {plot}")


def show_drill(result: dict[str, Any]) -> None:
    name, route = result["scenario"], result["route"]
    console.print(views.load_table(result["baseline"], "baseline"))
    console.print(views.load_table(result["scenario_run"], name))
    shown = [cmp.Delta(d["group"], d["metric"], d["before"], d["after"]) for d in result["deltas"]
             if d["group"] in (route, "total")]
    console.print(views.deltas_table(shown, ("baseline", name), f"what moved ({route} and total)"))
    moved = [f"{d['group']} {d['metric']}" for d in result["moved"]]
    console.print(f"moved: {', '.join(moved) if moved else 'nothing beyond noise'}")
    if result["exemplars"]:
        console.print(views.exemplars_table(result["exemplars"]))
    else:
        console.print(f"no exemplars found in the window. {result['exemplar_note']}")
    slow = [s for s in result["slowest_requests"] if s.get("trace_id")]
    if not slow:
        console.print(f"({route} responses name no trace id: its exemplars above lead to its traces)")
    for s in slow:
        console.print(f"slow {route}: {s['latency_ms']:.1f} ms, trace {s['trace_id']} {s['trace_url']}")
    console.print(f"in the trace, look for: {result['look_for']}")
    for line in views.panel_lines(result["panels"], result["grafana_available"]):
        console.print(line, soft_wrap=True, highlight=False)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
