"""The active latency scenarios: seeded from Settings, switchable at runtime by /admin/scenarios."""

from __future__ import annotations

from collections.abc import Iterable

from sample_service.settings import Scenario


class ScenarioState:
    __slots__ = ("_active",)

    def __init__(self, initial: Iterable[Scenario] = ()) -> None:
        self._active = frozenset(initial)

    @property
    def active(self) -> frozenset[Scenario]:
        return self._active

    def set(self, scenarios: Iterable[Scenario]) -> None:
        # One atomic swap: a request reads either the old or the new set, never a half-update.
        self._active = frozenset(scenarios)

    def __contains__(self, scenario: Scenario) -> bool:
        return scenario in self._active

    def labels(self) -> list[str]:
        return sorted(s.value for s in self._active)
