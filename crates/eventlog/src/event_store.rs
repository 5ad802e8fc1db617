//! The append-only event log on sled, with group commit.
//!
//! One writer thread owns every write. It takes a batch of commits from its queue, applies each as
//! one atomic sled batch (events + dedup record + outbox entries + indexes), then makes the whole
//! batch durable with a single `flush`. Callers are answered only after that flush, so an append
//! that returned survives a crash, and N concurrent appends cost one fsync instead of N.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot, watch};

use crate::dedup::{Answered, DedupIndex};
use crate::error::{Error, Result};
use crate::record::{
    Commit, CommitOutcome, DedupRecord, OutboxMessage, Record, RecordView, GENESIS_HASH, HASH_LEN,
};

/// Prefix of the stream a correlation (an order) owns; see [`correlation_stream`].
pub const CORRELATION_STREAM_PREFIX: &str = "order-";
/// Most commits one flush covers.
pub const GROUP_COMMIT_MAX_BATCH: usize = 1024;
/// Queue of commits waiting for the writer.
pub const WRITE_QUEUE_CAPACITY: usize = 4096;
/// Longest stream id accepted.
pub const STREAM_ID_MAX_LEN: usize = 256;
/// Default size of sled's page cache, in MiB (`SLED_CACHE_MB`). sled counts a cached page by
/// its size on disk, and a page in memory takes several times that: at 64 MiB a service under
/// load held 50-90 MiB more than at 16, for no measurable gain in throughput or query latency
/// (README, "State that lives for years").
pub const DEFAULT_SLED_CACHE_MB: u64 = 16;
/// Default number of dedup keys the Bloom filter is sized for (`DEDUP_FILTER_KEYS`); at open it
/// is grown to twice the keys on disk if that is more. ~1.2 bytes per key.
pub const DEFAULT_DEDUP_FILTER_KEYS: usize = 10_000_000;
/// Stream heads the writer caches by default: streams are mostly one per order, written a few
/// times within seconds and never again, so a small cache serves nearly every append.
pub const DEFAULT_STREAM_CACHE_ENTRIES: usize = 16_384;
/// Default number of recent dedup records kept in memory (`DEDUP_CACHE_ENTRIES`).
pub const DEFAULT_DEDUP_CACHE_ENTRIES: usize = 16_384;

/// The tree of state snapshots, keyed by big-endian global seq. Apart from the log tree: a
/// snapshot is one insert (atomic on its own), and its large value should not hold up the log's
/// batches.
const SNAPSHOT_TREE: &str = "snapshot";

/// The one sled tree that holds the whole log. Everything lives in it, under one-byte prefixes,
/// because sled applies a batch atomically only within one tree, and a cross-tree transaction
/// costs several times a batch on the hot path.
const LOG_TREE: &str = "log";
const PREFIX_EVENTS: u8 = b'e';
const PREFIX_STREAMS: u8 = b's';
/// Stream heads, written by earlier versions; a stream's head is now derived from the stream
/// index. Reserved so that old keys are never read as something else.
#[allow(dead_code)]
const PREFIX_HEADS: u8 = b'h';
const PREFIX_DEDUP: u8 = b'd';
const PREFIX_OUTBOX: u8 = b'o';
const PREFIX_CORRELATION: u8 = b'c';
/// File, next to sled's, of the dedup filter saved at a clean close (see [`crate::dedup`]).
///
/// A file rather than a sled value: it is megabytes written once per close, and sled stalls
/// closing a tree that just took a value that large.
const DEDUP_FILTER_FILE: &str = "dedup-filter.saved";
/// Domains' secondary indexes (`IndexEntry`): `x <index name> 0 <key>`.
const PREFIX_INDEX: u8 = b'x';
/// Longest index name accepted.
pub const INDEX_NAME_MAX_LEN: usize = 64;

/// When the writer flushes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlushPolicy {
    /// One flush per batch of queued commits (the production setting).
    #[default]
    GroupCommit,
    /// One flush per commit (for comparison in benchmarks).
    EveryCommit,
}

/// Where and how to open a store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Directory of the sled database.
    pub path: PathBuf,
    /// Flush policy.
    pub flush: FlushPolicy,
    /// sled's page cache, in bytes.
    pub cache_capacity_bytes: u64,
    /// Dedup keys the Bloom filter is sized for (grown at open to twice the keys on disk).
    pub dedup_filter_keys: usize,
    /// Recent dedup records kept in memory (0: none).
    pub dedup_cache_entries: usize,
    /// Stream heads the writer keeps in memory before it empties its cache (see
    /// [`DEFAULT_STREAM_CACHE_ENTRIES`]).
    pub stream_cache_entries: usize,
}

/// The default config (see [`StoreConfig::new`]) of the store in a directory.
impl<P: AsRef<Path>> From<P> for StoreConfig {
    fn from(dir: P) -> Self {
        Self::new(dir.as_ref())
    }
}

impl StoreConfig {
    /// Group-commit store at `path` with the default cache and dedup sizes.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            flush: FlushPolicy::GroupCommit,
            cache_capacity_bytes: DEFAULT_SLED_CACHE_MB * 1024 * 1024,
            dedup_filter_keys: DEFAULT_DEDUP_FILTER_KEYS,
            dedup_cache_entries: DEFAULT_DEDUP_CACHE_ENTRIES,
            stream_cache_entries: DEFAULT_STREAM_CACHE_ENTRIES,
        }
    }

    /// The same config with another flush policy.
    pub fn with_flush(mut self, flush: FlushPolicy) -> Self {
        self.flush = flush;
        self
    }
}

/// How far the log and the outbox are durable; the outbox relay only publishes below this mark.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Durable {
    /// Last durable global seq.
    pub global_seq: u64,
    /// Last durable outbox seq.
    pub outbox_seq: u64,
    /// Ticket of the last commit answered after a flush (see [`EventStore::last_ticket`]).
    pub ticket: u64,
}

/// Bounds for replaying the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayBound {
    /// Stop after this global seq.
    pub upto_seq: Option<u64>,
    /// Skip records recorded after this time (ms since the Unix epoch).
    pub upto_time_ms: Option<u64>,
}

impl ReplayBound {
    /// Whether a record falls inside the bound.
    pub fn admits(&self, record: &Record) -> bool {
        self.upto_seq.is_none_or(|s| record.global_seq <= s)
            && self.upto_time_ms.is_none_or(|t| record.recorded_at_ms <= t)
    }
}

/// What a verify pass found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records checked.
    pub records: u64,
    /// Distinct streams.
    pub streams: u64,
    /// Outbox entries still waiting to be published.
    pub outbox_pending: u64,
    /// Dedup records.
    pub dedup_records: u64,
}

struct WriteRequest {
    commit: Commit,
    ticket: u64,
    reply: oneshot::Sender<Result<CommitOutcome>>,
}

/// Cheap cloneable handle to one service's event log.
#[derive(Clone)]
pub struct EventStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: sled::Db,
    trees: Trees,
    /// Filter and recent cache in front of the dedup keyspace (see [`crate::dedup`]).
    dedup_index: Arc<DedupIndex>,
    /// Whether the filter came from the last clean close rather than a scan.
    dedup_filter_loaded: bool,
    /// `None` only while dropping: closing the queue is what stops the writer.
    writer: Option<mpsc::Sender<WriteRequest>>,
    durable: watch::Receiver<Durable>,
    /// Ticket of the last commit queued. Tickets are handed out in queue order (under this lock),
    /// and the writer answers in queue order, so "ticket t is durable" means "every commit
    /// queued up to t is durable".
    last_ticket: Mutex<u64>,
    /// The writer; it ends with the head it left, or `None` when it stopped on a failure.
    thread: Mutex<Option<JoinHandle<Option<Head>>>>,
    path: PathBuf,
}

