//! A domain's live state: the fold of its log kept in memory, and the one path that changes it.
//!
//! `execute` is the handler's transaction: check the input's dedup record, `decide`, `evolve`,
//! then append events + dedup record + outbox entries in one commit, and resolve once durable.
//! Decisions are serialised by one lock; the lock is released before waiting for the flush, so
//! many decisions share one group commit.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::domain::Domain;
use crate::error::{Error, Result};
use crate::event_store::{EventStore, ReplayBound};
use crate::record::{
    Commit, CommitOutcome, DedupRecord, EventMeta, IndexEntry, NewEvent, OutboxMessage, Record,
    RecordView, StreamAppend, ANY_VERSION,
};

/// Event type of a recorded decision that changed no state (timeline notes).
pub const NOTE_EVENT_TYPE: &str = "_note";
/// Stream that holds a service's notes.
pub const NOTE_STREAM: &str = "_notes";

/// A decision that changed no state, kept for the timeline ("duplicate ignored", "re-drive sent").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    /// Short machine-readable kind, e.g. `duplicate_ignored`.
    pub kind: String,
    /// Human-readable detail.
    pub detail: String,
}

/// Context of one command: who caused it and under which dedup key.
#[derive(Debug, Clone, Default)]
pub struct Execution {
    /// Metadata stamped on every event.
    pub meta: EventMeta,
    /// Dedup key `(orderId, domain, action)` of the input; `None` for commands without one.
    pub dedup_key: Option<String>,
}

/// What `execute` did.
#[derive(Debug, Clone, PartialEq)]
pub enum Executed<E> {
    /// Decided and durable.
    Committed {
        /// The events written.
        events: Vec<E>,
        /// The messages queued for publishing.
        outbox: Vec<OutboxMessage>,
    },
    /// The input was handled before; nothing was decided. This is what it produced then.
    Duplicate(DedupRecord),
}

/// Cheap cloneable handle to a domain's live state and log.
pub struct Live<D: Domain> {
    store: EventStore,
    inner: Arc<tokio::sync::Mutex<Inner<D>>>,
    fatal: CancellationToken,
}

impl<D: Domain> Clone for Live<D> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            inner: self.inner.clone(),
            fatal: self.fatal.clone(),
        }
    }
}

struct Inner<D: Domain> {
    state: D::State,
    /// Dedup keys of commits queued but not yet durable.
    pending: HashSet<String>,
    /// Cold keys ([`Domain::cold_key`]) of commits queued but not yet durable, with the ticket
    /// of the last one: the log cannot be read for such a key until that ticket is durable.
    in_flight: HashMap<String, u64>,
}

/// A state rebuilt from the log, and how.
#[derive(Debug, Clone)]
pub struct Rebuilt<S> {
    /// The state.
    pub state: S,
    /// Events folded on top of the snapshot (or from seq 1).
    pub folded: u64,
    /// Seq of the snapshot it started from, if any.
    pub snapshot_seq: Option<u64>,
}

/// Folds the log (within a bound) into a state; also returns the number of events folded.
///
/// Starts from the newest usable snapshot inside the bound (see [`crate::snapshot`]) and folds
/// only the records after it.
pub fn rebuild<D: Domain>(store: &EventStore, bound: ReplayBound) -> Result<(D::State, u64)> {
    let rebuilt = rebuild_report::<D>(store, bound)?;
    Ok((rebuilt.state, rebuilt.folded))
}

/// [`rebuild`], also saying which snapshot it started from.
pub fn rebuild_report<D: Domain>(
    store: &EventStore,
    bound: ReplayBound,
) -> Result<Rebuilt<D::State>> {
    let start = crate::snapshot::newest_within::<D>(store, bound)?;
    fold_from::<D>(store, start, bound)
}

/// Folds the whole log from seq 1 within a bound, ignoring snapshots.
pub fn rebuild_from_scratch<D: Domain>(
    store: &EventStore,
    bound: ReplayBound,
) -> Result<Rebuilt<D::State>> {
    fold_from::<D>(store, None, bound)
}

