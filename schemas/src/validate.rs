//! SPEC section 2 as code: every rule an event must meet, each failure naming the field and the
//! rule (`member_id: required, got null`).

use crate::event::{Event, EventType, LeaveReason};
use chrono::DateTime;
use serde_json::{Map, Value};

/// A rule an event broke. `Display` gives `field: rule`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {rule}")]
pub struct ValidationError {
    pub field: String,
    pub rule: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, rule: impl Into<String>) -> Self {
        ValidationError { field: field.into(), rule: rule.into() }
    }

    /// A short, stable reason for metric labels (never contains user data).
    pub fn reason_label(&self) -> &'static str {
        let f = self.field.as_str();
        if self.rule.starts_with("unknown field") {
            return "unknown_field";
        }
        match f {
            "event" => "malformed",
            "event_id" => "event_id",
            "type" => "type",
            "community_id" => "community_id",
            "group_id" => "group_id",
            "member_id" => "member_id",
            "ts" => "ts",
            "platform" => "platform",
            "is_bot" => "is_bot",
            _ if f.starts_with("props") => "props",
            _ => "other",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_event_bytes: usize,
    /// How far ahead of the ingest clock a `ts` may be.
    pub max_future_ms: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_event_bytes: 32 * 1024, max_future_ms: 24 * 3600 * 1000 }
    }
}

pub const TOP_LEVEL_FIELDS: [&str; 9] =
    ["event_id", "type", "community_id", "group_id", "member_id", "ts", "platform", "is_bot", "props"];

/// Parses and validates one event from its JSON text. `now_ms` is the ingest clock; `None`
/// skips the future-timestamp rule (the processor re-validating records already accepted).
pub fn parse_event(bytes: &[u8], now_ms: Option<i64>, limits: &Limits) -> Result<Event, ValidationError> {
    if bytes.len() > limits.max_event_bytes {
        return Err(ValidationError::new(
            "event",
            format!("must be at most {} bytes, got {}", limits.max_event_bytes, bytes.len()),
        ));
    }
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| ValidationError::new("event", format!("malformed JSON: {e}")))?;
    parse_event_value(&value, now_ms, limits)
}

/// The `event_id` of a rejected event, when it has a usable one, for error reports.
pub fn event_id_of(value: &Value) -> Option<String> {
    value.get("event_id").and_then(Value::as_str).map(|s| truncate(s, 128))
}

pub fn parse_event_value(value: &Value, now_ms: Option<i64>, limits: &Limits) -> Result<Event, ValidationError> {
    let obj = value
        .as_object()
        .ok_or_else(|| ValidationError::new("event", format!("must be a JSON object, got {}", kind(value))))?;
    for key in obj.keys() {
        if !TOP_LEVEL_FIELDS.contains(&key.as_str()) {
            return Err(ValidationError::new(
                truncate(key, 64),
                format!("unknown field (allowed: {})", TOP_LEVEL_FIELDS.join(", ")),
            ));
        }
    }
    let event_id = bounded_string(obj, "event_id")?;
    let type_str = required_string(obj, "type")?;
    let event_type = EventType::parse(type_str).ok_or_else(|| {
        let names: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        ValidationError::new("type", format!("must be one of {}, got {}", names.join(", "), quoted(type_str)))
    })?;
    let community_id = required_string(obj, "community_id")?;
    if !valid_community_id(community_id) {
        return Err(ValidationError::new(
            "community_id",
            format!("must match ^[A-Za-z0-9_.-]{{1,64}}$, got {}", quoted(community_id)),
        ));
    }
    let group_id = bounded_string(obj, "group_id")?;
    let member_id = bounded_string(obj, "member_id")?;
    let ts_ms = parse_ts(required_string(obj, "ts")?)?;
    if let Some(now) = now_ms {
        if ts_ms > now + limits.max_future_ms {
            return Err(ValidationError::new(
                "ts",
                format!(
                    "must not be more than {}h ahead of the ingest clock ({}), got {}",
                    limits.max_future_ms / 3_600_000,
                    crate::event::format_ts(now),
                    crate::event::format_ts(ts_ms)
                ),
            ));
        }
    }
    let platform = match non_null(obj, "platform") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(v) => return Err(ValidationError::new("platform", format!("must be a string, got {}", kind(v)))),
    };
    let is_bot = match non_null(obj, "is_bot") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(v) => return Err(ValidationError::new("is_bot", format!("must be a boolean, got {}", kind(v)))),
    };
    let mut props = match non_null(obj, "props") {
        None => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(v) => return Err(ValidationError::new("props", format!("must be an object, got {}", kind(v)))),
    };
    // `null` counts as absent: dropping it here keeps the archive and the topic free of the ambiguity.
    props.retain(|_, v| !v.is_null());
    let typed = check_typed_props(event_type, &props)?;
    Ok(Event {
        event_id: event_id.to_owned(),
        event_type,
        community_id: community_id.to_owned(),
        group_id: group_id.to_owned(),
        member_id: member_id.to_owned(),
        ts_ms,
        platform,
        is_bot,
        props,
        inviter_id: typed.inviter_id,
        leave_reason: typed.leave_reason,
        conversion_value: typed.conversion_value,
    })
}

