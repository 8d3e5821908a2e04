//! End to end through real Tansu and real ClickHouse: events in over HTTP (shuffled, duplicated,
//! some invalid, JSON/NDJSON/gzip), the processor SIGKILLed and restarted midway, and every
//! retention and activation cell read back from the query API compared with the reference
//! computation, for the community scope and every group, by day, week and month.

use e2e_tests::{wait_for, Stack, OTHER_READ_KEY, READ_KEY, WRITE_KEY};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reqwest::blocking::Client;
use schemas::Event;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::io::Write;
use std::time::Duration;

fn invalid_events(n: usize, rng: &mut ChaCha8Rng) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let mut e = json!({"event_id": format!("bad-{i}"), "type": "message_posted", "community_id": "e2e",
                               "group_id": "g0", "member_id": "m000001", "ts": "2024-02-01T00:00:00Z"});
            match rng.random_range(0..4) {
                0 => e["member_id"] = Value::Null,
                1 => e["ts"] = json!("yesterday"),
                2 => e["type"] = json!("message_deleted"),
                _ => e["props"] = json!({"text_len": "long"}),
            }
            e
        })
        .collect()
}

enum Body {
    Json,
    Ndjson,
    GzipNdjson,
}

/// Posts one batch; returns (accepted, rejected).
fn post(client: &Client, url: &str, items: &[Value], format: Body) -> (u64, u64) {
    let (ct, mut body): (&str, Vec<u8>) = match format {
        Body::Json => ("application/json", serde_json::to_vec(items).unwrap()),
        _ => ("application/x-ndjson", items.iter().map(|v| v.to_string() + "\n").collect::<String>().into_bytes()),
    };
    let mut req = client.post(format!("{url}/v1/events")).bearer_auth(WRITE_KEY).header("content-type", ct);
    if matches!(format, Body::GzipNdjson) {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&body).unwrap();
        body = gz.finish().unwrap();
        req = req.header("content-encoding", "gzip");
    }
    let resp = req.body(body).send().unwrap();
    assert_eq!(resp.status(), 200, "ingest answered {}", resp.status());
    let v: Value = resp.json().unwrap();
    (v["accepted"].as_u64().unwrap(), v["rejected"].as_u64().unwrap())
}

fn send_all(client: &Client, stack: &Stack, valid: &[Event], invalid: Vec<Value>, rng: &mut ChaCha8Rng) {
    let mut items: Vec<(bool, Value)> = valid.iter().map(|e| (true, e.to_json())).collect();
    items.extend(invalid.into_iter().map(|v| (false, v)));
    items.shuffle(rng);
    for (i, chunk) in items.chunks(700).enumerate() {
        let expected_ok = chunk.iter().filter(|c| c.0).count() as u64;
        let values: Vec<Value> = chunk.iter().map(|c| c.1.clone()).collect();
        let format = [Body::Json, Body::Ndjson, Body::GzipNdjson].into_iter().nth(i % 3).unwrap();
        let (accepted, rejected) = post(client, &stack.ingest_url, &values, format);
        assert_eq!(accepted, expected_ok, "batch {i}");
        assert_eq!(rejected, chunk.len() as u64 - expected_ok, "batch {i}");
    }
}

#[path = "../../query-api/tests/support/openapi_check.rs"]
mod openapi_check;

static OPENAPI: std::sync::LazyLock<openapi_check::OpenApi> = std::sync::LazyLock::new(openapi_check::OpenApi::load);