fn fold_from<D: Domain>(
    store: &EventStore,
    start: Option<crate::snapshot::Snapshot<D::State>>,
    bound: ReplayBound,
) -> Result<Rebuilt<D::State>> {
    let (mut state, from, snapshot_seq) = match start {
        Some(s) => (s.state, s.global_seq + 1, Some(s.global_seq)),
        None => (D::State::default(), 1, None),
    };
    let mut folded = 0;
    store.for_each_record(from, bound, |record| {
        if let Some(event) = decode_view::<D>(record)? {
            D::evolve(&mut state, &event);
            folded += 1;
        }
        Ok(())
    })?;
    Ok(Rebuilt {
        state,
        folded,
        snapshot_seq,
    })
}

/// Brings every entry that left memory back into a folded state, from the log (see
/// [`crate::resident`]): the state then holds an entry for every key ever recorded, as a state
/// without retention would. For offline tools (the audit) that judge every order; a service never
/// does this. Events are grouped by their records' correlation id, the key hydration reads by.
pub fn hydrate_all<D: Domain>(store: &EventStore, state: &mut D::State) -> Result<()> {
    let mut by_key: HashMap<String, Vec<D::Event>> = HashMap::new();
    for record in store.read_all(1, ReplayBound::default()) {
        let record = record?;
        if record.event_type == NOTE_EVENT_TYPE {
            continue;
        }
        let event = decode_event::<D>(&record)?;
        by_key
            .entry(record.meta.correlation_id.clone())
            .or_default()
            .push(event);
    }
    for (key, events) in &by_key {
        if !D::is_resident(state, key) {
            D::hydrate(state, key, events);
        }
    }
    Ok(())
}

/// Decodes a record's payload as the domain's event, refusing unknown schema versions.
pub fn decode_event<D: Domain>(record: &Record) -> Result<D::Event> {
    if record.schema_version != D::EVENT_VERSION {
        return Err(Error::UnsupportedVersion(record.schema_version));
    }
    record.decode::<D::Event>().map_err(|e| Error::Corrupt {
        seq: record.global_seq,
        reason: format!("{} does not decode: {e}", record.event_type),
    })
}

/// Decodes a record read in place as the domain's event; `None` for a note, which no fold
/// applies.
pub fn decode_view<D: Domain>(record: &RecordView<'_>) -> Result<Option<D::Event>> {
    if record.event_type == NOTE_EVENT_TYPE {
        return Ok(None);
    }
    if record.schema_version != D::EVENT_VERSION {
        return Err(Error::UnsupportedVersion(record.schema_version));
    }
    record
        .decode::<D::Event>()
        .map(Some)
        .map_err(|e| Error::Corrupt {
            seq: record.global_seq,
            reason: format!("{} does not decode: {e}", record.event_type),
        })
}

/// A record as JSON for timelines and exports: metadata plus the decoded payload.
pub fn render_record<D: Domain>(domain: &str, record: &Record) -> serde_json::Value {
    let payload = if record.event_type == NOTE_EVENT_TYPE {
        record
            .decode::<Note>()
            .ok()
            .and_then(|n| serde_json::to_value(n).ok())
    } else {
        decode_event::<D>(record)
            .ok()
            .and_then(|e| serde_json::to_value(e).ok())
    };
    let event_type = if record.event_type == NOTE_EVENT_TYPE {
        record
            .decode::<Note>()
            .map(|n| format!("note.{}", n.kind))
            .unwrap_or_else(|_| record.event_type.clone())
    } else {
        record.event_type.clone()
    };
    serde_json::json!({
        "globalSeq": record.global_seq,
        "domain": domain,
        "stream": record.stream,
        "streamSeq": record.stream_seq,
        "type": event_type,
        "schemaVersion": record.schema_version,
        "recordedAtMs": record.recorded_at_ms,
        "orderId": record.meta.correlation_id,
        "traceId": record.meta.trace_id,
        "traceparent": record.meta.traceparent,
        "causation": record.meta.causation_id,
        "messageIds": record.published,
        "payload": payload.unwrap_or(serde_json::Value::Null),
    })
}

