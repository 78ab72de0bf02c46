"""Every error answer is JSON ``{"error": <code>, "message": <text>[, "details": [...]]}``.

The validation handler rebuilds the details from loc/msg/type only: the default handler echoes the
offending input, which fails to serialise for ``inf`` (a 500 on bad input) and reflects whatever a
client sent back at it.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from sample_service.responses import ORJSONResponse

log = logging.getLogger(__name__)

MAX_DETAILS = 20


def error_response(status: int, error: str, message: str, details: list[Any] | None = None,
                   headers: dict[str, str] | None = None) -> ORJSONResponse:
    content: dict[str, Any] = {"error": error, "message": message}
    if details:
        content["details"] = details
    return ORJSONResponse(content, status_code=status, headers=headers)


def _validation_details(errors: Any) -> list[dict[str, Any]]:
    details = []
    for err in list(errors)[:MAX_DETAILS]:
        loc = [str(p) for p in err.get("loc", ())]
        details.append({"loc": loc, "msg": str(err.get("msg", ""))[:300], "type": str(err.get("type", ""))})
    return details


async def on_validation_error(request: Request, exc: RequestValidationError) -> ORJSONResponse:
    details = _validation_details(exc.errors())
    first = details[0] if details else {"loc": [], "msg": "invalid request"}
    where = ".".join(p for p in first["loc"] if p not in ("body",)) or "request"
    return error_response(422, "validation_error", f"{where}: {first['msg']}", details)


async def on_http_error(request: Request, exc: StarletteHTTPException) -> ORJSONResponse:
    code = {404: "not_found", 403: "forbidden", 405: "method_not_allowed", 413: "body_too_large",
            422: "validation_error", 503: "unavailable"}.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail), headers=getattr(exc, "headers", None))


async def on_pool_timeout(request: Request, exc: sa_exc.TimeoutError) -> ORJSONResponse:
    # Pool exhausted for pool_timeout: the service is saturated, not broken. Say so and when to retry.
    # Logged at ERROR: a request failed, and the on-call engineer's log search starts from errors.
    log.error("database pool exhausted on %s %s: %s", request.method, request.url.path, exc)
    return error_response(503, "db_pool_exhausted", "no database connection available; retry later",
                          headers={"retry-after": "1"})


async def on_db_unavailable(request: Request, exc: Exception) -> ORJSONResponse:
    log.warning("database unavailable: %s", type(exc).__name__)
    return error_response(503, "db_unavailable", "database unavailable; retry later",
                          headers={"retry-after": "1"})


# What a restarting Postgres answers, as SQLSTATEs: 57P01 admin_shutdown (a fast shutdown cut the
# session mid-query), 57P02 crash_shutdown, 57P03 cannot_connect_now ("the database system is starting
# up" / "shutting down": the port is open again before connections are allowed); class 08 is
# connection exceptions. asyncpg raises them as server errors, which SQLAlchemy wraps in a plain
# DBAPIError rather than an OperationalError, so they fell through to the 500 handler: every restart
# produced a burst of 500s around its stop and start (tests/service/test_db_restart.py).
UNAVAILABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03"})


def database_unavailable(exc: sa_exc.DBAPIError) -> bool:
    """The database is not there to answer (down, starting, shutting down, the connection gone), as
    opposed to something wrong with what we sent it."""
    sqlstate = getattr(exc.orig, "sqlstate", None) or ""
    # connection_invalidated: SQLAlchemy judged the error a disconnect and discarded the connection
    # (and, being a disconnect, marked the rest of the pool stale: the next checkouts reconnect).
    return exc.connection_invalidated or sqlstate in UNAVAILABLE_SQLSTATES or sqlstate.startswith("08")


async def on_db_error(request: Request, exc: sa_exc.DBAPIError) -> ORJSONResponse:
    if database_unavailable(exc):
        return await on_db_unavailable(request, exc)
    # Anything else (a constraint, a bad statement) is our bug: on to the 500 handler, as before.
    raise exc


async def on_unexpected(request: Request, exc: Exception) -> ORJSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "internal error")


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, on_validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, on_http_error)  # type: ignore[arg-type]
    app.add_exception_handler(sa_exc.TimeoutError, on_pool_timeout)  # type: ignore[arg-type]
    app.add_exception_handler(sa_exc.OperationalError, on_db_unavailable)
    app.add_exception_handler(sa_exc.InterfaceError, on_db_unavailable)
    # The other DBAPIErrors: a 503 when the database is unavailable, otherwise re-raised to the 500.
    app.add_exception_handler(sa_exc.DBAPIError, on_db_error)  # type: ignore[arg-type]
    # asyncpg raises OSError (refused, unreachable) and TimeoutError on connect, unwrapped.
    app.add_exception_handler(OSError, on_db_unavailable)
    app.add_exception_handler(TimeoutError, on_db_unavailable)
    app.add_exception_handler(Exception, on_unexpected)
