# `make test` installs what the tests need (tools/install-test-deps, pinned by
# tools/constraints.txt) and runs the linters and the whole suite; CI runs
# exactly this (.ci/run). `make test-latest` does the same with the newest
# release of every dependency, in .venv-latest, so drift is seen on purpose.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: test test-latest deps lint pytest bench lock clean

test: deps lint pytest

test-latest:
	VENV=.venv-latest DEPS=latest tools/install-test-deps
	$(MAKE) VENV=.venv-latest lint pytest

deps:
	VENV=$(VENV) tools/install-test-deps

lint:
	$(PY) -m ruff check warpd tests bench tools
	$(PY) -m mypy warpd

pytest:
	$(PY) -m pytest

bench:
	$(PY) -m bench

lock:
	tools/lock

clean:
	rm -rf .venv .venv-latest build *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
