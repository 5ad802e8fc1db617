//! The order service's message handling: participant outcomes in, saga decisions out; the
//! supervisor that enforces deadlines and re-drives; the data platform forwarder.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use bus::consumer::{Delivery, HandleError, Handler};
use bus::retry::{Backoff, RetryDecision, RetryPolicy, Wait};
use contract::message::{first_publish, outbox_message};
use contract::{
    OrderCompleted, OrderFailed, OutcomeKind, ParticipantEvent, SagaMessage, ORDER_FAILED,
};
use eventlog::clock::now_ms;
use eventlog::live::{Executed, Execution, Live};
use eventlog::record::{EventMeta, OutboxMessage};
use servicekit::participant::{meta_of, republish_recorded, transient};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::{
    Order, OrderCommand, OrderEvent, OrderRejection, OrderSaga, OrderStatus, Orders,
};

/// How often the supervisor looks for expired or stalled sagas.
pub const SUPERVISE_INTERVAL_MS: u64 = 250;
/// Re-publishes of `order.failed` per round before the order goes NEEDS_ATTENTION.
pub const REDRIVE_MAX: u32 = 20;
/// First re-drive backoff; doubles per attempt.
pub const REDRIVE_BACKOFF_MS_MIN: u64 = 2_000;
/// Cap of the re-drive backoff.
pub const REDRIVE_BACKOFF_MS_MAX: u64 = 60_000;
/// A completed order not yet delivered to the data platform after this long is re-published.
pub const COMPLETED_REDELIVER_AFTER_MS: u64 = 10_000;
/// How long connecting to the data platform may take.
pub const DATAPLATFORM_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one data platform request may take (connect included); below the consumer's
/// ack wait (`bus::jetstream::ACK_WAIT_SECS`), so a hung call is never handed out twice.
pub const DATAPLATFORM_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Alert kind raised when re-drives run out (`ops.alert.saga_stuck`).
pub const ALERT_SAGA_STUCK: &str = "saga_stuck";
/// Alert kind raised when a data platform delivery is parked (`ops.alert.dataplatform_failed`).
pub const ALERT_DATAPLATFORM_FAILED: &str = "dataplatform_failed";

/// The outbox messages an order's events publish.
pub fn outbox_for(state: &Orders, events: &[OrderEvent]) -> eventlog::Result<Vec<OutboxMessage>> {
    crate::observe::record(state, events);
    let mut out = Vec::new();
    for event in events {
        let order_id = event.order_id();
        let Some(saga) = state.orders.get(&order_id) else {
            continue;
        };
        let now = now_ms();
        let traceparent = bus::telemetry::current_traceparent(&saga.trace_id);
        let failed = |reason: &str| {
            SagaMessage::Failed(OrderFailed {
                order_id,
                reason: reason.to_owned(),
                required: saga.required.clone(),
            })
        };
        // `order.failed` again, under its own message id so the server does not drop it.
        let failed_again = |kind: &str, attempt: u32| {
            let reason = saga.failure_reason.clone().unwrap_or_default();
            let msg_id = format!(
                "{}~{kind}-{attempt}",
                contract::message_id(order_id, ORDER_FAILED)
            );
            outbox_message(&failed(&reason), msg_id, &saga.trace_id, &traceparent, now)
        };
        let first =
            |message: &SagaMessage| first_publish(message, &saga.trace_id, &traceparent, now);
        match event {
            OrderEvent::Placed { order, .. } => {
                out.push(first(&SagaMessage::Placed(order.clone()))?)
            }
            OrderEvent::Completed { .. } => out.push(first(&completed_message(saga))?),
            OrderEvent::Failed { reason, .. } => out.push(first(&failed(reason))?),
            OrderEvent::FailureRedriven { attempt, .. } => {
                out.push(failed_again("redrive", *attempt)?)
            }
            OrderEvent::CompensationRetried { attempt, .. } => {
                out.push(failed_again("retry", *attempt)?)
            }
            // The alert commits with the fact it reports: raised once, however often the
            // service restarts, and numbered per escalation so a later one is not deduplicated.
            OrderEvent::RedrivesExhausted {
                waiting_for,
                reason,
                ..
            } => out.push(alert_message(
                ALERT_SAGA_STUCK,
                saga,
                saga.escalations,
                serde_json::json!({
                    "waitingFor": waiting_for.iter().map(|p| p.name()).collect::<Vec<_>>(),
                    "redrives": saga.redrives,
                    "detail": reason,
                }),
            )),
            OrderEvent::DeliveryParked { reason, .. } => out.push(alert_message(
                ALERT_DATAPLATFORM_FAILED,
                saga,
                saga.delivery_parks,
                serde_json::json!({ "detail": reason }),
            )),
            OrderEvent::OutcomeRecorded { .. }
            | OrderEvent::Compensated { .. }
            | OrderEvent::AttentionNeeded { .. }
            | OrderEvent::DataPlatformDelivered { .. }
            | OrderEvent::DuplicateIgnored { .. }
            | OrderEvent::DeliveryResumed { .. } => {}
        }
    }
    Ok(out)
}

/// An operator alert (`ops.alert.<kind>`) about an order, with an id derived from the order and
/// the occurrence number (`<orderId>.ops.alert.<kind>`, then `~2`, `~3`, ...), never the clock.
pub fn alert_message(
    kind: &str,
    saga: &OrderSaga,
    occurrence: u32,
    extra: serde_json::Value,
) -> OutboxMessage {
    let order_id = saga.order.order_id;
    let subject = format!("ops.alert.{kind}");
    let mut body = serde_json::json!({
        "kind": kind,
        "orderId": order_id,
        "status": saga.status,
        "traceId": saga.trace_id,
    });
    if let (Some(body), serde_json::Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    let suffix = if occurrence > 1 {
        format!("~{occurrence}")
    } else {
        String::new()
    };
    OutboxMessage {
        msg_id: format!("{order_id}.{subject}{suffix}"),
        subject,
        headers: vec![
            (contract::HEADER_ORDER_ID.to_owned(), order_id.to_string()),
            (contract::HEADER_TRACE_ID.to_owned(), saga.trace_id.clone()),
            (
                contract::HEADER_CONTENT_TYPE.to_owned(),
                "application/json".to_owned(),
            ),
        ],
        payload: serde_json::to_vec(&body).unwrap_or_default(),
    }
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
        traceparent: bus::telemetry::current_traceparent(&saga.trace_id),
        causation_id: cause.to_owned(),
    }
}

