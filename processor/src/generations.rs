//! Generations of the derived tables: `processor replay` builds a new one from the log while the
//! current one keeps serving, `processor switch` points the query API at it in one insert, and
//! `processor drop-generation` removes an old one. Generation 0 is the base database itself.

use crate::error::ProcessorError;
use clickhouse::{Client, Row};
use schemas::ddl::generation_database;
use serde::Deserialize;

/// A client on the `default` database, for statements that name their database.
fn root(client: &Client) -> Client {
    client.clone().with_database("default")
}

/// Creates the base database and its `serving` table if missing.
pub async fn ensure_serving_table(client: &Client, base: &str) -> Result<(), ProcessorError> {
    let root = root(client);
    root.query(&format!("CREATE DATABASE IF NOT EXISTS {base}")).execute().await?;
    root.query(&schemas::ddl::serving_table(base)).execute().await?;
    root.query(&schemas::ddl::generation_counts_from_table(base)).execute().await?;
    Ok(())
}

pub async fn serving(client: &Client, base: &str) -> Result<u32, ProcessorError> {
    #[derive(Row, Deserialize)]
    struct G {
        g: u32,
    }
    let rows = root(client).query(&schemas::queries::serving_generation(base)).fetch_all::<G>().await?;
    Ok(rows.first().map(|r| r.g).unwrap_or(0))
}

async fn database_exists(client: &Client, db: &str) -> Result<bool, ProcessorError> {
    #[derive(Row, Deserialize)]
    struct N {
        n: u64,
    }
    let rows = root(client)
        .query("SELECT count() AS n FROM system.databases WHERE name = ?")
        .bind(db)
        .fetch_all::<N>()
        .await?;
    Ok(rows.first().is_some_and(|r| r.n > 0))
}

async fn has_progress(client: &Client, db: &str) -> Result<bool, ProcessorError> {
    #[derive(Row, Deserialize)]
    struct N {
        n: u64,
    }
    if !database_exists(client, db).await? {
        return Ok(false);
    }
    let rows =
        root(client).query(&format!("SELECT count() AS n FROM {db}.processor_progress")).fetch_all::<N>().await?;
    Ok(rows.first().is_some_and(|r| r.n > 0))
}

/// The database a replay copies the archive from: the served generation's, when it has
/// processed anything (its archive is then complete up to its progress).
pub async fn archive_source(client: &Client, base: &str) -> Result<Option<String>, ProcessorError> {
    let db = generation_database(base, serving(client, base).await?);
    Ok(has_progress(client, &db).await?.then_some(db))
}

/// A replay never goes into the generation being served. Returns whether the target already holds
/// processed data (an interrupted replay then resumes).
pub async fn check_replay_target(client: &Client, base: &str, generation: u32) -> Result<bool, ProcessorError> {
    let current = serving(client, base).await?;
    if generation == current {
        return Err(ProcessorError::Generation(format!(
            "--generation {generation}: is the generation being served; replay into a new one (e.g. {})",
            current + 1
        )));
    }
    has_progress(client, &generation_database(base, generation)).await
}

/// A generation's tables are one function of the log and its configuration: events before
/// `counts_from` are left out by every processor that writes it, or by none. A generation that
/// holds nothing yet takes `counts_from_ms` (recorded in the base database); one that holds
/// processed data keeps what it was built with, and a processor configured otherwise must not
/// write it.
pub async fn check_counts_from(
    client: &Client,
    base: &str,
    generation: u32,
    counts_from_ms: Option<i64>,
) -> Result<(), ProcessorError> {
    #[derive(Row, Deserialize)]
    struct Recorded {
        ms: i64,
        n: u64,
    }
    let wanted = counts_from_ms.unwrap_or(i64::MIN);
    if has_progress(client, &generation_database(base, generation)).await? {
        let rows = root(client)
            .query(&schemas::queries::generation_counts_from(base))
            .bind(generation)
            .fetch_all::<Recorded>()
            .await?;
        // Written before this check existed: it is recorded as configured now.
        if let Some(r) = rows.first().filter(|r| r.n > 0) {
            if r.ms != wanted {
                return Err(ProcessorError::Generation(format!(
                    "counts_from: generation {generation} was built counting {}, this configuration counts {}; \
                     configure the same counts_from (a replay's --from), or replay into a new generation",
                    describe_counts_from(r.ms),
                    describe_counts_from(wanted)
                )));
            }
            return Ok(());
        }
    }
    root(client)
        .query(&format!(
            "INSERT INTO {base}.generation_counts_from (generation, counts_from_ms, recorded_at_ms) \
             VALUES ({generation}, {wanted}, {})",
            chrono::Utc::now().timestamp_millis()
        ))
        .execute()
        .await?;
    Ok(())
}

fn describe_counts_from(ms: i64) -> String {
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) if ms != i64::MIN => {
            format!("events from {}", t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        }
        _ => "every event".to_string(),
    }
}

/// Points the query API at `generation` (every API instance follows within its cache time).
pub async fn switch(client: &Client, base: &str, generation: u32) -> Result<u32, ProcessorError> {
    let db = generation_database(base, generation);
    if !has_progress(client, &db).await? {
        return Err(ProcessorError::Generation(format!(
            "generation {generation}: {db} holds no processed data; run processor replay --generation {generation} first"
        )));
    }
    let previous = serving(client, base).await?;
    root(client)
        .query(&format!(
            "INSERT INTO {base}.serving (generation, switched_at_ms) VALUES ({generation}, {})",
            chrono::Utc::now().timestamp_millis()
        ))
        .execute()
        .await?;
    Ok(previous)
}

/// Drops a generation's database; never the served one, never generation 0 (the base database
/// also holds the `serving` table).
pub async fn drop_generation(client: &Client, base: &str, generation: u32) -> Result<(), ProcessorError> {
    if generation == 0 {
        return Err(ProcessorError::Generation(
            "generation 0: lives in the base database with the serving table and is not dropped; \
             truncate its tables by hand if needed"
                .into(),
        ));
    }
    if serving(client, base).await? == generation {
        return Err(ProcessorError::Generation(format!(
            "generation {generation}: is being served; switch to another generation first"
        )));
    }
    let db = generation_database(base, generation);
    root(client).query(&format!("DROP DATABASE IF EXISTS {db}")).execute().await?;
    Ok(())
}
