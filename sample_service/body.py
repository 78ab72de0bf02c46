"""Strict JSON request bodies: ``Annotated[Model, Depends(json_body(Model))]``.

Why not FastAPI's own body parsing: it answers 400 "error parsing the body" for invalid UTF-8 and
for integers longer than Python's 4300-digit parse limit, and accepts any Content-Type. Here every
malformed body is a 422 with a message, and pydantic parses the bytes directly (no ``json.loads``
step; its parser takes big integers, so the model's bounds reject them with a clear message).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def json_body(model: type[M]) -> Callable[[Request], Awaitable[M]]:
    async def parse(request: Request) -> M:
        if not _is_json(request.headers.get("content-type", "")):
            raise RequestValidationError([{
                "loc": ("header", "content-type"), "type": "content_type",
                "msg": "Content-Type must be application/json",
            }])
        try:
            return model.model_validate_json(await request.body())
        except ValidationError as exc:
            errors: list[Any] = [{**e, "loc": ("body", *e["loc"])}
                                 for e in exc.errors(include_input=False, include_url=False)]
            raise RequestValidationError(errors) from None

    return parse


def openapi_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` that documents the body the dependency parses."""
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": model.model_json_schema(ref_template="#/components/schemas/{model}")}
    }}}
