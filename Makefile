# The two commands a user needs: `make run` and `make test`. Both set up from nothing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup run test test-sqlite test-postgres lint bench clean

setup:
	@PYTHON=$(PYTHON) bash scripts/setup.sh

run: setup
	$(BIN)/lockgate serve

# The whole suite against SQLite, then every test that touches the store again against PostgreSQL
# (127.0.0.1:5432; each test gets a database of its own: tests/conftest.py).
test: test-sqlite test-postgres

test-sqlite: setup
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-postgres: setup
	LOCKGATE_TEST_DATABASE=postgres $(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy src/lockgate/config src/lockgate/guards src/lockgate/evals src/lockgate/releases src/lockgate/retrieval \
		src/lockgate/gateway/resilience.py src/lockgate/gateway/circuit.py src/lockgate/gateway/ratelimit.py \
		src/lockgate/audit src/lockgate/privacy src/lockgate/observe/retention.py src/lockgate/control src/lockgate/rollout \
		src/lockgate/alerts src/lockgate/incidents src/lockgate/cluster src/lockgate/observe/windows.py \
		src/lockgate/store src/lockgate/settings.py

bench: setup
	$(BIN)/python bench/overhead.py

clean:
	rm -rf $(VENV) .lockgate
