# nlpmodel-operator — developer entry points. `make test` and `make demo` work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.deps-stamp
# The cached runtime venv (torch CPU, transformers, vLLM's parser): built by harness/src/nlpmodel_harness/runtime_venv.py.
RUNTIME_PY := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/nlpmodel-operator/runtime-venv/bin/python
RUNTIME_PATH := runtimes/transformers/src:runtimes/metrics/src

.PHONY: all deps lint typecheck unit schema integration test demo crds vllm-table clean bench-judge bench-eval bench-rollback \
	chart-sync manifests-base \
	runtime-venv runtime-test runtime-typecheck docs e2e e2e-node bench-scale

all: test

# Virtualenv with the package (editable) and the dev tools; rebuilt when pyproject.toml changes.
$(STAMP): pyproject.toml runtimes/metrics/pyproject.toml harness/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -e runtimes/metrics -e '.[dev]' -e harness
	touch $(STAMP)

deps: $(STAMP)

lint: deps
	$(BIN)/ruff check operator harness hack tests runtimes bench
	$(BIN)/ruff format --check operator harness hack tests runtimes bench
	PYTHONPATH=. $(BIN)/lint-imports --no-cache  # the layering contracts in .importlinter

typecheck: deps runtime-typecheck
	$(BIN)/mypy

# Build (first time: ~5 min) or reuse the cached runtime venv.
runtime-venv: deps
	$(BIN)/python -m nlpmodel_harness.runtime_venv

# The transformers runtime and the metrics contract, type-checked where torch and transformers are.
runtime-typecheck: runtime-venv
	cd runtimes/transformers && $(RUNTIME_PY) -m mypy

# The transformers runtime's own tests (tiny CPU models built from configs; nothing downloaded).
runtime-test: runtime-venv
	PYTHONPATH=$(RUNTIME_PATH) $(RUNTIME_PY) -m pytest -p no:cacheprovider runtimes/transformers/tests

unit: deps
	$(BIN)/pytest tests/unit

schema: deps
	$(BIN)/pytest tests/schema

integration: deps
	$(BIN)/pytest tests/integration

# The whole suite, as CI runs it (.ci/run calls exactly this).
test: deps lint typecheck runtime-test
	$(BIN)/pytest tests

# Regenerate the CRD from the Python API models (the one source of truth).
crds: deps
	$(BIN)/python -m nlpmodel_operator.api.crd > crds/nlpmodels.serving.nlpmodel.dev.yaml

# The chart's copies (files/crds from crds/, files/runtimes from runtimes/, the Grafana dashboard) and the
# kustomize base (the chart rendered with its defaults); tests fail while they are stale.
chart-sync: deps
	$(BIN)/python -m hack.chartsync chart

manifests-base: chart-sync
	$(BIN)/python -m hack.chartsync base

# Refresh the packaged vLLM flag tables from the facts extracted from each vLLM wheel (../shared/vllm).
vllm-table:
	cp ../shared/vllm/vllm-*-cli.json operator/nlpmodel_operator/data/
	cp ../shared/vllm/vllm-0.33.0-cli.json runtimes/metrics/src/nlpmodel_vllm_metrics/data/

# A slow canary rolled back, a healthy one promoted, one that answers worse stopped by its evaluation, live
# (docs/demo.md); DEMO_ARGS=--plain, --fast, --node, --cluster.
demo: deps
	$(BIN)/nlpctl demo $(DEMO_ARGS)

# The API reference (docs/api-reference.md), generated from the CRD in crds/; a test fails while it is stale.
docs: deps
	$(BIN)/python -m hack.apidocs --write

# Real pods on a kubelet node beside the local control plane: our images, chart and runtime (root, Linux;
# ~12 min the first time on a machine, then cached; e2e/README.md). Part of `make test` too.
e2e-node: deps runtime-venv
	$(BIN)/pytest tests/e2e_node

# End to end on a kind cluster with real pods (needs Docker and kind; e2e/kind/README.md). Not in `make test`.
e2e: deps
	bash e2e/kind/run.sh $(E2E_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Seeded simulation of canary rollouts: the SLO judge vs a naive p95 judge (table on stdout + JSON).
bench-judge: deps
	$(BIN)/python -m bench.judge.run --out bench/results/judge.json

# Seeded simulation of the evaluation gate: false fails (A/A) and power against a naive "canary < stable" rule.
bench-eval: deps
	$(BIN)/python -m bench.evaluation.run --out bench/results/evaluation.json

# Regression → 0 % canary weight on the local control plane with a real Prometheus (a few minutes).
bench-rollback: deps
	$(BIN)/python -m bench.rollback.run --out bench/results/rollback.json

# 100 and 1,000 models at once: time to all Ready, operator RSS, API requests per model, cost at rest.
bench-scale: deps
	$(BIN)/python -m bench.scale.run --out bench/results/scale.json
