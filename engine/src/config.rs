//! Per-community metric parameters (SPEC section 4 defaults). A change takes effect through a
//! replay: the engine applies the parameters it was started with to every event it sees.

use chrono_tz::Tz;
use schemas::EventType;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CommunityConfig {
    /// IANA time zone that defines the community's days, weeks and months.
    pub timezone: Tz,
    pub participation_types: Vec<EventType>,
    pub activation_types: Vec<EventType>,
    pub activation_window_days: u32,
    pub activation_min_events: u32,
    pub conversion_window_days: u32,
    pub inactivity_days: u32,
    pub referral_window_days: u32,
    pub wau_days: u32,
    pub mau_days: u32,
}

impl Default for CommunityConfig {
    fn default() -> Self {
        CommunityConfig {
            timezone: Tz::UTC,
            participation_types: vec![
                EventType::MessagePosted,
                EventType::ReactionAdded,
                EventType::Checkin,
                EventType::ActivityParticipated,
            ],
            activation_types: vec![EventType::MessagePosted],
            activation_window_days: 7,
            activation_min_events: 1,
            conversion_window_days: 30,
            inactivity_days: 30,
            referral_window_days: 30,
            wau_days: 7,
            mau_days: 28,
        }
    }
}

pub const DAY_MS: i64 = 86_400_000;

impl CommunityConfig {
    pub fn activation_window_ms(&self) -> i64 {
        self.activation_window_days as i64 * DAY_MS
    }

    pub fn conversion_window_ms(&self) -> i64 {
        self.conversion_window_days as i64 * DAY_MS
    }

    pub fn referral_window_ms(&self) -> i64 {
        self.referral_window_days as i64 * DAY_MS
    }

    pub fn is_participation(&self, t: EventType) -> bool {
        self.participation_types.contains(&t)
    }

    pub fn is_activation(&self, t: EventType) -> bool {
        self.activation_types.contains(&t)
    }

    /// Rules a configuration must meet, each error naming the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.activation_min_events == 0 {
            return Err("activation_min_events: must be at least 1".into());
        }
        if self.activation_types.is_empty() {
            return Err("activation_types: must name at least one event type".into());
        }
        for (name, v) in [
            ("activation_window_days", self.activation_window_days),
            ("conversion_window_days", self.conversion_window_days),
            ("inactivity_days", self.inactivity_days),
            ("referral_window_days", self.referral_window_days),
            ("wau_days", self.wau_days),
            ("mau_days", self.mau_days),
        ] {
            if v == 0 {
                return Err(format!("{name}: must be at least 1"));
            }
        }
        Ok(())
    }
}

/// The configuration of every community: a default and per-community overrides.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Configs {
    pub default: CommunityConfig,
    pub communities: HashMap<String, CommunityConfig>,
}

impl Configs {
    pub fn get(&self, community_id: &str) -> &CommunityConfig {
        self.communities.get(community_id).unwrap_or(&self.default)
    }

    pub fn validate(&self) -> Result<(), String> {
        self.default.validate().map_err(|e| format!("default.{e}"))?;
        for (c, cfg) in &self.communities {
            cfg.validate().map_err(|e| format!("communities.{c}.{e}"))?;
        }
        Ok(())
    }
}
