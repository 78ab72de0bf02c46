"""The request body README tells users to send must be one the service accepts."""

from __future__ import annotations

from pathlib import Path

from sample_service.schemas import Ingredients

REPO = Path(__file__).resolve().parents[2]


def test_readme_example_body_validates() -> None:
    body = (REPO / "docs" / "example-evaluate.json").read_text()
    assert "docs/example-evaluate.json" in (REPO / "README.md").read_text()
    Ingredients.model_validate_json(body)
