# `make test` installs what the tests need (tools/install-test-deps) and runs
# the linters and the whole suite; CI runs exactly this (.ci/run).
PY := .venv/bin/python

.PHONY: test deps lint pytest bench clean

test: deps lint pytest

deps:
	tools/install-test-deps

lint:
	$(PY) -m ruff check warpd tests bench tools
	$(PY) -m mypy warpd

pytest:
	$(PY) -m pytest

bench:
	$(PY) -m bench

clean:
	rm -rf .venv build *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
