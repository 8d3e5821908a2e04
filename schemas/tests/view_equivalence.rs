//! The typed, borrowed decoder (`parse_event_view`) against the reference validator
//! (`parse_event`): on any input both accept or both refuse with the same error, and accepted
//! events carry the same values. Inputs are valid events with random damage: fields of the
//! wrong JSON type, nulls, escapes, unknown and duplicate keys, typed props of every kind.

use proptest::prelude::*;
use schemas::{parse_event, parse_event_view, Event, Limits, ParsedEvent, PropsRef};
use std::borrow::Cow;

const NOW: i64 = 1_704_067_200_000; // 2024-01-01T00:00:00Z

fn json_scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("false".to_owned()),
        Just("0".to_owned()),
        Just("7".to_owned()),
        Just("-3".to_owned()),
        Just("1.5".to_owned()),
        Just("2e3".to_owned()),
        Just("-0".to_owned()),
        Just("18446744073709551615".to_owned()),
        Just("[]".to_owned()),
        Just("[1,\"a\"]".to_owned()),
        Just("{}".to_owned()),
        Just("{\"k\":null}".to_owned()),
        Just("\"\"".to_owned()),
        Just("\"left\"".to_owned()),
        Just("\"removed\"".to_owned()),
        Just("\"banned\"".to_owned()),
        Just("\"Left\"".to_owned()),
        Just("\"m-1\"".to_owned()),
        Just("\"with \\\"escape\\\"\"".to_owned()),
        Just("\"\\u00e9t\\u00e9\"".to_owned()),
        // A lone surrogate: serde_json refuses it when it decodes the string, not when it skips it.
        Just("\"\\ud800\"".to_owned()),
        Just("[[[{\"a\":[1,-2.5e-3,true,null]}]]]".to_owned()),
        "[a-z0-9_.-]{1,12}".prop_map(|s| format!("\"{s}\"")),
    ]
}

fn string_field(valid: &'static [&'static str]) -> impl Strategy<Value = Option<String>> {
    let valid: Vec<Option<String>> = valid.iter().map(|s| Some(format!("\"{s}\""))).collect();
    prop_oneof![
        40 => proptest::sample::select(valid),
        1 => Just(None),
        2 => json_scalar().prop_map(Some),
        1 => Just(Some(format!("\"{}\"", "x".repeat(129)))),
    ]
}

const PROP_KEYS: [&str; 17] = [
    "inviter_id",
    "source",
    "reason",
    "message_id",
    "reply_to",
    "thread_id",
    "text_len",
    "content_type",
    "emoji",
    "target_member_id",
    "campaign_id",
    "activity_id",
    "name",
    "value",
    "currency",
    "free_form",
    "another",
];

fn props() -> impl Strategy<Value = Option<String>> {
    // Mostly values that pass the typed rules ("left" is a string and a reason, 4 a number and a
    // count), so that whole events get through.
    let numbers = ["-3", "1.5", "-0", "2e3", "0.0"].map(str::to_owned).to_vec();
    let value = move || {
        prop_oneof![
            6 => Just("\"left\"".to_owned()),
            2 => Just("4".to_owned()),
            2 => proptest::sample::select(numbers.clone()),
            3 => json_scalar(),
        ]
    };
    let entry = (proptest::sample::select(PROP_KEYS.to_vec()), value());
    prop_oneof![
        2 => Just(None),
        1 => json_scalar().prop_map(Some),
        6 => proptest::collection::vec(entry, 0..5).prop_map(|entries| {
            let body: Vec<String> = entries.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            Some(format!("{{{}}}", body.join(",")))
        }),
        // Keys in order, as the ingest writes them (the archive then borrows the text), with
        // whitespace now and then (which it must not).
        6 => (proptest::collection::btree_map(proptest::sample::select(PROP_KEYS.to_vec()), value(), 0..5),
              prop_oneof![6 => Just(""), 1 => Just(" "), 1 => Just("\n")])
            .prop_map(|(entries, space)| {
                let body: Vec<String> = entries.iter().map(|(k, v)| format!("\"{k}\":{space}{v}")).collect();
                Some(format!("{{{}}}", body.join(",")))
            }),
    ]
}

