#!/usr/bin/env bash
# Formatting, vet and module tidiness. Exits non-zero on the first problem.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './tests/*'))
if [[ -n $unformatted ]]; then
	echo "gofmt would change:" >&2
	echo "$unformatted" >&2
	exit 1
fi
# Both builds: the release one and the one with test hooks.
go vet -tags goolm ./...
go vet -tags goolm,sikkerchat_testhooks ./...
go mod tidy -diff
# The Dendrite pin must stay buildable from its go.sum alone.
(cd scripts/dendrite && go list -mod=readonly github.com/element-hq/dendrite/cmd/dendrite >/dev/null)
bash -n scripts/*.sh .ci/run
echo "lint: ok"
