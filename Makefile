# The two commands a user needs: `make run` and `make test`. Both set up from nothing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup run test test-sqlite test-postgres lint bench clean

setup:
	@PYTHON=$(PYTHON) bash scripts/setup.sh

run: setup
	$(BIN)/lockgate serve

# The whole suite against SQLite and, at the same time, every test that touches the store against
# PostgreSQL (127.0.0.1:5432; each test gets a database of its own: tests/conftest.py). The two passes
# share nothing (own temp folders, databases, Redis prefixes, ports) and mostly wait on processes they
# start, so running them side by side nearly halves the wall time; each pass's output is printed whole
# when it ends.
test: setup
	@$(MAKE) --no-print-directory -j2 --output-sync=target test-sqlite test-postgres

test-sqlite: setup
	$(BIN)/python -m pytest -q --basetemp="$$(mktemp -d /tmp/lockgate-test-sqlite.XXXXXX)" $(PYTEST_ARGS)

test-postgres: setup
	LOCKGATE_TEST_DATABASE=postgres $(BIN)/python -m pytest -q --basetemp="$$(mktemp -d /tmp/lockgate-test-postgres.XXXXXX)" $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy src/lockgate/config src/lockgate/guards src/lockgate/evals src/lockgate/releases src/lockgate/retrieval \
		src/lockgate/gateway/resilience.py src/lockgate/gateway/circuit.py src/lockgate/gateway/ratelimit.py \
		src/lockgate/gateway/chat.py src/lockgate/gateway/admission.py src/lockgate/gateway/streaming.py \
		src/lockgate/gateway/recording.py src/lockgate/gateway/request_state.py src/lockgate/gateway/feedback.py \
		src/lockgate/audit src/lockgate/privacy src/lockgate/observe/retention.py src/lockgate/control src/lockgate/rollout \
		src/lockgate/alerts src/lockgate/incidents src/lockgate/cluster src/lockgate/observe/windows.py src/lockgate/redteam \
		src/lockgate/store src/lockgate/settings.py

bench: setup
	$(BIN)/python bench/overhead.py

clean:
	rm -rf $(VENV) .lockgate
