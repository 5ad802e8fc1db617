//! Operating the dead-letter queue: list, summarise, inspect, re-drive and discard entries.
//!
//! A DLQ entry is what [`crate::consumer`] wrote on `dlq.<consumer>`: the original payload, and
//! the reason, original subject, attempts, consumer, stream seq and message id in headers. An
//! entry is addressed by its sequence in the `DLQ` stream.
//!
//! A re-drive publishes the payload again on its original subject under a fresh, deterministic
//! `Nats-Msg-Id` (`<original id>~redrive-<dlq seq>`), then deletes the entry. Running it twice
//! for the same entry is harmless: the server drops the second publish inside its dedup window,
//! and every consumer is idempotent on `(orderId, domain, action)` beyond it. Note that the
//! message reaches every consumer of that subject again, not only the one that gave up.

use async_nats::jetstream::{self, message::PublishMessage, stream::Stream, ErrorCode};
use serde::Serialize;
use uuid::Uuid;

use crate::consumer::{
    HEADER_DLQ_ATTEMPTS, HEADER_DLQ_CONSUMER, HEADER_DLQ_MSG_ID, HEADER_DLQ_REASON,
    HEADER_DLQ_STREAM_SEQ, HEADER_DLQ_SUBJECT,
};
use crate::error::{Error, Result};
use contract::codec::Envelope;
use contract::{
    codec, CONTENT_TYPE_POSTCARD, DLQ_STREAM, HEADER_CONTENT_TYPE, HEADER_EVENT_TYPE,
    HEADER_EVENT_VERSION, HEADER_MSG_ID, HEADER_ORDER_ID, HEADER_TRACEPARENT, HEADER_TRACE_ID,
};

/// Entries a listing returns when the caller names no limit.
pub const LIST_LIMIT_DEFAULT: usize = 1_000;
/// Most entries one listing returns.
pub const LIST_LIMIT_MAX: usize = 10_000;
/// Most payload bytes an inspection shows (as hex) when the payload does not decode.
pub const PREVIEW_BYTES_MAX: usize = 4 * 1024;
/// Header a re-driven message carries: the DLQ seq it came from.
pub const HEADER_REDRIVEN_FROM: &str = "Dlq-Redriven-From";
/// Subject prefix of DLQ entries.
pub const DLQ_SUBJECT_PREFIX: &str = "dlq.";

/// One DLQ entry as an operator sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DlqEntry {
    /// Sequence in the `DLQ` stream; the entry's address.
    pub seq: u64,
    /// The durable consumer that gave up.
    pub consumer: String,
    /// The subject the message was first published on.
    pub original_subject: String,
    /// Why it was dead-lettered.
    pub reason: String,
    /// Deliveries made before it was dead-lettered.
    pub attempts: u64,
    /// Its `Nats-Msg-Id`, when it had one.
    pub original_msg_id: Option<String>,
    /// Its sequence in its original stream.
    pub original_stream_seq: u64,
    /// The order it concerns, when a header or the payload tells.
    pub order_id: Option<Uuid>,
    /// When it was dead-lettered (ms since the Unix epoch).
    pub time_ms: u64,
    /// Payload size in bytes.
    pub payload_bytes: usize,
}

/// Entries with the same consumer and reason class, counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DlqGroup {
    /// The consumer that gave up.
    pub consumer: String,
    /// The reason with order ids replaced by `<id>`, so one cause is one group.
    pub reason: String,
    /// Entries in the group.
    pub count: usize,
    /// Their DLQ sequences, oldest first.
    pub seqs: Vec<u64>,
}

/// An entry with its payload rendered.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DlqDetail {
    /// The entry.
    #[serde(flatten)]
    pub entry: DlqEntry,
    /// Every header the entry carries.
    pub headers: Vec<(String, String)>,
    /// The payload: the decoded message as JSON, or why it does not decode and its bytes.
    pub body: serde_json::Value,
}

/// What a re-drive did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Redriven {
    /// The entry that was re-driven (now deleted).
    pub entry: DlqEntry,
    /// The subject it was published on again.
    pub subject: String,
    /// The fresh `Nats-Msg-Id` it carried.
    pub msg_id: String,
    /// True when the server had seen that id already: an earlier re-drive of this entry
    /// published it but stopped before removing the entry, and this one finished the job.
    pub duplicate: bool,
}