/// One prefix's slice of the log tree, used like a tree of its own.
#[derive(Clone)]
struct Keyspace {
    tree: sled::Tree,
    prefix: u8,
}

impl Keyspace {
    fn key(&self, key: &[u8]) -> Vec<u8> {
        let mut full = Vec::with_capacity(key.len() + 1);
        full.push(self.prefix);
        full.extend_from_slice(key);
        full
    }

    fn strip(&self, (key, value): (sled::IVec, sled::IVec)) -> (Vec<u8>, sled::IVec) {
        (key[1..].to_vec(), value)
    }

    fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<sled::IVec>> {
        Ok(self.tree.get(self.key(key.as_ref()))?)
    }

    #[cfg(any(test, feature = "test-util"))]
    fn insert(&self, key: impl AsRef<[u8]>, value: impl Into<sled::IVec>) -> Result<()> {
        self.tree.insert(self.key(key.as_ref()), value)?;
        Ok(())
    }

    fn scan_prefix(
        &self,
        prefix: &[u8],
    ) -> impl Iterator<Item = Result<(Vec<u8>, sled::IVec)>> + '_ {
        self.tree
            .scan_prefix(self.key(prefix))
            .map(move |e| Ok(self.strip(e?)))
    }

    fn iter(&self) -> impl Iterator<Item = Result<(Vec<u8>, sled::IVec)>> + '_ {
        self.scan_prefix(&[])
    }

    /// Entries keyed by big-endian u64 in `from..=to`.
    fn range_u64(
        &self,
        from: u64,
        to: u64,
    ) -> impl Iterator<Item = Result<(Vec<u8>, sled::IVec)>> + '_ {
        self.tree
            .range(self.key(&from.to_be_bytes())..=self.key(&to.to_be_bytes()))
            .map(move |e| Ok(self.strip(e?)))
    }

    fn first(&self) -> Result<Option<(Vec<u8>, sled::IVec)>> {
        self.iter().next().transpose()
    }

    fn last(&self) -> Result<Option<(Vec<u8>, sled::IVec)>> {
        match self.tree.scan_prefix([self.prefix]).next_back() {
            Some(entry) => Ok(Some(self.strip(entry?))),
            None => Ok(None),
        }
    }

    fn len(&self) -> usize {
        self.tree.scan_prefix([self.prefix]).count()
    }
}

#[derive(Clone)]
struct Trees {
    log: sled::Tree,
    snapshots: sled::Tree,
    events: Keyspace,
    streams: Keyspace,
    dedup: Keyspace,
    outbox: Keyspace,
    correlation: Keyspace,
    index: Keyspace,
}

impl Trees {
    fn open(db: &sled::Db) -> Result<Self> {
        let log = db.open_tree(LOG_TREE)?;
        let space = |prefix| Keyspace {
            tree: log.clone(),
            prefix,
        };
        Ok(Self {
            snapshots: db.open_tree(SNAPSHOT_TREE)?,
            events: space(PREFIX_EVENTS),
            streams: space(PREFIX_STREAMS),
            dedup: space(PREFIX_DEDUP),
            outbox: space(PREFIX_OUTBOX),
            correlation: space(PREFIX_CORRELATION),
            index: space(PREFIX_INDEX),
            log,
        })
    }

    /// A stream's version: the stream seq of its last entry in the stream index (0 when it has
    /// none). Derived rather than stored, so an append writes one key fewer.
    fn stream_head(&self, stream: &str) -> Result<u64> {
        let full = self.streams.key(&stream_prefix(stream));
        match self.log.scan_prefix(&full).next_back() {
            Some(entry) => {
                let (key, value) = entry?;
                let (_, names) = parse_stream_index(&key[1..], &value)
                    .ok_or_else(|| corrupt(0, "malformed stream index key"))?;
                Ok(names.last().map_or(0, |(stream_seq, _)| stream_seq))
            }
            None => Ok(0),
        }
    }

    /// The global seqs of a stream's records, in stream order (from the stream index).
    fn stream_seqs(&self, stream: &str) -> Result<Vec<u64>> {
        let mut seqs = Vec::new();
        for entry in self.streams.scan_prefix(&stream_prefix(stream)) {
            let (key, value) = entry?;
            let (_, names) = parse_stream_index(&key, &value)
                .ok_or_else(|| corrupt(0, "malformed stream index key"))?;
            seqs.extend(names.pairs().map(|(_, global_seq)| global_seq));
        }
        Ok(seqs)
    }
}

/// The writer's view of the end of the log.
#[derive(Debug, Clone, Copy)]
struct Head {
    global_seq: u64,
    hash: [u8; HASH_LEN],
    recorded_at_ms: u64,
    outbox_seq: u64,
}

