//! Snapshots of a domain's state: a cache of the fold of the log up to a durable global seq.
//!
//! Stored in the store's `snapshot` tree keyed by global seq; the value is a versioned postcard
//! envelope followed by its blake3 checksum. A snapshot is used only if every check passes:
//! checksum, envelope format, the domain's `SNAPSHOT_VERSION` and `EVENT_VERSION`, the state's
//! type name, and the hash of the log record at its seq (so a snapshot of another log, or of a
//! log that was cut back, is refused). Anything else is ignored with a warning and the next older
//! snapshot, or the whole log, is folded instead. `verify` folds the whole log from seq 1 and
//! compares the state at every snapshot's seq with the snapshot.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::Domain;
use crate::error::{Error, Result};
use crate::event_store::{EventStore, ReplayBound, VerifyReport};
use crate::record::HASH_LEN;

/// Version of the envelope layout itself.
pub const SNAPSHOT_FORMAT: u16 = 2;
/// Default: snapshot after this many events (`SNAPSHOT_EVERY_EVENTS`).
pub const DEFAULT_SNAPSHOT_EVERY_EVENTS: u64 = 10_000;
/// Default: snapshot at least this often while events arrive (`SNAPSHOT_EVERY`).
pub const DEFAULT_SNAPSHOT_EVERY: Duration = Duration::from_secs(60);
/// Default: snapshots kept (`SNAPSHOT_KEEP`).
pub const DEFAULT_SNAPSHOT_KEEP: usize = 2;

/// When a service snapshots its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotPolicy {
    /// Snapshot once this many events were written since the last one (0: not by count).
    pub every_events: u64,
    /// Snapshot once this long passed since the last one, if anything was written (zero: not by
    /// time).
    pub every: Duration,
    /// Newest snapshots kept; older ones are removed after a new one is written.
    pub keep: usize,
}

impl Default for SnapshotPolicy {
    fn default() -> Self {
        Self {
            every_events: DEFAULT_SNAPSHOT_EVERY_EVENTS,
            every: DEFAULT_SNAPSHOT_EVERY,
            keep: DEFAULT_SNAPSHOT_KEEP,
        }
    }
}

impl SnapshotPolicy {
    /// Whether snapshots are taken at all.
    pub fn enabled(&self) -> bool {
        self.keep > 0 && (self.every_events > 0 || !self.every.is_zero())
    }
}

/// The stored envelope. Field order is the encoding: `format` stays first forever.
#[derive(Serialize, Deserialize)]
struct Envelope {
    format: u16,
    snapshot_version: u32,
    event_version: u16,
    state_type: String,
    global_seq: u64,
    /// Hash of the log record at `global_seq`.
    record_hash: [u8; HASH_LEN],
    /// Time of the log record at `global_seq` (for `--upto-time`).
    recorded_at_ms: u64,
    taken_at_ms: u64,
    state: Vec<u8>,
}

/// A decoded snapshot.
#[derive(Debug, Clone)]
pub struct Snapshot<S> {
    /// The log is folded into `state` up to and including this seq.
    pub global_seq: u64,
    /// Time of the record at `global_seq`.
    pub recorded_at_ms: u64,
    /// The state.
    pub state: S,
}

/// Why a stored snapshot was not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Written by another version (envelope format, snapshot or event version, state type):
    /// expected after an upgrade, the log is folded instead.
    Stale(String),
    /// Damaged, or not a snapshot of this log.
    Corrupt(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Stale(why) => write!(f, "stale: {why}"),
            Refused::Corrupt(why) => write!(f, "corrupt: {why}"),
        }
    }
}

fn state_type<D: Domain>() -> &'static str {
    std::any::type_name::<D::State>()
}

