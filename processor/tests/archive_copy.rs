//! The replay's archive copy (`Store::copy_archive`) against a stand-in for ClickHouse: one
//! statement per distinct (time zone, participation types), the communities configured unlike
//! the default named in theirs and left out of the default's; each partition's offset range.
//! What ClickHouse makes of the statements is checked end to end (`tests/tests/replay_archive.rs`).

mod support;

use engine::{CommunityConfig, Configs};
use processor::backoff::Backoff;
use schemas::EventType;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{store_against, Recorder};

fn statements(rec: &Recorder) -> Vec<String> {
    let bodies = rec.bodies.lock().unwrap();
    let mut out: Vec<String> = bodies.iter().map(|(_, b)| String::from_utf8_lossy(b).into_owned()).collect();
    out.sort();
    out
}

/// Retries without waiting long: these tests are about what is sent.
fn quick() -> Backoff {
    Backoff::new(1, 1)
}

#[tokio::test]
async fn one_statement_per_configuration_with_the_communities_that_have_it() {
    let rec = Arc::new(Recorder::default());
    let store = store_against(rec.clone()).await;
    let shanghai = CommunityConfig { timezone: "Asia/Shanghai".parse().unwrap(), ..CommunityConfig::default() };
    let fewer = CommunityConfig { participation_types: vec![EventType::Checkin], ..CommunityConfig::default() };
    let configs = Configs {
        default: CommunityConfig::default(),
        communities: HashMap::from([
            ("sh-1".to_string(), shanghai.clone()),
            ("sh-2".to_string(), shanghai),
            ("checkins".to_string(), fewer),
            // Configured, but as the default is: copied with the default's statement.
            ("same".to_string(), CommunityConfig::default()),
        ]),
    };
    // A partition whose range is empty is not copied. Events before 2025 are not counted
    // (`counts_from`): not copied either.
    store
        .copy_archive("engagement", &configs, &[(0, 0, 100), (1, 40, 70), (2, 9, 9)], 1_735_689_600_000, quick())
        .await
        .unwrap();
    let sql = statements(&rec);
    assert_eq!(sql.len(), 3, "{sql:#?}");
    for s in &sql {
        assert!(s.starts_with("INSERT INTO events_raw ("), "{s}");
        assert!(s.contains("FROM engagement.events_raw WHERE"), "{s}");
        assert!(s.contains("(kafka_partition = 0 AND kafka_offset >= 0 AND kafka_offset < 100)"), "{s}");
        assert!(s.contains("(kafka_partition = 1 AND kafka_offset >= 40 AND kafka_offset < 70)"), "{s}");
        assert!(!s.contains("kafka_partition = 2"), "{s}");
        assert!(s.contains("AND ts_ms >= 1735689600000 AND ts_ms < 4102444800000"), "{s}");
    }
    let with = |needle: &str| sql.iter().filter(|s| s.contains(needle)).cloned().collect::<Vec<_>>();
    let shanghai = with("'Asia/Shanghai'");
    assert_eq!(shanghai.len(), 1, "{sql:#?}");
    assert!(shanghai[0].contains("community_id IN ('sh-1', 'sh-2')"), "{}", shanghai[0]);
    assert!(shanghai[0].contains("type IN ('activity_participated', 'checkin', 'message_posted', 'reaction_added')"));
    let checkins = with("type IN ('checkin')");
    assert_eq!(checkins.len(), 1, "{sql:#?}");
    assert!(checkins[0].contains("community_id IN ('checkins')") && checkins[0].contains("'UTC'"), "{}", checkins[0]);
    let default = with("NOT IN");
    assert_eq!(default.len(), 1, "{sql:#?}");
    assert!(default[0].contains("'UTC'") && !default[0].contains("'same'"), "{}", default[0]);
    assert!(default[0].contains("community_id NOT IN ('checkins', 'sh-1', 'sh-2')"), "{}", default[0]);
}

#[tokio::test]
async fn nothing_to_copy_sends_nothing() {
    let rec = Arc::new(Recorder::default());
    let store = store_against(rec.clone()).await;
    store.copy_archive("engagement", &Configs::default(), &[(0, 5, 5), (1, 0, 0)], i64::MIN, quick()).await.unwrap();
    assert!(statements(&rec).is_empty());
}

#[tokio::test]
async fn rows_are_never_copied_below_the_copys_own_bound() {
    let rec = Arc::new(Recorder::default());
    let store = store_against(rec.clone()).await;
    // A `counts_from` before 1970-01-03 (or none) leaves the bound where the copy and the
    // processor's dates agree.
    store.copy_archive("engagement", &Configs::default(), &[(0, 0, 10)], 0, quick()).await.unwrap();
    let sql = statements(&rec);
    assert_eq!(sql.len(), 1, "{sql:#?}");
    assert!(sql[0].contains(&format!("AND ts_ms >= {} AND", schemas::queries::COPY_TS_MIN_MS)), "{}", sql[0]);
}

#[tokio::test]
async fn a_statement_clickhouse_fails_is_sent_again_after_a_growing_wait_and_the_copy_goes_on() {
    let rec = Arc::new(Recorder::default());
    // The first statement fails three times (an outage), the second goes through at once.
    rec.refuse_next.store(3, Ordering::SeqCst);
    let store = store_against(rec.clone()).await;
    let shanghai = CommunityConfig { timezone: "Asia/Shanghai".parse().unwrap(), ..CommunityConfig::default() };
    let configs =
        Configs { default: CommunityConfig::default(), communities: HashMap::from([("sh".to_string(), shanghai)]) };
    let started = Instant::now();
    store.copy_archive("engagement", &configs, &[(0, 0, 100)], 0, Backoff::new(20, 40)).await.unwrap();
    // Waits of 20, 40 and 40 ms between the four attempts at the first statement.
    assert!(started.elapsed() >= Duration::from_millis(100), "{:?}", started.elapsed());
    let bodies: Vec<String> =
        rec.bodies.lock().unwrap().iter().map(|(_, b)| String::from_utf8_lossy(b).into_owned()).collect();
    assert_eq!(bodies.len(), 5, "{bodies:#?}");
    assert!(bodies[..4].iter().all(|b| b == &bodies[0]), "the failed statement, again: {bodies:#?}");
    assert_ne!(bodies[4], bodies[0], "then the next statement, once: {bodies:#?}");
    assert_eq!(rec.refuse_next.load(Ordering::SeqCst), 0);
}
