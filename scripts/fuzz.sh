#!/usr/bin/env bash
# Fuzzes every parser target for N seconds each (default 60) with the stable toolchain:
#   scripts/fuzz.sh [N] [--seed S]
# Builds crates/parley-fuzz in release, mutates the seed corpus in fuzz/corpus/<target>/ and
# saves each failing input, shrunk, in fuzz/findings/<target>/ (<hash>.input and <hash>.txt).
# Exits nonzero when a target finds something. Not run in CI; see docs/CONTRIBUTING.md.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
shift || true

# PARLEY_CARGO lets a shared machine wrap the build, e.g. PARLEY_CARGO="flock /tmp/cargo.lock cargo".
bin=$(${PARLEY_CARGO:-cargo} build --release -p parley-fuzz --locked --message-format=json-render-diagnostics |
  sed -n 's/.*"executable":"\([^"]*parley-fuzz\)".*/\1/p' | tail -n 1)
[ -x "$bin" ] || { echo "parley-fuzz did not build" >&2; exit 2; }

status=0
for target in $("$bin" list); do
  "$bin" "$target" --seconds "$seconds" "$@" || status=$?
done
if [ "$status" -ne 0 ]; then
  echo "fuzzing found problems: see fuzz/findings/ (replay one with: $bin replay <target> <file>)" >&2
fi
exit "$status"
