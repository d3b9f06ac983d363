#!/usr/bin/env bash
# Bridge start time: from exec to the appservice answering /_matrix/mau/ready
# and the guest listener answering /healthz, against a running local stack.
#
#   scripts/stack.sh up && scripts/bench/startup.sh [RUNS]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STACK_DIR=${STACK_DIR:-$ROOT/.local}
# shellcheck disable=SC1091
source "$STACK_DIR/stack.env"
runs=${1:-10}
as_port=${AS_URL##*:}
guest_port=${GUEST_URL##*:}
times=()
for _ in $(seq 1 "$runs"); do
	STACK_DIR=$STACK_DIR "$ROOT/scripts/stack.sh" stop-bridge 2>/dev/null
	start=$(date +%s%N)
	(cd "$STACK_DIR/bridge" && exec "$STACK_DIR/bin/sikkerchat" -c config.yaml -r registration.yaml \
		--ignore-unsupported-server >>"$STACK_DIR/bridge/bridge.out" 2>&1) &
	echo $! >"$STACK_DIR/bridge/bridge.pid"
	until curl -fs -o /dev/null "http://127.0.0.1:$as_port/_matrix/mau/ready" &&
		curl -fs -o /dev/null "http://127.0.0.1:$guest_port/healthz"; do
		sleep 0.005
	done
	end=$(date +%s%N)
	times+=($(((end - start) / 1000000)))
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n)
echo "bridge start to ready over $runs runs (ms): min $(echo "$sorted" | head -n1)" \
	"median $(echo "$sorted" | sed -n "$(((runs + 1) / 2))p") max $(echo "$sorted" | tail -n1)"
