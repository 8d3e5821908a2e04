//! `POST /v1/events` through the real router (axum `oneshot`), with a sink that records what it
//! is given and fails on demand.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{Readiness, Secret};
use http_body_util::BodyExt;
use ingest::config::KeyBinding;
use ingest::metrics::Metrics;
use ingest::sink::{EventSink, SendFuture, SinkError};
use ingest::{router, AppState, IngestConfig};
use schemas::Event;
use serde_json::{json, Value};
use std::io::Write;
use std::sync::{Arc, Mutex};
use tower::ServiceExt;

#[derive(Default)]
struct FakeSink {
    stored: Mutex<Vec<Event>>,
    fail: Mutex<Option<SinkError>>,
}

impl EventSink for FakeSink {
    fn send<'a>(&'a self, events: &'a [Event]) -> SendFuture<'a> {
        Box::pin(async move {
            if let Some(e) = self.fail.lock().unwrap().clone() {
                return Err(e);
            }
            self.stored.lock().unwrap().extend_from_slice(events);
            Ok(())
        })
    }
    fn queue_depth(&self) -> i64 {
        0
    }
    fn healthy(&self) -> bool {
        true
    }
}

const NOW_MS: i64 = 1_717_200_000_000; // 2024-06-01T00:00:00Z

fn fixed_clock() -> i64 {
    NOW_MS
}

fn config() -> IngestConfig {
    IngestConfig {
        write_keys: vec![
            KeyBinding { key: Secret::new("key-acme-123"), communities: vec!["acme".into()] },
            KeyBinding { key: Secret::new("key-all-4567"), communities: vec!["*".into()] },
        ],
        ..IngestConfig::default()
    }
}

fn app_with(config: IngestConfig) -> (axum::Router, Arc<FakeSink>) {
    let sink = Arc::new(FakeSink::default());
    let mut state = AppState::new(config, sink.clone(), Metrics::new().unwrap());
    state.clock = fixed_clock;
    (router(Arc::new(state), Readiness::default()), sink)
}

fn new_app() -> (axum::Router, Arc<FakeSink>) {
    app_with(config())
}

fn event(id: &str) -> Value {
    json!({"event_id": id, "type": "message_posted", "community_id": "acme", "group_id": "g1",
           "member_id": "m1", "ts": "2024-05-01T08:00:00+08:00"})
}

async fn post(
    app: axum::Router,
    content_type: Option<&str>,
    key: Option<&str>,
    body: Vec<u8>,
    gzip: bool,
) -> (StatusCode, http::HeaderMap, Value) {
    let mut req = Request::post("/v1/events");
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    if gzip {
        req = req.header("content-encoding", "gzip");
    }
    let resp = app.oneshot(req.body(Body::from(body)).unwrap()).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, headers, value)
}

async fn post_json(app: axum::Router, body: Value) -> (StatusCode, Value) {
    let (s, _, v) =
        post(app, Some("application/json"), Some("key-acme-123"), body.to_string().into_bytes(), false).await;
    (s, v)
}

fn error_message(v: &Value) -> String {
    v["error"]["message"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn accepts_a_json_array_and_normalises_timestamps() {
    let (app, sink) = new_app();
    let (status, v) = post_json(app, json!([event("e1"), event("e2")])).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v, json!({"accepted": 2, "rejected": 0, "errors": []}));
    let stored = sink.stored.lock().unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0].ts_rfc3339(), "2024-05-01T00:00:00.000Z");
}

