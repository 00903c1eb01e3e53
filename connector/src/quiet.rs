//! Repeated log lines, said at most once a second per kind, each with the number of
//! lines like it left unsaid since: a flood of refused requests must not write one line
//! per request (12 MB of log in 20 s was seen), and must not go unsaid either.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often one kind of line is written at most.
const EVERY: Duration = Duration::from_secs(1);
/// Kinds remembered at most (a run has a handful; the bound keeps a bug from growing it).
const KINDS: usize = 1024;

#[derive(Debug, Default)]
pub struct Repeats {
    seen: Mutex<HashMap<String, (Instant, u64)>>,
}

impl Repeats {
    /// Whether a line of `kind` is written `now`: `Some(n)` with the lines of that kind
    /// left unsaid since the last one written, or `None` to leave this one unsaid.
    pub fn admit(&self, kind: &str, now: Instant) -> Option<u64> {
        let mut seen = self.seen.lock().expect("lock poisoned");
        match seen.get_mut(kind) {
            Some((last, unsaid)) if now.saturating_duration_since(*last) < EVERY => {
                *unsaid += 1;
                None
            }
            Some((last, unsaid)) => {
                *last = now;
                Some(std::mem::take(unsaid))
            }
            None => {
                if seen.len() >= KINDS {
                    seen.clear();
                }
                seen.insert(kind.to_owned(), (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_is_said_once_a_second_with_what_was_left_unsaid() {
        let repeats = Repeats::default();
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        assert_eq!(repeats.admit("retry", at(0)), Some(0));
        assert_eq!(repeats.admit("retry", at(400)), None);
        assert_eq!(repeats.admit("other", at(500)), Some(0), "kinds apart");
        assert_eq!(repeats.admit("retry", at(999)), None);
        assert_eq!(repeats.admit("retry", at(1000)), Some(2));
        assert_eq!(repeats.admit("retry", at(2500)), Some(0));
    }
}
