//! The query API's HTTP layer (axum `oneshot`) over a fake source: parameters, keys, formats,
//! and what a failing store looks like to a dashboard.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::NaiveDate;
use common::{KeyBinding, Readiness, Secret};
use engine::Mode;
use http_body_util::BodyExt;
use query_api::metrics::Metrics;
use query_api::params::Selection;
use query_api::source::{ActivationRow, BoxFut, CohortValues, ConversionRow, Freshness, ReferralRow, Source};
use query_api::{router, AppState, QueryConfig};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use tower::ServiceExt;

#[derive(Default)]
struct Fake {
    fail: bool,
    seen: Mutex<Vec<(Selection, Option<Mode>)>>,
}

fn d(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

impl Source for Fake {
    fn retention<'a>(&'a self, sel: &'a Selection, mode: Mode) -> BoxFut<'a, Vec<CohortValues>> {
        self.seen.lock().unwrap().push((sel.clone(), Some(mode)));
        let fail = self.fail;
        Box::pin(async move {
            if fail {
                return Err(query_api::QueryError::ClickHouse(clickhouse::error::Error::Custom("down".into())));
            }
            Ok(vec![
                CohortValues { cohort: d("2024-01-01"), size: 10, values: vec![10, 4, 2] },
                CohortValues { cohort: d("2024-01-08"), size: 5, values: vec![5, 1] },
            ])
        })
    }
    fn activation<'a>(&'a self, sel: &'a Selection, _as_of: Option<i64>) -> BoxFut<'a, Vec<ActivationRow>> {
        self.seen.lock().unwrap().push((sel.clone(), None));
        Box::pin(async move {
            Ok(vec![ActivationRow {
                cohort: d("2024-01-01"),
                size: 10,
                activated: 3,
                median_hours_to_activate: Some(1.5),
                complete: true,
            }])
        })
    }
    fn conversion<'a>(&'a self, _sel: &'a Selection, _as_of: Option<i64>) -> BoxFut<'a, Vec<ConversionRow>> {
        Box::pin(async move {
            Ok(vec![ConversionRow {
                cohort: d("2024-01-01"),
                size: 10,
                converted: 2,
                value: 38.9,
                activated: 3,
                activated_then_converted: 1,
                complete: false,
            }])
        })
    }
    fn referral<'a>(&'a self, _sel: &'a Selection) -> BoxFut<'a, Vec<ReferralRow>> {
        Box::pin(async move {
            Ok(vec![ReferralRow { cohort: d("2024-01-01"), size: 4, referred: 1, invited: 2, k_factor: 0.5 }])
        })
    }
    fn engagement<'a>(&'a self, _sel: &'a Selection) -> BoxFut<'a, Vec<(NaiveDate, [u64; 10])>> {
        Box::pin(async move { Ok(vec![(d("2024-01-02"), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10])]) })
    }
    fn lifecycle<'a>(&'a self, _sel: &'a Selection) -> BoxFut<'a, Vec<(NaiveDate, [u64; 4])>> {
        Box::pin(async move { Ok(vec![(d("2024-01-01"), [3, 0, 1, 0])]) })
    }
    fn churn<'a>(&'a self, _sel: &'a Selection) -> BoxFut<'a, Vec<(NaiveDate, [u64; 5])>> {
        Box::pin(async move { Ok(vec![(d("2024-01-01"), [4, 1, 1, 0, 2])]) })
    }
    fn freshness<'a>(&'a self, community: &'a str) -> BoxFut<'a, Freshness> {
        Box::pin(async move {
            if community == "empty" {
                return Ok(Freshness::default());
            }
            Ok(Freshness {
                as_of_ms: Some(1_704_153_600_000),
                events_processed: 42,
                lag_events: 0,
                days: Some((d("2023-12-31"), d("2024-01-02"))),
            })
        })
    }
    fn lag(&self) -> BoxFut<'_, i64> {
        Box::pin(async move { Ok(3) })
    }
    fn groups<'a>(&'a self, community: &'a str) -> BoxFut<'a, Vec<String>> {
        Box::pin(async move {
            Ok(match community {
                "acme" => vec!["g1".to_owned(), "g2".to_owned()],
                _ => vec!["other-g".to_owned()],
            })
        })
    }
    fn ping(&self) -> BoxFut<'_, ()> {
        Box::pin(async { Ok(()) })
    }
}

