//! Per-entity entries that stay in memory only while they are open and recent.
//!
//! A service that runs for years sees millions of orders, but its decisions need only the few
//! still in flight. [`Resident`] holds those: an entry is *opened* by an event, leaves when an
//! event *settles* it, and leaves anyway once `window` newer entries were opened after it (the
//! window is counted in openings, i.e. measured by the events themselves, so the fold of the log
//! always retires the same entries at the same point, whatever the clock or the restarts).
//!
//! An entry that left is still in the log. [`crate::live::Live`] brings it back for one command
//! ([`Resident::hydrate`]), and retires it again afterwards ([`Resident::retire`]): a hydrated
//! entry is marked, so retiring one never drops an entry the window holds, and the window never
//! drops a hydrated one. Between commands the state therefore equals the fold of the log.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

use serde::{Deserialize, Serialize};

/// Opening tick of an entry brought back from the log for one command (never a real tick).
const HYDRATED: u64 = 0;

/// One entry and when it was opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Slot<V> {
    /// The tick of its opening, or [`HYDRATED`].
    opened: u64,
    value: V,
}

/// Entries by key, kept while open and among the last `window` opened (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(
    serialize = "K: Serialize + Eq + Hash, V: Serialize",
    deserialize = "K: Deserialize<'de> + Eq + Hash, V: Deserialize<'de>"
))]
pub struct Resident<K: Eq + Hash, V> {
    entries: HashMap<K, Slot<V>>,
    /// Openings in tick order. An entry settled early leaves a stale item here; it is dropped
    /// when it ages out (the tick no longer matches), so this never holds more than `window`.
    opened: VecDeque<(u64, K)>,
    /// Openings so far.
    ticks: u64,
}

impl<K: Eq + Hash, V> Default for Resident<K, V> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
            opened: VecDeque::new(),
            ticks: 0,
        }
    }
}

impl<K: Eq + Hash + Clone, V> Resident<K, V> {
    /// The entry of a key, resident or hydrated.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.entries.get(key).map(|slot| &slot.value)
    }

    /// The entry of a key, to change it in place.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.entries.get_mut(key).map(|slot| &mut slot.value)
    }

    /// Whether the key has an entry in memory.
    pub fn contains_key(&self, key: &K) -> bool {
        self.entries.contains_key(key)
    }

    /// Entries in memory.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entry is in memory.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every entry in memory, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, slot)| (k, &slot.value))
    }

    /// Every entry in memory, in no particular order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.values().map(|slot| &slot.value)
    }

    /// Openings so far: the clock the window is measured by.
    pub fn ticks(&self) -> u64 {
        self.ticks
    }

    /// Opens an entry (replacing one hydrated or held for the key) and retires every entry opened
    /// `window` openings ago or earlier. Returns the entry it replaced.
    pub fn open(&mut self, key: K, value: V, window: u64) -> Option<V> {
        self.ticks += 1;
        let opened = self.ticks;
        self.opened.push_back((opened, key.clone()));
        let previous = self.entries.insert(key, Slot { opened, value });
        while let Some((tick, _)) = self.opened.front() {
            if tick.saturating_add(window) > self.ticks {
                break;
            }
            if let Some((tick, key)) = self.opened.pop_front() {
                if self
                    .entries
                    .get(&key)
                    .is_some_and(|slot| slot.opened == tick)
                {
                    self.entries.remove(&key);
                }
            }
        }
        previous.map(|slot| slot.value)
    }

    /// Removes a settled entry (resident or hydrated); returns it.
    pub fn settle(&mut self, key: &K) -> Option<V> {
        self.entries.remove(key).map(|slot| slot.value)
    }

    /// Brings an entry back from the log for one command. A key already in memory keeps what it
    /// has: memory is never older than the log.
    pub fn hydrate(&mut self, key: K, value: V) {
        self.entries.entry(key).or_insert(Slot {
            opened: HYDRATED,
            value,
        });
    }

    /// Drops the key's entry if it was hydrated (an entry opened since stays: the fold holds it).
    pub fn retire(&mut self, key: &K) {
        if self
            .entries
            .get(key)
            .is_some_and(|slot| slot.opened == HYDRATED)
        {
            self.entries.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_leaves_once_window_newer_entries_were_opened() {
        // Given a window of 2
        let mut r: Resident<u32, &str> = Resident::default();
        r.open(1, "a", 2);
        r.open(2, "b", 2);
        assert!(r.contains_key(&1));
        // When a third entry opens
        r.open(3, "c", 2);
        // Then the oldest left and the queue holds only the window
        assert!(!r.contains_key(&1));
        assert_eq!(r.len(), 2);
        assert_eq!(r.opened.len(), 2);
    }

    #[test]
    fn a_settled_entry_leaves_at_once_and_its_stale_opening_drops_nothing() {
        // Given an entry settled early and hydrated back for a command
        let mut r: Resident<u32, &str> = Resident::default();
        r.open(1, "a", 2);
        assert_eq!(r.settle(&1), Some("a"));
        r.hydrate(1, "a-from-log");
        // When its opening ages out
        r.open(2, "b", 2);
        r.open(3, "c", 2);
        // Then the hydrated entry is untouched until retired, and retire drops only it
        assert_eq!(r.get(&1), Some(&"a-from-log"));
        r.retire(&1);
        r.retire(&3);
        assert!(!r.contains_key(&1));
        assert!(r.contains_key(&3));
    }

    #[test]
    fn hydrating_a_resident_key_keeps_memory() {
        let mut r: Resident<u32, &str> = Resident::default();
        r.open(1, "live", 10);
        r.hydrate(1, "log");
        r.retire(&1);
        assert_eq!(r.get(&1), Some(&"live"));
    }
}
