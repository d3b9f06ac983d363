#!/usr/bin/env bash
# Formatting and imports (gofmt, goimports), vet, staticcheck and module
# tidiness. Exits non-zero on the first problem. The Go tools are pinned as
# `tool` lines in go.mod.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './tests/*'))
if [[ -n $unformatted ]]; then
	echo "gofmt would change:" >&2
	echo "$unformatted" >&2
	exit 1
fi
unimported=$(go tool goimports -local github.com/sikkerchat/sikkerchat -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './tests/*'))
if [[ -n $unimported ]]; then
	echo "goimports would change (run: go tool goimports -local github.com/sikkerchat/sikkerchat -w FILE):" >&2
	echo "$unimported" >&2
	exit 1
fi
# Both builds: the release one and the one with test hooks.
go vet -tags goolm ./...
go vet -tags goolm,sikkerchat_testhooks ./...
go tool staticcheck -tags goolm ./...
go tool staticcheck -tags goolm,sikkerchat_testhooks ./...
go mod tidy -diff
# The Dendrite pin must stay buildable from its go.sum alone.
(cd scripts/dendrite && go list -mod=readonly github.com/element-hq/dendrite/cmd/dendrite >/dev/null)
bash -n scripts/*.sh .ci/run
echo "lint: ok"
