//! `event.schema.json` says what the Rust validator enforces: same fields, required list, types
//! and typed props, and both validators accept and reject the same events.

use schemas::validate::{typed_props, TOP_LEVEL_FIELDS};
use schemas::{parse_event_value, EventType, Limits};
use serde_json::{json, Value};
use std::collections::BTreeSet;

fn schema() -> Value {
    serde_json::from_str(include_str!("../event.schema.json")).unwrap()
}

#[test]
fn structure_matches_the_rust_types() {
    let s = schema();
    let props: BTreeSet<&str> = s["properties"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(props, TOP_LEVEL_FIELDS.into_iter().collect());
    let required: BTreeSet<&str> = s["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(required, ["event_id", "type", "community_id", "group_id", "member_id", "ts"].into_iter().collect());
    let types: Vec<&str> =
        s["properties"]["type"]["enum"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(types, EventType::ALL.map(EventType::as_str).to_vec());
    for t in EventType::ALL {
        let rule = s["allOf"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["if"]["properties"]["type"]["const"] == t.as_str())
            .unwrap_or_else(|| panic!("no typed-props rule for {t}"));
        let in_schema: BTreeSet<&str> =
            rule["then"]["properties"]["props"]["properties"].as_object().unwrap().keys().map(String::as_str).collect();
        let in_rust: BTreeSet<&str> = typed_props(t).iter().map(|(k, _)| *k).collect();
        assert_eq!(in_schema, in_rust, "typed props of {t}");
    }
}

fn base() -> Value {
    json!({"event_id": "e1", "type": "message_posted", "community_id": "acme", "group_id": "g1",
           "member_id": "m1", "ts": "2024-05-01T08:00:00+08:00"})
}

fn corpus() -> Vec<Value> {
    let mut out = Vec::new();
    let mut set = |field: &str, v: Value| {
        let mut e = base();
        e[field] = v;
        out.push(e);
    };
    set("member_id", Value::Null);
    set("member_id", json!(""));
    set("member_id", json!("m".repeat(128)));
    set("member_id", json!("m".repeat(129)));
    set("event_id", json!(5));
    set("type", json!("nope"));
    set("community_id", json!("a b"));
    set("community_id", json!("a".repeat(65)));
    set("community_id", json!("a.b-c_D9"));
    set("ts", json!("2024-05-01T08:00:00"));
    set("ts", json!("2024-05-01T08:00:00.123456Z"));
    set("ts", json!("2024-05-01"));
    set("platform", json!(1));
    set("platform", Value::Null);
    set("is_bot", json!("true"));
    set("is_bot", json!(true));
    set("props", json!([]));
    set("props", Value::Null);
    set("props", json!({"text_len": -1}));
    set("props", json!({"text_len": 1.5}));
    set("props", json!({"text_len": 10, "anything": {"nested": true}}));
    set("props", json!({"reply_to": 3}));
    set("props", json!({"reply_to": null}));
    set("extra", json!(1));
    for t in EventType::ALL {
        for (key, kind) in typed_props(t) {
            let wrong = match *kind {
                "string" => json!(1),
                "reason" => json!("kicked"),
                _ => json!("text"),
            };
            let right = match *kind {
                "string" => json!("x"),
                "reason" => json!("banned"),
                "number" => json!(9.9),
                _ => json!(3),
            };
            for v in [wrong, right] {
                let mut e = base();
                e["type"] = json!(t.as_str());
                e["props"] = json!({ *key: v });
                out.push(e);
            }
        }
    }
    out.push(base());
    out
}

#[test]
fn both_validators_agree_on_a_corpus() {
    let validator = jsonschema::options().should_validate_formats(false).build(&schema()).unwrap();
    let limits = Limits { max_future_ms: i64::MAX / 4, ..Limits::default() };
    let mut accepted = 0;
    for e in corpus() {
        let rust = parse_event_value(&e, None, &limits);
        let js = validator.is_valid(&e);
        assert_eq!(rust.is_ok(), js, "disagree on {e}: rust says {rust:?}");
        accepted += js as usize;
    }
    assert!(accepted > 10, "the corpus accepts some events");
}

#[test]
fn generated_events_validate() {
    let validator = jsonschema::validator_for(&schema()).unwrap();
    let e = json!({"event_id": "x", "type": "conversion", "community_id": "c", "group_id": "g", "member_id": "m",
                   "ts": "2024-01-01T00:00:00.000Z", "platform": "qq", "props": {"value": 29.0, "currency": "CNY"}});
    assert!(validator.is_valid(&e));
}
