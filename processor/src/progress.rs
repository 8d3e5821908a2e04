//! Replay progress: records read out of the total, rate and time left. On a terminal it redraws
//! one line on stderr; otherwise (a job's log) it logs a line every 5 seconds.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub struct Progress {
    total: i64,
    /// Set once the partitions are taken up: the wait for the consumer group is not reading time.
    started: Option<Instant>,
    last_report: Option<Instant>,
    terminal: bool,
}

impl Progress {
    pub fn new(total: i64) -> Self {
        Progress { total, started: None, last_report: None, terminal: std::io::stderr().is_terminal() }
    }

    fn line(&self, done: i64) -> String {
        let secs = self.started.map(|s| s.elapsed().as_secs_f64()).unwrap_or(0.0).max(1e-3);
        let rate = done as f64 / secs;
        let left = (self.total - done).max(0) as f64;
        let eta = if rate > 0.0 { format!("{:.0} s", left / rate) } else { "unknown".into() };
        let pct = if self.total > 0 { 100.0 * done as f64 / self.total as f64 } else { 100.0 };
        format!("replay: {done} of {} records ({pct:.1}%), {rate:.0} records/s, ETA {eta}", self.total)
    }

    /// Starts the clock (once): called when the partitions have been taken up.
    pub fn start(&mut self) {
        self.started.get_or_insert_with(Instant::now);
    }

    pub fn report(&mut self, done: i64) {
        let every = if self.terminal { Duration::from_millis(250) } else { Duration::from_secs(5) };
        if self.last_report.is_some_and(|t| t.elapsed() < every) {
            return;
        }
        self.last_report = Some(Instant::now());
        if self.terminal {
            let mut err = std::io::stderr();
            let _ = write!(err, "\r{}\x1b[K", self.line(done));
            let _ = err.flush();
        } else {
            tracing::info!(done, total = self.total, "{}", self.line(done));
        }
    }

    pub fn finish(&mut self, done: i64) {
        if self.terminal {
            eprintln!("\r{}\x1b[K", self.line(done));
        }
        tracing::info!(
            done,
            total = self.total,
            elapsed_s = self.started.map(|s| s.elapsed().as_secs_f64()).unwrap_or(0.0),
            "replay caught up with the topic's end as of its start"
        );
    }
}
