//! What the log holds: records chained by hash, and what callers hand in to append.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Length of a record hash (blake3).
pub const HASH_LEN: usize = 32;
/// Hash that precedes the first record.
pub const GENESIS_HASH: [u8; HASH_LEN] = [0; HASH_LEN];

/// Tracing and causality metadata shared by every event of one commit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMeta {
    /// The business correlation id (the orderId).
    pub correlation_id: String,
    /// The saga's trace id.
    pub trace_id: String,
    /// W3C trace context of the step that wrote the events.
    pub traceparent: String,
    /// Id of the message or request that caused the events.
    pub causation_id: String,
}

/// One event handed to an append.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEvent {
    /// The event's type name.
    pub event_type: String,
    /// Schema version of `payload`.
    pub schema_version: u16,
    /// Postcard-encoded event.
    pub payload: Vec<u8>,
}

/// `expected_version` of an append that goes at the end of its stream, whatever its length.
///
/// For a caller that already serialises its decisions (the live state's lock): it need not
/// remember every stream's length, which would grow with history.
pub const ANY_VERSION: u64 = u64::MAX;

/// Events to append to one stream, at the version the caller decided against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamAppend {
    /// Stream (aggregate) id.
    pub stream: String,
    /// Number of events the caller saw in the stream, anything else being a conflict; or
    /// [`ANY_VERSION`].
    pub expected_version: u64,
    /// The events, in order.
    pub events: Vec<NewEvent>,
}

/// A message the outbox relay publishes to JetStream after the commit is durable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxMessage {
    /// Subject to publish on.
    pub subject: String,
    /// `Nats-Msg-Id` for server-side dedup.
    pub msg_id: String,
    /// All other headers (trace, event type, version, content type).
    pub headers: Vec<(String, String)>,
    /// Envelope bytes.
    pub payload: Vec<u8>,
}

/// What the handling of one input message produced, kept under its dedup key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DedupRecord {
    /// Global seq of the last event the commit wrote (or the head at the time if none).
    pub global_seq: u64,
    /// When the input was first handled (ms since the Unix epoch).
    pub recorded_at_ms: u64,
    /// The messages that handling published, so a duplicate can re-publish them.
    pub outbox: Vec<OutboxMessage>,
}

/// A secondary index entry written in the same sled batch as a commit's events.
///
/// Indexes are the domain's own lookups kept on disk instead of in its state (e.g. trace id ->
/// order id, orders by time): the store does not interpret them, it only writes them atomically
/// with the events they describe, so an index never runs ahead of or behind the log. Read them
/// with [`crate::EventStore::index_get`] and [`crate::EventStore::index_scan`]. An entry is never
/// removed by the store; writing the same key again replaces its value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexEntry {
    /// The index's name (non-empty, no NUL byte), e.g. `trace`.
    pub index: String,
    /// The key within the index; keys sort bytewise, so encode numbers big-endian.
    pub key: Vec<u8>,
    /// The value (may be empty when the key says everything).
    pub value: Vec<u8>,
}

impl IndexEntry {
    /// An entry of `index` under `key`.
    pub fn new(index: &str, key: Vec<u8>, value: Vec<u8>) -> Self {
        Self {
            index: index.to_owned(),
            key,
            value,
        }
    }
}

/// One atomic unit: events, the dedup record of the input, the outbox entries and the index
/// entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Commit {
    /// Metadata stamped on every event.
    pub meta: EventMeta,
    /// Events per stream.
    pub appends: Vec<StreamAppend>,
    /// Dedup key of the input message; a commit whose key exists is not applied.
    pub dedup_key: Option<String>,
    /// Messages to publish once durable.
    pub outbox: Vec<OutboxMessage>,
    /// Secondary index entries, written in the same batch as the events.
    pub index: Vec<IndexEntry>,
}

/// The result of a durable commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Applied and flushed; events got these global seqs (empty range if none).
    Committed {
        /// First global seq written (head + 1 when nothing was written).
        first_seq: u64,
        /// Last global seq written (the head when nothing was written).
        last_seq: u64,
    },
    /// The dedup key was already recorded; nothing was applied. Here is what it produced.
    Duplicate(DedupRecord),
}

/// A record as stored in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Position in the service's whole log, from 1, gapless.
    pub global_seq: u64,
    /// Stream (aggregate) id.
    pub stream: String,
    /// Position in the stream, from 1, gapless.
    pub stream_seq: u64,
    /// Event type name.
    pub event_type: String,
    /// Schema version of the payload.
    pub schema_version: u16,
    /// When it was recorded (ms since the Unix epoch), never decreasing along the log.
    pub recorded_at_ms: u64,
    /// Correlation (orderId), trace and causation.
    pub meta: EventMeta,
    /// Postcard-encoded event.
    pub payload: Vec<u8>,
    /// Message ids the commit that wrote this record published (outbox entries).
    pub published: Vec<String>,
    /// Hash of the previous record.
    pub prev_hash: [u8; HASH_LEN],
}

