#!/usr/bin/env bash
# The local stack: Dendrite + the sikkerchat bridge (SQLite, encryption on),
# an officer account and an admin account, all on loopback.
#
#   scripts/stack.sh up      build what is missing, start everything, print how to log in
#   scripts/stack.sh up --meta-sim
#                            the same, with the patrol inbox on and the Meta simulator
#                            playing Meta (write as a person at its /_sim/ page)
#   scripts/stack.sh down    stop the bridge, then Dendrite
#   scripts/stack.sh status  print the facts of a running stack
#   scripts/stack.sh start-bridge|stop-bridge|start-homeserver|stop-homeserver|start-metasim|stop-metasim
#                            one part alone (tests: restarts and outages)
#
# The facts are also written to $STACK_DIR/stack.env for tests and tools.
#
# Environment:
#   STACK_DIR              state folder (default .local in the repository)
#   HS_PORT                Dendrite client port (default 8008)
#   AS_PORT                bridge appservice port (default 29345)
#   GUEST_PORT             guest listener port (default 29346)
#   METRICS_PORT           Prometheus metrics port (default 29347)
#   META_PORT              patrol inbox webhook listener port (default 29348)
#   METASIM_PORT           Meta simulator port (default 29349)
#   SIKKERCHAT_META_SIM    "1": as up --meta-sim
#   SIKKERCHAT_META_HUMAN_AGENT  "false": the app has no Human Agent feature (default true)
#   SIKKERCHAT_LOG_LEVEL   bridge log level (default debug; production: info)
#   SIKKERCHAT_BUILD_TAGS  extra Go build tags (the tests use sikkerchat_testhooks)
#   SIKKERCHAT_ENCRYPTION  "false" writes a config with encryption off (for the
#                          test that proves the suite notices)
#   SIKKERCHAT_POSTGRES    a PostgreSQL DSN: the bridge gets a fresh database there
#                          instead of SQLite (scripts/postgres.sh start prints one)
#   SIKKERCHAT_RETENTION   how long closed rooms are kept before purge (default 2160h)
#   SIKKERCHAT_INVITE_TTL  how long an unused link lives (default 24h)
#   SIKKERCHAT_GUEST_RATE  one per-minute figure for every guest rate limit (the
#                          benchmark lifts them; default: the example config's)
#   SIKKERCHAT_PUBLIC_URL  the guest page's public URL when a TLS proxy stands in
#                          front of it (the slow-link benchmark); default the
#                          guest listener itself
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STACK_DIR=${STACK_DIR:-$ROOT/.local}
mkdir -p "$STACK_DIR"
STACK_DIR=$(cd "$STACK_DIR" && pwd)
HS_PORT=${HS_PORT:-8008}
AS_PORT=${AS_PORT:-29345}
GUEST_PORT=${GUEST_PORT:-29346}
METRICS_PORT=${METRICS_PORT:-29347}
META_PORT=${META_PORT:-29348}
METASIM_PORT=${METASIM_PORT:-29349}
META_SIM=${SIKKERCHAT_META_SIM:-}
[[ ${2:-} == --meta-sim ]] && META_SIM=1
# The simulated Page and Instagram account (IDs of Meta's documented shape).
META_PAGE_ID=106512345678901
META_IG_ID=17841400000000001
META_APP_ID=1517776481860111
SERVER_NAME=localhost
BRIDGE_DIR=$STACK_DIR/bridge
BIN=$STACK_DIR/bin/sikkerchat
ENV_FILE=$STACK_DIR/stack.env
export HS_DIR=$STACK_DIR/dendrite HS_PORT HS_SERVER_NAME=$SERVER_NAME

# alive PID: the process runs (a killed process whose parent does not reap it
# stays a zombie that kill -0 still finds).
alive() {
	local state
	state=$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$1/stat" 2>/dev/null) || return 1
	[[ -n $state && $state != Z && $state != X ]]
}

log() { printf 'stack: %s\n' "$*" >&2; }
hs() { "$ROOT/scripts/homeserver.sh" "$@"; }

build_bridge() {
	local tags=goolm
	[[ -n ${SIKKERCHAT_BUILD_TAGS:-} ]] && tags=$tags,$SIKKERCHAT_BUILD_TAGS
	log "building sikkerchat (tags $tags)"
	mkdir -p "$(dirname "$BIN")"
	(cd "$ROOT" && CGO_ENABLED=1 go build -tags "$tags" -o "$BIN" ./cmd/sikkerchat)
	if [[ -n $META_SIM ]]; then
		log "building the Meta simulator"
		(cd "$ROOT" && go build -o "$STACK_DIR/bin/metasim" ./tests/metasim)
	fi
}

