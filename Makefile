# The embedded local default: ZenML's SQLite store, local orchestrator and artifact
# store, all under .timewarp/ in this repository (git-ignored).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export ZENML_CONFIG_PATH ?= $(CURDIR)/.timewarp/zenml
export ZENML_ANALYTICS_OPT_IN ?= false
# DeepSpeed installs from source: build no ops at install time (they JIT-compile when used).
export DS_BUILD_OPS ?= 0
# Parallel test workers; CI machines have 2 cores.
PYTEST_ARGS ?=

.PHONY: setup stack demo variants test bench-prepare bench-dpo bench-effect mlflow-ui clean cluster-up cluster-down cluster-trigger

# One pip call installs everything (a second call can break zenml's pins); a changed
# pyproject.toml rebuilds the environment from scratch.
$(STAMP): pyproject.toml
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	# latex2sympy2 (an lmms-eval dependency) installs its own top-level `tests` package, which
	# would shadow this repository's tests/ in `from tests.<module> import ...`.
	rm -rf $(VENV)/lib/python*/site-packages/tests
	printf '\n# TimeWarp: use the repository'"'"'s embedded ZenML store\nexport ZENML_CONFIG_PATH="%s"\n' "$(ZENML_CONFIG_PATH)" >> $(BIN)/activate
	touch $(STAMP)

.zen/config.yaml: $(STAMP)
	$(BIN)/zenml init

setup: $(STAMP) .zen/config.yaml

# The local stack with MLflow (tracking store: SQLite under .timewarp/mlflow), registered
# if missing and made active; run every time (a few seconds), as another ZenML store used
# from this checkout (tests, benchmarks) may have changed the repository's active stack.
stack: setup
	$(BIN)/python -m infra.local_stack

demo: setup stack
	$(BIN)/zenml pipeline run timewarp_explicit

# The paper's five rows (SFT, Base-DPO, Combined, TimeWarp-Implicit, TimeWarp-Explicit).
variants: setup stack
	$(BIN)/zenml pipeline run timewarp_variants

# The browser tests (tests/test_browser_ui.py) drive Debian's chromium; installed once when
# missing (CI runs as root), otherwise a no-op.
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	@if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then \
		echo "error: $(CHROMIUM) is missing and cannot be installed here (needs apt-get as root);" \
			"install Debian's chromium package (sudo apt-get install -y chromium), then re-run" >&2; exit 1; fi
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

test: setup $(CHROMIUM)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench-prepare: setup
	$(BIN)/python benchmarks/bench_prepare.py

clean:
	rm -rf .timewarp .zen

bench-dpo: setup
	$(BIN)/python benchmarks/bench_dpo.py

bench-effect: setup
	$(BIN)/python benchmarks/bench_effect.py

# The MLflow UI over the local tracking store (http://127.0.0.1:5000).
mlflow-ui: setup
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/.timewarp/mlflow/mlflow.db

# The local cluster (infra/README.md): a Kubernetes API emulator with a pod runner, a ZenML
# server, an S3 server (moto) and an MLflow server on 127.0.0.1, state and logs under
# .timewarp/cluster. cluster-up registers and activates the stack timewarp-k8s-local and
# points this checkout's ZenML client (ZENML_CONFIG_PATH) at the cluster's server;
# cluster-down stops everything and points it back at the embedded store.
cluster-up: setup
	$(BIN)/python -m infra.cluster up

cluster-down:
	$(BIN)/python -m infra.cluster down

# One run now from a schedule's CronJob (the emulator has no CronJob controller, so a schedule
# never fires by itself): what `kubectl create job --from=cronjob/...` does, then it waits and
# ends like `zenml pipeline run` (infra/trigger.py; works on any Kubernetes stack).
# SCHEDULE=<name>: which schedule (default: the newest of timewarp_explicit); TIMEOUT=<seconds>.
cluster-trigger: setup
	$(BIN)/python -m infra.trigger $(if $(SCHEDULE),--schedule '$(SCHEDULE)') $(if $(TIMEOUT),--timeout $(TIMEOUT))
