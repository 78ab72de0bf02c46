"""orjson responses (FastAPI's own ORJSONResponse is deprecated in favour of response models, which
validate the output again; our handlers build plain dicts on the hot path and serialise them once)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse


class ORJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)