/// Encodes a snapshot of `state` (the fold of the log up to `global_seq`) as stored.
pub fn encode<D: Domain>(store: &EventStore, global_seq: u64, state: &D::State) -> Result<Vec<u8>> {
    let (record_hash, recorded_at_ms) = store.record_hash(global_seq)?;
    let envelope = Envelope {
        format: SNAPSHOT_FORMAT,
        snapshot_version: D::SNAPSHOT_VERSION,
        event_version: D::EVENT_VERSION,
        state_type: state_type::<D>().to_owned(),
        global_seq,
        record_hash,
        recorded_at_ms,
        taken_at_ms: crate::clock::now_ms(),
        state: postcard::to_stdvec(state)?,
    };
    let mut bytes = postcard::to_stdvec(&envelope)?;
    let checksum = blake3::hash(&bytes);
    bytes.extend_from_slice(checksum.as_bytes());
    Ok(bytes)
}

/// Writes a snapshot and keeps only the newest `keep`.
pub fn write<D: Domain>(
    store: &EventStore,
    global_seq: u64,
    state: &D::State,
    keep: usize,
) -> Result<usize> {
    let bytes = encode::<D>(store, global_seq, state)?;
    store.put_snapshot_bytes(global_seq, &bytes)?;
    let seqs = store.snapshot_seqs()?;
    let excess = seqs.len().saturating_sub(keep.max(1));
    for seq in &seqs[..excess] {
        store.remove_snapshot(*seq)?;
    }
    Ok(bytes.len())
}

/// Decodes and checks the snapshot stored at `global_seq`.
pub fn load<D: Domain>(
    store: &EventStore,
    global_seq: u64,
) -> Result<std::result::Result<Snapshot<D::State>, Refused>> {
    let Some(bytes) = store.snapshot_bytes(global_seq)? else {
        return Ok(Err(Refused::Corrupt("missing".into())));
    };
    let Some(split) = bytes.len().checked_sub(HASH_LEN) else {
        return Ok(Err(Refused::Corrupt("shorter than its checksum".into())));
    };
    let (body, checksum) = bytes.split_at(split);
    if blake3::hash(body).as_bytes()[..] != checksum[..] {
        return Ok(Err(Refused::Corrupt("checksum mismatch".into())));
    }
    match postcard::take_from_bytes::<u16>(body) {
        Ok((SNAPSHOT_FORMAT, _)) => {}
        Ok((other, _)) => {
            return Ok(Err(Refused::Stale(format!(
                "envelope format {other}, this build reads {SNAPSHOT_FORMAT}"
            ))))
        }
        Err(e) => return Ok(Err(Refused::Corrupt(format!("no envelope: {e}")))),
    }
    let envelope: Envelope = match postcard::from_bytes(body) {
        Ok(envelope) => envelope,
        Err(e) => return Ok(Err(Refused::Corrupt(format!("envelope: {e}")))),
    };
    if envelope.snapshot_version != D::SNAPSHOT_VERSION
        || envelope.event_version != D::EVENT_VERSION
        || envelope.state_type != state_type::<D>()
    {
        return Ok(Err(Refused::Stale(format!(
            "{} v{} (events v{}), this build wants {} v{} (events v{})",
            envelope.state_type,
            envelope.snapshot_version,
            envelope.event_version,
            state_type::<D>(),
            D::SNAPSHOT_VERSION,
            D::EVENT_VERSION
        ))));
    }
    if envelope.global_seq != global_seq {
        return Ok(Err(Refused::Corrupt(format!(
            "stored under seq {global_seq} but taken at {}",
            envelope.global_seq
        ))));
    }
    match store.record_hash(global_seq) {
        Ok((hash, _)) if hash == envelope.record_hash => {}
        Ok(_) => {
            return Ok(Err(Refused::Corrupt(
                "the log record at its seq is not the one it was taken at".into(),
            )))
        }
        Err(Error::Corrupt { reason, .. }) => {
            return Ok(Err(Refused::Corrupt(format!(
                "the log has no valid record at its seq: {reason}"
            ))))
        }
        Err(e) => return Err(e),
    }
    let state: D::State = match postcard::from_bytes(&envelope.state) {
        Ok(state) => state,
        Err(e) => return Ok(Err(Refused::Corrupt(format!("state: {e}")))),
    };
    Ok(Ok(Snapshot {
        global_seq,
        recorded_at_ms: envelope.recorded_at_ms,
        state,
    }))
}

