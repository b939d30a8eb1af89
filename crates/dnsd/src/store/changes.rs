//! Which keys each publication changed, kept for a while so every answer cache can catch up from the
//! snapshot it last saw, however many publications it missed.

use std::collections::VecDeque;
use std::sync::Arc;

/// Keys remembered in all: beyond this the oldest batches go, and a cache that far behind starts over.
const MAX_KEYS: usize = 100_000;

/// What changed between two snapshots.
#[derive(Debug, PartialEq, Eq)]
pub enum Changes {
    Keys(Vec<Arc<str>>),
    /// Anything may have: a full reload, or more than the log remembers.
    All,
}

#[derive(Debug, Default)]
pub(super) struct ChangeLog {
    /// (generation, keys changed by it; None for a full reload), oldest first.
    batches: VecDeque<(u64, Option<Vec<Arc<str>>>)>,
    keys: usize,
}

impl ChangeLog {
    pub(super) fn push(&mut self, generation: u64, keys: Option<Vec<Arc<str>>>) {
        if keys.is_none() {
            self.batches.clear();
            self.keys = 0;
        }
        self.keys += keys.as_ref().map_or(0, Vec::len);
        self.batches.push_back((generation, keys));
        while self.keys > MAX_KEYS && self.batches.len() > 1 {
            if let Some((_, Some(dropped))) = self.batches.pop_front() {
                self.keys -= dropped.len();
            }
        }
    }

    /// Every key changed by the publications after `generation`.
    pub(super) fn since(&self, generation: u64) -> Changes {
        // Generations rise along the log: find the first newer one by bisection, not by a walk from the oldest.
        let first_newer = self.batches.partition_point(|(g, _)| *g <= generation);
        let newer = self.batches.range(first_newer..);
        match self.batches.front() {
            // The log starts after the next publication: what came between is forgotten.
            Some((oldest, _)) if *oldest > generation + 1 => Changes::All,
            None if generation > 0 => Changes::All,
            _ => {
                let mut keys = Vec::new();
                for (_, batch) in newer {
                    match batch {
                        Some(batch) => keys.extend(batch.iter().cloned()),
                        None => return Changes::All,
                    }
                }
                Changes::Keys(keys)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(names: &[&str]) -> Option<Vec<Arc<str>>> {
        Some(names.iter().map(|n| Arc::from(*n)).collect())
    }

    #[test]
    fn catches_up_over_missed_publications() {
        let mut log = ChangeLog::default();
        log.push(1, None);
        log.push(2, keys(&["/a"]));
        log.push(3, keys(&["/b", "/c"]));
        assert_eq!(log.since(1), Changes::Keys(vec!["/a".into(), "/b".into(), "/c".into()]));
        assert_eq!(log.since(2), Changes::Keys(vec!["/b".into(), "/c".into()]));
        assert_eq!(log.since(3), Changes::Keys(vec![]));
        assert_eq!(log.since(0), Changes::All, "a full reload in between");
    }

    #[test]
    fn forgets_old_batches_and_says_so() {
        let mut log = ChangeLog::default();
        let many: Vec<Arc<str>> = (0..MAX_KEYS).map(|i| Arc::from(format!("/k{i}"))).collect();
        log.push(1, keys(&["/a"]));
        log.push(2, Some(many));
        log.push(3, keys(&["/z"]));
        assert_eq!(log.since(0), Changes::All);
        assert_eq!(log.since(1), Changes::All, "batch 2 was dropped to stay bounded");
        assert_eq!(log.since(2), Changes::Keys(vec!["/z".into()]));
    }
}
