//! How a service reaches ClickHouse. Any ClickHouse from 18.16 on; for a cluster, point `url` at
//! a load balancer or one replica (see docs/operations.md).

use crate::Secret;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClickHouseConfig {
    pub url: String,
    pub database: String,
    pub user: String,
    pub password: Secret,
    /// How insert and query bodies travel: `lz4` (the default, for a cluster across a network)
    /// or `none` (loopback, where compressing costs CPU at both ends and saves nothing).
    pub compression: BodyCompression,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyCompression {
    #[default]
    Lz4,
    None,
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        ClickHouseConfig {
            url: "http://127.0.0.1:8123".into(),
            database: "engagement".into(),
            user: "default".into(),
            password: Secret::new(""),
            compression: BodyCompression::Lz4,
        }
    }
}

impl ClickHouseConfig {
    pub fn client(&self) -> clickhouse::Client {
        clickhouse::Client::default()
            .with_url(&self.url)
            .with_user(&self.user)
            .with_password(self.password.expose())
            .with_database(&self.database)
            .with_compression(match self.compression {
                BodyCompression::Lz4 => clickhouse::Compression::Lz4,
                BodyCompression::None => clickhouse::Compression::None,
            })
            // ClickHouse 18.16 has no RowBinaryWithNamesAndTypes, which validation needs.
            .with_validation(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_defaults_to_lz4_and_accepts_none_only_by_name() {
        assert_eq!(ClickHouseConfig::default().compression, BodyCompression::Lz4);
        let cfg: ClickHouseConfig = serde_json::from_str(r#"{"compression": "none"}"#).unwrap();
        assert_eq!(cfg.compression, BodyCompression::None);
        let err = serde_json::from_str::<ClickHouseConfig>(r#"{"compression": "zstd"}"#).unwrap_err().to_string();
        assert!(err.contains("lz4") && err.contains("none"), "{err}");
    }
}
