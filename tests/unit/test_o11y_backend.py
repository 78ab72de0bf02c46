"""Which backend the CLI picks, and what it says when there is no stack to act on."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.o11y.backend import BackendError, get_backend
from scripts.o11y.native_backend import NativeBackend


def test_native_when_no_engine_answers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("O11Y_BACKEND", raising=False)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")  # nothing listens there
    assert get_backend(None).name == "native"


def test_explicit_choice_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("O11Y_BACKEND", "native")
    assert get_backend(None).name == "native"
    with pytest.raises(BackendError, match="unknown backend 'k8s'"):
        get_backend("k8s")


def test_no_detached_stack_says_how_to_start_one(tmp_path: Path) -> None:
    backend = NativeBackend(tmp_path)
    for call in (backend.status, backend.urls, lambda: backend.kill("tempo")):
        with pytest.raises(BackendError, match=r"up --detach"):
            call()
