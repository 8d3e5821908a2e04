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
    if let Some(ms) = canonical_ts(s.as_bytes()) {
        return Ok(ms);
    }
    // chrono also takes a space or a lower-case `t` between date and time; RFC 3339 allows both.
    let t = DateTime::parse_from_rfc3339(s).map_err(|_| bad())?;
    Ok(t.timestamp_millis())
}

/// The topic's own form, `YYYY-MM-DDTHH:MM:SS.mmmZ`, read without chrono's general parser (a
/// sixth of the processor's decoding time). `None` for anything else, which chrono then judges;
/// a leap second (`:60`) is left to chrono too.
fn canonical_ts(b: &[u8]) -> Option<i64> {
    if b.len() != 24 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if b[19] != b'.' || b[23] != b'Z' {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        b[from..to].iter().try_fold(0i64, |n, &c| c.is_ascii_digit().then(|| n * 10 + (c - b'0') as i64))
    };
    let (y, m, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hh, mm, ss, ms) = (num(11, 13)?, num(14, 16)?, num(17, 19)?, num(20, 23)?);
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&m) || d < 1 || d > month_days[m as usize - 1] || hh > 23 || mm > 59 || ss > 59 {
        return None;
    }
    Some((days_from_civil(y, m, d) * 86_400 + hh * 3_600 + mm * 60 + ss) * 1_000 + ms)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn chrono_ms(s: &str) -> Option<i64> {
        DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp_millis())
    }

    proptest! {
        /// The canonical-form reader against chrono, on valid and impossible dates alike: it
        /// either agrees or declines (and then chrono decides).
        #[test]
        fn the_canonical_reader_agrees_with_chrono(
            y in prop_oneof![0i64..=9999, 1896i64..2104], m in 0i64..=13, d in 0i64..=32,
            hh in 0i64..=25, mm in 0i64..=60, ss in 0i64..=61, ms in 0i64..=999,
        ) {
            let s = format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{ms:03}Z");
            let fast = canonical_ts(s.as_bytes());
            if let Some(v) = fast {
                prop_assert_eq!(Some(v), chrono_ms(&s), "{}", s);
            } else {
                prop_assert!(ss == 60 || chrono_ms(&s).is_none(), "declined a valid {}", s);
            }
            prop_assert_eq!(parse_ts(&s).ok(), chrono_ms(&s));
        }
    }

    #[test]
    fn every_day_of_four_centuries_reads_alike() {
        let start = chrono::NaiveDate::from_ymd_opt(1900, 1, 1).unwrap();
        for i in 0..(400 * 366) {
            let Some(date) = start.checked_add_days(chrono::Days::new(i)) else { break };
            let s = format!("{}T23:59:59.999Z", date.format("%Y-%m-%d"));
            assert_eq!(canonical_ts(s.as_bytes()), chrono_ms(&s), "{s}");
        }
    }
}
