# Two commands do all the set-up on a fresh machine: `make demo` (main job) and `make test` (test suite).
# Both create .venv and install reprzoo with the pinned torch/torchvision of constraints.txt.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP_FLAGS ?= -q -c constraints.txt

.PHONY: install demo lint format browser test test-fast learning-table supervised-comparisons retrieval-table bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install $(PIP_FLAGS) -e ".[test,bench]"
	touch $@

demo: install
	$(BIN)/reprzoo demo

LINT_PATHS := reprzoo tests benchmarks scripts

# ruff's lint rules and formatter settings are in pyproject.toml ([tool.ruff])
lint: install
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

# rewrites files: run it on a tree nobody else is editing
format: install
	$(BIN)/ruff format $(LINT_PATHS)
	$(BIN)/ruff check --select I --fix $(LINT_PATHS)

# the analysis page's test opens it in Debian's chromium (headless, offline): installed here when it is missing and
# this is a root shell with apt; without it that one test is skipped and says so
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		(apt-get install -y -qq chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)); } || \
		echo "chromium is not installed: tests/test_analysis_report.py's browser check will be skipped"

test: lint browser
	$(BIN)/python -m pytest -n 2 --dist worksteal --durations=15

test-fast: install
	$(BIN)/python -m pytest -n 2 -m "not slow and not ddp"

# README's methods table: every method's learning test on digits at its full budget (`make test` runs the quick
# tier: tests/test_methods.py, QUICK_EPOCHS_BY_METHOD), measurements kept in docs/learning/
learning-table: install
	rm -rf docs/learning
	REPRZOO_LEARNING_TIER=full REPRZOO_LEARNING_REPORT=docs/learning $(BIN)/python -m pytest -n 2 -m slow -k test_learns_on_digits -q
	$(BIN)/python scripts/learning_table.py docs/learning README.md

# the metric-and-supervised wing's side-by-side comparisons (README's tables; about two hours of a 2-core CPU)
supervised-comparisons: install
	$(BIN)/python scripts/supervised_comparisons.py metric-learning --epochs 30 --seeds 0 --out docs/comparisons
	$(BIN)/python scripts/supervised_comparisons.py metric-learning --data emoji --epochs 30 --seeds 0 --out docs/comparisons
	for noise in symmetric:0.2 symmetric:0.4 asymmetric:0.2 asymmetric:0.4; do \
		$(BIN)/python scripts/supervised_comparisons.py label-noise --epochs 40 --seeds 0 --label-noise $$noise --out docs/comparisons; done
	$(BIN)/python scripts/supervised_comparisons.py semi-supervised --epochs 12 --seeds 0 1 2 --out docs/comparisons
	$(BIN)/python scripts/supervised_comparisons.py mixup --epochs 30 --seeds 0 --out docs/comparisons
	$(BIN)/python scripts/supervised_comparisons.py batchformer --epochs 30 --seeds 0 --out docs/comparisons

# the retrievers against BM25 on the Debian split, through their exported models and indexes (README's table)
retrieval-table: install
	$(BIN)/python scripts/retrieval_comparison.py --out docs/retrieval --check --hybrid UniCOIL
	$(BIN)/python scripts/retrieval_comparison.py --render docs/retrieval README.md

bench: install
	$(BIN)/python -m pip install $(PIP_FLAGS) -e ".[bench]"
	$(BIN)/python benchmarks/bench_simsiam.py
	$(BIN)/python benchmarks/bench_load.py
	$(BIN)/python benchmarks/bench_methods.py
	$(BIN)/python benchmarks/bench_fastpath.py --out .bench/bench_fastpath.json
	$(BIN)/python benchmarks/bench_knn.py --out .bench/bench_knn.json

clean:
	rm -rf runs lightning_logs .pytest_cache
