#!/usr/bin/env bash
# bench-compare.sh: Go micro-benchmarks of a baseline revision against the
# working tree, in the same run, with the order of the two rotating every
# round, summarised by benchstat.
#
#   scripts/bench-compare.sh BASE_REV [packages...]
#   ROUNDS=6 BENCH='Session|RoundTrip' scripts/bench-compare.sh df64656 ./proxy/postgres/pgcrypt/
#   BASE_PKGS="./proxy/postgres/pgsql/" scripts/bench-compare.sh df64656 ./sqlplan/pgsql/
#
# BASE_PKGS names the same packages in the baseline when they have moved
# since. The two trees are compiled once each (go test -c), so every round
# measures the same binaries.
set -euo pipefail
base=${1:?usage: bench-compare.sh BASE_REV [packages...]}; shift
pkgs=("${@:-./proxy/postgres/pgcrypt/ ./proxy/mysql/mycrypt/}")
read -r -a pkgs <<<"${pkgs[*]}"
read -r -a bpkgs <<<"${BASE_PKGS:-${pkgs[*]}}"
ROUNDS=${ROUNDS:-6}
BENCH=${BENCH:-.}
BENCHTIME=${BENCHTIME:-1s}
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/dbproxy-benchcmp.XXXXXX)
cleanup() { git -C "$here" worktree remove --force "$work/base" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
git -C "$here" worktree add -q --detach "$work/base" "$base"

# build TREE OUTDIR PKG...: one test binary per package.
build() {
  local tree=$1 out=$2; shift 2
  mkdir -p "$out"
  local n=0
  for p in "$@"; do
    (cd "$tree" && go test -c -o "$out/$n.test" "$p")
    n=$((n + 1))
  done
}
build "$work/base" "$work/bin-base" "${bpkgs[@]}"
build "$here" "$work/bin-new" "${pkgs[@]}"

# run SIDE: every package's benchmarks once, appended to SIDE.txt. Each test
# binary runs in its package directory (testdata).
run() {
  local side=$1 tree=$2; shift 2
  local n=0
  for p in "$@"; do
    (cd "$tree/$p" && "$work/bin-$side/$n.test" -test.run '^$' -test.bench "$BENCH" \
      -test.benchmem -test.benchtime "$BENCHTIME" -test.count 1) | grep -E '^(Benchmark|goos|goarch|pkg|cpu)' >>"$work/$side.txt"
    n=$((n + 1))
  done
}
for r in $(seq "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then run base "$work/base" "${bpkgs[@]}"; run new "$here" "${pkgs[@]}"
  else run new "$here" "${pkgs[@]}"; run base "$work/base" "${bpkgs[@]}"; fi
  echo "round $r done" >&2
done
# benchstat pairs benchmarks by name within a package: name both sides' pkg
# lines alike so moved packages still pair.
sed -i -E 's/^pkg: .*/pkg: compared/' "$work/base.txt" "$work/new.txt"
go run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da base="$work/base.txt" new="$work/new.txt"
