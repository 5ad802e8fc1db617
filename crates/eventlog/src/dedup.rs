//! Answering "was this input handled before?" without keeping every dedup key on the heap.
//!
//! The dedup records live on disk (the log tree's dedup keyspace). In memory there are only:
//! - a Bloom filter over every durable key, so the common case, a NEW key, is answered "not seen"
//!   without touching sled (a sled batch waits for every reader of the tree, so readers kept off
//!   the disk keep the writer fast). A clean close saves it next to the log; the next open loads
//!   it (and removes it, durably, before anything is written) when it was saved at the log's
//!   current head and still has room. Otherwise (after a crash, or once the keys outgrow it)
//!   the open scans the dedup keys and builds one twice their number: exact for what is on disk,
//!   and a restart does not read every key the service ever handled;
//! - a bounded cache of recently written or read records, so a redelivery shortly after the
//!   original (the usual duplicate) is answered without the disk either;
//! - the keys of the group commit being applied but not yet flushed, so a filter false positive
//!   that reaches the disk still never answers "seen" for a commit a crash could undo.
//!
//! A key becomes visible (filter, cache) only after the flush that made it durable.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex, RwLock};

use crate::error::Result;
use crate::record::DedupRecord;

/// Bits per expected key: about a 1% false-positive rate with [`FILTER_HASHES`] hashes.
const FILTER_BITS_PER_KEY: f64 = 9.6;
/// Hash functions of the filter (optimal for ~9.6 bits per key).
const FILTER_HASHES: u64 = 7;
/// Smallest filter, in keys, whatever the setting says.
const FILTER_MIN_KEYS: usize = 1024;

/// A Bloom filter over strings: no false negatives, about 1% false positives up to its capacity
/// (more beyond it: lookups then reach the disk more often, answers stay exact).
pub struct BloomFilter {
    bits: Vec<AtomicU64>,
    len_bits: u64,
}

impl BloomFilter {
    /// A filter sized for `keys` keys at about 1% false positives.
    pub fn with_capacity(keys: usize) -> Self {
        let keys = keys.max(FILTER_MIN_KEYS) as f64;
        let words = ((keys * FILTER_BITS_PER_KEY) / 64.0).ceil() as usize;
        Self {
            bits: (0..words).map(|_| AtomicU64::new(0)).collect(),
            len_bits: words as u64 * 64,
        }
    }

    /// Size of the bit array, in bytes.
    pub fn size_bytes(&self) -> usize {
        self.bits.len() * 8
    }

    /// Keys it holds at about 1% false positives.
    pub fn capacity(&self) -> usize {
        (self.len_bits as f64 / FILTER_BITS_PER_KEY) as usize
    }

    fn positions(&self, key: &[u8]) -> impl Iterator<Item = u64> + '_ {
        // Double hashing (Kirsch-Mitzenmacher) from one 128-bit digest.
        let digest = blake3::hash(key);
        let bytes = digest.as_bytes();
        let h1 = u64::from_le_bytes(bytes[0..8].try_into().expect("8 bytes"));
        let h2 = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")) | 1;
        (0..FILTER_HASHES).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) % self.len_bits)
    }

    /// Adds a key.
    pub fn insert(&self, key: &str) {
        for bit in self.positions(key.as_bytes()) {
            self.bits[(bit / 64) as usize].fetch_or(1 << (bit % 64), Ordering::Release);
        }
    }

    /// False: the key was never inserted. True: it may have been.
    pub fn may_contain(&self, key: &str) -> bool {
        self.positions(key.as_bytes()).all(|bit| {
            self.bits[(bit / 64) as usize].load(Ordering::Acquire) & (1 << (bit % 64)) != 0
        })
    }
}

/// A bounded cache in two generations: inserts go to the young one; when it holds half the
/// capacity it becomes the old one and the previous old one is dropped. A hit in the old
/// generation moves the entry back to the young one. Approximately LRU, O(1), never more than
/// `capacity` entries.
struct RecentCache {
    half: usize,
    young: HashMap<Box<str>, Arc<DedupRecord>>,
    old: HashMap<Box<str>, Arc<DedupRecord>>,
}

impl RecentCache {
    fn new(capacity: usize) -> Self {
        Self {
            half: capacity / 2,
            young: HashMap::new(),
            old: HashMap::new(),
        }
    }

    fn get(&mut self, key: &str) -> Option<Arc<DedupRecord>> {
        if let Some(record) = self.young.get(key) {
            return Some(record.clone());
        }
        let (key, record) = self.old.remove_entry(key)?;
        self.insert(key, record.clone());
        Some(record)
    }

    fn insert(&mut self, key: Box<str>, record: Arc<DedupRecord>) {
        if self.half == 0 {
            return;
        }
        self.young.insert(key, record);
        if self.young.len() >= self.half {
            self.old = std::mem::take(&mut self.young);
        }
    }

    fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }
}

