//! The order service's message handling: participant outcomes in, saga decisions out; the
//! supervisor that enforces deadlines and re-drives; the data platform forwarder.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use store::consumer::{Delivery, HandleError, Handler};
use store::contract::{self, OrderCompleted, OrderFailed, OutcomeKind, SagaMessage, ORDER_FAILED};
use store::live::{Executed, Execution, Live};
use store::outbox;
use store::participant::{meta_of, republish_recorded, transient};
use store::record::{EventMeta, OutboxMessage};
use store::service::now_ms;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::{Order, OrderCommand, OrderEvent, OrderSaga, OrderStatus, Orders};

/// How often the supervisor looks for expired or stalled sagas.
pub const SUPERVISE_INTERVAL_MS: u64 = 250;
/// Re-publishes of `order.failed` before the saga counts as stuck.
pub const REDRIVE_MAX: u32 = 20;
/// First re-drive backoff; doubles per attempt.
pub const REDRIVE_BACKOFF_MS_MIN: u64 = 2_000;
/// Cap of the re-drive backoff.
pub const REDRIVE_BACKOFF_MS_MAX: u64 = 60_000;
/// A saga still compensating this long after its deadline raises `ops.alert.saga_stuck`.
pub const SAGA_STUCK_AFTER_MS: u64 = 60_000;
/// A completed order not yet delivered to the data platform after this long is re-published.
pub const COMPLETED_REDELIVER_AFTER_MS: u64 = 10_000;
/// Attempts of one data platform HTTP delivery within one message delivery.
pub const DATAPLATFORM_ATTEMPTS: u32 = 3;

/// The outbox messages an order's events publish.
pub fn outbox_for(state: &Orders, events: &[OrderEvent]) -> store::Result<Vec<OutboxMessage>> {
    let mut out = Vec::new();
    for event in events {
        let order_id = event.order_id();
        let Some(saga) = state.orders.get(&order_id) else {
            continue;
        };
        let now = now_ms();
        let traceparent = contract::traceparent(&saga.trace_id);
        let failed = |reason: &str| {
            SagaMessage::Failed(OrderFailed {
                order_id,
                reason: reason.to_owned(),
                required: saga.required.clone(),
            })
        };
        let reason = saga.failure_reason.clone().unwrap_or_default();
        match event {
            OrderEvent::Placed { order, .. } => out.push(outbox::first_publish(
                &SagaMessage::Placed(order.clone()),
                &saga.trace_id,
                &traceparent,
                now,
            )?),
            OrderEvent::Completed { .. } => out.push(outbox::first_publish(
                &completed_message(saga),
                &saga.trace_id,
                &traceparent,
                now,
            )?),
            OrderEvent::Failed { reason, .. } => out.push(outbox::first_publish(
                &failed(reason),
                &saga.trace_id,
                &traceparent,
                now,
            )?),
            OrderEvent::FailureRedriven { attempt, .. } => out.push(outbox::outbox_message(
                &failed(&reason),
                format!(
                    "{}~redrive-{attempt}",
                    contract::message_id(order_id, ORDER_FAILED)
                ),
                &saga.trace_id,
                &traceparent,
                now,
            )?),
            OrderEvent::CompensationRetried { attempt, .. } => out.push(outbox::outbox_message(
                &failed(&reason),
                format!(
                    "{}~retry-{attempt}",
                    contract::message_id(order_id, ORDER_FAILED)
                ),
                &saga.trace_id,
                &traceparent,
                now,
            )?),
            _ => {}
        }
    }
    Ok(out)
}

fn completed_message(saga: &OrderSaga) -> SagaMessage {
    SagaMessage::Completed(OrderCompleted {
        order_id: saga.order.order_id,
        user_id: saga.order.user_id.clone(),
        items: saga.order.items.clone(),
        coupon_id: saga.order.coupon_id.clone(),
        points: saga.order.points,
        amount: saga.order.amount,
    })
}