/// Lists up to `limit` entries (capped at [`LIST_LIMIT_MAX`]), oldest first.
pub async fn list(js: &jetstream::Context, limit: usize) -> Result<Vec<DlqEntry>> {
    let stream = dlq_stream(js).await?;
    let limit = limit.min(LIST_LIMIT_MAX);
    let mut entries = Vec::new();
    let mut next = 1;
    while entries.len() < limit {
        let message = stream
            .raw_message_builder()
            .sequence(next)
            .next_by_subject(format!("{DLQ_SUBJECT_PREFIX}>"))
            .send()
            .await;
        let message = match message {
            Ok(message) => message,
            Err(err) if is_no_message(&err) => break,
            Err(err) => return Err(Error::jetstream("read DLQ", err)),
        };
        next = message.sequence + 1;
        entries.push(entry_of(&message));
    }
    Ok(entries)
}

/// Groups entries by consumer and reason class, largest group first.
pub fn summary(entries: &[DlqEntry]) -> Vec<DlqGroup> {
    let mut groups: Vec<DlqGroup> = Vec::new();
    for entry in entries {
        let reason = reason_class(&entry.reason);
        match groups
            .iter_mut()
            .find(|g| g.consumer == entry.consumer && g.reason == reason)
        {
            Some(group) => {
                group.count += 1;
                group.seqs.push(entry.seq);
            }
            None => groups.push(DlqGroup {
                consumer: entry.consumer.clone(),
                reason,
                count: 1,
                seqs: vec![entry.seq],
            }),
        }
    }
    groups.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.consumer.cmp(&b.consumer))
            .then_with(|| a.reason.cmp(&b.reason))
    });
    groups
}

/// One entry with its payload rendered; `None` when there is no entry at `seq`.
pub async fn inspect(js: &jetstream::Context, seq: u64) -> Result<Option<DlqDetail>> {
    let stream = dlq_stream(js).await?;
    let Some(message) = get(&stream, seq).await? else {
        return Ok(None);
    };
    let headers = message
        .headers
        .iter()
        .flat_map(|(name, values)| {
            values
                .iter()
                .map(move |v| (name.to_string(), v.as_str().to_owned()))
        })
        .collect::<Vec<_>>();
    let mut headers = headers;
    headers.sort();
    Ok(Some(DlqDetail {
        entry: entry_of(&message),
        headers,
        body: render_payload(&message.payload),
    }))
}

/// Publishes the entry again on its original subject under a fresh id, then deletes it;
/// `None` when there is no entry at `seq` (never was, or re-driven or discarded already).
pub async fn redrive(js: &jetstream::Context, seq: u64) -> Result<Option<Redriven>> {
    let stream = dlq_stream(js).await?;
    let Some(message) = get(&stream, seq).await? else {
        return Ok(None);
    };
    let entry = entry_of(&message);
    if let Some(why) = not_redrivable(&entry) {
        return Err(Error::JetStream {
            op: "redrive",
            message: format!("DLQ entry {seq}: {why}"),
        });
    }
    let msg_id = redrive_msg_id(&entry);
    let headers = redrive_headers(&message.headers, &message.payload, &msg_id, seq);
    let ack = js
        .send_publish(
            entry.original_subject.clone(),
            PublishMessage::build()
                .payload(message.payload.clone())
                .headers(headers),
        )
        .await
        .map_err(|e| Error::jetstream("redrive publish", e))?
        .await
        .map_err(|e| Error::jetstream("redrive publish ack", e))?;
    // Only once the server holds the copy may the entry go.
    let deleted = delete(&stream, seq).await?;
    if ack.duplicate && !deleted {
        // A concurrent re-drive of the same entry published and removed it: nothing was done here.
        return Ok(None);
    }
    tracing::info!(
        dlq_seq = seq,
        consumer = %entry.consumer,
        subject = %entry.original_subject,
        msg_id = %msg_id,
        duplicate = ack.duplicate,
        "DLQ entry re-driven"
    );
    metrics::counter!("saga_dlq_redrives_total", "consumer" => entry.consumer.clone()).increment(1);
    Ok(Some(Redriven {
        subject: entry.original_subject.clone(),
        entry,
        msg_id,
        duplicate: ack.duplicate,
    }))
}

/// Deletes an entry for good; `None` when there is no entry at `seq`.
pub async fn discard(js: &jetstream::Context, seq: u64) -> Result<Option<DlqEntry>> {
    let stream = dlq_stream(js).await?;
    let Some(message) = get(&stream, seq).await? else {
        return Ok(None);
    };
    let entry = entry_of(&message);
    if !delete(&stream, seq).await? {
        // Someone else removed it between our read and our delete.
        return Ok(None);
    }
    tracing::info!(dlq_seq = seq, consumer = %entry.consumer, subject = %entry.original_subject, "DLQ entry discarded");
    Ok(Some(entry))
}

/// Why an entry cannot be re-driven, if it cannot.
pub fn not_redrivable(entry: &DlqEntry) -> Option<String> {
    if entry.original_subject.is_empty() {
        return Some("it names no original subject".into());
    }
    if entry.original_subject.starts_with(DLQ_SUBJECT_PREFIX) {
        return Some(format!(
            "its original subject {} is itself a DLQ subject",
            entry.original_subject
        ));
    }
    None
}