# meta_secret NAME: a random secret of the simulated Meta app, kept in the stack folder.
meta_secret() {
	local file=$STACK_DIR/meta/$1
	mkdir -p "$STACK_DIR/meta"
	[[ -f $file ]] || head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$file"
	cat "$file"
}

meta_config() {
	[[ -n $META_SIM ]] || return 0
	cat <<EOF
    meta:
        app_secret: "$(meta_secret app_secret)"
        app_id: "$META_APP_ID"
        verify_token: "$(meta_secret verify_token)"
        listen: 127.0.0.1:$META_PORT
        graph_url: http://127.0.0.1:$METASIM_PORT
        api_version: v25.0
        pages:
            - page_id: "$META_PAGE_ID"
              access_token: "$(meta_secret page_token)"
              instagram_account_id: "$META_IG_ID"
        human_agent: ${SIKKERCHAT_META_HUMAN_AGENT:-true}
        fetch_profiles: false
        officers: ["@officer:$SERVER_NAME"]
        idle_close: 168h
        retention: ${SIKKERCHAT_RETENTION:-2160h}
EOF
}

start_metasim() {
	[[ -n $META_SIM ]] || return 0
	local pidfile=$STACK_DIR/meta/metasim.pid
	if [[ -f $pidfile ]] && alive "$(cat "$pidfile")"; then
		return 0
	fi
	log "starting the Meta simulator"
	# shellcheck disable=SC2086 # METASIM_ARGS is a list of flags
	"$STACK_DIR/bin/metasim" -listen "127.0.0.1:$METASIM_PORT" -webhook "http://127.0.0.1:$META_PORT/meta/webhook" \
		-app-secret "$(meta_secret app_secret)" -app-id "$META_APP_ID" -page "$META_PAGE_ID" -page-token "$(meta_secret page_token)" \
		-instagram "$META_IG_ID" -human-agent="${SIKKERCHAT_META_HUMAN_AGENT:-true}" ${METASIM_ARGS:-} \
		>>"$STACK_DIR/meta/metasim.log" 2>&1 &
	echo $! >"$pidfile"
	local i
	for i in $(seq 1 100); do
		curl -fs -o /dev/null --max-time 2 "http://127.0.0.1:$METASIM_PORT/_sim/sends" && return 0
		sleep 0.1
	done
	log "the Meta simulator did not start"
	return 1
}

stop_metasim() {
	local pidfile=$STACK_DIR/meta/metasim.pid
	[[ -f $pidfile ]] || return 0
	kill "$(cat "$pidfile")" 2>/dev/null || true
	rm -f "$pidfile"
}