prop_compose! {
    fn record()(
        event_id in string_field(&["e-1", "evt_2", "e-1", "evt_2", "\\u0065-3"]),
        event_type in string_field(&[
            "member_joined", "member_left", "message_posted", "reaction_added", "checkin",
            "activity_participated", "conversion",
        ]),
        community_id in string_field(&["demo", "c.1", "demo", "c.1", "demo", "bad id"]),
        group_id in string_field(&["g1", "g-2"]),
        member_id in string_field(&["m1", "m2", "m1", "m2", "m\\n2"]),
        ts in string_field(&[
            "2023-12-31T08:00:00+08:00", "2023-12-31T23:59:59.9999Z", "2023-03-26T01:30:00-04:00",
            "2023-11-05T01:30:00.5+01:00", "2023-06-01 10:00:00Z", "2023-06-01t10:00:00z",
            "2024-01-03T00:00:00Z", "2023-06-01T10:00:00",
        ]),
        platform in string_field(&["discord", "slack"]),
        is_bot in prop_oneof![
            4 => Just(None), 4 => Just(Some("true".to_owned())), 4 => Just(Some("false".to_owned())),
            1 => json_scalar().prop_map(Some),
        ],
        props in props(),
        extra in prop_oneof![18 => Just(None), 1 => Just(Some("\"unknown\":1".to_owned())), 1 => Just(Some("\"member_id\":\"dup\"".to_owned()))],
        leading in prop_oneof![Just(""), Just(" \n")],
        shape in prop_oneof![38 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)],
    ) -> Vec<u8> {
        let mut fields = Vec::new();
        for (name, v) in [
            ("event_id", event_id), ("type", event_type), ("community_id", community_id),
            ("group_id", group_id), ("member_id", member_id), ("ts", ts),
            ("platform", platform), ("is_bot", is_bot), ("props", props),
        ] {
            if let Some(v) = v {
                fields.push(format!("\"{name}\":{v}"));
            }
        }
        fields.extend(extra);
        let text = match shape {
            0 => format!("{leading}{{{}}}", fields.join(",")),
            1 => format!("[{}]", fields.iter().map(|f| f.split_once(':').unwrap().1).collect::<Vec<_>>().join(",")),
            _ => format!("{{{}", fields.join(",")),
        };
        text.into_bytes()
    }
}

fn assert_same(bytes: &[u8], limits: &Limits) -> Result<bool, TestCaseError> {
    let slow = parse_event(bytes, Some(NOW), limits);
    let fast = parse_event_view(bytes, Some(NOW), limits);
    let text = String::from_utf8_lossy(bytes);
    match (&slow, &fast) {
        (Err(a), Err(b)) => {
            prop_assert_eq!(a, b, "{}", text);
            Ok(false)
        }
        (Ok(e), Ok(p)) => {
            let v = p.view();
            let owned_props = serde_json::to_string(&e.props).unwrap();
            prop_assert_eq!(v.props.to_archive_json(), owned_props, "{}", text);
            let back = Event {
                event_id: v.event_id.to_owned(),
                event_type: v.event_type,
                community_id: v.community_id.to_owned(),
                group_id: v.group_id.to_owned(),
                member_id: v.member_id.to_owned(),
                ts_ms: v.ts_ms,
                platform: v.platform.map(str::to_owned),
                is_bot: v.is_bot,
                props: e.props.clone(),
                inviter_id: v.inviter_id.map(str::to_owned),
                leave_reason: v.leave_reason,
                conversion_value: v.conversion_value,
            };
            prop_assert_eq!(&back, e, "{}", text);
            Ok(matches!(p, ParsedEvent::Borrowed(_)))
        }
        _ => {
            prop_assert!(false, "slow {:?} vs fast {:?} on {}", slow, fast.map(|p| format!("{:?}", p.view())), text);
            unreachable!()
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]
    #[test]
    fn the_typed_decoder_agrees_with_the_validator(bytes in record()) {
        assert_same(&bytes, &Limits::default())?;
    }

    #[test]
    fn the_typed_decoder_agrees_under_a_small_size_limit(bytes in record()) {
        assert_same(&bytes, &Limits { max_event_bytes: 150, ..Limits::default() })?;
    }
}

/// The canonical topic form (what ingest writes) takes the typed path: otherwise the test above
/// could pass with a decoder that always defers.
#[test]
fn canonical_records_take_the_typed_path() {
    let records = [
        r#"{"community_id":"demo","event_id":"e1","group_id":"g1","member_id":"m1","props":{"inviter_id":"m0","source":"link"},"ts":"2024-01-01T00:00:00.000Z","type":"member_joined"}"#,
        r#"{"community_id":"demo","event_id":"e2","group_id":"g1","member_id":"m1","props":{"reason":"banned"},"ts":"2024-01-01T00:00:00.000Z","type":"member_left"}"#,
        r#"{"community_id":"demo","event_id":"e3","group_id":"g1","member_id":"m1","platform":"discord","props":{"currency":"EUR","value":12.5},"ts":"2024-01-01T00:00:00.000Z","type":"conversion"}"#,
        r#"{"community_id":"demo","event_id":"e4","group_id":"g1","is_bot":true,"member_id":"m1","ts":"2024-01-01T00:00:00.000Z","type":"message_posted"}"#,
    ];
    for r in records {
        assert!(assert_same(r.as_bytes(), &Limits::default()).unwrap(), "{r} went the slow way");
    }
    let ParsedEvent::Borrowed(v) = parse_event_view(records[2].as_bytes(), None, &Limits::default()).unwrap() else {
        unreachable!()
    };
    assert_eq!((v.conversion_value, v.platform), (Some(12.5), Some("discord")));
    // The ingest's props text is the archive's: borrowed, not decoded and written again.
    for r in &records[..2] {
        let parsed = parse_event_view(r.as_bytes(), None, &Limits::default()).unwrap();
        let props = parsed.view().props;
        assert!(matches!(props, PropsRef::Canonical(_)), "{r}: {props:?}");
        assert!(matches!(props.to_archive_json(), Cow::Borrowed(_)), "{r}");
    }
}

/// The random inputs above reach all three outcomes often enough to mean something.
#[test]
fn the_random_inputs_cover_typed_slow_and_refused() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let limits = Limits::default();
    let (mut typed, mut slow, mut refused) = (0, 0, 0);
    let (mut canonical, mut raw) = (0, 0);
    for _ in 0..4000 {
        let bytes = record().new_tree(&mut runner).unwrap().current();
        match parse_event_view(&bytes, Some(NOW), &limits) {
            Ok(ParsedEvent::Borrowed(v)) => {
                typed += 1;
                match v.props {
                    PropsRef::Canonical(_) => canonical += 1,
                    PropsRef::Raw(_) => raw += 1,
                    _ => {}
                }
            }
            Ok(ParsedEvent::Owned(_)) => slow += 1,
            Err(_) => refused += 1,
        }
    }
    assert!(typed > 400 && slow > 100 && refused > 400, "typed {typed}, slow {slow}, refused {refused}");
    // Props the archive borrows and props it writes anew are both compared above.
    assert!(canonical > 100 && raw > 100, "props: {canonical} canonical, {raw} raw");
}

