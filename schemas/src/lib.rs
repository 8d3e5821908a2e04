//! The contract shared by every part of the pipeline: the event format and its validation
//! (SPEC section 2), the JSON Schema other producers validate against, and the ClickHouse DDL.

pub mod ddl;
pub mod event;
pub mod queries;
mod scan;
pub mod validate;
pub mod view;

pub use event::{Event, EventType, LeaveReason};
pub use validate::{parse_event, parse_event_value, Limits, ValidationError};
pub use view::{parse_event_view, EventView, ParsedEvent, PropsRef};
