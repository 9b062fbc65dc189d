# skysift: `make demo` sets everything up and runs the main job on sample data; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOME_DIR ?= skysift-data

.PHONY: install demo test lint lock bench clean

# Pinned, resolved set (requirements-lock.txt, from `pip freeze` of a working install): a fresh
# machine installs exactly what was tested, without pip's resolver searching versions.
# Regenerate after changing dependencies: `make lock`.
$(BIN)/.installed: pyproject.toml requirements-lock.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-lock.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

lock:
	$(BIN)/python -m pip install --quiet -e ".[all,dev]"
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^skysift' > requirements-lock.txt

install: $(BIN)/.installed

demo: install
	$(BIN)/skysift sample sky
	$(BIN)/skysift --home $(HOME_DIR) run sky
	$(BIN)/skysift --home $(HOME_DIR) query "SELECT COUNT(*) AS total_sources, AVG(flux) AS mean_flux, MAX(snr) AS max_snr FROM sources WHERE flux > 500"
	$(BIN)/skysift --home $(HOME_DIR) alerts
	$(BIN)/skysift --home $(HOME_DIR) plot sky/field_001.fits -o field_001.png

test: install
	$(BIN)/ruff check src tests benchmarks functions
	$(BIN)/cfn-lint template.yaml
	SAM_CLI_TELEMETRY=0 $(BIN)/sam validate --lint --region us-east-1
	$(BIN)/python -m pytest -n 2 --durations=15

bench: install
	$(BIN)/python benchmarks/bench_detect.py --repeats 5
	$(BIN)/python benchmarks/bench_accuracy.py

clean:
	rm -rf sky $(HOME_DIR) field_001.png .pytest_cache
