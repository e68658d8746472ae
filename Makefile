# ganprint: the two commands a new user runs are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test bench evaluate clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,dist]"
	$(PY) -c "from fingerprint.bench import warm_up; print(f'compiled the kernels in {warm_up():.0f} s')"
	touch $(STAMP)

demo: install
	$(VENV)/bin/ganprint demo --out demo-output

test: install
	$(PY) -m pytest -q

bench: install
	$(VENV)/bin/ganprint bench --sizes 512x512,2000x3008,3000x4000

evaluate: install
	$(PY) benchmarks/evaluate_shared.py

clean:
	rm -rf $(VENV) demo-output .pytest_cache .benchmarks
