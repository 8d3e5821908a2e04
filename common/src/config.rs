//! Configuration: a serde struct's defaults, overlaid by a TOML file, overlaid by environment
//! variables (`PREFIX_FIELD`, nested with `__`: `PROCESSOR_KAFKA__BROKERS=host:9092`).

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0}: not found")]
    MissingFile(String),
    #[error("configuration: {0}")]
    Invalid(String),
}

/// Loads `T` from its defaults, then `file` (if given), then the environment under `env_prefix`
/// (e.g. `INGEST_`). Unknown keys are errors (`T` is `deny_unknown_fields`).
pub fn load_config<T: DeserializeOwned + Serialize + Default>(
    file: Option<&Path>,
    env_prefix: &str,
) -> Result<T, ConfigError> {
    let mut fig = Figment::from(Serialized::defaults(T::default()));
    if let Some(path) = file {
        if !path.exists() {
            return Err(ConfigError::MissingFile(path.display().to_string()));
        }
        fig = fig.merge(Toml::file(path));
    }
    // `_CONFIG` names the file itself; it is not a field. The filter sees the key as written
    // (`CONFIG`), so the comparison ignores case.
    fig = fig.merge(Env::prefixed(env_prefix).split("__").filter(|k| !k.as_str().eq_ignore_ascii_case("config")));
    fig.extract().map_err(|e| ConfigError::Invalid(e.to_string()))
}

/// The config file named by `--config FILE` on the command line or by `<PREFIX>CONFIG`.
pub fn config_path(args: &[String], env_prefix: &str) -> Option<std::path::PathBuf> {
    let from_args = args.windows(2).find(|w| w[0] == "--config").map(|w| w[1].clone());
    from_args.or_else(|| std::env::var(format!("{env_prefix}CONFIG")).ok()).map(Into::into)
}
