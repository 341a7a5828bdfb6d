# varsky: `make demo` and `make test` work from a fresh clone; both build the environment first.
SHELL := /bin/bash
PYTHON ?= python3.11
UV_VERSION := 0.13.8
UV := .tools/bin/uv
VENV := .venv

export UV_PYTHON_DOWNLOADS := never
export NUMBA_CACHE_DIR := $(CURDIR)/.numba_cache
export SPARK_LOCAL_IP := 127.0.0.1
export TF_CPP_MIN_LOG_LEVEL := 2
export PYSPARK_PYTHON := $(CURDIR)/$(VENV)/bin/python
export PYSPARK_DRIVER_PYTHON := $(CURDIR)/$(VENV)/bin/python

.PHONY: setup java test lint format demo model clean help

help:
	@echo "make demo    build the environment, classify the bundled ZTF DR5 sample, write its report"
	@echo "make test    build the environment, lint, run the whole test suite"
	@echo "make setup   create or update the environment (.venv) from uv.lock"
	@echo "make model   retrain the shipped model into models/varsky_dmdt_cnn (overwrites it)"
	@echo "make lint / make format"

$(UV):
	@command -v $(PYTHON) >/dev/null || { echo "varsky needs $(PYTHON) on PATH"; exit 1; }
	$(PYTHON) -m venv .tools
	.tools/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

java:
	@command -v java >/dev/null || { \
	  echo "varsky needs Java 17 or newer on PATH (Spark 4), e.g. apt-get install openjdk-17-jre-headless"; \
	  exit 1; }
	@v=$$(java -version 2>&1 | awk -F'"' '/version/ {print $$2; exit}'); major=$${v%%.*}; \
	  if [ "$$major" = "1" ] || [ "$${major:-0}" -lt 17 ]; then \
	    echo "varsky needs Java 17 or newer (Spark 4); found Java $$v"; exit 1; fi

# Bytecode compiled once here: where PYTHONDONTWRITEBYTECODE is set (CI), every Python process,
# each Spark worker included, compiled TensorFlow and hats from source again (10 s -> 5 s import).
$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --locked --python $(PYTHON) --compile-bytecode
	@touch $@

setup: java $(VENV)/.synced

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: lint
	$(VENV)/bin/python -m pytest

demo: setup
	$(VENV)/bin/varsky classify --input data/sample --output demo_output/classified --overwrite
	$(VENV)/bin/varsky report demo_output/classified

# Pretrain on the simulator, fine-tune on the bundled real labelled sets, calibrate (README).
model: setup
	$(VENV)/bin/varsky train --output models/varsky_dmdt_cnn --band-map crts \
	    --real data/real_labelled/crts_train --real data/real_labelled/tdss_quasars \
	    --transients data/real_labelled/ztf_bts

clean:
	rm -rf demo_output build .numba_cache .pytest_cache
