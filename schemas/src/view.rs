//! An accepted event borrowed from the record's bytes: what the processor reads per record.
//!
//! `parse_event_view` decodes the SPEC's fields straight into typed, borrowed values (no
//! `serde_json::Value` tree, no copies of the ids), which is most of the processor's decoding
//! cost. It accepts only what `parse_event` accepts and yields the same values: anything the
//! typed decoder does not take (a rule broken, a duplicate key, an odd shape) is handed to
//! `parse_event`, which either accepts it (an owned event) or gives its usual error.

use crate::event::{Event, EventType, LeaveReason};
use crate::validate::{parse_event, parse_ts, valid_community_id, Limits, ValidationError};
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::fmt;

/// The fields of one valid event that the metric engine and the archive read.
#[derive(Debug, Clone, Copy)]
pub struct EventView<'a> {
    pub event_id: &'a str,
    pub event_type: EventType,
    pub community_id: &'a str,
    pub group_id: &'a str,
    pub member_id: &'a str,
    pub ts_ms: i64,
    pub platform: Option<&'a str>,
    pub is_bot: bool,
    pub inviter_id: Option<&'a str>,
    pub leave_reason: LeaveReason,
    pub conversion_value: Option<f64>,
    pub props: PropsRef<'a>,
}

/// `props` as it came: the record's own text, or the map of an owned event.
#[derive(Debug, Clone, Copy)]
pub enum PropsRef<'a> {
    None,
    Raw(&'a RawValue),
    Map(&'a Map<String, Value>),
}

impl PropsRef<'_> {
    /// The props as the archive keeps them: a JSON object, keys sorted, `null`s dropped (the same
    /// text `Event::to_json` writes).
    pub fn to_archive_json(&self) -> String {
        match self {
            PropsRef::None => "{}".to_owned(),
            PropsRef::Map(m) => serde_json::to_string(m).expect("a JSON map always serialises"),
            PropsRef::Raw(raw) => {
                let mut m: Map<String, Value> = serde_json::from_str(raw.get()).expect("validated as an object");
                m.retain(|_, v| !v.is_null());
                serde_json::to_string(&m).expect("a JSON map always serialises")
            }
        }
    }
}

impl Event {
    pub fn view(&self) -> EventView<'_> {
        EventView {
            event_id: &self.event_id,
            event_type: self.event_type,
            community_id: &self.community_id,
            group_id: &self.group_id,
            member_id: &self.member_id,
            ts_ms: self.ts_ms,
            platform: self.platform.as_deref(),
            is_bot: self.is_bot,
            inviter_id: self.inviter_id.as_deref(),
            leave_reason: self.leave_reason,
            conversion_value: self.conversion_value,
            props: if self.props.is_empty() { PropsRef::None } else { PropsRef::Map(&self.props) },
        }
    }
}

/// A decoded record: borrowed when the typed decoder took it, owned when `parse_event` did.
#[derive(Debug)]
pub enum ParsedEvent<'a> {
    Borrowed(EventView<'a>),
    Owned(Box<Event>),
}

impl ParsedEvent<'_> {
    pub fn view(&self) -> EventView<'_> {
        match self {
            ParsedEvent::Borrowed(v) => *v,
            ParsedEvent::Owned(e) => e.view(),
        }
    }
}