write_bridge_config() {
	mkdir -p "$BRIDGE_DIR"
	[[ -f $BRIDGE_DIR/config.yaml ]] && return 0
	local encryption=${SIKKERCHAT_ENCRYPTION:-true}
	local db_type=sqlite3-fk-wal db_uri="file:$BRIDGE_DIR/sikkerchat.db?_txlock=immediate"
	if [[ -n ${SIKKERCHAT_POSTGRES:-} ]]; then
		local name
		name="sikkerchat_$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
		psql -q "$SIKKERCHAT_POSTGRES" -c "CREATE DATABASE $name" >/dev/null
		db_type=postgres
		db_uri=$(printf '%s' "$SIKKERCHAT_POSTGRES" | sed -E "s#/[^/?]*(\?|$)#/$name\1#")
		log "using PostgreSQL database $name"
	fi
	local rate_limits=""
	if [[ -n ${SIKKERCHAT_GUEST_RATE:-} ]]; then
		rate_limits=$(printf '        rate_limits:\n            joins_per_minute: %s\n            messages_per_minute: %s\n            files_per_minute: %s\n            per_address_per_minute: %s' \
			"$SIKKERCHAT_GUEST_RATE" "$SIKKERCHAT_GUEST_RATE" "$SIKKERCHAT_GUEST_RATE" "$SIKKERCHAT_GUEST_RATE")
	fi
	log "writing bridge config to $BRIDGE_DIR/config.yaml"
	# Only what differs from the example; the bridge fills in the rest when it
	# generates the registration.
	cat >"$BRIDGE_DIR/config.yaml" <<EOF
network:
    invite_ttl: ${SIKKERCHAT_INVITE_TTL:-24h}
    retention: ${SIKKERCHAT_RETENTION:-2160h}
    purge:
        homeserver: dendrite
        admin_token: ""
    guest:
        listen: 127.0.0.1:$GUEST_PORT
        public_url: ${SIKKERCHAT_PUBLIC_URL:-http://127.0.0.1:$GUEST_PORT}
        insecure_cookies: true
$rate_limits
    metrics:
        listen: 127.0.0.1:$METRICS_PORT
$(meta_config)
bridge:
    permissions:
        "$SERVER_NAME": commands
        "@officer:$SERVER_NAME": user
        "@officer2:$SERVER_NAME": user
        "@admin:$SERVER_NAME": admin
database:
    type: $db_type
    uri: $db_uri
homeserver:
    address: http://127.0.0.1:$HS_PORT
    domain: $SERVER_NAME
    software: standard
    websocket: false
appservice:
    address: http://127.0.0.1:$AS_PORT
    hostname: 127.0.0.1
    port: $AS_PORT
    ephemeral_events: false
encryption:
    allow: $encryption
    default: $encryption
    require: $encryption
    appservice: false
    msc4190: false
    pickle_key: generate
    # sikkerchat's device policy: only cross-signed officer devices.
    verification_levels:
        receive: cross-signed-tofu
        send: cross-signed-tofu
        share: cross-signed-tofu
logging:
    min_level: ${SIKKERCHAT_LOG_LEVEL:-debug}
    writers:
        - type: file
          format: json
          filename: $BRIDGE_DIR/bridge.log
          max_size: 100
          max_backups: 500
          compress: false
EOF
	(cd "$BRIDGE_DIR" && "$BIN" -c config.yaml -r registration.yaml -g >/dev/null)
}

# account NAME ADMIN: registers once, keeps the password in the stack folder,
# and prints the access token (a fresh login if the account already existed).
account() {
	local name=$1 admin=${2:-} file=$STACK_DIR/accounts/$1
	mkdir -p "$STACK_DIR/accounts"
	if [[ ! -f $file ]]; then
		local password
		password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
		hs register "$name" "$password" $admin >/dev/null
		printf '%s\n' "$password" >"$file"
		chmod 600 "$file"
	fi
	curl -fsS -X POST "http://127.0.0.1:$HS_PORT/_matrix/client/v3/login" -H 'Content-Type: application/json' \
		-d "{\"type\":\"m.login.password\",\"identifier\":{\"type\":\"m.id.user\",\"user\":\"$name\"},\"password\":\"$(cat "$file")\"}" |
		sed -E 's/.*"access_token":"([^"]+)".*/\1/'
}

bridge_ready() {
	curl -fs -o /dev/null --max-time 2 "http://127.0.0.1:$AS_PORT/_matrix/mau/ready" &&
		curl -fs -o /dev/null --max-time 2 "http://127.0.0.1:$GUEST_PORT/healthz" &&
		{ [[ -z $META_SIM ]] || curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$META_PORT/meta/webhook"; }
}

start_bridge() {
	if [[ -f $BRIDGE_DIR/bridge.pid ]] && alive "$(cat "$BRIDGE_DIR/bridge.pid")"; then
		log "bridge already running"
		return 0
	fi
	log "starting sikkerchat"
	(cd "$BRIDGE_DIR" && exec "$BIN" -c config.yaml -r registration.yaml --ignore-unsupported-server \
		>>"$BRIDGE_DIR/bridge.out" 2>&1) &
	echo $! >"$BRIDGE_DIR/bridge.pid"
	local i
	for i in $(seq 1 300); do
		if bridge_ready; then
			return 0
		fi
		if ! alive "$(cat "$BRIDGE_DIR/bridge.pid")"; then
			log "sikkerchat exited; last lines of its output and log:"
			tail -n 20 "$BRIDGE_DIR/bridge.out" >&2 || true
			tail -n 5 "$BRIDGE_DIR/bridge.log" >&2 || true
			return 1
		fi
		sleep 0.1
	done
	log "sikkerchat was not ready within 30 s"
	return 1
}

stop_bridge() {
	local pidfile=$BRIDGE_DIR/bridge.pid
	[[ -f $pidfile ]] || return 0
	local pid
	pid=$(cat "$pidfile")
	if alive "$pid"; then
		kill "$pid"
		local i
		for i in $(seq 1 150); do
			alive "$pid" || break
			sleep 0.1
		done
		kill -9 "$pid" 2>/dev/null || true
	fi
	rm -f "$pidfile"
	log "bridge stopped"
}

print_facts() {
	# shellcheck disable=SC1090
	source "$ENV_FILE"
	cat <<EOF

sikkerchat is running locally.

  Homeserver:  $HS_URL   (use "Other homeserver" in Element)
  Officer:     $OFFICER_MXID
  Password:    $OFFICER_PASSWORD
  Bridge bot:  $BOT_MXID   (start a DM with it and send: !sc new)
  Guest page:  $GUEST_URL   (invite links point here)
  Metrics:     $METRICS_URL${META_SIM_URL:+

  Meta simulator: $META_SIM_URL/_sim/
                  Write as a person on Messenger or Instagram; the room
                  appears in Element with the officer invited.}

  Machine-readable: $ENV_FILE
  Logs:             $BRIDGE_DIR/bridge.log, $HS_DIR/logs
  Stop with:        scripts/stack.sh down
EOF
}

up() {
	command -v curl >/dev/null || { log "curl is needed"; exit 1; }
	command -v openssl >/dev/null || { log "openssl is needed"; exit 1; }
	build_bridge
	hs build
	write_bridge_config
	hs start "$BRIDGE_DIR/registration.yaml"
	local officer_token admin_token
	officer_token=$(account officer)
	account officer2 >/dev/null
	admin_token=$(account admin admin)
	# The bridge purges rooms with the local admin account (network.purge).
	sed -i -E "s|^(        admin_token: ).*$|\1\"$admin_token\"|" "$BRIDGE_DIR/config.yaml"
	start_metasim
	start_bridge
	local bot
	bot=$(sed -nE '/^appservice:/,/^[a-z]/s/^        username: *(.*)$/\1/p' "$BRIDGE_DIR/config.yaml" | head -n1)
	cat >"$ENV_FILE" <<EOF
# Written by scripts/stack.sh up; secrets for a loopback-only development stack.
HS_URL=http://127.0.0.1:$HS_PORT
HS_SERVER_NAME=$SERVER_NAME
BOT_MXID=@$bot:$SERVER_NAME
GUEST_URL=http://127.0.0.1:$GUEST_PORT
METRICS_URL=http://127.0.0.1:$METRICS_PORT/metrics
AS_URL=http://127.0.0.1:$AS_PORT
REGISTRATION_SHARED_SECRET=$(cat "$HS_DIR/shared_secret")
OFFICER_MXID=@officer:$SERVER_NAME
OFFICER_PASSWORD=$(cat "$STACK_DIR/accounts/officer")
OFFICER_TOKEN=$officer_token
OFFICER2_MXID=@officer2:$SERVER_NAME
OFFICER2_PASSWORD=$(cat "$STACK_DIR/accounts/officer2")
ADMIN_MXID=@admin:$SERVER_NAME
ADMIN_PASSWORD=$(cat "$STACK_DIR/accounts/admin")
ADMIN_TOKEN=$admin_token
PROVISIONING_URL=http://127.0.0.1:$AS_PORT/_matrix/provision
PROVISIONING_SECRET=$(sed -nE '/^provisioning:/,/^[a-z]/s/^    shared_secret: *"?([^"]*)"?$/\1/p' "$BRIDGE_DIR/config.yaml")
BRIDGE_CONFIG=$BRIDGE_DIR/config.yaml
BRIDGE_LOG=$BRIDGE_DIR/bridge.log
BRIDGE_DB=$BRIDGE_DIR/sikkerchat.db
BRIDGE_DB_URI=$(sed -nE '/^database:/,/^[a-z]/s/^    uri: *(.*)$/\1/p' "$BRIDGE_DIR/config.yaml")
BRIDGE_PID_FILE=$BRIDGE_DIR/bridge.pid
HS_PID_FILE=$HS_DIR/dendrite.pid
HS_LOG_DIR=$HS_DIR
AS_TOKEN=$(sed -nE '/^appservice:/,/^[a-z]/s/^    as_token: *"?([^"]*)"?$/\1/p' "$BRIDGE_DIR/config.yaml")
HS_TOKEN=$(sed -nE '/^appservice:/,/^[a-z]/s/^    hs_token: *"?([^"]*)"?$/\1/p' "$BRIDGE_DIR/config.yaml")
STACK_DIR=$STACK_DIR
EOF
	if [[ -n $META_SIM ]]; then
		cat >>"$ENV_FILE" <<EOF
META_SIM_URL=http://127.0.0.1:$METASIM_PORT
META_WEBHOOK_URL=http://127.0.0.1:$META_PORT/meta/webhook
META_PAGE_ID=$META_PAGE_ID
META_IG_ID=$META_IG_ID
META_APP_ID=$META_APP_ID
META_APP_SECRET=$(meta_secret app_secret)
META_VERIFY_TOKEN=$(meta_secret verify_token)
META_PAGE_TOKEN=$(meta_secret page_token)
METASIM_PID_FILE=$STACK_DIR/meta/metasim.pid
EOF
	fi
	chmod 600 "$ENV_FILE"
	print_facts
}

down() {
	# The bridge goes first: a dying Dendrite answers /sync with an empty key
	# count and makes a running bridge over-upload one-time keys.
	stop_bridge
	stop_metasim
	hs stop
}

case ${1:-} in
up) up ;;
down) down ;;
status) [[ -f $ENV_FILE ]] && print_facts ;;
start-bridge) start_bridge ;;
stop-bridge) stop_bridge ;;
start-homeserver) hs start "$BRIDGE_DIR/registration.yaml" ;;
stop-homeserver) hs stop ;;
start-metasim) start_metasim ;;
stop-metasim) stop_metasim ;;
*)
	sed -n '2,33p' "$0" | sed 's/^# \{0,1\}//'
	exit 2
	;;
esac