impl EventStore {
    /// Opens (or creates) the store and starts its writer thread.
    pub fn open(config: StoreConfig) -> Result<Self> {
        let db = sled::Config::new()
            .path(&config.path)
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(config.cache_capacity_bytes)
            // We flush explicitly; sled's timer flush would only add unscheduled fsyncs.
            .flush_every_ms(None)
            .open()?;
        let trees = Trees::open(&db)?;
        let head = load_head(&trees)?;
        let (durable_tx, durable_rx) = watch::channel(Durable {
            global_seq: head.global_seq,
            outbox_seq: head.outbox_seq,
            ticket: 0,
        });
        let (writer_tx, writer_rx) = mpsc::channel(WRITE_QUEUE_CAPACITY);
        let (dedup_index, dedup_filter_loaded) = open_dedup_index(&trees, &config, &head)?;
        let dedup_index = Arc::new(dedup_index);
        let writer = Writer {
            db: db.clone(),
            trees: trees.clone(),
            dedup_index: dedup_index.clone(),
            head,
            flush: config.flush,
            durable: durable_tx,
            answered_ticket: 0,
            streams: HashMap::new(),
            stream_cache_entries: config.stream_cache_entries.max(1),
        };
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer.run(writer_rx))?;
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                trees,
                dedup_index,
                dedup_filter_loaded,
                writer: Some(writer_tx),
                durable: durable_rx,
                last_ticket: Mutex::new(0),
                thread: Mutex::new(Some(thread)),
                path: config.path,
            }),
        })
    }

    fn writer(&self) -> Result<&mpsc::Sender<WriteRequest>> {
        self.inner.writer.as_ref().ok_or(Error::WriterGone)
    }

    /// The directory this store lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Appends a commit atomically; resolves once it is on disk.
    pub async fn commit(&self, commit: Commit) -> Result<CommitOutcome> {
        self.enqueue(commit).await?.await
    }

    /// Queues a commit behind every commit queued before it, with its ticket.
    async fn send(&self, commit: Commit) -> Result<oneshot::Receiver<Result<CommitOutcome>>> {
        for append in &commit.appends {
            validate_stream_id(&append.stream)?;
        }
        for entry in &commit.index {
            validate_index_name(&entry.index)?;
        }
        let (reply, answer) = oneshot::channel();
        // Reserve the slot first (it may wait for room), then number and send under the lock,
        // so ticket order is queue order.
        let permit = self
            .writer()?
            .reserve()
            .await
            .map_err(|_| Error::WriterGone)?;
        let mut last = self
            .inner
            .last_ticket
            .lock()
            .map_err(|_| Error::WriterGone)?;
        *last += 1;
        permit.send(WriteRequest {
            commit,
            ticket: *last,
            reply,
        });
        Ok(answer)
    }

    /// Ticket of the last commit queued so far. Whatever a reader saw of the live state was
    /// queued no later than this, so waiting for it ([`wait_durable`](Self::wait_durable)) makes
    /// the reader's view durable before it is answered.
    pub fn last_ticket(&self) -> u64 {
        self.inner
            .last_ticket
            .lock()
            .map(|t| *t)
            .unwrap_or(u64::MAX)
    }

    /// Resolves once every commit queued up to `ticket` is durable (answered after a flush).
    /// Fails when the writer stopped first: what was queued may never reach the disk.
    pub async fn wait_durable(&self, ticket: u64) -> Result<()> {
        let mut durable = self.inner.durable.clone();
        durable
            .wait_for(|d| d.ticket >= ticket)
            .await
            .map(|_| ())
            .map_err(|_| Error::WriterGone)
    }

    /// Enqueues a commit without waiting for it; the returned future resolves once it is durable.
    ///
    /// Callers that must order their commits (decide under a lock, then wait outside it) enqueue
    /// under the lock and await outside.
    pub async fn enqueue(
        &self,
        commit: Commit,
    ) -> Result<impl std::future::Future<Output = Result<CommitOutcome>>> {
        let answer = self.send(commit).await?;
        Ok(async move { answer.await.map_err(|_| Error::WriterGone)? })
    }

    /// Subscribes to the durable watermark.
    pub fn durable(&self) -> watch::Receiver<Durable> {
        self.inner.durable.clone()
    }

    /// Last durable global seq.
    pub fn head(&self) -> u64 {
        self.inner.durable.borrow().global_seq
    }

    /// Number of events in a stream (its version).
    pub fn stream_version(&self, stream: &str) -> Result<u64> {
        self.inner.trees.stream_head(stream)
    }

    /// Every record of a stream, in order.
    pub fn read_stream(&self, stream: &str) -> Result<Vec<Record>> {
        validate_stream_id(stream)?;
        self.inner
            .trees
            .stream_seqs(stream)?
            .into_iter()
            .map(|seq| self.get(seq))
            .collect()
    }

    /// Every durable record with this correlation id (orderId), in log order.
    ///
    /// Records applied but not yet flushed are left out: what this answers goes into replies
    /// (timelines, `/log`), and a reply must not show what a crash could still undo.
    pub fn read_correlated(&self, correlation_id: &str) -> Result<Vec<Record>> {
        let durable = self.head();
        let mut seqs = Vec::new();
        let mut prefix = correlation_id.as_bytes().to_vec();
        prefix.push(0);
        for entry in self.inner.trees.correlation.scan_prefix(&prefix) {
            let (key, _) = entry?;
            seqs.push(be_u64(&key[prefix.len()..]));
        }
        let own = correlation_stream(correlation_id);
        if validate_stream_id(&own).is_ok() {
            seqs.extend(self.inner.trees.stream_seqs(&own)?);
        }
        // Stores written before the own stream lost its correlation keys have both.
        seqs.sort_unstable();
        seqs.dedup();
        seqs.into_iter()
            .take_while(|seq| *seq <= durable)
            .map(|seq| self.get(seq))
            .collect()
    }

    /// The value under `key` in a secondary index (see [`crate::record::IndexEntry`]).
    ///
    /// Reads what the writer applied, which may include a commit not yet flushed: a caller that
    /// replies with it waits for durability first (e.g. through `Live::read`).
    pub fn index_get(&self, index: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        validate_index_name(index)?;
        Ok(self
            .inner
            .trees
            .index
            .get(index_key(index, key))?
            .map(|v| v.to_vec()))
    }

    /// Up to `limit` entries `(key, value)` of a secondary index whose keys start with
    /// `prefix`, in key order (`reverse`: descending). `from` bounds the scan: forward, keys at
    /// or after it; reverse, keys strictly before it (so a page's last key, passed back, starts
    /// the next page without repeating it). Keys are returned whole (prefix included).
    ///
    /// Like [`index_get`](Self::index_get), it may see commits applied but not yet flushed.
    pub fn index_scan(
        &self,
        index: &str,
        prefix: &[u8],
        from: Option<&[u8]>,
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        validate_index_name(index)?;
        let space = &self.inner.trees.index;
        let base = space.key(&index_key(index, &[]));
        let start = space.key(&index_key(index, prefix));
        // Everything under `start` sorts below `start` + 0xff.., so the prefix's end is the
        // smallest key greater than every key with that prefix.
        let end = prefix_end(&start);
        let bounded = |key: &[u8]| space.key(&index_key(index, key));
        let (lower, upper) = match (from, reverse) {
            (None, _) => (start, end),
            (Some(from), false) => (bounded(from).max(start), end),
            (Some(from), true) => {
                let from = bounded(from);
                let upper = match end {
                    Some(end) if end < from => end,
                    _ => from,
                };
                (start, Some(upper))
            }
        };
        if upper.as_ref().is_some_and(|upper| *upper <= lower) {
            return Ok(Vec::new());
        }
        let range = match upper {
            Some(upper) => space.tree.range(lower..upper),
            None => space.tree.range(lower..),
        };
        let strip = |e: std::result::Result<(sled::IVec, sled::IVec), sled::Error>| {
            e.map(|(k, v)| (k[base.len()..].to_vec(), v.to_vec()))
                .map_err(Error::from)
        };
        if reverse {
            range.rev().take(limit).map(strip).collect()
        } else {
            range.take(limit).map(strip).collect()
        }
    }

    /// One record by global seq.
    pub fn get(&self, global_seq: u64) -> Result<Record> {
        let bytes = self
            .inner
            .trees
            .events
            .get(global_seq.to_be_bytes())?
            .ok_or_else(|| Error::Corrupt {
                seq: global_seq,
                reason: "indexed record missing".into(),
            })?;
        Ok(Record::open(global_seq, &bytes)?.0)
    }

    /// The log from a global seq (inclusive) within a bound, in order, each record hash-checked.
    pub fn read_all(
        &self,
        from_seq: u64,
        bound: ReplayBound,
    ) -> impl Iterator<Item = Result<Record>> + '_ {
        let upper = bound.upto_seq.unwrap_or(u64::MAX);
        self.inner
            .trees
            .events
            .range_u64(from_seq, upper)
            .map(|entry| {
                let (key, value) = entry?;
                Ok(Record::open(be_u64(&key), &value)?.0)
            })
            .take_while(move |r| r.as_ref().map_or(true, |r| r.global_seq <= upper))
            .filter(move |r| r.as_ref().map_or(true, |r| bound.admits(r)))
    }

    /// Calls `visit` with every record from a global seq (inclusive) within a bound, in order,
    /// each hash-checked and read in place; stops at the first error, `visit`'s included.
    ///
    /// The fold of `replay`, `verify` and start-up: no allocation per record, so a long log
    /// folds at the speed of sled's iteration.
    pub fn for_each_record(
        &self,
        from_seq: u64,
        bound: ReplayBound,
        mut visit: impl FnMut(&RecordView<'_>) -> Result<()>,
    ) -> Result<()> {
        let upper = bound.upto_seq.unwrap_or(u64::MAX);
        let events = &self.inner.trees.events;
        let range = events.key(&from_seq.to_be_bytes())..=events.key(&upper.to_be_bytes());
        read_records_ahead(events.tree.range(range), |key, value| {
            let seq = be_u64(&key[1..]);
            let (record, _) = RecordView::open_checked(seq, value)?;
            if bound
                .upto_time_ms
                .is_some_and(|t| record.recorded_at_ms > t)
            {
                return Ok(());
            }
            visit(&record)
        })
    }

    /// The dedup record under a key, if that input was handled before.
    ///
    /// Answered from the recent cache, else ruled out by the filter, else read from disk; a key
    /// is visible only once the commit that wrote it is durable.
    pub fn dedup(&self, key: &str) -> Result<Option<DedupRecord>> {
        Ok(self.dedup_answered(key)?.0)
    }

    /// [`dedup`](Self::dedup), also saying where the answer came from.
    pub fn dedup_answered(&self, key: &str) -> Result<(Option<DedupRecord>, Answered)> {
        let answer = self.inner.dedup_index.lookup(key, || {
            match self.inner.trees.dedup.get(key.as_bytes())? {
                Some(bytes) => Ok(Some(postcard::from_bytes(&bytes)?)),
                None => Ok(None),
            }
        })?;
        let source = match answer.1 {
            Answered::Cache => "cache",
            Answered::Filter => "filter",
            Answered::Disk => "disk",
        };
        metrics::counter!("store_dedup_lookups_total", "answered" => source).increment(1);
        Ok(answer)
    }

    /// Dedup records held in the recent cache.
    pub fn dedup_cached(&self) -> usize {
        self.inner.dedup_index.cached()
    }

    /// Hash and time of the record at `global_seq` (what a snapshot at that seq is tied to).
    pub fn record_hash(&self, global_seq: u64) -> Result<([u8; HASH_LEN], u64)> {
        let bytes = self
            .inner
            .trees
            .events
            .get(global_seq.to_be_bytes())?
            .ok_or_else(|| corrupt(global_seq, "no such record"))?;
        let (record, hash) = Record::open(global_seq, &bytes)?;
        Ok((hash, record.recorded_at_ms))
    }

    /// Global seqs of the stored snapshots, oldest first.
    pub fn snapshot_seqs(&self) -> Result<Vec<u64>> {
        let mut seqs = Vec::new();
        for entry in self.inner.trees.snapshots.iter().keys() {
            seqs.push(be_u64(&entry?));
        }
        Ok(seqs)
    }

    /// The stored bytes of the snapshot at `global_seq`.
    pub fn snapshot_bytes(&self, global_seq: u64) -> Result<Option<Vec<u8>>> {
        Ok(self
            .inner
            .trees
            .snapshots
            .get(global_seq.to_be_bytes())?
            .map(|v| v.to_vec()))
    }

    /// Stores a snapshot (one atomic insert) and flushes it. Callers write only snapshots of
    /// durable state, so a snapshot on disk never runs ahead of the log.
    pub fn put_snapshot_bytes(&self, global_seq: u64, bytes: &[u8]) -> Result<()> {
        self.inner
            .trees
            .snapshots
            .insert(global_seq.to_be_bytes(), bytes)?;
        self.inner.trees.snapshots.flush()?;
        Ok(())
    }

    /// Removes the snapshot at `global_seq` (not flushed: a kept old snapshot is harmless).
    pub fn remove_snapshot(&self, global_seq: u64) -> Result<()> {
        self.inner
            .trees
            .snapshots
            .remove(global_seq.to_be_bytes())?;
        Ok(())
    }

    /// Flips one byte of a stored snapshot: failure injection for tests.
    #[cfg(any(test, feature = "test-util"))]
    pub fn corrupt_snapshot_for_test(&self, global_seq: u64, byte: usize) -> Result<()> {
        let mut value = self
            .snapshot_bytes(global_seq)?
            .ok_or_else(|| corrupt(global_seq, "no such snapshot"))?;
        let at = byte % value.len();
        value[at] ^= 0xff;
        self.put_snapshot_bytes(global_seq, &value)
    }

    /// Up to `limit` outbox entries after `after`, no further than `upto`.
    pub fn outbox_batch(
        &self,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<(u64, OutboxMessage)>> {
        let mut out = Vec::new();
        if after >= upto {
            return Ok(out);
        }
        let start = after + 1;
        for entry in self.inner.trees.outbox.range_u64(start, upto).take(limit) {
            let (key, value) = entry?;
            out.push((be_u64(&key), postcard::from_bytes(&value)?));
        }
        Ok(out)
    }

    /// The first outbox seq still waiting, if any.
    pub fn outbox_first(&self) -> Result<Option<u64>> {
        Ok(self.inner.trees.outbox.first()?.map(|(k, _)| be_u64(&k)))
    }

    /// Number of outbox entries waiting.
    pub fn outbox_len(&self) -> usize {
        self.inner.trees.outbox.len()
    }

    /// Removes published outbox entries. Not flushed: losing a removal only re-publishes, and
    /// the server drops the re-publish by its message id.
    pub fn outbox_remove(&self, seqs: &[u64]) -> Result<()> {
        // One remove at a time: removals need no atomicity, and a sled batch would wait for,
        // and hold up, every other reader and writer of the log.
        for seq in seqs {
            self.inner
                .trees
                .log
                .remove(self.inner.trees.outbox.key(&seq.to_be_bytes()))?;
        }
        Ok(())
    }

    /// Checks the whole log: gapless global and stream seqs, hash chain, indexes.
    ///
    /// Two sequential passes in constant memory, however long the history: the records in
    /// global order (gaps, hash chain, time), then the stream index in key order (each stream
    /// gapless from 1 and ending at its head). Both passes sum a digest of every
    /// `(stream, stream seq, global seq)` they see; equal sums mean the index and the records
    /// name the same events, without a random read per record.
    pub fn verify(&self) -> Result<VerifyReport> {
        self.verify_visiting(|_| Ok(()))
    }

    /// [`EventStore::verify`], handing every record (once its checks pass) to `visit` on the
    /// way, so a fold can ride along the same read of the log.
    pub fn verify_visiting(
        &self,
        mut visit: impl FnMut(&RecordView<'_>) -> Result<()>,
    ) -> Result<VerifyReport> {
        let digest_keys = std::hash::RandomState::new();
        // The stream index and the counts are read on a second thread while this one checks
        // (and folds) the records: two independent sequential reads, one core each.
        std::thread::scope(|scope| {
            let index_pass = scope.spawn(|| self.verify_index_pass(digest_keys.clone()));
            let records = self.verify_records_pass(digest_keys.clone(), &mut visit);
            let index = index_pass
                .join()
                .unwrap_or_else(|_| Err(corrupt(0, "the stream index check panicked")));
            let (records_digest, records) = records?;
            let (index_digest, streams, outbox_pending, dedup_records) = index?;
            if records_digest != index_digest {
                return Err(corrupt(
                    0,
                    "the stream index does not point at exactly the records",
                ));
            }
            Ok(VerifyReport {
                records,
                streams,
                outbox_pending,
                dedup_records,
            })
        })
    }

    /// The records in global order: gapless seqs, hash chain, time; each handed to `visit`.
    fn verify_records_pass(
        &self,
        digest_keys: std::hash::RandomState,
        visit: &mut impl FnMut(&RecordView<'_>) -> Result<()>,
    ) -> Result<(IndexDigest, u64)> {
        let mut digest = IndexDigest::with_keys(digest_keys);
        let mut prev_hash = GENESIS_HASH;
        let mut last_time = 0;
        let mut expected_seq = 1u64;
        let events = &self.inner.trees.events;
        read_records_ahead(events.tree.scan_prefix([events.prefix]), |key, value| {
            let seq = be_u64(&key[1..]);
            if seq != expected_seq {
                return Err(Error::Corrupt {
                    seq,
                    reason: format!("gap: expected global seq {expected_seq}"),
                });
            }
            let (record, hash) = RecordView::open_checked(seq, value)?;
            if record.global_seq != seq {
                return Err(corrupt(seq, "record seq differs from its key"));
            }
            if record.prev_hash != prev_hash {
                return Err(corrupt(seq, "hash chain broken"));
            }
            if record.recorded_at_ms < last_time {
                return Err(corrupt(seq, "time went backwards"));
            }
            digest.add(record.stream.as_bytes(), record.stream_seq, seq);
            visit(&record)?;
            prev_hash = hash;
            last_time = record.recorded_at_ms;
            expected_seq += 1;
            Ok(())
        })?;
        Ok((digest, expected_seq - 1))
    }

    /// The stream index in key order (each stream gapless from 1), then the outbox and dedup
    /// counts: `(digest, streams, outbox entries, dedup records)`.
    fn verify_index_pass(
        &self,
        digest_keys: std::hash::RandomState,
    ) -> Result<(IndexDigest, u64, u64, u64)> {
        let mut digest = IndexDigest::with_keys(digest_keys);
        let mut streams_seen = 0;
        let mut current: Option<(Vec<u8>, u64)> = None;
        let streams = &self.inner.trees.streams;
        for entry in streams.tree.scan_prefix([streams.prefix]) {
            let (key, value) = entry?;
            let (stream, names) = parse_stream_index(&key[1..], &value)
                .ok_or_else(|| corrupt(0, "malformed stream index key"))?;
            for (stream_seq, global_seq) in names.pairs() {
                match &mut current {
                    Some((name, last)) if name.as_slice() == stream => {
                        if stream_seq != *last + 1 {
                            return Err(Error::Corrupt {
                                seq: global_seq,
                                reason: format!(
                                    "stream {} jumps from {last} to {stream_seq}",
                                    String::from_utf8_lossy(stream)
                                ),
                            });
                        }
                        *last = stream_seq;
                    }
                    _ => {
                        if stream_seq != 1 {
                            return Err(Error::Corrupt {
                                seq: global_seq,
                                reason: format!(
                                    "stream {} starts at {stream_seq}",
                                    String::from_utf8_lossy(stream)
                                ),
                            });
                        }
                        streams_seen += 1;
                        current = Some((stream.to_vec(), stream_seq));
                    }
                }
                digest.add(stream, stream_seq, global_seq);
            }
        }
        let outbox_pending = self.inner.trees.outbox.len() as u64;
        let dedup_records = self.inner.trees.dedup.len() as u64;
        Ok((digest, streams_seen, outbox_pending, dedup_records))
    }

    /// Flushes everything written so far. The writer stops, after a final flush, when the last
    /// handle is dropped; dropping waits for it, so the directory can be reopened right after.
    pub fn flush(&self) -> Result<()> {
        self.inner.db.flush()?;
        Ok(())
    }

    /// Whether this open loaded the dedup filter saved at the last clean close (else it scanned
    /// the dedup keys).
    pub fn dedup_filter_loaded(&self) -> bool {
        self.inner.dedup_filter_loaded
    }

    /// Size of the database on disk, in bytes.
    pub fn size_on_disk(&self) -> Result<u64> {
        Ok(self.inner.db.size_on_disk()?)
    }

    /// Points a stream index entry at another global seq, or removes it (`None`): failure
    /// injection for tests of `verify`.
    #[cfg(any(test, feature = "test-util"))]
    pub fn tamper_stream_index_for_test(
        &self,
        stream: &str,
        stream_seq: u64,
        global_seq: Option<u64>,
    ) -> Result<()> {
        if is_packed_stream(stream) {
            let key = packed_stream_key(stream);
            let value = self.inner.trees.streams.get(&key)?.unwrap_or_default();
            let mut pairs: Vec<(u64, u64)> = StreamIndexNames::Packed(&value).pairs().collect();
            pairs.retain(|(seq, _)| *seq != stream_seq);
            if let Some(global_seq) = global_seq {
                pairs.push((stream_seq, global_seq));
                pairs.sort_unstable();
            }
            let value: Vec<u8> = pairs
                .iter()
                .flat_map(|&(stream_seq, global_seq)| packed_pair(stream_seq, global_seq))
                .collect();
            self.inner.trees.streams.insert(&key, value)?;
            self.inner.db.flush()?;
            return Ok(());
        }
        let key = stream_key(stream, stream_seq);
        match global_seq {
            Some(seq) => self
                .inner
                .trees
                .streams
                .insert(&key, seq.to_be_bytes().to_vec())?,
            None => {
                self.inner
                    .trees
                    .streams
                    .tree
                    .remove(self.inner.trees.streams.key(&key))?;
            }
        }
        self.inner.db.flush()?;
        Ok(())
    }

    /// Rewrites an order stream's packed index key as a key per record, the layout earlier
    /// versions wrote: for tests of logs written before packing.
    #[cfg(any(test, feature = "test-util"))]
    pub fn unpack_stream_index_for_test(&self, stream: &str) -> Result<()> {
        let streams = &self.inner.trees.streams;
        let key = packed_stream_key(stream);
        let value = streams.get(&key)?.unwrap_or_default();
        for (stream_seq, global_seq) in StreamIndexNames::Packed(&value).pairs() {
            streams.insert(
                stream_key(stream, stream_seq),
                global_seq.to_be_bytes().to_vec(),
            )?;
        }
        streams.tree.remove(streams.key(&key))?;
        self.inner.db.flush()?;
        Ok(())
    }

    /// Flips one byte of a stored record's value: failure injection for tests of `verify`.
    #[cfg(any(test, feature = "test-util"))]
    pub fn corrupt_record_for_test(&self, global_seq: u64, byte: usize) -> Result<()> {
        let key = global_seq.to_be_bytes();
        let mut value = self
            .inner
            .trees
            .events
            .get(key)?
            .ok_or_else(|| corrupt(global_seq, "no such record"))?
            .to_vec();
        let at = byte % value.len();
        value[at] ^= 0xff;
        self.inner.trees.events.insert(key, value)?;
        self.inner.db.flush()?;
        Ok(())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the queue ends the writer's loop; joining makes the close deterministic.
        drop(self.writer.take());
        let ended = match self.thread.lock() {
            Ok(mut thread) => thread.take().and_then(|t| t.join().ok()).flatten(),
            Err(_) => None,
        };
        // Only a writer that flushed everything and stopped cleanly leaves a filter that is
        // exact for the disk; after a failure the next open scans.
        if let Some(head) = ended {
            let saved = self
                .dedup_index
                .to_bytes(head.global_seq, head.outbox_seq)
                .and_then(|bytes| write_durably(&self.path.join(DEDUP_FILTER_FILE), &bytes));
            if let Err(err) = saved {
                tracing::warn!(error = %err, "saving the dedup filter failed; the next start scans the dedup keys");
            }
        }
    }
}

/// The dedup index of a store being opened: the filter saved at the last clean close when it
/// fits this log, else one built by scanning every dedup key.
///
/// The saved filter is removed (durably) before anything is written, so a crash from here on
/// leaves none behind and the next open scans: a filter that misses a durable key would let a
/// redelivered message be handled twice.
fn open_dedup_index(
    trees: &Trees,
    config: &StoreConfig,
    head: &Head,
) -> Result<(DedupIndex, bool)> {
    let path = config.path.join(DEDUP_FILTER_FILE);
    if let Some(saved) = take_durably(&path)? {
        match DedupIndex::from_bytes(
            &saved,
            head.global_seq,
            head.outbox_seq,
            config.dedup_filter_keys,
            config.dedup_cache_entries,
        ) {
            Ok(index) => {
                tracing::debug!(
                    dedup_keys = index.keys(),
                    filter_bytes = index.filter_bytes(),
                    "dedup filter loaded"
                );
                return Ok((index, true));
            }
            Err(why) => {
                tracing::info!(%why, "saved dedup filter not used; scanning the dedup keys")
            }
        }
    }
    let on_disk = trees.dedup.len();
    let index = DedupIndex::new(
        config.dedup_filter_keys.max(on_disk.saturating_mul(2)),
        config.dedup_cache_entries,
    );
    for entry in trees.dedup.iter() {
        let (key, _) = entry?;
        index.insert_durable(&String::from_utf8_lossy(&key));
    }
    tracing::debug!(
        dedup_keys = on_disk,
        filter_bytes = index.filter_bytes(),
        "dedup filter built"
    );
    Ok((index, false))
}

fn corrupt(seq: u64, reason: &str) -> Error {
    Error::Corrupt {
        seq,
        reason: reason.to_owned(),
    }
}

fn validate_stream_id(stream: &str) -> Result<()> {
    if stream.is_empty() || stream.len() > STREAM_ID_MAX_LEN || stream.contains('\0') {
        return Err(Error::InvalidStreamId(stream.to_owned()));
    }
    Ok(())
}

/// Writes a file whole or not at all: a temporary file, fsynced, renamed over `path`, and the
/// directory fsynced so the rename survives a crash.
fn write_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    let temporary = path.with_extension("tmp");
    {
        let mut file = std::fs::File::create(&temporary)?;
        std::io::Write::write_all(&mut file, bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&temporary, path)?;
    sync_parent(path)
}

/// Reads and removes a file, the removal durable before this returns; `None` if there is none.
fn take_durably(path: &Path) -> Result<Option<Vec<u8>>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err.into()),
    };
    std::fs::remove_file(path)?;
    sync_parent(path)?;
    Ok(Some(bytes))
}

