# Two commands set everything up on a fresh machine: `make serve` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# OpenCV from wheels only: when pip backtracks (numpy < 2 rules out the newest releases of several packages) it
# would otherwise try to build an old OpenCV from source, which fails after many minutes
PIP_INSTALL := $(BIN)/python -m pip install --quiet --only-binary=opencv-python,opencv-python-headless

.PHONY: serve test venv clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-serve: pyproject.toml | $(BIN)/python
	$(PIP_INSTALL) -e '.[embedded]'
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(PIP_INSTALL) -e '.[test]'
	touch $@ $(VENV)/.installed-serve

venv: $(VENV)/.installed-serve

serve: $(VENV)/.installed-serve
	$(BIN)/mt-photos-triton export auto
	$(BIN)/mt-photos-triton serve

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
