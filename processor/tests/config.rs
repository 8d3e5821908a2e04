//! The demo configuration parses with every section (checkpoints included), a generation's
//! configuration gets its own database, consumer group and checkpoint directory, and mistakes
//! name the field.

use processor::ProcessorConfig;
use std::path::{Path, PathBuf};

#[test]
fn the_demo_configuration_loads_and_validates() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/demo/processor.toml");
    let cfg: ProcessorConfig = common::load_config(Some(&path), "PROCESSOR_TEST_UNUSED_").unwrap();
    cfg.validate().unwrap();
    assert!(cfg.checkpoint.enabled);
    assert_eq!((cfg.checkpoint.dir.clone(), cfg.checkpoint.interval_secs), (PathBuf::from("checkpoints"), 30));
    assert_eq!((cfg.kafka.session_timeout_ms, cfg.kafka.max_poll_interval_ms), (10_000, 300_000));
    assert_eq!(cfg.generation, 0);
    assert_eq!(cfg.metrics.get("demo").timezone.name(), "Asia/Shanghai");
}

#[test]
fn a_generation_has_its_own_database_group_and_checkpoints() {
    let base = ProcessorConfig::default();
    let same = base.clone().for_generation();
    assert_eq!(
        (same.clickhouse.database.as_str(), same.kafka.group_id.as_str(), same.checkpoint.dir.clone()),
        ("engagement", "engagement-processor", PathBuf::from("checkpoints"))
    );
    let g2 = ProcessorConfig { generation: 2, ..base }.for_generation();
    assert_eq!(
        (g2.clickhouse.database.as_str(), g2.kafka.group_id.as_str(), g2.checkpoint.dir.clone()),
        ("engagement_g2", "engagement-processor-g2", PathBuf::from("checkpoints/g2"))
    );
    g2.validate().unwrap();
}

#[test]
fn an_unknown_field_is_refused_by_name() {
    let dir = std::env::temp_dir().join(format!("processor-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(&path, "[checkpoint]\ninterval_seconds = 3\n").unwrap();
    let err = common::load_config::<ProcessorConfig>(Some(&path), "PROCESSOR_TEST_UNUSED_").unwrap_err().to_string();
    assert!(err.contains("interval_seconds"), "{err}");
}

#[test]
fn empty_rounds_and_slices_are_refused_by_name() {
    let mut cfg = ProcessorConfig::default();
    assert_eq!(cfg.flush.apply_slice_records, 100_000);
    assert_eq!(cfg.flush.archive_piece_bytes, 32 << 20);
    cfg.flush.archive_piece_bytes = 0;
    assert_eq!(cfg.validate().unwrap_err(), "flush.archive_piece_bytes: must be at least 1");
    cfg.flush.apply_slice_records = 0;
    assert_eq!(cfg.validate().unwrap_err(), "flush.apply_slice_records: must be at least 1");
    cfg.flush.replay_max_records = 0;
    assert_eq!(cfg.validate().unwrap_err(), "flush.replay_max_records: must be at least 1");
    cfg.flush.max_records = 0;
    assert_eq!(cfg.validate().unwrap_err(), "flush.max_records: must be at least 1");
}

#[test]
fn a_replay_takes_its_own_round() {
    let mut cfg = ProcessorConfig::default();
    cfg.flush.max_records = 500;
    cfg.flush.replay_max_records = 7_000;
    assert_eq!(cfg.clone().for_replay().flush.max_records, 7_000);
    assert_eq!(cfg.for_generation().flush.max_records, 500);
}

/// `PROCESSOR_CONFIG` names the file (as README and operations.md say); it is not taken for a
/// field, and a file's `[kafka.properties]` keep their dotted librdkafka names.
#[test]
fn the_config_variable_names_the_file_and_the_environment_still_overrides_it() {
    let prefix = "PROCESSOR_CFGTEST_";
    let dir = std::env::temp_dir().join(format!("processor-config-env-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("processor.toml");
    std::fs::write(
        &path,
        "[flush]\nmax_records = 5\ninterval_ms = 700\n[kafka.properties]\n\"max.partition.fetch.bytes\" = \"8388608\"\n",
    )
    .unwrap();
    std::env::set_var(format!("{prefix}CONFIG"), &path);
    std::env::set_var(format!("{prefix}FLUSH__MAX_RECORDS"), "7");
    let found = common::config::config_path(&[], prefix);
    let loaded = common::load_config::<ProcessorConfig>(found.as_deref(), prefix);
    std::env::remove_var(format!("{prefix}CONFIG"));
    std::env::remove_var(format!("{prefix}FLUSH__MAX_RECORDS"));
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(found.as_deref(), Some(path.as_path()));
    let cfg = loaded.unwrap();
    assert_eq!((cfg.flush.max_records, cfg.flush.interval_ms), (7, 700));
    assert_eq!(cfg.kafka.properties["max.partition.fetch.bytes"].expose(), "8388608");
}

#[test]
fn counts_from_is_an_rfc_3339_time_named_when_it_is_not() {
    let mut cfg = ProcessorConfig::default();
    assert_eq!(cfg.counts_from_ms(), None);
    cfg.counts_from = Some("2025-01-01T08:00:00+08:00".into());
    cfg.validate().unwrap();
    assert_eq!(cfg.counts_from_ms(), Some(1_735_689_600_000));
    cfg.counts_from = Some("2025-01-01".into());
    let err = cfg.validate().unwrap_err();
    assert!(err.starts_with("counts_from: must be an RFC 3339 time") && err.contains("\"2025-01-01\""), "{err}");
}

#[test]
fn static_partitions_are_all_or_distinct_numbers() {
    use processor::config::StaticPartitions;
    let with = |p: Option<&str>| {
        let mut cfg = ProcessorConfig::default();
        cfg.kafka.partitions = p.map(str::to_owned);
        cfg
    };
    assert_eq!(with(None).kafka.static_partitions(), Ok(None));
    assert_eq!(with(Some("all")).kafka.static_partitions(), Ok(Some(StaticPartitions::All)));
    assert_eq!(with(Some("5, 0,2")).kafka.static_partitions(), Ok(Some(StaticPartitions::Listed(vec![0, 2, 5]))));
    for bad in ["", "0,,1", "1,1", "-1", "x", "0;1", "All"] {
        let err = with(Some(bad)).validate().unwrap_err();
        assert!(err.starts_with("kafka.partitions: must be \"all\" or distinct partition numbers"), "{bad:?}: {err}");
    }
    assert_eq!(StaticPartitions::All.of(&[0, 1, 2]), Ok(vec![0, 1, 2]));
    assert_eq!(StaticPartitions::Listed(vec![2]).of(&[0, 1, 2]), Ok(vec![2]));
    assert_eq!(
        StaticPartitions::Listed(vec![1, 4]).of(&[0, 1, 2]),
        Err("kafka.partitions: partition 4 is not one of the topic's ([0, 1, 2])".to_string())
    );
}
