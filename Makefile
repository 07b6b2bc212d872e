# The two commands: `make run` (the node) and `make test` (everything CI runs). See README.md.
PYTHON := .venv/bin/python
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup setup-dev run test unit demo bench models clean

setup:
	scripts/setup.sh

setup-dev:
	scripts/setup.sh --dev

run: setup
	$(PYTHON) scripts/node.py run

test: setup-dev
	$(PYTHON) -m pytest

unit: setup-dev
	$(PYTHON) -m pytest tests/unit

demo: setup
	$(PYTHON) scripts/demo.py

bench: setup-dev
	$(PYTHON) scripts/bench.py

models: setup-dev
	$(PYTHON) -m training.all --version 1.1.0

clean:
	rm -rf data .pytest_cache
