//! The dashboard in a real browser (Debian's headless Chromium through chromedriver) against a
//! running stack loaded with a generated community: the retention heatmap must show the numbers
//! the API serves, for the mode and scope the user picks, and every card must leave its loading
//! state. Screenshots of each step are saved under `test-artifacts/` (or `$TEST_ARTIFACTS`).

use e2e_tests::webdriver::Browser;
use e2e_tests::{repo_root, wait_for, Stack, OTHER_READ_KEY, READ_KEY, WRITE_KEY};
use reqwest::blocking::Client;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

const COMMUNITY: &str = "e2e";
const HEATMAP_COHORTS: usize = 26;

fn artifacts() -> PathBuf {
    std::env::var_os("TEST_ARTIFACTS").map(PathBuf::from).unwrap_or_else(|| repo_root().join("test-artifacts"))
}

fn load_community(client: &Client, stack: &Stack) -> Vec<String> {
    let spec = generator::Spec {
        community_id: COMMUNITY.into(),
        seed: 11,
        members: 900,
        groups: 3,
        days: 150,
        ..generator::Spec::default()
    };
    let events = generator::generate(&spec);
    for chunk in events.chunks(2000) {
        let body: Vec<Value> = chunk.iter().map(|e| e.to_json()).collect();
        let resp =
            client.post(format!("{}/v1/events", stack.ingest_url)).bearer_auth(WRITE_KEY).json(&body).send().unwrap();
        assert_eq!(resp.status(), 200);
    }
    let expected = events.iter().map(|e| &e.event_id).collect::<HashSet<_>>().len() as u64;
    let url = format!("{}/v1/communities/{COMMUNITY}/freshness", stack.query_url);
    wait_for("the community to be counted", Duration::from_secs(180), || {
        let v: Value = client.get(&url).bearer_auth(READ_KEY).send().and_then(|r| r.json()).unwrap_or(Value::Null);
        v["events_processed"].as_u64() == Some(expected)
    })
    .unwrap();
    let mut groups: Vec<String> =
        events.iter().map(|e| e.group_id.clone()).collect::<HashSet<_>>().into_iter().collect();
    groups.sort();
    groups
}