/// Consumes the four participants' outcome streams.
pub struct OutcomeHandler {
    /// The order saga state.
    pub live: Live<Order>,
    /// Requests waiting on orders (`?wait=`), woken after each durable commit.
    pub waiters: crate::waiters::OrderWaiters,
}

impl Handler for OutcomeHandler {
    #[tracing::instrument(name = "decide", skip_all, fields(
        service = "order",
        order_id = %delivery.message.order_id(),
        trace_id = %delivery.envelope.trace_id,
        subject = %delivery.subject,
    ))]
    async fn handle(&self, delivery: Delivery) -> Result<(), HandleError> {
        let SagaMessage::Participant(event) = &delivery.message else {
            return Err(HandleError::Poison(format!(
                "order does not consume {} from participant streams",
                delivery.subject
            )));
        };
        let key = outcome_dedup_key(event, &delivery.subject, &delivery.msg_id);
        if let Some(recorded) = self.live.store().dedup(&key).map_err(transient)? {
            return republish_recorded(&self.live, &delivery, &recorded, "order").await;
        }
        let executed = record_outcome(&self.live, meta_of(&delivery), key, event)
            .await
            .map_err(transient)?;
        match executed {
            Ok(Executed::Committed { .. }) => {
                self.waiters.notify(event.order_id);
                Ok(())
            }
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

/// Executes a command about an order that may have settled and left the state: when the live
/// state does not know the order, its saga is rebuilt from the log and the command decided
/// against it (`OrderCommand::OnArchived`), so a late outcome, a repeated delivery or an
/// operator action gets the answer it got while the order was in memory.
pub async fn execute_or_archived(
    live: &Live<Order>,
    execution: Execution,
    command: OrderCommand,
) -> eventlog::Result<Result<Executed<OrderEvent>, OrderRejection>> {
    let executed = live
        .execute(execution.clone(), command.clone(), outbox_for)
        .await?;
    let Err(OrderRejection::UnknownOrder(order_id)) = executed else {
        return Ok(executed);
    };
    // A settled order never comes back to the state, so the archive cannot go stale here.
    match crate::archive::archived_saga(live.store(), order_id)? {
        Some(saga) => {
            let command = OrderCommand::OnArchived {
                saga: Box::new(saga),
                command: Box::new(command),
            };
            live.execute(execution, command, outbox_for).await
        }
        None => Ok(executed),
    }
}

/// An order's saga: from the live state, or rebuilt from the log once it settled. Answers only
/// once what it read is durable.
pub async fn find_saga(live: &Live<Order>, order_id: Uuid) -> eventlog::Result<Option<OrderSaga>> {
    if let Some(saga) = live.read(|s| s.orders.get(&order_id).cloned()).await? {
        return Ok(Some(saga));
    }
    let archived = crate::archive::archived_saga(live.store(), order_id)?;
    if archived.is_some() {
        // What the log read may include a commit not yet flushed: wait for it.
        live.read(|_| ()).await?;
    }
    Ok(archived)
}

/// The dedup key of a participant's outcome message. Compensation outcomes may legitimately
/// come again after an operator retry; the domain itself ignores true duplicates, so their key
/// includes the message id.
pub fn outcome_dedup_key(event: &ParticipantEvent, subject: &str, msg_id: &str) -> String {
    match event.kind {
        OutcomeKind::Succeeded | OutcomeKind::Rejected => {
            contract::dedup_key(event.order_id, "order", subject)
        }
        _ => contract::dedup_key(event.order_id, "order", &format!("{subject}/{msg_id}")),
    }
}

/// Records a participant's outcome under its dedup key, settled order or not.
pub async fn record_outcome(
    live: &Live<Order>,
    meta: EventMeta,
    key: String,
    event: &ParticipantEvent,
) -> eventlog::Result<Result<Executed<OrderEvent>, OrderRejection>> {
    // A compensation may settle the order as FAILED, and the state drops a settled order as the
    // event applies: the saga's duration needs its placement time from before.
    let placed_at_ms = match event.kind {
        OutcomeKind::Compensated => {
            live.peek(|state| {
                state
                    .orders
                    .get(&event.order_id)
                    .map(|s| s.order.placed_at_ms)
            })
            .await
        }
        _ => None,
    };
    let execution = Execution {
        meta,
        dedup_key: Some(key),
    };
    let command = OrderCommand::RecordOutcome {
        event: event.clone(),
        now_ms: now_ms(),
    };
    let executed = execute_or_archived(live, execution, command).await?;
    if let (Ok(Executed::Committed { events, .. }), Some(placed_at_ms)) = (&executed, placed_at_ms)
    {
        crate::observe::record_failed(placed_at_ms, events);
    }
    Ok(executed)
}

/// Runs a command the order service causes itself; rejections are expected races and ignored.
pub async fn run_own(
    live: &Live<Order>,
    saga: &OrderSaga,
    cause: &str,
    command: OrderCommand,
) -> eventlog::Result<bool> {
    // Traced in the saga's trace: a timer's step (re-drive, deadline) has no sender to continue.
    let span = tracing::info_span!(
        "decide",
        service = "order",
        order_id = %saga.order.order_id,
        trace_id = %saga.trace_id,
        cause,
    );
    let current = bus::telemetry::trace_id_of(&tracing::Span::current());
    if current.as_deref() != Some(saga.trace_id.as_str()) {
        bus::telemetry::continue_trace(&span, Some(&contract::traceparent(&saga.trace_id)));
    }
    let execution = Execution {
        meta: span.in_scope(|| own_meta(saga, cause)),
        dedup_key: None,
    };
    let executed =
        tracing::Instrument::instrument(execute_or_archived(live, execution, command), span)
            .await?;
    Ok(matches!(executed, Ok(Executed::Committed { ref events, .. }) if !events.is_empty()))
}

/// The supervisor's timing: how long it re-drives a failed order before an operator takes over,
/// and how often it re-sends an undelivered completed order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupervisorPolicy {
    /// Re-publishes of `order.failed` per round before the order goes NEEDS_ATTENTION.
    pub redrive_max: u32,
    /// First re-drive backoff; doubles per re-drive.
    pub redrive_backoff_ms_min: u64,
    /// Cap of the re-drive backoff.
    pub redrive_backoff_ms_max: u64,
    /// Quiet time before an undelivered completed order is re-sent.
    pub completed_resend_after_ms: u64,
}

impl Default for SupervisorPolicy {
    fn default() -> Self {
        Self {
            redrive_max: REDRIVE_MAX,
            redrive_backoff_ms_min: REDRIVE_BACKOFF_MS_MIN,
            redrive_backoff_ms_max: REDRIVE_BACKOFF_MS_MAX,
            completed_resend_after_ms: COMPLETED_REDELIVER_AFTER_MS,
        }
    }
}

impl SupervisorPolicy {
    /// The wait after `redrives` re-drives (of this round) before the next step.
    pub fn redrive_backoff_ms(&self, redrives: u32) -> u64 {
        self.redrive_backoff_ms_min
            .saturating_mul(1u64 << redrives.min(32))
            .min(self.redrive_backoff_ms_max.max(self.redrive_backoff_ms_min))
    }
}

/// What the supervisor does about one open order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SupervisorAction {
    /// The saga deadline passed while PENDING: fail the order.
    Expire,
    /// Compensations are missing: re-publish `order.failed`.
    Redrive,
    /// Re-drives ran out: NEEDS_ATTENTION with a reason and one `ops.alert.saga_stuck`.
    Escalate,
    /// The data platform has not confirmed a completed order (the broker may have lost
    /// `order.completed`): re-send it.
    ResendCompleted,
}

