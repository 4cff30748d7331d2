# Two commands matter: `make run` and `make test`. Both install what is missing first.
SHELL := /bin/bash
.DEFAULT_GOAL := run

# With pyenv, the `python3.13` shim follows .python-version.
PYTHON ?= $(shell command -v python3.13 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
# uv from PATH, else installed once into var/uv with pip (no global install, no root needed).
UV := $(shell command -v uv || echo var/uv/bin/uv)
UV_DEP := $(if $(findstring var/uv,$(UV)),var/uv/bin/uv)

.PHONY: run test install install-dev lint browser clean

var/uv/bin/uv:
	@echo "Installing uv into var/uv (one time)..."
	@mkdir -p var
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --target var/uv uv

$(PY): | $(UV_DEP)
	$(UV) venv --quiet --python $(PYTHON) $(VENV)

install: $(PY) | $(UV_DEP)
	@$(UV) pip sync --quiet --python $(PY) requirements.lock

install-dev: $(PY) | $(UV_DEP)
	@$(UV) pip sync --quiet --python $(PY) requirements-dev.lock

.env: | $(PY)
	@$(PY) -m chatsite.envfile .env

# Building llama-cpp-python (the offline local model) compiles llama.cpp: say so before the wait.
.PHONY: local-model-notice
local-model-notice:
	@$(PY) -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('llama_cpp') is None)" \
	  2>/dev/null || echo "Installing llama-cpp-python for the offline local model:" \
	  "building it takes 3-4 minutes the first time..."

run: local-model-notice install .env
	@$(PY) -m chatsite.envfile .env
	@$(PY) manage.py prepare
	@$(PY) manage.py serve

# Chromium for the browser tests, from Debian's packages; when it cannot be installed the browser
# tests skip with that reason (CI sets REQUIRE_BROWSER=1, so there they fail instead).
browser:
	@mkdir -p var
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing Chromium for the browser tests (apt-get)..."; \
	    (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium) >var/apt.log 2>&1 \
	      || echo "Could not install Chromium (see var/apt.log): browser tests will skip."; \
	  else echo "Chromium is missing and apt-get is not usable here: browser tests will skip."; fi; }

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: install-dev .env browser lint
	$(VENV)/bin/pytest

clean:
	rm -rf $(VENV) var/uv var/static .pytest_cache .ruff_cache