/// What the heatmap shows: its state, the parameters it answers, its cohort axis labels and its
/// cell labels (percentages).
const HEATMAP: &str = r#"
    const card = document.getElementById('card-retention');
    const texts = [...card.querySelectorAll('#retention-chart svg text')].map((t) => t.textContent.trim());
    return { state: card.dataset.state, query: card.dataset.query || null,
             cohorts: texts.filter((t) => /^\d{4}-\d{2}-\d{2} \(/.test(t)).map((t) => t.slice(0, 10)),
             cells: texts.filter((t) => /%$/.test(t)).map((t) => parseFloat(t)) };
"#;

/// Waits until the heatmap is drawn for `query`, then compares it with the API's answer.
fn check_heatmap(browser: &Browser, client: &Client, stack: &Stack, query: Value) -> usize {
    let want = query.to_string();
    browser
        .wait_until(
            &format!("the heatmap for {want}"),
            Duration::from_secs(30),
            "const c = document.getElementById('card-retention'); \
             return c.dataset.state === 'ready' && c.dataset.query === arguments[0];",
            json!([want]),
        )
        .unwrap();
    let shown = browser.eval(HEATMAP, json!([])).unwrap();
    let url = format!("{}/v1/communities/{COMMUNITY}/retention", stack.query_url);
    let params: Vec<(&str, &str)> =
        query.as_object().unwrap().iter().map(|(k, v)| (k.as_str(), v.as_str().unwrap())).collect();
    let api: Value = client.get(&url).query(&params).bearer_auth(READ_KEY).send().unwrap().json().unwrap();
    let all = api["cohorts"].as_array().unwrap();
    let newest = &all[all.len().saturating_sub(HEATMAP_COHORTS)..];
    let cohorts: Vec<&str> = newest.iter().map(|c| c["cohort"].as_str().unwrap()).collect();
    let shown_cohorts: Vec<&str> = shown["cohorts"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert_eq!(shown_cohorts, cohorts, "cohort rows for {want}");
    let mut expected: Vec<f64> = newest
        .iter()
        .flat_map(|c| {
            let size = c["size"].as_f64().unwrap();
            c["values"].as_array().unwrap().iter().map(move |v| 100.0 * v.as_f64().unwrap() / size)
        })
        .collect();
    let mut cells: Vec<f64> = shown["cells"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(cells.len(), expected.len(), "one label per cell for {want}");
    expected.sort_by(f64::total_cmp);
    cells.sort_by(f64::total_cmp);
    for (got, exp) in cells.iter().zip(&expected) {
        // Labels carry one decimal.
        assert!((got - exp).abs() <= 0.05 + 1e-9, "heatmap shows {got}%, the API says {exp}% ({want})");
    }
    assert!(expected.iter().any(|&x| x > 0.0 && x < 100.0), "a heatmap of only 0% and 100% proves little");
    cells.len()
}

fn all_cards_settled(browser: &Browser) {
    browser
        .wait_until(
            "every card to finish loading",
            Duration::from_secs(30),
            "return [...document.querySelectorAll('main .card')].every((c) => c.dataset.state === 'ready');",
            json!([]),
        )
        .unwrap_or_else(|e| {
            let states = browser.eval(
                "return [...document.querySelectorAll('main .card')].map((c) => c.id + '=' + c.dataset.state + ' ' + \
                 c.querySelector('.state').textContent);",
                json!([]),
            );
            panic!("{e}: {states:?}")
        });
}

#[test]
fn dashboard_heatmap_matches_the_api_across_modes_and_scopes() {
    let stack = Stack::start("dashboard", 2).unwrap();
    let client = Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let groups = load_community(&client, &stack);
    let shots = artifacts();
    let browser = Browser::start(&stack.dir, 1440, 1800).unwrap();

    browser.goto(&format!("{}/#community={COMMUNITY}&granularity=week", stack.query_url)).unwrap();
    browser.type_into("#key", READ_KEY).unwrap();
    browser.click("#load").unwrap();
    let cells = check_heatmap(&browser, &client, &stack, json!({"group": "", "granularity": "week", "mode": "on"}));
    assert!(cells > 100, "a 150-day community has a full heatmap, got {cells} cells");
    all_cards_settled(&browser);
    let rows = browser.eval("return document.querySelectorAll('#newest-table tbody tr').length;", json!([])).unwrap();
    assert_eq!(rows, 8, "the newest cohorts table lists eight cohorts");
    browser.screenshot(&shots.join("dashboard-1-community-week-on.png")).unwrap();

    browser.click(".modes button[data-mode=membership]").unwrap();
    check_heatmap(&browser, &client, &stack, json!({"group": "", "granularity": "week", "mode": "membership"}));
    browser.screenshot(&shots.join("dashboard-2-membership.png")).unwrap();

    browser.click(".modes button[data-mode=on_or_after]").unwrap();
    check_heatmap(&browser, &client, &stack, json!({"group": "", "granularity": "week", "mode": "on_or_after"}));

    let group = &groups[1];
    browser.click(&format!("#scope option[value='{group}']")).unwrap();
    check_heatmap(&browser, &client, &stack, json!({"group": group, "granularity": "week", "mode": "on_or_after"}));
    all_cards_settled(&browser);
    browser.screenshot(&shots.join("dashboard-3-group.png")).unwrap();

    browser.click("#granularity option[value=month]").unwrap();
    check_heatmap(&browser, &client, &stack, json!({"group": group, "granularity": "month", "mode": "on_or_after"}));
    all_cards_settled(&browser);
    browser.screenshot(&shots.join("dashboard-4-group-month.png")).unwrap();

    // A key that is not bound to the community: an error the operator can read, no numbers.
    browser.type_into("#key", OTHER_READ_KEY).unwrap();
    browser.click("#load").unwrap();
    browser
        .wait_until(
            "the error banner",
            Duration::from_secs(20),
            "const b = document.getElementById('banner'); return !b.hidden && b.textContent.includes('may not read');",
            json!([]),
        )
        .unwrap_or_else(|e| {
            let _ = browser.screenshot(&shots.join("dashboard-failed-banner.png"));
            let banner = browser.eval("return document.getElementById('banner').textContent;", json!([]));
            panic!("{e}: banner {banner:?}")
        });
    let cards_hidden = browser.eval("return document.getElementById('cards').hidden;", json!([])).unwrap();
    assert_eq!(cards_hidden, json!(true));
    browser.screenshot(&shots.join("dashboard-5-foreign-community.png")).unwrap();
}
