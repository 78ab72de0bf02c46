# o11y-box developer entry points. `make test` needs nothing but this machine's toolchains:
# it creates the venv, installs Python deps, obtains the native stack components (cached under
# $(O11Y_CACHE)) and runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export O11Y_CACHE ?= $(HOME)/.cache/o11y-box
export OTEL_SEMCONV_STABILITY_OPT_IN ?= http
PYTEST_ARGS ?=

.PHONY: help venv lock system-deps native-deps test test-unit test-service test-stack run partner \
        stack-native dashboards dashboards-check dashboards-push doctor bench bench-quick faults capacity capacity-quick percentiles \
        percentiles-quick lint clean

help:
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

# Every package the venv gets is pinned with its hashes: the build tools (pip, setuptools) in
# requirements/build.lock, the rest in requirements/dev.lock (runtime + tools + bench + dev). The project
# goes in on top without dependencies and without build isolation, so nothing unlocked slips in.
$(VENV)/.installed: pyproject.toml requirements/build.lock requirements/dev.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes -r requirements/build.lock
	$(PY) -m pip install -q --require-hashes -r requirements/dev.lock
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

venv: $(VENV)/.installed ## create the virtualenv from requirements/dev.lock

# The locks are resolved for the Python both the host and the service image run (3.11, Linux) by a
# pinned uv, installed into the cache so it never enters a lock itself.
UV_VERSION := 0.13.9
UV := $(O11Y_CACHE)/uv-$(UV_VERSION)/bin/uv
UV_COMPILE_FLAGS := --generate-hashes --python-version 3.11 --python-platform linux --no-header \
	--annotation-style line --quiet
UV_COMPILE := $(UV) pip compile pyproject.toml $(UV_COMPILE_FLAGS)
# What vouches for a new lock: the lean telemetry paths must still equal the SDK's output (DEVELOPERS.md).
LOCK_GATE_TESTS ?= tests/unit/test_telemetry_otlp_wire.py tests/unit/test_telemetry_lean_trace.py \
	tests/unit/test_telemetry_fastpaths.py tests/unit/test_telemetry_compat.py tests/static/test_dependencies.py

$(UV):
	$(PYTHON) -m venv $(O11Y_CACHE)/uv-$(UV_VERSION)
	$(O11Y_CACHE)/uv-$(UV_VERSION)/bin/pip install -q uv==$(UV_VERSION)

lock: $(UV) ## re-lock requirements/*.lock after a pyproject edit (bump: LOCK_ARGS=--upgrade), then gate it
	$(UV) pip compile requirements/build.in $(UV_COMPILE_FLAGS) -o requirements/build.lock
	$(UV_COMPILE) $(LOCK_ARGS) -o requirements/runtime.lock
	$(UV_COMPILE) $(LOCK_ARGS) --extra tools --extra bench --extra dev -o requirements/dev.lock
	$(MAKE) venv
	$(PY) -m pytest $(LOCK_GATE_TESTS)

system-deps: ## Debian packages the tests need (Postgres server, wrk)
	@bash scripts/system_deps.sh

native-deps: venv ## build/fetch the native stack components into $(O11Y_CACHE)
	$(PY) -m scripts.native.obtain all

test: venv system-deps native-deps ## install everything and run the whole suite
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: venv ## fast tests only (no servers)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-service: venv system-deps ## service tests against a harness-started real Postgres
	$(PY) -m pytest tests/service $(PYTEST_ARGS)

test-stack: venv system-deps native-deps ## native stack e2e
	$(PY) -m pytest tests/stack tests/static $(PYTEST_ARGS)

run: venv ## run the sample service locally (needs Postgres at O11Y_DATABASE_URL)
	$(PY) -m sample_service

partner: venv ## run the partner API locally
	$(PY) -m sample_service.partner

stack-native: venv system-deps native-deps ## the whole stack without Docker, same configs as compose
	$(PY) -m scripts.native.run up

dashboards: venv ## regenerate dashboards/json/*.json
	$(PY) -m dashboards.build

dashboards-check: venv ## fail when committed dashboard JSON differs from the generator
	$(PY) -m dashboards.build --check

dashboards-push: venv ## push dashboards to a Grafana: GRAFANA_URL, GRAFANA_TOKEN
	$(PY) -m scripts.push_dashboards

doctor: venv ## prove every dashboard panel returns data against live backends
	$(PY) -m scripts.dashboard_doctor

bench: venv system-deps ## interleaved A/B overhead benchmark (see docs/performance.md)
	$(PY) -m benchmarks.run

bench-quick: venv system-deps ## the benchmark harness in its quick mode
	$(PY) -m benchmarks.run --quick

faults: venv system-deps native-deps ## fault tests at full length: 120 s outages under load (make test runs 20 s)
	FAULT_OUTAGE_S=120 $(PY) -m pytest tests/stack/test_zz_faults.py -p no:cacheprovider --timeout 1200

capacity: venv system-deps native-deps ## pipeline capacity: spans/s and log records/s held with 0 drops
	$(PY) -m benchmarks.pipeline_capacity

capacity-quick: venv system-deps native-deps ## the same, 2 rates x 8 s per signal
	$(PY) -m benchmarks.pipeline_capacity --quick

percentiles: venv system-deps native-deps ## percentile accuracy of every latency panel vs exact, before/after HEAD
	$(PY) -m benchmarks.percentile_accuracy --before-ref HEAD

percentiles-quick: venv system-deps native-deps ## the same, quick mode
	$(PY) -m benchmarks.percentile_accuracy --quick

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy sample_service dashboards scripts

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