/// Metadata for events the order service causes itself (timers, HTTP).
pub fn own_meta(saga: &OrderSaga, cause: &str) -> EventMeta {
    EventMeta {
        correlation_id: saga.order.order_id.to_string(),
        trace_id: saga.trace_id.clone(),
        traceparent: contract::traceparent(&saga.trace_id),
        causation_id: cause.to_owned(),
    }
}

/// Consumes the four participants' outcome streams.
pub struct OutcomeHandler {
    /// The order saga state.
    pub live: Live<Order>,
}

impl Handler for OutcomeHandler {
    #[tracing::instrument(skip_all, fields(order_id = %delivery.message.order_id(), subject = %delivery.subject))]
    async fn handle(&self, delivery: Delivery) -> Result<(), HandleError> {
        let SagaMessage::Participant(event) = &delivery.message else {
            return Err(HandleError::Poison(format!(
                "order does not consume {} from participant streams",
                delivery.subject
            )));
        };
        // Compensation outcomes may legitimately come again after an operator retry; the domain
        // itself ignores true duplicates, so their key includes the message id.
        let key = match event.kind {
            OutcomeKind::Succeeded | OutcomeKind::Rejected => {
                contract::dedup_key(event.order_id, "order", &delivery.subject)
            }
            _ => contract::dedup_key(
                event.order_id,
                "order",
                &format!("{}/{}", delivery.subject, delivery.msg_id),
            ),
        };
        if let Some(recorded) = self.live.store().dedup(&key).map_err(transient)? {
            return republish_recorded(&self.live, &delivery, &recorded, "order").await;
        }
        let command = OrderCommand::RecordOutcome {
            event: event.clone(),
            now_ms: now_ms(),
        };
        let executed = self
            .live
            .execute(
                Execution {
                    meta: meta_of(&delivery),
                    dedup_key: Some(key),
                },
                command,
                outbox_for,
            )
            .await
            .map_err(transient)?;
        match executed {
            Ok(Executed::Committed { .. }) => Ok(()),
            Ok(Executed::Duplicate(recorded)) => {
                republish_recorded(&self.live, &delivery, &recorded, "order").await
            }
            Err(rejection) => Err(HandleError::Poison(format!(
                "order refused {}: {rejection}",
                delivery.subject
            ))),
        }
    }
}

/// Runs a command the order service causes itself; rejections are expected races and ignored.
pub async fn run_own(
    live: &Live<Order>,
    saga: &OrderSaga,
    cause: &str,
    command: OrderCommand,
) -> store::Result<bool> {
    let executed = live
        .execute(
            Execution {
                meta: own_meta(saga, cause),
                dedup_key: None,
            },
            command,
            outbox_for,
        )
        .await?;
    Ok(matches!(executed, Ok(Executed::Committed { ref events, .. }) if !events.is_empty()))
}

fn redrive_backoff_ms(redrives: u32) -> u64 {
    REDRIVE_BACKOFF_MS_MIN
        .saturating_mul(1u64 << redrives.min(16))
        .min(REDRIVE_BACKOFF_MS_MAX)
}