/// The id a re-drive of `entry` publishes under: deterministic per DLQ seq.
pub fn redrive_msg_id(entry: &DlqEntry) -> String {
    let original = match &entry.original_msg_id {
        Some(id) => id.clone(),
        // The consumer's own fallback id for a message that came without one.
        None => format!("{}#{}", entry.original_subject, entry.original_stream_seq),
    };
    format!("{original}~redrive-{}", entry.seq)
}

/// The reason with UUIDs replaced by `<id>`, so entries with one cause group together.
pub fn reason_class(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len());
    let mut rest = reason;
    while !rest.is_empty() {
        if rest.len() >= 36 && rest.is_char_boundary(36) && Uuid::parse_str(&rest[..36]).is_ok() {
            out.push_str("<id>");
            rest = &rest[36..];
            continue;
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    out
}

async fn dlq_stream(js: &jetstream::Context) -> Result<Stream> {
    js.get_stream(DLQ_STREAM)
        .await
        .map_err(|e| Error::jetstream("get DLQ stream", e))
}

async fn get(stream: &Stream, seq: u64) -> Result<Option<jetstream::message::StreamMessage>> {
    // Seq 0 is never a message; the server answers it with "bad request", not "not found".
    if seq == 0 {
        return Ok(None);
    }
    match stream.get_raw_message(seq).await {
        Ok(message) if message.subject.starts_with(DLQ_SUBJECT_PREFIX) => Ok(Some(message)),
        Ok(_) => Ok(None),
        Err(err) if is_no_message(&err) => Ok(None),
        Err(err) => Err(Error::jetstream("read DLQ entry", err)),
    }
}

/// Deletes `seq`; `false` when it was gone already.
async fn delete(stream: &Stream, seq: u64) -> Result<bool> {
    match stream.delete_message(seq).await {
        Ok(deleted) => Ok(deleted),
        Err(err) => match err.kind() {
            jetstream::stream::DeleteMessageErrorKind::JetStream(js_err)
                if js_err.error_code() == ErrorCode::SEQUENCE_NOT_FOUND
                    // nats-server 2.9 answers a seq past the end with "stream store EOF".
                    || js_err.error_code() == ErrorCode::STREAM_MESSAGE_DELETE_FAILED =>
            {
                Ok(false)
            }
            _ => Err(Error::jetstream("delete DLQ entry", err)),
        },
    }
}

fn is_no_message(err: &jetstream::stream::RawMessageError) -> bool {
    matches!(
        err.kind(),
        jetstream::stream::RawMessageErrorKind::NoMessageFound
    )
}

fn entry_of(message: &jetstream::message::StreamMessage) -> DlqEntry {
    let header = |name: &str| {
        message
            .headers
            .get(name)
            .map(|v| v.as_str().to_owned())
            .filter(|v| !v.is_empty())
    };
    let number = |name: &str| header(name).and_then(|v| v.parse().ok()).unwrap_or(0);
    let consumer = header(HEADER_DLQ_CONSUMER).unwrap_or_else(|| {
        message
            .subject
            .strip_prefix(DLQ_SUBJECT_PREFIX)
            .unwrap_or_default()
            .to_owned()
    });
    let order_id = header(HEADER_ORDER_ID)
        .and_then(|v| v.parse().ok())
        .or_else(|| envelope_of(&message.payload).map(|e| e.order_id));
    let time_ms = u64::try_from(message.time.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    DlqEntry {
        seq: message.sequence,
        consumer,
        original_subject: header(HEADER_DLQ_SUBJECT).unwrap_or_default(),
        reason: header(HEADER_DLQ_REASON).unwrap_or_default(),
        attempts: number(HEADER_DLQ_ATTEMPTS),
        original_msg_id: header(HEADER_DLQ_MSG_ID),
        original_stream_seq: number(HEADER_DLQ_STREAM_SEQ),
        order_id,
        time_ms,
        payload_bytes: message.payload.len(),
    }
}

/// The envelope alone, when it decodes even though the message does not (an unknown version
/// or event type still names its order).
fn envelope_of(payload: &[u8]) -> Option<Envelope> {
    if let Ok((envelope, _)) = codec::decode(payload) {
        return Some(envelope);
    }
    postcard::take_from_bytes::<Envelope>(payload)
        .ok()
        .map(|(envelope, _)| envelope)
}

fn render_payload(payload: &[u8]) -> serde_json::Value {
    let error = match codec::decode(payload) {
        Ok((envelope, message)) => {
            return serde_json::json!({
                "decoded": true,
                "envelope": envelope_json(&envelope),
                "message": serde_json::to_value(&message).unwrap_or(serde_json::Value::Null),
            })
        }
        Err(err) => err.to_string(),
    };
    let shown = &payload[..payload.len().min(PREVIEW_BYTES_MAX)];
    serde_json::json!({
        "decoded": false,
        "error": error,
        "envelope": postcard::take_from_bytes::<Envelope>(payload).ok().map(|(e, _)| envelope_json(&e)),
        "hex": hex(shown),
        "truncated": shown.len() < payload.len(),
    })
}

fn envelope_json(envelope: &Envelope) -> serde_json::Value {
    serde_json::json!({
        "version": envelope.version,
        "eventType": envelope.event_type,
        "orderId": envelope.order_id,
        "traceId": envelope.trace_id,
        "occurredAtMs": envelope.occurred_at_ms,
        "bodyBytes": envelope.body.len(),
    })
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

/// The headers of a re-drive: the original ones the entry kept (none of the DLQ's own), the
/// design's event headers rebuilt from the envelope where missing, and the fresh message id.
fn redrive_headers(
    dlq_headers: &async_nats::HeaderMap,
    payload: &[u8],
    msg_id: &str,
    dlq_seq: u64,
) -> async_nats::HeaderMap {
    let mut headers = async_nats::HeaderMap::new();
    for (name, values) in dlq_headers.iter() {
        let name: &str = name.as_ref();
        if name.starts_with("Dlq-") || name.starts_with("Nats-") {
            continue;
        }
        for value in values {
            headers.append(name, value.as_str());
        }
    }
    if let Ok((envelope, message)) = codec::decode(payload) {
        let traceparent = contract::traceparent(&envelope.trace_id);
        let version = envelope.version.to_string();
        let order_id = message.order_id().to_string();
        let rebuilt = [
            (HEADER_TRACE_ID, envelope.trace_id.as_str()),
            (HEADER_TRACEPARENT, traceparent.as_str()),
            (HEADER_EVENT_TYPE, envelope.event_type.as_str()),
            (HEADER_EVENT_VERSION, version.as_str()),
            (HEADER_CONTENT_TYPE, CONTENT_TYPE_POSTCARD),
            (HEADER_ORDER_ID, order_id.as_str()),
        ];
        for (name, value) in rebuilt {
            if headers.get(name).is_none() {
                headers.insert(name, value);
            }
        }
    }
    headers.insert(HEADER_MSG_ID, msg_id);
    headers.insert(HEADER_REDRIVEN_FROM, dlq_seq.to_string());
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(reason: &str) -> DlqEntry {
        DlqEntry {
            seq: 7,
            consumer: "order-stock".into(),
            original_subject: "stock.reserved".into(),
            reason: reason.into(),
            attempts: 1,
            original_msg_id: None,
            original_stream_seq: 3,
            order_id: None,
            time_ms: 0,
            payload_bytes: 0,
        }
    }

    #[test]
    fn reasons_that_differ_only_in_order_ids_share_a_class() {
        let a =
            "order refused stock.reserved: order 0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b not found";
        let b =
            "order refused stock.reserved: order 11111111-2222-4333-8444-555555555555 not found";
        assert_eq!(reason_class(a), reason_class(b));
        assert_eq!(
            reason_class(a),
            "order refused stock.reserved: order <id> not found"
        );
        assert_eq!(reason_class("undecodable: ü"), "undecodable: ü");
    }

    #[test]
    fn the_summary_counts_entries_per_consumer_and_reason_class() {
        let mut other = entry("undecodable: x");
        other.consumer = "stock".into();
        let entries = [entry("undecodable: x"), entry("undecodable: x"), other];
        let groups = summary(&entries);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].consumer, "order-stock");
        assert_eq!(groups[0].count, 2);
        assert_eq!(groups[1].count, 1);
    }

    #[test]
    fn a_redrive_id_is_fresh_but_the_same_for_the_same_entry() {
        let mut with_id = entry("x");
        with_id.original_msg_id = Some("o1.stock.reserved".into());
        assert_eq!(redrive_msg_id(&with_id), "o1.stock.reserved~redrive-7");
        assert_eq!(redrive_msg_id(&entry("x")), "stock.reserved#3~redrive-7");
    }

    #[test]
    fn an_entry_without_a_usable_subject_is_not_redrivable() {
        let mut no_subject = entry("x");
        no_subject.original_subject = String::new();
        assert!(not_redrivable(&no_subject).is_some());
        let mut loop_subject = entry("x");
        loop_subject.original_subject = "dlq.stock".into();
        assert!(not_redrivable(&loop_subject).is_some());
        assert!(not_redrivable(&entry("x")).is_none());
    }
}
