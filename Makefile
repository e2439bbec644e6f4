# The front door: `make demo`, `make test`, `make lint`, `make bench`.
# Each target sets up what it needs in .venv first. On this project's CPU machines the pinned
# torch below is the CPU build already on disk; elsewhere pass e.g. TORCH="torch" (see README).
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The oldest transformers the package declares (pyproject), tested in its own venv by `make test`.
OLDEST ?= transformers==4.45.2
OLD_VENV ?= .venv-oldest
OLD_STAMP := $(OLD_VENV)/.installed

.PHONY: install demo test test-latest test-oldest lint format bench bench-peers browser clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

$(OLD_STAMP): pyproject.toml
	test -x $(OLD_VENV)/bin/python || $(PYTHON) -m venv $(OLD_VENV)
	$(OLD_VENV)/bin/python -m pip install -q --upgrade pip
	$(OLD_VENV)/bin/python -m pip install -q "$(TORCH)"
	$(OLD_VENV)/bin/python -m pip install -q -e ".[test]" "$(OLDEST)"
	touch $(OLD_STAMP)

# Headless Chromium for the browser tests (Debian's package; needs root, as on CI).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is not installed (apt-get install chromium): browser tests will be skipped"; fi; }

demo: install
	$(BIN)/interp-text demo

# The whole suite on the newest transformers, then (browser tests aside) on the oldest declared.
test: test-latest test-oldest

test-latest: install browser
	$(BIN)/python -m pytest -q

test-oldest: $(OLD_STAMP)
	$(OLD_VENV)/bin/python -c "import transformers; print('oldest declared: transformers', transformers.__version__)"
	$(OLD_VENV)/bin/python -m pytest -q -p no:cacheprovider -k "not browser"

lint: install
	$(BIN)/ruff check interp_text tests bench examples
	$(BIN)/ruff format --check interp_text tests bench examples

format: install
	$(BIN)/ruff format interp_text tests bench examples
	$(BIN)/ruff check --fix interp_text tests bench examples

# Peers (interpreto, captum, inseq) live in their own .venv-bench; each benchmark runs without them too.
bench-peers:
	test -x .venv-bench/bin/python || $(PYTHON) -m venv .venv-bench
	.venv-bench/bin/python -m pip install -q "$(TORCH)"
	.venv-bench/bin/python -m pip install -q interpreto captum inseq

bench: install
	$(BIN)/python bench/bench_classification.py
	$(BIN)/python bench/bench_generation.py
	$(BIN)/python bench/bench_perturbation.py

clean:
	rm -rf $(VENV) $(OLD_VENV) .pytest_cache test-artifacts *.egg-info
