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
#   SIKKERCHAT_META_ROOM_BUDGET  new rooms per Page an hour (default 30)
#   SIKKERCHAT_META_REPLAY_WINDOW  how old a webhook's events may be (default 36h;
#                          the tests of Meta's 7-day window post older ones)
#   HS_MAX_FILE_BYTES      the homeserver's upload limit (default 100 MiB)
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
#   SIKKERCHAT_FAILOVER    "1": two bridges (a and b) on one PostgreSQL database
#                          (needs SIKKERCHAT_POSTGRES) behind HAProxy, which
#                          listens on AS_PORT, GUEST_PORT and META_PORT and routes
#                          to the active one; instance a on HS_PORT+10…+14,
#                          b on HS_PORT+15…+19 (appservice, guest, metrics, role, meta)
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
FAILOVER=${SIKKERCHAT_FAILOVER:-}
if [[ -n $FAILOVER && -z ${SIKKERCHAT_POSTGRES:-} ]]; then
	printf 'stack: SIKKERCHAT_FAILOVER needs SIKKERCHAT_POSTGRES (a standby needs PostgreSQL)\n' >&2
	exit 1
fi
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
        # Attachments come from the simulator's CDN (in production: Meta's).
        media_hosts: ["http://127.0.0.1:$METASIM_PORT"]
        new_room_budget: ${SIKKERCHAT_META_ROOM_BUDGET:-30}
        new_room_window: 1h
        replay_window: ${SIKKERCHAT_META_REPLAY_WINDOW:-36h}
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

# Failover mode: the shared key folder (the supported shared-filesystem
# layout, here one local folder) and the role endpoint.
failover_config() {
	[[ -n $FAILOVER ]] || return 0
	cat <<EOF
    key_dir: $BRIDGE_DIR/keys
    failover:
        listen: 127.0.0.1:$((HS_PORT + 13))
        lease: ${SIKKERCHAT_FAILOVER_LEASE:-3s}
EOF
}

# instance_port INSTANCE OFFSET: a or b's own port (0 appservice, 1 guest,
# 2 metrics, 3 role, 4 meta).
instance_port() {
	local base=$((HS_PORT + 10))
	[[ $1 == b ]] && base=$((HS_PORT + 15))
	echo $((base + $2))
}

instance_dir() {
	if [[ $1 == b ]]; then echo "$BRIDGE_DIR/b"; else echo "$BRIDGE_DIR"; fi
}

write_proxy_config() {
	mkdir -p "$STACK_DIR/haproxy"
	local backend name frontend_port offset
	{
		cat <<EOF
# The example of docs/operations.md, on loopback: HAProxy routes each
# listener to whichever bridge's role endpoint answers 200.
global
    maxconn 4096
defaults
    mode http
    timeout connect 1s
    timeout check 500ms
    timeout client 65s
    timeout server 65s
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response
EOF
		for backend in appservice:$AS_PORT:0 guest:$GUEST_PORT:1 meta:$META_PORT:4; do
			IFS=: read -r name frontend_port offset <<<"$backend"
			[[ $name == meta && -z $META_SIM ]] && continue
			cat <<EOF
frontend ${name}_in
    bind 127.0.0.1:$frontend_port
    option forwardfor
    default_backend $name
backend $name
    option httpchk GET /_sikkerchat/role
    http-check expect status 200
    default-server inter 1s fastinter 100ms downinter 100ms rise 1 fall 1 on-marked-down shutdown-sessions
    server a 127.0.0.1:$(instance_port a "$offset") check port $(instance_port a 3)
    server b 127.0.0.1:$(instance_port b "$offset") check port $(instance_port b 3)
EOF
		done
	} >"$STACK_DIR/haproxy/haproxy.cfg"
}

start_proxy() {
	[[ -n $FAILOVER ]] || return 0
	local pidfile=$STACK_DIR/haproxy/haproxy.pid
	if [[ -f $pidfile ]] && alive "$(cat "$pidfile")"; then
		return 0
	fi
	command -v haproxy >/dev/null || { log "haproxy is needed for SIKKERCHAT_FAILOVER"; exit 1; }
	write_proxy_config
	haproxy -c -q -f "$STACK_DIR/haproxy/haproxy.cfg" >&2
	haproxy -db -f "$STACK_DIR/haproxy/haproxy.cfg" >>"$STACK_DIR/haproxy/haproxy.log" 2>&1 &
	echo $! >"$pidfile"
}

