# The two commands of the README's quick start: `make run` and `make test`.
VENV ?= .venv
PYTHON ?= python3
CONFIG ?= etc/acme-appliance.toml
TRIAL_JOBS ?= 2

.PHONY: run test unit integration install venv typecheck lint format bench profile mutants clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip

# Non-editable on purpose: the twistd plugin must be found from an installed copy.
install: $(VENV)/bin/python
	$(VENV)/bin/pip install -q ".[test]"

run: install
	$(VENV)/bin/twistd -n --pidfile= acme-appliance --config $(CONFIG)

test:
	./scripts/install-system-deps test
	$(MAKE) lint
	$(VENV)/bin/python -m twisted.trial -j$(TRIAL_JOBS) tests

# Types, style and the structure: mypy (strict), ruff, the import layers, sizes.
lint: install
	$(VENV)/bin/mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/python scripts/check_structure.py

unit: install
	$(VENV)/bin/python -m twisted.trial tests.unit

integration: install
	$(VENV)/bin/python -m twisted.trial tests.integration

typecheck: install
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: install
	$(VENV)/bin/python -m bench

# Where the appliance's time goes under load: bench.issuance with twistd under
# cProfile (statistics in profile.stats), then the top functions by own time.
profile: install
	$(VENV)/bin/python -m bench.issuance --seconds 10 --workers 1 --profile profile.stats
	$(VENV)/bin/python -c "import pstats; pstats.Stats('profile.stats').sort_stats('tottime').print_stats(25)"

# Curated mutations of the critical checks, each of which the unit tests must
# catch (scripts/mutants.toml); by hand and before a release, not in `test`.
# `make mutants MUTANTS="lock-noop hmac-secret"` runs only those.
mutants: install
	$(VENV)/bin/python scripts/mutants.py $(MUTANTS)

clean:
	rm -rf $(VENV) build *.egg-info _trial_temp* etc/var profile.stats
