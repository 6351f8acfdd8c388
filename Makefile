# vkpy: `make demo` shows it, `make test` proves it.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The Go toolchain builds the Kubernetes test binaries; it lives here on these machines.
export PATH := $(CURDIR)/$(BIN):$(PATH):/usr/local/go/bin

.PHONY: install system-deps lint unit integration test kube-binaries testbed-up testbed-down clean bench chaos demo image in-cluster-demo fidelity

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python >= 3.11 is needed (found $$($(PYTHON) --version))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

# Debian packages from scripts/system-packages.txt: a no-op when all are present.
system-deps:
	bash scripts/install-system-deps.sh

lint: install
	$(BIN)/ruff check vkpy tests benchmarks
	$(BIN)/ruff format --check vkpy tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: install
	$(BIN)/pytest tests/unit

kube-binaries: install
	$(BIN)/python -m vkpy.testing binaries

integration: system-deps install kube-binaries
	$(BIN)/pytest tests/integration

# One pytest run for unit and integration tests, so its closing line counts them all.
test: system-deps lint kube-binaries
	$(BIN)/pytest tests --durations=15

testbed-up: system-deps install kube-binaries
	$(BIN)/python -m vkpy.testing up

testbed-down: install
	$(BIN)/python -m vkpy.testing down

# Also what the testbed keeps outside the clone (see the README); not the binaries' cache.
clean: install
	$(BIN)/python -m vkpy.testing purge
	rm -rf .testbed $(VENV) .mypy_cache .pytest_cache .ruff_cache

# The first thing to try: a Podman-backed node runs an example pod; logs via kubectl.
demo: system-deps install kube-binaries
	$(BIN)/python -m vkpy.testing up
	bash scripts/demo.sh

# The agent image without a registry: Debian's archive, vkpy's wheel (vkpy/testing/agentimage.py).
image: system-deps install
	$(BIN)/python -m vkpy.testing image

# The agent as a Deployment on the testbed's worker node (a real kubelet), running
# examples/pod.yaml through its virtual node.
in-cluster-demo: system-deps install kube-binaries
	bash scripts/in-cluster-demo.sh

# The fidelity corpus on the real kubelet and on vkpy's Slurm node (the Podman node's
# comparison runs in `make test`); the table goes to .testbed/fidelity-slurm.md.
fidelity: system-deps install kube-binaries
	$(BIN)/python benchmarks/fidelity.py

# Speed and scale of the agent with an instant backend on the real control plane, then
# with the Podman, Slurm and HTCondor (stand-in) backends on the testbed, then kubectl exec
# and port-forward, then 100 VirtualNodes in one operator (figures also in .testbed/bench-*.json).
bench: system-deps install kube-binaries
	$(BIN)/python benchmarks/pods.py
	$(BIN)/python benchmarks/podman_pods.py
	$(BIN)/python benchmarks/podman_streams.py
	$(BIN)/python benchmarks/slurm_pods.py
	$(BIN)/python benchmarks/htcondor_pods.py
	$(BIN)/python benchmarks/streams.py
	$(BIN)/python benchmarks/operator_nodes.py

# A soak on the testbed: pods keep arriving on a Podman, a Slurm and an HTCondor node
# while faults keep coming; invariants checked at the end (CHAOS_MINUTES, CHAOS_SEED).
chaos: system-deps install kube-binaries
	$(BIN)/python benchmarks/chaos.py
