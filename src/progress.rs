//! Progress lines for long work (synth, snapshot build, import) on standard error.
//!
//! Throttled so that a million-record run prints about once a second, not a million times. It
//! measures elapsed real time for people watching; it is not the node's clock and decides nothing.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::limits::PROGRESS_INTERVAL_MILLIS;

pub struct Progress {
    label: &'static str,
    total: u64,
    done: u64,
    started: Instant,
    last_print: Instant,
    quiet: bool,
}

impl Progress {
    /// `total` may be 0 when it is not known in advance; then only counts are printed.
    pub fn new(label: &'static str, total: u64, quiet: bool) -> Self {
        let now = Instant::now();
        Progress { label, total, done: 0, started: now, last_print: now, quiet }
    }

    pub fn add(&mut self, n: u64) {
        self.done += n;
        if self.last_print.elapsed() >= Duration::from_millis(PROGRESS_INTERVAL_MILLIS) {
            self.last_print = Instant::now();
            self.print("");
        }
    }

    /// Moves to an absolute position (for work reported as bytes read so far).
    pub fn set_position(&mut self, position: u64) {
        self.add(position.saturating_sub(self.done));
    }

    pub fn finish(&mut self) {
        self.print(" 完了");
    }

    fn print(&self, suffix: &str) {
        if self.quiet {
            return;
        }
        let secs = self.started.elapsed().as_secs_f64();
        let line = if self.total > 0 {
            let pct = self.done as f64 * 100.0 / self.total as f64;
            format!("{}: {}/{} ({pct:.0}%) {secs:.1}秒{suffix}", self.label, self.done, self.total)
        } else {
            format!("{}: {} {secs:.1}秒{suffix}", self.label, self.done)
        };
        // Progress is best effort: a closed stderr must not fail the work itself.
        let _ = writeln!(std::io::stderr(), "{line}");
    }
}
