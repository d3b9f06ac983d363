#!/usr/bin/env bash
# Runs every Go fuzz target (func FuzzXxx in *_test.go) for a while, one after
# the other. Their committed seeds (testdata/fuzz/) also run in every go test.
#
#   scripts/fuzz.sh          10 s per target (CI)
#   scripts/fuzz.sh 30m      30 minutes per target
#
# Environment: FUZZ_PARALLEL (default 1: the machine also runs other things).
# A failing input is written under the package's testdata/fuzz/<Target>/ and
# the script stops with its path; commit it as a regression seed once fixed.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
fuzztime=${1:-10s}
parallel=${FUZZ_PARALLEL:-1}

mapfile -t targets < <(grep -rhoE --include='*_test.go' '^func (Fuzz[A-Za-z0-9_]+)' --with-filename . |
	sed -E 's#^\./([^:]*)/[^/:]*:func (Fuzz[A-Za-z0-9_]+)$#\1 \2#' | sort -u)
((${#targets[@]})) || { echo "fuzz: no targets found" >&2; exit 1; }
for t in "${targets[@]}"; do
	read -r pkg name <<<"$t"
	printf 'fuzz: %s %s for %s\n' "$pkg" "$name" "$fuzztime"
	if ! out=$(CGO_ENABLED=1 go test -tags goolm -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" -parallel "$parallel" "./$pkg" 2>&1); then
		printf '%s\n' "$out" | tail -n 30 >&2
		echo "fuzz: $name failed; the input is under $pkg/testdata/fuzz/$name/" >&2
		exit 1
	fi
	printf '%s\n' "$out" | grep -E 'elapsed: .*execs: [0-9]+ ' | tail -n 1 || true
done
echo "fuzz: ${#targets[@]} targets ran clean"