/// Parses and validates one event like `parse_event` (same rules, same errors, same values),
/// borrowing from `bytes` where it can.
pub fn parse_event_view<'a>(
    bytes: &'a [u8],
    now_ms: Option<i64>,
    limits: &Limits,
) -> Result<ParsedEvent<'a>, ValidationError> {
    if bytes.len() <= limits.max_event_bytes {
        if let Some(view) = fast(bytes, now_ms, limits) {
            return Ok(ParsedEvent::Borrowed(view));
        }
    }
    parse_event(bytes, now_ms, limits).map(|e| ParsedEvent::Owned(Box::new(e)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire<'a> {
    #[serde(borrow)]
    event_id: Cow<'a, str>,
    #[serde(rename = "type", borrow)]
    event_type: Cow<'a, str>,
    #[serde(borrow)]
    community_id: Cow<'a, str>,
    #[serde(borrow)]
    group_id: Cow<'a, str>,
    #[serde(borrow)]
    member_id: Cow<'a, str>,
    #[serde(borrow)]
    ts: Cow<'a, str>,
    /// (`Option<Cow<str>>` would never borrow; a string with escapes fails here and goes the
    /// slow way.)
    #[serde(default, borrow)]
    platform: Option<&'a str>,
    #[serde(default)]
    is_bot: Option<bool>,
    #[serde(default, borrow)]
    props: Option<&'a RawValue>,
}

/// The typed keys of every event type (`validate::typed_props`); any other key is free-form.
#[derive(Deserialize, Default)]
struct WireProps<'a> {
    #[serde(default, borrow)]
    inviter_id: Option<Prop<'a>>,
    #[serde(default, borrow)]
    source: Option<Prop<'a>>,
    #[serde(default, borrow)]
    reason: Option<Prop<'a>>,
    #[serde(default, borrow)]
    message_id: Option<Prop<'a>>,
    #[serde(default, borrow)]
    reply_to: Option<Prop<'a>>,
    #[serde(default, borrow)]
    thread_id: Option<Prop<'a>>,
    #[serde(default, borrow)]
    text_len: Option<Prop<'a>>,
    #[serde(default, borrow)]
    content_type: Option<Prop<'a>>,
    #[serde(default, borrow)]
    emoji: Option<Prop<'a>>,
    #[serde(default, borrow)]
    target_member_id: Option<Prop<'a>>,
    #[serde(default, borrow)]
    campaign_id: Option<Prop<'a>>,
    #[serde(default, borrow)]
    activity_id: Option<Prop<'a>>,
    #[serde(default, borrow)]
    name: Option<Prop<'a>>,
    #[serde(default, borrow)]
    value: Option<Prop<'a>>,
    #[serde(default, borrow)]
    currency: Option<Prop<'a>>,
}

/// One props value, as far as the typed rules look at it.
#[derive(Debug, Clone, PartialEq)]
enum Prop<'a> {
    Null,
    Bool,
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Str(Cow<'a, str>),
    /// An array or an object.
    Nested,
}

