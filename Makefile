# Two commands matter: `make run` (the whole system, embedded stack by default) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install system-deps run test lint typecheck unit e2e bench soak vendor clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,embedded,sim]'
	touch $(STAMP)

install: $(STAMP)

# Debian packages some tests and benchmarks use: a headless browser for the page tests, CJK fonts
# for their texts, Node to run the volunteer app's modules in unit tests, wrk for the load
# benchmark. Installed when we may (root + apt).
DEBS := chromium chromium-driver fonts-noto-cjk nodejs wrk
system-deps:
	@missing=""; for cmd in chromium chromedriver node wrk; do command -v $$cmd >/dev/null || missing=yes; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEBS) >/dev/null; \
	  else echo "note: install $(DEBS) (Debian) for the browser test and the load benchmark"; fi; \
	fi

run: install
	$(BIN)/errands run

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

test: system-deps
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory lint typecheck && $(BIN)/python -m pytest; status=$$?; \
	took=$$(( $$(date +%s) - start )); echo "make test took $$((took / 60)) min $$((took % 60)) s"; exit $$status

unit: install
	$(BIN)/python -m pytest tests/unit

e2e: install
	$(BIN)/python -m pytest tests/e2e

# Speed and quality figures, each a ratio against a baseline measured in the same run.
bench: system-deps install
	$(BIN)/python -m bench

# Long reliability runs (10,000 tasks under repeated crashes).
soak: install
	ERRANDS_SOAK=1 $(BIN)/python -m pytest -m soak tests/reliability

# The pages' front-end libraries, pinned in web/package.json, copied with their licences into
# shared/web/vendor/ (committed: running the services never needs npm or a CDN).
vendor:
	cd web && npm ci --no-audit --no-fund --ignore-scripts && node vendor.mjs

clean:
	rm -rf $(VENV) .errands .mypy_cache .ruff_cache .pytest_cache
