#!/usr/bin/env bash
# The whole test suite, on a clean clone: `make test` runs this, and so does .ci/run.
#
#   1. Go must be installed (1.26, or 1.21+ which fetches 1.26 by itself).
#   2. PostgreSQL: SELFRESET_TEST_DATABASE_URL if set; else the server on 127.0.0.1:5432;
#      else, as root on Debian/Ubuntu, apt-get installs and starts a throwaway one.
#      Every test creates (and drops) a database of its own on that server.
#   3. gofmt, go vet, go test ./... (the EventStoreDB contract suite runs only when
#      SELFRESET_EVENTSTORE_URL points at a server; otherwise it skips and says how).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

need_go

if [[ -n ${SELFRESET_TEST_DATABASE_URL:-} ]]; then
	say "using SELFRESET_TEST_DATABASE_URL"
else
	ensure_postgres
	export SELFRESET_TEST_DATABASE_URL=$PG_SERVER_URL
fi

# ---- browser tests: a later issue installs Debian's chromium here -------------------
# (e.g. `apt-get install -y chromium` as root on Debian, and export the path the
# headless browser tests look for). Nothing to do yet.
# ---------------------------------------------------------------------------------------

say "gofmt"
unformatted=$(gofmt -l .)
if [[ -n $unformatted ]]; then
	printf '%s\n' "$unformatted" >&2
	die "these files are not gofmt-formatted; run: gofmt -w ."
fi

say "go vet ./..."
go vet ./...

say "go test ./..."
go test ./... -count=1 -timeout 15m
say "all tests passed"
