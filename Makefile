# The commands the README shows. `make demo` and `make test` set everything up first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PLUGINS := $(wildcard plugins/medi2i-*)
# Real volumes for tests and benchmarks, when the shared data folder sits beside the clone.
MEDI2I_DATA_DIR ?= $(abspath ../shared/data)
export MEDI2I_DATA_DIR

# On machines without an NVIDIA GPU, install the CPU build of torch first: the package's own
# range would otherwise pull a multi-GB CUDA build.
TORCH_CPU_PIN ?= torch==2.13.0

.PHONY: setup demo test test-slow test-gpu lint typecheck bench bench-quality clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(wildcard plugins/*/pyproject.toml)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	if ! command -v nvidia-smi >/dev/null 2>&1; then \
		$(BIN)/python -m pip install --quiet "$(TORCH_CPU_PIN)"; fi
	$(BIN)/python -m pip install --quiet -e ".[dev]" $(foreach p,$(PLUGINS),-e $(p))
	touch $@

demo: setup
	$(BIN)/medi2i demo

test: setup
	$(BIN)/python -m pytest -m "not slow and not gpu" -q

test-slow: setup
	$(BIN)/python -m pytest -m "slow" -q

# on a machine with a CUDA device (and torch's CUDA build): AMP, out-of-memory back-off,
# repeatable predictions
test-gpu: setup
	$(BIN)/python -m pytest -m "gpu" -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

typecheck: setup
	$(BIN)/mypy

bench: setup
	$(BIN)/python benchmarks/p1_engine_overhead.py
	$(BIN)/python benchmarks/p5_startup.py
	$(BIN)/python benchmarks/p3_dicom_read.py
	$(BIN)/python benchmarks/p2_dicom_end_to_end.py
	$(BIN)/python benchmarks/p4_training_throughput.py
	$(BIN)/python benchmarks/p6_memory.py
	$(BIN)/python benchmarks/cpu_window_batch.py
	$(BIN)/python benchmarks/p9_harmonization_memory.py

# Q1-Q3 and Q1x quality benchmarks (baselines) on the shared real volumes; `medi2i bench`
# is the plugins/medi2i-bench plugin, installed by setup with every plugins/medi2i-*.
bench-quality: setup
	$(BIN)/medi2i bench run --task all --output benchmarks/quality/results

clean:
	rm -rf $(VENV) demo-output .pytest_cache .mypy_cache .ruff_cache
