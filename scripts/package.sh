#!/usr/bin/env bash
# make package: every Lambda function built as AWS runs it (arm64, release, provided.al2023) and
# zipped, with each zip's size. cargo-lambda cross-compiles with zig (the venv's ziglang: cargo
# lambda finds `python3 -m ziglang` through the venv's python3 first on PATH).
#   scripts/package.sh                 every function (eight)
#   scripts/package.sh sign-in ...     only these (CI builds one: see .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"

# The binaries the template deploys (Metadata.BuildProperties.Binary of each function).
ALL=(sign-in register profile create-invitation redeem-invitation external-sign-in send-email email-feedback)
if [ $# -gt 0 ]; then
  FUNCTIONS=("$@")
  for f in "${FUNCTIONS[@]}"; do
    [[ " ${ALL[*]} " == *" $f "* ]] || { echo "package: '$f' is not one of: ${ALL[*]}" >&2; exit 2; }
  done
else
  FUNCTIONS=("${ALL[@]}")
fi

if ! rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu; then
  echo "package: the aarch64 target is missing: scripts/setup.sh --package (rustup target add aarch64-unknown-linux-gnu)" >&2
  exit 1
fi
# Packages selected together have their features unified, and only external-sign-in turns on the
# portal crate's `oidc` feature (the OpenID Connect client: its crypto and HTTP client). So it is
# built apart, and the other six (CI's sign-in among them) compile none of that code. `--bin` alone
# would select the whole workspace's features.
plain=() oidc=()
for f in "${FUNCTIONS[@]}"; do
  if [ "$f" = external-sign-in ]; then oidc+=(--package "$f"); else plain+=(--package "$f"); fi
done
if [ ${#plain[@]} -gt 0 ]; then
  cargo lambda build --release --arm64 --output-format zip "${plain[@]}"
fi
if [ ${#oidc[@]} -gt 0 ]; then
  cargo lambda build --release --arm64 --output-format zip "${oidc[@]}"
fi

target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
# The size budget of a bootstrap (issue 20: 8 MB; README "The arm64 bootstraps"): a build over it
# fails, so that the functions stay small as features land.
MAX_BOOTSTRAP_BYTES=${MAX_BOOTSTRAP_BYTES:-8000000}
over=()
printf '%-20s %12s %12s\n' function "zip bytes" "bootstrap"
for f in "${FUNCTIONS[@]}"; do
  zip="$target_dir/lambda/$f/bootstrap.zip"
  [ -f "$zip" ] || { echo "package: $zip was not built" >&2; exit 1; }
  unzipped=$(python3 -c 'import sys,zipfile; print(sum(i.file_size for i in zipfile.ZipFile(sys.argv[1]).infolist()))' "$zip")
  printf '%-20s %12d %12d\n' "$f" "$(stat -c %s "$zip")" "$unzipped"
  [ "$unzipped" -le "$MAX_BOOTSTRAP_BYTES" ] || over+=("$f")
done
if [ ${#over[@]} -gt 0 ]; then
  echo "package: over the budget of $MAX_BOOTSTRAP_BYTES bytes per bootstrap: ${over[*]}" >&2
  exit 1
fi
