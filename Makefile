# tilegrad: `make test` sets everything up itself (virtual environment, package, test tools).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# PyTorch is the parity reference in tests, never a package dependency. The CPU build, pinned.
TORCH  ?= torch==2.13.0

.PHONY: setup test clean

$(VENV)/.ready: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q '$(TORCH)' || echo "warning: $(TORCH) did not install; PyTorch parity tests will be skipped"
	touch $@

setup: $(VENV)/.ready

test: setup
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
