#!/usr/bin/env bash
# The whole test suite: every crate on SQLite (the store suite also on PostgreSQL), then the
# API suite again on PostgreSQL. PostgreSQL and Chromium come from Debian packages
# (`apt-get install -y postgresql chromium chromium-driver`); the tests start them themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace "$@"
PARLEY_TEST_BACKEND=postgres cargo test -p parley-server --test api "$@"
