# qcstack: `make up` brings the stack up, `make test` runs every suite. See README.md.
CA_BUNDLE ?= /etc/ssl/certs/ca-certificates.crt
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: up down test vm-test lint unit docker browser venv mutation-check controls bench

up: docker venv
	bin/qcstack up

down: venv
	bin/qcstack down

test: docker browser venv lint
	bin/qcstack test

# A pyinfra deploy of a test stack to a fresh test VM, then the infra suites over SSH (issue 6).
vm-test: docker venv
	bin/qcstack vm-test

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

unit: venv
	$(PY) -m pytest -p no:cacheprovider tests

mutation-check: docker venv
	bin/qcstack mutation-check

controls: venv
	bin/qcstack controls --write-readme

bench: docker venv
	$(PY) benchmarks/image_size.py
	$(PY) benchmarks/gateway_latency.py

docker:
	scripts/install-docker

browser:
	scripts/install-browser

venv: $(VENV)/.installed

$(VENV)/.installed: locks/dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --cert $(CA_BUNDLE) --require-hashes --no-deps -r locks/dev.txt
	touch $@
