# make run     start the whole portal locally (http://localhost:9000); Ctrl-C stops it
# make check   the inner loop (minutes): rustfmt and clippy gates, the Rust tests except the fault
#              matrix (unit tests and the integration suite, in memory and on moto), cfn-lint
# make test    every test: rustfmt and clippy gates, Rust unit/integration tests with the fault
#              matrix, cfn-lint and sam validate --lint, the pytest end-to-end suite, the IAM
#              coverage of its AWS calls (what CI runs, through .ci/run)
# make package the eight functions built for Lambda (arm64, release), zipped; prints each size
#              (FUNCTIONS="sign-in ..." builds only those)
# make deploy  sam build && sam deploy (samconfig.toml; --guided until it holds the parameters)
# make smoke URL=https://... [STACK=portal]  the HTTP journey against a deployed portal with a
#              throwaway account, deleted afterwards through the stack's tables
# make cost    monthly cost per 100,000 active users against Amazon Cognito (scripts/cost.py)
# make emails  print the emails the local portal has sent so far (recipient, subject, body)
# make events  print the portal events the local portal has published on its bus so far
#              (DetailType, time, detail), read from the bus's catch-all tap queue
# make bench   DynamoDB calls per operation (on moto) and handler time per request
# make load    a simulated day for 100,000 MAU at 1/100 scale on a local stack of its own (free
#              ports): latency, DynamoDB calls and capacity units per operation, the month's
#              DynamoDB cost from them beside make cost's, nothing lost (scripts/load.py;
#              SCALE=0.1 for a tenth, LOAD_ARGS for its other options)
# make lint    cfn-lint on infra/template.yaml
# make clean   remove build output (make distclean also removes .venv)
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

# `cargo lambda` is the cargo-lambda of the virtual environment.
export PATH := $(CURDIR)/.venv/bin:$(PATH)

PYTHON := $(CURDIR)/.venv/bin/python
LOCAL_AWS_PORT ?= 4566

# Each recorded AWS call of the functions in the pytest suite (scripts/aws_recorder.py).
AWS_CALLS := $(CURDIR)/.local/aws-calls
SAM := $(CURDIR)/.venv-sam/bin/sam
# The SAM CLI reports usage to AWS unless told not to; nothing here calls out.
export SAM_CLI_TELEMETRY := 0

.PHONY: run check test emails events lint clean distclean setup bench load package deploy smoke cost screenshots

setup:
	scripts/setup.sh

run:
	scripts/setup.sh
	$(PYTHON) scripts/stack.py

# The Rust tests of `make check`: every unit test, the integration suite (shared/tests/suite) and
# the audit log test (a binary of its own) and the sign-in binary's log test; the fault matrix (shared/tests/fault_matrix.rs) is left to make test.
CHECK_TESTS := --lib --bins --test suite --test audit_log --test no_payload_in_logs

# Clippy lints while cargo builds: it runs as the compiler of the workspace's own crates (cargo's
# RUSTC_WORKSPACE_WRAPPER, which is how `cargo clippy` itself works), so that `cargo build
# --all-targets` gives the lints of `cargo clippy --all-targets -- -D warnings` and the build in one
# compile of the tree. A separate `cargo clippy` checked the whole dependency tree once more: 3.5 of
# a clean CI run's minutes. Every cargo command of these targets (and the stacks pytest starts)
# sees the same two variables, so none builds the workspace again without them.
check test: export RUSTC_WORKSPACE_WRAPPER = clippy-driver
check test: export CLIPPY_ARGS = -D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__

check:
	scripts/setup.sh
	cargo fmt --all --check
	cargo build --workspace --all-targets
	cargo test --workspace $(CHECK_TESTS)
	.venv/bin/cfn-lint infra/template.yaml

# Each step group prints when it starts (`.ci/run`'s log gives the phases' times).
STEP = @echo "== [make test] $(1) at $$(date -u +%T)"

test:
	scripts/setup.sh --browser --sam
	$(call STEP,compile (fmt check; every target built and linted by clippy))
	cargo fmt --all --check
	cargo build --workspace --all-targets
	$(call STEP,cargo test)
	cargo test --workspace
	$(call STEP,template checks)
	.venv/bin/cfn-lint infra/template.yaml
	AWS_DEFAULT_REGION=us-east-1 $(SAM) validate --lint --template-file infra/template.yaml
# The pytest suite starts its own stacks (scripts/stack.py) on ports of their own, recording
# every AWS call a function makes; then each call is held against the function's role.
	$(call STEP,pytest)
	rm -rf $(AWS_CALLS) && mkdir -p $(AWS_CALLS)
	PORTAL_RECORD_AWS_CALLS_DIR=$(AWS_CALLS) .venv/bin/pytest -q --durations=25 -n 3 --dist loadfile tests
	$(call STEP,IAM coverage)
	$(PYTHON) scripts/iam_coverage.py $(AWS_CALLS)/*.jsonl
	$(call STEP,done)

# The functions `make package` builds (all eight unless FUNCTIONS names some).
FUNCTIONS ?=
package:
	scripts/setup.sh --package
	scripts/package.sh $(FUNCTIONS)

# The first deploy asks for the parameters (--guided) and saves them in samconfig.toml.
GUIDED = $(if $(shell grep -qs '^parameter_overrides' samconfig.toml && echo saved),,--guided)
deploy:
	scripts/setup.sh --sam --package
	$(SAM) build --template-file infra/template.yaml
	$(SAM) deploy $(GUIDED)

smoke:
	@test -n "$(URL)" || { echo "usage: make smoke URL=https://portal.example.com" >&2; exit 2; }
	scripts/setup.sh
	$(PYTHON) scripts/smoke.py "$(URL)" $(if $(STACK),--stack "$(STACK)")

# COST_ARGS="--units .local/load-units.json" prices the last make load run instead of the units
# scripts/cost.py holds (MEASURED).
COST_ARGS ?=
# Pictures of the pages at 1280 and 390 px wide in docs/screenshots/ (a stack of its own).
screenshots: export RUSTC_WORKSPACE_WRAPPER = clippy-driver
screenshots: export CLIPPY_ARGS = -D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
screenshots:
	scripts/setup.sh --browser
	$(PYTHON) scripts/screenshots.py

cost:
	@scripts/setup.sh
	@$(PYTHON) scripts/cost.py $(COST_ARGS)

bench:
	scripts/setup.sh
	cargo bench -p portal --bench operations
	cargo bench -p portal --bench imports

# The stack builds the functions itself (cargo build, the dev profile) before it starts.
SCALE ?= 1
LOAD_ARGS ?=
# It builds as make check and make test do (clippy as the workspace's compiler), so that neither
# compiles the workspace again after it.
load: export RUSTC_WORKSPACE_WRAPPER = clippy-driver
load: export CLIPPY_ARGS = -D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
load:
	scripts/setup.sh
	$(PYTHON) scripts/load.py --scale $(SCALE) $(LOAD_ARGS)

emails:
	@$(PYTHON) scripts/local_aws.py emails --endpoint-url http://127.0.0.1:$(LOCAL_AWS_PORT)

events:
	@$(PYTHON) scripts/local_aws.py events --endpoint-url http://127.0.0.1:$(LOCAL_AWS_PORT)

lint:
	.venv/bin/cfn-lint infra/template.yaml

clean:
	cargo clean
	rm -rf .pytest_cache
	find . -path ./.venv -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf .venv
