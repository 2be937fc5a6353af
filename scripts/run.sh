#!/usr/bin/env bash
# `make run`: the service in development mode. It migrates the database, registers a demo
# provider with a user administrator and a user (again on each run: "already exists" is
# fine), then runs `selfreset --dev serve` on http://127.0.0.1:8080 (SELFRESET_ADDR) with
# emails printed to this terminal (the console mail driver). Ctrl-C stops it.
#
# Database: SELFRESET_DATABASE_URL if set; else a database "selfreset_dev" on the server
# scripts/test.sh would use (127.0.0.1:5432, installed as root on Debian if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

need_go

if [[ -z ${SELFRESET_DATABASE_URL:-} ]]; then
	ensure_postgres
	if command -v psql >/dev/null 2>&1; then
		if [[ -z $(psql "$PG_SERVER_URL" -qtAc "SELECT 1 FROM pg_database WHERE datname = 'selfreset_dev'") ]]; then
			say "creating database selfreset_dev"
			psql "$PG_SERVER_URL" -qc 'CREATE DATABASE selfreset_dev'
		fi
		export SELFRESET_DATABASE_URL="postgres://postgres@${PG_HOST}:${PG_PORT}/selfreset_dev?sslmode=disable"
	else
		export SELFRESET_DATABASE_URL=$PG_SERVER_URL
	fi
fi

# The binary goes to bin/ (ignored by git): exec below replaces this shell.
bin_dir=bin
mkdir -p "$bin_dir"
say "go build ./cmd/selfreset"
go build -o "$bin_dir/selfreset" ./cmd/selfreset
selfreset() { "$bin_dir/selfreset" --dev "$@"; }

# once runs a registration and accepts "already exists" (this script runs again and again).
# It sets created=1 when the registration happened now, 0 when it had been done before.
created=0
once() {
	local out
	created=0
	if out=$(selfreset "$@" 2>&1); then
		created=1
		printf '%s\n' "$out" | grep -v 'DEVELOPMENT MODE' || true
	elif grep -q 'already exists' <<<"$out"; then
		printf '%s\n' "$out" | grep 'already exists' | sed 's/^selfreset: /(ok) /'
	else
		printf '%s\n' "$out" >&2
		return 1
	fi
}

# Development-only demo passwords: this database is for trying things out.
demo_admin_password='demo-Admin-passphrase-42'
demo_user_password='demo-Jane-passphrase-42'

selfreset migrate
once provider add --code DEMO --name "Demo Agency" --allow-self-reset
once user add --provider DEMO --login admin --name "Demo Admin" --role user-admin --password-stdin <<<"$demo_admin_password"
admin_new=$created
once user add --provider DEMO --login jane --name "Jane Doe" --password-stdin <<<"$demo_user_password"
jane_new=$created

# A demo password is printed only on the run that set it: afterwards it may have been
# changed (Change Password, a reset), and printing it would mislead.
demo_login() { # login password new
	if [[ $3 == 1 ]]; then
		printf '%s / %s' "$1" "$2"
	else
		printf '%s (password as last set)' "$1"
	fi
}

addr=${SELFRESET_ADDR:-127.0.0.1:8080}
cat <<MSG

Demo provider DEMO: $(demo_login admin "$demo_admin_password" "$admin_new") (user-admin), $(demo_login jane "$demo_user_password" "$jane_new")
Locked out? $bin_dir/selfreset --dev user unlock --provider DEMO --login jane   (lifts admin and failed-login locks)
Forgot a demo password? Use Forgot Password? (once Self Password Reset is configured), ask the admin
to "Send password reset" from Admin › User List, or start over: drop the database below, then make run.
Database: $SELFRESET_DATABASE_URL
Open http://$addr/login . Emails (codes, tokens) are printed below by the console mail driver.
Auditors: SELFRESET_DATABASE_URL='$SELFRESET_DATABASE_URL' go run ./cmd/selfreset audit --provider DEMO
MSG
exec "$bin_dir/selfreset" --dev serve