impl<D: Domain> Live<D> {
    /// Rebuilds the state: the newest usable snapshot plus the log after it.
    pub fn open(store: EventStore) -> Result<Self> {
        let Rebuilt {
            state,
            folded,
            snapshot_seq,
        } = rebuild_report::<D>(&store, ReplayBound::default())?;
        tracing::info!(events = folded, snapshot_seq, head = store.head(), path = %store.path().display(), "state rebuilt from log");
        Ok(Self {
            store,
            inner: Arc::new(tokio::sync::Mutex::new(Inner {
                state,
                pending: HashSet::new(),
                in_flight: HashMap::new(),
            })),
            fatal: CancellationToken::new(),
        })
    }

    /// Takes a snapshot of the state and stores it, keeping the newest `keep`. Returns the seq it
    /// was taken at, or `None` when the log is empty.
    ///
    /// The state is cloned under the decision lock (cost: one copy of the state, O(its size),
    /// while decisions wait) together with a marker commit queued right behind every commit the
    /// state holds; the marker's answer says up to which global seq that is, and comes only
    /// once all of it is durable. Encoding and writing happen after, off the lock, on a
    /// blocking thread.
    pub async fn snapshot(&self, keep: usize) -> Result<Option<u64>> {
        let (state, marker) = {
            let inner = self.inner.lock().await;
            let marker = self.store.enqueue(Commit::default()).await?;
            (inner.state.clone(), marker)
        };
        let seq = match marker.await? {
            CommitOutcome::Committed { last_seq, .. } => last_seq,
            CommitOutcome::Duplicate(_) => unreachable!("a marker has no dedup key"),
        };
        if seq == 0 {
            return Ok(None);
        }
        let store = self.store.clone();
        let started = std::time::Instant::now();
        let written = tokio::task::spawn_blocking(move || {
            crate::snapshot::write::<D>(&store, seq, &state, keep)
        })
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))??;
        metrics::counter!("store_snapshots_total").increment(1);
        metrics::histogram!("store_snapshot_seconds").record(started.elapsed().as_secs_f64());
        tracing::info!(
            seq,
            bytes = written,
            path = %self.store.path().display(),
            "snapshot written"
        );
        Ok(Some(seq))
    }

    /// Takes snapshots by `policy` until `shutdown`: after `every_events` events, or after
    /// `every` if anything was written. A failed snapshot is logged and retried at the next
    /// trigger: snapshots are a cache, the log stays the truth.
    pub async fn run_snapshots(
        self,
        policy: crate::snapshot::SnapshotPolicy,
        shutdown: CancellationToken,
    ) -> Result<()> {
        if !policy.enabled() {
            return Ok(());
        }
        let mut durable = self.store.durable();
        let mut last_seq = self.store.snapshot_seqs()?.last().copied().unwrap_or(0);
        let mut last_at = tokio::time::Instant::now();
        let every = if policy.every.is_zero() {
            std::time::Duration::from_secs(3600 * 24 * 365)
        } else {
            policy.every
        };
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                changed = durable.changed() => if changed.is_err() { return Ok(()) },
                _ = tokio::time::sleep_until(last_at + every) => {}
            }
            let head = durable.borrow_and_update().global_seq;
            let by_count = policy.every_events > 0 && head >= last_seq + policy.every_events;
            let by_time = !policy.every.is_zero() && last_at.elapsed() >= every && head > last_seq;
            if !by_count && !by_time {
                if last_at.elapsed() >= every {
                    last_at = tokio::time::Instant::now();
                }
                continue;
            }
            last_at = tokio::time::Instant::now();
            match self.snapshot(policy.keep).await {
                Ok(Some(seq)) => last_seq = seq,
                Ok(None) => {}
                Err(err) => {
                    tracing::warn!(error = %err, "snapshot failed; the log is folded further on restart");
                    if self.fatal.is_cancelled() {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// The underlying log.
    pub fn store(&self) -> &EventStore {
        &self.store
    }

    /// Cancelled when the live state can no longer be trusted (a commit failed after the state
    /// had moved on); the service must stop and rebuild from its log on restart.
    pub fn fatal(&self) -> CancellationToken {
        self.fatal.clone()
    }

    /// Reads the state, answering only once what was read is durable.
    ///
    /// The state moves as soon as a decision is queued, before its commit is flushed (so many
    /// decisions share one flush); a reader may therefore see a commit that a crash would still
    /// undo. This waits for every commit queued before the read to be flushed, so no HTTP reply
    /// and no decision made from the read runs ahead of the disk. The wait is at most one group
    /// commit, and none when nothing is in flight.
    pub async fn read<R>(&self, f: impl FnOnce(&D::State) -> R) -> Result<R> {
        let (value, ticket) = {
            let inner = self.inner.lock().await;
            (f(&inner.state), self.store.last_ticket())
        };
        self.settle(ticket).await?;
        Ok(value)
    }

    /// The state as decided so far, which may run ahead of the disk by the commits in flight:
    /// for metrics and hints only, never for a reply or a decision.
    pub async fn peek<R>(&self, f: impl FnOnce(&D::State) -> R) -> R {
        f(&self.inner.lock().await.state)
    }

    /// [`read`](Self::read) of what concerns one cold key ([`Domain::cold_key`]): an entry that
    /// left memory is brought back from the log for the read and retired again, so `f` sees it
    /// exactly as if it had stayed.
    pub async fn read_key<R>(&self, key: &str, f: impl FnOnce(&D::State) -> R) -> Result<R> {
        let mut inner = self.lock_with(key).await?;
        let cold = !D::is_resident(&inner.state, key);
        if cold {
            let events = self.history_of(key)?;
            D::hydrate(&mut inner.state, key, &events);
        }
        let value = f(&inner.state);
        if cold {
            D::retire(&mut inner.state, key);
        }
        let ticket = self.store.last_ticket();
        drop(inner);
        self.settle(ticket).await?;
        Ok(value)
    }

    /// Takes the decision lock at a moment when the log holds everything about `key` that the
    /// state does: no commit naming the key is still on its way to the disk (the log's readers
    /// see durable records only). Waits for such a commit outside the lock.
    async fn lock_with(&self, key: &str) -> Result<tokio::sync::MutexGuard<'_, Inner<D>>> {
        loop {
            let inner = self.inner.lock().await;
            match inner.in_flight.get(key) {
                Some(&ticket) if !D::is_resident(&inner.state, key) => {
                    drop(inner);
                    self.settle(ticket).await?;
                }
                _ => return Ok(inner),
            }
        }
    }

    /// Every event recorded under `key` (its correlation id), in log order.
    fn history_of(&self, key: &str) -> Result<Vec<D::Event>> {
        // No commit about `key` is in flight (`lock_with`), so what the log holds is durable.
        let records = match D::cold_stream(key) {
            Some(stream) => self.store.read_stream(&stream)?,
            None => self.store.read_correlated(key)?,
        };
        let mut events = Vec::new();
        for record in records {
            if record.event_type != NOTE_EVENT_TYPE {
                events.push(decode_event::<D>(&record)?);
            }
        }
        // A key the log has never seen (a new order) is not a cold read.
        if !events.is_empty() {
            metrics::counter!("store_cold_reads_total").increment(1);
        }
        Ok(events)
    }

    /// Waits until every commit queued up to `ticket` is durable; a writer that stopped first
    /// means the state may hold commits the disk never got, so the service must stop.
    async fn settle(&self, ticket: u64) -> Result<()> {
        if let Err(err) = self.store.wait_durable(ticket).await {
            self.fatal.cancel();
            return Err(err);
        }
        Ok(())
    }

    /// Decides a command and commits the result with its dedup record and outbox in one go.
    ///
    /// `publish` turns the decided events (and the state after them) into outbox messages.
    /// Returns `Ok(Err(rejection))` when the domain refused: nothing is written then.
    pub async fn execute<F>(
        &self,
        execution: Execution,
        command: D::Command,
        publish: F,
    ) -> Result<std::result::Result<Executed<D::Event>, D::Rejection>>
    where
        F: FnOnce(&D::State, &[D::Event]) -> Result<Vec<OutboxMessage>>,
    {
        if self.fatal.is_cancelled() {
            return Err(Error::WriterGone);
        }
        let cold_key = D::cold_key(&command);
        let (durable, events, outbox, key, ticket) = {
            let mut inner = match &cold_key {
                Some(key) => self.lock_with(key).await?,
                None => self.inner.lock().await,
            };
            if let Some(key) = &execution.dedup_key {
                if inner.pending.contains(key) {
                    return Err(Error::Busy(key.clone()));
                }
                if let Some(record) = self.store.dedup(key)? {
                    return Ok(Ok(Executed::Duplicate(record)));
                }
            }
            // An entry that left memory comes back from the log for this one decision, and
            // leaves again once its events are applied (see `crate::resident`).
            let cold = cold_key
                .clone()
                .filter(|key| !D::is_resident(&inner.state, key));
            if let Some(key) = &cold {
                let events = self.history_of(key)?;
                D::hydrate(&mut inner.state, key, &events);
            }
            let decided = self.decide_in(&mut inner, command, publish);
            if let Some(key) = &cold {
                D::retire(&mut inner.state, key);
            }
            let (events, outbox, appends, index) = match decided? {
                Decided::Rejected(rejection) => {
                    // A rejection may rest on commits not yet durable (an Idempotency-Key
                    // placed a moment ago): answer it only once they are.
                    let ticket = self.store.last_ticket();
                    drop(inner);
                    self.settle(ticket).await?;
                    return Ok(Err(rejection));
                }
                Decided::Commit {
                    events,
                    outbox,
                    appends,
                    index,
                } => (events, outbox, appends, index),
            };
            if events.is_empty() && outbox.is_empty() && execution.dedup_key.is_none() {
                // Nothing to write, but "nothing to do" was decided on the state as it is.
                let ticket = self.store.last_ticket();
                drop(inner);
                self.settle(ticket).await?;
                return Ok(Ok(Executed::Committed { events, outbox }));
            }
            let commit = Commit {
                meta: execution.meta,
                appends,
                dedup_key: execution.dedup_key.clone(),
                outbox: outbox.clone(),
                index,
            };
            let durable = match self.store.enqueue(commit).await {
                Ok(durable) => durable,
                Err(err) => {
                    self.fatal.cancel();
                    return Err(err);
                }
            };
            // At least this commit's ticket: waiting for it covers the commit.
            let ticket = self.store.last_ticket();
            if let Some(key) = &execution.dedup_key {
                inner.pending.insert(key.clone());
            }
            if let Some(key) = &cold_key {
                inner.in_flight.insert(key.clone(), ticket);
            }
            (durable, events, outbox, execution.dedup_key, ticket)
        };
        let result = durable.await;
        if key.is_some() || cold_key.is_some() {
            let mut inner = self.inner.lock().await;
            if let Some(key) = key {
                inner.pending.remove(&key);
            }
            if let Some(cold_key) = cold_key {
                if inner.in_flight.get(&cold_key) == Some(&ticket) {
                    inner.in_flight.remove(&cold_key);
                }
            }
        }
        match result {
            Ok(CommitOutcome::Committed { .. }) => Ok(Ok(Executed::Committed { events, outbox })),
            Ok(CommitOutcome::Duplicate(_)) | Err(_) => {
                // The state already includes events the log refused: it cannot be trusted.
                tracing::error!(error = ?result.err(), "commit failed after the state moved on; stopping");
                self.fatal.cancel();
                Err(Error::WriterGone)
            }
        }
    }

    /// Decides and applies a command under the lock: the events, the outbox `publish` makes of
    /// them, and the appends to write.
    fn decide_in<F>(
        &self,
        inner: &mut Inner<D>,
        command: D::Command,
        publish: F,
    ) -> Result<Decided<D>>
    where
        F: FnOnce(&D::State, &[D::Event]) -> Result<Vec<OutboxMessage>>,
    {
        let events = match D::decide(&inner.state, command) {
            Ok(events) => events,
            Err(rejection) => return Ok(Decided::Rejected(rejection)),
        };
        // Encode the events before the state moves, so an encoding error changes nothing.
        let appends = plan_appends::<D>(&events)?;
        let index = D::index_entries(&inner.state, &events);
        // Evolve in place: cloning the whole state per command would make every decision
        // cost the size of the history.
        for event in &events {
            D::evolve(&mut inner.state, event);
        }
        match publish(&inner.state, &events) {
            Ok(outbox) => Ok(Decided::Commit {
                events,
                outbox,
                appends,
                index,
            }),
            Err(err) => {
                // The state moved but nothing was written: it no longer equals the log.
                self.fatal.cancel();
                Err(err)
            }
        }
    }

    /// Records a decision that changed no state, for the timeline.
    pub async fn note(&self, meta: EventMeta, kind: &str, detail: String) -> Result<()> {
        let note = Note {
            kind: kind.to_owned(),
            detail,
        };
        let durable = {
            // Under the lock, so the note lands between the decisions it was made among.
            let _inner = self.inner.lock().await;
            let commit = Commit {
                meta,
                appends: vec![StreamAppend {
                    stream: NOTE_STREAM.to_owned(),
                    expected_version: ANY_VERSION,
                    events: vec![NewEvent {
                        event_type: NOTE_EVENT_TYPE.to_owned(),
                        schema_version: 1,
                        payload: postcard::to_stdvec(&note)?,
                    }],
                }],
                dedup_key: None,
                outbox: Vec::new(),
                index: Vec::new(),
            };
            self.store.enqueue(commit).await?
        };
        match durable.await {
            Ok(_) => Ok(()),
            Err(err) => {
                self.fatal.cancel();
                Err(err)
            }
        }
    }

    /// Queues outbox messages alone (a re-publish), durable on return.
    pub async fn publish_only(&self, meta: EventMeta, outbox: Vec<OutboxMessage>) -> Result<()> {
        if outbox.is_empty() {
            return Ok(());
        }
        self.store
            .commit(Commit {
                meta,
                appends: Vec::new(),
                dedup_key: None,
                outbox,
                index: Vec::new(),
            })
            .await?;
        Ok(())
    }
}

/// What a decision under the lock came to.
enum Decided<D: Domain> {
    /// The domain refused; nothing moved.
    Rejected(D::Rejection),
    /// The events (already applied) and what to write with them.
    Commit {
        events: Vec<D::Event>,
        outbox: Vec<OutboxMessage>,
        appends: Vec<StreamAppend>,
        /// The domain's index entries for the events ([`Domain::index_entries`]).
        index: Vec<IndexEntry>,
    },
}

/// Groups events into per-stream appends, keeping their order.
///
/// Every append goes at the end of its stream: decisions are serialised by the live state's
/// lock, so the writer's order is the decision order, and the live state need not hold a version
/// per stream (one per order ever placed).
fn plan_appends<D: Domain>(events: &[D::Event]) -> Result<Vec<StreamAppend>> {
    let mut appends: Vec<StreamAppend> = Vec::new();
    for event in events {
        let stream = D::stream_of(event);
        let new_event = NewEvent {
            event_type: D::event_type(event).to_owned(),
            schema_version: D::EVENT_VERSION,
            payload: postcard::to_stdvec(event)?,
        };
        match appends.last_mut() {
            Some(last) if last.stream == stream => last.events.push(new_event),
            _ => appends.push(StreamAppend {
                stream,
                expected_version: ANY_VERSION,
                events: vec![new_event],
            }),
        }
    }
    Ok(appends)
}
