# edgekit: `make demo` and `make test` set everything up on first run.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup venv demo test samples fuzz bench clean help

help:
	@echo "make demo   - set up (first run), build the samples, then edgekit build samples/edgekit.toml"
	@echo "make test   - set up (first run) and run the whole test suite"
	@echo "make venv   - create .venv with edgekit and all extras (re-runs when setup.cfg changes)"
	@echo "make bench  - measure artifacts vs baselines and the hardware floor; writes BENCHMARKS.md (~14 min on 2 idle cores)"

# The venv is rebuilt only when the pins (setup.cfg) or the build config change.
$(STAMP): setup.cfg pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all,dev]'
	@touch $@

venv: $(STAMP)

setup: venv
	$(BIN)/edgekit arm setup
	$(BIN)/edgekit web setup

samples: setup
	$(BIN)/python samples/make_samples.py

demo: samples
	$(BIN)/edgekit build samples/edgekit.toml

test: setup
	$(BIN)/python -m pytest

# A longer fuzzing run than CI's (not part of `make test`): 1,000 mutants per format (TFLite,
# ONNX, .pte, .pt2, .keras, a .pt2 with a payload) in-process, 50 through the real CLI; prints
# the outcome counts per format and writes them to build/fuzz-report.json.
fuzz: setup
	@mkdir -p build
	EDGEKIT_FUZZ_EXAMPLES=$${EDGEKIT_FUZZ_EXAMPLES:-1000} EDGEKIT_FUZZ_CLI_EXAMPLES=$${EDGEKIT_FUZZ_CLI_EXAMPLES:-50} \
	  EDGEKIT_FUZZ_RANDOM=1 EDGEKIT_FUZZ_REPORT=$${EDGEKIT_FUZZ_REPORT:-build/fuzz-report.json} \
	  $(BIN)/python -m pytest tests/toolchain/test_fuzz.py -q -s --hypothesis-show-statistics -p no:cacheprovider

# Benchmarks (not tests): one run writes BENCHMARKS.md and benchmarks/results.json.
bench: setup
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf build samples/build .pytest_cache
