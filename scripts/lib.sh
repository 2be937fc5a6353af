# shellcheck shell=bash
# Helpers shared by scripts/test.sh and scripts/run.sh. Source it; it defines functions only.
#
#   need_go          fail with a clear message unless a Go toolchain is on PATH
#   ensure_postgres  make a PostgreSQL server reachable as the trusted user "postgres" on
#                    127.0.0.1:5432 (installing and starting one as root on Debian if none
#                    runs) and set PG_SERVER_URL to its maintenance database

PG_HOST=127.0.0.1
PG_PORT=5432
PG_DEFAULT_URL="postgres://postgres@${PG_HOST}:${PG_PORT}/postgres?sslmode=disable"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

need_go() {
	if ! command -v go >/dev/null 2>&1; then
		die "Go is not installed (or not on PATH). Install Go 1.26 or newer from https://go.dev/dl/ and run this again."
	fi
	# go.mod asks for go 1.26; a go command from 1.21 on fetches that toolchain by itself
	# (GOTOOLCHAIN=auto), older ones cannot.
	local v
	v=$(go env GOVERSION 2>/dev/null || true)
	case "$v" in
	go1.1[0-9]* | go1.[0-9] | go1.[0-9].* | go1.20*)
		die "Go $v is too old for this module (it needs 1.26; 1.21 or newer can fetch it). Install a current Go from https://go.dev/dl/." ;;
	esac
}

# pg_listening: is something accepting connections on 127.0.0.1:5432?
pg_listening() {
	if command -v pg_isready >/dev/null 2>&1; then
		pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 3
	else
		(exec 3<>"/dev/tcp/${PG_HOST}/${PG_PORT}") 2>/dev/null
	fi
}

# pg_can_connect: can we log in as postgres without a password? (true when psql is
# missing: the tests then report a refused login themselves, with the URL they used)
pg_can_connect() {
	if ! command -v psql >/dev/null 2>&1; then
		return 0
	fi
	psql "$PG_DEFAULT_URL" -qtAc 'SELECT 1' >/dev/null 2>&1
}

is_debian_root() {
	[[ $(id -u) -eq 0 && -f /etc/debian_version ]] && command -v apt-get >/dev/null 2>&1
}

# debian_cluster: "<version> <name>" of the Debian cluster on port 5432, if there is one.
debian_cluster() {
	command -v pg_lsclusters >/dev/null 2>&1 || return 0
	pg_lsclusters --no-header 2>/dev/null | awk -v port="$PG_PORT" '$3 == port { print $1, $2; exit }'
}

# trust_localhost lets "postgres" log in from 127.0.0.1 without a password, on a
# throwaway cluster this script installed or found stopped.
trust_localhost() {
	local ver=$1 name=$2 hba
	hba=$(pg_conftool "$ver" "$name" show -s hba_file 2>/dev/null || echo "/etc/postgresql/$ver/$name/pg_hba.conf")
	if ! grep -Eq '^host[[:space:]]+all[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "$hba"; then
		say "allowing passwordless logins from 127.0.0.1 in $hba (a throwaway test cluster)"
		# Rules match first to last: put ours first.
		sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
		pg_ctlcluster "$ver" "$name" reload
	fi
}

ensure_postgres() {
	# shellcheck disable=SC2034 # read by the scripts that source this file
	PG_SERVER_URL=$PG_DEFAULT_URL
	if pg_listening && pg_can_connect; then
		say "using the PostgreSQL server on ${PG_HOST}:${PG_PORT}"
		return 0
	fi
	if pg_listening && { ! is_debian_root || [[ -z $(debian_cluster) ]]; }; then
		die "a PostgreSQL server listens on ${PG_HOST}:${PG_PORT} but refuses user postgres without a password. Set SELFRESET_TEST_DATABASE_URL (and SELFRESET_DATABASE_URL for make run) to a URL that works, e.g. postgres://user:password@host:5432/postgres?sslmode=disable"
	fi
	if ! is_debian_root; then
		die "no PostgreSQL server on ${PG_HOST}:${PG_PORT}, and this script installs one only as root on Debian/Ubuntu. Start PostgreSQL 13 or newer (docker run -d -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust postgres:17 works) or set SELFRESET_TEST_DATABASE_URL to a server you can create databases on."
	fi

	local cluster
	cluster=$(debian_cluster)
	if [[ -z $cluster ]]; then
		if ! command -v pg_lsclusters >/dev/null 2>&1 || [[ -z $(pg_lsclusters --no-header 2>/dev/null) ]]; then
			say "installing PostgreSQL with apt-get (a throwaway server for tests)"
			export DEBIAN_FRONTEND=noninteractive
			apt-get update -qq
			apt-get install -y -qq postgresql >/dev/null
		fi
		cluster=$(debian_cluster)
	fi
	if [[ -z $cluster ]]; then
		local ver
		ver=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -n | tail -1)
		[[ -n $ver ]] || die "apt-get installed postgresql but no server version was found under /usr/lib/postgresql"
		say "creating PostgreSQL cluster $ver/selfreset on port $PG_PORT"
		pg_createcluster --port "$PG_PORT" "$ver" selfreset >/dev/null
		cluster="$ver selfreset"
	fi
	local ver=${cluster% *} name=${cluster#* }
	if ! pg_listening; then
		say "starting PostgreSQL cluster $ver/$name"
		pg_ctlcluster "$ver" "$name" start
	fi
	trust_localhost "$ver" "$name"
	local _
	for _ in $(seq 1 30); do
		if pg_listening && pg_can_connect; then
			say "using the PostgreSQL cluster $ver/$name on ${PG_HOST}:${PG_PORT}"
			return 0
		fi
		sleep 1
	done
	die "PostgreSQL cluster $ver/$name did not accept connections on ${PG_HOST}:${PG_PORT}; see /var/log/postgresql/postgresql-$ver-$name.log"
}
