//! The raw-event archive as Parquet: one file per community and month (UTC month of `ts`), under
//! `DIR/community=<id>/month=<YYYY-MM>/events.parquet`, with the columns of `events_raw` (minus
//! the Kafka position, which a re-import assigns anew).

use crate::archive::ArchivedEvent;
use crate::BatchError;
use chrono::{DateTime, Utc};
use polars::prelude::*;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

/// A path segment for any community id: bytes outside `[A-Za-z0-9._-]` as `%XX`.
pub fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn month(ts_ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ts_ms)
        .map(|t| t.format("%Y-%m").to_string())
        .unwrap_or_else(|| "invalid".into())
}

fn frame(events: &[&ArchivedEvent]) -> Result<DataFrame, BatchError> {
    let n = events.len();
    let s = |f: fn(&ArchivedEvent) -> &str| events.iter().map(|e| f(e).to_owned()).collect::<Vec<String>>();
    let columns = vec![
        Column::new("community_id".into(), s(|e| &e.community_id)),
        Column::new("event_id".into(), s(|e| &e.event_id)),
        Column::new("type".into(), s(|e| &e.event_type)),
        Column::new("group_id".into(), s(|e| &e.group_id)),
        Column::new("member_id".into(), s(|e| &e.member_id)),
        Column::new("ts_ms".into(), events.iter().map(|e| e.ts_ms).collect::<Vec<i64>>()),
        Column::new("platform".into(), s(|e| &e.platform)),
        Column::new("is_bot".into(), events.iter().map(|e| e.is_bot != 0).collect::<Vec<bool>>()),
        Column::new("props".into(), s(|e| &e.props)),
    ];
    Ok(DataFrame::new(n, columns)?)
}

/// Writes `events` partitioned by community and month; returns each file and its row count.
pub fn write_partitioned(events: &[ArchivedEvent], dir: &Path) -> Result<Vec<(PathBuf, usize)>, BatchError> {
    let mut parts: BTreeMap<(String, String), Vec<&ArchivedEvent>> = BTreeMap::new();
    for e in events {
        parts.entry((e.community_id.clone(), month(e.ts_ms))).or_default().push(e);
    }
    let mut written = Vec::new();
    for ((community, month), mut rows) in parts {
        rows.sort_by(|a, b| (a.ts_ms, &a.event_id).cmp(&(b.ts_ms, &b.event_id)));
        let sub = dir.join(format!("community={}", path_segment(&community))).join(format!("month={month}"));
        std::fs::create_dir_all(&sub).map_err(|e| BatchError::Archive(format!("{}: {e}", sub.display())))?;
        let path = sub.join("events.parquet");
        let file = File::create(&path).map_err(|e| BatchError::Archive(format!("{}: {e}", path.display())))?;
        let mut df = frame(&rows)?;
        ParquetWriter::new(file).finish(&mut df)?;
        written.push((path, rows.len()));
    }
    Ok(written)
}

fn strings(df: &DataFrame, name: &str) -> Result<Vec<String>, BatchError> {
    let c = df.column(name)?.as_materialized_series().cast(&DataType::String)?;
    Ok(c.str()?.iter().map(|v| v.unwrap_or_default().to_owned()).collect())
}

/// Reads one file written by `write_partitioned` (or any Parquet file with those columns).
pub fn read_file(path: &Path) -> Result<Vec<ArchivedEvent>, BatchError> {
    let file = File::open(path).map_err(|e| BatchError::Archive(format!("{}: {e}", path.display())))?;
    let df = ParquetReader::new(file).finish()?;
    let ts = df.column("ts_ms")?.as_materialized_series().cast(&DataType::Int64)?;
    let ts: Vec<i64> = ts.i64()?.iter().map(|v| v.unwrap_or_default()).collect();
    let bot = df.column("is_bot")?.as_materialized_series().cast(&DataType::Boolean)?;
    let bot: Vec<bool> = bot.bool()?.iter().map(|v| v.unwrap_or(false)).collect();
    let (c, id, ty, g, m, pl, pr) = (
        strings(&df, "community_id")?,
        strings(&df, "event_id")?,
        strings(&df, "type")?,
        strings(&df, "group_id")?,
        strings(&df, "member_id")?,
        strings(&df, "platform")?,
        strings(&df, "props")?,
    );
    Ok((0..df.height())
        .map(|i| ArchivedEvent {
            community_id: c[i].clone(),
            event_id: id[i].clone(),
            event_type: ty[i].clone(),
            group_id: g[i].clone(),
            member_id: m[i].clone(),
            ts_ms: ts[i],
            platform: pl[i].clone(),
            is_bot: bot[i] as u8,
            props: pr[i].clone(),
        })
        .collect())
}

/// How many rows one file holds, from its footer.
pub fn row_count(path: &Path) -> Result<usize, BatchError> {
    let file = File::open(path).map_err(|e| BatchError::Archive(format!("{}: {e}", path.display())))?;
    Ok(ParquetReader::new(file).num_rows()?)
}

/// Every `*.parquet` file under `path` (or `path` itself), sorted.
pub fn files(path: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if path.is_dir() {
        if let Ok(entries) = std::fs::read_dir(path) {
            for e in entries.flatten() {
                out.extend(files(&e.path()));
            }
        }
    } else if path.extension().is_some_and(|x| x == "parquet") {
        out.push(path.to_path_buf());
    }
    out.sort();
    out
}
