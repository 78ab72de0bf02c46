"""Property-based fuzzing of the service's own OpenAPI document (issue 10, "bad input").

schemathesis reads ``/openapi.json`` from the real app under a real uvicorn on loopback (the harness's
Postgres, the real partner process) and runs its examples, coverage and fuzzing phases against every
operation in it, with every check it has: no 5xx, only documented status codes, content types and
bodies as documented, schema-invalid input rejected, schema-valid input accepted (except where the
schema cannot say what is valid, see CONFIG). Deterministic (derandomized, fixed seed, no example
database or cache) and bounded (MAX_EXAMPLES per operation; ~10 s here).

Why schemathesis' engine (what ``st run`` drives) and not ``@schema.parametrize``: the schema exists
only once a fixture has started the app, and the fixture-based pytest loader (``from_fixture``) sets
``Function._nodeid``, which pytest 9.2 no longer has. The engine needs no pytest integration at all.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events, from_schema

from sample_service.app import create_app
from sample_service.schemas import BIGINT_MAX
from sample_service.settings import Settings
from sample_service.telemetry import catalog
from sample_service.telemetry.catalog import L
from tests.service.support import (
    InMemoryTelemetry,
    PartnerProcess,
    in_memory_telemetry,
    make_settings,
    serve_in_thread,
)
from tests.service.test_smoke import APPLICANT

MAX_EXAMPLES = 100  # per operation, fuzzing phase; the coverage phase adds its boundary cases
SEED = 20_101  # fixed; with "deterministic" the generation does not depend on it or on earlier runs

CONFIG: dict[str, Any] = {
    "seed": SEED,
    "workers": 1,
    "continue-on-failure": True,  # every failing case, not only the first per operation
    "request-timeout": 5,  # a hang is a failure, not a stuck suite
    "cache": {"enabled": False},  # a run must not depend on the one before
    "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
    "phases": {"stateful": {"enabled": False}},  # the schema has no links between operations
    "checks": {"enabled": True},
    "operations": [{
        # The cursor is opaque (any string up to 64 characters fits its schema; only cursors the service
        # issued decode) and the limit's maximum is a setting: a schema-valid request can be a 422 here.
        "include-path": "/v1/users/{user_id}/records",
        "checks": {"positive_data_acceptance": {"enabled": False}},
    }],
}


@dataclass
class FuzzRun:
    requests: Counter[str] = field(default_factory=Counter)  # per operation label
    failures: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stop_reason: str = ""
    seconds: float = math.nan

    def report(self) -> str:
        return "\n\n".join(self.failures + self.errors)


def fuzz(base_url: str) -> FuzzRun:
    config = SchemathesisConfig.from_dict(CONFIG)
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", config=config)
    schema.config.update(base_url=base_url)
    run = FuzzRun()
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            recorder = event.recorder
            run.requests[recorder.label] += len(recorder.interactions)
            for case_id, checks in recorder.checks.items():
                for check in checks:
                    if check.status == Status.FAILURE and check.failure_info is not None:
                        interaction = recorder.interactions.get(case_id)
                        run.failures.append(_describe(f"{check.name} on {recorder.label} ({event.phase})",
                                                      check.failure_info, interaction))
        elif isinstance(event, events.NonFatalError | events.FatalError):
            run.errors.append(f"{type(event).__name__}: {getattr(event, 'value', None) or event}")
        elif isinstance(event, events.EngineFinished):
            run.stop_reason, run.seconds = str(event.stop_reason), event.running_time
    return run


def _describe(what: str, info: Any, interaction: Any) -> str:
    """The failing check, the request as a curl command, and what the service answered."""
    response = interaction.response if interaction is not None else None
    answer = "no response" if response is None else f"{response.status_code} {response.content[:300]!r}"
    return f"{what}: {info.failure.title}\n  {info.code_sample}\n  -> {answer}"


@dataclass
class Served:
    url: str
    settings: Settings
    mem: InMemoryTelemetry


@pytest.fixture(scope="module")
def served(database_url: str, partner: PartnerProcess) -> Iterator[Served]:
    """The service under uvicorn on 127.0.0.1, with the default body limit and in-memory telemetry."""
    settings = make_settings(database_url, partner.url)
    mem = in_memory_telemetry(settings)
    try:
        with serve_in_thread(create_app(settings, telemetry=mem.telemetry)) as url:
            yield Served(url, settings, mem)
    finally:
        mem.telemetry.shutdown()


@pytest.fixture(scope="module")
def fuzz_run(served: Served) -> FuzzRun:
    return fuzz(served.url)


@pytest.fixture(scope="module")
async def client(served: Served) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=served.url, timeout=10) as c:
        yield c


# --- the fuzzing ---------------------------------------------------------------------------------

def test_every_operation_of_the_schema_was_fuzzed(served: Served, fuzz_run: FuzzRun) -> None:
    spec = httpx.get(f"{served.url}/openapi.json", timeout=5).json()
    operations = {f"{method.upper()} {path}" for path, ops in spec["paths"].items() for method in ops}
    assert operations == {
        "POST /v1/evaluate", "GET /v1/users/{user_id}/records", "GET /healthz", "GET /readyz"}
    assert set(fuzz_run.requests) == operations, fuzz_run.requests
    # Operations with inputs get the full budget; the parameterless probes only their few coverage cases.
    assert fuzz_run.requests["POST /v1/evaluate"] >= MAX_EXAMPLES, fuzz_run.requests
    assert fuzz_run.requests["GET /v1/users/{user_id}/records"] >= MAX_EXAMPLES, fuzz_run.requests
    assert fuzz_run.stop_reason == "completed", fuzz_run.stop_reason


def test_no_generated_input_fails_a_check(fuzz_run: FuzzRun) -> None:
    print(f"schemathesis sent {fuzz_run.requests.total()} requests in {fuzz_run.seconds:.1f} s: "
          f"{dict(fuzz_run.requests)}")
    assert not fuzz_run.failures and not fuzz_run.errors, fuzz_run.report()


def test_the_service_counted_no_5xx_during_the_fuzzing(served: Served, fuzz_run: FuzzRun) -> None:
    """The same claim from the other side: the service's own RED histogram, not the fuzzer's view.
    (/healthz and /readyz are not in it by design, telemetry/asgi.py; the two API routes are, with the
    fuzzer's unsupported-method probes under the route's path and their own method.)"""
    by_route: Counter[str] = Counter()
    five_hundreds: Counter[str] = Counter()
    for family in served.mem.registry.collect():
        if family.name == catalog.HTTP_SERVER_DURATION.prom:
            for s in family.samples:
                if s.name.endswith("_count"):
                    by_route[s.labels[L.HTTP_ROUTE]] += int(s.value)
                    if s.labels[L.HTTP_STATUS].startswith("5"):
                        five_hundreds[s.labels[L.HTTP_STATUS]] += int(s.value)
    for operation in ("POST /v1/evaluate", "GET /v1/users/{user_id}/records"):
        route = operation.split(" ", 1)[1]
        assert by_route[route] >= fuzz_run.requests[operation], (operation, by_route, fuzz_run.requests)
    assert not five_hundreds, five_hundreds


def test_the_fuzzer_reports_a_server_error_it_provokes() -> None:
    """The harness itself can fail: a route that answers 500 on some inputs is caught, with the input."""
    app = FastAPI()

    @app.get("/boom/{n}")
    async def boom(n: int) -> dict[str, int]:
        if n % 7 == 3:
            raise RuntimeError("deliberate")
        return {"n": n}

    with serve_in_thread(app) as url:
        run = fuzz(url)
    assert any(f.startswith("not_a_server_error on GET /boom/{n}") for f in run.failures), run.report()


# --- the contract the fuzzer found wanting (regression tests for what it reported) -------------

def test_schema_publishes_integer_bounds_exactly(served: Served) -> None:
    """FastAPI's OpenAPI model turned ``user_id <= 2**63 - 1`` into the float 9.223372036854776e18
    (= 2**63): the fuzzer sent user_id 9223372036854775999, schema-valid, and got a 422."""
    spec = httpx.get(f"{served.url}/openapi.json", timeout=5).json()
    body = spec["paths"]["/v1/evaluate"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    user_id = body["properties"]["user_id"]
    assert user_id["maximum"] == BIGINT_MAX and isinstance(user_id["maximum"], int), user_id
    assert isinstance(body["properties"]["age"]["minimum"], int)


def test_schema_constrains_every_attribute_key(served: Served) -> None:
    """pydantic published the key pattern as patternProperties, so keys like ")" were schema-valid
    (any value) and got a 422: the pattern must constrain every key, the value schema every value."""
    spec = httpx.get(f"{served.url}/openapi.json", timeout=5).json()
    body = spec["paths"]["/v1/evaluate"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    attributes = body["properties"]["attributes"]
    assert "patternProperties" not in attributes, attributes
    assert attributes["propertyNames"] == {"minLength": 1, "maxLength": 64, "pattern": r"^[A-Za-z0-9_.\-]+$"}
    assert {branch["type"] for branch in attributes["additionalProperties"]["anyOf"]} == {
        "boolean", "integer", "number", "string"}


def test_schema_documents_every_error_status_with_the_error_body(served: Served) -> None:
    """The fuzzer got 404 (unknown user) and 422 (bad body) from /v1/evaluate, documented as 200 only,
    and the records' 422 was documented in FastAPI's ``{"detail": ...}`` shape, not ours."""
    spec = httpx.get(f"{served.url}/openapi.json", timeout=5).json()
    expected = {
        ("post", "/v1/evaluate"): {"200", "400", "404", "413", "422", "503"},
        ("get", "/v1/users/{user_id}/records"): {"200", "404", "422", "503"},
        ("get", "/readyz"): {"200", "503"},
        ("get", "/healthz"): {"200"},
    }
    for (method, path), statuses in expected.items():
        responses = spec["paths"][path][method]["responses"]
        assert set(responses) == statuses, (method, path, sorted(responses))
        for status in statuses - {"200"}:
            ref = responses[status]["content"]["application/json"]["schema"]["$ref"]
            assert ref == "#/components/schemas/ErrorBody", (method, path, status, ref)
    assert spec["components"]["schemas"]["ErrorBody"]["required"] == ["error", "message"]
    assert "HTTPValidationError" not in spec["components"]["schemas"]


def test_admin_and_metrics_stay_out_of_the_schema(served: Served) -> None:
    spec = httpx.get(f"{served.url}/openapi.json", timeout=5).json()
    assert not [p for p in spec["paths"] if p.startswith("/admin") or p == "/metrics"]
    # ...while they do exist: their absence from the fuzz is the schema's choice, not a missing route.
    assert httpx.get(f"{served.url}/admin/scenarios", timeout=5).status_code == 200


# --- bodies the schema cannot express, over real HTTP (uvicorn, h11) ---------------------------

def _assert_error(response: httpx.Response, statuses: set[int]) -> dict[str, Any]:
    assert response.status_code in statuses, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body["message"], str) and body["message"], body
    assert isinstance(body["error"], str) and body["error"], body
    return body  # type: ignore[no-any-return]


@pytest.mark.parametrize("excess", [1, 512 * 1024], ids=["just over", "512 KiB over"])
async def test_body_over_the_limit_is_413_with_a_message(
    served: Served, client: httpx.AsyncClient, excess: int
) -> None:
    """With Content-Length: refused on the declared length. 512 KiB over is more than loopback's socket
    buffers hold: answered before the client finished writing, the connection was reset now and then
    and the 413 lost (httpx.ReadError); limits.py drains first."""
    limit = served.settings.max_body_bytes
    padded = {**APPLICANT, "attributes": {"pad": "x" * (limit + excess)}}
    body = _assert_error(await client.post("/v1/evaluate", json=padded), {413})
    assert body["error"] == "body_too_large" and str(limit) in body["message"]


async def test_chunked_body_over_the_limit_is_413_with_a_message(
    served: Served, client: httpx.AsyncClient
) -> None:
    """Without Content-Length only counting catches it; before limits.py drained, most runs got
    httpx.ReadError (the connection reset) instead of the 413."""
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(served.settings.max_body_bytes // 4096 + 2):
            yield b" " * 4096

    r = await client.post("/v1/evaluate", content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in r.request.headers
    assert _assert_error(r, {413})["error"] == "body_too_large"


@pytest.mark.parametrize("raw", [b'{"user_id": 5,', b"", b"\xff\xfe{}", b"[1, 2]", b'{"user_id": NaN}'],
                         ids=["truncated", "empty", "not UTF-8", "array", "NaN"])
async def test_malformed_json_is_422_with_a_message(client: httpx.AsyncClient, raw: bytes) -> None:
    r = await client.post("/v1/evaluate", content=raw, headers={"content-type": "application/json"})
    assert _assert_error(r, {422})["error"] == "validation_error"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
async def test_wrong_content_type_is_4xx_with_a_message(client: httpx.AsyncClient, content_type: str) -> None:
    r = await client.post("/v1/evaluate", json=APPLICANT, headers={"content-type": content_type})
    assert "content-type" in _assert_error(r, set(range(400, 500)))["message"].lower()
