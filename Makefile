# `make study` and `make test` each create .venv with the exact versions of
# constraints.txt on first use, then run the main job or the tests; `make first` installs
# only the library (no test or docs tools) and runs a study of a few hundred images;
# `make docs` builds the site into site/ (the tests build it too, with --strict).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# MNIST: a shared copy beside the checkout is used when there is one and RIM_DATA_DIR is
# unset; otherwise the code looks in ~/.cache/rim_rllib/mnist and downloads there.
SHARED_MNIST := $(abspath $(wildcard ../shared/data/mnist))
ifneq ($(SHARED_MNIST),)
export RIM_DATA_DIR ?= $(SHARED_MNIST)
endif

.PHONY: setup first study test bench docs figures clean

setup: $(VENV)/.installed

# The library alone is all a first study needs; setup adds the test and docs tools to it.
$(VENV)/.installed-core: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e .
	touch $@

$(VENV)/.installed: $(VENV)/.installed-core
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		-c constraints.txt -e '.[dev,docs]'
	touch $@

first: $(VENV)/.installed-core
	$(BIN)/python studies/ka_sweep.py --name first-study --seeds 0 1 --ka 2 4 --epochs 1 \
		--set train_subset=200 eval_subset=50 compile=False $(ARGS)

study: setup
	$(BIN)/python studies/ka_sweep.py $(ARGS)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: setup
	$(BIN)/python benchmarks/rim_speed.py $(ARGS)

docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict

# Every results page's tables and figures again, from the studies under results/ it names.
figures: setup
	$(BIN)/python -m analysis.report --refresh $(wildcard docs/results/*/)

# Only what can be rebuilt: results/ holds every study's results and is never removed here.
clean:
	rm -rf $(VENV) site .pytest_cache
