#!/usr/bin/env bash
# The whole test suite: lint, Go unit tests (race detector on), then the
# integration tests with the real Dendrite, the real bridge binary and
# matrix-js-sdk with Rust crypto as the officer. Installs what it needs.
#
#   scripts/test.sh            everything
#   scripts/test.sh unit       lint + Go tests only
#   scripts/test.sh e2e        integration tests only
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
what=${1:-all}

log() { printf '\n== %s ==\n' "$*"; }

ensure_system_packages() {
	local missing=()
	command -v curl >/dev/null || missing+=(curl)
	command -v openssl >/dev/null || missing+=(openssl)
	command -v gcc >/dev/null || missing+=(gcc libc6-dev)
	command -v node >/dev/null || missing+=(nodejs)
	command -v npm >/dev/null || missing+=(npm)
	# The end-to-end tests drive Debian's Chromium with playwright-core.
	[[ -x /usr/bin/chromium ]] || missing+=(chromium)
	if ((${#missing[@]})); then
		log "installing ${missing[*]}"
		local sudo=""
		[[ $(id -u) -ne 0 ]] && sudo=sudo
		$sudo apt-get update -qq
		DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
	fi
}

unit() {
	log "lint"
	scripts/lint.sh
	log "go unit tests (-race)"
	CGO_ENABLED=1 go test -race -count=1 -tags goolm ./...
}

e2e() {
	log "integration tests: Dendrite + sikkerchat + matrix-js-sdk"
	scripts/homeserver.sh build
	(cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
	(cd tests/e2e && npm test)
}

ensure_system_packages
case $what in
all) unit; e2e ;;
unit) unit ;;
e2e) e2e ;;
*) echo "usage: scripts/test.sh [all|unit|e2e]" >&2; exit 2 ;;
esac
log "all tests passed"
