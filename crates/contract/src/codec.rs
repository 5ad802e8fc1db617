//! The versioned postcard envelope every saga message travels in.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::wire::{
    OrderCompleted, OrderFailed, OrderPlaced, Participant, ParticipantEvent, SagaMessage,
    ORDER_COMPLETED, ORDER_FAILED, ORDER_PLACED,
};

/// The envelope version this build writes and reads.
pub const ENVELOPE_VERSION: u16 = 1;
/// Largest payload a consumer accepts; bigger ones are poison.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

/// What travels on the wire: a version, the event type, and the postcard-encoded body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Envelope schema version; unknown versions are refused, never guessed.
    pub version: u16,
    /// The event type, equal to the subject (`order.placed`).
    pub event_type: String,
    /// The order the event concerns.
    pub order_id: Uuid,
    /// The saga's trace id.
    pub trace_id: String,
    /// When the event was recorded (ms since the Unix epoch).
    pub occurred_at_ms: u64,
    /// The body, postcard-encoded, type given by `event_type`.
    pub body: Vec<u8>,
}

/// Encodes a saga message into envelope bytes.
pub fn encode(
    message: &SagaMessage,
    trace_id: &str,
    occurred_at_ms: u64,
) -> std::result::Result<Vec<u8>, postcard::Error> {
    let body = match message {
        SagaMessage::Placed(m) => postcard::to_stdvec(m)?,
        SagaMessage::Failed(m) => postcard::to_stdvec(m)?,
        SagaMessage::Completed(m) => postcard::to_stdvec(m)?,
        SagaMessage::Participant(m) => postcard::to_stdvec(m)?,
    };
    let envelope = Envelope {
        version: ENVELOPE_VERSION,
        event_type: message.subject(),
        order_id: message.order_id(),
        trace_id: trace_id.to_owned(),
        occurred_at_ms,
        body,
    };
    postcard::to_stdvec(&envelope)
}

/// Decodes envelope bytes; every malformed input is a typed error, never a panic.
pub fn decode(bytes: &[u8]) -> Result<(Envelope, SagaMessage)> {
    if bytes.len() > MAX_PAYLOAD_BYTES {
        return Err(Error::Malformed {
            reason: format!(
                "payload of {} bytes exceeds {MAX_PAYLOAD_BYTES}",
                bytes.len()
            ),
        });
    }
    let (envelope, rest): (Envelope, &[u8]) = postcard::take_from_bytes(bytes)?;
    if !rest.is_empty() {
        return Err(Error::Codec(postcard::Error::DeserializeBadEncoding));
    }
    if envelope.version != ENVELOPE_VERSION {
        return Err(Error::UnsupportedVersion(envelope.version));
    }
    let message = match envelope.event_type.as_str() {
        ORDER_PLACED => SagaMessage::Placed(strict::<OrderPlaced>(&envelope.body)?),
        ORDER_FAILED => SagaMessage::Failed(strict::<OrderFailed>(&envelope.body)?),
        ORDER_COMPLETED => SagaMessage::Completed(strict::<OrderCompleted>(&envelope.body)?),
        other => match Participant::parse_subject(other) {
            Some((participant, kind)) => {
                let event = strict::<ParticipantEvent>(&envelope.body)?;
                if event.participant != participant || event.kind != kind {
                    return Err(Error::UnknownEventType(format!(
                        "{other} (body says {})",
                        event.subject()
                    )));
                }
                SagaMessage::Participant(event)
            }
            None => return Err(Error::UnknownEventType(other.to_owned())),
        },
    };
    if message.order_id() != envelope.order_id {
        return Err(Error::UnknownEventType(format!(
            "{}: envelope order {} differs from body order {}",
            envelope.event_type,
            envelope.order_id,
            message.order_id()
        )));
    }
    Ok((envelope, message))
}

/// Decodes a body and refuses trailing bytes, so a truncated or padded body is not half-read.
fn strict<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let (value, rest) = postcard::take_from_bytes(bytes)?;
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(Error::Codec(postcard::Error::DeserializeBadEncoding))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{OrderLine, OutcomeKind};

    fn placed() -> SagaMessage {
        SagaMessage::Placed(OrderPlaced {
            order_id: Uuid::new_v4(),
            user_id: "u1".into(),
            items: vec![OrderLine {
                sku: "sku-1".into(),
                qty: 2,
                price: 500,
            }],
            coupon_id: Some("c1".into()),
            points: 10,
            amount: 990,
            placed_at_ms: 1,
            deadline_ms: 2,
        })
    }

    #[test]
    fn a_message_survives_a_round_trip() {
        let message = placed();
        let bytes = encode(&message, "t", 5).expect("encodes");
        let (envelope, decoded) = decode(&bytes).expect("decodes");
        assert_eq!(decoded, message);
        assert_eq!(envelope.event_type, "order.placed");
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = encode(&placed(), "t", 5).expect("encodes");
        for len in 0..bytes.len() {
            assert!(
                decode(&bytes[..len]).is_err(),
                "prefix of {len} bytes decoded"
            );
        }
    }

    #[test]
    fn an_unknown_version_is_a_typed_error() {
        let mut envelope: Envelope =
            postcard::from_bytes(&encode(&placed(), "t", 5).expect("encodes")).expect("decodes");
        envelope.version = 7;
        let bytes = postcard::to_stdvec(&envelope).expect("encodes");
        assert!(matches!(decode(&bytes), Err(Error::UnsupportedVersion(7))));
    }

    #[test]
    fn an_unknown_event_type_is_a_typed_error() {
        let mut envelope: Envelope =
            postcard::from_bytes(&encode(&placed(), "t", 5).expect("encodes")).expect("decodes");
        envelope.event_type = "order.teleported".into();
        let bytes = postcard::to_stdvec(&envelope).expect("encodes");
        assert!(matches!(decode(&bytes), Err(Error::UnknownEventType(_))));
    }

    #[test]
    fn a_participant_subject_must_match_its_body() {
        let event = ParticipantEvent {
            order_id: Uuid::new_v4(),
            participant: Participant::Stock,
            kind: OutcomeKind::Succeeded,
            reason: None,
        };
        let bytes = encode(&SagaMessage::Participant(event), "t", 1).expect("encodes");
        let (_, decoded) = decode(&bytes).expect("decodes");
        assert_eq!(decoded.subject(), "stock.reserved");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
                let _ = decode(&bytes);
            }

            #[test]
            fn a_flipped_byte_never_panics_and_never_changes_the_order_silently(at in 0usize..4096, xor in 1u8..=255) {
                let message = placed();
                let mut bytes = encode(&message, "t", 5).expect("encodes");
                let at = at % bytes.len();
                bytes[at] ^= xor;
                if let Ok((envelope, decoded)) = decode(&bytes) {
                    // Whatever survives a corruption is still self-consistent.
                    prop_assert_eq!(envelope.order_id, decoded.order_id());
                    prop_assert_eq!(envelope.event_type, decoded.subject());
                }
            }

            #[test]
            fn every_participant_event_round_trips(p in 0usize..4, k in 0usize..4, reason in proptest::option::of(".{0,40}")) {
                let event = ParticipantEvent {
                    order_id: Uuid::new_v4(),
                    participant: Participant::ALL[p],
                    kind: OutcomeKind::ALL[k],
                    reason,
                };
                let message = SagaMessage::Participant(event);
                let bytes = encode(&message, "trace", 9).expect("encodes");
                let (_, decoded) = decode(&bytes).expect("decodes");
                prop_assert_eq!(decoded, message);
            }
        }
    }
}