fn sync_parent(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// An order-independent sum over `(stream, stream seq, global seq)` triples: two passes over
/// the same set of triples, in any order, end with equal sums.
///
/// A triple's term is two keyed SipHashes (128 bits), keyed at random per `verify`: it catches
/// an index that names other records than the log holds, at a fraction of a cryptographic
/// hash's cost (the records themselves are checked by their blake3 chain).
struct IndexDigest {
    keys: std::hash::RandomState,
    sum: u128,
}

impl IndexDigest {
    fn with_keys(keys: std::hash::RandomState) -> Self {
        Self { keys, sum: 0 }
    }

    fn add(&mut self, stream: &[u8], stream_seq: u64, global_seq: u64) {
        use std::hash::{BuildHasher, Hasher};
        let term = |salt: u8| {
            let mut hasher = self.keys.build_hasher();
            hasher.write_u8(salt);
            hasher.write(stream);
            hasher.write_u64(stream_seq);
            hasher.write_u64(global_seq);
            hasher.finish()
        };
        let term = (u128::from(term(0)) << 64) | u128::from(term(1));
        self.sum = self.sum.wrapping_add(term);
    }
}

impl PartialEq for IndexDigest {
    fn eq(&self, other: &Self) -> bool {
        self.sum == other.sum
    }
}

/// Entries a read-ahead chunk carries.
const READ_AHEAD_CHUNK: usize = 512;
/// Chunks read ahead of the caller.
const READ_AHEAD_CHUNKS: usize = 4;

/// Hands every record of `entries` (events keyspace: `e` + global seq -> sealed record) to
/// `work`, in order, its hash already checked, while a second thread reads and hash-checks
/// the next chunks: sled's page reads and the hashing on one core, the caller's decoding and
/// folding on the other. Stops at the first error, `work`'s included.
fn read_records_ahead(
    entries: impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>> + Send,
    mut work: impl FnMut(&[u8], &[u8]) -> Result<()>,
) -> Result<()> {
    type Chunk = Vec<Result<(sled::IVec, sled::IVec)>>;
    let (sender, receiver) = std::sync::mpsc::sync_channel::<Chunk>(READ_AHEAD_CHUNKS);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut chunk = Vec::with_capacity(READ_AHEAD_CHUNK);
            for entry in entries {
                // The records' own hashes are checked here too, off the caller's core.
                let entry = entry.map_err(Error::from).and_then(|(key, value)| {
                    crate::record::check_record_hash(be_u64(&key[1..]), &value)?;
                    Ok((key, value))
                });
                let failed = entry.is_err();
                chunk.push(entry);
                if chunk.len() == READ_AHEAD_CHUNK || failed {
                    let full = std::mem::replace(&mut chunk, Vec::with_capacity(READ_AHEAD_CHUNK));
                    // The caller stopped (an error): stop reading.
                    if sender.send(full).is_err() || failed {
                        return;
                    }
                }
            }
            if !chunk.is_empty() {
                let _ = sender.send(chunk);
            }
        });
        for chunk in receiver {
            for entry in chunk {
                let (key, value) = entry?;
                work(&key, &value)?;
            }
        }
        Ok(())
    })
}

