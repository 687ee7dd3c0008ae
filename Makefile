# Set-up is part of every target: a fresh clone needs only `make test` or `make recipes`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
QUICK ?=
RESULTS ?= results
FSDD ?=
TIMIT ?=

.PHONY: test recipes bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch 2.13.0's CPU build (about 200 MB) from PyTorch's own CPU wheel index; where that index
	# cannot be reached in 15 s, the default index (on Linux: a CUDA build with several GB of CUDA
	# libraries). The package itself asks only for a range, so it installs beside a user's own torch.
	$(BIN)/pip install --quiet --retries 0 --timeout 15 --index-url https://download.pytorch.org/whl/cpu \
		torch==2.13.0 || $(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q -n auto --dist loadfile --no-loadscope-reorder

recipes: $(STAMP)
	PATH=$(abspath $(BIN)):$$PATH QUICK=$(QUICK) RESULTS=$(RESULTS) FSDD=$(FSDD) TIMIT=$(TIMIT) bash recipes/run.sh

bench: $(STAMP)
	$(BIN)/asr-init bench extract
	$(BIN)/asr-init bench pretrain
	$(BIN)/asr-init bench finetune

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
