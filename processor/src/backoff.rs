//! Delays between attempts at something ClickHouse refused: the writes, and a replay's archive
//! copy. They double from the first to the longest (`flush.backoff_ms`, `flush.max_backoff_ms`),
//! so that a short outage is caught up on quickly and a long one is not hammered.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    next: Duration,
    longest: Duration,
}

impl Backoff {
    pub fn new(first_ms: u64, longest_ms: u64) -> Self {
        let longest = Duration::from_millis(longest_ms.max(first_ms));
        Backoff { next: Duration::from_millis(first_ms), longest }
    }

    /// The wait before the next attempt; the one after it is twice as long, up to the longest.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.longest);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_longest() {
        let mut b = Backoff::new(200, 1000);
        let waits: Vec<u64> = (0..5).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(waits, [200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn a_longest_below_the_first_is_the_first() {
        let mut b = Backoff::new(500, 100);
        assert_eq!(b.next_delay(), Duration::from_millis(500));
        assert_eq!(b.next_delay(), Duration::from_millis(500));
    }
}
