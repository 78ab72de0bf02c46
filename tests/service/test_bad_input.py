"""A sweep of malformed requests: each one a 413 or 422 (404 where the input is well-formed but names
nothing) with a JSON message — never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.service.support import RunningApp, make_settings, running_app
from tests.service.test_smoke import APPLICANT

LIMIT = 16 * 1024  # above the 5000-digit number below, so the parser (not the limit) meets it
JSON = {"content-type": "application/json"}


def _with(**patch: Any) -> dict[str, Any]:
    return {**APPLICANT, **patch}


def _without(field: str) -> dict[str, Any]:
    return {k: v for k, v in APPLICANT.items() if k != field}


def _raw(body: str | bytes) -> dict[str, Any]:
    return {"content": body if isinstance(body, bytes) else body.encode(), "headers": JSON}


async def _chunked(total: int) -> AsyncIterator[bytes]:
    # A generator body: httpx sends it without Content-Length (chunked), so only counting catches it.
    sent = 0
    while sent < total:
        yield b" " * 1024
        sent += 1024


EVALUATE_CASES: list[tuple[str, dict[str, Any], int]] = [
    ("amount as string", {"json": _with(amount="10")}, 422),
    ("user_id as string", {"json": _with(user_id="5")}, 422),
    ("age as float", {"json": _with(age=30.5)}, 422),
    ("user_id 2**63 as a float", _raw('{"user_id": 9.223372036854776e18, "country": "DE", "product": "card", '
                                      '"amount": 1, "currency": "EUR", "channel": "web", "age": 30}'), 422),
    ("age as bool", {"json": _with(age=True)}, 422),
    ("amount as bool", {"json": _with(amount=True)}, 422),
    ("attributes as list", {"json": _with(attributes=[1, 2])}, 422),
    ("nested attribute value", {"json": _with(attributes={"a": {"b": 1}})}, 422),
    ("missing user_id", {"json": _without("user_id")}, 422),
    ("missing amount", {"json": _without("amount")}, 422),
    ("empty object", {"json": {}}, 422),
    ("unknown field", {"json": _with(admin=True)}, 422),
    ("unknown country", {"json": _with(country="XX")}, 422),
    ("negative amount", {"json": _with(amount=-1)}, 422),
    ("zero amount", {"json": _with(amount=0)}, 422),
    ("huge amount", {"json": _with(amount=1e308)}, 422),
    ("amount overflowing to inf", _raw('{"user_id": 5, "country": "DE", "product": "card", "amount": 1e400, '
                                      '"currency": "EUR", "channel": "web", "age": 30}'), 422),
    ("NaN literal", _raw('{"user_id": 5, "country": "DE", "product": "card", "amount": NaN, '
                         '"currency": "EUR", "channel": "web", "age": 30}'), 422),
    ("Infinity literal", _raw('{"user_id": 5, "country": "DE", "product": "card", "amount": Infinity, '
                              '"currency": "EUR", "channel": "web", "age": 30}'), 422),
    ("user_id beyond bigint", {"json": _with(user_id=2**63)}, 422),
    ("user_id with 5000 digits", _raw('{"user_id": ' + "9" * 5000 + ', "country": "DE", "product": "card", '
                                      '"amount": 1, "currency": "EUR", "channel": "web", "age": 30}'), 422),
    ("negative user_id", {"json": _with(user_id=-5)}, 422),
    ("age 10**30", {"json": _with(age=10**30)}, 422),
    ("huge attribute number", {"json": _with(attributes={"n": 10**20})}, 422),
    ("too many attributes", {"json": _with(attributes={f"k{i}": i for i in range(33)})}, 422),
    ("attribute key too long", {"json": _with(attributes={"k" * 65: 1})}, 422),
    ("attribute key with spaces", {"json": _with(attributes={"a b": 1})}, 422),
    ("attribute value too long", {"json": _with(attributes={"k": "v" * 257})}, 422),
    ("invalid JSON", _raw('{"user_id": 5,'), 422),
    ("empty body", _raw(b""), 422),
    ("JSON array", _raw("[1, 2]"), 422),
    ("JSON string", _raw('"hello"'), 422),
    ("invalid UTF-8", _raw(b'{"user_id": "\xff\xfe"}'), 422),
    ("text/plain body", {"content": b'{"user_id": 5}', "headers": {"content-type": "text/plain"}}, 422),
    ("form body", {"data": {"user_id": "5"}}, 422),
    ("no content type", {"content": b"{}", "headers": {"content-type": ""}}, 422),
    ("oversized body (Content-Length)", _raw(b'{"pad": "' + b"x" * (LIMIT * 2) + b'"}'), 413),
    ("oversized chunked body", {"content": _chunked(LIMIT * 3), "headers": JSON}, 413),
    ("lying Content-Length", {"content": b"{}", "headers": {**JSON, "content-length": "nope"}}, 400),
]

RECORDS_CASES: list[tuple[str, str, int]] = [
    ("negative limit", "/v1/users/3/records?limit=-1", 422),
    ("zero limit", "/v1/users/3/records?limit=0", 422),
    ("limit above max", "/v1/users/3/records?limit=100000", 422),
    ("limit beyond int64", "/v1/users/3/records?limit=99999999999999999999999", 422),
    ("limit not a number", "/v1/users/3/records?limit=ten", 422),
    ("garbage cursor", "/v1/users/3/records?cursor=%%%%", 422),
    ("cursor of another kind", "/v1/users/3/records?cursor=eDox", 422),  # base64("x:1")
    ("cursor with negative value", "/v1/users/3/records?cursor=azotMQ", 422),  # base64("k:-1")
    ("cursor too long", "/v1/users/3/records?cursor=" + "a" * 500, 422),
    ("negative user id", "/v1/users/-3/records", 422),
    ("user id beyond bigint", f"/v1/users/{2**63}/records", 422),
    ("user id not a number", "/v1/users/abc/records", 422),
    ("unknown user", "/v1/users/999999/records", 404),
]


@pytest.fixture(scope="module")
async def running(database_url: str) -> AsyncIterator[RunningApp]:
    async with running_app(make_settings(database_url, max_body_bytes=LIMIT)) as app:
        yield app


def _assert_error(response: Any, expected: int, case: str) -> None:
    assert response.status_code == expected, (case, response.status_code, response.text[:300])
    body = response.json()
    assert isinstance(body["message"], str) and body["message"], (case, body)
    assert body["error"], (case, body)


@pytest.mark.parametrize(("case", "kwargs", "expected"), EVALUATE_CASES, ids=[c[0] for c in EVALUATE_CASES])
async def test_evaluate_rejects(
    running: RunningApp, case: str, kwargs: dict[str, Any], expected: int
) -> None:
    if "content" in kwargs and not isinstance(kwargs["content"], bytes):
        kwargs = {**kwargs, "content": _chunked(LIMIT * 3)}  # generators are single-use
    response = await running.client.post("/v1/evaluate", **kwargs)
    _assert_error(response, expected, case)


@pytest.mark.parametrize(("case", "url", "expected"), RECORDS_CASES, ids=[c[0] for c in RECORDS_CASES])
async def test_records_rejects(running: RunningApp, case: str, url: str, expected: int) -> None:
    _assert_error(await running.client.get(url), expected, case)


async def test_integral_numbers_are_integers(running: RunningApp) -> None:
    """JSON has one number type and /openapi.json says "integer": 34.0 is the integer 34. The fuzzer's
    {"age": 128.0, ...} was a 422; 34.5 still is (EVALUATE_CASES), and so are "34" and true."""
    raw = (b'{"user_id": 5.0, "country": "DE", "product": "card", "amount": 120, "currency": "EUR", '
           b'"channel": "web", "age": 34.0}')
    r = await running.client.post("/v1/evaluate", content=raw, headers=JSON)
    assert r.status_code == 200, r.text
    plain = await running.client.post("/v1/evaluate", json=_with(user_id=5, age=34))
    assert r.json()["segment"] == plain.json()["segment"] == "DE:card"


async def test_unknown_user_is_404_for_evaluate(running: RunningApp) -> None:
    _assert_error(await running.client.post("/v1/evaluate", json=_with(user_id=10**9)), 404, "unknown user")


async def test_admin_rejects_unknown_scenarios(running: RunningApp) -> None:
    r = await running.client.put("/admin/scenarios", json={"active": ["no_such_thing"]})
    _assert_error(r, 422, "unknown scenario")


async def test_no_request_in_the_sweep_produced_a_500(database_url: str) -> None:
    """The whole sweep again on a fresh registry, counted by the service's own RED histogram."""
    from sample_service.telemetry import catalog
    from sample_service.telemetry.catalog import L

    async with running_app(make_settings(database_url, max_body_bytes=LIMIT)) as running:
        for _, kwargs, _ in EVALUATE_CASES:
            if "content" in kwargs and not isinstance(kwargs["content"], bytes):
                kwargs = {**kwargs, "content": _chunked(LIMIT * 3)}
            await running.client.post("/v1/evaluate", **kwargs)
        for _, url, _ in RECORDS_CASES:
            await running.client.get(url)
        await _check_no_5xx(running, catalog, L)


async def _check_no_5xx(running: RunningApp, catalog: Any, L: Any) -> None:
    five_hundreds = [
        s for family in running.mem.registry.collect() if family.name == catalog.HTTP_SERVER_DURATION.prom
        for s in family.samples if s.name.endswith("_count") and s.labels[L.HTTP_STATUS].startswith("5")
    ]
    counted = sum(s.value for family in running.mem.registry.collect()
                  if family.name == catalog.HTTP_SERVER_DURATION.prom
                  for s in family.samples if s.name.endswith("_count"))
    assert counted >= len(EVALUATE_CASES) + len(RECORDS_CASES)
    assert not five_hundreds
