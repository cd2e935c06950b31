# README command 1: `make demo`; README command 2: `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
EXTRAS := onnx,openvino,tensorboard,demo,eval,dev
STAMP  := $(VENV)/.installed-$(EXTRAS)

.PHONY: test lint demo install bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[$(EXTRAS)]'
	touch $@

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

demo: $(STAMP)
	$(BIN)/python -m cyclegan_cli.demo

bench: $(STAMP)
	$(BIN)/python benchmarks/run_throughput.py
	$(BIN)/python benchmarks/train_step.py

clean:
	rm -rf $(VENV) build *.egg-info demo
