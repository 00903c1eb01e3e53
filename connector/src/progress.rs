//! Progress of a long run: a line rewritten in place on a terminal, plain log lines
//! otherwise, at most every two seconds.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Progress {
    started: Instant,
    last: Mutex<Instant>,
    terminal: bool,
    pub items: AtomicU64,
    pub deliveries: AtomicU64,
    pub skips: AtomicU64,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new(std::io::stderr().is_terminal())
    }
}

impl Progress {
    pub fn new(terminal: bool) -> Self {
        let now = Instant::now();
        Self {
            started: now,
            last: Mutex::new(now),
            terminal,
            items: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
            skips: AtomicU64::new(0),
        }
    }

    fn line(&self) -> String {
        let items = self.items.load(Ordering::Relaxed);
        let rate = items as f64 / self.started.elapsed().as_secs_f64().max(0.001);
        format!(
            "items {items}, imported {}, skipped {}, {rate:.0} items/s",
            self.deliveries.load(Ordering::Relaxed),
            self.skips.load(Ordering::Relaxed)
        )
    }

    /// Shows progress if two seconds have passed since it was last shown.
    pub fn tick(&self) {
        let mut last = self.last.lock().expect("progress lock poisoned");
        if last.elapsed() < Duration::from_secs(2) {
            return;
        }
        *last = Instant::now();
        if self.terminal {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r{}\x1b[K", self.line());
            let _ = err.flush();
        } else {
            tracing::info!("progress: {}", self.line());
        }
    }

    pub fn finish(&self) {
        if self.terminal {
            let _ = writeln!(std::io::stderr(), "\r{}\x1b[K", self.line());
        }
    }
}
