//! Partition ownership through the Kafka consumer group: several processor instances share the
//! topic's partitions, and a partition moves when an instance joins, leaves or dies.
//!
//! librdkafka calls the rebalance callbacks from inside `poll` (so from the pipeline's own task,
//! while it waits for records): they only record what changed, and pause newly assigned
//! partitions so that nothing is read from them before their state is loaded and their position
//! set. The pipeline applies the changes before its next write.

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::ClientContext;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Assigned(Vec<i32>),
    Revoked(Vec<i32>),
}

#[derive(Clone)]
pub struct GroupContext {
    topic: String,
    changes: Arc<Mutex<Vec<Change>>>,
    /// Whether an assignment (perhaps of no partitions) has come: the group's join is done.
    joined: Arc<AtomicBool>,
}

impl GroupContext {
    pub fn new(topic: &str) -> Self {
        GroupContext { topic: topic.to_owned(), changes: Arc::default(), joined: Arc::default() }
    }

    /// Whether the consumer has been given its partitions (by the group, or by configuration).
    pub fn joined(&self) -> bool {
        self.joined.load(Ordering::Acquire)
    }

    /// The changes since the last call, oldest first.
    pub fn take(&self) -> Vec<Change> {
        std::mem::take(&mut *self.changes.lock().expect("never poisoned"))
    }

    /// Puts a change back in front of the newer ones (a partition that could not be taken up
    /// yet is tried again on the next round, after the consumer was polled).
    pub fn retry_first(&self, change: Change) {
        self.changes.lock().expect("never poisoned").insert(0, change);
    }

    /// Partitions assigned without the group (`kafka.partitions`): taken up like the group's.
    pub fn assigned_statically(&self, partitions: Vec<i32>) {
        self.joined.store(true, Ordering::Release);
        self.push(Change::Assigned(partitions));
    }

    fn partitions(&self, tpl: &rdkafka::TopicPartitionList) -> Vec<i32> {
        tpl.elements().iter().filter(|e| e.topic() == self.topic).map(|e| e.partition()).collect()
    }

    fn push(&self, change: Change) {
        self.changes.lock().expect("never poisoned").push(change);
    }
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                tracing::info!(partitions = ?self.partitions(tpl), "partitions revoked");
                self.push(Change::Revoked(self.partitions(tpl)));
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
            Rebalance::Assign(_) => {}
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            if let Err(e) = consumer.pause(tpl) {
                tracing::warn!(error = %e, "pausing newly assigned partitions");
            }
            tracing::info!(partitions = ?self.partitions(tpl), "partitions assigned");
            self.push(Change::Assigned(self.partitions(tpl)));
            self.joined.store(true, Ordering::Release);
        }
    }
}