/// How a lookup was answered (for metrics and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answered {
    /// From the recent cache.
    Cache,
    /// The filter ruled the key out.
    Filter,
    /// From sled.
    Disk,
}

/// Format of a saved filter; another one is not loaded.
const SAVED_FILTER_FORMAT: u16 = 1;

/// The filter as saved at a clean close, with the log position it is exact for.
#[derive(Serialize, Deserialize)]
struct SavedFilter {
    format: u16,
    global_seq: u64,
    outbox_seq: u64,
    keys: u64,
    words: Vec<u64>,
}

/// The in-memory side of the dedup keyspace: filter, recent cache, unflushed keys.
pub struct DedupIndex {
    filter: BloomFilter,
    /// Durable keys the filter holds.
    keys: AtomicU64,
    recent: Mutex<RecentCache>,
    unflushed: RwLock<HashSet<String>>,
}

impl DedupIndex {
    /// An empty index: a filter for `filter_keys` keys and a cache of `cache_entries` records.
    pub fn new(filter_keys: usize, cache_entries: usize) -> Self {
        Self {
            filter: BloomFilter::with_capacity(filter_keys),
            keys: AtomicU64::new(0),
            recent: Mutex::new(RecentCache::new(cache_entries)),
            unflushed: RwLock::new(HashSet::new()),
        }
    }

    /// The filter, for saving at a clean close of a log whose head is at these seqs.
    pub fn to_bytes(&self, global_seq: u64, outbox_seq: u64) -> Result<Vec<u8>> {
        let saved = SavedFilter {
            format: SAVED_FILTER_FORMAT,
            global_seq,
            outbox_seq,
            keys: self.keys(),
            words: self
                .filter
                .bits
                .iter()
                .map(|w| w.load(Ordering::Acquire))
                .collect(),
        };
        Ok(postcard::to_stdvec(&saved)?)
    }

    /// An index from a saved filter, if it was saved at this head, is at least as large as
    /// `filter_keys` asks, and has room for its keys; otherwise why not (the caller scans).
    pub fn from_bytes(
        bytes: &[u8],
        global_seq: u64,
        outbox_seq: u64,
        filter_keys: usize,
        cache_entries: usize,
    ) -> std::result::Result<Self, String> {
        let saved: SavedFilter =
            postcard::from_bytes(bytes).map_err(|e| format!("undecodable: {e}"))?;
        if saved.format != SAVED_FILTER_FORMAT {
            return Err(format!("format {}", saved.format));
        }
        if (saved.global_seq, saved.outbox_seq) != (global_seq, outbox_seq) {
            return Err(format!(
                "saved at seq {}/{}, the log is at {global_seq}/{outbox_seq}",
                saved.global_seq, saved.outbox_seq
            ));
        }
        if saved.words.is_empty() {
            return Err("empty".into());
        }
        let filter = BloomFilter {
            len_bits: saved.words.len() as u64 * 64,
            bits: saved.words.into_iter().map(AtomicU64::new).collect(),
        };
        if filter.capacity() < filter_keys || saved.keys as usize > filter.capacity() {
            return Err(format!(
                "{} keys in a filter for {}, {filter_keys} asked for: rebuilt larger",
                saved.keys,
                filter.capacity()
            ));
        }
        Ok(Self {
            filter,
            keys: AtomicU64::new(saved.keys),
            recent: Mutex::new(RecentCache::new(cache_entries)),
            unflushed: RwLock::new(HashSet::new()),
        })
    }

    /// Durable keys the filter holds.
    pub fn keys(&self) -> u64 {
        self.keys.load(Ordering::Relaxed)
    }

    /// Size of the filter's bit array, in bytes.
    pub fn filter_bytes(&self) -> usize {
        self.filter.size_bytes()
    }