#[tokio::test]
async fn each_field_rule_rejects_only_its_event_with_field_and_rule() {
    let mut cases: Vec<(Value, &str)> = Vec::new();
    let mut with = |field: &str, value: Value, expected: &'static str| {
        let mut e = event(&format!("bad-{field}-{}", cases.len()));
        if value.is_null() && field == "member_id" {
            e[field] = Value::Null;
        } else if value == json!("<absent>") {
            e.as_object_mut().unwrap().remove(field);
        } else {
            e[field] = value;
        }
        cases.push((e, expected));
    };
    with("member_id", Value::Null, "member_id: required, got null");
    with("member_id", json!("<absent>"), "member_id: required, missing");
    with("member_id", json!(""), "member_id: must be 1..128 bytes, got 0");
    with("group_id", json!("g".repeat(129)), "group_id: must be 1..128 bytes, got 129");
    with("event_id", json!(17), "event_id: must be a string, got number");
    with("type", json!("message_deleted"), "type: must be one of member_joined, member_left, message_posted, reaction_added, checkin, activity_participated, conversion, got \"message_deleted\"");
    with("community_id", json!("acme corp"), "community_id: must match ^[A-Za-z0-9_.-]{1,64}$, got \"acme corp\"");
    with("ts", json!("2024-05-01 08:00:00"), "ts: must be RFC 3339 with an offset");
    with("ts", json!("2024-06-02T00:00:01Z"), "ts: must not be more than 24h ahead of the ingest clock");
    with("is_bot", json!("yes"), "is_bot: must be a boolean, got string");
    with("platform", json!(3), "platform: must be a string, got number");
    with("props", json!([1]), "props: must be an object, got array");
    with("props", json!({"text_len": -1}), "props.text_len: must be an integer >= 0, got -1");
    with("props", json!({"reply_to": 5}), "props.reply_to: must be a string, got number");
    with("memberId", json!("m1"), "memberId: unknown field");
    let leave = json!({"event_id": "bad-reason", "type": "member_left", "community_id": "acme", "group_id": "g1",
                       "member_id": "m1", "ts": "2024-05-01T00:00:00Z", "props": {"reason": "kicked"}});
    cases.push((leave, "props.reason: must be one of left, removed, banned, got \"kicked\""));
    let conv = json!({"event_id": "bad-value", "type": "conversion", "community_id": "acme", "group_id": "g1",
                      "member_id": "m1", "ts": "2024-05-01T00:00:00Z", "props": {"value": "9.9"}});
    cases.push((conv, "props.value: must be a number, got string"));

    let mut body: Vec<Value> = vec![event("good-0")];
    body.extend(cases.iter().map(|(e, _)| e.clone()));
    body.push(event("good-1"));
    let (app, sink) = new_app();
    let (status, v) = post_json(app, Value::Array(body)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["accepted"], 2);
    assert_eq!(v["rejected"], cases.len());
    let errors = v["errors"].as_array().unwrap();
    for (i, (case, expected)) in cases.iter().enumerate() {
        let err = &errors[i];
        assert_eq!(err["index"], i + 1, "{err}");
        let msg = err["message"].as_str().unwrap();
        assert!(msg.starts_with(expected), "case {i}: got {msg:?}, want prefix {expected:?}");
        if let Some(id) = case["event_id"].as_str() {
            assert_eq!(err["event_id"], id);
        }
    }
    assert_eq!(sink.stored.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn null_props_count_as_absent_and_old_timestamps_are_accepted() {
    let mut e = event("old");
    e["ts"] = json!("2015-03-01T00:00:00Z");
    e["props"] = json!({"text_len": null, "custom": "kept"});
    let (app, sink) = new_app();
    let (status, v) = post_json(app, json!([e])).await;
    assert_eq!((status, v["accepted"].as_u64()), (StatusCode::OK, Some(1)), "{v}");
    let stored = sink.stored.lock().unwrap();
    assert_eq!(stored[0].props.get("custom"), Some(&json!("kept")));
    assert!(stored[0].props.get("text_len").is_none());
}

#[tokio::test]
async fn ndjson_malformed_line_rejects_that_line_only() {
    let body = format!("{}\n{{not json\n\n{}\n", event("n1"), event("n2"));
    let (app, sink) = new_app();
    let (status, _, v) = post(app, Some("application/x-ndjson"), Some("key-acme-123"), body.into_bytes(), false).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["accepted"], 2);
    assert_eq!(v["rejected"], 1);
    assert_eq!(v["errors"][0]["index"], 1);
    assert!(v["errors"][0]["message"].as_str().unwrap().starts_with("event: malformed JSON"), "{v}");
    assert_eq!(sink.stored.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn gzip_bodies_are_decompressed() {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(json!([event("z1")]).to_string().as_bytes()).unwrap();
    let (app, _) = new_app();
    let (status, _, v) = post(app, Some("application/json"), Some("key-acme-123"), gz.finish().unwrap(), true).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["accepted"], 1);
}

#[tokio::test]
async fn gzip_bomb_is_refused_with_413() {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let mut chunk = Vec::from(&b"["[..]);
    chunk.resize(11 * 1024 * 1024, b' ');
    gz.write_all(&chunk).unwrap();
    let (app, _) = new_app();
    let (status, _, v) = post(app, Some("application/json"), Some("key-acme-123"), gz.finish().unwrap(), true).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_message(&v), "body: must be at most 10485760 bytes after decompression");
}