/// Every typed props key of every event type, with every kind of value: the rule table is
/// small enough to try whole.
#[test]
fn every_typed_props_rule_is_decided_alike() {
    let values = [
        "null",
        "true",
        "0",
        "7",
        "-3",
        "1.5",
        "-0",
        "2e3",
        "0.0",
        "18446744073709551615",
        "[]",
        "{}",
        "\"\"",
        "\"left\"",
        "\"removed\"",
        "\"banned\"",
        "\"Left\"",
        "\"m-1\"",
        "\"\\u00e9\"",
        "\"\\ud800\"",
        "[{\"a\":\"\\ud800\"}]",
    ];
    let mut typed = 0;
    for t in schemas::EventType::ALL {
        for (key, _) in schemas::validate::typed_props(t) {
            for v in values {
                let r = format!(
                    r#"{{"event_id":"e","type":"{t}","community_id":"c","group_id":"g","member_id":"m","ts":"2023-01-01T00:00:00Z","props":{{"{key}":{v},"x":{v}}}}}"#
                );
                typed += assert_same(r.as_bytes(), &Limits::default()).unwrap() as usize;
            }
        }
    }
    assert!(typed > 50, "only {typed} records took the typed path");
}

/// Valid canonical records with bytes deleted, inserted or replaced: the typed decoder reads JSON
/// itself, so whatever syntax damage it lets through must be what serde_json lets through too.
fn damaged_record() -> impl Strategy<Value = Vec<u8>> {
    const RECORDS: [&str; 4] = [
        r#"{"community_id":"demo","event_id":"e1","group_id":"g1","member_id":"m1","props":{"inviter_id":"m0","source":"link","tags":[1,{"k":null}]},"ts":"2024-01-01T00:00:00.000Z","type":"member_joined"}"#,
        r#"{"community_id":"demo","event_id":"e3","group_id":"g1","member_id":"m1","platform":"discord","props":{"currency":"EUR","value":12.5e0},"ts":"2024-01-01T00:00:00.000Z","type":"conversion"}"#,
        r#"{"community_id":"demo","event_id":"e4","group_id":"g1","is_bot":false,"member_id":"m1","props":{"text_len":120,"x":-0.25},"ts":"2023-12-31T23:00:00.000Z","type":"message_posted"}"#,
        r#"{"community_id":"demo","event_id":"e5","group_id":"g1","member_id":"m1","props":{"reason":"banned"},"ts":"2023-12-31T23:00:00.000Z","type":"member_left"}"#,
    ];
    const BYTES: &[u8] = b"{}[]\",:\\ \t0123456789-+.eEntrufalsx\x01\xc3\xa9";
    let edit = (0usize..3, any::<proptest::sample::Index>(), proptest::sample::select(BYTES.to_vec()));
    (proptest::sample::select(RECORDS.to_vec()), proptest::collection::vec(edit, 1..4)).prop_map(|(record, edits)| {
        let mut bytes = record.as_bytes().to_vec();
        for (kind, at, b) in edits {
            let i = at.index(bytes.len());
            match kind {
                0 => {
                    bytes.remove(i);
                }
                1 => bytes.insert(i, b),
                _ => bytes[i] = b,
            }
        }
        bytes
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20000))]
    #[test]
    fn the_typed_decoder_agrees_on_damaged_json(bytes in damaged_record()) {
        assert_same(&bytes, &Limits::default())?;
    }
}
