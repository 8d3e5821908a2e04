#!/usr/bin/env python3
"""Runs every statement the pipeline sends to ClickHouse (printed by the `sql_catalog` example)
on a current ClickHouse engine embedded by the `chdb-core` package, after inserting one sample
row per table so that the queries read real data. The end-to-end test runs the same statements
on Debian's 18.16. Usage: cargo run -q -p schemas --example sql_catalog -- DB | check_current_clickhouse.py DB
"""
import json
import sys
import tempfile

from chdb import session

db = sys.argv[1] if len(sys.argv) > 1 else "engagement"
statements = [json.loads(line) for line in sys.stdin if line.strip()]
samples = [
    f"INSERT INTO {db}.events_raw VALUES ('demo','e1','message_posted','g1','m1',1704067200000,'qq',0,'{{}}',0,0,'2024-01-01',1)",
    f"INSERT INTO {db}.cohorts VALUES ('demo','','week','2024-01-01',0,3,1)",
    f"INSERT INTO {db}.retention VALUES ('demo','g1','month','on_or_after','2024-01-01',0,'2024-01-01',0,2,1)",
    f"INSERT INTO {db}.member_facts (community_id, group_id, member_id, partition, join_ms, cohort_day, cohort_week, "
    "cohort_month, activated, activation_ms, activation_window_end_ms, version, converted, conversion_value_micros, "
    "first_conversion_ms, conversion_window_end_ms, activated_then_converted, inviter_id, referral_window_end_ms) "
    "VALUES ('demo','','m1',0,1704067200000,'2024-01-01','2024-01-01','2024-01-01',1,3600000,1704672000000,1,"
    "1,9900000,1704070800000,1706659200000,1,'',1706659200000)",
    f"INSERT INTO {db}.member_facts (community_id, group_id, member_id, partition, join_ms, cohort_day, cohort_week, "
    "cohort_month, inviter_id, referral_window_end_ms, version) "
    "VALUES ('demo','','m2',0,1704153600000,'2024-01-02','2024-01-01','2024-01-01','m1',1706745600000,1)",
    f"INSERT INTO {db}.community_stats (community_id, partition, events_processed, max_ts_ms, version, min_ts_ms, "
    "first_day, last_day) VALUES ('demo',0,10,1704067200000,1,1703980800000,'2023-12-31','2024-01-01')",
    f"INSERT INTO {db}.engagement VALUES ('demo','g1','2024-01-01',0,1,2,3,4,5,6,7,8,9,10,1)",
    f"INSERT INTO {db}.lifecycle VALUES ('demo','','week','2024-01-01',0,1,2,3,4,1)",
    f"INSERT INTO {db}.churn VALUES ('demo','','week','2024-01-01',0,10,2,1,1,3,1)",
    f"INSERT INTO {db}.processor_progress VALUES ('engagement-events',0,10,12,1)",
]
passed = failed = 0
with tempfile.TemporaryDirectory() as tmp:
    s = session.Session(tmp)
    ddl = [st["sql"] for st in statements if st["kind"] == "ddl"]
    queries = [st["sql"] for st in statements if st["kind"] == "query"]
    # The services connect with `database=<db>`; their queries name tables without it.
    for sql in ddl + samples + [f"USE {db}"] + queries:
        try:
            s.query(sql, "TSV")
            passed += 1
        except Exception as e:  # noqa: BLE001 - report every failure, then fail
            failed += 1
            if failed <= 5:
                print(f"FAILED: {sql}\n  {str(e)[:400]}")
    # The analyst queries of docs/metrics.md and docs/analyst.md, as written.
    import pathlib, re
    docs_dir = pathlib.Path(__file__).resolve().parents[2] / "docs"
    doc_queries = [q for name in ("metrics.md", "analyst.md")
                   for q in re.findall(r"```sql\n(.*?)```", (docs_dir / name).read_text(), re.S)]
    for sql in doc_queries:
        try:
            s.query(sql, "TSV")
            passed += 1
        except Exception as e:  # noqa: BLE001
            failed += 1
            print(f"FAILED (docs): {sql}\n  {str(e)[:400]}")
    version = s.query("SELECT version()", "TSV").data().strip()
    print(f"chdb (ClickHouse {version}): {len(ddl)} DDL statements, {len(samples)} inserts, {len(queries)} queries, {len(doc_queries)} docs queries")
if len(statements) < 10:
    print("FAILED: the catalog is unexpectedly short")
    failed += 1
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
