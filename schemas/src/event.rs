//! The validated, normalised form of one event.
//!
//! On the Kafka topic an event is this struct serialised as JSON: the SPEC's field names, `ts`
//! normalised to UTC with millisecond precision (`2024-01-01T00:00:00.000Z`), `null` props dropped.
//! Any consumer that understands the SPEC's format therefore understands the topic.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    MemberJoined,
    MemberLeft,
    MessagePosted,
    ReactionAdded,
    Checkin,
    ActivityParticipated,
    Conversion,
}

impl EventType {
    pub const ALL: [EventType; 7] = [
        EventType::MemberJoined,
        EventType::MemberLeft,
        EventType::MessagePosted,
        EventType::ReactionAdded,
        EventType::Checkin,
        EventType::ActivityParticipated,
        EventType::Conversion,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::MemberJoined => "member_joined",
            EventType::MemberLeft => "member_left",
            EventType::MessagePosted => "message_posted",
            EventType::ReactionAdded => "reaction_added",
            EventType::Checkin => "checkin",
            EventType::ActivityParticipated => "activity_participated",
            EventType::Conversion => "conversion",
        }
    }

    pub fn parse(s: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    #[default]
    Left,
    Removed,
    Banned,
}

impl LeaveReason {
    pub fn as_str(self) -> &'static str {
        match self {
            LeaveReason::Left => "left",
            LeaveReason::Removed => "removed",
            LeaveReason::Banned => "banned",
        }
    }
}

/// One accepted event. Typed props the metrics need are lifted out of `props` at validation;
/// `props` itself keeps every key (typed or not) for the archive.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub event_id: String,
    pub event_type: EventType,
    pub community_id: String,
    pub group_id: String,
    pub member_id: String,
    /// Milliseconds since the Unix epoch, UTC.
    pub ts_ms: i64,
    pub platform: Option<String>,
    pub is_bot: bool,
    pub props: Map<String, Value>,
    /// `member_joined.props.inviter_id`.
    pub inviter_id: Option<String>,
    /// `member_left.props.reason` (default `left`).
    pub leave_reason: LeaveReason,
    /// `conversion.props.value`.
    pub conversion_value: Option<f64>,
}

impl Event {
    /// The Kafka record key: all events of one member of one community share it, so they land in
    /// one partition. The NUL separator cannot occur in a valid `community_id`.
    pub fn partition_key(&self) -> Vec<u8> {
        partition_key(&self.community_id, &self.member_id)
    }

    pub fn ts_rfc3339(&self) -> String {
        format_ts(self.ts_ms)
    }

    /// The canonical JSON form written to Kafka.
    pub fn to_json(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("event_id".into(), Value::String(self.event_id.clone()));
        obj.insert("type".into(), Value::String(self.event_type.as_str().into()));
        obj.insert("community_id".into(), Value::String(self.community_id.clone()));
        obj.insert("group_id".into(), Value::String(self.group_id.clone()));
        obj.insert("member_id".into(), Value::String(self.member_id.clone()));
        obj.insert("ts".into(), Value::String(self.ts_rfc3339()));
        if let Some(p) = &self.platform {
            obj.insert("platform".into(), Value::String(p.clone()));
        }
        if self.is_bot {
            obj.insert("is_bot".into(), Value::Bool(true));
        }
        if !self.props.is_empty() {
            obj.insert("props".into(), Value::Object(self.props.clone()));
        }
        Value::Object(obj)
    }

    pub fn to_json_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.to_json()).expect("a JSON value always serialises")
    }
}

pub fn partition_key(community_id: &str, member_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(community_id.len() + 1 + member_id.len());
    key.extend_from_slice(community_id.as_bytes());
    key.push(0);
    key.extend_from_slice(member_id.as_bytes());
    key
}

pub fn format_ts(ts_ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ts_ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_else(|| ts_ms.to_string())
}
