#!/usr/bin/env bash
# Local Dendrite homeserver for development and tests.
#
#   scripts/homeserver.sh build                 build Dendrite into the cache (reused later)
#   scripts/homeserver.sh start [REGISTRATION]  write a loopback-only config and start it
#   scripts/homeserver.sh stop                  stop it
#   scripts/homeserver.sh status                exit 0 if it answers
#   scripts/homeserver.sh register USER PASSWORD [admin]
#                                               create an account with the shared secret;
#                                               prints the access token
#
# Environment:
#   SIKKERCHAT_CACHE   build cache (default ~/.cache/sikkerchat)
#   HS_DIR             state folder (default .local/dendrite in the repository)
#   HS_PORT            client API port on 127.0.0.1 (default 8008)
#   HS_SERVER_NAME     server name (default localhost)
#   HS_MAX_FILE_BYTES  upload limit (default 100 MiB; Dendrite's own default is 10 MiB)
set -euo pipefail

DENDRITE_VERSION=v0.15.2
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${SIKKERCHAT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sikkerchat}
BIN_DIR=$CACHE/dendrite-$DENDRITE_VERSION
HS_DIR=${HS_DIR:-$ROOT/.local/dendrite}
HS_PORT=${HS_PORT:-8008}
HS_SERVER_NAME=${HS_SERVER_NAME:-localhost}
HS_URL=http://127.0.0.1:$HS_PORT

# alive PID: the process runs (a killed process whose parent does not reap it
# stays a zombie that kill -0 still finds).
alive() {
	local state
	state=$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$1/stat" 2>/dev/null) || return 1
	[[ -n $state && $state != Z && $state != X ]]
}

log() { printf 'homeserver: %s\n' "$*" >&2; }

build() {
	if [[ -x $BIN_DIR/dendrite && -x $BIN_DIR/generate-keys ]]; then
		return 0
	fi
	log "building Dendrite $DENDRITE_VERSION into $BIN_DIR (once, about two minutes)"
	mkdir -p "$BIN_DIR"
	(cd "$ROOT/scripts/dendrite" && CGO_ENABLED=1 go build -trimpath -o "$BIN_DIR/" \
		github.com/element-hq/dendrite/cmd/dendrite \
		github.com/element-hq/dendrite/cmd/generate-keys)
}

write_config() {
	local registration=$1
	mkdir -p "$HS_DIR/media" "$HS_DIR/jetstream" "$HS_DIR/search"
	if [[ ! -f $HS_DIR/matrix_key.pem ]]; then
		"$BIN_DIR/generate-keys" --private-key "$HS_DIR/matrix_key.pem" >/dev/null
	fi
	if [[ ! -f $HS_DIR/shared_secret ]]; then
		head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$HS_DIR/shared_secret"
		chmod 600 "$HS_DIR/shared_secret"
	fi
	local secret appservices=""
	secret=$(cat "$HS_DIR/shared_secret")
	if [[ -n $registration ]]; then
		appservices="    - $registration"
	fi
	# SQLite needs one database file per component (a global pool is Postgres-only).
	db() { printf '  %s:\n    connection_string: file:%s/%s.db\n' "$1" "$HS_DIR" "$2"; }
	cat >"$HS_DIR/dendrite.yaml" <<EOF
# Written by scripts/homeserver.sh: a loopback-only Dendrite for sikkerchat
# development and tests. Federation and rate limits are off on purpose.
version: 2
global:
  server_name: $HS_SERVER_NAME
  private_key: $HS_DIR/matrix_key.pem
  key_validity_period: 168h0m0s
  cache:
    max_size_estimated: 64mb
    max_age: 1h
  disable_federation: true
  trusted_third_party_id_servers: []
  presence:
    enable_inbound: false
    enable_outbound: false
  report_stats:
    enabled: false
  server_notices:
    enabled: false
  jetstream:
    addresses: []
    storage_path: $HS_DIR/jetstream
    topic_prefix: Dendrite
  metrics:
    enabled: false
  dns_cache:
    enabled: false
app_service_api:
  disable_tls_validation: true
  legacy_auth: false
  legacy_paths: false
  config_files:
$appservices
client_api:
  registration_disabled: true
  guests_disabled: true
  registration_shared_secret: "$secret"
  enable_registration_captcha: false
  rate_limiting:
    enabled: false
    threshold: 20
    cooloff_ms: 500
federation_api:
$(db database federationapi)
  send_max_retries: 1
  key_perspectives: []
  prefer_direct_fetch: true
  deny_networks: []
  allow_networks: []
key_server:
$(db database keyserver)
media_api:
$(db database mediaapi)
  base_path: $HS_DIR/media
  max_file_size_bytes: ${HS_MAX_FILE_BYTES:-104857600}
  dynamic_thumbnails: false
  max_thumbnail_generators: 2
  thumbnail_sizes: []
mscs:
$(db database mscs)
  mscs: []
relay_api:
$(db database relayapi)
room_server:
$(db database roomserver)
sync_api:
$(db database syncapi)
  search:
    enabled: false
    index_path: $HS_DIR/search
user_api:
$(db account_database userapi)
  bcrypt_cost: 4
  auto_join_rooms: []
tracing:
  enabled: false
logging:
  - type: file
    level: info
    params:
      path: $HS_DIR/logs
EOF
}

