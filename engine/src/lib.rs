//! The metric engine: a pure, synchronous core. Events go in (`Engine::apply`), absolute values of
//! every cell that changed come out (`Engine::flush`). Time enters only as data: event timestamps
//! and the community's `as_of`. No I/O, no clock, so a replay of the same events gives the same
//! tables, and tests can drive it directly.

pub mod activity;
pub mod config;
pub mod contribution;
pub mod engine;
mod event_ids;
pub mod history;
pub mod output;
mod pending;
pub mod period;
mod series;
pub mod snapshot;
pub mod table;
mod thin_list;
mod thin_str;

pub use config::{CommunityConfig, Configs};
pub use engine::Engine;
pub use output::{
    ChurnRow, CohortRow, CommunityStat, EngagementRow, LifecycleRow, MemberFact, Mode, Output, RetentionCell,
};
pub use period::Granularity;
pub use snapshot::SnapshotError;
