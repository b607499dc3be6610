# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
RUN    ?= runs/demo
# extra pytest options, e.g. `make test PYTEST_ARGS=--durations=25`
PYTEST_ARGS ?=
# pytest-xdist workers of `make test`: two, one a core of the 2-core machines CI runs on (the suite
# took 990 s on two against 1429 s on one, same host, same commit); 0 runs it in one process
TEST_WORKERS ?= 2

.PHONY: install demo test test-fast browser bench clean

# torch first, pinned to the CPU wheel on disk: a plain `torch` requirement would pull a
# multi-GB CUDA build. Then the package with its test extra.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## demo: the whole pipeline on the built-in synthetic survey; prints where the report is.
## It trains the default (form) model's own schedule (form.ssl_epochs, form.decoder_epochs): the
## pixel VaDE's train.epochs / train.pretrain_epochs, given here before, are not used by its
## linear core, and the demo opened with a warning saying so. Extra options: `make demo DEMO_OPTS=...`.
DEMO_OPTS ?=
demo: $(STAMP)
	$(BIN)/morphospace run --out $(RUN) $(DEMO_OPTS)

## test: the whole test suite, slow tests included: what CI runs (.ci/run calls it).
## It first tries to get the headless browser of the report's browser tests (`browser`
## below); where that cannot be installed those tests skip, saying so.
test: $(STAMP) browser
	$(BIN)/pytest -q -n $(TEST_WORKERS) $(PYTEST_ARGS)

## test-fast: the suite without the tests marked `slow` (whole pipelines on tiny data, DDP,
## a killed-and-resumed training): minutes quicker, for iterating. Run `make test` before pushing.
test-fast: $(STAMP)
	$(BIN)/pytest -q -n $(TEST_WORKERS) -m "not slow" $(PYTEST_ARGS)

## browser: best effort, never fails the build. The browser tests drive Debian's chromium
## (/usr/bin/chromium) through the playwright package of the test extra; where it is missing
## and packages can be installed (root, or sudo without a password) .ci/install-browser.sh
## installs it with apt-get.
BROWSER_MISSING := chromium could not be installed (no network, or no root?): browser tests will be skipped
browser: $(STAMP)
	@if [ -x /usr/bin/chromium ] && $(BIN)/python -c "import playwright.sync_api" 2>/dev/null; then \
	  :; \
	elif [ "$$(id -u)" = 0 ] || sudo -n true 2>/dev/null; then \
	  bash .ci/install-browser.sh $(BIN)/python || echo "$(BROWSER_MISSING)"; \
	else \
	  echo "$(BROWSER_MISSING)"; \
	fi

## bench: speed and quality measurements (slow; not part of the tests)
bench: $(STAMP)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# the demo's run only: runs/ also holds the runs a user made there (the README's --out runs/...)
clean:
	rm -rf $(VENV) $(RUN) .pytest_cache