/// Re-sends of `order.completed` for one order. They change no saga state, so they are kept
/// in memory; losing them on restart only means one early re-send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Resends {
    /// Re-sends so far.
    pub count: u32,
    /// When the last one went out.
    pub last_at_ms: u64,
}

/// The supervisor's decision for one saga at `now_ms`: pure, so every branch is unit-tested.
///
/// Every saga has a way out: PENDING fails at its deadline; COMPENSATING is re-driven with
/// backoff while someone's compensation is missing, then escalated to NEEDS_ATTENTION (once per
/// round: an operator retry starts a new one); COMPLETED is re-sent until the data platform has
/// it, except while its delivery is parked in the DLQ.
pub fn next_action(
    saga: &OrderSaga,
    now_ms: u64,
    policy: &SupervisorPolicy,
    resends: Option<Resends>,
) -> Option<SupervisorAction> {
    let idle = now_ms.saturating_sub(saga.updated_at_ms);
    match saga.status {
        OrderStatus::Pending => {
            (now_ms >= saga.order.deadline_ms).then_some(SupervisorAction::Expire)
        }
        OrderStatus::Compensating | OrderStatus::NeedsAttention => {
            if saga.redrives_exhausted
                || saga.waiting_for().is_empty()
                || idle < policy.redrive_backoff_ms(saga.round_redrives)
            {
                None
            } else if saga.round_redrives >= policy.redrive_max {
                Some(SupervisorAction::Escalate)
            } else {
                Some(SupervisorAction::Redrive)
            }
        }
        OrderStatus::Completed => {
            if saga.data_platform_delivered
                || saga.delivery_parked.is_some()
                || idle < policy.completed_resend_after_ms
            {
                return None;
            }
            let due = resends.is_none_or(|r| {
                now_ms.saturating_sub(r.last_at_ms)
                    >= policy
                        .redrive_backoff_ms(r.count)
                        .max(policy.completed_resend_after_ms)
            });
            due.then_some(SupervisorAction::ResendCompleted)
        }
        OrderStatus::Failed => None,
    }
}

/// Enforces deadlines, re-drives stalled sagas and escalates them until `shutdown`.
///
/// Everything it acts on lives in the log (deadline, last progress, attempts, escalations), so
/// after a restart it simply picks up where it was.
pub async fn run_supervisor(
    live: Live<Order>,
    policy: SupervisorPolicy,
    shutdown: CancellationToken,
) -> servicekit::Result<()> {
    let mut resends: HashMap<Uuid, Resends> = HashMap::new();
    let mut interval = tokio::time::interval(Duration::from_millis(SUPERVISE_INTERVAL_MS));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = shutdown.cancelled() => return Ok(()),
        }
        let now = now_ms();
        let due: Vec<(OrderSaga, SupervisorAction)> = live
            .read(|state| {
                resends.retain(|id, _| state.open.contains(id));
                state
                    .open
                    .iter()
                    .filter_map(|id| state.orders.get(id))
                    .filter_map(|saga| {
                        let resent = resends.get(&saga.order.order_id).copied();
                        next_action(saga, now, &policy, resent).map(|a| (saga.clone(), a))
                    })
                    .collect()
            })
            .await?;
        for (saga, action) in due {
            let order_id = saga.order.order_id;
            let result = match action {
                SupervisorAction::Expire => {
                    let command = OrderCommand::Expire {
                        order_id,
                        now_ms: now,
                    };
                    run_own(&live, &saga, "supervisor:deadline", command).await
                }
                SupervisorAction::Redrive => {
                    tracing::warn!(%order_id, attempt = saga.redrives + 1, waiting_for = ?saga.waiting_for(), "re-publishing order.failed");
                    let command = OrderCommand::Redrive {
                        order_id,
                        now_ms: now,
                    };
                    run_own(&live, &saga, "supervisor:redrive", command).await
                }
                SupervisorAction::Escalate => {
                    tracing::error!(%order_id, redrives = saga.round_redrives, waiting_for = ?saga.waiting_for(), "re-drives exhausted; order needs attention");
                    let command = OrderCommand::Escalate {
                        order_id,
                        redrives: saga.round_redrives,
                        now_ms: now,
                    };
                    run_own(&live, &saga, "supervisor:escalate", command).await
                }
                SupervisorAction::ResendCompleted => {
                    let entry = resends.entry(order_id).or_default();
                    *entry = Resends {
                        count: entry.count + 1,
                        last_at_ms: now,
                    };
                    resend_completed(&live, &saga, entry.count, now).await
                }
            };
            if let Err(err) = result {
                tracing::error!(%order_id, error = %err, "supervisor step failed");
                if live.fatal().is_cancelled() {
                    return Err(err.into());
                }
            }
        }
    }
}

