//! A tiny domain for the store's tests and benchmarks: per-key counters and a running total.

use std::collections::HashMap;

use eventlog::domain::Domain;
use eventlog::IndexEntry;
use serde::{Deserialize, Serialize};

/// Per-key counters and a running total.
pub(crate) struct Counter;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Counts {
    pub(crate) by_key: HashMap<String, u64>,
    pub(crate) total: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum CountEvent {
    Added { key: String, n: u64 },
}

impl Domain for Counter {
    type State = Counts;
    type Event = CountEvent;
    type Command = (String, u64);
    type Rejection = ();

    fn decide(_: &Counts, (key, n): (String, u64)) -> Result<Vec<CountEvent>, ()> {
        Ok(vec![CountEvent::Added { key, n }])
    }

    fn evolve(state: &mut Counts, event: &CountEvent) {
        let CountEvent::Added { key, n } = event;
        *state.by_key.entry(key.clone()).or_default() += n;
        state.total += n;
    }

    fn event_type(_: &CountEvent) -> &'static str {
        "Added"
    }

    fn stream_of(event: &CountEvent) -> String {
        let CountEvent::Added { key, .. } = event;
        format!("counter-{key}")
    }

    /// `counter.first`: key -> the amount it started with, written when a key is first added.
    fn index_entries(state: &Counts, events: &[CountEvent]) -> Vec<IndexEntry> {
        events
            .iter()
            .filter(|CountEvent::Added { key, .. }| !state.by_key.contains_key(key))
            .map(|CountEvent::Added { key, n }| {
                IndexEntry::new(FIRST_INDEX, key.as_bytes().to_vec(), n.to_be_bytes().into())
            })
            .collect()
    }
}

/// The index [`Counter`] keeps: key -> the amount it started with.
pub(crate) const FIRST_INDEX: &str = "counter.first";
