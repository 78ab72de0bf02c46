"""The native stack's Prometheus refuses its admin and lifecycle APIs (docs/security.md).

The runner builds Prometheus' command line from compose.yaml, so this proves the compose flags too
(the compose e2e repeats it against the container). Loopback-only listening is
test_native_stack.py::test_listens_on_loopback_only.
"""

from __future__ import annotations

import pytest

from scripts.native.run import NativeStack
from tests.stack.backends import Backends
from tests.stack.security import prometheus_write_apis_refused

pytestmark = pytest.mark.stack


def test_prometheus_admin_and_lifecycle_apis_refused(native_stack: NativeStack, backends: Backends) -> None:
    argv = native_stack.specs["prometheus"].argv
    assert not any(a.startswith(("--web.enable-lifecycle", "--web.enable-admin-api")) for a in argv), argv
    seen = prometheus_write_apis_refused(backends.prometheus)
    print("\n" + "\n".join(f"  {k} -> {v}" for k, v in seen.items()))
