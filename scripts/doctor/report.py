"""Result types of the dashboard doctor and their rendering."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Status(StrEnum):
    DATA = "data"
    EMPTY = "empty"
    ERROR = "error"
    SKIPPED = "skipped"  # hidden target or server-side expression: said so in the report, never silent
    # The backend the query needs is declared absent (Backends.tempo_absent): nothing was run, and the
    # report counts and names such panels; they are neither data nor failures.
    NOT_CHECKABLE = "not checkable"


@dataclass
class TargetResult:
    ref_id: str
    datasource_type: str
    backend: str  # prometheus | tempo | opensearch | "" when none could be chosen
    query: str  # exactly what was sent (interpolated query, or JSON body for OpenSearch)
    status: Status
    detail: str = ""  # series/trace/bucket counts, or the error message
    points: int = 0


@dataclass
class PanelResult:
    dashboard_uid: str
    dashboard_title: str
    panel_id: int | None
    title: str
    panel_type: str
    targets: list[TargetResult] = field(default_factory=list)
    empty_ok_reason: str | None = None  # the panel's own justification for being empty

    @property
    def status(self) -> Status:
        active = [t for t in self.targets if t.status not in (Status.SKIPPED, Status.NOT_CHECKABLE)]
        if any(t.status is Status.ERROR for t in active):
            return Status.ERROR
        if any(t.status is not Status.DATA for t in active):
            return Status.EMPTY  # the targets that could run must still have data
        if any(t.status is Status.NOT_CHECKABLE for t in self.targets):
            return Status.NOT_CHECKABLE
        if not active:
            # Every target hidden or an expression: nothing was proven, so it is not "data".
            return Status.EMPTY
        return Status.DATA

    @property
    def not_checkable_reason(self) -> str:
        return next((t.detail for t in self.targets if t.status is Status.NOT_CHECKABLE), "")

    @property
    def failed(self) -> bool:
        s = self.status
        return s is Status.ERROR or (s is Status.EMPTY and not self.empty_ok_reason)

    @property
    def name(self) -> str:
        return f"{self.dashboard_title} > {self.title}"


@dataclass
class Report:
    panels: list[PanelResult] = field(default_factory=list)
    without_queries: list[str] = field(default_factory=list)  # panels with no targets (text, rows…)
    problems: list[str] = field(default_factory=list)  # dashboard-level: unresolvable variables etc.
    warnings: list[str] = field(default_factory=list)  # e.g. a variable kept its saved value

    @property
    def with_data(self) -> int:
        return sum(p.status is Status.DATA for p in self.panels)

    @property
    def empty(self) -> int:
        return sum(p.status is Status.EMPTY for p in self.panels)

    @property
    def errors(self) -> int:
        return sum(p.status is Status.ERROR for p in self.panels)

    @property
    def not_checkable(self) -> list[str]:
        """Names of the panels whose queries need a backend declared absent (e.g. Tempo)."""
        return [p.name for p in self.panels if p.status is Status.NOT_CHECKABLE]

    @property
    def justified_empty(self) -> int:
        return sum(p.status is Status.EMPTY and bool(p.empty_ok_reason) for p in self.panels)

    @property
    def ok(self) -> bool:
        return not self.problems and not any(p.failed for p in self.panels)

    def summary_line(self) -> str:
        line = (
            f"doctor: {len(self.panels)} panels, {self.with_data} with data, "
            f"{self.empty} empty, {self.errors} errors"
        )
        if self.not_checkable:
            line += f", {len(self.not_checkable)} not checkable ({'; '.join(self.not_checkable)})"
        return line

    def render(self, verbose: bool = False) -> str:
        lines: list[str] = []
        for problem in self.problems:
            lines.append(f"[PROBLEM] {problem}")
        for warning in self.warnings:
            lines.append(f"[WARNING] {warning}")
        for p in self.panels:
            status = p.status
            tag = status.value.upper()
            if status is Status.EMPTY and p.empty_ok_reason:
                tag = "EMPTY-OK"
            if status is Status.NOT_CHECKABLE:
                tag = "NOT-CHECKABLE"
            lines.append(f"[{tag:8}] {p.name}")
            if status is Status.NOT_CHECKABLE:
                lines.append(f"           {p.not_checkable_reason}")
            if status is Status.EMPTY and p.empty_ok_reason:
                lines.append(f"           justified: {p.empty_ok_reason}")
            show_queries = verbose or status is not Status.DATA
            for t in p.targets:
                if show_queries or t.status is not Status.DATA:
                    lines.append(
                        f"    {t.ref_id} [{t.status.value}] {t.backend or t.datasource_type}: {t.detail}"
                    )
                    for q in t.query.splitlines() or [""]:
                        lines.append(f"        {q}")
                else:
                    lines.append(f"    {t.ref_id} [{t.status.value}] {t.backend}: {t.detail}")
        for name in self.without_queries:
            lines.append(f"[NO-QUERY] {name} (panel has no queries; not counted)")
        if self.justified_empty:
            lines.append(
                f"doctor: {self.justified_empty} of the empty panels justify it in their description"
            )
        lines.append(self.summary_line())
        return "\n".join(lines)
