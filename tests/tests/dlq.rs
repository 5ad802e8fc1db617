//! Poison input on the saga's subjects, and operating the DLQ through the order service's admin
//! routes: real nats-server, five real services.

use std::time::Duration;

use bus::outbox::publish_now;
use bus::testing::eventually;
use contract::codec::MAX_PAYLOAD_BYTES;
use contract::message::first_publish;
use contract::{
    codec, OrderCompleted, OrderFailed, OrderLine, OrderPlaced, OutcomeKind, Participant,
    ParticipantEvent, SagaMessage, DATAPLATFORM_CONSUMER, ORDER_STREAM,
};
use e2e::{alice_order, order_body, Options, System, ADMIN_TOKEN};
use serde_json::{json, Value};
use uuid::Uuid;

/// How long tests wait for messages to be handled or dead-lettered.
const WAIT: Duration = Duration::from_secs(60);
/// The consumers of `order.placed`.
const ORDER_CONSUMERS: [&str; 4] = ["payment", "stock", "coupon", "point"];

async fn seeded() -> System {
    System::start_seeded(Options::default()).await
}

/// Every subject the services consume (one outcome per participant), with its consumers.
fn consumed_subjects() -> Vec<(String, Vec<&'static str>)> {
    let failed_consumers = Participant::ALL.map(Participant::failed_consumer);
    let mut subjects = vec![
        ("order.placed".to_owned(), ORDER_CONSUMERS.to_vec()),
        ("order.failed".to_owned(), failed_consumers.to_vec()),
        ("order.completed".to_owned(), vec![DATAPLATFORM_CONSUMER]),
    ];
    for participant in Participant::ALL {
        subjects.push((
            participant.subject(OutcomeKind::Succeeded),
            vec![participant.order_consumer()],
        ));
    }
    subjects
}

/// A valid message for `subject`, about an order nobody knows.
fn valid_message(subject: &str) -> SagaMessage {
    let order_id = Uuid::new_v4();
    let items = vec![OrderLine {
        sku: "apple".into(),
        qty: 1,
        price: 100,
    }];
    match subject {
        "order.placed" => SagaMessage::Placed(OrderPlaced {
            order_id,
            user_id: "alice".into(),
            items,
            coupon_id: Some("C1".into()),
            points: 10,
            amount: 100,
            placed_at_ms: 1,
            deadline_ms: 2,
        }),
        "order.failed" => SagaMessage::Failed(OrderFailed {
            order_id,
            reason: "test".into(),
            required: Participant::ALL.to_vec(),
        }),
        "order.completed" => SagaMessage::Completed(OrderCompleted {
            order_id,
            user_id: "alice".into(),
            items,
            coupon_id: None,
            points: 0,
            amount: 100,
        }),
        outcome => {
            let (participant, kind) =
                Participant::parse_subject(outcome).expect("an outcome subject");
            SagaMessage::Participant(ParticipantEvent {
                order_id,
                participant,
                kind,
                reason: None,
            })
        }
    }
}

/// The envelope with another event type. Postcard lays the envelope out as: version (a one-byte
/// varint for small values), event type (a one-byte length for short names, then the bytes),
/// then the rest; the helper relies on that and checks it.
fn with_event_type(envelope: &[u8], event_type: &str) -> Vec<u8> {
    let len = usize::from(envelope[1]);
    assert!(
        len < 0x80 && event_type.len() < 0x80,
        "short names have one-byte lengths"
    );
    let mut out = vec![envelope[0], event_type.len() as u8];
    out.extend_from_slice(event_type.as_bytes());
    out.extend_from_slice(&envelope[2 + len..]);
    out
}

/// The envelope with another version (the first byte, a one-byte varint).
fn with_version(envelope: &[u8], version: u8) -> Vec<u8> {
    assert!(version < 0x80, "a one-byte varint");
    let mut out = envelope.to_vec();
    out[0] = version;
    out
}

