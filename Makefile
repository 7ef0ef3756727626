# Two commands: `make demo` (the main job on a local store) and `make test` (the whole suite).
# Both create their own virtual environment in .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# The Azure Blob emulator for the cloud tests (tests/cloud_servers.py); needs node.
AZURITE := .cache/azurite/node_modules/.bin/azurite-blob

.PHONY: demo test test-slow lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,docs]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py

lint: $(STAMP)
	$(PY) -m ruff check .

# Installs Azurite only when node and npm are present; never fails (without it the
# Azure tests are skipped with the reason).
$(AZURITE):
	@if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then \
		npm install --prefix .cache/azurite --no-audit --no-fund --loglevel=error azurite \
			|| echo "warning: could not install Azurite; the Azure tests will be skipped"; \
	else \
		echo "node/npm not found: Azurite not installed; the Azure tests will be skipped"; \
	fi

test: $(STAMP) lint $(AZURITE)
	$(PY) -m pytest

test-slow: $(STAMP)
	$(PY) -m pytest -m slow

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
