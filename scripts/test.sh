#!/usr/bin/env bash
# The whole test suite: every crate on SQLite (the store suite also on PostgreSQL), then the
# API suite and the crash tests again on PostgreSQL. The tests start PostgreSQL and headless Chromium themselves,
# from Debian's packages: this script installs those packages first when they are missing and
# it runs as root (as on CI), or says in one line what to install otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || command -v initdb >/dev/null || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing ${missing[*]} (Debian packages the tests use)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "The tests need Debian packages that are missing; install them first: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

# Live (not zombie) Chromium processes: the browser tests must end every one they start.
live_chromium() { ps -eo stat=,comm= | awk '$2 == "chromium" && $1 !~ /^Z/' | wc -l; }
before=$(live_chromium)

cargo test --workspace "$@"
PARLEY_TEST_BACKEND=postgres cargo test -p parley-server --test api "$@"
# The crash and chaos tests (real processes, SIGKILL) on PostgreSQL too.
PARLEY_TEST_BACKEND=postgres cargo test -p parley-cli --test cli crash:: "$@"

sleep 1
left=$(( $(live_chromium) - before ))
if [ "$left" -gt 0 ]; then
  echo "the tests left $left Chromium processes running: a browser test did not end its browser" >&2
  exit 1
fi
