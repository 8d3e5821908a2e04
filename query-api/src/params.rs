//! Query-string parameters, validated with errors that name the parameter and the rule.

use chrono::NaiveDate;
use common::ApiError;
use engine::{Granularity, Mode};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
pub struct RawParams {
    pub granularity: Option<String>,
    pub mode: Option<String>,
    pub group: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub format: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    pub community: String,
    /// `None` is the community scope.
    pub group: Option<String>,
    pub granularity: Granularity,
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
}

impl Selection {
    /// The stored scope key: a group id, or `""` for the community.
    pub fn scope_key(&self) -> &str {
        self.group.as_deref().unwrap_or("")
    }

    pub fn contains(&self, d: NaiveDate) -> bool {
        self.from.is_none_or(|f| d >= f) && self.to.is_none_or(|t| d <= t)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
}

fn date(name: &str, v: &Option<String>) -> Result<Option<NaiveDate>, ApiError> {
    match v.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d").map(Some).map_err(|_| {
            ApiError::bad_request("invalid_parameter", format!("{name}: must be a date YYYY-MM-DD, got \"{s}\""))
        }),
    }
}

impl RawParams {
    pub fn selection(&self, community: &str) -> Result<Selection, ApiError> {
        let granularity = match self.granularity.as_deref() {
            None | Some("") => Granularity::Week,
            Some(g) => Granularity::parse(g).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_parameter",
                    format!("granularity: must be one of day, week, month, got \"{g}\""),
                )
            })?,
        };
        let from = date("from", &self.from)?;
        let to = date("to", &self.to)?;
        if let (Some(f), Some(t)) = (from, to) {
            if f > t {
                return Err(ApiError::bad_request(
                    "invalid_parameter",
                    format!("from: must not be after to ({f} > {t})"),
                ));
            }
        }
        let group = match self.group.as_deref() {
            None | Some("") => None,
            Some(g) if g.len() > 128 => {
                return Err(ApiError::bad_request("invalid_parameter", "group: must be 1..128 bytes"));
            }
            Some(g) => Some(g.to_owned()),
        };
        Ok(Selection { community: community.to_owned(), group, granularity, from, to })
    }

    pub fn mode(&self) -> Result<Mode, ApiError> {
        match self.mode.as_deref() {
            None | Some("") => Ok(Mode::On),
            Some(m) => Mode::parse(m).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_parameter",
                    format!("mode: must be one of on, on_or_after, membership, got \"{m}\""),
                )
            }),
        }
    }

    /// `format=csv|json` wins over `Accept: text/csv`.
    pub fn format(&self, accept: Option<&str>) -> Result<Format, ApiError> {
        match self.format.as_deref() {
            Some("csv") => Ok(Format::Csv),
            Some("json") => Ok(Format::Json),
            Some(f) => {
                Err(ApiError::bad_request("invalid_parameter", format!("format: must be json or csv, got \"{f}\"")))
            }
            None if accept.is_some_and(|a| a.contains("text/csv")) => Ok(Format::Csv),
            None => Ok(Format::Json),
        }
    }
}