/// Enforces deadlines and re-drives stalled sagas until `shutdown`.
///
/// Everything it acts on lives in the log (deadline, last progress, attempts), so after a
/// restart it simply picks up where it was.
pub async fn run_supervisor(
    live: Live<Order>,
    js: async_nats::jetstream::Context,
    shutdown: CancellationToken,
) -> store::Result<()> {
    let mut alerted: HashSet<Uuid> = HashSet::new();
    // Re-sends of order.completed change no saga state, so their backoff is kept here:
    // (attempts, last attempt). Losing it on restart only means one early re-send.
    let mut redelivered: HashMap<Uuid, (u32, u64)> = HashMap::new();
    let mut interval = tokio::time::interval(Duration::from_millis(SUPERVISE_INTERVAL_MS));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = shutdown.cancelled() => return Ok(()),
        }
        let now = now_ms();
        let due: Vec<(OrderSaga, &'static str)> = live
            .read(|state| {
                state
                    .open
                    .iter()
                    .filter_map(|id| state.orders.get(id))
                    .filter_map(|saga| {
                        let idle = now.saturating_sub(saga.updated_at_ms);
                        match saga.status {
                            OrderStatus::Pending if now >= saga.order.deadline_ms => {
                                Some((saga.clone(), "deadline"))
                            }
                            OrderStatus::Compensating | OrderStatus::NeedsAttention
                                if !saga.waiting_for().is_empty()
                                    && idle >= redrive_backoff_ms(saga.redrives) =>
                            {
                                Some((saga.clone(), "redrive"))
                            }
                            OrderStatus::Compensating
                                if now
                                    >= saga
                                        .order
                                        .deadline_ms
                                        .saturating_add(SAGA_STUCK_AFTER_MS)
                                    && !alerted.contains(&saga.order.order_id) =>
                            {
                                Some((saga.clone(), "stuck"))
                            }
                            OrderStatus::Completed
                                if !saga.data_platform_delivered
                                    && idle >= COMPLETED_REDELIVER_AFTER_MS
                                    && redelivered.get(&saga.order.order_id).is_none_or(
                                        |(attempts, last)| {
                                            now.saturating_sub(*last)
                                                >= redrive_backoff_ms(*attempts)
                                                    .max(COMPLETED_REDELIVER_AFTER_MS)
                                        },
                                    ) =>
                            {
                                Some((saga.clone(), "redeliver"))
                            }
                            _ => None,
                        }
                    })
                    .collect()
            })
            .await?;
        for (saga, why) in due {
            let order_id = saga.order.order_id;
            let result = match why {
                "deadline" => {
                    run_own(
                        &live,
                        &saga,
                        "supervisor:deadline",
                        OrderCommand::Expire {
                            order_id,
                            now_ms: now,
                        },
                    )
                    .await
                }
                "redrive" if saga.redrives < REDRIVE_MAX => {
                    tracing::warn!(%order_id, attempt = saga.redrives + 1, waiting_for = ?saga.waiting_for(), "re-publishing order.failed");
                    run_own(
                        &live,
                        &saga,
                        "supervisor:redrive",
                        OrderCommand::Redrive {
                            order_id,
                            now_ms: now,
                        },
                    )
                    .await
                }
                "redrive" | "stuck" => {
                    if alerted.insert(order_id) {
                        let detail = format!(
                            "order {order_id} is {} past its deadline, waiting for {:?} after {} re-drives",
                            saga.status, saga.waiting_for(), saga.redrives
                        );
                        alert(&js, "saga_stuck", order_id, &detail).await;
                    }
                    Ok(false)
                }
                _ => {
                    let entry = redelivered.entry(order_id).or_insert((0, now));
                    *entry = (entry.0 + 1, now);
                    // The broker may have lost order.completed: send it again under a new id.
                    let message = completed_message(&saga);
                    let copy = outbox::outbox_message(
                        &message,
                        format!(
                            "{}~redeliver-{now}",
                            contract::message_id(order_id, contract::ORDER_COMPLETED)
                        ),
                        &saga.trace_id,
                        &contract::traceparent(&saga.trace_id),
                        now,
                    )?;
                    live.note(
                        own_meta(&saga, "supervisor:redeliver"),
                        "redrive_sent",
                        "order.completed re-published: data platform has not confirmed".into(),
                    )
                    .await?;
                    live.publish_only(own_meta(&saga, "supervisor:redeliver"), vec![copy])
                        .await?;
                    Ok(true)
                }
            };
            if let Err(err) = result {
                tracing::error!(%order_id, error = %err, "supervisor step failed");
                if live.fatal().is_cancelled() {
                    return Err(err);
                }
            }
        }
    }
}

