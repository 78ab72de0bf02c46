"""Request models. Strict and bounded: a wrong type, an unknown field, a non-finite or absurd number
is a 422 with a message, never a coercion (34.0 for an integer is no coercion: JSON means 34) and
never a 500 further down. The JSON schema is published as /openapi.json and must match: what it
allows, the model accepts, and the reverse."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictStr, StringConstraints

from sample_service.domain import Channel, Country, Currency, Product
from sample_service.settings import Scenario

MAX_ATTRIBUTES = 32
BIGINT_MAX = 2**63 - 1  # users.id is a Postgres bigint; more would be a DataError at the driver

AttrKey = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]
AttrValue = (
    StrictBool
    | Annotated[int, Field(strict=True, ge=-(10**15), le=10**15)]
    | Annotated[float, Field(strict=True, ge=-1e15, le=1e15, allow_inf_nan=False)]
    | Annotated[StrictStr, StringConstraints(max_length=256)]
)


def _integral(value: object) -> object:
    # JSON has one number type: 34.0 is the integer 34, and JSON Schema's "integer" (what /openapi.json
    # publishes) says so. Strict mode still refuses 34.5, "34", true, and inf/NaN (not integral).
    if type(value) is float and value.is_integer():
        return int(value)
    return value


JsonInt = Annotated[int, BeforeValidator(_integral)]


def _keys_by_pattern(schema: dict[str, Any]) -> None:
    # pydantic documents a key pattern as patternProperties, which leaves every non-matching key
    # unconstrained (and its value too); the model refuses such keys, so the schema must say so.
    ((pattern, values),) = schema.pop("patternProperties").items()
    schema["propertyNames"]["pattern"] = pattern
    schema["additionalProperties"] = values


class Ingredients(BaseModel):
    """The applicant as the caller describes it; rules read these names directly."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)

    user_id: JsonInt = Field(ge=1, le=BIGINT_MAX)
    country: Country
    product: Product
    amount: float = Field(gt=0, le=10_000_000, description="in `currency`")
    currency: Currency
    channel: Channel
    age: JsonInt = Field(ge=18, le=130)
    attributes: dict[AttrKey, AttrValue] = Field(default_factory=dict, max_length=MAX_ATTRIBUTES,
                                                 json_schema_extra=_keys_by_pattern)


class ScenarioUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    active: list[Scenario] = Field(max_length=len(Scenario))
