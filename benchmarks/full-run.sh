#!/usr/bin/env bash
# The full benchmark run recorded in BENCHMARKS.md: every scenario on SQLite
# (synchronous=normal), create-users and get-user on SQLite synchronous=full,
# and every scenario on PostgreSQL (list sizes up to 100,000 there: seeding a
# million users over HTTP on PostgreSQL takes about six minutes more).
# Run it on a quiet machine: figures are only comparable without other load.
#
#   bash benchmarks/full-run.sh [OUT_DIR]        # default: target/bench-full
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-target/bench-full}
PG=${ROSTER_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
mkdir -p "$OUT"
cargo build --release --bins
# Private copies: a later build cannot swap the binaries during the run
# (roster-bench starts the `roster` that sits beside it).
BIN="$OUT/bin"
mkdir -p "$BIN" && cp target/release/roster target/release/roster-bench "$BIN/"
run() { local name=$1; shift; "$BIN/roster-bench" "$@" --json "$OUT/$name.json" | tee "$OUT/$name.md"; }
status=0
run sqlite-normal-all all --seconds 5 --list-sizes 10000,100000,1000000 || status=1
run sqlite-full-create create-users --sqlite-synchronous full --seconds 10 || status=1
run sqlite-full-get get-user --sqlite-synchronous full --seconds 10 || status=1
run postgres-all all --database-url "$PG" --seconds 5 --list-sizes 10000,100000 || status=1
exit $status
