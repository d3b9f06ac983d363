#!/usr/bin/env bash
# sikkerchat's benchmark against a local Dendrite and the real bridge, with a
# direct Matrix client-to-client baseline in the same run (tests/e2e/bench/bench.mjs),
# then the slow-link benchmark: Chromium on emulated Slow 3G and Fast 3G
# (tests/e2e/bench/slowlink.mjs). Prints tables and writes JSON. It fails only
# when something does not work, never because of a timing.
#
#   scripts/bench.sh                short mode (CI): a few dozen messages, one page load per link
#   scripts/bench.sh --full         full mode: 500 messages each way, 50
#                                   conversations, 0/1,000/5,000 idle pages; 7 page loads per link
#   scripts/bench.sh --json FILE    where the JSON goes (default .local/bench/bench-<mode>.json;
#                                   the slow-link figures go beside it as slowlink-<mode>.json)
#   scripts/bench.sh --slow-link    the slow-link benchmark alone
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

mode=short
json=""
only=""
while (($#)); do
	case $1 in
	--full) mode=full ;;
	--json) json=$2; shift ;;
	--slow-link) only=slowlink ;;
	*) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
	esac
	shift
done
json=${json:-$ROOT/.local/bench/bench-$mode.json}
[[ $json = /* ]] || json=$ROOT/$json

# Thousands of open event streams need as many file descriptors, in the bridge
# (started from the benchmark, so it inherits this) and in the client.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (($(ulimit -n) < 12000)); then
	echo "bench: open-file limit is $(ulimit -n); the memory part needs about 12000 in full mode" >&2
fi

scripts/homeserver.sh build
[[ -d tests/e2e/node_modules ]] || (cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
full=()
[[ $mode = full ]] && full=(--full)
cd tests/e2e
[[ -n $only ]] || node bench/bench.mjs --json "$json" "${full[@]}"
exec node bench/slowlink.mjs --json "$(dirname "$json")/slowlink-$mode.json" "${full[@]}"
