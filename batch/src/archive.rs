//! Raw events from the archive (`events_raw` in ClickHouse), back as typed events through the
//! same validation as ingest.

use crate::BatchError;
use clickhouse::{Client, Row};
use schemas::validate::{parse_event_value, Limits};
use schemas::Event;
use serde::Deserialize;

#[derive(Debug, Clone, Row, Deserialize)]
pub struct ArchivedEvent {
    pub community_id: String,
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub group_id: String,
    pub member_id: String,
    pub ts_ms: i64,
    pub platform: String,
    pub is_bot: u8,
    pub props: String,
}

impl ArchivedEvent {
    pub fn to_event(&self) -> Result<Event, BatchError> {
        let mut v = serde_json::json!({
            "event_id": self.event_id, "type": self.event_type, "community_id": self.community_id,
            "group_id": self.group_id, "member_id": self.member_id, "ts": schemas::event::format_ts(self.ts_ms),
        });
        if !self.platform.is_empty() {
            v["platform"] = self.platform.clone().into();
        }
        if self.is_bot != 0 {
            v["is_bot"] = true.into();
        }
        let props: serde_json::Value = serde_json::from_str(&self.props)
            .map_err(|e| BatchError::Archive(format!("event {}: props is not JSON: {e}", self.event_id)))?;
        if props.as_object().is_some_and(|o| !o.is_empty()) {
            v["props"] = props;
        }
        parse_event_value(&v, None, &Limits { max_event_bytes: usize::MAX, max_future_ms: i64::MAX / 4 })
            .map_err(|e| BatchError::Archive(format!("event {}: {e}", self.event_id)))
    }
}

pub const COLUMNS: &str = "community_id, event_id, type, group_id, member_id, ts_ms, platform, is_bot, props";

/// Every distinct archived event of `community`, as stored.
pub async fn clickhouse_rows(client: &Client, community: &str) -> Result<Vec<ArchivedEvent>, BatchError> {
    Ok(client
        .query(&format!("SELECT {COLUMNS} FROM events_raw FINAL WHERE community_id = ?"))
        .bind(community)
        .fetch_all::<ArchivedEvent>()
        .await?)
}

/// Every distinct archived event of `community`, typed.
pub async fn clickhouse_events(client: &Client, community: &str) -> Result<Vec<Event>, BatchError> {
    clickhouse_rows(client, community).await?.iter().map(ArchivedEvent::to_event).collect()
}

pub async fn clickhouse_communities(client: &Client) -> Result<Vec<String>, BatchError> {
    #[derive(Row, Deserialize)]
    struct C {
        community_id: String,
    }
    let rows = client
        .query("SELECT community_id FROM events_raw GROUP BY community_id ORDER BY community_id")
        .fetch_all::<C>()
        .await?;
    Ok(rows.into_iter().map(|c| c.community_id).collect())
}