fn app(fake: Arc<Fake>) -> axum::Router {
    let config = QueryConfig {
        read_keys: vec![
            KeyBinding { key: Secret::new("read-acme-1"), communities: vec!["acme".into()] },
            KeyBinding { key: Secret::new("read-other-1"), communities: vec!["other".into()] },
            KeyBinding { key: Secret::new("read-empty-1"), communities: vec!["empty".into()] },
        ],
        ..QueryConfig::default()
    };
    let state = Arc::new(AppState::new(config, fake, Metrics::new().unwrap()));
    router(state, Readiness::default())
}

async fn get(
    app: axum::Router,
    uri: &str,
    key: Option<&str>,
    accept: Option<&str>,
) -> (StatusCode, Option<String>, String) {
    let mut req = Request::get(uri);
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let resp = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = resp.status();
    let retry = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    let body = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    (status, retry, body)
}

#[tokio::test]
async fn retention_json_has_the_spec_shape() {
    let fake = Arc::new(Fake::default());
    let (status, _, body) = get(
        app(fake.clone()),
        "/v1/communities/acme/retention?granularity=week&mode=on_or_after&group=g1",
        Some("read-acme-1"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v,
        json!({"community": "acme", "group": "g1", "granularity": "week", "mode": "on_or_after",
               "as_of": "2024-01-02T00:00:00.000Z",
               "cohorts": [{"cohort": "2024-01-01", "size": 10, "values": [10, 4, 2]},
                           {"cohort": "2024-01-08", "size": 5, "values": [5, 1]}]})
    );
    let seen = fake.seen.lock().unwrap();
    assert_eq!(seen[0].0.scope_key(), "g1");
    assert_eq!(seen[0].1, Some(Mode::OnOrAfter));
}

#[tokio::test]
async fn defaults_are_week_on_and_community_scope() {
    let fake = Arc::new(Fake::default());
    let (status, _, body) = get(app(fake.clone()), "/v1/communities/acme/retention", Some("read-acme-1"), None).await;
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["granularity"].clone(), v["mode"].clone(), v["group"].clone()),
        (json!("week"), json!("on"), Value::Null)
    );
    assert_eq!(fake.seen.lock().unwrap()[0].0.scope_key(), "");
}

#[tokio::test]
async fn csv_by_parameter_or_accept_header() {
    for (uri, accept) in
        [("/v1/communities/acme/retention?format=csv", None), ("/v1/communities/acme/retention", Some("text/csv"))]
    {
        let (status, _, body) = get(app(Arc::new(Fake::default())), uri, Some("read-acme-1"), accept).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            "cohort,size,period_offset,value\r\n2024-01-01,10,0,10\r\n2024-01-01,10,1,4\r\n2024-01-01,10,2,2\r\n\
             2024-01-08,5,0,5\r\n2024-01-08,5,1,1\r\n"
        );
    }
    let (_, _, body) =
        get(app(Arc::new(Fake::default())), "/v1/communities/acme/activation?format=csv", Some("read-acme-1"), None)
            .await;
    assert_eq!(body, "cohort,size,activated,median_hours_to_activate,complete\r\n2024-01-01,10,3,1.5,true\r\n");
    let (_, _, body) =
        get(app(Arc::new(Fake::default())), "/v1/communities/acme/freshness?format=csv", Some("read-acme-1"), None)
            .await;
    assert_eq!(body, "as_of,events_processed,lag_events\r\n2024-01-02T00:00:00.000Z,42,3\r\n");
}