/// Publishes an operator alert on `ops.alert.<kind>` (best effort: the log already has the facts).
pub async fn alert(js: &async_nats::jetstream::Context, kind: &str, order_id: Uuid, detail: &str) {
    let message = OutboxMessage {
        subject: format!("ops.alert.{kind}"),
        msg_id: format!("alert.{kind}.{order_id}.{}", now_ms()),
        headers: vec![
            (contract::HEADER_ORDER_ID.to_owned(), order_id.to_string()),
            ("Content-Type".to_owned(), "application/json".to_owned()),
        ],
        payload: serde_json::to_vec(
            &serde_json::json!({"kind": kind, "orderId": order_id, "detail": detail}),
        )
        .unwrap_or_default(),
    };
    tracing::error!(%order_id, kind, detail, "operator alert");
    if let Err(err) = outbox::publish_now(js, &message).await {
        tracing::error!(error = %err, "alert not published");
    }
}

/// Where completed orders go.
pub enum DataPlatformSink {
    /// JSON lines in a file (the embedded default); keeps the ids already written.
    File {
        /// The file.
        path: PathBuf,
        /// Orders already in it.
        written: Mutex<HashSet<Uuid>>,
    },
    /// An HTTP endpoint; the orderId travels as `Idempotency-Key`.
    Http {
        /// The endpoint.
        url: String,
        /// The client.
        client: reqwest::Client,
    },
}

impl DataPlatformSink {
    /// The file sink, loading the ids already delivered so a redelivery does not write twice.
    pub fn file(path: PathBuf) -> std::io::Result<Self> {
        let mut written = HashSet::new();
        if let Ok(text) = std::fs::read_to_string(&path) {
            for line in text.lines() {
                if let Some(id) = serde_json::from_str::<serde_json::Value>(line)
                    .ok()
                    .and_then(|v| {
                        v.get("orderId")
                            .and_then(|v| v.as_str())
                            .and_then(|s| s.parse().ok())
                    })
                {
                    written.insert(id);
                }
            }
        }
        Ok(Self::File {
            path,
            written: Mutex::new(written),
        })
    }

    async fn deliver(&self, order: &OrderCompleted) -> Result<(), String> {
        let body = serde_json::to_value(order).map_err(|e| e.to_string())?;
        match self {
            DataPlatformSink::File { path, written } => {
                let path = path.clone();
                let id = order.order_id;
                {
                    let seen = written
                        .lock()
                        .map_err(|_| "sink lock poisoned".to_owned())?;
                    if seen.contains(&id) {
                        return Ok(());
                    }
                }
                let line = format!("{body}\n");
                tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                    use std::io::Write;
                    let mut file = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&path)?;
                    file.write_all(line.as_bytes())?;
                    file.sync_data()
                })
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
                written
                    .lock()
                    .map_err(|_| "sink lock poisoned".to_owned())?
                    .insert(id);
                Ok(())
            }
            DataPlatformSink::Http { url, client } => {
                let mut last = String::new();
                for attempt in 0..DATAPLATFORM_ATTEMPTS {
                    let sent = client
                        .post(url)
                        .header("Idempotency-Key", order.order_id.to_string())
                        .json(&body)
                        .send()
                        .await;
                    match sent {
                        Ok(response) if response.status().is_success() => return Ok(()),
                        Ok(response) => last = format!("HTTP {}", response.status()),
                        Err(err) => last = err.to_string(),
                    }
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
                Err(last)
            }
        }
    }
}

/// Forwards each completed order once to the data platform.
pub struct DataPlatformForwarder {
    /// The order saga state.
    pub live: Live<Order>,
    /// Where orders go.
    pub sink: DataPlatformSink,
    /// For alerts.
    pub js: async_nats::jetstream::Context,
}

