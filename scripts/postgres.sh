#!/usr/bin/env bash
# A throwaway PostgreSQL (Debian's) on loopback for the test suite.
#
#   scripts/postgres.sh start   initialise (once) and start; prints the base DSN
#   scripts/postgres.sh stop
#
# Environment: PG_DIR (default /tmp/sikkerchat-pg), PG_PORT (default 25432).
set -euo pipefail
PG_DIR=${PG_DIR:-/tmp/sikkerchat-pg}
PG_PORT=${PG_PORT:-25432}
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)

as_postgres() {
	if [[ $(id -u) -eq 0 ]]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

start() {
	if [[ -z $PG_BIN ]]; then
		echo "postgres: Debian's postgresql package is not installed" >&2
		exit 1
	fi
	if [[ ! -f $PG_DIR/PG_VERSION ]]; then
		mkdir -p "$PG_DIR"
		[[ $(id -u) -eq 0 ]] && chown postgres: "$PG_DIR"
		as_postgres "$PG_BIN/initdb" -D "$PG_DIR" -U postgres --auth=trust -E UTF8 >/dev/null
	fi
	if ! as_postgres "$PG_BIN/pg_ctl" -D "$PG_DIR" status >/dev/null 2>&1; then
		as_postgres "$PG_BIN/pg_ctl" -D "$PG_DIR" -w -l "$PG_DIR/server.log" \
			-o "-h 127.0.0.1 -p $PG_PORT -k $PG_DIR -c fsync=off -c max_connections=200" start >/dev/null
	fi
	echo "postgres://postgres@127.0.0.1:$PG_PORT/postgres?sslmode=disable"
}

stop() {
	[[ -n $PG_BIN && -f $PG_DIR/PG_VERSION ]] || return 0
	as_postgres "$PG_BIN/pg_ctl" -D "$PG_DIR" -m fast stop >/dev/null 2>&1 || true
}

case ${1:-} in
start) start ;;
stop) stop ;;
*) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
