# Two entry points (see README): `make demo` and `make test`. Everything else supports them.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip

.PHONY: demo test install install-test browser lint bench clean

demo: install            ## set up and run the main job on the local Model API
	$(VENV)/bin/mp-nb demo

test: install-test browser lint  ## set up and run every test (unit, integration, nbval, browser)
	$(PY) -m pytest tests notebooks --nbval --nbval-current-env \
	    --nbval-sanitize-with notebooks/nbval_sanitize.cfg -p no:cacheprovider

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

install: $(VENV)/bin/python
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e .

install-test: $(VENV)/bin/python
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e ".[test]"

browser:                 ## Debian's Chromium for the browser test (never a downloaded build)
	@command -v chromium >/dev/null 2>&1 || { \
	    echo "installing Debian chromium (needs root)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

lint: $(VENV)/bin/python
	$(VENV)/bin/ruff check mp_nb tests bench

bench: install-test      ## benchmarks: print tables, ratios against a baseline run alongside
	$(PY) bench/receiver.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build dist *.egg-info
