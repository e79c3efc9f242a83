# The two set-up commands of the README:
#   make demo   install into .venv, run the embedded synthetic demo, write the HTML report
#   make test   install into .venv (with test extras) and run the test suite
# CORES sets the Snakemake core count; TEST_PROCESSES the test processes (pytest-xdist; 0 = one, no xdist); TORCH pins the torch build pip installs first
# (on a CPU-only machine 2.13.0 resolves to the local CPU wheel; on GPU nodes pip gives a CUDA build).

PYTHON ?= python3
VENV ?= .venv
CORES ?= 2
TEST_PROCESSES ?= 2
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: demo test install report curves clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/snakemake --cores $(CORES)
	$(BIN)/snakemake --cores 1 --report results/report.html
	@echo "Done: planted vs recovered in results/planted/known_answer.png, matrices in results/<task>/,"
	@echo "report in results/report.html (SYNTHETIC DEMO DATA, with a planted effect: docs/demo.md)"

report: install
	$(BIN)/snakemake --cores 1 --report results/report.html

# after `make demo`: the learning curves too (48 more runs), and the report with them
curves: install
	$(BIN)/snakemake all learning_curves --cores $(CORES)
	$(BIN)/snakemake all learning_curves --cores 1 --report results/report.html

# two test processes: the suite mostly waits (Snakemake, SLURM, process starts); tests/conftest.py sends the
# modules that share an expensive fixture to one process
test: install
	$(BIN)/python -m pytest -n $(TEST_PROCESSES)

clean:
	rm -rf results .snakemake
