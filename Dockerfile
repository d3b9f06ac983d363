# sikkerchat container image.
#
#   docker build -t sikkerchat \
#       --build-arg TAG=v0.1.0 --build-arg COMMIT=$(git rev-parse HEAD) \
#       --build-arg BUILD_TIME=$(date -Iseconds) .
#
# The first run writes /data/config.yaml and exits, the second writes
# /data/registration.yaml and exits, later runs start the bridge
# (see docker-run.sh and docs/setup-synapse.md).

FROM golang:1.26-bookworm AS build

# Version facts for `sikkerchat --version` and the `version` command. The
# build context has no .git (see .dockerignore), so they come in as arguments.
ARG TAG=unknown
ARG COMMIT=unknown
ARG BUILD_TIME=unknown

WORKDIR /build
# Modules first, so that a code change does not download them again.
COPY go.mod go.sum ./
RUN go mod download

COPY . .
# cgo stays on for go-sqlite3; Olm is the pure-Go implementation (goolm), so
# the runtime image needs no libolm. The test hooks tag is never used here.
RUN CGO_ENABLED=1 go build -tags goolm -trimpath \
        -ldflags "-s -w -X main.Tag=${TAG} -X main.Commit=${COMMIT} -X main.BuildTime=${BUILD_TIME}" \
        -o /usr/bin/sikkerchat ./cmd/sikkerchat \
    && install -m 0755 docker-run.sh /usr/bin/docker-run.sh


FROM debian:bookworm-slim

# ca-certificates for an https homeserver address. No tzdata: the binary embeds
# time/tzdata.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 1337 sikkerchat \
    && useradd --system --uid 1337 --gid 1337 --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin sikkerchat \
    && mkdir /data \
    && chown 1337:1337 /data \
    && chmod 0700 /data

COPY --from=build /usr/bin/sikkerchat /usr/bin/sikkerchat
COPY --from=build /usr/bin/docker-run.sh /docker-run.sh

USER 1337:1337
WORKDIR /data
# Config, registration, SQLite database and logs. Declared after the chown so
# that a new named volume starts out owned by uid 1337.
VOLUME /data

# 29345: appservice API (and provisioning API), for the homeserver only; keep
# it on the internal network.
# 29346: guest listener, the only port for a public TLS reverse proxy.
EXPOSE 29345 29346

ENTRYPOINT ["/docker-run.sh"]
