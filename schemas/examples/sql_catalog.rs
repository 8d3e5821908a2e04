//! Prints every statement the pipeline sends to ClickHouse, with sample values bound, as JSON
//! lines `{"kind": ..., "sql": ...}`, for schemas/tests/check_current_clickhouse.py.

fn main() {
    let db = std::env::args().nth(1).unwrap_or_else(|| "engagement".into());
    for (kind, sql) in schemas::queries::catalog(&db) {
        println!("{}", serde_json::json!({"kind": kind, "sql": sql}));
    }
}