/// Poison payloads for `subject`: (what, bytes, a fragment the DLQ reason must contain).
fn poison(subject: &str) -> Vec<(&'static str, Vec<u8>, String)> {
    let valid = codec::encode(&valid_message(subject), &"a".repeat(32), 1).expect("encodes");
    let domain = subject.split('.').next().expect("a domain");
    let unknown_type = with_event_type(&valid, &format!("{domain}.teleported"));
    let unknown_version = with_version(&valid, 99);
    // The helpers must produce exactly the errors they are named for.
    assert!(matches!(
        codec::decode(&unknown_type),
        Err(contract::Error::UnknownEventType(_))
    ));
    assert!(matches!(
        codec::decode(&unknown_version),
        Err(contract::Error::UnsupportedVersion(99))
    ));
    vec![
        (
            "garbage bytes",
            b"\xff\xfe\xfd not an envelope \x00".to_vec(),
            "undecodable".into(),
        ),
        (
            "a truncated envelope",
            valid[..valid.len() / 2].to_vec(),
            "undecodable".into(),
        ),
        (
            "an unknown event type",
            unknown_type,
            format!("unknown event type \"{domain}.teleported\""),
        ),
        (
            "an unknown version",
            unknown_version,
            "unsupported envelope version 99".into(),
        ),
        (
            "an oversized payload",
            vec![0x5a; MAX_PAYLOAD_BYTES + 16 * 1024],
            format!("exceeds {MAX_PAYLOAD_BYTES}"),
        ),
    ]
}

/// GET with the admin token.
async fn admin_get(system: &System, path: &str) -> (u16, Value) {
    system.get_admin("order", path).await
}

/// Every DLQ entry, through the admin route.
async fn dlq_entries(system: &System) -> Vec<Value> {
    let (status, body) = admin_get(system, "/admin/dlq").await;
    assert_eq!(status, 200, "{body}");
    body["entries"].as_array().cloned().unwrap_or_default()
}

fn find<'a>(
    entries: &'a [Value],
    consumer: &str,
    subject: &str,
    stream_seq: u64,
) -> Option<&'a Value> {
    entries.iter().find(|e| {
        e["consumer"] == consumer
            && e["originalSubject"] == subject
            && e["originalStreamSeq"] == stream_seq
    })
}

