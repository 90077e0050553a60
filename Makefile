# make run     start the whole portal locally (http://localhost:9000); Ctrl-C stops it
# make test    every test: rustfmt and clippy gates, Rust unit/integration tests, cfn-lint, the pytest
#              end-to-end suite
# make emails  print the emails the local portal has sent so far (recipient, subject, body)
# make bench   DynamoDB calls per operation (on moto) and handler time per request
# make lint    cfn-lint on infra/template.yaml
# make clean   remove build output (make distclean also removes .venv)
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

# `cargo lambda` is the cargo-lambda of the virtual environment.
export PATH := $(CURDIR)/.venv/bin:$(PATH)

PYTHON := $(CURDIR)/.venv/bin/python
LOCAL_AWS_PORT ?= 4566

.PHONY: run test emails lint clean distclean setup bench

setup:
	scripts/setup.sh

run:
	scripts/setup.sh
	$(PYTHON) scripts/stack.py

test:
	scripts/setup.sh --browser
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo build --workspace --bins
	cargo test --workspace
	.venv/bin/cfn-lint infra/template.yaml
# The pytest suite starts its own stack (scripts/stack.py) on ports of its own.
	.venv/bin/pytest -q tests

bench:
	scripts/setup.sh
	cargo bench -p portal --bench operations

emails:
	@$(PYTHON) scripts/local_aws.py emails --endpoint-url http://127.0.0.1:$(LOCAL_AWS_PORT)

lint:
	.venv/bin/cfn-lint infra/template.yaml

clean:
	cargo clean
	rm -rf .pytest_cache
	find . -path ./.venv -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf .venv