/// Sends `order.completed` again under an id numbered by the re-send (the broker may have lost
/// the original), and notes it on the order's timeline.
async fn resend_completed(
    live: &Live<Order>,
    saga: &OrderSaga,
    count: u32,
    now: u64,
) -> eventlog::Result<bool> {
    let order_id = saga.order.order_id;
    let copy = outbox_message(
        &completed_message(saga),
        format!(
            "{}~redeliver-{count}",
            contract::message_id(order_id, contract::ORDER_COMPLETED)
        ),
        &saga.trace_id,
        &contract::traceparent(&saga.trace_id),
        now,
    )?;
    live.note(
        own_meta(saga, "supervisor:redeliver"),
        "redrive_sent",
        "order.completed re-published: data platform has not confirmed".into(),
    )
    .await?;
    live.publish_only(own_meta(saga, "supervisor:redeliver"), vec![copy])
        .await?;
    Ok(true)
}

/// How the data platform is reached and how long a failing delivery is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataPlatformSettings {
    /// Connect timeout of the HTTP sink.
    pub connect_timeout: Duration,
    /// Whole-request timeout of the HTTP sink (below the consumer's ack wait).
    pub request_timeout: Duration,
    /// Retries of a failing delivery before it is parked in the DLQ.
    pub retry: RetryPolicy,
}

impl Default for DataPlatformSettings {
    fn default() -> Self {
        Self {
            connect_timeout: DATAPLATFORM_CONNECT_TIMEOUT,
            request_timeout: DATAPLATFORM_REQUEST_TIMEOUT,
            retry: RetryPolicy::PRODUCTION,
        }
    }
}

/// Where completed orders go.
///
/// Delivery guarantee: at-least-once. An order is sent until the sink confirms it, and may be
/// sent again after a crash between the send and the recorded `DataPlatformDelivered`, a
/// supervisor re-send, or an operator's DLQ re-drive. The HTTP sink sends the orderId as
/// `Idempotency-Key: <orderId>` so the receiver can drop repeats; the file sink drops them itself.
pub enum DataPlatformSink {
    /// JSON lines in a file (the embedded default): appends grouped per fsync, repeats of
    /// recently written orders dropped (`dataplatform_file`).
    File(crate::dataplatform_file::FileSink),
    /// An HTTP endpoint (POST, the order as JSON); the orderId travels as `Idempotency-Key`.
    /// One attempt per message delivery, bounded by the client's timeouts; the consumer's
    /// retry policy spaces the attempts.
    Http {
        /// The endpoint.
        url: String,
        /// The client, with connect and request timeouts.
        client: reqwest::Client,
    },
}

impl DataPlatformSink {
    /// The HTTP sink, with the settings' connect and request timeouts.
    /// A request timeout at or above the consumer's ack wait is lowered below it (with a
    /// warning): a call still running when the server redelivers would be made twice at once.
    pub fn http(url: String, settings: &DataPlatformSettings) -> servicekit::Result<Self> {
        let ceiling = Duration::from_secs(bus::jetstream::ACK_WAIT_SECS.saturating_sub(1));
        let mut request_timeout = settings.request_timeout;
        if request_timeout > ceiling {
            tracing::warn!(
                configured = ?request_timeout,
                used = ?ceiling,
                "data platform timeout lowered below the consumer ack wait"
            );
            request_timeout = ceiling;
        }
        let client = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout.min(request_timeout))
            .timeout(request_timeout)
            .build()
            .map_err(|e| servicekit::Error::Io(std::io::Error::other(e)))?;
        Ok(Self::Http { url, client })
    }

    /// The file sink, remembering the orders last written so a redelivery does not write twice.
    pub fn file(path: PathBuf) -> std::io::Result<Self> {
        crate::dataplatform_file::FileSink::open(path).map(Self::File)
    }

    async fn deliver(&self, order: &OrderCompleted) -> Result<(), String> {
        let body = serde_json::to_value(order).map_err(|e| e.to_string())?;
        match self {
            DataPlatformSink::File(sink) => sink.append(order.order_id, body.to_string()).await,
            DataPlatformSink::Http { url, client } => {
                let sent = client
                    .post(url)
                    .header("Idempotency-Key", order.order_id.to_string())
                    .json(&body)
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status().is_success() => Ok(()),
                    Ok(response) => Err(format!("HTTP {}", response.status())),
                    Err(err) if err.is_timeout() => Err(format!("timed out: {err}")),
                    Err(err) => Err(err.to_string()),
                }
            }
        }
    }
}

/// Whether a message is an operator's DLQ re-drive (`bus::dlq::redrive_msg_id`).
pub fn is_dlq_redrive(msg_id: &str) -> bool {
    msg_id.contains("~redrive-")
}

/// What the forwarder does with one delivery of `order.completed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardStep {
    /// The data platform has it already: ack.
    AlreadyDelivered,
    /// The order's delivery is parked in the DLQ and this is not the operator's re-drive: ack
    /// and drop the copy (the DLQ entry holds the order).
    DropParkedCopy,
    /// The message that parked the order, back because its DLQ publish failed: let the runner
    /// dead-letter it again.
    DeadLetterAgain,
    /// Send it; on failure park the order when `last_attempt`, else retry later.
    Send {
        /// Whether this delivery's retry budget is spent.
        last_attempt: bool,
    },
}