/// `(stream, stream seq)` of a stream index key (`stream \0 seq`).
fn split_stream_key(key: &[u8]) -> Option<(&[u8], u64)> {
    let split = key.len().checked_sub(9)?;
    let (stream, rest) = key.split_at(split);
    (rest[0] == 0 && !stream.is_empty()).then(|| (stream, be_u64(&rest[1..])))
}

/// Suffix of a packed stream index key (see [`is_packed_stream`]), after the stream's prefix
/// where a per-record key has its 8-byte stream seq: it sorts after every one of them, and no
/// per-record key ends like it (their separator byte is 0).
const PACKED_SUFFIX: [u8; 9] = [0xFF; 9];

/// Whether a stream's index is one packed key, `(stream seq, global seq)` pairs rewritten at each
/// append, rather than a key per record: an order's own stream (`order-<id>`), a handful of
/// records written within seconds, in every service. sled holds an in-memory entry per page of
/// its tree, so live keys are what memory grows with: this keeps one per order instead of one
/// per record. Entity streams (a SKU's, a user's) grow for years and keep a key per record.
/// A stream written by an earlier version has per-record keys; its later records go to the
/// packed key, which sorts after them.
fn is_packed_stream(stream: &str) -> bool {
    stream.starts_with(CORRELATION_STREAM_PREFIX)
}

