#!/usr/bin/env bash
# Two Roster nodes on one PostgreSQL database and one Redis, measured with roster-bench --target.
set -euo pipefail
BIN=/work/main/target/release
DB=roster_bench_2n_$RANDOM$RANDOM
psql -h 127.0.0.1 -U postgres -d test -qc "CREATE DATABASE $DB" 
KEY=bench-operator-key-0123456789-abcdefghij
PFX=bench-$RANDOM
common=(ROSTER_DATABASE_URL=postgres://postgres@127.0.0.1:5432/$DB ROSTER_REDIS_URL=redis://127.0.0.1:6379 ROSTER_REDIS_PREFIX=$PFX ROSTER_OPERATOR_KEY=$KEY ROSTER_LOG=warn)
env "${common[@]}" ROSTER_LISTEN=127.0.0.1:18081 $BIN/roster serve 2>/tmp/note/a.log & A=$!
sleep 2
env "${common[@]}" ROSTER_LISTEN=127.0.0.1:18082 $BIN/roster serve 2>/tmp/note/b.log & B=$!
for p in 18081 18082; do for i in $(seq 1 100); do curl -sf http://127.0.0.1:$p/readyz >/dev/null && break; sleep 0.1; done; done
$BIN/roster-bench create-users --target http://127.0.0.1:18081 --operator-key $KEY --concurrency 64 --seconds 8 --json /tmp/note/2n-a.json > /tmp/note/2n-a.md 2>/tmp/note/2n-a.err &
X=$!
$BIN/roster-bench create-users --target http://127.0.0.1:18082 --operator-key $KEY --concurrency 64 --seconds 8 --json /tmp/note/2n-b.json > /tmp/note/2n-b.md 2>/tmp/note/2n-b.err
wait $X
$BIN/roster-bench realtime --target http://127.0.0.1:18081 --operator-key $KEY --peer http://127.0.0.1:18082 --json /tmp/note/2n-rt.json > /tmp/note/2n-rt.md 2>/tmp/note/2n-rt.err
kill -TERM $A $B; wait $A $B || true
psql -h 127.0.0.1 -U postgres -d test -qc "DROP DATABASE $DB WITH (FORCE)"
cat /tmp/note/2n-a.md /tmp/note/2n-b.md /tmp/note/2n-rt.md
