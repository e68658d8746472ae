# ganprint: the two commands a new user runs are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,dist]"
	touch $(STAMP)

demo: install
	$(VENV)/bin/ganprint demo --out demo-output

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) benchmarks/compare_residual.py

clean:
	rm -rf $(VENV) demo-output .pytest_cache .benchmarks
