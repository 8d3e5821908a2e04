//! The demo configuration parses with every documented field, and configuration mistakes name
//! the field.

use query_api::QueryConfig;
use std::path::Path;

#[test]
fn the_demo_configuration_loads_and_validates() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/demo/query-api.toml");
    let cfg: QueryConfig = common::load_config(Some(&path), "QUERY_TEST_UNUSED_").unwrap();
    cfg.validate().unwrap();
    assert_eq!((cfg.cache_max_age_secs, cfg.response_cache_ms, cfg.response_cache_entries), (5, 1000, 10_000));
    assert_eq!(cfg.read_keys.len(), 1);
    // The key is a secret: its Debug form does not show it.
    assert!(!format!("{cfg:?}").contains("demo-read-key"));
}

#[test]
fn an_unknown_field_is_refused_by_name() {
    let dir = std::env::temp_dir().join(format!("query-api-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(&path, "response_cache_secs = 3\n").unwrap();
    let err = common::load_config::<QueryConfig>(Some(&path), "QUERY_TEST_UNUSED_").unwrap_err().to_string();
    assert!(err.contains("response_cache_secs"), "{err}");
}
