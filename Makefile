# The two commands of README.md: `make run` and `make test`. Both set themselves up in .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: run test test-js bench lint setup clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/licensedesk serve --demo

# Two processes run the suite (most tests wait on servers, browsers and databases, not on the CPU); the
# tests marked `serial`, which assert a bound in time, run alone afterwards.
TEST_WORKERS ?= 2

test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) -m "not serial" $(PYTEST_ARGS)
	$(BIN)/python -m pytest -m serial $(PYTEST_ARGS)
	$(MAKE) test-js

# The JavaScript client (clients/js) with Node's own test runner; it has no dependencies to install.
# Without node it is skipped, unless LICENSEDESK_REQUIRE_ALL_BACKENDS=1, which makes that a failure.
test-js:
	@if command -v node >/dev/null 2>&1; then \
		cd clients/js && node --test test/; \
	elif [ "$$LICENSEDESK_REQUIRE_ALL_BACKENDS" = "1" ]; then \
		echo "test-js: node is not on PATH but LICENSEDESK_REQUIRE_ALL_BACKENDS=1" >&2; exit 1; \
	else \
		echo "test-js: skipped, node is not on PATH"; \
	fi

bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis
