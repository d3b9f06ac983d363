#!/usr/bin/env bash
# Runs every Go fuzz target (func FuzzXxx in *_test.go) for a while, one after
# the other. Their committed seeds (testdata/fuzz/) also run in every go test.
#
#   scripts/fuzz.sh          10 s per target (CI)
#   scripts/fuzz.sh 30m      30 minutes per target (or FUZZTIME=30m)
#
# Environment: FUZZTIME, FUZZ_PARALLEL (default 1: the machine also runs other
# things). Every target runs even when one fails; a failing input is written
# under the package's testdata/fuzz/<Target>/ and its path printed at the end:
# commit it as a regression seed once the bug is fixed.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
fuzztime=${1:-${FUZZTIME:-10s}}
parallel=${FUZZ_PARALLEL:-1}

mapfile -t targets < <(grep -rHoE --include='*_test.go' --exclude-dir=node_modules --exclude-dir=.git \
	'^func (Fuzz[A-Za-z0-9_]+)' . |
	sed -E 's#^\./([^:]*)/[^/:]*:func (Fuzz[A-Za-z0-9_]+)$#\1 \2#' | sort -u)
((${#targets[@]})) || { echo "fuzz: no targets found" >&2; exit 1; }
failed=()
for t in "${targets[@]}"; do
	read -r pkg name <<<"$t"
	printf 'fuzz: %s %s for %s\n' "$pkg" "$name" "$fuzztime"
	run() { CGO_ENABLED=1 go test -tags goolm -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" -parallel "$parallel" "./$pkg" 2>&1; }
	ok=1
	out=$(run) || ok=0
	# Go's fuzzing coordinator can report "context deadline exceeded", with no
	# input written, when its time ends while a starved worker is mid-call (a
	# race in internal/fuzz, golang/go#75804, fixed in Go 1.27). That is no
	# finding, so the target runs once more; a real failure writes its input.
	if ((!ok)) && grep -q 'context deadline exceeded' <<<"$out" && ! grep -q 'Failing input written' <<<"$out"; then
		printf 'fuzz: %s: the fuzzing engine timed out without a finding; running it again\n' "$name"
		ok=1
		out=$(run) || ok=0
	fi
	if ((!ok)); then
		printf '%s\n' "$out" | tail -n 30 >&2
		input=$(printf '%s\n' "$out" | sed -nE 's#.*Failing input written to (testdata/fuzz/[^ ]+).*#\1#p' | tail -n 1)
		[[ -n $input ]] && input="$pkg/$input" || input="no input written (see the output above)"
		failed+=("$name: $input")
		continue
	fi
	printf '%s\n' "$out" | grep -E 'elapsed: .*execs: [0-9]+ ' | tail -n 1 || true
done
if ((${#failed[@]})); then
	printf 'fuzz: FAILED %s\n' "${failed[@]}" >&2
	exit 1
fi
echo "fuzz: ${#targets[@]} targets ran clean"