#[tokio::test]
async fn limits_answer_413() {
    let (app, _) = new_app();
    let many: Vec<Value> = (0..10_001).map(|i| event(&format!("e{i}"))).collect();
    let (status, v) = post_json(app, Value::Array(many)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_message(&v), "body: must hold at most 10000 events, got 10001");

    let (app, _) = new_app();
    let big = vec![b' '; 10 * 1024 * 1024 + 1];
    let (status, _, _) = post(app, Some("application/json"), Some("key-acme-123"), big, false).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    let (app, _) = new_app();
    let mut e = event("huge");
    e["props"] = json!({"blob": "x".repeat(33 * 1024)});
    let (status, v) = post_json(app, json!([e, event("fine")])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["accepted"], 1);
    assert!(v["errors"][0]["message"].as_str().unwrap().starts_with("event: must be at most 32768 bytes"), "{v}");
}

#[tokio::test]
async fn content_type_and_encoding_are_checked() {
    let (app, _) = new_app();
    let (status, _, v) = post(app, Some("text/plain"), Some("key-acme-123"), b"[]".to_vec(), false).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(error_message(&v).starts_with("Content-Type: must be application/json"), "{v}");
    let (app, _) = new_app();
    let (status, _, _) = post(app, None, Some("key-acme-123"), b"[]".to_vec(), false).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (app, _) = new_app();
    let req = Request::post("/v1/events")
        .header("content-type", "application/json")
        .header("authorization", "Bearer key-acme-123")
        .header("content-encoding", "br")
        .body(Body::from("[]"))
        .unwrap();
    let resp = app.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (app, _) = new_app();
    let (status, _, v) = post(app, Some("application/json"), Some("key-acme-123"), b"{\"a\":1}".to_vec(), false).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_message(&v).starts_with("body: must be a JSON array"), "{v}");
}

#[tokio::test]
async fn keys_are_checked_401_and_403() {
    let body = json!([event("k1")]).to_string().into_bytes();
    let (app, _) = new_app();
    let (status, _, v) = post(app, Some("application/json"), None, body.clone(), false).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(v["error"]["code"], "unauthorized");
    let (app, _) = new_app();
    let (status, _, _) = post(app, Some("application/json"), Some("not-a-key-000"), body.clone(), false).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let mut other = event("k2");
    other["community_id"] = json!("globex");
    let (app, sink) = new_app();
    let (status, _, v) = post(
        app,
        Some("application/json"),
        Some("key-acme-123"),
        json!([event("k3"), other]).to_string().into_bytes(),
        false,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(error_message(&v), "community_id: this write key may not write community \"globex\"");
    assert!(sink.stored.lock().unwrap().is_empty(), "nothing of a forbidden request is stored");
    let (app, _) = new_app();
    let (status, _, _) = post(app, Some("application/json"), Some("key-all-4567"), body, false).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn broker_failures_answer_503_or_429_with_retry_after() {
    for (failure, expected) in [
        (SinkError::Unavailable("timed out".into()), StatusCode::SERVICE_UNAVAILABLE),
        (SinkError::QueueFull, StatusCode::TOO_MANY_REQUESTS),
    ] {
        let (app, sink) = new_app();
        *sink.fail.lock().unwrap() = Some(failure);
        let (status, headers, v) = post(
            app,
            Some("application/json"),
            Some("key-acme-123"),
            json!([event("b1")]).to_string().into_bytes(),
            false,
        )
        .await;
        assert_eq!(status, expected, "{v}");
        assert_eq!(headers.get("retry-after").unwrap(), "2");
        assert!(v.get("accepted").is_none(), "nothing is reported accepted: {v}");
    }
}

#[tokio::test]
async fn full_in_flight_queue_answers_429() {
    let mut cfg = config();
    cfg.max_in_flight_events = 10_000;
    let sink = Arc::new(FakeSink::default());
    let mut state = AppState::new(cfg, sink, Metrics::new().unwrap());
    state.clock = fixed_clock;
    let state = Arc::new(state);
    let _held = state.in_flight.try_acquire_many(9_999).unwrap();
    let app = router(state.clone(), Readiness::default());
    let (status, headers, _) = post(
        app,
        Some("application/json"),
        Some("key-acme-123"),
        json!([event("q1"), event("q2")]).to_string().into_bytes(),
        false,
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers.get("retry-after").unwrap(), "2");
}

#[tokio::test]
async fn ops_routes_answer() {
    let (app, _) = new_app();
    let resp = app.clone().oneshot(Request::get("/healthz").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = app.clone().oneshot(Request::get("/readyz").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let _ = post_json(app.clone(), json!([event("m1"), {"event_id": "x"}])).await;
    let resp = app.oneshot(Request::get("/metrics").body(Body::empty()).unwrap()).await.unwrap();
    let text = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(text.contains("ingest_events_accepted_total 1"), "{text}");
    assert!(text.contains("ingest_events_rejected_total{reason=\"type\"} 1"), "{text}");
    assert!(text.contains("ingest_request_duration_seconds_bucket"), "{text}");
}
