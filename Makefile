# The two commands a newcomer runs (see README.md):
#   make demo   install everything, then run `telemed demo`
#   make test   install everything, then run the whole check (lint, types, tests)
.PHONY: demo test bootstrap check bench

bootstrap:
	bash scripts/bootstrap

demo: bootstrap
	.venv/bin/telemed demo

test: bootstrap
	bash scripts/check

check:
	bash scripts/check

bench: bootstrap
	.venv/bin/python -m benchmarks.signaling_relay