/// The forwarder's decision for a delivery: pure, so a long outage can be replayed in tests.
pub fn forward_step(
    saga: &OrderSaga,
    msg_id: &str,
    delivered: u64,
    retry: &RetryPolicy,
) -> ForwardStep {
    let last_attempt = retry.after_failure(delivered) == RetryDecision::DeadLetter;
    match &saga.delivery_parked {
        _ if saga.data_platform_delivered => ForwardStep::AlreadyDelivered,
        Some(parked) if parked.msg_id == msg_id => ForwardStep::DeadLetterAgain,
        Some(_) if !is_dlq_redrive(msg_id) => ForwardStep::DropParkedCopy,
        _ => ForwardStep::Send { last_attempt },
    }
}

/// Forwards each completed order to the data platform, at least once.
///
/// A delivery that keeps failing is retried by the consumer runner with `retry`'s backoff; when
/// its budget is spent the forwarder records `DeliveryParked` with one
/// `ops.alert.dataplatform_failed` (same commit) and the runner moves the message to the DLQ:
/// one entry and one alert per order, however many copies the supervisor had sent. While parked,
/// the supervisor stops re-sending and other copies are dropped; an operator's DLQ re-drive
/// (which records `DeliveryResumed`) brings it back.
pub struct DataPlatformForwarder {
    /// The order saga state.
    pub live: Live<Order>,
    /// Where orders go.
    pub sink: DataPlatformSink,
    /// The consumer's retry policy (the same `ConsumerSpec::retry` the runner applies).
    pub retry: RetryPolicy,
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
        let step = find_saga(&self.live, order_id)
            .await
            .map_err(transient)?
            .map(|saga| forward_step(&saga, &delivery.msg_id, delivery.delivered, &self.retry));
        let last_attempt = match step {
            None => return Err(HandleError::Poison(format!("unknown order {order_id}"))),
            Some(ForwardStep::AlreadyDelivered) => return Ok(()),
            Some(ForwardStep::DropParkedCopy) => {
                tracing::info!(%order_id, msg_id = %delivery.msg_id, "delivery parked in the DLQ; copy dropped");
                return Ok(());
            }
            Some(ForwardStep::DeadLetterAgain) => {
                return Err(HandleError::Transient(
                    "data platform: delivery parked".into(),
                ))
            }
            Some(ForwardStep::Send { last_attempt }) => last_attempt,
        };
        if let Err(reason) = self.sink.deliver(order).await {
            if last_attempt {
                let executed = execute_or_archived(
                    &self.live,
                    Execution {
                        meta: meta_of(&delivery),
                        dedup_key: None,
                    },
                    OrderCommand::ParkDelivery {
                        order_id,
                        reason: reason.clone(),
                        msg_id: delivery.msg_id.clone(),
                        now_ms: now_ms(),
                    },
                )
                .await
                .map_err(transient)?;
                if let Err(rejection) = executed {
                    tracing::warn!(%order_id, %rejection, "delivery not parked");
                }
            }
            // The runner makes the same decision: nak with backoff, or (exhausted) the DLQ.
            return Err(HandleError::Transient(format!("data platform: {reason}")));
        }
        // No dedup record: a repeated delivery finds the saga delivered (`AlreadyDelivered`),
        // and `MarkDelivered` of a delivered order decides nothing.
        let executed = execute_or_archived(
            &self.live,
            Execution {
                meta: meta_of(&delivery),
                dedup_key: None,
            },
            OrderCommand::MarkDelivered {
                order_id,
                now_ms: now_ms(),
            },
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
/// Attempts of one webhook call before the alert is naked and retried later.
pub const ALERT_WEBHOOK_ATTEMPTS: u32 = 3;
/// First backoff between webhook attempts on one alert; doubles per attempt.
pub const ALERT_WEBHOOK_BACKOFF_MS_MIN: u64 = 200;
/// Cap of the backoff between webhook attempts on one alert.
pub const ALERT_WEBHOOK_BACKOFF_MS_MAX: u64 = 800;
/// How long one webhook call may take.
pub const ALERT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);
/// When an alert the webhook did not take comes back.
pub const ALERT_WEBHOOK_NAK_DELAY: Duration = Duration::from_secs(5);
/// First backoff while the alert consumer cannot be created or subscribed; doubles per failure.
pub const ALERT_SUBSCRIBE_BACKOFF_MS_MIN: u64 = 250;
/// Cap of the backoff while the alert consumer cannot be created or subscribed.
pub const ALERT_SUBSCRIBE_BACKOFF_MS_MAX: u64 = 5_000;

/// Retries of one alert's webhook call within one delivery.
fn alert_webhook_backoff() -> Backoff {
    Backoff::new(RetryPolicy::forever(
        ALERT_WEBHOOK_BACKOFF_MS_MIN,
        ALERT_WEBHOOK_BACKOFF_MS_MAX,
    ))
    .with_max_attempts(ALERT_WEBHOOK_ATTEMPTS)
}

/// Forwards every `ops.alert.*` message to a webhook (POST, the alert's JSON as the body) until
/// `shutdown`. An alert the webhook does not take is redelivered later; none is skipped.
pub async fn run_alert_webhook(
    js: async_nats::jetstream::Context,
    url: String,
    shutdown: CancellationToken,
) -> servicekit::Result<()> {
    use futures::StreamExt;
    let client = reqwest::Client::builder()
        .timeout(ALERT_WEBHOOK_TIMEOUT)
        .build()
        .map_err(|e| servicekit::Error::Io(std::io::Error::other(e)))?;
    let spec = bus::jetstream::ConsumerSpec::new(
        contract::OPS_STREAM,
        ALERT_WEBHOOK_CONSUMER,
        "ops.alert.>",
    );
    // Both the consumer and its subscription may fail while the broker is away: every failure
    // waits (growing, capped), so the loop never spins.
    let mut resubscribe = Backoff::new(RetryPolicy::forever(
        ALERT_SUBSCRIBE_BACKOFF_MS_MIN,
        ALERT_SUBSCRIBE_BACKOFF_MS_MAX,
    ));
    while !shutdown.is_cancelled() {
        let subscribed = match bus::jetstream::ensure_consumer(&js, &spec).await {
            Ok(consumer) => consumer.messages().await.map_err(|err| err.to_string()),
            Err(err) => Err(err.to_string()),
        };
        let mut messages = match subscribed {
            Ok(messages) => messages,
            Err(error) => {
                tracing::warn!(%error, "alert consumer not available yet");
                if resubscribe.wait(&shutdown).await != Wait::Retry {
                    break;
                }
                continue;
            }
        };
        resubscribe.reset();
        loop {
            let next = tokio::select! {
                next = messages.next() => next,
                _ = shutdown.cancelled() => return Ok(()),
            };
            let Some(Ok(message)) = next else { break };
            let sent = bus::retry::retry(alert_webhook_backoff(), &shutdown, |attempt| {
                let request = client
                    .post(&url)
                    .header("Content-Type", "application/json")
                    .body(message.payload.to_vec());
                async move {
                    match request.send().await {
                        Ok(response) if response.status().is_success() => Ok(()),
                        Ok(response) => Err(format!("answered {}", response.status())),
                        Err(err) => Err(err.to_string()),
                    }
                    .inspect_err(|error| {
                        tracing::debug!(attempt, %error, "alert webhook attempt failed");
                    })
                }
            })
            .await;
            let ack = match sent {
                Ok(()) => message.ack().await,
                Err(err) => {
                    tracing::warn!(subject = %message.subject, error = %err, "alert webhook did not accept the alert; retrying later");
                    message
                        .ack_with(async_nats::jetstream::AckKind::Nak(Some(
                            ALERT_WEBHOOK_NAK_DELAY,
                        )))
                        .await
                }
            };
            if let Err(err) = ack {
                tracing::warn!(error = %err, "alert ack not sent");
            }
        }
        // The message stream ended (broker gone): re-subscribe after a wait.
        if resubscribe.wait(&shutdown).await != Wait::Retry {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::OrderHistory;
    use contract::fixtures::{self, line};
    use contract::{OrderPlaced, Participant};
    use eventlog::domain::Domain;

    const ORDER: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0042);
    const DEADLINE: u64 = 31_000;
    /// The supervisor's tick, as the simulated clock's step.
    const TICK: u64 = SUPERVISE_INTERVAL_MS;
    const HOUR_MS: u64 = 3_600_000;

    fn placed(points: u64) -> OrderEvent {
        OrderEvent::Placed {
            order: OrderPlaced {
                items: vec![line("sku-1", 1, 1_000)],
                points,
                amount: 1_000,
                deadline_ms: DEADLINE,
                ..fixtures::placed(ORDER)
            },
            trace_id: "trace-1".into(),
            idempotency_key: None,
        }
    }

    fn outcome(participant: Participant, kind: OutcomeKind, at_ms: u64) -> OrderEvent {
        OrderEvent::OutcomeRecorded {
            order_id: ORDER,
            participant,
            kind,
            reason: None,
            at_ms,
        }
    }

    fn state_of(events: &[OrderEvent]) -> Orders {
        let mut state = Orders::default();
        for event in events {
            OrderHistory::evolve(&mut state, event);
        }
        state
    }

    /// Decides and applies a command; returns the events and the alerts they publish.
    fn apply(state: &mut Orders, command: OrderCommand) -> (Vec<OrderEvent>, Vec<OutboxMessage>) {
        let events = OrderHistory::decide(state, command).expect("accepted");
        for event in &events {
            OrderHistory::evolve(state, event);
        }
        let alerts = outbox_for(state, &events)
            .expect("outbox")
            .into_iter()
            .filter(|m| m.subject.starts_with("ops.alert."))
            .collect();
        (events, alerts)
    }

    /// The order placed at `placed_ms`, paid at 2,000 ms, and stock's `stock` answer at
    /// `stock_ms`, then `then`.
    fn paid_then_stock(
        placed_ms: u64,
        (stock, stock_ms): (OutcomeKind, u64),
        then: impl IntoIterator<Item = OrderEvent>,
    ) -> Orders {
        let mut events = vec![
            placed(placed_ms),
            outcome(Participant::Payment, OutcomeKind::Succeeded, 2_000),
            outcome(Participant::Stock, stock, stock_ms),
        ];
        events.extend(then);
        state_of(&events)
    }

    /// Payment and stock compensated, point never answers `order.failed`.
    fn point_silent_after_failure() -> Orders {
        let failed = OrderEvent::Failed {
            order_id: ORDER,
            reason: "stock insufficient: sold out".into(),
            at_ms: 3_000,
        };
        let compensated = [Participant::Payment, Participant::Stock]
            .map(|participant| outcome(participant, OutcomeKind::Compensated, 3_500));
        paid_then_stock(
            500,
            (OutcomeKind::Rejected, 3_000),
            std::iter::once(failed).chain(compensated),
        )
    }

    fn completed() -> Orders {
        let completed = OrderEvent::Completed {
            order_id: ORDER,
            at_ms: 2_000,
        };
        paid_then_stock(0, (OutcomeKind::Succeeded, 2_000), [completed])
    }

    #[test]
    fn a_pending_order_expires_at_its_deadline_and_not_before() {
        // Given
        let state = state_of(&[placed(0)]);
        let saga = &state.orders[&ORDER];
        let policy = SupervisorPolicy::default();
        // When / Then
        assert_eq!(next_action(saga, DEADLINE - 1, &policy, None), None);
        assert_eq!(
            next_action(saga, DEADLINE, &policy, None),
            Some(SupervisorAction::Expire)
        );
    }

    #[test]
    fn a_silent_participant_is_redriven_with_backoff_then_the_order_needs_attention_with_one_alert()
    {
        // Given an order whose point compensation never comes, and the production policy
        let mut state = point_silent_after_failure();
        let policy = SupervisorPolicy::default();
        let mut redrive_times = Vec::new();
        let mut alerts = Vec::new();
        // When the supervisor runs for a day
        let mut now = 3_500;
        while now < 24 * HOUR_MS {
            let saga = &state.orders[&ORDER];
            match next_action(saga, now, &policy, None) {
                Some(SupervisorAction::Redrive) => {
                    redrive_times.push(now);
                    apply(
                        &mut state,
                        OrderCommand::Redrive {
                            order_id: ORDER,
                            now_ms: now,
                        },
                    );
                }
                Some(SupervisorAction::Escalate) => {
                    let redrives = saga.round_redrives;
                    let (_, raised) = apply(
                        &mut state,
                        OrderCommand::Escalate {
                            order_id: ORDER,
                            redrives,
                            now_ms: now,
                        },
                    );
                    alerts.extend(raised);
                }
                None => {}
                Some(other) => panic!("unexpected {other:?}"),
            }
            now += TICK;
        }
        // Then it was re-driven REDRIVE_MAX times, spaced by a growing, capped backoff
        assert_eq!(redrive_times.len(), REDRIVE_MAX as usize);
        let gaps: Vec<u64> = redrive_times.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.windows(2).all(|g| g[0] <= g[1]), "{gaps:?}");
        assert!(gaps.iter().all(|g| *g <= REDRIVE_BACKOFF_MS_MAX + TICK));
        // ... then escalated once: NEEDS_ATTENTION with a reason, and exactly one alert
        let saga = &state.orders[&ORDER];
        assert_eq!(saga.status, OrderStatus::NeedsAttention);
        assert_eq!(
            saga.attention_reason.as_deref(),
            Some("no compensation from point after 20 re-drives of order.failed")
        );
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].subject, "ops.alert.saga_stuck");
        assert_eq!(alerts[0].msg_id, format!("{ORDER}.ops.alert.saga_stuck"));
        let body: serde_json::Value = serde_json::from_slice(&alerts[0].payload).expect("json");
        assert_eq!(body["waitingFor"], serde_json::json!(["point"]));
        assert_eq!(body["status"], "NEEDS_ATTENTION");
    }

    #[test]
    fn an_operator_retry_starts_a_new_round_of_redrives_and_a_second_escalation_alerts_again() {
        // Given an order escalated after its re-drives
        let mut state = point_silent_after_failure();
        let policy = SupervisorPolicy {
            redrive_max: 1,
            ..SupervisorPolicy::default()
        };
        apply(
            &mut state,
            OrderCommand::Redrive {
                order_id: ORDER,
                now_ms: 10_000,
            },
        );
        apply(
            &mut state,
            OrderCommand::Escalate {
                order_id: ORDER,
                redrives: 1,
                now_ms: 20_000,
            },
        );
        assert_eq!(
            next_action(&state.orders[&ORDER], 10 * HOUR_MS, &policy, None),
            None,
            "escalated once per round"
        );
        // When the operator retries
        apply(
            &mut state,
            OrderCommand::RetryCompensation {
                order_id: ORDER,
                now_ms: 30_000,
            },
        );
        // Then the supervisor re-drives again after the first backoff, then escalates again
        let saga = &state.orders[&ORDER];
        assert_eq!(saga.status, OrderStatus::Compensating);
        let first = 30_000 + policy.redrive_backoff_ms_min;
        assert_eq!(next_action(saga, first - 1, &policy, None), None);
        assert_eq!(
            next_action(saga, first, &policy, None),
            Some(SupervisorAction::Redrive)
        );
        apply(
            &mut state,
            OrderCommand::Redrive {
                order_id: ORDER,
                now_ms: first,
            },
        );
        let later = first + policy.redrive_backoff_ms(1);
        assert_eq!(
            next_action(&state.orders[&ORDER], later, &policy, None),
            Some(SupervisorAction::Escalate)
        );
        let (_, alerts) = apply(
            &mut state,
            OrderCommand::Escalate {
                order_id: ORDER,
                redrives: 1,
                now_ms: later,
            },
        );
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].msg_id, format!("{ORDER}.ops.alert.saga_stuck~2"));
    }

    #[test]
    fn a_settled_order_needs_nothing_from_the_supervisor() {
        // Given
        let mut state = point_silent_after_failure();
        let event = outcome(Participant::Point, OutcomeKind::Compensated, 4_000);
        OrderHistory::evolve(&mut state, &event);
        OrderHistory::evolve(
            &mut state,
            &OrderEvent::Compensated {
                order_id: ORDER,
                at_ms: 4_000,
            },
        );
        // When / Then
        let saga = &state.orders[&ORDER];
        assert_eq!(saga.status, OrderStatus::Failed);
        let policy = SupervisorPolicy::default();
        assert_eq!(next_action(saga, 10 * HOUR_MS, &policy, None), None);
    }

    /// One copy of `order.completed` in the forwarder's consumer.
    struct Copy {
        msg_id: String,
        delivered: u64,
        due_ms: u64,
    }

    #[test]
    fn a_long_data_platform_outage_parks_the_order_once_and_a_redrive_delivers_it_once() {
        // Given a completed order, the production policies, and a data platform down for 3 hours
        let mut state = completed();
        let supervisor = SupervisorPolicy::default();
        let retry = RetryPolicy::PRODUCTION;
        let outage_ends = 3 * HOUR_MS;
        let mut copies = vec![Copy {
            msg_id: format!("{ORDER}.order.completed"),
            delivered: 1,
            due_ms: 2_000,
        }];
        let mut resends: Option<Resends> = None;
        let (mut dlq, mut alerts, mut sent, mut received) = (0, 0, 0, 0);
        let mut parked_at = None;
        let mut resent_while_parked = 0;
        // When the clock runs through the outage
        let mut now = 2_000;
        while now < outage_ends {
            let saga = &state.orders[&ORDER];
            if next_action(saga, now, &supervisor, resends)
                == Some(SupervisorAction::ResendCompleted)
            {
                let count = resends.map_or(1, |r| r.count + 1);
                resends = Some(Resends {
                    count,
                    last_at_ms: now,
                });
                resent_while_parked += usize::from(parked_at.is_some());
                copies.push(Copy {
                    msg_id: format!("{ORDER}.order.completed~redeliver-{count}"),
                    delivered: 1,
                    due_ms: now,
                });
            }
            let mut kept = Vec::new();
            for mut copy in copies.drain(..) {
                if copy.due_ms > now {
                    kept.push(copy);
                    continue;
                }
                let saga = &state.orders[&ORDER];
                match forward_step(saga, &copy.msg_id, copy.delivered, &retry) {
                    ForwardStep::AlreadyDelivered | ForwardStep::DropParkedCopy => {}
                    ForwardStep::DeadLetterAgain => dlq += 1,
                    ForwardStep::Send { last_attempt } => {
                        sent += 1; // and it fails: the platform is down
                        if last_attempt {
                            let (_, raised) = apply(
                                &mut state,
                                OrderCommand::ParkDelivery {
                                    order_id: ORDER,
                                    reason: "HTTP 503".into(),
                                    msg_id: copy.msg_id.clone(),
                                    now_ms: now,
                                },
                            );
                            alerts += raised.len();
                            parked_at.get_or_insert(now);
                            dlq += 1;
                        } else {
                            let RetryDecision::RetryAfter(delay) =
                                retry.after_failure(copy.delivered)
                            else {
                                panic!("the runner retries what the forwarder retries")
                            };
                            copy.delivered += 1;
                            copy.due_ms = now + u64::try_from(delay.as_millis()).expect("fits");
                            kept.push(copy);
                        }
                    }
                }
            }
            copies = kept;
            now += TICK;
        }
        // Then the order was parked once, after minutes of retries: one DLQ entry, one alert
        let parked_at = parked_at.expect("parked");
        assert!(parked_at >= 2_000 + RETRY_BUDGET_MS_FOR_TEST, "{parked_at}");
        assert_eq!(dlq, 1);
        assert_eq!(alerts, 1);
        assert_eq!(resent_while_parked, 0, "re-sends pause while parked");
        assert!(copies.is_empty(), "every copy was dead-lettered or dropped");
        assert!(sent > 1);

        // When the platform is back and an operator re-drives the DLQ entry
        apply(
            &mut state,
            OrderCommand::ResumeDelivery {
                order_id: ORDER,
                now_ms: now,
            },
        );
        let redrive = format!("{ORDER}.order.completed~redrive-7");
        for _ in 0..2 {
            // (the re-drive, then a stray duplicate of it)
            let saga = &state.orders[&ORDER];
            if let ForwardStep::Send { .. } = forward_step(saga, &redrive, 1, &retry) {
                received += 1;
                apply(
                    &mut state,
                    OrderCommand::MarkDelivered {
                        order_id: ORDER,
                        now_ms: now,
                    },
                );
            }
        }
        // Then the data platform has it exactly once and nobody needs the order any more
        assert_eq!(received, 1);
        let saga = &state.orders[&ORDER];
        assert!(saga.data_platform_delivered);
        assert_eq!(saga.delivery_parked, None);
        assert!(!state.open.contains(&ORDER));
    }

    const RETRY_BUDGET_MS_FOR_TEST: u64 = bus::retry::RETRY_BUDGET_MS;

    /// The data platform delivery of `ORDER` parked at `now_ms` after an HTTP 503.
    fn park(state: &mut Orders, now_ms: u64) {
        apply(
            state,
            OrderCommand::ParkDelivery {
                order_id: ORDER,
                reason: "HTTP 503".into(),
                msg_id: format!("{ORDER}.order.completed"),
                now_ms,
            },
        );
    }

    #[test]
    fn a_parked_copy_that_comes_back_after_a_failed_dlq_publish_is_dead_lettered_again() {
        // Given a parked order
        let mut state = completed();
        park(&mut state, 5_000);
        let saga = &state.orders[&ORDER];
        let retry = RetryPolicy::PRODUCTION;
        let spent = retry.max_deliveries();
        let id = format!("{ORDER}.order.completed");
        // When / Then
        assert_eq!(
            forward_step(saga, &id, spent + 1, &retry),
            ForwardStep::DeadLetterAgain
        );
        // ... while other copies, even on their last delivery, are dropped
        let copy = format!("{id}~redeliver-2");
        assert_eq!(
            forward_step(saga, &copy, 1, &retry),
            ForwardStep::DropParkedCopy
        );
        assert_eq!(
            forward_step(saga, &copy, spent, &retry),
            ForwardStep::DropParkedCopy
        );
        assert_eq!(
            forward_step(saga, &format!("{id}~redrive-3"), 1, &retry),
            ForwardStep::Send {
                last_attempt: false
            }
        );
    }

    #[test]
    fn a_completed_order_is_resent_with_backoff_until_delivered_but_not_while_parked() {
        // Given
        let mut state = completed();
        let policy = SupervisorPolicy::default();
        let quiet = 2_000 + COMPLETED_REDELIVER_AFTER_MS;
        // When / Then
        let saga = &state.orders[&ORDER];
        assert_eq!(next_action(saga, quiet - 1, &policy, None), None);
        assert_eq!(
            next_action(saga, quiet, &policy, None),
            Some(SupervisorAction::ResendCompleted)
        );
        let once = Resends {
            count: 1,
            last_at_ms: quiet,
        };
        assert_eq!(next_action(saga, quiet + 1, &policy, Some(once)), None);
        assert_eq!(
            next_action(
                saga,
                quiet + COMPLETED_REDELIVER_AFTER_MS,
                &policy,
                Some(once)
            ),
            Some(SupervisorAction::ResendCompleted)
        );
        park(&mut state, quiet);
        assert_eq!(
            next_action(&state.orders[&ORDER], 10 * HOUR_MS, &policy, Some(once)),
            None
        );
    }
}
