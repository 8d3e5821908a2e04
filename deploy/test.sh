#!/usr/bin/env bash
# Runs every test: formatting and lints, the SQL check on a current ClickHouse (chdb), and the
# whole cargo test suite, including the end-to-end test through a real Tansu broker and a real
# ClickHouse 18.16 that it installs when missing.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
mkdir -p "$SCRATCH"
STARTED=$(date +%s)

ensure_clickhouse
ensure_tansu
ensure_tansu_durable
ensure_chromium
export TANSU_BIN
TANSU_DURABLE_BIN="$(tansu_durable_bin)"
export TANSU_DURABLE_BIN
if ! python3 -c 'import chdb' 2>/dev/null; then
    log "installing chdb-core (a current ClickHouse engine, in-process) from PyPI"
    python3 -m pip install --quiet chdb-core
fi

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings
log "building the service binaries the end-to-end test starts (and every test)"
# All targets at once: with the tests' dev-dependencies in the feature resolution, so that the
# test step below reuses this build instead of compiling polars a second time.
cargo build --workspace --all-targets --quiet
log "every ClickHouse statement on a current ClickHouse (chdb)"
cargo run --quiet -p schemas --example sql_catalog -- engagement_check | python3 schemas/tests/check_current_clickhouse.py engagement_check
log "cargo test (unit, property, HTTP and end-to-end tests)"
cargo test --workspace --no-fail-fast 2>&1 | tee "$SCRATCH/test.log" | grep -vE '^\s*Running|^running 0 tests|^test result: ok. 0 passed|^\s*Doc-tests|^$' || true
# Fail on any failed test, then close on the suite's own count.
if grep -qE '^test result: FAILED|error: test failed|could not compile' "$SCRATCH/test.log"; then
    log "tests failed (full log: $SCRATCH/test.log)"; exit 1
fi
log "all checks done in $(( $(date +%s) - STARTED )) s"
python3 - "$SCRATCH/test.log" <<'PY'
import re, sys
p = f = 0
for line in open(sys.argv[1]):
    m = re.match(r"test result: \w+\. (\d+) passed; (\d+) failed", line)
    if m:
        p += int(m.group(1)); f += int(m.group(2))
print(f"{p} passed, {f} failed")
sys.exit(1 if f or p == 0 else 0)
PY
