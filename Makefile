# skysift: `make demo` sets everything up and runs the main job on sample data; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOME_DIR ?= skysift-data
CHECKOV_VENV ?= .venv-checkov
CHECKOV_VERSION := 3.3.30

.PHONY: install demo notebooks test lint lock lock-checkov checkov bench deploy clean

# Pinned, resolved set (requirements-lock.txt, from `pip freeze` of a working install): a fresh
# machine installs exactly what was tested, without pip's resolver searching versions.
# Regenerate after changing dependencies: `make lock`.
$(BIN)/.installed: pyproject.toml requirements-lock.txt src/skysift/core/_loops.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-lock.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

lock:
	$(BIN)/python -m pip install --quiet -e ".[all,dev]"
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^skysift' > requirements-lock.txt

install: $(BIN)/.installed

# checkov pins boto3, botocore, packaging and others below this project's pins, so it lives in a
# venv of its own, installed from its own lock (requirements-checkov.txt).
$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet -r requirements-checkov.txt
	touch $@

lock-checkov:
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet "checkov==$(CHECKOV_VERSION)"
	{ echo "# checkov, in its own venv (.venv-checkov, made by \`make checkov\`): it pins boto3, packaging and"; \
	  echo "# others below the project's own pins (requirements-lock.txt). Regenerate: \`make lock-checkov\`."; \
	  $(CHECKOV_VENV)/bin/python -m pip freeze; } > requirements-checkov.txt

# Every finding is fixed or skipped in template.yaml (Metadata: checkov: skip, with the reason).
checkov: $(CHECKOV_VENV)/.installed
	$(CHECKOV_VENV)/bin/checkov -f template.yaml --framework cloudformation --compact --quiet --skip-download

demo: install
	$(BIN)/skysift sample sky
	$(BIN)/skysift --home $(HOME_DIR) run sky
	$(BIN)/skysift --home $(HOME_DIR) query "SELECT COUNT(*) AS total_sources, AVG(flux) AS mean_flux, MAX(snr) AS max_snr FROM sources WHERE flux > 500"
	$(BIN)/skysift --home $(HOME_DIR) alerts
	$(BIN)/skysift --home $(HOME_DIR) plot sky/field_001.fits -o field_001.png

# Executed copies of the notebooks, outputs and figures included, that people can read without
# running them: notebooks/executed/*.ipynb (the notebooks themselves are committed without outputs).
# sky_analysis.ipynb reads the demo survey: run `make demo` first.
NOTEBOOKS ?= notebooks/sky_analysis.ipynb
notebooks: install
	SKYSIFT_HOME=$(HOME_DIR) SKYSIFT_SKY=sky $(BIN)/python notebooks/execute.py $(NOTEBOOKS)

test: install checkov
	$(BIN)/ruff check src tests benchmarks functions
	$(BIN)/lint-imports
	$(BIN)/cfn-lint template.yaml
	SAM_CLI_TELEMETRY=0 $(BIN)/sam validate --lint --region us-east-1
	$(BIN)/python -m pytest -n 2 --durations=15

# Needs Docker, the AWS CLI and credentials: builds and pushes the worker image, then sam build +
# sam deploy with WorkerImageUri set to it (ENV=prod for the prod stack; DRY_RUN=1 prints the commands).
deploy: install
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python scripts/deploy.py --config-env $(or $(ENV),default) $(if $(DRY_RUN),--dry-run)

bench: install
	$(BIN)/python benchmarks/bench_detect.py --repeats 5
	$(BIN)/python benchmarks/bench_accuracy.py

clean:
	rm -rf sky $(HOME_DIR) field_001.png .pytest_cache
