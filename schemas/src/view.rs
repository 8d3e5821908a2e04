//! An accepted event borrowed from the record's bytes: what the processor reads per record.
//!
//! `parse_event_view` decodes the SPEC's fields straight into typed, borrowed values (no
//! `serde_json::Value` tree, no copies of the ids), which is most of the processor's decoding
//! cost. It accepts only what `parse_event` accepts and yields the same values: anything the
//! typed decoder does not take (a rule broken, a duplicate key, an odd shape) is handed to
//! `parse_event`, which either accepts it (an owned event) or gives its usual error.

use crate::event::{Event, EventType, LeaveReason};
use crate::scan::{Scalar, Scanner};
use crate::validate::{parse_event, parse_ts, valid_community_id, Limits, ValidationError};
use serde_json::{Map, Value};
use std::borrow::Cow;

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
    /// The props object's text, checked as JSON.
    Raw(&'a str),
    /// The props object's text, already in the archive's form (`to_archive_json`): what the
    /// ingest writes, so nearly every record's.
    Canonical(&'a str),
    Map(&'a Map<String, Value>),
}

impl<'a> PropsRef<'a> {
    /// The props as the archive keeps them: a JSON object, keys sorted, `null`s dropped (the same
    /// text `Event::to_json` writes). Text already in that form is borrowed: decoding it into a
    /// map and writing it out again was a twentieth of a replay's processor time.
    pub fn to_archive_json(&self) -> Cow<'a, str> {
        match *self {
            PropsRef::None => Cow::Borrowed("{}"),
            PropsRef::Canonical(text) => Cow::Borrowed(text),
            PropsRef::Map(m) => Cow::Owned(serde_json::to_string(m).expect("a JSON map always serialises")),
            PropsRef::Raw(raw) => {
                let mut m: Map<String, Value> = serde_json::from_str(raw).expect("validated as an object");
                m.retain(|_, v| !v.is_null());
                Cow::Owned(serde_json::to_string(&m).expect("a JSON map always serialises"))
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

/// The fields the typed decoder reads, as the scanner found them.
#[derive(Default)]
struct Wire<'a> {
    event_id: Option<&'a str>,
    event_type: Option<&'a str>,
    community_id: Option<&'a str>,
    group_id: Option<&'a str>,
    member_id: Option<&'a str>,
    ts: Option<&'a str>,
    platform: Option<&'a str>,
    is_bot: Option<bool>,
    /// The props object's text, `Canonical` when it is what `serde_json` writes for its map
    /// with the `null`s dropped.
    props: Option<PropsRef<'a>>,
    /// The values of the typed keys in `props` (by `typed_index`), `null` included.
    typed: [Option<Prop<'a>>; TYPED_KEYS],
}

/// How many typed keys there are over all event types (`validate::typed_props`); any other key
/// is free-form. `typed_index` numbers them.
const TYPED_KEYS: usize = 15;

/// One props value, as far as the typed rules look at it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Prop<'a> {
    Null,
    Bool,
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Str(&'a str),
    /// An array or an object.
    Nested,
}

impl<'a> Prop<'a> {
    fn from_scalar(v: Scalar<'a>) -> Option<Self> {
        Some(match v {
            Scalar::Null => Prop::Null,
            Scalar::Bool(_) => Prop::Bool,
            Scalar::Str(s) => Prop::Str(s),
            Scalar::Nested => Prop::Nested,
            // Up to 19 digits always fits a u64, as serde_json would read it.
            Scalar::Number(n) if n.len() <= 19 && n.bytes().all(|b| b.is_ascii_digit()) => {
                Prop::Unsigned(n.parse().ok()?)
            }
            // The rest as serde_json reads numbers (`-0` and integers beyond 64 bits are floats).
            Scalar::Number(n) => {
                let n: serde_json::Number = serde_json::from_str(n).ok()?;
                match (n.as_u64(), n.as_i64()) {
                    (Some(u), _) => Prop::Unsigned(u),
                    (None, Some(i)) => Prop::Signed(i),
                    (None, None) => Prop::Float(n.as_f64()?),
                }
            }
        })
    }

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

impl<'a> Wire<'a> {
    /// The top-level object: only the SPEC's fields, each once, strings without escapes.
    fn scan(text: &'a str) -> Option<Self> {
        let mut s = Scanner::new(text);
        let mut w = Wire::default();
        let mut seen = 0u16;
        s.eat(b'{')?;
        if s.next_token()? == b'}' {
            return None;
        }
        loop {
            let key = s.string()?;
            s.eat(b':')?;
            let bit = match key {
                "event_id" => put(&mut w.event_id, s.string()?, 0),
                "type" => put(&mut w.event_type, s.string()?, 1),
                "community_id" => put(&mut w.community_id, s.string()?, 2),
                "group_id" => put(&mut w.group_id, s.string()?, 3),
                "member_id" => put(&mut w.member_id, s.string()?, 4),
                "ts" => put(&mut w.ts, s.string()?, 5),
                "platform" => {
                    w.platform = match s.value()? {
                        Scalar::Null => None,
                        Scalar::Str(p) => Some(p),
                        _ => return None,
                    };
                    6
                }
                "is_bot" => {
                    w.is_bot = match s.value()? {
                        Scalar::Null => None,
                        Scalar::Bool(b) => Some(b),
                        _ => return None,
                    };
                    7
                }
                "props" => {
                    if s.next_token()? == b'{' {
                        w.scan_props(&mut s)?;
                    } else if s.value()? != Scalar::Null {
                        return None;
                    }
                    8
                }
                _ => return None,
            };
            if seen & (1 << bit) != 0 {
                return None;
            }
            seen |= 1 << bit;
            if !s.object_goes_on()? {
                break;
            }
        }
        s.at_end().then_some(w)
    }

    fn scan_props(&mut self, s: &mut Scanner<'a>) -> Option<()> {
        let start = s.position();
        let mut canonical = true;
        s.eat(b'{')?;
        if s.next_token()? == b'}' {
            s.eat(b'}')?;
        } else {
            let mut previous: Option<&str> = None;
            loop {
                let key = s.string()?;
                s.eat(b':')?;
                let value = s.value()?;
                // serde_json's map writes its keys in order, each once.
                canonical &= previous.is_none_or(|p| p < key) && written_as_is(value);
                previous = Some(key);
                if let Some(i) = typed_index(key) {
                    if self.typed[i].is_some() {
                        return None;
                    }
                    self.typed[i] = Some(Prop::from_scalar(value)?);
                }
                if !s.object_goes_on()? {
                    break;
                }
            }
        }
        let text = s.between(start, s.position());
        self.props = Some(if canonical && !spaced(text) { PropsRef::Canonical(text) } else { PropsRef::Raw(text) });
        Some(())
    }
}

/// Whether `serde_json` writes a top-level props value back as the same text. Strings here have
/// no escapes (the scanner declines those), so they come back as they are; so do `true`, `false`
/// and integers that fit 64 bits (18 digits always do). `null`s are dropped from the archive,
/// floats may be written another way (`2e3` as `2000.0`), `-0` is read as a float, and nested
/// values have their own keys to sort.
fn written_as_is(value: Scalar<'_>) -> bool {
    match value {
        Scalar::Str(_) | Scalar::Bool(_) => true,
        Scalar::Number(n) => {
            let digits = n.strip_prefix('-').unwrap_or(n);
            digits.len() <= 18 && digits.bytes().all(|b| b.is_ascii_digit()) && n != "-0"
        }
        Scalar::Null | Scalar::Nested => false,
    }
}

/// Whether JSON text has whitespace between its tokens. Its strings have no escapes, so every
/// `"` opens or closes one.
fn spaced(text: &str) -> bool {
    let mut in_string = false;
    text.bytes().any(|b| {
        if b == b'"' {
            in_string = !in_string;
        }
        !in_string && matches!(b, b' ' | b'\n' | b'\r' | b'\t')
    })
}

/// Slots of the typed keys the engine reads (checked against `typed_index` by a test).
const INVITER_ID: usize = 0;
const REASON: usize = 2;
const VALUE: usize = 13;

/// Per event type, `(slot, kind)` of its typed keys: `validate::typed_props` with the keys
/// looked up once, not for every record.
static TYPED_SLOTS: std::sync::LazyLock<[Vec<(usize, &'static str)>; EventType::ALL.len()]> =
    std::sync::LazyLock::new(|| {
        EventType::ALL.map(|t| {
            crate::validate::typed_props(t)
                .iter()
                .map(|&(key, kind)| {
                    let slot = typed_index(key)
                        .unwrap_or_else(|| unreachable!("typed_props names {key}, which typed_index lacks"));
                    (slot, kind)
                })
                .collect()
        })
    });

/// The slot of a typed key in `Wire::typed`, as a `match` (which the compiler turns into a switch
/// on the length, then one comparison) rather than a search of a list.
fn typed_index(key: &str) -> Option<usize> {
    Some(match key {
        "inviter_id" => 0,
        "source" => 1,
        "reason" => 2,
        "message_id" => 3,
        "reply_to" => 4,
        "thread_id" => 5,
        "text_len" => 6,
        "content_type" => 7,
        "emoji" => 8,
        "target_member_id" => 9,
        "campaign_id" => 10,
        "activity_id" => 11,
        "name" => 12,
        "value" => 13,
        "currency" => 14,
        _ => return None,
    })
}

/// Stores a field's value; returns its bit in the fields seen.
fn put<'a>(slot: &mut Option<&'a str>, value: &'a str, bit: u16) -> u16 {
    *slot = Some(value);
    bit
}

/// The typed decoder: `None` whenever it is not sure, so that `parse_event` decides.
fn fast<'a>(bytes: &'a [u8], now_ms: Option<i64>, limits: &Limits) -> Option<EventView<'a>> {
    let w = Wire::scan(std::str::from_utf8(bytes).ok()?)?;
    let (event_id, community_id) = (w.event_id?, w.community_id?);
    let (group_id, member_id) = (w.group_id?, w.member_id?);
    for id in [event_id, group_id, member_id] {
        if id.is_empty() || id.len() > 128 {
            return None;
        }
    }
    let event_type = EventType::parse(w.event_type?)?;
    if !valid_community_id(community_id) {
        return None;
    }
    let ts_ms = parse_ts(w.ts?).ok()?;
    if now_ms.is_some_and(|now| ts_ms > now + limits.max_future_ms) {
        return None;
    }
    let typed_ok = |key: &Option<Prop>, kind: &str| match Prop::present(key) {
        None => true,
        Some(p) => match kind {
            "string" => matches!(p, Prop::Str(_)),
            "non_negative_integer" => matches!(p, Prop::Unsigned(_)),
            "number" => p.as_f64().is_some(),
            _ => matches!(p, Prop::Str("left" | "removed" | "banned")),
        },
    };
    for &(slot, kind) in &TYPED_SLOTS[event_type as usize] {
        if !typed_ok(&w.typed[slot], kind) {
            return None;
        }
    }
    let inviter_id = match Prop::present(&w.typed[INVITER_ID]) {
        Some(Prop::Str(s)) if event_type == EventType::MemberJoined => Some(*s),
        _ => None,
    };
    let leave_reason = match Prop::present(&w.typed[REASON]) {
        Some(Prop::Str("removed")) if event_type == EventType::MemberLeft => LeaveReason::Removed,
        Some(Prop::Str("banned")) if event_type == EventType::MemberLeft => LeaveReason::Banned,
        _ => LeaveReason::Left,
    };
    let conversion_value = match Prop::present(&w.typed[VALUE]) {
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
        props: w.props.unwrap_or(PropsRef::None),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_index_gives_every_key_of_the_rules_its_own_slot() {
        let mut slots = std::collections::BTreeMap::new();
        for t in EventType::ALL {
            for (key, _) in crate::validate::typed_props(t) {
                let i = typed_index(key).unwrap_or_else(|| panic!("{key} of {t} has no slot"));
                assert!(i < TYPED_KEYS, "{key}: slot {i}");
                assert_eq!(*slots.entry(i).or_insert(*key), *key, "slot {i} shared");
            }
        }
        assert_eq!(slots.len(), TYPED_KEYS, "every slot used");
        assert_eq!(typed_index("free_form"), None);
        let named = [("inviter_id", INVITER_ID), ("reason", REASON), ("value", VALUE)];
        assert!(named.iter().all(|&(key, slot)| typed_index(key) == Some(slot)), "{named:?}");
        for t in EventType::ALL {
            let slots: Vec<_> =
                crate::validate::typed_props(t).iter().map(|&(k, kind)| (typed_index(k).unwrap(), kind)).collect();
            assert_eq!(TYPED_SLOTS[t as usize], slots, "{t}");
        }
    }
}