fn packed_stream_key(stream: &str) -> Vec<u8> {
    let mut key = stream_prefix(stream);
    key.extend_from_slice(&PACKED_SUFFIX);
    key
}

/// One `(stream seq, global seq)` pair of a packed stream index value, as
/// [`StreamIndexNames::pairs`] reads it back.
fn packed_pair(stream_seq: u64, global_seq: u64) -> [u8; 16] {
    let mut pair = [0u8; 16];
    pair[..8].copy_from_slice(&stream_seq.to_be_bytes());
    pair[8..].copy_from_slice(&global_seq.to_be_bytes());
    pair
}

/// The records one key of the stream index names, in stream order.
enum StreamIndexNames<'a> {
    /// A per-record key.
    One(u64, u64),
    /// A packed key's `(stream seq, global seq)` pairs, 16 bytes each.
    Packed(&'a [u8]),
}

impl StreamIndexNames<'_> {
    fn pairs(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let (one, packed): (Option<(u64, u64)>, &[u8]) = match self {
            Self::One(stream_seq, global_seq) => (Some((*stream_seq, *global_seq)), &[]),
            Self::Packed(pairs) => (None, pairs),
        };
        one.into_iter().chain(
            packed
                .chunks_exact(16)
                .map(|pair| (be_u64(&pair[..8]), be_u64(&pair[8..]))),
        )
    }

    fn last(&self) -> Option<(u64, u64)> {
        self.pairs().last()
    }
}