is_up() {
	curl -fs -o /dev/null --max-time 2 "$HS_URL/_matrix/client/versions"
}

start() {
	local registration=${1:-}
	build
	if is_up; then
		log "already running at $HS_URL"
		return 0
	fi
	write_config "$registration"
	log "starting Dendrite at $HS_URL (logs in $HS_DIR)"
	(cd "$HS_DIR" && exec "$BIN_DIR/dendrite" --config "$HS_DIR/dendrite.yaml" \
		--http-bind-address "127.0.0.1:$HS_PORT" \
		>>"$HS_DIR/dendrite.out" 2>&1) &
	echo $! >"$HS_DIR/dendrite.pid"
	local i
	for i in $(seq 1 300); do
		if is_up; then
			log "up"
			return 0
		fi
		if ! alive "$(cat "$HS_DIR/dendrite.pid")"; then
			log "Dendrite exited; last lines of its output:"
			tail -n 30 "$HS_DIR/dendrite.out" >&2 || true
			return 1
		fi
		sleep 0.1
	done
	log "Dendrite did not answer within 30 s"
	return 1
}

stop() {
	local pidfile=$HS_DIR/dendrite.pid
	[[ -f $pidfile ]] || return 0
	local pid
	pid=$(cat "$pidfile")
	if alive "$pid"; then
		kill "$pid"
		local i
		for i in $(seq 1 100); do
			alive "$pid" || break
			sleep 0.1
		done
		kill -9 "$pid" 2>/dev/null || true
	fi
	rm -f "$pidfile"
	log "stopped"
}

register() {
	local user=$1 password=$2 admin=${3:-}
	local secret nonce mac admin_flag=false admin_mac=notadmin
	secret=$(cat "$HS_DIR/shared_secret")
	if [[ $admin == admin ]]; then
		admin_flag=true
		admin_mac=admin
	fi
	nonce=$(curl -fsS "$HS_URL/_synapse/admin/v1/register" | sed -E 's/.*"nonce":"([^"]+)".*/\1/')
	mac=$(printf '%s\0%s\0%s\0%s' "$nonce" "$user" "$password" "$admin_mac" |
		openssl dgst -sha1 -hmac "$secret" | awk '{print $NF}')
	curl -fsS -X POST "$HS_URL/_synapse/admin/v1/register" -H 'Content-Type: application/json' \
		-d "{\"nonce\":\"$nonce\",\"username\":\"$user\",\"password\":\"$password\",\"admin\":$admin_flag,\"mac\":\"$mac\"}" |
		sed -E 's/.*"access_token":"([^"]+)".*/\1/'; echo
}

case ${1:-} in
build) build ;;
start) shift; start "${1:-}" ;;
stop) stop ;;
status) is_up ;;
register) shift; register "$@" ;;
*)
	sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
	exit 2
	;;
esac