#[tokio::test]
async fn conversion_and_referral_have_the_spec_shape() {
    let (status, _, body) = get(
        app(Arc::new(Fake::default())),
        "/v1/communities/acme/conversion?granularity=month",
        Some("read-acme-1"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["cohorts"],
        json!([{"cohort": "2024-01-01", "size": 10, "converted": 2, "value": 38.9, "activated": 3,
                "activated_then_converted": 1, "complete": false}])
    );
    let (_, _, body) =
        get(app(Arc::new(Fake::default())), "/v1/communities/acme/referral?format=csv", Some("read-acme-1"), None)
            .await;
    assert_eq!(body, "cohort,size,referred,invited,k_factor\r\n2024-01-01,4,1,2,0.5\r\n");
    let (status, _, _) =
        get(app(Arc::new(Fake::default())), "/v1/communities/acme/referral", Some("read-other-1"), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn period_tables_list_every_period_from_first_event_to_as_of() {
    let (status, _, body) =
        get(app(Arc::new(Fake::default())), "/v1/communities/acme/engagement", Some("read-acme-1"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let days: Vec<&str> = v["days"].as_array().unwrap().iter().map(|d| d["day"].as_str().unwrap()).collect();
    assert_eq!(days, ["2023-12-31", "2024-01-01", "2024-01-02"]);
    assert_eq!(v["days"][0]["dau"], 0, "days without rows are zeros");
    assert_eq!(v["days"][2]["members"], 10);
    let (_, _, body) = get(
        app(Arc::new(Fake::default())),
        "/v1/communities/acme/lifecycle?granularity=week&format=csv",
        Some("read-acme-1"),
        None,
    )
    .await;
    assert_eq!(body, "period,new,returning,resurrecting,dormant\r\n2023-12-25,0,0,0,0\r\n2024-01-01,3,0,1,0\r\n");
    let (_, _, body) = get(
        app(Arc::new(Fake::default())),
        "/v1/communities/acme/engagement?from=2024-01-01&to=2024-01-01",
        Some("read-acme-1"),
        None,
    )
    .await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["days"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn churn_rate_is_null_without_members_at_the_start() {
    let (status, _, body) =
        get(app(Arc::new(Fake::default())), "/v1/communities/acme/churn?granularity=week", Some("read-acme-1"), None)
            .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["periods"],
        json!([
            {"period": "2023-12-25", "members_start": 0, "left": 0, "removed": 0, "inactive": 0, "churn_rate": null},
            {"period": "2024-01-01", "members_start": 4, "left": 1, "removed": 0, "inactive": 2, "churn_rate": 0.25}
        ])
    );
}

#[tokio::test]
async fn bad_parameters_answer_400_naming_the_parameter() {
    let cases = [
        ("granularity=year", "granularity: must be one of day, week, month, got \"year\""),
        ("mode=sometimes", "mode: must be one of on, on_or_after, membership, got \"sometimes\""),
        ("from=2024-13-01", "from: must be a date YYYY-MM-DD, got \"2024-13-01\""),
        ("to=yesterday", "to: must be a date YYYY-MM-DD, got \"yesterday\""),
        ("from=2024-03-01&to=2024-01-01", "from: must not be after to (2024-03-01 > 2024-01-01)"),
        ("format=xml", "format: must be json or csv, got \"xml\""),
    ];
    for (q, msg) in cases {
        let (status, _, body) = get(
            app(Arc::new(Fake::default())),
            &format!("/v1/communities/acme/retention?{q}"),
            Some("read-acme-1"),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["code"], "invalid_parameter");
        assert_eq!(v["error"]["message"], msg, "{q}");
    }
}

#[tokio::test]
async fn date_range_is_passed_to_the_source() {
    let fake = Arc::new(Fake::default());
    let (status, _, _) = get(
        app(fake.clone()),
        "/v1/communities/acme/activation?granularity=month&from=2024-01-01&to=2024-02-01",
        Some("read-acme-1"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let sel = fake.seen.lock().unwrap()[0].0.clone();
    assert_eq!((sel.from, sel.to), (Some(d("2024-01-01")), Some(d("2024-02-01"))));
}

#[tokio::test]
async fn keys_never_cross_tenants() {
    for path in ["retention", "activation", "freshness"] {
        let uri = format!("/v1/communities/acme/{path}");
        let (status, _, _) = get(app(Arc::new(Fake::default())), &uri, None, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _, _) = get(app(Arc::new(Fake::default())), &uri, Some("no-such-key"), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _, body) = get(app(Arc::new(Fake::default())), &uri, Some("read-other-1"), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(!body.contains("cohorts"));
    }
}

#[tokio::test]
async fn a_failing_store_answers_503_with_retry_after() {
    let fake = Arc::new(Fake { fail: true, ..Fake::default() });
    let (status, retry, body) = get(app(fake), "/v1/communities/acme/retention", Some("read-acme-1"), None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry.as_deref(), Some("2"));
    assert!(body.contains("\"code\":\"unavailable\""), "{body}");
}

async fn get_with(app: axum::Router, uri: &str, headers: &[(&str, &str)]) -> axum::response::Response {
    let mut req = Request::get(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap()
}

async fn body_text(resp: axum::response::Response) -> String {
    String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

#[tokio::test]
async fn unknown_community_or_group_is_404_naming_it() {
    let cases = [
        (
            "/v1/communities/empty/retention",
            "read-empty-1",
            "community: no event has been counted for community \"empty\"",
        ),
        (
            "/v1/communities/empty/groups",
            "read-empty-1",
            "community: no event has been counted for community \"empty\"",
        ),
        (
            "/v1/communities/acme/churn?group=g9",
            "read-acme-1",
            "group: community \"acme\" has no group \"g9\" (no event was counted in it)",
        ),
        // A group of another community is unknown here, whatever the key can read elsewhere.
        (
            "/v1/communities/acme/engagement?group=other-g",
            "read-acme-1",
            "group: community \"acme\" has no group \"other-g\" (no event was counted in it)",
        ),
    ];
    for (uri, key, msg) in cases {
        let (status, _, body) = get(app(Arc::new(Fake::default())), uri, Some(key), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!((v["error"]["code"].as_str(), v["error"]["message"].as_str()), (Some("not_found"), Some(msg)));
    }
    // Freshness answers before the first event, so a caller can wait on it.
    let (status, _, body) =
        get(app(Arc::new(Fake::default())), "/v1/communities/empty/freshness", Some("read-empty-1"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"as_of": null, "events_processed": 0, "lag_events": 3})
    );
    let (status, _, _) =
        get(app(Arc::new(Fake::default())), "/v1/communities/acme/churn?group=g2", Some("read-acme-1"), None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn groups_lists_the_communitys_groups() {
    let (status, _, body) =
        get(app(Arc::new(Fake::default())), "/v1/communities/acme/groups", Some("read-acme-1"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), json!({"community": "acme", "groups": ["g1", "g2"]}));
    let (_, _, body) =
        get(app(Arc::new(Fake::default())), "/v1/communities/acme/groups", Some("read-acme-1"), Some("text/csv")).await;
    assert_eq!(body, "group\r\ng1\r\ng2\r\n");
}

#[tokio::test]
async fn answers_carry_etag_and_a_matching_if_none_match_is_304() {
    let auth = ("authorization", "Bearer read-acme-1");
    let uri = "/v1/communities/acme/retention?granularity=week";
    let first = get_with(app(Arc::new(Fake::default())), uri, &[auth]).await;
    assert_eq!(first.status(), StatusCode::OK);
    let tag = first.headers()["etag"].to_str().unwrap().to_owned();
    assert!(tag.starts_with('"') && tag.ends_with('"') && tag.len() == 34, "{tag}");
    assert_eq!(first.headers()["cache-control"], "private, max-age=5");
    assert_eq!(first.headers()["vary"], "Authorization, Accept");
    let full = body_text(first).await;

    let again = get_with(app(Arc::new(Fake::default())), uri, &[auth]).await;
    assert_eq!(again.headers()["etag"].to_str().unwrap(), tag, "same numbers, same tag");
    for sent in [tag.clone(), format!("W/{tag}"), format!("\"other\", {tag}")] {
        let resp = get_with(app(Arc::new(Fake::default())), uri, &[auth, ("if-none-match", &sent)]).await;
        assert_eq!(resp.status(), StatusCode::NOT_MODIFIED, "{sent}");
        assert_eq!(resp.headers()["etag"].to_str().unwrap(), tag);
        assert_eq!(body_text(resp).await, "");
    }
    let stale = get_with(app(Arc::new(Fake::default())), uri, &[auth, ("if-none-match", "\"stale\"")]).await;
    assert_eq!(stale.status(), StatusCode::OK);
    assert_eq!(body_text(stale).await, full);

    let csv = get_with(app(Arc::new(Fake::default())), &format!("{uri}&format=csv"), &[auth]).await;
    assert_ne!(csv.headers()["etag"].to_str().unwrap(), tag, "CSV and JSON are different representations");
    let other =
        get_with(app(Arc::new(Fake::default())), "/v1/communities/acme/retention?granularity=month", &[auth]).await;
    assert_ne!(other.headers()["etag"].to_str().unwrap(), tag);

    let denied = get_with(app(Arc::new(Fake::default())), uri, &[("authorization", "Bearer read-other-1")]).await;
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    assert_eq!(denied.headers()["cache-control"], "no-store");
    assert!(denied.headers().get("etag").is_none());
}

#[tokio::test]
async fn cross_tenant_attempts_are_refused_whatever_the_path() {
    let attempts = [
        "/v1/communities/other/retention",
        "/v1/communities/Other/retention",
        "/v1/communities/other/groups",
        "/v1/communities/other/freshness",
        "/v1/communities/acme%2F..%2Fother/retention",
        "/v1/communities/%20other/retention",
        "/v1/communities/other%00/retention",
    ];
    for uri in attempts {
        let (status, _, body) = get(app(Arc::new(Fake::default())), uri, Some("read-acme-1"), None).await;
        assert!(matches!(status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND), "{uri}: {status} {body}");
        assert!(!body.contains("cohorts") && !body.contains("groups") && !body.contains("events_processed"), "{uri}");
    }
    // The key of "other" sees none of acme's answers either, including its groups.
    let (status, _, _) =
        get(app(Arc::new(Fake::default())), "/v1/communities/acme/groups", Some("read-other-1"), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn dashboard_and_its_assets_are_served_from_the_binary() {
    let resp = get_with(app(Arc::new(Fake::default())), "/", &[]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
    assert!(resp.headers()["content-security-policy"].to_str().unwrap().contains("default-src 'self'"));
    let html = body_text(resp).await;
    for asset in ["/assets/echarts.min.js", "/assets/app.js", "/assets/app.css"] {
        assert!(html.contains(asset), "{asset}");
        let resp = get_with(app(Arc::new(Fake::default())), asset, &[]).await;
        assert_eq!(resp.status(), StatusCode::OK, "{asset}");
        assert!(resp.headers().get("etag").is_some());
        assert!(!body_text(resp).await.is_empty());
    }
    let missing = get_with(app(Arc::new(Fake::default())), "/assets/../Cargo.toml", &[]).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[path = "support/openapi_check.rs"]
mod openapi_check;

#[tokio::test]
async fn every_answer_matches_the_openapi_document() {
    let spec = openapi_check::OpenApi::load();
    let resp = get_with(app(Arc::new(Fake::default())), "/openapi.json", &[]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let served: Value = serde_json::from_str(&body_text(resp).await).unwrap();
    assert_eq!(served["openapi"], "3.1.0");

    let mut checked = std::collections::BTreeSet::new();
    let metric = ["retention", "activation", "conversion", "referral", "churn", "engagement", "lifecycle"];
    let mut uris: Vec<(String, &str)> = Vec::new();
    for m in metric {
        for q in
            ["", "?granularity=day&group=g1", "?granularity=month&from=2023-12-01&to=2024-01-31", "?mode=membership"]
        {
            uris.push((format!("/v1/communities/acme/{m}{q}"), "read-acme-1"));
        }
        uris.push((format!("/v1/communities/acme/{m}?format=csv"), "read-acme-1"));
        uris.push((format!("/v1/communities/acme/{m}?granularity=year"), "read-acme-1"));
        uris.push((format!("/v1/communities/acme/{m}"), "read-other-1"));
        uris.push((format!("/v1/communities/acme/{m}"), "nobody"));
        uris.push((format!("/v1/communities/empty/{m}"), "read-empty-1"));
        uris.push((format!("/v1/communities/acme/{m}?group=nope"), "read-acme-1"));
    }
    for p in ["freshness", "groups"] {
        uris.push((format!("/v1/communities/acme/{p}"), "read-acme-1"));
        uris.push((format!("/v1/communities/acme/{p}?format=csv"), "read-acme-1"));
    }
    uris.push(("/v1/communities/empty/freshness".into(), "read-empty-1"));
    for (uri, key) in &uris {
        let auth = format!("Bearer {key}");
        let resp = get_with(app(Arc::new(Fake::default())), uri, &[("authorization", &auth)]).await;
        let status = resp.status().as_u16();
        let ctype = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        let body = body_text(resp).await;
        spec.check(uri, status, &ctype, &body).unwrap_or_else(|e| panic!("{e}\n{body}"));
        checked.insert((spec.template_for(uri).unwrap(), status));
    }
    let failing = get_with(
        app(Arc::new(Fake { fail: true, ..Fake::default() })),
        "/v1/communities/acme/retention",
        &[("authorization", "Bearer read-acme-1")],
    )
    .await;
    let ctype = failing.headers()["content-type"].to_str().unwrap().to_owned();
    spec.check("/v1/communities/acme/retention", 503, &ctype, &body_text(failing).await).unwrap();

    // Every documented /v1 route was exercised with a 200, and the check itself can fail.
    for t in spec.templates().into_iter().filter(|t| t.starts_with("/v1/")) {
        assert!(checked.contains(&(t.clone(), 200)), "{t} never answered 200 here");
    }
    let wrong = json!({"community": "acme", "group": null, "granularity": "week", "as_of": null, "mode": "on",
                       "cohorts": [{"cohort": "2024-13-01", "size": 1, "values": [1]}]});
    assert!(spec.check("/v1/communities/acme/retention", 200, "application/json", &wrong.to_string()).is_err());
    assert!(spec.check("/v1/communities/acme/retention", 418, "application/json", "{}").is_err());
    let extra = json!({"as_of": null, "events_processed": 0, "lag_events": 0, "secret": 1});
    assert!(spec.check("/v1/communities/acme/freshness", 200, "application/json", &extra.to_string()).is_err());
}

#[tokio::test]
async fn concurrent_and_repeated_requests_share_one_computation_but_never_skip_the_key_check() {
    let fake = Arc::new(Fake::default());
    let app = app(fake.clone());
    let uri = "/v1/communities/acme/retention?granularity=week";
    let requests = (0..20).map(|_| get(app.clone(), uri, Some("read-acme-1"), None));
    let answers = futures::future::join_all(requests).await;
    assert!(answers.iter().all(|(s, _, b)| *s == StatusCode::OK && b == &answers[0].2));
    assert_eq!(fake.seen.lock().unwrap().len(), 1, "one computation for 20 requests");

    // A cached answer is still refused to a foreign or missing key.
    let (status, _, body) = get(app.clone(), uri, Some("read-other-1"), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _, _) = get(app.clone(), uri, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Other parameters or CSV by header are other answers.
    let (_, _, csv) = get(app.clone(), uri, Some("read-acme-1"), Some("text/csv")).await;
    assert!(csv.starts_with("cohort,size,period_offset,value"), "{csv}");
    get(app.clone(), "/v1/communities/acme/retention?granularity=day", Some("read-acme-1"), None).await;
    assert_eq!(fake.seen.lock().unwrap().len(), 3);

    let metrics = get(app.clone(), "/metrics", None, None).await.2;
    assert!(metrics.contains("query_response_cache_total{result=\"hit\"} 19"), "{metrics}");
}

#[tokio::test]
async fn failures_are_not_cached_and_a_zero_ttl_turns_the_cache_off() {
    let fake = Arc::new(Fake { fail: true, ..Fake::default() });
    let app = app(fake.clone());
    for _ in 0..2 {
        let (status, _, _) = get(app.clone(), "/v1/communities/acme/retention", Some("read-acme-1"), None).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(fake.seen.lock().unwrap().len(), 2, "each failed request asked the store again");

    let fake = Arc::new(Fake::default());
    let config = QueryConfig {
        read_keys: vec![KeyBinding { key: Secret::new("read-acme-1"), communities: vec!["acme".into()] }],
        response_cache_ms: 0,
        ..QueryConfig::default()
    };
    let app = router(Arc::new(AppState::new(config, fake.clone(), Metrics::new().unwrap())), Readiness::default());
    for _ in 0..2 {
        get(app.clone(), "/v1/communities/acme/retention", Some("read-acme-1"), None).await;
    }
    assert_eq!(fake.seen.lock().unwrap().len(), 2);
}