#[derive(Default)]
struct TypedProps {
    inviter_id: Option<String>,
    leave_reason: LeaveReason,
    conversion_value: Option<f64>,
}

enum PropKind {
    String,
    NonNegativeInteger,
    Number,
    Reason,
}

/// The typed `props` keys of each event type (SPEC section 2). Other keys are free-form.
pub fn typed_props(t: EventType) -> &'static [(&'static str, &'static str)] {
    match t {
        EventType::MemberJoined => &[("inviter_id", "string"), ("source", "string")],
        EventType::MemberLeft => &[("reason", "reason")],
        EventType::MessagePosted => &[
            ("message_id", "string"),
            ("reply_to", "string"),
            ("thread_id", "string"),
            ("text_len", "non_negative_integer"),
            ("content_type", "string"),
        ],
        EventType::ReactionAdded => &[("message_id", "string"), ("emoji", "string"), ("target_member_id", "string")],
        EventType::Checkin => &[("campaign_id", "string")],
        EventType::ActivityParticipated => &[("activity_id", "string")],
        EventType::Conversion => &[("name", "string"), ("value", "number"), ("currency", "string")],
    }
}

fn prop_kind(name: &str) -> PropKind {
    match name {
        "non_negative_integer" => PropKind::NonNegativeInteger,
        "number" => PropKind::Number,
        "reason" => PropKind::Reason,
        _ => PropKind::String,
    }
}

fn check_typed_props(t: EventType, props: &Map<String, Value>) -> Result<TypedProps, ValidationError> {
    let mut out = TypedProps::default();
    for (key, kind_name) in typed_props(t) {
        let Some(v) = props.get(*key) else { continue };
        let field = format!("props.{key}");
        match prop_kind(kind_name) {
            PropKind::String => {
                if !v.is_string() {
                    return Err(ValidationError::new(field, format!("must be a string, got {}", kind(v))));
                }
            }
            PropKind::NonNegativeInteger => {
                if v.as_u64().is_none() {
                    return Err(ValidationError::new(field, format!("must be an integer >= 0, got {}", short(v))));
                }
            }
            PropKind::Number => {
                if !v.is_number() {
                    return Err(ValidationError::new(field, format!("must be a number, got {}", kind(v))));
                }
            }
            PropKind::Reason => {
                out.leave_reason = match v.as_str() {
                    Some("left") => LeaveReason::Left,
                    Some("removed") => LeaveReason::Removed,
                    Some("banned") => LeaveReason::Banned,
                    _ => {
                        return Err(ValidationError::new(
                            field,
                            format!("must be one of left, removed, banned, got {}", short(v)),
                        ))
                    }
                };
            }
        }
    }
    out.inviter_id =
        props.get("inviter_id").filter(|_| t == EventType::MemberJoined).and_then(Value::as_str).map(str::to_owned);
    out.conversion_value = props.get("value").filter(|_| t == EventType::Conversion).and_then(Value::as_f64);
    Ok(out)
}

fn non_null<'a>(obj: &'a Map<String, Value>, field: &str) -> Option<&'a Value> {
    obj.get(field).filter(|v| !v.is_null())
}

fn required_string<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<&'a str, ValidationError> {
    match obj.get(field) {
        None => Err(ValidationError::new(field, "required, missing")),
        Some(Value::Null) => Err(ValidationError::new(field, "required, got null")),
        Some(Value::String(s)) => Ok(s),
        Some(v) => Err(ValidationError::new(field, format!("must be a string, got {}", kind(v)))),
    }
}

fn bounded_string<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<&'a str, ValidationError> {
    let s = required_string(obj, field)?;
    if s.is_empty() || s.len() > 128 {
        return Err(ValidationError::new(field, format!("must be 1..128 bytes, got {}", s.len())));
    }
    Ok(s)
}

pub fn valid_community_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// RFC 3339 with an explicit offset; sub-millisecond digits are truncated toward the past.
pub fn parse_ts(s: &str) -> Result<i64, ValidationError> {
    let bad = || {
        ValidationError::new(
            "ts",
            format!("must be RFC 3339 with an offset (e.g. 2024-01-01T08:00:00+08:00 or ...Z), got {}", quoted(s)),
        )
    };
    // chrono also takes a space or a lower-case `t` between date and time; RFC 3339 allows both.
    let t = DateTime::parse_from_rfc3339(s).map_err(|_| bad())?;
    Ok(t.timestamp_millis())
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn short(v: &Value) -> String {
    truncate(&v.to_string(), 64)
}

fn quoted(s: &str) -> String {
    format!("\"{}\"", truncate(s, 64))
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
