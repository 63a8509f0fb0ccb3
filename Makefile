# The two commands a newcomer runs (see README.md):
#   make demo   install everything, then run `telemed demo`
#   make test   install everything, then run the whole check (what CI runs: .ci/run)
# The contributor's loop, once bootstrapped (see CONTRIBUTING.md):
#   make fmt        format and fix what the linters can fix
#   make lint       ruff (format and rules), the cancellation rule, ESLint
#   make types      mypy --strict
#   make test-fast  the Node unit tests, and the pytest tests without a browser, PostgreSQL
#                   or slow ones
#   make check      all of it: scripts/check (lint, types, Node tests, every pytest test)
#   make fuzz       the fuzz tests (tests/**/test_fuzz_*.py) with 10x their CI budget
#                   (FUZZ_SCALE=N to change it), printing each run's figures; a run may
#                   take minutes (the test timeouts are lifted)
#   make wan        the WAN test bed's tests (tests/wan: network namespaces, needs root) with
#                   the issue's long outages (WAN_LONG=1: coturn down for 100 s), and the
#                   trend backfill across a 60 s server outage (20 s in make test)
.PHONY: demo test bootstrap check fmt lint types test-fast bench fuzz wan

FUZZ_SCALE ?= 10

PYTEST_FAST = -m "not slow and not browser and not postgres" -n 2

bootstrap:
	bash scripts/bootstrap

demo: bootstrap
	.venv/bin/telemed demo

test: bootstrap
	bash scripts/check

check:
	bash scripts/check

fmt:
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .
	node_modules/.bin/eslint --fix clinic_ui/static/js tests/clinic_ui eslint.config.js

lint:
	bash scripts/check lint

types:
	bash scripts/check types

test-fast:
	bash scripts/check js
	.venv/bin/python -m pytest $(PYTEST_FAST) -q

bench: bootstrap
	.venv/bin/python -m benchmarks.signaling_relay

fuzz: bootstrap
	TELEMED_FUZZ_SCALE=$(FUZZ_SCALE) .venv/bin/python -m pytest -q -s --timeout=7200 $$(find tests -name 'test_fuzz_*.py' | sort)

wan: bootstrap
	WAN_LONG=1 .venv/bin/python -m pytest -q -s tests/wan tests/e2e/test_trends_backfill.py
