//! Where accepted events go. The trait lets the HTTP layer be tested against brokers that fail
//! on demand; `kafka::KafkaSink` is the real one.

use schemas::Event;
use std::future::Future;
use std::pin::Pin;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// The producer's own queue is full: the client should slow down (429).
    #[error("producer queue is full")]
    QueueFull,
    /// The broker did not acknowledge in time or refused (503).
    #[error("broker unavailable: {0}")]
    Unavailable(String),
}

pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'a>>;

pub trait EventSink: Send + Sync + 'static {
    /// Resolves once every event is durably stored, or fails if any one is not.
    fn send<'a>(&'a self, events: &'a [Event]) -> SendFuture<'a>;
    /// Records handed to the producer and not yet acknowledged.
    fn queue_depth(&self) -> i64;
    /// Whether the broker answered recently.
    fn healthy(&self) -> bool;
}
