"""The telemetry tests' rig: a Telemetry with in-memory exporters, shut down after the test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.unit.test_telemetry_support import Rig, make_rig


@pytest.fixture
def rig() -> Iterator[Rig]:
    rig = make_rig()
    yield rig
    rig.tel.shutdown()