/// Publishes raw bytes without headers, as any client could; returns the stream seq.
async fn publish_raw(js: &async_nats::jetstream::Context, subject: &str, payload: Vec<u8>) -> u64 {
    js.publish(subject.to_owned(), payload.into())
        .await
        .expect("published")
        .await
        .expect("acked")
        .sequence
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_every_consumed_subject_lands_in_the_dlq_with_a_reason_and_the_consumers_go_on()
{
    // Given
    let system = seeded().await;
    let js = system.jetstream().await;

    // When
    let mut sent = Vec::new();
    for (subject, consumers) in consumed_subjects() {
        for (what, payload, reason) in poison(&subject) {
            let seq = publish_raw(&js, &subject, payload.clone()).await;
            sent.push((
                subject.clone(),
                consumers.clone(),
                what,
                payload,
                reason,
                seq,
            ));
        }
    }

    // Then every consumer of each subject dead-lettered each message, saying why
    let expected: usize = sent.iter().map(|s| s.1.len()).sum();
    let entries = eventually(WAIT, "every poison message in the DLQ", || async {
        let entries = dlq_entries(&system).await;
        let all = sent.iter().all(|(subject, consumers, _, _, _, seq)| {
            consumers
                .iter()
                .all(|c| find(&entries, c, subject, *seq).is_some())
        });
        all.then_some(entries)
    })
    .await;
    assert_eq!(entries.len(), expected, "nothing else was dead-lettered");
    for (subject, consumers, what, payload, reason, seq) in &sent {
        for consumer in consumers {
            let entry = find(&entries, consumer, subject, *seq).expect("found above");
            let text = entry["reason"].as_str().unwrap_or_default();
            assert!(
                text.contains(reason.as_str()),
                "{what} on {subject} ({consumer}): {text}"
            );
            assert_eq!(entry["attempts"], 1, "poison is not retried: {entry}");
            assert_eq!(
                entry["payloadBytes"],
                payload.len(),
                "the payload is kept: {entry}"
            );
        }
    }
    let oversized = find(&entries, "stock", "order.placed", sent[4].5).expect("found above");
    let (status, detail) = admin_get(&system, &format!("/admin/dlq/{}", oversized["seq"])).await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["body"]["decoded"], false, "{detail}");
    assert_eq!(detail["body"]["truncated"], true, "{detail}");
    assert!(
        detail["body"]["hex"]
            .as_str()
            .unwrap_or_default()
            .starts_with("5a5a5a"),
        "{detail}"
    );

    // ... and nothing the garbage said changed any state
    assert_eq!(system.available("apple").await, 10);
    assert_eq!(system.balance("alice").await, 500);
    assert_eq!(system.coupon("C1").await["status"], "AVAILABLE");
    let (_, orders) = system.get("order", "/orders").await;
    assert_eq!(orders["orders"], json!([]), "no order came from garbage");

    // ... and the consumers go on: a normal order still completes
    system.complete_alice_order().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_message_without_any_headers_is_handled_normally_because_headers_are_optional() {
    // Given a completed order, delivered to the data platform
    let system = seeded().await;
    let id = system.settle(alice_order(1, 100, 400), "COMPLETED").await;
    system.delivered(&id).await;
    let js = system.jetstream().await;
    let order_stream = js.get_stream(ORDER_STREAM).await.expect("ORDER stream");
    let placed = order_stream
        .get_last_raw_message_by_subject("order.placed")
        .await
        .expect("the order.placed message");
    let completed = order_stream
        .get_last_raw_message_by_subject("order.completed")
        .await
        .expect("the order.completed message");
    let stock_stream = js.get_stream("STOCK").await.expect("STOCK stream");
    let reserved = stock_stream
        .get_last_raw_message_by_subject("stock.reserved")
        .await
        .expect("the stock.reserved message");

    // When the same payloads come again with no headers at all
    let placed_seq = publish_raw(&js, "order.placed", placed.payload.to_vec()).await;
    let completed_seq = publish_raw(&js, "order.completed", completed.payload.to_vec()).await;
    let reserved_seq = publish_raw(&js, "stock.reserved", reserved.payload.to_vec()).await;

    // Then each consumer handled them as the duplicates they are (the message id falls back to
    // `<subject>#<stream seq>`) ...
    for participant in ORDER_CONSUMERS {
        let cause = format!("order.placed#{placed_seq}");
        eventually(
            WAIT,
            &format!("{participant} to note the duplicate {cause}"),
            || async {
                let (_, log) = system.get_admin(participant, &format!("/log/{id}")).await;
                let noted = log.as_array().is_some_and(|records| {
                    records.iter().any(|r| {
                        r["type"] == "note.duplicate_ignored" && r["causation"] == cause.as_str()
                    })
                });
                noted.then_some(())
            },
        )
        .await;
    }
    let cause = format!("stock.reserved#{reserved_seq}");
    eventually(
        WAIT,
        "the order service to note the duplicate outcome",
        || async {
            let (_, log) = system.get_admin("order", &format!("/log/{id}")).await;
            let noted = log.as_array().is_some_and(|records| {
                records.iter().any(|r| {
                    r["type"] == "note.duplicate_ignored" && r["causation"] == cause.as_str()
                })
            });
            noted.then_some(())
        },
    )
    .await;
    // ... every consumer acked them, and none was dead-lettered
    let waits = [
        ("ORDER", "payment", placed_seq),
        ("ORDER", "stock", placed_seq),
        ("ORDER", "coupon", placed_seq),
        ("ORDER", "point", placed_seq),
        ("ORDER", DATAPLATFORM_CONSUMER, completed_seq),
        ("STOCK", "order-stock", reserved_seq),
    ];
    for (stream, consumer, seq) in waits {
        eventually(WAIT, &format!("{consumer} to ack up to {seq}"), || async {
            let stream = js.get_stream(stream).await.ok()?;
            let info = stream.consumer_info(consumer).await.ok()?;
            (info.ack_floor.stream_sequence >= seq).then_some(())
        })
        .await;
    }
    let entries = dlq_entries(&system).await;
    assert!(entries.is_empty(), "nothing dead-lettered: {entries:?}");
    // ... and nothing happened twice
    assert_eq!(system.available("apple").await, 9);
    assert_eq!(system.balance("alice").await, 400);
    assert_eq!(system.dataplatform_lines(&id), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_for_an_unknown_order_can_be_listed_inspected_and_discarded() {
    // Given a valid stock.reserved for an order the order service never placed
    let system = System::start_default().await;
    let js = system.jetstream().await;
    let unknown = Uuid::new_v4();
    let event = SagaMessage::Participant(ParticipantEvent {
        order_id: unknown,
        participant: Participant::Stock,
        kind: OutcomeKind::Succeeded,
        reason: None,
    });
    let trace = contract::new_trace_id();
    let message =
        first_publish(&event, &trace, &contract::traceparent(&trace), 1).expect("encodes");
    publish_now(&js, &message).await.expect("published");

    // When the order service refuses it
    let entry = eventually(WAIT, "the outcome in the DLQ", || async {
        dlq_entries(&system)
            .await
            .into_iter()
            .find(|e| e["orderId"] == unknown.to_string())
    })
    .await;

    // Then the listing shows it, grouped by consumer and reason
    assert_eq!(entry["consumer"], "order-stock", "{entry}");
    assert_eq!(entry["originalSubject"], "stock.reserved", "{entry}");
    assert_eq!(
        entry["originalMsgId"],
        format!("{unknown}.stock.reserved"),
        "{entry}"
    );
    assert_eq!(entry["attempts"], 1, "{entry}");
    let reason = entry["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("not found"), "{reason}");
    let (_, listing) = admin_get(&system, "/admin/dlq").await;
    let seq = entry["seq"].as_u64().expect("a seq");
    assert_eq!(
        listing["summary"],
        json!([{
            "consumer": "order-stock",
            "reason": "order refused stock.reserved: order <id> not found",
            "count": 1,
            "seqs": [seq],
        }]),
        "{listing}"
    );
    // ... inspecting it shows the decoded message
    let (status, detail) = admin_get(&system, &format!("/admin/dlq/{seq}")).await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["body"]["decoded"], true, "{detail}");
    assert_eq!(
        detail["body"]["message"],
        json!({"Participant": {"orderId": unknown, "participant": "stock", "kind": "Succeeded", "reason": null}}),
        "{detail}"
    );
    assert_eq!(detail["body"]["envelope"]["traceId"], trace, "{detail}");
    // ... the CLI prints the same through the admin routes
    let cli = |action| order::config::DlqArgs {
        url: system.url("order"),
        action,
    };
    let list = order::cli::run_dlq(
        &cli(order::config::DlqAction::List { limit: None }),
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(list, Ok(0));
    let show = order::cli::run_dlq(
        &cli(order::config::DlqAction::Show { seq }),
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(show, Ok(0));

    // When it is discarded
    let (status, discarded) = system
        .post("order", &format!("/admin/dlq/{seq}/discard"), Value::Null)
        .await;

    // Then it is gone, and there was no order to note it on
    assert_eq!(status, 200, "{discarded}");
    assert_eq!(discarded["noted"], false, "{discarded}");
    let (status, body) = admin_get(&system, &format!("/admin/dlq/{seq}")).await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].is_string(), "{body}");
    assert!(dlq_entries(&system).await.is_empty());
    let (status, _) = system
        .post("order", &format!("/admin/dlq/{seq}/discard"), Value::Null)
        .await;
    assert_eq!(status, 404, "a second discard finds nothing");
    let (status, _) = system
        .post("order", &format!("/admin/dlq/{seq}/redrive"), Value::Null)
        .await;
    assert_eq!(status, 404, "a discarded entry cannot be re-driven");
    let show = order::cli::run_dlq(
        &cli(order::config::DlqAction::Show { seq }),
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(show, Ok(1), "the CLI fails on a missing entry");
    let (status, body) = admin_get(&system, "/admin/dlq/not-a-seq").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "seq", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_order_the_data_platform_refused_is_redriven_once_fixed_and_the_redrive_is_on_its_timeline(
) {
    // Given a data platform that cannot take anything (its file is a directory)
    let system = System::start_default().await;
    system.restock("apple", 10).await;
    let sink = system.break_dataplatform_file();
    let bought = order_body("bob", &[("apple", 1, 500)], None, 0, 500);
    let id = system.settle(bought, "COMPLETED").await;
    // ... so the forwarder gave up on the order after its retries
    let entry = eventually(WAIT, "the completed order in the DLQ", || async {
        dlq_entries(&system)
            .await
            .into_iter()
            .find(|e| e["orderId"] == id.as_str() && e["consumer"] == DATAPLATFORM_CONSUMER)
    })
    .await;
    let reason = entry["reason"].as_str().unwrap_or_default();
    let attempts = e2e::TEST_DATAPLATFORM_RETRY.max_deliveries();
    assert!(
        reason.contains(&format!("failed {attempts} deliveries")),
        "{reason}"
    );
    assert!(reason.contains("data platform"), "{reason}");
    let seq = entry["seq"].as_u64().expect("a seq");

    // When the data platform is fixed and an operator re-drives the entry
    std::fs::remove_dir(&sink).expect("the directory is removed");
    let (status, redriven) = system
        .post("order", &format!("/admin/dlq/{seq}/redrive"), Value::Null)
        .await;

    // Then the order reaches the data platform, once
    assert_eq!(status, 200, "{redriven}");
    assert_eq!(redriven["subject"], "order.completed", "{redriven}");
    // The fresh id derives from the original one (or, without one, from subject and seq).
    let original = match entry["originalMsgId"].as_str() {
        Some(id) => id.to_owned(),
        None => format!("order.completed#{}", entry["originalStreamSeq"]),
    };
    assert_eq!(
        redriven["msgId"],
        format!("{original}~redrive-{seq}"),
        "{redriven}"
    );
    assert_eq!(redriven["noted"], true, "{redriven}");
    system.delivered(&id).await;
    // ... the entry is gone, and a second re-drive finds nothing to do
    let (status, body) = admin_get(&system, &format!("/admin/dlq/{seq}")).await;
    assert_eq!(status, 404, "{body}");
    let (status, again) = system
        .post("order", &format!("/admin/dlq/{seq}/redrive"), Value::Null)
        .await;
    assert_eq!(status, 404, "{again}");
    // ... and the order's timeline says what the operator did, once
    let (_, timeline) = system.get("order", &format!("/orders/{id}/timeline")).await;
    let notes: Vec<&Value> = timeline["steps"]
        .as_array()
        .map(|steps| {
            steps
                .iter()
                .filter(|s| s["type"] == "note.dlq_redrive")
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(notes.len(), 1, "{timeline}");
    let detail = notes[0]["payload"]["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(&format!("DLQ entry {seq}")), "{detail}");
    assert_eq!(
        notes[0]["causation"],
        format!("admin:dlq_redrive {seq}"),
        "{timeline}"
    );
    assert_eq!(system.dataplatform_lines(&id), 1, "delivered exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dlq_admin_routes_refuse_requests_without_the_admin_token() {
    // Given
    let system = System::start_default().await;
    let base = system.url("order");
    let routes = [
        (reqwest::Method::GET, "/admin/dlq"),
        (reqwest::Method::GET, "/admin/dlq/1"),
        (reqwest::Method::POST, "/admin/dlq/1/redrive"),
        (reqwest::Method::POST, "/admin/dlq/1/discard"),
    ];
    for (method, path) in routes {
        for token in [None, Some("wrong-token")] {
            // When
            let mut request = system.http.request(method.clone(), format!("{base}{path}"));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.expect("order service reachable");
            // Then
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            assert_eq!(status, 401, "{method} {path} with {token:?}: {body}");
            assert!(body["error"].is_string(), "{body}");
        }
    }
}