/// A stored record read in place: the same encoding as [`Record`], with its strings and payload
/// borrowed from the stored bytes.
///
/// Folding a long log reads millions of records; borrowing spares each one its eight
/// allocations (strings, payload, message ids), most of what a fold costs besides the disk.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RecordView<'a> {
    /// Position in the service's whole log.
    pub global_seq: u64,
    /// Stream (aggregate) id.
    pub stream: &'a str,
    /// Position in the stream.
    pub stream_seq: u64,
    /// Event type name.
    pub event_type: &'a str,
    /// Schema version of the payload.
    pub schema_version: u16,
    /// When it was recorded (ms since the Unix epoch).
    pub recorded_at_ms: u64,
    /// Correlation, trace and causation.
    #[serde(borrow)]
    pub meta: EventMetaView<'a>,
    /// Postcard-encoded event.
    pub payload: &'a [u8],
    /// Message ids the commit that wrote this record published.
    #[serde(borrow)]
    pub published: Vec<&'a str>,
    /// Hash of the previous record.
    pub prev_hash: [u8; HASH_LEN],
}

/// [`EventMeta`] borrowed from a stored record.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EventMetaView<'a> {
    /// The business correlation id (the orderId).
    pub correlation_id: &'a str,
    /// The saga's trace id.
    pub trace_id: &'a str,
    /// W3C trace context of the step that wrote the events.
    pub traceparent: &'a str,
    /// Id of the message or request that caused the events.
    pub causation_id: &'a str,
}

impl<'a> RecordView<'a> {
    /// Reads a stored value in place, once [`check_record_hash`] checked it (on another
    /// thread, see `event_store::read_records_ahead`); also returns the hash.
    pub(crate) fn open_checked(seq: u64, bytes: &'a [u8]) -> Result<(Self, [u8; HASH_LEN])> {
        let split = bytes.len().saturating_sub(HASH_LEN);
        let (body, stored) = bytes.split_at(split);
        let view: RecordView<'a> = postcard::from_bytes(body).map_err(|e| Error::Corrupt {
            seq,
            reason: format!("undecodable record: {e}"),
        })?;
        let mut hash = [0u8; HASH_LEN];
        hash.copy_from_slice(stored);
        Ok((view, hash))
    }

    /// Decodes the payload as a domain event.
    pub fn decode<E: serde::de::Deserialize<'a>>(&self) -> Result<E> {
        Ok(postcard::from_bytes(self.payload)?)
    }
}

/// Checks a stored value against its own trailing hash.
pub(crate) fn check_record_hash(seq: u64, bytes: &[u8]) -> Result<()> {
    checked_body(seq, bytes).map(|_| ())
}

/// The part of a stored value its trailing hash covers, once the hash is checked.
fn checked_body(seq: u64, bytes: &[u8]) -> Result<&[u8]> {
    let split = bytes
        .len()
        .checked_sub(HASH_LEN)
        .ok_or_else(|| Error::Corrupt {
            seq,
            reason: "record shorter than its hash".into(),
        })?;
    let (body, stored) = bytes.split_at(split);
    if blake3::hash(body).as_bytes()[..] != stored[..] {
        return Err(Error::Corrupt {
            seq,
            reason: "record hash mismatch".into(),
        });
    }
    Ok(body)
}

impl Record {
    /// Encodes the record followed by its chained hash, the value stored in the log.
    pub(crate) fn seal(&self) -> Result<(Vec<u8>, [u8; HASH_LEN])> {
        let mut bytes = postcard::to_stdvec(self)?;
        let hash: [u8; HASH_LEN] = *blake3::hash(&bytes).as_bytes();
        bytes.extend_from_slice(&hash);
        Ok((bytes, hash))
    }

    /// Decodes a stored value, checking the record against its own hash.
    pub(crate) fn open(seq: u64, bytes: &[u8]) -> Result<(Record, [u8; HASH_LEN])> {
        let body = checked_body(seq, bytes)?;
        let record: Record = postcard::from_bytes(body).map_err(|e| Error::Corrupt {
            seq,
            reason: format!("undecodable record: {e}"),
        })?;
        let mut hash = [0u8; HASH_LEN];
        hash.copy_from_slice(&bytes[body.len()..]);
        Ok((record, hash))
    }

    /// Decodes the payload as a domain event.
    pub fn decode<E: serde::de::DeserializeOwned>(&self) -> Result<E> {
        Ok(postcard::from_bytes(&self.payload)?)
    }
}