/// Every answer the test reads is also checked against the served OpenAPI document.
fn get(client: &Client, stack: &Stack, path: &str, key: &str) -> (u16, Value) {
    let resp = client.get(format!("{}{path}", stack.query_url)).bearer_auth(key).send().unwrap();
    let status = resp.status().as_u16();
    let ctype = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let body = resp.text().unwrap();
    OPENAPI.check(path, status, &ctype, &body).unwrap_or_else(|e| panic!("OpenAPI conformance: {e}"));
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn wait_processed(client: &Client, stack: &Stack, community: &str, expected: u64) {
    let path = format!("/v1/communities/{community}/freshness");
    let mut last = Value::Null;
    let res = wait_for(&format!("{community} to reach {expected} events"), Duration::from_secs(180), || {
        let (status, v) = get(client, stack, &path, READ_KEY);
        last = v.clone();
        status == 200 && v["events_processed"].as_u64() == Some(expected)
    });
    res.unwrap_or_else(|e| panic!("{e}; last freshness {last}; logs in {}", stack.dir.display()));
}

fn distinct(events: &[Event], community: &str) -> u64 {
    events.iter().filter(|e| e.community_id == community).map(|e| &e.event_id).collect::<HashSet<_>>().len() as u64
}

/// Community `e2e` runs in Shanghai time (set through the processor's environment), so days,
/// weeks and months are local there, end to end.
const ZONE: &str = "Asia/Shanghai";

fn params() -> reference::Params {
    reference::Params { tz: ZONE.parse().unwrap(), ..reference::Params::default() }
}

fn compare_with_reference(client: &Client, stack: &Stack, events: &[Event]) -> usize {
    e2e_tests::compare::all_endpoints(&mut |path: &str| get(client, stack, path, READ_KEY), events, "e2e", &params())
}

#[test]
fn pipeline_matches_reference_through_restart() {
    let mut stack = Stack::start_with("pipeline", 4, &[("PROCESSOR_METRICS__COMMUNITIES__E2E__TIMEZONE", ZONE)])
        .expect("stack starts");
    let client = Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(2024);
    let spec = generator::Spec {
        community_id: "e2e".into(),
        seed: 7,
        members: 400,
        groups: 3,
        days: 100,
        ..Default::default()
    };
    let mut events = generator::generate(&spec);
    let other = generator::generate(&generator::Spec {
        community_id: "e2e-other".into(),
        members: 40,
        days: 30,
        ..spec.clone()
    });
    events.extend(other);
    events.shuffle(&mut rng);
    // 85% now, the rest after a crash of the processor; 10% of everything sent twice.
    let cut = events.len() * 85 / 100;
    let (first, second) = events.split_at(cut);
    let with_dups = |part: &[Event], rng: &mut ChaCha8Rng| {
        let mut v = part.to_vec();
        let dups: Vec<Event> = part.iter().filter(|_| rng.random::<f64>() < 0.1).cloned().collect();
        v.extend(dups);
        v
    };
    let first_sent = with_dups(first, &mut rng);
    let invalid = invalid_events(60, &mut rng);
    send_all(&client, &stack, &first_sent, invalid, &mut rng);
    wait_processed(&client, &stack, "e2e", distinct(first, "e2e"));
    let cells = compare_with_reference(&client, &stack, first);
    println!("phase 1: {cells} cells equal to the reference");
    let reference = reference::compute(first, "e2e", &params());
    assert!(reference.conversion.values().any(|c| c.converted > 0), "the data has conversions");
    assert!(reference.referral.values().any(|c| c.invited > 0), "the data has invitations");

    stack.kill_processor();
    let second_sent = with_dups(second, &mut rng);
    send_all(&client, &stack, &second_sent, invalid_events(10, &mut rng), &mut rng);
    stack.start_processor().unwrap();
    wait_processed(&client, &stack, "e2e", distinct(&events, "e2e"));
    wait_processed(&client, &stack, "e2e-other", distinct(&events, "e2e-other"));
    let cells = compare_with_reference(&client, &stack, &events);
    println!("phase 2 (after SIGKILL and restart): {cells} cells equal to the reference");

    // The archive holds each distinct accepted event once.
    let archived = stack.sql("SELECT count() FROM events_raw FINAL WHERE community_id = 'e2e'").unwrap();
    assert_eq!(archived.trim().parse::<u64>().unwrap(), distinct(&events, "e2e"));

    // Every statement the services can send (all parameter variants) runs on this ClickHouse.
    for (kind, sql) in schemas::queries::catalog(&stack.database) {
        if kind == "query" {
            stack.sql(&sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }

    // The analyst queries in docs/metrics.md and docs/analyst.md run as written.
    for name in ["docs/metrics.md", "docs/analyst.md"] {
        let docs = std::fs::read_to_string(e2e_tests::repo_root().join(name)).unwrap();
        let blocks: Vec<&str> = docs.split("```sql\n").skip(1).map(|b| b.split("```").next().unwrap()).collect();
        assert!(blocks.len() >= 3, "{name}");
        for q in blocks {
            stack.sql(q).unwrap_or_else(|e| panic!("{name} query failed: {q}\n{e}"));
        }
    }
    check_analyst_views(&client, &stack, &events);

    // Read keys never cross tenants.
    let (status, v) = get(&client, &stack, "/v1/communities/e2e/retention", OTHER_READ_KEY);
    assert_eq!(status, 403, "{v}");
    let (status, _) = get(&client, &stack, "/v1/communities/e2e-other/freshness", OTHER_READ_KEY);
    assert_eq!(status, 200);
    let (status, _) = get(&client, &stack, "/v1/communities/e2e/freshness", "wrong-key-123");
    assert_eq!(status, 401);

    // Unknown communities and groups are 404s; the groups list is the groups the events named.
    let mut groups: Vec<String> = events
        .iter()
        .filter(|e| e.community_id == "e2e")
        .map(|e| e.group_id.clone())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    groups.sort();
    let (status, v) = get(&client, &stack, "/v1/communities/e2e/groups", READ_KEY);
    assert_eq!((status, v["groups"].clone()), (200, json!(groups)));
    let (status, v) = get(&client, &stack, "/v1/communities/nobody-here/retention", READ_KEY);
    assert_eq!(status, 404, "{v}");
    let (status, v) = get(&client, &stack, "/v1/communities/e2e/activation?group=no-such-group", READ_KEY);
    assert_eq!(status, 404, "{v}");

    // CSV answers: the documented header, and the same cells as JSON.
    for m in ["retention", "activation", "conversion", "referral", "churn", "engagement", "lifecycle", "freshness"] {
        let path = format!("/v1/communities/e2e/{m}?format=csv");
        let resp = client.get(format!("{}{path}", stack.query_url)).bearer_auth(READ_KEY).send().unwrap();
        let ctype = resp.headers()["content-type"].to_str().unwrap().to_owned();
        let body = resp.text().unwrap();
        OPENAPI.check(&path, 200, &ctype, &body).unwrap_or_else(|e| panic!("OpenAPI conformance: {e}"));
    }

    // Conditional requests: the tag of an unchanged answer gets a 304 without a body.
    let url = format!("{}/v1/communities/e2e/retention?granularity=month", stack.query_url);
    let first = client.get(&url).bearer_auth(READ_KEY).send().unwrap();
    let tag = first.headers()["etag"].to_str().unwrap().to_owned();
    let again = client.get(&url).bearer_auth(READ_KEY).header("if-none-match", &tag).send().unwrap();
    assert_eq!(again.status(), 304);

    reconcile_agrees_then_catches_a_wrong_cell(&stack);
}

/// `reconcile` (the polars batch recomputation from the archive) finds no difference with the
/// stored tables; after one stored cell is overwritten with a wrong value it names that cell and
/// exits with status 1.
fn reconcile_agrees_then_catches_a_wrong_cell(stack: &Stack) {
    let run = || {
        let out =
            stack.tool("reconcile").unwrap().args(["--community", "e2e", "--community", "e2e-other"]).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = run();
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("e2e: ") && stdout.contains(" 0 differences"), "{stdout}");
    println!("{stdout}");

    let cohort = stack
        .sql("SELECT toString(min(cohort)) FROM retention WHERE community_id = 'e2e' AND group_id = '' AND granularity = 'week'")
        .unwrap();
    let cohort = cohort.trim();
    stack
        .sql(&format!(
            "INSERT INTO retention (community_id, group_id, granularity, mode, cohort, period_offset, period, partition, members, version) \
             VALUES ('e2e', '', 'week', 'on', '{cohort}', 1, '{cohort}', 0, 99999, 4000000000)"
        ))
        .unwrap();
    let (code, stdout, _) = run();
    assert_eq!(code, Some(1), "{stdout}");
    let cell = format!("retention scope=(community) granularity=week mode=on cohort={cohort} k=1: clickhouse");
    assert!(stdout.contains(&cell), "{stdout}");
}

/// The analyst views agree with the exact tables behind the API: weekly retention by invite,
/// summed over `invited`, is the community's weekly "on" retention, and its cohort sizes split
/// as `referred` says; group activation counts are the group cohorts' sizes and activations.
fn check_analyst_views(client: &Client, stack: &Stack, events: &[Event]) {
    let rows = stack
        .sql(
            "SELECT toString(cohort_week), invited, period_offset, cohort_members, retained_members \
             FROM weekly_retention_by_invite WHERE community_id = 'e2e' FORMAT TSV",
        )
        .unwrap();
    let (_, retention) = get(client, stack, "/v1/communities/e2e/retention?granularity=week&mode=on", READ_KEY);
    let (_, referral) = get(client, stack, "/v1/communities/e2e/referral?granularity=week", READ_KEY);
    let size_split: std::collections::HashMap<(String, u64), u64> = referral["cohorts"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| {
            let (cohort, size, referred) = (
                c["cohort"].as_str().unwrap().to_owned(),
                c["size"].as_u64().unwrap(),
                c["referred"].as_u64().unwrap(),
            );
            [((cohort.clone(), 1), referred), ((cohort, 0), size - referred)]
        })
        .collect();
    let mut retained: std::collections::BTreeMap<(String, usize), u64> = Default::default();
    for line in rows.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let (cohort, invited, offset) = (f[0].to_owned(), f[1].parse::<u64>().unwrap(), f[2].parse::<usize>().unwrap());
        assert_eq!(f[3].parse::<u64>().unwrap(), size_split[&(cohort.clone(), invited)], "{line}");
        *retained.entry((cohort, offset)).or_default() += f[4].parse::<u64>().unwrap();
    }
    let mut expected: std::collections::BTreeMap<(String, usize), u64> = Default::default();
    for c in retention["cohorts"].as_array().unwrap() {
        for (k, v) in c["values"].as_array().unwrap().iter().enumerate() {
            expected.insert((c["cohort"].as_str().unwrap().to_owned(), k), v.as_u64().unwrap());
        }
    }
    assert!(expected.len() > 20);
    assert_eq!(retained, expected, "weekly_retention_by_invite summed over invited = weekly \"on\" retention");

    let groups: HashSet<&str> =
        events.iter().filter(|e| e.community_id == "e2e").map(|e| e.group_id.as_str()).collect();
    for g in groups {
        let (_, act) =
            get(client, stack, &format!("/v1/communities/e2e/activation?granularity=month&group={g}"), READ_KEY);
        let sum = |k: &str| act["cohorts"].as_array().unwrap().iter().map(|c| c[k].as_u64().unwrap()).sum::<u64>();
        let row = stack
            .sql(&format!(
                "SELECT new_members, activated_members FROM group_activation \
                 WHERE community_id = 'e2e' AND group_id = '{g}' FORMAT TSV"
            ))
            .unwrap();
        assert_eq!(row.trim(), format!("{}\t{}", sum("size"), sum("activated")), "group {g}");
    }
}
