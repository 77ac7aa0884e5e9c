# Two entry points: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench browser postgres

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# Browser tests drive Debian's chromium; install it where we may (root with apt), never download one.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
		echo "chromium not installed: browser tests will skip unless XENT_REQUIRE_BROWSER=1"; }

# The PostgreSQL test starts its own cluster from Debian's postgresql; install it the same way.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql postgresql-client >/dev/null) || \
		echo "postgresql not installed: the PostgreSQL test will skip unless XENT_REQUIRE_POSTGRES=1"; }

demo: install
	$(VENV)/bin/xent-train

test: install browser postgres
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check xent_plugin tests scripts
	$(VENV)/bin/ruff format --check xent_plugin tests scripts

bench: install
	$(PY) scripts/bench.py
