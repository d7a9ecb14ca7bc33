# streamlabel — run `make help` for the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
DATA ?= data
STAMP := $(VENV)/.installed
KUBECTL := .tools/bin/kubectl
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export RAY_USAGE_STATS_ENABLED := 0
# a local Ray stays single-node on 127.0.0.1 (see streamlabel.runtime.ray_env.init_ray)
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER := 0
# mkdocs 1.x plugins print a multi-screen banner about a future mkdocs 2 otherwise
export NO_MKDOCS_2_WARNING := 1
export DISABLE_MKDOCS_2_WARNING := true

.DEFAULT_GOAL := help
.PHONY: help browser install demo test test-unit test-integration lint typecheck docs k8s-validate chaos bench-stackoverflow bench-kafka bench-snips bench-hwu64 bench-openset ui-assets clean

help: ## Show this help
	@grep -E '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-20s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch first: the CPU wheel on disk; otherwise a dependency pulls a multi-GB CUDA build.
	$(PIP) install --quiet torch==2.13.0
	# the full set: the worker stack (model, FAISS, Ray, embedded broker) and the dev tools;
	# a bare `pip install streamlabel` is the slim client (see pyproject.toml).
	$(PIP) install --quiet -e '.[worker,dev]'
	touch $(STAMP)

$(KUBECTL): scripts/install-kubectl.sh
	bash scripts/install-kubectl.sh

browser: ## Debian's chromium + chromium-driver, for the tests that read pages in a headless browser
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver >/dev/null; \
	fi

install: $(STAMP) $(KUBECTL) browser ## Create the venv, install streamlabel with its worker stack and dev tools, and kubectl (kustomize) for the manifests

demo: $(STAMP) ## Run the main job on embedded defaults: broker + Ray + model on StackOverflow
	$(VENV)/bin/streamlabel demo --dataset $(DATA)/stackoverflow

test: $(STAMP) $(KUBECTL) browser lint typecheck k8s-validate docs ## Lint, type-check, validate the k8s manifests, build the docs, unit tests and doctests, then integration tests
	OPENBLAS_NUM_THREADS=1 $(PY) -m pytest tests/unit -q
	$(PY) -m pytest --doctest-modules streamlabel -q
	$(PY) -m pytest tests/integration -q

test-unit: $(STAMP) $(KUBECTL) ## Unit tests only (no model, no broker, no Ray)
	OPENBLAS_NUM_THREADS=1 $(PY) -m pytest tests/unit -q

test-integration: $(STAMP) browser ## Integration tests (real model, real tansu broker, local Ray)
	$(PY) -m pytest tests/integration -q

lint: $(STAMP) ## ruff on the code, import-linter on the layers, hadolint on the Dockerfile
	$(VENV)/bin/ruff check streamlabel tests k8s docs
	$(VENV)/bin/ruff format --check streamlabel tests k8s docs
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/hadolint docker/Dockerfile

k8s-validate: $(STAMP) $(KUBECTL) ## Render every kustomize overlay and validate each object against its schema (offline)
	$(PY) k8s/validate.py --kubectl $(KUBECTL)

docs: $(STAMP) ## Build the documentation site (mkdocs-material, offline, --strict) into site/
	$(VENV)/bin/mkdocs build --strict --quiet

typecheck: $(STAMP) ## mypy on the package
	$(VENV)/bin/mypy

bench-stackoverflow: $(STAMP) ## Open-world benchmark, StackOverflow, seeds 0,1,2
	$(VENV)/bin/streamlabel bench openworld --train $(DATA)/stackoverflow/train.tsv --test $(DATA)/stackoverflow/test.tsv --seeds 0,1,2 --json

bench-kafka: $(STAMP) ## Open-world benchmark, StackOverflow, engine and kafka modes side by side
	$(VENV)/bin/streamlabel bench openworld --train $(DATA)/stackoverflow/train.tsv --test $(DATA)/stackoverflow/test.tsv --seeds 0,1,2 --mode both --json

chaos: $(STAMP) ## Every fault scenario, 10 cycles per fault point (about 30 min)
	$(VENV)/bin/streamlabel chaos --cycles 10 --json

bench-snips: $(STAMP) ## Open-world benchmark, SNIPS, seeds 0,1,2
	$(VENV)/bin/streamlabel bench openworld --train $(DATA)/snips/train.tsv --test $(DATA)/snips/test.tsv --seeds 0,1,2 --json

bench-hwu64: $(STAMP) ## Open-world benchmark, HWU64 (64 close intents), engine and kafka modes
	$(VENV)/bin/streamlabel bench openworld --train $(DATA)/hwu64/train.tsv --test $(DATA)/hwu64/test.tsv --seeds 0,1,2 --mode both --json

bench-openset: $(STAMP) ## Open-set (open intent detection) benchmark, HWU64 and StackOverflow
	$(VENV)/bin/streamlabel bench openset --train $(DATA)/hwu64/train.tsv --test $(DATA)/hwu64/test.tsv --json
	$(VENV)/bin/streamlabel bench openset --train $(DATA)/stackoverflow/train.tsv --test $(DATA)/stackoverflow/test.tsv --json

UI_VENDOR := streamlabel/ui/static/vendor
ui-assets: ## Re-fetch the console's front-end files (htmx, uPlot) from npm at the versions pinned in $(UI_VENDOR)/MANIFEST.tsv, checking each sha256
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	grep -v '^#' $(UI_VENDOR)/MANIFEST.tsv | while IFS=$$'\t' read -r file pkg path sum; do \
		dir="$$tmp/$${pkg//[@\/]/_}"; \
		if [ ! -d "$$dir" ]; then \
			mkdir -p "$$dir" && (cd "$$dir" && npm pack --silent "$$pkg" >/dev/null) && \
			tar xzf "$$dir"/*.tgz -C "$$dir" || exit 1; \
		fi; \
		cp "$$dir/package/$$path" "$(UI_VENDOR)/$$file" && \
		echo "$$sum  $(UI_VENDOR)/$$file" | sha256sum --check --quiet || exit 1; \
		echo "  $$file <- $$pkg/$$path"; \
	done

clean: ## Remove the venv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
