//! The comparison of every query-API answer with the reference computation, shared by the
//! end-to-end tests.

use schemas::Event;
use serde_json::{json, Value};
use std::collections::HashSet;

/// `all_endpoints` against a stack's query API (`query_url`), read with the stack's read key.
pub fn served(
    client: &reqwest::blocking::Client,
    query_url: &str,
    events: &[Event],
    community: &str,
    params: &reference::Params,
) -> usize {
    let mut get = |path: &str| {
        let resp = client.get(format!("{query_url}{path}")).bearer_auth(crate::READ_KEY).send().unwrap();
        (resp.status().as_u16(), resp.json().unwrap_or(Value::Null))
    };
    all_endpoints(&mut get, events, community, params)
}

/// Compares every cell of every metric endpoint, for the community scope and each group, by day,
/// week and month and in every mode, with the reference computation; returns the number of cells
/// compared. `get` answers a path (status and JSON body) with a read key for `community`.
pub fn all_endpoints(
    get: &mut dyn FnMut(&str) -> (u16, Value),
    events: &[Event],
    community: &str,
    params: &reference::Params,
) -> usize {
    let r = reference::compute(events, community, params);
    let as_of = schemas::event::format_ts(r.as_of_ms.unwrap());
    let mut scopes: Vec<String> = events
        .iter()
        .filter(|e| e.community_id == community)
        .map(|e| e.group_id.clone())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    scopes.sort();
    scopes.insert(0, String::new());
    let mut cells = 0;
    for scope in &scopes {
        let group_param = if scope.is_empty() { String::new() } else { format!("&group={scope}") };
        let (status, v) = get(&format!("/v1/communities/{community}/engagement?x=1{group_param}"));
        assert_eq!(status, 200, "{v}");
        let got: Vec<(String, Vec<u64>)> = v["days"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                let values = [
                    "dau",
                    "wau",
                    "mau",
                    "messages",
                    "reactions",
                    "checkins",
                    "joins",
                    "new_members",
                    "leaves",
                    "members",
                ]
                .iter()
                .map(|k| d[*k].as_u64().unwrap())
                .collect();
                (d["day"].as_str().unwrap().to_owned(), values)
            })
            .collect();
        let want: Vec<(String, Vec<u64>)> = r
            .engagement
            .iter()
            .filter(|((s, _), _)| s == scope)
            .map(|((_, d), v)| (d.to_string(), v.to_vec()))
            .collect();
        assert!(want.len() > 50);
        assert_eq!(got, want, "engagement scope={scope:?}");
        cells += want.len() * 10;
        for g in reference::GRANULARITIES {
            let (status, v) = get(&format!("/v1/communities/{community}/lifecycle?granularity={g}{group_param}"));
            assert_eq!(status, 200, "{v}");
            let got: Vec<(String, Vec<u64>)> = v["periods"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    let values = ["new", "returning", "resurrecting", "dormant"]
                        .iter()
                        .map(|k| p[*k].as_u64().unwrap())
                        .collect();
                    (p["period"].as_str().unwrap().to_owned(), values)
                })
                .collect();
            let want: Vec<(String, Vec<u64>)> = r
                .lifecycle
                .iter()
                .filter(|((s, gg, _), _)| s == scope && gg == g)
                .map(|((_, _, p), v)| (p.to_string(), v.to_vec()))
                .collect();
            assert_eq!(got, want, "lifecycle scope={scope:?} {g}");
            cells += want.len() * 4;
            let (status, v) = get(&format!("/v1/communities/{community}/churn?granularity={g}{group_param}"));
            assert_eq!(status, 200, "{v}");
            let got: Vec<Value> = v["periods"].as_array().unwrap().clone();
            let want: Vec<Value> = r
                .churn
                .iter()
                .filter(|((s, gg, _), _)| s == scope && gg == g)
                .map(|((_, _, p), v)| {
                    let rate = (v[0] > 0).then(|| v[1] as f64 / v[0] as f64);
                    json!({"period": p.to_string(), "members_start": v[0], "left": v[2], "removed": v[3],
                           "inactive": v[4], "churn_rate": rate})
                })
                .collect();
            assert_eq!(got, want, "churn scope={scope:?} {g}");
            cells += want.len() * 5;
        }
        for g in reference::GRANULARITIES {
            for mode in reference::MODES {
                let (status, v) =
                    get(&format!("/v1/communities/{community}/retention?granularity={g}&mode={mode}{group_param}"));
                assert_eq!(status, 200, "{v}");
                assert_eq!(v["as_of"], as_of);
                let got: Vec<(String, u64, Vec<u64>)> = v["cohorts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| {
                        let values = c["values"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
                        (c["cohort"].as_str().unwrap().to_owned(), c["size"].as_u64().unwrap(), values)
                    })
                    .collect();
                let want: Vec<(String, u64, Vec<u64>)> = r
                    .retention
                    .iter()
                    .filter(|((s, gg, m, _), _)| s == scope && gg == g && m == mode)
                    .map(|((_, _, _, c), values)| {
                        (c.to_string(), r.sizes[&(scope.clone(), g.to_string(), *c)], values.clone())
                    })
                    .collect();
                assert!(!want.is_empty());
                assert_eq!(got, want, "retention scope={scope:?} {g} {mode}");
                cells += want.iter().map(|w| w.2.len()).sum::<usize>();
            }
            let (status, v) = get(&format!("/v1/communities/{community}/activation?granularity={g}{group_param}"));
            assert_eq!(status, 200, "{v}");
            let got = v["cohorts"].as_array().unwrap();
            let want: Vec<_> = r.activation.iter().filter(|((s, gg, _), _)| s == scope && gg == g).collect();
            assert_eq!(got.len(), want.len(), "activation cohorts scope={scope:?} {g}");
            for (c, ((_, _, cohort), w)) in got.iter().zip(want) {
                let ctx = format!("activation scope={scope:?} {g} {cohort}");
                assert_eq!(c["cohort"], cohort.to_string(), "{ctx}");
                assert_eq!(c["size"], w.size, "{ctx}");
                assert_eq!(c["activated"], w.activated, "{ctx}");
                assert_eq!(c["median_hours_to_activate"].as_f64(), w.median_hours_to_activate, "{ctx}");
                assert_eq!(c["complete"], w.complete, "{ctx}");
                cells += 4;
            }
            let (status, v) = get(&format!("/v1/communities/{community}/conversion?granularity={g}{group_param}"));
            assert_eq!(status, 200, "{v}");
            let got = v["cohorts"].as_array().unwrap();
            let want: Vec<_> = r.conversion.iter().filter(|((s, gg, _), _)| s == scope && gg == g).collect();
            assert_eq!(got.len(), want.len(), "conversion cohorts scope={scope:?} {g}");
            for (c, ((_, _, cohort), w)) in got.iter().zip(want) {
                let got_row = (
                    c["cohort"].as_str().unwrap().to_owned(),
                    c["size"].as_u64().unwrap(),
                    c["converted"].as_u64().unwrap(),
                    c["value"].as_f64().unwrap(),
                    c["activated"].as_u64().unwrap(),
                    c["activated_then_converted"].as_u64().unwrap(),
                    c["complete"].as_bool().unwrap(),
                );
                let want_row = (
                    cohort.to_string(),
                    w.size,
                    w.converted,
                    w.value,
                    w.activated,
                    w.activated_then_converted,
                    w.complete,
                );
                assert_eq!(got_row, want_row, "conversion scope={scope:?} {g}");
                cells += 6;
            }
            let (status, v) = get(&format!("/v1/communities/{community}/referral?granularity={g}{group_param}"));
            assert_eq!(status, 200, "{v}");
            let got = v["cohorts"].as_array().unwrap();
            let want: Vec<_> = r.referral.iter().filter(|((s, gg, _), _)| s == scope && gg == g).collect();
            assert_eq!(got.len(), want.len(), "referral cohorts scope={scope:?} {g}");
            for (c, ((_, _, cohort), w)) in got.iter().zip(want) {
                let got_row = (
                    c["cohort"].as_str().unwrap().to_owned(),
                    c["size"].as_u64().unwrap(),
                    c["referred"].as_u64().unwrap(),
                    c["invited"].as_u64().unwrap(),
                    c["k_factor"].as_f64().unwrap(),
                );
                assert_eq!(
                    got_row,
                    (cohort.to_string(), w.size, w.referred, w.invited, w.k_factor),
                    "referral scope={scope:?} {g}"
                );
                cells += 4;
            }
        }
    }
    cells
}
