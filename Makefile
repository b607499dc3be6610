# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
RUN    ?= runs/demo

.PHONY: install demo test bench clean

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
## A shorter schedule than the default (12 epochs, 4 of them pretraining) keeps it to minutes
## on a 2-core laptop; `morphospace run` alone trains the full default schedule.
DEMO_OPTS ?= --set train.epochs=12 --set train.pretrain_epochs=4
demo: $(STAMP)
	$(BIN)/morphospace run --out $(RUN) $(DEMO_OPTS)

## test: the test suite
test: $(STAMP)
	$(BIN)/pytest -q

## bench: speed and quality measurements (slow; not part of the tests)
bench: $(STAMP)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) runs .pytest_cache
