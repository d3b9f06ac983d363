#!/bin/sh
# Entrypoint of the sikkerchat image, in the manner of the mautrix bridges:
#
#   1st run: no /data/config.yaml       -> write the example config, exit 0
#   2nd run: no /data/registration.yaml -> generate the registration, exit 0
#   then:                                  run the bridge (arguments are passed on,
#                                          e.g. --ignore-unsupported-server)
set -eu

BINARY=/usr/bin/sikkerchat
CONFIG=/data/config.yaml
REGISTRATION=/data/registration.yaml

cd /data

if [ ! -w /data ]; then
	echo "/data is not writable by uid $(id -u)." >&2
	echo "Give the volume to that user, e.g. on the host: chown -R 1337:1337 <data directory>" >&2
	exit 1
fi

if [ ! -f "$CONFIG" ]; then
	"$BINARY" -c "$CONFIG" -e
	echo
	echo "No config was found, so the example config was written to $CONFIG."
	echo "Edit it before going on: at least homeserver, appservice, database,"
	echo "bridge.permissions, encryption and network.guest (see docs/setup-synapse.md)."
	echo "Then start the container again to generate the registration."
	exit 0
fi

if [ ! -f "$REGISTRATION" ]; then
	"$BINARY" -g -c "$CONFIG" -r "$REGISTRATION"
	echo
	echo "The appservice registration was written to $REGISTRATION"
	echo "(and its tokens were saved in $CONFIG)."
	echo "Install it on the homeserver (Synapse: app_service_config_files), restart"
	echo "the homeserver, then start this container again to run the bridge."
	exit 0
fi

exec "$BINARY" -c "$CONFIG" -r "$REGISTRATION" "$@"
