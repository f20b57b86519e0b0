# Everything a fresh machine needs: `make demo` and `make test` create .venv and install themselves.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PROTO := protos/graceful_grpc/testing/v1/echo.proto
SRC := graceful_grpc tests benchmarks

.PHONY: install demo test lint typecheck protos check-protos check-extension pytest bench clean

# The bench extra (uvloop, matplotlib) too: the suite's benchmark smoke test runs every mode and
# draws the plot, and mypy checks those code paths.
$(STAMP): pyproject.toml setup.py graceful_grpc/_counter.c Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,temporal,dev,bench]'
	touch $@

install: $(STAMP)

# `make demo DEMO_ARGS=--metrics` also shows the graceful run's OpenTelemetry metrics.
demo: $(STAMP)
	$(PY) -m graceful_grpc demo $(DEMO_ARGS)

# grpcio-tools and mypy-protobuf are pinned in pyproject.toml so the output is reproducible.
PROTOC = $(PY) -m grpc_tools.protoc -Iprotos --plugin=protoc-gen-mypy_grpc=$(VENV)/bin/protoc-gen-mypy_grpc
protoc_out = --python_out=$(1) --pyi_out=$(1) --grpc_python_out=$(1) --mypy_grpc_out=quiet:$(1)

protos: $(STAMP)
	$(PROTOC) $(call protoc_out,.) $(PROTO)

# Regenerates the stubs into a scratch folder and fails if the committed ones differ.
check-protos: $(STAMP)
	@tmp=$$(mktemp -d) && \
	$(PROTOC) $(call protoc_out,$$tmp) $(PROTO) && \
	diff -r $$tmp/graceful_grpc/testing/v1 graceful_grpc/testing/v1 -x '__init__.py' -x '__pycache__' -x '*.so' \
		>/dev/null || { echo "protos: generated stubs are stale; run 'make protos'"; rm -rf $$tmp; exit 1; }; \
	rm -rf $$tmp; echo "protos: stubs up to date"

check-extension: $(STAMP)
	$(PY) -c "import graceful_grpc as g, sys; print('counter:', g.COUNTER_IMPLEMENTATION); sys.exit(g.COUNTER_IMPLEMENTATION != 'c')"
	GRACEFUL_GRPC_NO_EXTENSIONS=1 $(PY) -c "import graceful_grpc as g, sys; print('counter (NO_EXTENSIONS):', g.COUNTER_IMPLEMENTATION); sys.exit(g.COUNTER_IMPLEMENTATION != 'python')"

lint: $(STAMP)
	$(PY) -m ruff check $(SRC)
	$(PY) -m ruff format --check $(SRC)

typecheck: $(STAMP)
	$(PY) -m mypy graceful_grpc tests benchmarks

pytest: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider
	GRACEFUL_GRPC_NO_EXTENSIONS=1 $(PY) -m pytest -q -p no:cacheprovider

test: check-protos check-extension lint typecheck pytest

# The full run (about 4 minutes on 2 cores); `python -m benchmarks --quick` is under two.
bench: $(STAMP)
	$(PY) -m benchmarks --json bench-results/full.json --plot bench-results/ratios.png

clean:
	rm -rf $(VENV) build *.egg-info graceful_grpc/*.so