impl Handler for DataPlatformForwarder {
    #[tracing::instrument(skip_all, fields(order_id = %delivery.message.order_id()))]
    async fn handle(&self, delivery: Delivery) -> Result<(), HandleError> {
        let SagaMessage::Completed(order) = &delivery.message else {
            return Err(HandleError::Poison(format!(
                "dataplatform does not consume {}",
                delivery.subject
            )));
        };
        let order_id = order.order_id;
        let delivered = self
            .live
            .read(|s| s.orders.get(&order_id).map(|o| o.data_platform_delivered))
            .await
            .map_err(transient)?;
        match delivered {
            Some(true) => return Ok(()),
            Some(false) => {}
            None => return Err(HandleError::Poison(format!("unknown order {order_id}"))),
        }
        if let Err(reason) = self.sink.deliver(order).await {
            if delivery.delivered >= store::consumer::MAX_DELIVERIES {
                alert(&self.js, "dataplatform_failed", order_id, &reason).await;
            }
            return Err(HandleError::Transient(format!("data platform: {reason}")));
        }
        let key = contract::dedup_key(order_id, "dataplatform", "completed");
        let executed = self
            .live
            .execute(
                Execution {
                    meta: meta_of(&delivery),
                    dedup_key: Some(key),
                },
                OrderCommand::MarkDelivered {
                    order_id,
                    now_ms: now_ms(),
                },
                outbox_for,
            )
            .await
            .map_err(transient)?;
        match executed {
            Ok(_) => Ok(()),
            Err(rejection) => Err(HandleError::Poison(rejection.to_string())),
        }
    }
}

/// Durable consumer that forwards operator alerts to the webhook.
pub const ALERT_WEBHOOK_CONSUMER: &str = "alerts-webhook";
/// Attempts of one webhook call before the alert is retried later.
pub const ALERT_WEBHOOK_ATTEMPTS: u32 = 3;

/// Forwards every `ops.alert.*` message to a webhook (POST, the alert's JSON as the body) until
/// `shutdown`. An alert the webhook does not take is redelivered later; none is skipped.
pub async fn run_alert_webhook(
    js: async_nats::jetstream::Context,
    url: String,
    shutdown: CancellationToken,
) -> store::Result<()> {
    use futures::StreamExt;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| store::Error::Io(std::io::Error::other(e)))?;
    let spec = store::jetstream::ConsumerSpec::new(
        contract::OPS_STREAM,
        ALERT_WEBHOOK_CONSUMER,
        "ops.alert.>",
    );
    while !shutdown.is_cancelled() {
        let consumer = match store::jetstream::ensure_consumer(&js, &spec).await {
            Ok(consumer) => consumer,
            Err(err) => {
                tracing::warn!(error = %err, "alert consumer not available yet");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = shutdown.cancelled() => break,
                }
            }
        };
        let mut messages = match consumer.messages().await {
            Ok(messages) => messages,
            Err(err) => {
                tracing::warn!(error = %err, "alert subscription failed");
                continue;
            }
        };
        loop {
            let next = tokio::select! {
                next = messages.next() => next,
                _ = shutdown.cancelled() => return Ok(()),
            };
            let Some(Ok(message)) = next else { break };
            let mut delivered = false;
            for attempt in 0..ALERT_WEBHOOK_ATTEMPTS {
                let sent = client
                    .post(&url)
                    .header("Content-Type", "application/json")
                    .body(message.payload.to_vec())
                    .send()
                    .await;
                if matches!(&sent, Ok(r) if r.status().is_success()) {
                    delivered = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
            }
            let ack = if delivered {
                message.ack().await
            } else {
                tracing::warn!(subject = %message.subject, "alert webhook did not accept the alert; retrying later");
                message
                    .ack_with(async_nats::jetstream::AckKind::Nak(Some(
                        Duration::from_secs(5),
                    )))
                    .await
            };
            if let Err(err) = ack {
                tracing::warn!(error = %err, "alert ack not sent");
            }
        }
    }
    Ok(())
}
