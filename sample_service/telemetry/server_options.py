"""What the contrib ASGI/FastAPI instrumentation lets a team configure, for the lean server middleware.

Read from the same standard variables, so a team's existing settings keep working when they switch
from ``FastAPIInstrumentor`` (or back, with ``O11Y_TELEMETRY_MODE=stock``):

- ``OTEL_PYTHON_FASTAPI_EXCLUDED_URLS`` (else ``OTEL_PYTHON_EXCLUDED_URLS``): comma-separated regexes
  searched in the full URL ``scheme://host/path``; a match gets no span, no metric, no access record.
- ``OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST`` / ``…_SERVER_RESPONSE``: header-name
  regexes (full match, case-insensitive) → ``http.{request,response}.header.<name>`` span attributes,
  values as lists; ``…_SANITIZE_FIELDS`` redacts matching names.
- hooks with the contrib signatures: ``server_request_hook(span, scope)`` after the server span
  starts; ``client_request_hook(span, scope, message)`` per received message and
  ``client_response_hook(span, scope, message)`` per sent message. Contrib passes its internal
  receive/send spans there; we make none (they cost two spans per request), so the hooks get the
  server span. Like contrib, a hook that raises is logged and ignored.

Everything is parsed once; with nothing configured the middleware pays one ``is None`` test per option.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry.util.http import (
    OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS,
    OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST,
    OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE,
    ExcludeList,
    SanitizeValue,
    normalise_request_header_name,
    normalise_response_header_name,
    parse_excluded_urls,
)

_log = logging.getLogger(__name__)

ServerRequestHook = Callable[[Any, Mapping[str, Any]], None]
MessageHook = Callable[[Any, Mapping[str, Any], Mapping[str, Any]], None]


def excluded_urls_from_env(environ: Mapping[str, str] = os.environ) -> ExcludeList | None:
    """The FastAPI instrumentation's variable wins over the generic one, as in contrib."""
    value = environ.get("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", environ.get("OTEL_PYTHON_EXCLUDED_URLS", ""))
    return parse_excluded_urls(value) if value.strip() else None


def full_url(scope: Mapping[str, Any]) -> str:
    """``scheme://host/path`` as contrib builds it for exclusion matching (Host header, else server)."""
    host = ""
    for name, value in scope.get("headers") or ():
        if name == b"host":
            host = value.decode("latin-1")
            break
    if not host:
        server_host, port = scope.get("server") or ("0.0.0.0", 80)
        host = server_host if str(port) == "80" else f"{server_host}:{port}"
    return f"{scope.get('scheme', 'http')}://{host}{scope.get('path', '')}"


class HeaderCapture:
    """Configured header names → span attributes, for one direction (request or response)."""

    def __init__(self, patterns: list[str], sanitize: SanitizeValue, normalise: Callable[[str], str]) -> None:
        self._patterns = patterns
        self._sanitize = sanitize
        self._normalise = normalise

    def attributes(self, raw_headers: Iterable[tuple[bytes, bytes]] | None) -> dict[str, list[str]]:
        headers: dict[str, list[str]] = {}
        for name, value in raw_headers or ():
            headers.setdefault(name.decode("latin-1"), []).append(value.decode("latin-1"))
        return self._sanitize.sanitize_header_values(headers, self._patterns, self._normalise)


def _failsafe(hook: Callable[..., None] | None) -> Callable[..., None] | None:
    if hook is None:
        return None

    def guarded(*args: Any) -> None:
        try:
            hook(*args)
        except Exception:
            _log.exception("telemetry hook %r raised; ignored", getattr(hook, "__qualname__", hook))

    return guarded


@dataclass(frozen=True)
class ServerOptions:
    excluded_urls: ExcludeList | None = None
    request_headers: HeaderCapture | None = None
    response_headers: HeaderCapture | None = None
    server_request_hook: ServerRequestHook | None = None
    client_request_hook: MessageHook | None = None
    client_response_hook: MessageHook | None = None

    @property
    def wraps_send(self) -> bool:
        return self.response_headers is not None or self.client_response_hook is not None

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] = os.environ,
        *,
        server_request_hook: ServerRequestHook | None = None,
        client_request_hook: MessageHook | None = None,
        client_response_hook: MessageHook | None = None,
    ) -> ServerOptions:
        def patterns(variable: str) -> list[str]:
            return [part.strip() for part in environ.get(variable, "").split(",") if part.strip()]

        sanitize = SanitizeValue(patterns(OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS))
        request = patterns(OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST)
        response = patterns(OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE)
        return cls(
            excluded_urls=excluded_urls_from_env(environ),
            request_headers=HeaderCapture(request, sanitize, normalise_request_header_name)
            if request else None,
            response_headers=HeaderCapture(response, sanitize, normalise_response_header_name)
            if response else None,
            server_request_hook=_failsafe(server_request_hook),
            client_request_hook=_failsafe(client_request_hook),
            client_response_hook=_failsafe(client_response_hook),
        )
