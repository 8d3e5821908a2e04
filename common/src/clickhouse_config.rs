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
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        ClickHouseConfig {
            url: "http://127.0.0.1:8123".into(),
            database: "engagement".into(),
            user: "default".into(),
            password: Secret::new(""),
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
            // ClickHouse 18.16 has no RowBinaryWithNamesAndTypes, which validation needs.
            .with_validation(false)
    }
}