/// A stream index key (without the keyspace byte) and its value: the stream and what it names.
fn parse_stream_index<'a>(
    key: &'a [u8],
    value: &'a [u8],
) -> Option<(&'a [u8], StreamIndexNames<'a>)> {
    if let Some(stream) = key
        .strip_suffix(&PACKED_SUFFIX)
        .and_then(|rest| rest.strip_suffix(&[0]))
    {
        if stream.is_empty() || value.len() % 16 != 0 {
            return None;
        }
        return Some((stream, StreamIndexNames::Packed(value)));
    }
    let (stream, stream_seq) = split_stream_key(key)?;
    Some((stream, StreamIndexNames::One(stream_seq, be_u64(value))))
}

fn be_u64(bytes: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    let n = bytes.len().min(8);
    buf[8 - n..].copy_from_slice(&bytes[bytes.len() - n..]);
    u64::from_be_bytes(buf)
}

/// `stream 0`: the stream index keys of a stream start with it.
fn stream_prefix(stream: &str) -> Vec<u8> {
    let mut prefix = Vec::with_capacity(stream.len() + 9);
    prefix.extend_from_slice(stream.as_bytes());
    prefix.push(0);
    prefix
}

fn stream_key(stream: &str, seq: u64) -> Vec<u8> {
    let mut key = stream_prefix(stream);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

fn validate_index_name(index: &str) -> Result<()> {
    if index.is_empty() || index.len() > INDEX_NAME_MAX_LEN || index.contains('\0') {
        return Err(Error::InvalidStreamId(format!("index name {index:?}")));
    }
    Ok(())
}

/// `<index name> 0 <key>`: the NUL ends the name, so one index's keys never run into another's.
fn index_key(index: &str, key: &[u8]) -> Vec<u8> {
    let mut full = Vec::with_capacity(index.len() + 1 + key.len());
    full.extend_from_slice(index.as_bytes());
    full.push(0);
    full.extend_from_slice(key);
    full
}

/// The smallest key above every key starting with `prefix`, or `None` when there is none
/// (`prefix` is all 0xff).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The stream a correlation owns, `order-<correlation id>`: its records are read through the
/// stream index, so they need no correlation key of their own.
pub fn correlation_stream(correlation_id: &str) -> String {
    format!("{CORRELATION_STREAM_PREFIX}{correlation_id}")
}

fn is_correlation_stream(stream: &str, correlation_id: &str) -> bool {
    stream
        .strip_prefix(CORRELATION_STREAM_PREFIX)
        .is_some_and(|rest| rest == correlation_id)
}

fn correlation_key(correlation_id: &str, seq: u64) -> Vec<u8> {
    stream_key(correlation_id, seq)
}

fn load_head(trees: &Trees) -> Result<Head> {
    let (global_seq, hash, recorded_at_ms) = match trees.events.last()? {
        Some((key, value)) => {
            let seq = be_u64(&key);
            let (record, hash) = Record::open(seq, &value)?;
            assert_eq!(record.global_seq, seq, "log key and record disagree");
            (seq, hash, record.recorded_at_ms)
        }
        None => (0, GENESIS_HASH, 0),
    };
    let outbox_seq = trees.outbox.last()?.map(|(k, _)| be_u64(&k)).unwrap_or(0);
    // Outbox seqs of removed entries may have been higher; dedup records remember none of
    // them, so reusing a seq is harmless (it only orders the relay's work).
    Ok(Head {
        global_seq,
        hash,
        recorded_at_ms,
        outbox_seq,
    })
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

struct Writer {
    db: sled::Db,
    trees: Trees,
    dedup_index: Arc<DedupIndex>,
    head: Head,
    flush: FlushPolicy,
    durable: watch::Sender<Durable>,
    /// Ticket of the last request answered.
    answered_ticket: u64,
    /// Cache of stream versions, filled on first use from the stream index; emptied when it
    /// reaches `stream_cache_entries` (between groups), so it does not grow with the orders.
    streams: HashMap<String, u64>,
    stream_cache_entries: usize,
}

impl Writer {
    /// Applies commit groups until the queue closes; returns the head it left when every
    /// commit was flushed, `None` when it stopped on a failure.
    fn run(mut self, mut queue: mpsc::Receiver<WriteRequest>) -> Option<Head> {
        let max_batch = match self.flush {
            FlushPolicy::GroupCommit => GROUP_COMMIT_MAX_BATCH,
            FlushPolicy::EveryCommit => 1,
        };
        let mut batch: Vec<WriteRequest> = Vec::with_capacity(max_batch);
        let mut results: Vec<Result<CommitOutcome>> = Vec::with_capacity(max_batch);
        // Waits for one commit, then takes whatever else is queued: the group.
        while queue.blocking_recv_many(&mut batch, max_batch) > 0 {
            let applying = std::time::Instant::now();
            // The whole group goes to sled as ONE atomic batch: a sled batch waits for every
            // reader of the tree, so one per group instead of one per commit.
            let mut group = Group::default();
            for request in &batch {
                results.push(self.plan(&request.commit, &mut group));
            }
            // Marked before they can be read from disk, unmarked once flushed (dedup.rs).
            self.dedup_index.applying(group.dedup.keys());
            if let Err(err) = self.trees.log.apply_batch(group.batch) {
                // The planned head and caches are now ahead of the disk: stop writing.
                tracing::error!(error = %err, "applying a commit group failed; the writer stops");
                for request in batch.drain(..) {
                    let _ = request.reply.send(Err(Error::Storage(err.clone())));
                }
                return None;
            }
            if self.streams.len() >= self.stream_cache_entries {
                // Only between groups: heads planned by the group are in the cache alone until
                // its batch is applied, and a miss reads the stream index. A miss costs one read;
                // most streams (one per order) are written a few times within seconds, then never.
                self.streams.clear();
            }
            let flushing = std::time::Instant::now();
            #[cfg(any(test, feature = "test-util"))]
            crate::testing_hooks::hold_flush();
            let flushed = self.db.flush();
            metrics::histogram!("store_commit_batch_size").record(batch.len() as f64);
            metrics::histogram!("store_apply_seconds")
                .record(flushing.duration_since(applying).as_secs_f64());
            metrics::histogram!("store_flush_seconds").record(flushing.elapsed().as_secs_f64());
            match flushed {
                Ok(_) => {
                    // Dedup keys become visible only once durable: a lookup must never answer
                    // "seen" for an input whose commit a crash could still undo.
                    self.dedup_index.flushed(group.dedup.into_iter());
                    if let Some(last) = batch.last() {
                        self.answered_ticket = last.ticket;
                    }
                    self.durable.send_replace(Durable {
                        global_seq: self.head.global_seq,
                        outbox_seq: self.head.outbox_seq,
                        ticket: self.answered_ticket,
                    });
                    for (request, result) in batch.drain(..).zip(results.drain(..)) {
                        let _ = request.reply.send(result);
                    }
                }
                Err(err) => {
                    // What was applied may or may not be on disk, and later commits would build
                    // on it: stop, so nothing after this point is ever reported durable.
                    tracing::error!(error = %err, "flush failed; failing the whole batch and stopping the writer");
                    for request in batch.drain(..) {
                        let _ = request.reply.send(Err(Error::Storage(err.clone())));
                    }
                    return None;
                }
            }
        }
        match self.db.flush() {
            Ok(_) => Some(self.head),
            Err(err) => {
                tracing::error!(error = %err, "final flush failed");
                None
            }
        }
    }

    fn stream_version(&mut self, stream: &str) -> Result<u64> {
        if let Some(v) = self.streams.get(stream) {
            return Ok(*v);
        }

        let v = self.trees.stream_head(stream)?;
        self.streams.insert(stream.to_owned(), v);
        Ok(v)
    }

    /// Checks a commit and adds its writes to the group; head and caches move at once, so the
    /// next commit of the group sees this one.
    fn plan(&mut self, commit: &Commit, group: &mut Group) -> Result<CommitOutcome> {
        // A known input is answered with what it produced before any version check: a retried
        // commit (its expected versions now stale) must read as a duplicate, not a conflict.
        // The writer is the only one writing dedup records, so this read cannot go stale.
        if let Some(key) = &commit.dedup_key {
            if let Some(record) = group.dedup.get(key) {
                return Ok(CommitOutcome::Duplicate(record.clone()));
            }
            // Every earlier group is flushed and in the filter, so the filter rules out a new
            // key without a disk read.
            if self.dedup_index.may_contain(key) {
                if let Some(existing) = self.trees.dedup.get(key.as_bytes())? {
                    return Ok(CommitOutcome::Duplicate(postcard::from_bytes(&existing)?));
                }
            }
        }
        // Plan every key and value outside the transaction; the closure only checks and writes.
        let recorded_at_ms = now_ms().max(self.head.recorded_at_ms);
        let mut planned: Vec<(u64, &str, Vec<u8>)> = Vec::new();
        // (stream, stream seq, global seq) of every record, for the stream index.
        let mut stream_index: Vec<(&str, u64, u64)> = Vec::new();
        let mut new_heads: Vec<(String, u64, u64)> = Vec::new();
        let mut seq = self.head.global_seq;
        let mut hash = self.head.hash;
        // A commit may append to one stream more than once (events of several streams
        // interleaved); later appends see the earlier ones of the same commit.
        let mut planned_versions: HashMap<&str, u64> = HashMap::new();
        for append in &commit.appends {
            let actual = match planned_versions.get(append.stream.as_str()) {
                Some(v) => *v,
                None => self.stream_version(&append.stream)?,
            };
            // Read now what a packed index holds so far: every fallible step comes before this
            // commit's first write to the group's batch. (A stream with no record has none.)
            if is_packed_stream(&append.stream)
                && actual > 0
                && !group.packed.contains_key(&append.stream)
            {
                let before = self.trees.streams.get(packed_stream_key(&append.stream))?;
                group.packed.insert(
                    append.stream.clone(),
                    before.map(|v| v.to_vec()).unwrap_or_default(),
                );
            }
            if append.expected_version != crate::record::ANY_VERSION
                && actual != append.expected_version
            {
                return Err(Error::VersionConflict {
                    stream: append.stream.clone(),
                    expected: append.expected_version,
                    actual,
                });
            }
            let mut stream_seq = actual;
            for event in &append.events {
                seq += 1;
                stream_seq += 1;
                let record = Record {
                    global_seq: seq,
                    stream: append.stream.clone(),
                    stream_seq,
                    event_type: event.event_type.clone(),
                    schema_version: event.schema_version,
                    recorded_at_ms,
                    meta: commit.meta.clone(),
                    payload: event.payload.clone(),
                    published: commit.outbox.iter().map(|m| m.msg_id.clone()).collect(),
                    prev_hash: hash,
                };
                let (bytes, next_hash) = record.seal()?;
                hash = next_hash;
                planned.push((seq, append.stream.as_str(), bytes));
                stream_index.push((append.stream.as_str(), stream_seq, seq));
            }
            planned_versions.insert(append.stream.as_str(), stream_seq);
            match new_heads.iter_mut().find(|(s, _, _)| *s == append.stream) {
                Some(entry) => entry.2 = stream_seq,
                None => new_heads.push((append.stream.clone(), actual, stream_seq)),
            }
        }
        let mut outbox_seq = self.head.outbox_seq;
        let mut outbox_rows = Vec::with_capacity(commit.outbox.len());
        for message in &commit.outbox {
            outbox_seq += 1;
            outbox_rows.push((outbox_seq, postcard::to_stdvec(message)?));
        }
        let dedup_value = match &commit.dedup_key {
            Some(_) => Some(postcard::to_stdvec(&DedupRecord {
                global_seq: seq,
                recorded_at_ms,
                outbox: commit.outbox.clone(),
            })?),
            None => None,
        };
        let correlation = &commit.meta.correlation_id;
        let t = &self.trees;
        // The writer is the only one writing these keys, so the checks above (dedup record,
        // stream versions from its cache) cannot go stale before this batch lands.
        let batch = &mut group.batch;
        for (seq, stream, bytes) in &planned {
            batch.insert(t.events.key(&seq.to_be_bytes()), bytes.as_slice());
            // Records on the correlation's own stream are found through the stream index.
            if !correlation.is_empty() && !is_correlation_stream(stream, correlation) {
                batch.insert(
                    t.correlation.key(&correlation_key(correlation, *seq)),
                    &[] as &[u8],
                );
            }
        }
        let mut packed_touched: Vec<&str> = Vec::new();
        for &(stream, stream_seq, seq) in &stream_index {
            if !is_packed_stream(stream) {
                batch.insert(
                    t.streams.key(&stream_key(stream, stream_seq)),
                    &seq.to_be_bytes(),
                );
                continue;
            }
            let pair = packed_pair(stream_seq, seq);
            // Loaded while planning, unless these are the stream's first records.
            match group.packed.get_mut(stream) {
                Some(pairs) => pairs.extend_from_slice(&pair),
                None => {
                    group.packed.insert(stream.to_owned(), pair.to_vec());
                }
            }
            if !packed_touched.contains(&stream) {
                packed_touched.push(stream);
            }
        }
        // The whole value again: a later commit of the group to the same stream replaces it.
        for stream in packed_touched {
            if let Some(pairs) = group.packed.get(stream) {
                batch.insert(t.streams.key(&packed_stream_key(stream)), pairs.as_slice());
            }
        }
        for (seq, bytes) in &outbox_rows {
            batch.insert(t.outbox.key(&seq.to_be_bytes()), bytes.as_slice());
        }
        for entry in &commit.index {
            batch.insert(
                t.index.key(&index_key(&entry.index, &entry.key)),
                entry.value.as_slice(),
            );
        }
        if let (Some(key), Some(value)) = (&commit.dedup_key, &dedup_value) {
            batch.insert(t.dedup.key(key.as_bytes()), value.as_slice());
            group
                .dedup
                .insert(key.clone(), postcard::from_bytes(value)?);
        }
        let first_seq = self.head.global_seq + 1;
        self.head.global_seq = seq;
        self.head.hash = hash;
        self.head.recorded_at_ms = recorded_at_ms;
        self.head.outbox_seq = outbox_seq;
        for (stream, _, head) in new_heads {
            self.streams.insert(stream, head);
        }
        Ok(CommitOutcome::Committed {
            first_seq,
            last_seq: seq,
        })
    }
}

/// The writes of one commit group, applied together.
#[derive(Default)]
struct Group {
    batch: sled::Batch,
    /// Packed stream index values (see [`is_packed_stream`]) as the group leaves them.
    packed: HashMap<String, Vec<u8>>,
    /// Dedup records written by the group so far, so a repeated input within it is a duplicate.
    dedup: HashMap<String, DedupRecord>,
}