/// The newest usable snapshot inside `bound`, if any; unusable ones are skipped with a warning.
pub fn newest_within<D: Domain>(
    store: &EventStore,
    bound: ReplayBound,
) -> Result<Option<Snapshot<D::State>>> {
    let head = store.head();
    for seq in store.snapshot_seqs()?.into_iter().rev() {
        if seq > head || bound.upto_seq.is_some_and(|upto| seq > upto) {
            continue;
        }
        match load::<D>(store, seq)? {
            Ok(snapshot)
                if bound
                    .upto_time_ms
                    .is_none_or(|t| snapshot.recorded_at_ms <= t) =>
            {
                return Ok(Some(snapshot));
            }
            Ok(_) => continue,
            Err(refused) => {
                tracing::warn!(seq, reason = %refused, path = %store.path().display(), "snapshot ignored; using an older one or the log");
                metrics::counter!("store_snapshots_refused_total").increment(1);
            }
        }
    }
    Ok(None)
}

/// What `verify` found for one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Equal to the fold of the log up to its seq.
    Matches,
    /// Decodes, but differs from the fold of the log up to its seq.
    Differs,
    /// Not used by this build (see [`Refused`]).
    Refused(Refused),
}

/// One snapshot's check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotCheck {
    /// Its seq.
    pub global_seq: u64,
    /// What was found.
    pub verdict: Verdict,
}

/// Folds the whole log from seq 1 and compares the state at every snapshot's seq with that
/// snapshot (checking the log on the way, see [`verify_all`]). Returns the checks, oldest
/// snapshot first, and the number of events folded.
pub fn verify<D: Domain>(store: &EventStore) -> Result<(Vec<SnapshotCheck>, u64)> {
    verify_all::<D>(store).map(|(_, checks, folded)| (checks, folded))
}

/// Everything `verify` checks, in one read of the log: the hash chain and the stream index
/// ([`EventStore::verify`]), and the fold from seq 1 compared with every snapshot ([`verify`]).
/// Returns the log's report, the snapshot checks and the number of events folded.
pub fn verify_all<D: Domain>(
    store: &EventStore,
) -> Result<(VerifyReport, Vec<SnapshotCheck>, u64)> {
    let mut pending: Vec<Loaded<D::State>> = Vec::new();
    for seq in store.snapshot_seqs()? {
        pending.push((seq, load::<D>(store, seq)?));
    }
    let mut checks = Vec::new();
    let mut next = pending.into_iter().peekable();
    let mut state = D::State::default();
    let mut folded = 0;
    let report = store.verify_visiting(|record| {
        if let Some(event) = crate::live::decode_view::<D>(record)? {
            D::evolve(&mut state, &event);
            folded += 1;
        }
        drain_upto(record.global_seq, &state, &mut next, &mut checks);
        Ok(())
    })?;
    drain_upto(u64::MAX, &state, &mut next, &mut checks);
    Ok((report, checks, folded))
}

type Loaded<S> = (u64, std::result::Result<Snapshot<S>, Refused>);

/// Checks every snapshot taken at or before `seq` against the fold so far.
fn drain_upto<S: PartialEq>(
    seq: u64,
    state: &S,
    next: &mut std::iter::Peekable<std::vec::IntoIter<Loaded<S>>>,
    checks: &mut Vec<SnapshotCheck>,
) {
    while let Some((at, loaded)) = next.next_if(|(at, _)| *at <= seq) {
        let verdict = match loaded {
            Err(refused) => Verdict::Refused(refused),
            Ok(_) if at < seq => Verdict::Refused(Refused::Corrupt("no record at its seq".into())),
            Ok(snapshot) if snapshot.state == *state => Verdict::Matches,
            Ok(_) => Verdict::Differs,
        };
        checks.push(SnapshotCheck {
            global_seq: at,
            verdict,
        });
    }
}