impl<'de: 'a, 'a> Deserialize<'de> for Prop<'a> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Prop<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E>(self) -> Result<Prop<'a>, E> {
                Ok(Prop::Null)
            }
            fn visit_none<E>(self) -> Result<Prop<'a>, E> {
                Ok(Prop::Null)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Prop<'a>, E> {
                Ok(Prop::Bool)
            }
            fn visit_u64<E>(self, v: u64) -> Result<Prop<'a>, E> {
                Ok(Prop::Unsigned(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Prop<'a>, E> {
                Ok(Prop::Signed(v))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Prop<'a>, E> {
                Ok(Prop::Float(v))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Prop<'a>, E> {
                Ok(Prop::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Prop<'a>, E> {
                Ok(Prop::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Prop<'a>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Prop::Nested)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Prop<'a>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Prop::Nested)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

impl Prop<'_> {
    /// `null` counts as absent (as in `parse_event`).
    fn present(p: &Option<Self>) -> Option<&Self> {
        p.as_ref().filter(|p| **p != Prop::Null)
    }

    fn as_f64(&self) -> Option<f64> {
        match *self {
            Prop::Unsigned(v) => Some(v as f64),
            Prop::Signed(v) => Some(v as f64),
            Prop::Float(v) => Some(v),
            _ => None,
        }
    }
}

/// The typed decoder: `None` whenever it is not sure, so that `parse_event` decides.
fn fast<'a>(bytes: &'a [u8], now_ms: Option<i64>, limits: &Limits) -> Option<EventView<'a>> {
    // Derived structs also accept JSON arrays; the SPEC asks for an object.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return None;
    }
    let w: Wire<'a> = serde_json::from_slice(bytes).ok()?;
    let event_id = borrowed(w.event_id)?;
    let community_id = borrowed(w.community_id)?;
    let group_id = borrowed(w.group_id)?;
    let member_id = borrowed(w.member_id)?;
    for id in [event_id, group_id, member_id] {
        if id.is_empty() || id.len() > 128 {
            return None;
        }
    }
    let event_type = EventType::parse(&w.event_type)?;
    if !valid_community_id(community_id) {
        return None;
    }
    let ts_ms = parse_ts(&w.ts).ok()?;
    if now_ms.is_some_and(|now| ts_ms > now + limits.max_future_ms) {
        return None;
    }
    let (props, typed) = match w.props {
        None => (PropsRef::None, WireProps::default()),
        Some(raw) => {
            if !raw.get().starts_with('{') {
                return None;
            }
            let typed: WireProps<'a> = serde_json::from_str(raw.get()).ok()?;
            (PropsRef::Raw(raw), typed)
        }
    };
    let typed_ok = |key: &Option<Prop>, kind: &str| match Prop::present(key) {
        None => true,
        Some(p) => match kind {
            "string" => matches!(p, Prop::Str(_)),
            "non_negative_integer" => matches!(p, Prop::Unsigned(_)),
            "number" => p.as_f64().is_some(),
            _ => matches!(p, Prop::Str(s) if matches!(s.as_ref(), "left" | "removed" | "banned")),
        },
    };
    for (key, kind) in crate::validate::typed_props(event_type) {
        if !typed_ok(typed.get(key), kind) {
            return None;
        }
    }
    let inviter_id = match Prop::present(&typed.inviter_id) {
        Some(Prop::Str(s)) if event_type == EventType::MemberJoined => Some(borrowed(s.clone())?),
        _ => None,
    };
    let leave_reason = match Prop::present(&typed.reason) {
        Some(Prop::Str(s)) if event_type == EventType::MemberLeft => match s.as_ref() {
            "removed" => LeaveReason::Removed,
            "banned" => LeaveReason::Banned,
            _ => LeaveReason::Left,
        },
        _ => LeaveReason::Left,
    };
    let conversion_value = match Prop::present(&typed.value) {
        Some(p) if event_type == EventType::Conversion => p.as_f64(),
        _ => None,
    };
    Some(EventView {
        event_id,
        event_type,
        community_id,
        group_id,
        member_id,
        ts_ms,
        platform: w.platform,
        is_bot: w.is_bot.unwrap_or(false),
        inviter_id,
        leave_reason,
        conversion_value,
        props,
    })
}

impl<'a> WireProps<'a> {
    fn get(&self, key: &str) -> &Option<Prop<'a>> {
        match key {
            "inviter_id" => &self.inviter_id,
            "source" => &self.source,
            "reason" => &self.reason,
            "message_id" => &self.message_id,
            "reply_to" => &self.reply_to,
            "thread_id" => &self.thread_id,
            "text_len" => &self.text_len,
            "content_type" => &self.content_type,
            "emoji" => &self.emoji,
            "target_member_id" => &self.target_member_id,
            "campaign_id" => &self.campaign_id,
            "activity_id" => &self.activity_id,
            "name" => &self.name,
            "value" => &self.value,
            "currency" => &self.currency,
            other => unreachable!("typed_props names {other}, which WireProps lacks"),
        }
    }
}

/// Strings with escapes are rare in ids; those records go the slow way rather than carry owned
/// copies in a borrowed view.
fn borrowed(s: Cow<'_, str>) -> Option<&str> {
    match s {
        Cow::Borrowed(s) => Some(s),
        Cow::Owned(_) => None,
    }
}