    /// Records held by the recent cache.
    pub fn cached(&self) -> usize {
        self.recent.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// Adds a key that is already durable (the scan at open).
    pub fn insert_durable(&self, key: &str) {
        self.filter.insert(key);
        self.keys.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the key may be on disk (used by the writer, which sees every flushed key).
    pub fn may_contain(&self, key: &str) -> bool {
        self.filter.may_contain(key)
    }

    /// The writer is about to apply these keys: until they are flushed, a disk read that finds
    /// them must not count.
    pub fn applying<'a>(&self, keys: impl Iterator<Item = &'a String>) {
        if let Ok(mut unflushed) = self.unflushed.write() {
            unflushed.extend(keys.cloned());
        }
    }

    /// The writer flushed these records: they become visible.
    pub fn flushed(&self, records: impl Iterator<Item = (String, DedupRecord)>) {
        let mut recent = self.recent.lock().ok();
        let mut done = Vec::new();
        for (key, record) in records {
            self.filter.insert(&key);
            self.keys.fetch_add(1, Ordering::Relaxed);
            if let Some(recent) = recent.as_mut() {
                recent.insert(key.clone().into_boxed_str(), Arc::new(record));
            }
            done.push(key);
        }
        drop(recent);
        if let Ok(mut unflushed) = self.unflushed.write() {
            for key in &done {
                unflushed.remove(key);
            }
        }
    }

    /// Looks a key up: cache, then filter, then `disk`.
    pub fn lookup(
        &self,
        key: &str,
        disk: impl FnOnce() -> Result<Option<DedupRecord>>,
    ) -> Result<(Option<DedupRecord>, Answered)> {
        if let Some(record) = self.recent.lock().ok().and_then(|mut c| c.get(key)) {
            return Ok((Some(DedupRecord::clone(&record)), Answered::Cache));
        }
        if !self.filter.may_contain(key) {
            return Ok((None, Answered::Filter));
        }
        // Read the disk first, then check the unflushed keys: the writer marks keys unflushed
        // before applying them, so a record seen on disk is either marked or already flushed.
        let found = disk()?;
        let unflushed = self
            .unflushed
            .read()
            .map(|u| u.contains(key))
            .unwrap_or(true);
        match found {
            Some(_) if unflushed => Ok((None, Answered::Disk)),
            Some(record) => {
                if let Ok(mut recent) = self.recent.lock() {
                    recent.insert(key.into(), Arc::new(record.clone()));
                }
                Ok((Some(record), Answered::Disk))
            }
            None => Ok((None, Answered::Disk)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64) -> DedupRecord {
        DedupRecord {
            global_seq: seq,
            recorded_at_ms: 0,
            outbox: Vec::new(),
        }
    }

    #[test]
    fn the_filter_never_forgets_a_key_and_rules_out_most_new_ones() {
        let filter = BloomFilter::with_capacity(10_000);
        for i in 0..10_000 {
            filter.insert(&format!("key-{i}"));
        }
        assert!((0..10_000).all(|i| filter.may_contain(&format!("key-{i}"))));
        let false_positives = (0..10_000)
            .filter(|i| filter.may_contain(&format!("new-{i}")))
            .count();
        assert!(false_positives < 500, "{false_positives} false positives");
    }

    #[test]
    fn the_recent_cache_stays_within_its_capacity_and_keeps_what_is_used() {
        let mut cache = RecentCache::new(100);
        cache.insert("hot".into(), Arc::new(record(0)));
        for i in 0..1_000 {
            cache.insert(format!("k{i}").into(), Arc::new(record(i)));
            assert!(cache.get("hot").is_some(), "the hot key survives at {i}");
            assert!(cache.len() <= 100);
        }
        assert!(cache.get("k0").is_none(), "an old cold key was evicted");
    }

    #[test]
    fn a_saved_filter_loads_only_at_the_head_it_was_saved_at_and_while_it_has_room() {
        // Given an index of 100 keys saved at seq 7/3
        let index = DedupIndex::new(1024, 16);
        for i in 0..100 {
            index.insert_durable(&format!("key-{i}"));
        }
        let bytes = index.to_bytes(7, 3).expect("encodes");
        // When loaded at the same head / Then it holds every key
        let loaded = DedupIndex::from_bytes(&bytes, 7, 3, 1024, 16).expect("loads");
        assert_eq!(loaded.keys(), 100);
        assert!((0..100).all(|i| loaded.may_contain(&format!("key-{i}"))));
        // When the log moved on since, or a larger filter is asked for / Then it is refused
        assert!(DedupIndex::from_bytes(&bytes, 8, 3, 1024, 16).is_err());
        assert!(DedupIndex::from_bytes(&bytes, 7, 4, 1024, 16).is_err());
        assert!(DedupIndex::from_bytes(&bytes, 7, 3, 1 << 20, 16).is_err());
        assert!(DedupIndex::from_bytes(b"junk", 7, 3, 1024, 16).is_err());
        // When it holds more keys than it has room for / Then it is refused (rebuilt larger)
        let full = DedupIndex::new(1024, 16);
        for i in 0..2_000 {
            full.insert_durable(&format!("key-{i}"));
        }
        let bytes = full.to_bytes(1, 1).expect("encodes");
        assert!(DedupIndex::from_bytes(&bytes, 1, 1, 1024, 16).is_err());
    }

    #[test]
    fn a_key_found_on_disk_before_its_flush_reads_as_unseen() {
        let index = DedupIndex::new(1024, 16);
        let key = "o1/stock/reserve".to_owned();
        index.insert_durable(&key); // as if a false positive
        index.applying([key.clone()].iter());
        let (found, _) = index.lookup(&key, || Ok(Some(record(1)))).expect("lookup");
        assert!(found.is_none());
        index.flushed([(key.clone(), record(1))].into_iter());
        let (found, how) = index.lookup(&key, || Ok(None)).expect("lookup");
        assert_eq!(found, Some(record(1)));
        assert_eq!(how, Answered::Cache);
    }
}