stop_proxy() {
	local pidfile=$STACK_DIR/haproxy/haproxy.pid
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
	# In failover mode each instance runs in its own folder and logs there.
	local log_file=$BRIDGE_DIR/bridge.log env_prefix=""
	if [[ -n $FAILOVER ]]; then
		log_file=bridge.log
		env_prefix="env_config_prefix: SIKKERCHAT_INSTANCE_"
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
$(failover_config)
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
          filename: $log_file
          max_size: 100
          max_backups: 500
          compress: false
$env_prefix
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

# role_answers INSTANCE: the instance's role endpoint answers (200 active or
# 503 standby): the process is up.
role_answers() {
	local code
	code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$(instance_port "$1" 3)/_sikkerchat/role") || true
	[[ $code == 200 || $code == 503 ]]
}

# start_bridge [INSTANCE]: the bridge; in failover mode instance a (default)
# or b, which waits as standby while the other is active.
start_bridge() {
	if [[ -n $FAILOVER && -z ${1:-} ]]; then
		start_bridge a && start_bridge b
		return
	fi
	local inst=${1:-a} dir args=() env=()
	dir=$(instance_dir "$inst")
	if [[ -f $dir/bridge.pid ]] && alive "$(cat "$dir/bridge.pid")"; then
		log "bridge already running"
		return 0
	fi
	mkdir -p "$dir"
	args=(-c "$BRIDGE_DIR/config.yaml" -r "$BRIDGE_DIR/registration.yaml" --ignore-unsupported-server)
	if [[ -n $FAILOVER ]]; then
		# One config for both, never rewritten (-n); each its own ports.
		args+=(-n)
		env=(SIKKERCHAT_INSTANCE_APPSERVICE__PORT="$(instance_port "$inst" 0)"
			SIKKERCHAT_INSTANCE_NETWORK__GUEST__LISTEN="127.0.0.1:$(instance_port "$inst" 1)"
			SIKKERCHAT_INSTANCE_NETWORK__METRICS__LISTEN="127.0.0.1:$(instance_port "$inst" 2)"
			SIKKERCHAT_INSTANCE_NETWORK__FAILOVER__LISTEN="127.0.0.1:$(instance_port "$inst" 3)")
		[[ -n $META_SIM ]] && env+=(SIKKERCHAT_INSTANCE_NETWORK__META__LISTEN="127.0.0.1:$(instance_port "$inst" 4)")
		start_proxy
	fi
	log "starting sikkerchat${FAILOVER:+ $inst}"
	(cd "$dir" && exec env "${env[@]}" "$BIN" "${args[@]}" >>"$dir/bridge.out" 2>&1) &
	echo $! >"$dir/bridge.pid"
	local i
	for i in $(seq 1 300); do
		# A standby is up once its role endpoint answers; an active (and a
		# bridge without failover) once it serves.
		if [[ -n $FAILOVER ]] && role_answers "$inst" && { [[ $inst == b ]] || bridge_ready; }; then
			return 0
		elif [[ -z $FAILOVER ]] && bridge_ready; then
			return 0
		fi
		if ! alive "$(cat "$dir/bridge.pid")"; then
			log "sikkerchat exited; last lines of its output and log:"
			tail -n 20 "$dir/bridge.out" >&2 || true
			tail -n 5 "$dir/bridge.log" >&2 || true
			return 1
		fi
		sleep 0.1
	done
	log "sikkerchat was not ready within 30 s"
	return 1
}

stop_bridge() {
	if [[ -n $FAILOVER && -z ${1:-} ]]; then
		# The standby first, so that stopping is not a takeover.
		stop_bridge b
		stop_bridge a
		return
	fi
	local pidfile
	pidfile=$(instance_dir "${1:-a}")/bridge.pid
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
	if [[ -n $FAILOVER ]]; then
		cat >>"$ENV_FILE" <<EOF
BRIDGE_B_PID_FILE=$BRIDGE_DIR/b/bridge.pid
BRIDGE_B_LOG=$BRIDGE_DIR/b/bridge.log
ROLE_A_URL=http://127.0.0.1:$(instance_port a 3)/_sikkerchat/role
ROLE_B_URL=http://127.0.0.1:$(instance_port b 3)/_sikkerchat/role
EOF
	fi
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
	stop_proxy
	hs stop
}

case ${1:-} in
up) up ;;
down) down ;;
status) [[ -f $ENV_FILE ]] && print_facts ;;
start-bridge) start_bridge "${2:-}" ;;
stop-bridge) stop_bridge "${2:-}" ;;
start-homeserver) hs start "$BRIDGE_DIR/registration.yaml" ;;
stop-homeserver) hs stop ;;
start-metasim) start_metasim ;;
stop-metasim) stop_metasim ;;
*)
	sed -n '2,33p' "$0" | sed 's/^# \{0,1\}//'
	exit 2
	;;
esac
