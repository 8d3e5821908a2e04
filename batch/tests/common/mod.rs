//! The reference computation's answer as `Tables`, keyed like the batch side.

use batch::tables::{key, Cell, Tables};
use engine::CommunityConfig;

pub fn reference_tables(events: &[schemas::Event], community: &str, cfg: &CommunityConfig) -> Tables {
    let p = reference::Params {
        tz: cfg.timezone,
        participation: cfg.participation_types.clone(),
        activation_types: cfg.activation_types.clone(),
        activation_window_days: cfg.activation_window_days as i64,
        activation_min: cfg.activation_min_events as usize,
        conversion_window_days: cfg.conversion_window_days as i64,
        referral_window_days: cfg.referral_window_days as i64,
        wau_days: cfg.wau_days as i64,
        mau_days: cfg.mau_days as i64,
        inactivity_days: cfg.inactivity_days as i64,
    };
    let r = reference::compute(events, community, &p);
    let mut t = Tables::default();
    for ((s, g, c), n) in &r.sizes {
        t.put(key::size(s, g, *c), Cell::Count(*n));
    }
    for ((s, g, mode, c), values) in &r.retention {
        for (k, v) in values.iter().enumerate() {
            t.put(key::retention(s, g, mode, *c, k), Cell::Count(*v));
        }
    }
    for ((s, g, c), a) in &r.activation {
        t.put(key::cohort("activation", s, g, *c, "size"), Cell::Count(a.size));
        t.put(key::cohort("activation", s, g, *c, "activated"), Cell::Count(a.activated));
        t.put(key::cohort("activation", s, g, *c, "median_hours_to_activate"), Cell::Real(a.median_hours_to_activate));
        t.put(key::cohort("activation", s, g, *c, "complete"), Cell::Flag(a.complete));
    }
    for ((s, g, c), a) in &r.conversion {
        t.put(key::cohort("conversion", s, g, *c, "size"), Cell::Count(a.size));
        t.put(key::cohort("conversion", s, g, *c, "converted"), Cell::Count(a.converted));
        t.put(key::cohort("conversion", s, g, *c, "value"), Cell::Real(Some(a.value)));
        t.put(key::cohort("conversion", s, g, *c, "activated"), Cell::Count(a.activated));
        t.put(key::cohort("conversion", s, g, *c, "activated_then_converted"), Cell::Count(a.activated_then_converted));
        t.put(key::cohort("conversion", s, g, *c, "complete"), Cell::Flag(a.complete));
    }
    for ((s, g, c), a) in &r.referral {
        t.put(key::cohort("referral", s, g, *c, "size"), Cell::Count(a.size));
        t.put(key::cohort("referral", s, g, *c, "referred"), Cell::Count(a.referred));
        t.put(key::cohort("referral", s, g, *c, "invited"), Cell::Count(a.invited));
        t.put(key::cohort("referral", s, g, *c, "k_factor"), Cell::Real(Some(a.k_factor)));
    }
    for ((s, d), v) in &r.engagement {
        for (c, n) in engine::activity::ENGAGEMENT.iter().zip(v) {
            t.put(key::period("engagement", s, "day", *d, c), Cell::Count(*n));
        }
    }
    for ((s, g, p), v) in &r.lifecycle {
        for (c, n) in engine::activity::LIFECYCLE.iter().zip(v) {
            t.put(key::period("lifecycle", s, g, *p, c), Cell::Count(*n));
        }
    }
    for ((s, g, p), v) in &r.churn {
        for (c, n) in ["members_start", "churned", "left", "removed", "inactive"].iter().zip(v) {
            t.put(key::period("churn", s, g, *p, c), Cell::Count(*n));
        }
    }
    t
}
