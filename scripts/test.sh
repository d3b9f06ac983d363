#!/usr/bin/env bash
# The whole test suite: lint, Go unit tests (race detector on) and short fuzzing,
# then the integration tests with the real Dendrite, the real bridge binary,
# matrix-js-sdk with Rust crypto as the officer and Chromium as the guest
# (fault tests included: kill -9, homeserver outage, replayed transactions),
# on SQLite and PostgreSQL, and the benchmark in short mode. Installs what it needs.
#
#   scripts/test.sh            everything
#   scripts/test.sh unit       lint + Go tests only
#   scripts/test.sh e2e        integration tests only
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
what=${1:-all}

# Each stage's wall time is printed when the next begins and summed up at the
# end, so a slow CI run shows where its minutes went.
stage=""
stage_start=$SECONDS
timings=()
log() {
	end_stage
	stage=$*
	stage_start=$SECONDS
	printf '\n== %s ==\n' "$*"
}
end_stage() {
	[[ -n $stage ]] || return 0
	timings+=("$(printf '%5ds  %s' $((SECONDS - stage_start)) "$stage")")
	stage=""
}
print_timings() {
	end_stage
	printf '\n== time per stage (total %ds) ==\n' "$SECONDS"
	printf '%s\n' "${timings[@]}"
}
trap print_timings EXIT

ensure_system_packages() {
	local missing=()
	command -v curl >/dev/null || missing+=(curl)
	command -v openssl >/dev/null || missing+=(openssl)
	command -v gcc >/dev/null || missing+=(gcc libc6-dev)
	command -v node >/dev/null || missing+=(nodejs)
	command -v npm >/dev/null || missing+=(npm)
	# The end-to-end tests drive Debian's Chromium with playwright-core.
	[[ -x /usr/bin/chromium ]] || missing+=(chromium)
	# Everything runs on PostgreSQL too.
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
	# The failover test puts HAProxy (with docs/operations.md's settings) in
	# front of two bridges.
	command -v haproxy >/dev/null || missing+=(haproxy)
	if ((${#missing[@]})); then
		log "installing ${missing[*]}"
		local sudo=""
		[[ $(id -u) -ne 0 ]] && sudo=sudo
		$sudo apt-get update -qq
		DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
	fi
}

postgres_dsn=""
start_postgres() {
	[[ -n $postgres_dsn ]] && return 0
	postgres_dsn=$(scripts/postgres.sh start)
	trap 'scripts/postgres.sh stop; print_timings' EXIT
}

# A stage that hangs fails after its budget, named, instead of eating the
# whole CI run. The budgets are several times what a stage takes on a quiet
# 2-core machine (docs/testing.md); they are limits, not expectations.
within() {
	local budget=$1
	shift
	local rc=0
	timeout -k 30s "$budget" "$@" || rc=$?
	if ((rc == 124 || rc == 137)); then
		echo "FAILED: the stage \"$stage\" did not finish within $budget" >&2
	fi
	return "$rc"
}

unit() {
	log "lint"
	scripts/lint.sh
	log "go unit tests (-race, SQLite)"
	CGO_ENABLED=1 within 30m go test -race -count=1 -tags goolm ./...
	start_postgres
	log "go unit tests (-race, PostgreSQL)"
	SIKKERCHAT_TEST_POSTGRES=$postgres_dsn CGO_ENABLED=1 within 30m go test -race -count=1 -tags goolm ./bridge/... ./web/... ./internal/...
	log "fuzzing, short (every target 10 s)"
	within 20m scripts/fuzz.sh
}

e2e() {
	log "building Dendrite, installing the test clients"
	scripts/homeserver.sh build
	(cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
	log "integration tests (SQLite): Dendrite + sikkerchat + matrix-js-sdk + Chromium"
	(cd tests/e2e && within 30m npm test)
	log "benchmark, short mode (timings are reported, never asserted)"
	within 15m scripts/bench.sh
	start_postgres
	log "integration tests (PostgreSQL)"
	(cd tests/e2e && SIKKERCHAT_POSTGRES=$postgres_dsn within 30m npm test)
}

ensure_system_packages
case $what in
all) unit; e2e ;;
unit) unit ;;
e2e) e2e ;;
*) echo "usage: scripts/test.sh [all|unit|e2e]" >&2; exit 2 ;;
esac
log "all tests passed"
