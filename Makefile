# minisora: the two commands are `make train` and `make test`.
# Every target creates the virtual environment in .venv first when it is missing.

VENV   ?= .venv
PYTHON := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
NBVAL  := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg

.PHONY: help venv train eval test unit nbval data notebooks lab clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): requirements.txt pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install -r requirements.txt -e .
	touch $@

venv: $(STAMP)  ## create .venv with the pinned requirements and minisora (editable)

RUN         ?= runs/tiny
# the train defaults are the recipe of docs/recipe.md; add flags, e.g. make train TRAIN_FLAGS="--steps 5000"
TRAIN_FLAGS ?=

train: $(STAMP)  ## train the tiny text-to-video DiT on CPU (14-19 min; interrupted runs resume) into runs/tiny/
	$(PYTHON) -m minisora train --out $(RUN) --resume $(TRAIN_FLAGS)
	$(PYTHON) -m minisora sample --ckpt $(RUN)/ckpt.pt --prompt 0 1 2 3 4 5 6 7 8 9 --out $(RUN)/sample.gif

EVAL_FLAGS ?= --clips 50 --prediction-clips 200

eval: $(STAMP)  ## evaluate the make train model (digits, physics, 10 -> 10 prediction) into runs/tiny/eval.json
	$(PYTHON) -m minisora eval --ckpt $(RUN)/ckpt.pt --out $(RUN)/eval.json $(EVAL_FLAGS)

test: $(STAMP)  ## all tests: unit tests, then strict nbval over every notebook
	MINISORA_REQUIRE_PEERS=1 $(PYTHON) -m pytest tests/ && $(PYTHON) -m pytest $(NBVAL) notebooks/

unit: $(STAMP)  ## unit tests only
	MINISORA_REQUIRE_PEERS=1 $(PYTHON) -m pytest tests/

nbval: $(STAMP)  ## strict nbval over every notebook only
	$(PYTHON) -m pytest $(NBVAL) notebooks/

data: $(STAMP)  ## export the standard 10,000-clip Moving MNIST test set to outputs/moving_mnist/
	$(PYTHON) -m minisora data

notebooks: $(STAMP)  ## re-execute every notebook in place (after changing one, or the package)
	$(PYTHON) scripts/run_notebooks.py notebooks/*.ipynb

lab: $(STAMP)  ## open the course in JupyterLab
	$(VENV)/bin/jupyter lab notebooks/

clean:  ## remove generated outputs (keeps .venv)
	rm -rf outputs/ .pytest_cache/ $$(find . -name __pycache__ -not -path './$(VENV)/*')
