# dicomlab: two commands for a new user (see README.md)
#   make demo   create .venv, install dicomlab, run the main job
#   make test   install test tools, the real peers (dcmtk, orthanc, chromium) and the OHIF viewer, lint, type-check, run pytest
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip

.PHONY: demo test venv dev peers viewer lint typecheck pytest bench lab clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

.stamp-install: $(PY) pyproject.toml
	$(PIP) install -q -e .
	touch $@

.stamp-dev: .stamp-install
	$(PIP) install -q -e ".[test,dev]"
	touch $@

venv: .stamp-install

dev: .stamp-dev

demo: .stamp-install
	$(VENV)/bin/dicomlab demo --out demo-output

peers:
	bash scripts/install_peers.sh

# the OHIF viewer (@ohif/app, pinned) from the npm registry into ~/.cache/dicomlab/ohif
viewer: .stamp-install
	$(VENV)/bin/dicomlab viewer install

lint: .stamp-dev
	$(VENV)/bin/ruff check dicomlab tests benchmarks scripts
	$(VENV)/bin/ruff format --check dicomlab tests benchmarks scripts

typecheck: .stamp-dev
	$(VENV)/bin/mypy

pytest: .stamp-dev
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test: peers viewer lint typecheck pytest

lab: .stamp-install
	$(PIP) install -q "jupyterlab>=4,<5"
	$(VENV)/bin/jupyter lab notebooks

bench: .stamp-dev peers
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) .stamp-* demo-output .pytest_cache .mypy_cache .ruff_cache
