# The two commands of the README: `make study` (main job) and `make test`;
# `make demo` is the quick-start demo.
# Both create the virtual environment in .venv on first use.
PYTHON ?= python3
VENV ?= .venv
# CPU build where this machine carries it; GPU users: see README ("GPU").
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: study demo test install

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

study: $(VENV)/.installed
	$(BIN)/python -m augmentor.oasis

demo: $(VENV)/.installed
	$(BIN)/python -m augmentor.demo

test: $(VENV)/.installed
	$(BIN)/python -m pytest
