# `make test` installs what the tests need (tools/install-test-deps, pinned by
# tools/constraints.txt) and runs the linters and the whole suite; CI runs
# exactly this (.ci/run). `make test-latest` does the same with the newest
# release of every dependency, in .venv-latest, so drift is seen on purpose;
# `make test-oldest` installs the runtime dependencies at their declared lower
# bounds (tools/constraints-oldest.txt), in .venv-oldest, so the bounds are true.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: test test-latest test-oldest deps lint pytest bench lock clean

test: deps lint pytest

test-latest:
	VENV=.venv-latest DEPS=latest tools/install-test-deps
	$(MAKE) VENV=.venv-latest lint pytest

# No lint there: ruff does not look at installed packages, and mypy checks
# against the pinned releases' annotations (older ones are looser: redis < 8
# types a command's result as "awaitable or not"), which says nothing about
# whether the code runs on them; the suite does.
test-oldest:
	VENV=.venv-oldest DEPS=oldest tools/install-test-deps
	$(MAKE) VENV=.venv-oldest pytest

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
	rm -rf .venv .venv-latest .venv-oldest build *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
