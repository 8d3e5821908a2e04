//! Applies `schemas::ddl::MIGRATIONS` in order, each once. Statements are idempotent, so a run
//! cut short is finished by the next one.

use crate::error::ProcessorError;
use clickhouse::Row;
use serde::Deserialize;

#[derive(Row, Deserialize)]
struct Applied {
    version: u32,
}

pub async fn migrate(client: &clickhouse::Client, database: &str) -> Result<Vec<u32>, ProcessorError> {
    let root = client.clone().with_database("default");
    root.query(&format!("CREATE DATABASE IF NOT EXISTS {database}")).execute().await?;
    root.query(&schemas::ddl::migrations_table(database)).execute().await?;
    let applied: Vec<u32> = root
        .query(&format!("SELECT version FROM {database}.schema_migrations"))
        .fetch_all::<Applied>()
        .await?
        .into_iter()
        .map(|a| a.version)
        .collect();
    let mut newly = Vec::new();
    for m in schemas::ddl::MIGRATIONS {
        if applied.contains(&m.version) {
            continue;
        }
        for statement in m.statements(database) {
            if let Some((table, column)) = schemas::ddl::added_column(&statement) {
                if column_exists(&root, database, table, column).await? {
                    continue;
                }
            }
            root.query(&statement).execute().await?;
        }
        root.query(&format!(
            "INSERT INTO {database}.schema_migrations (version, name, applied_at) VALUES ({}, '{}', now())",
            m.version, m.name
        ))
        .execute()
        .await?;
        tracing::info!(version = m.version, name = m.name, "migration applied");
        newly.push(m.version);
    }
    Ok(newly)
}

async fn column_exists(
    client: &clickhouse::Client,
    database: &str,
    table: &str,
    column: &str,
) -> Result<bool, ProcessorError> {
    #[derive(Row, Deserialize)]
    struct N {
        n: u64,
    }
    let rows = client
        .query("SELECT toUInt64(count()) AS n FROM system.columns WHERE database = ? AND table = ? AND name = ?")
        .bind(database)
        .bind(table)
        .bind(column)
        .fetch_all::<N>()
        .await?;
    Ok(rows.first().is_some_and(|r| r.n > 0))
}
