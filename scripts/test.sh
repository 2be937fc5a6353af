#!/usr/bin/env bash
# The whole test suite, on a clean clone: `make test` runs this, and so does .ci/run.
#
#   1. Go must be installed (1.26, or 1.21+ which fetches 1.26 by itself).
#   2. PostgreSQL: SELFRESET_TEST_DATABASE_URL if set; else the server on 127.0.0.1:5432;
#      else, as root on Debian/Ubuntu, apt-get installs and starts a throwaway one.
#      Every test creates (and drops) a database of its own on that server.
#   3. gofmt, go vet, staticcheck, go test ./... (the EventStoreDB contract suite runs only when
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

# ---- browser tests: headless Chromium for cmd/selfreset's TestBrowserWalk ------------
# The test drives the Chromium that SELFRESET_CHROMIUM names. Without one it skips, but
# under CI=true it fails: install Debian's chromium here when we can.
if [[ -z ${SELFRESET_CHROMIUM:-} ]] && ! command -v chromium >/dev/null 2>&1; then
	if is_debian_root; then
		say "installing Chromium with apt-get (for the browser test)"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq chromium >/dev/null
	else
		say "Chromium is not installed, and this script installs it only as root on Debian/Ubuntu; the browser test will skip (and fail under CI=true)"
	fi
fi
if [[ -z ${SELFRESET_CHROMIUM:-} ]] && command -v chromium >/dev/null 2>&1; then
	SELFRESET_CHROMIUM=$(command -v chromium) # /usr/bin/chromium on Debian
	export SELFRESET_CHROMIUM
	say "using Chromium at $SELFRESET_CHROMIUM"
fi
# ---------------------------------------------------------------------------------------

say "gofmt"
unformatted=$(gofmt -l .)
if [[ -n $unformatted ]]; then
	printf '%s\n' "$unformatted" >&2
	die "these files are not gofmt-formatted; run: gofmt -w ."
fi

say "go vet ./..."
go vet ./...

# staticcheck at a pinned version (fetched through the Go module proxy on first use).
say "staticcheck ./..."
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

say "go test ./..."
go test ./... -count=1 -timeout 15m
say "all tests passed"
