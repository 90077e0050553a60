#!/usr/bin/env bash
# Installs the local tools that `make run` and `make test` need; safe to run again (it only does
# what is missing or out of date).
#   scripts/setup.sh            the Python virtual environment .venv from requirements-dev.txt
#                               (moto server, cargo-lambda, cfn-lint, pytest, selenium, boto3...)
#   scripts/setup.sh --browser  also Debian's chromium and chromium-driver, and the npm packages of
#                               package.json (axe-core, which the browser tests inject) in node_modules
#   scripts/setup.sh --sam      also .venv-sam, the AWS SAM CLI of requirements-sam.txt in a virtual
#                               environment of its own (its pins clash with moto's)
#   scripts/setup.sh --package  also the aarch64-unknown-linux-gnu Rust target (make package: the
#                               functions as Lambda runs them, arm64; zig comes from .venv)
set -euo pipefail
cd "$(dirname "$0")/.."

browser=0 sam=0 package=0
for arg in "$@"; do
  case "$arg" in
    --browser) browser=1 ;;
    --sam) sam=1 ;;
    --package) package=1 ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "setup.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

say() { echo "[setup] $*" >&2; }

# --- Rust -----------------------------------------------------------------------------------
if ! command -v cargo >/dev/null 2>&1; then
  say "cargo is not on PATH: install the Rust toolchain (https://rustup.rs) or add ~/.cargo/bin to PATH."
  exit 1
fi

# make test checks formatting and lints: the toolchain's rustfmt and clippy components.
for component in fmt clippy; do
  if ! cargo "$component" --version >/dev/null 2>&1; then
    say "cargo $component is missing: run 'rustup component add rustfmt clippy'."
    exit 1
  fi
done
# make check and make test run clippy as the workspace's compiler (RUSTC_WORKSPACE_WRAPPER).
if ! clippy-driver --version >/dev/null 2>&1; then
  say "clippy-driver is not on PATH (it comes with the clippy component, beside cargo-clippy)."
  exit 1
fi

# --- Python virtual environment ------------------------------------------------------------
VENV=.venv
STAMP="$VENV/.requirements-dev.stamp"
if [ ! -x "$VENV/bin/python" ]; then
  PYTHON="${PYTHON:-python3}"
  if ! command -v "$PYTHON" >/dev/null 2>&1; then
    say "python3 is not installed (Debian: apt-get install python3 python3-venv)."
    exit 1
  fi
  say "creating $VENV with $("$PYTHON" --version 2>&1)"
  if ! "$PYTHON" -m venv "$VENV"; then
    rm -rf "$VENV"
    say "'$PYTHON -m venv' failed (Debian: apt-get install python3-venv)."
    exit 1
  fi
  rm -f "$STAMP"
fi
if [ ! -f "$STAMP" ] || [ requirements-dev.txt -nt "$STAMP" ]; then
  say "installing requirements-dev.txt into $VENV"
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r requirements-dev.txt
  touch "$STAMP"
fi

# --- AWS SAM CLI (sam validate --lint, sam build, sam deploy) -------------------------------
SAM_VENV=.venv-sam
SAM_STAMP="$SAM_VENV/.requirements-sam.stamp"
if [ "$sam" = 1 ] && { [ ! -f "$SAM_STAMP" ] || [ requirements-sam.txt -nt "$SAM_STAMP" ]; }; then
  if [ ! -x "$SAM_VENV/bin/python" ]; then
    say "creating $SAM_VENV"
    "${PYTHON:-python3}" -m venv "$SAM_VENV" || { rm -rf "$SAM_VENV"; say "python3 -m venv failed"; exit 1; }
  fi
  say "installing requirements-sam.txt into $SAM_VENV"
  "$SAM_VENV/bin/python" -m pip install --disable-pip-version-check -q -r requirements-sam.txt
  touch "$SAM_STAMP"
fi

# --- arm64 target for make package ---------------------------------------------------------
if [ "$package" = 1 ] && ! rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu; then
  if ! command -v rustup >/dev/null 2>&1; then
    say "make package needs the aarch64-unknown-linux-gnu target: install it with your toolchain's tools."
    exit 1
  fi
  say "adding the Rust target aarch64-unknown-linux-gnu (rustup)"
  rustup target add aarch64-unknown-linux-gnu
fi

# --- Browser for the end-to-end tests --------------------------------------------------------
if [ "$browser" = 1 ] && [ ! -x /usr/bin/chromedriver ]; then
  if [ "$(id -u)" != 0 ]; then
    say "the browser tests need Debian's chromium and chromium-driver; as root, run:"
    say "  apt-get update && apt-get install -y --no-install-recommends chromium chromium-driver"
    exit 1
  fi
  say "installing chromium and chromium-driver (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends chromium chromium-driver
fi
# The exact versions of package-lock.json (npm ci), again whenever the lock file changes.
NPM_STAMP=node_modules/.package-lock.stamp
# make run needs them too: the local OpenID Connect provider (oidc-provider).
if [ ! -f "$NPM_STAMP" ] || [ package-lock.json -nt "$NPM_STAMP" ]; then
  if ! command -v npm >/dev/null 2>&1; then
    if [ "$browser" = 1 ]; then
      say "the tests need Node.js 20 and npm (package.json: axe-core, oidc-provider)"
      exit 1
    fi
    say "no npm: make run starts without the local OpenID Connect provider"
  else
    say "installing package-lock.json's npm packages (npm ci)"
    npm ci --no-audit --no-fund --loglevel=error
    touch "$NPM_STAMP"
  fi
fi
exit 0
