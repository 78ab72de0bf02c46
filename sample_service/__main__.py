"""``python -m sample_service`` (and ``make run``): the service under uvicorn on settings host/port."""

from __future__ import annotations

import sys

from sample_service.app import create_app
from sample_service.server import serve
from sample_service.settings import Settings


def main() -> int:
    settings = Settings()
    serve(create_app(settings), host=settings.host, port=settings.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
