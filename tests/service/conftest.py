from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.service.support import PartnerProcess, partner_process


@pytest.fixture(autouse=True)
def _no_exported_otel_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK reads OTEL_* itself; a developer's exported ones must not change what a test sees."""
    import os

    for key in [k for k in os.environ if k.startswith("OTEL_")]:
        monkeypatch.delenv(key)


@pytest.fixture(scope="session")
def partner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PartnerProcess]:
    """The partner API, a real separate uvicorn process, shared by the session."""
    with partner_process(tmp_path_factory.mktemp("partner")) as handle:
        yield handle
