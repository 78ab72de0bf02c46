"""What ``/openapi.json`` promises: every status a route can answer, and bounds exactly as enforced.

Two corrections to what FastAPI documents on its own (both found by fuzzing the schema,
tests/service/test_fuzz_openapi.py):
* error answers: FastAPI lists only 200 (and, for routes with parameters, a 422 in its own
  ``{"detail": ...}`` shape). Our routes also answer 404/413/503, every error in the one shape of
  ``errors.py``; ``error_responses`` documents them so clients (and the fuzzer) can rely on them.
* integer bounds: FastAPI's OpenAPI model stores ``maximum``/``minimum`` as floats, so the body's
  ``user_id <= 2**63 - 1`` was published as ``9.223372036854776e+18`` (2**63): a schema-valid
  user_id the service rejects. ``install`` puts the request bodies we document back verbatim.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from sample_service.errors import MAX_DETAILS


class ErrorDetail(BaseModel):
    loc: list[str] = Field(description="where: e.g. [\"body\", \"user_id\"]")
    msg: str
    type: str


class ErrorBody(BaseModel):
    """Every non-2xx answer of the service (``errors.error_response``)."""

    error: str = Field(description="machine-readable code, e.g. validation_error, not_found")
    message: str = Field(description="for humans: what was wrong")
    details: list[ErrorDetail] = Field(default_factory=list, max_length=MAX_DETAILS,
                                       description="validation errors only")


_DESCRIPTIONS = {
    400: "malformed request framing (Content-Length not an integer)",
    404: "the named resource does not exist",
    413: "request body larger than max_body_bytes",
    422: "invalid input: wrong type, out of bounds, malformed JSON or cursor, wrong Content-Type",
    503: "database unavailable or connection pool exhausted; retry after Retry-After",
}

BODY_ERRORS = (400, 413, 422)  # what BodySizeLimitMiddleware and body.json_body answer


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each status documented with the error body."""
    return {status: {"model": ErrorBody, "description": _DESCRIPTIONS[status]} for status in statuses}


def install(app: FastAPI, routers: Sequence[APIRouter]) -> None:
    """Wrap ``app.openapi`` so the request bodies the ``routers`` document in ``openapi_extra`` survive
    FastAPI's round trip verbatim. The routers are the ones ``create_app`` includes without a prefix:
    their own route list is public API (the app's, since FastAPI 0.16x, holds included routers)."""
    generate: Callable[[], dict[str, Any]] = app.openapi
    bodies = [(route.path_format, method.lower(), route.openapi_extra["requestBody"])
              for router in routers for route in router.routes
              if isinstance(route, APIRoute) and route.include_in_schema and route.openapi_extra
              and "requestBody" in route.openapi_extra for method in route.methods or ()]

    def openapi() -> dict[str, Any]:
        schema = generate()  # cached by FastAPI; putting the bodies back is idempotent
        for path, method, body in bodies:
            schema["paths"][path][method]["requestBody"] = copy.deepcopy(body)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
