//! The message handler shared by the four participant services.
//!
//! `order.placed` and `order.failed` become domain commands; the decided events map to the
//! participant's outcome messages, committed with the input's dedup record in one commit. A
//! repeated input re-publishes the outcome recorded the first time instead of deciding again, so
//! re-sending an input recovers an outcome the broker lost.

use std::future::Future;
use std::marker::PhantomData;

use uuid::Uuid;

use axum::Router;

use crate::http::DomainApi;
use bus::consumer::{Delivery, HandleError, Handler};
use contract::ledger::{self, LedgerState, ParticipantCore};
use contract::{
    message, OrderFailed, OrderPlaced, OutcomeKind, Participant, ParticipantEvent, SagaMessage,
};
use eventlog::clock::now_ms;
use eventlog::domain::Domain;
use eventlog::live::{Executed, Execution, Live};
use eventlog::record::{DedupRecord, EventMeta, OutboxMessage};

/// What a participant service plugs into the shared handler.
pub trait ParticipantDomain: Send + Sync + 'static {
    /// The domain core.
    type D: Domain;
    /// Which participant this is.
    const PARTICIPANT: Participant;

    /// The command for an `order.placed` (may call out, e.g. to a payment gateway);
    /// `None` when the order does not involve this participant. `meta` is what events the
    /// input causes carry, for anything recorded before the command.
    fn on_placed(
        &self,
        live: &Live<Self::D>,
        placed: &OrderPlaced,
        meta: &EventMeta,
    ) -> impl Future<Output = Result<Option<<Self::D as Domain>::Command>, HandleError>> + Send;

    /// The command for an `order.failed`.
    fn on_failed(
        &self,
        live: &Live<Self::D>,
        failed: &OrderFailed,
    ) -> impl Future<Output = Result<Option<<Self::D as Domain>::Command>, HandleError>> + Send;

    /// The wire event a domain event publishes, if any.
    fn outcome(event: &<Self::D as Domain>::Event) -> Option<ParticipantEvent>;

    /// The compensation outcome already recorded for an order whose failure is settled here
    /// (undone, nothing to undo, tombstone); `None` while it is not. A re-drive of
    /// `order.failed` that decides nothing new re-publishes it, so a lost outcome is recovered.
    fn settled_outcome(
        state: &<Self::D as Domain>::State,
        order_id: Uuid,
    ) -> Option<ParticipantEvent>;
}

/// A participant whose inputs become commands without calling out (stock, coupon, point): its
/// core supplies the mapping ([`ParticipantCore`]) and its API the routes; [`Simple`] makes it a
/// service.
pub trait SimpleParticipant: ParticipantCore + Sized {
    /// The service's own routes (the common ones are added by the shell).
    fn routes() -> Router<DomainApi<Self>>;
}

/// The service of a simple participant `D`: the shared handler ([`ParticipantDomain`]) and the
/// binary ([`crate::cli::Service`]) over its domain.
pub struct Simple<D>(PhantomData<fn() -> D>);

impl<D> Default for Simple<D> {
    fn default() -> Self {
        Simple(PhantomData)
    }
}

impl<D> std::fmt::Debug for Simple<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(std::any::type_name::<Self>())
    }
}

impl<P: SimpleParticipant> ParticipantDomain for Simple<P> {
    type D = P;
    const PARTICIPANT: Participant = P::PARTICIPANT;

    async fn on_placed(
        &self,
        _: &Live<P>,
        placed: &OrderPlaced,
        _: &EventMeta,
    ) -> Result<Option<P::Command>, HandleError> {
        Ok(Some(P::placed_command(placed, now_ms())))
    }

    async fn on_failed(
        &self,
        _: &Live<P>,
        failed: &OrderFailed,
    ) -> Result<Option<P::Command>, HandleError> {
        Ok(Some(P::failed_command(failed.order_id)))
    }

    fn outcome(event: &P::Event) -> Option<ParticipantEvent> {
        ledger::outcome(P::PARTICIPANT, event)
    }

    fn settled_outcome(state: &P::State, order_id: Uuid) -> Option<ParticipantEvent> {
        ledger::settled_outcome_of(P::PARTICIPANT, order_id, state.order_status(order_id))
    }
}

/// The consumer handler of a participant: dedup, decide, commit with outbox, re-publish.
pub struct ParticipantHandler<P: ParticipantDomain> {
    live: Live<P::D>,
    domain: P,
    turns: OrderTurns,
}

impl<P: ParticipantDomain> ParticipantHandler<P> {
    /// A handler over a live state.
    pub fn new(live: Live<P::D>, domain: P) -> Self {
        Self {
            live,
            domain,
            turns: OrderTurns::default(),
        }
    }
}

/// Stripes of locks, one order's inputs taking turns on its stripe.
///
/// `order.placed` and `order.failed` come through two consumers, each serialising its own
/// messages per order, not across them. A participant's handling reads its state, may call out
/// (payment's PG) and then decides: the other input of the same order must not land in between
/// (payment would see a charge appear after it decided there was nothing to cancel). Striped,
/// so memory stays fixed; orders sharing a stripe only wait for each other's turn.
struct OrderTurns {
    stripes: Vec<tokio::sync::Mutex<()>>,
}

/// Stripes of [`OrderTurns`]: more than the consumer lanes of both inputs together.
const ORDER_TURN_STRIPES: usize = 256;

impl Default for OrderTurns {
    fn default() -> Self {
        Self {
            stripes: (0..ORDER_TURN_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        }
    }
}

impl OrderTurns {
    /// Waits for the order's turn; it lasts as long as the guard.
    async fn take(&self, order_id: uuid::Uuid) -> tokio::sync::MutexGuard<'_, ()> {
        let stripe = (order_id.as_u128() % self.stripes.len() as u128) as usize;
        self.stripes[stripe].lock().await
    }
}

/// Metadata of the events an input message causes.
pub fn meta_of(delivery: &Delivery) -> EventMeta {
    EventMeta {
        correlation_id: delivery.message.order_id().to_string(),
        trace_id: delivery.envelope.trace_id.clone(),
        // The span handling this delivery (a child of the sender's), so what it causes is
        // traced as its child; a fresh span id in the saga's trace without a tracing layer.
        traceparent: bus::telemetry::current_traceparent(&delivery.envelope.trace_id),
        causation_id: delivery.msg_id.clone(),
    }
}

/// Re-publishes what an input produced the first time, under ids derived from this delivery.
pub async fn republish_recorded<D: Domain>(
    live: &Live<D>,
    delivery: &Delivery,
    recorded: &DedupRecord,
    domain: &str,
) -> Result<(), HandleError> {
    let copies: Vec<OutboxMessage> = recorded
        .outbox
        .iter()
        .map(|m| message::republish(m, &delivery.msg_id))
        .collect();
    let subjects: Vec<&str> = recorded.outbox.iter().map(|m| m.subject.as_str()).collect();
    let detail = format!(
        "{domain}: {} ({}) seen before; re-published {:?}",
        delivery.subject, delivery.msg_id, subjects
    );
    live.note(meta_of(delivery), "duplicate_ignored", detail)
        .await
        .map_err(transient)?;
    live.publish_only(meta_of(delivery), copies)
        .await
        .map_err(transient)
}

/// The operator alert for a compensation that kept failing (`ops.alert.compensation_failed`).
pub fn compensation_alert(
    event: &ParticipantEvent,
    trace_id: &str,
    cause: &Option<String>,
) -> OutboxMessage {
    let body = serde_json::json!({
        "kind": "compensation_failed",
        "orderId": event.order_id,
        "domain": event.participant.name(),
        "event": event.subject(),
        "reason": event.reason,
        "traceId": trace_id,
    });
    OutboxMessage {
        subject: "ops.alert.compensation_failed".to_owned(),
        msg_id: format!(
            "{}.ops.alert.compensation_failed.{}{}",
            event.order_id,
            event.participant.name(),
            cause
                .as_deref()
                .map(|c| format!("~{c}"))
                .unwrap_or_default()
        ),
        headers: vec![
            (
                contract::HEADER_ORDER_ID.to_owned(),
                event.order_id.to_string(),
            ),
            (contract::HEADER_TRACE_ID.to_owned(), trace_id.to_owned()),
            (
                contract::HEADER_CONTENT_TYPE.to_owned(),
                "application/json".to_owned(),
            ),
        ],
        payload: serde_json::to_vec(&body).unwrap_or_default(),
    }
}

/// Counts committed outcomes: `saga_participant_outcomes_total{domain, kind}`, and compensations
/// (`saga_compensations_total{domain}`) and their failures (`saga_compensation_failures_total`).
fn count_outcomes(outcomes: impl Iterator<Item = contract::ParticipantEvent>) {
    for event in outcomes {
        let domain = event.participant.name();
        let kind = match event.kind {
            OutcomeKind::Succeeded => "succeeded",
            OutcomeKind::Rejected => "rejected",
            OutcomeKind::Compensated => {
                metrics::counter!("saga_compensations_total", "domain" => domain).increment(1);
                "compensated"
            }
            OutcomeKind::CompensationFailed => {
                metrics::counter!("saga_compensation_failures_total", "domain" => domain)
                    .increment(1);
                "compensation_failed"
            }
        };
        metrics::counter!("saga_participant_outcomes_total", "domain" => domain, "kind" => kind)
            .increment(1);
    }
}

/// A store failure is worth a retry.
pub fn transient(err: impl std::fmt::Display) -> HandleError {
    HandleError::Transient(err.to_string())
}

impl<P: ParticipantDomain> Handler for ParticipantHandler<P> {
    async fn handle(&self, delivery: Delivery) -> Result<(), HandleError> {
        let domain = P::PARTICIPANT.name();
        let _turn = self.turns.take(delivery.message.order_id()).await;
        let placed = match &delivery.message {
            SagaMessage::Placed(placed) => placed,
            SagaMessage::Failed(_) => return self.handle_failed(delivery).await,
            // order.completed needs nothing from participants; their work is final.
            SagaMessage::Completed(_) => return Ok(()),
            SagaMessage::Participant(_) => {
                return Err(HandleError::Poison(format!(
                    "{domain} does not consume {}",
                    delivery.subject
                )))
            }
        };
        if !placed.required_participants().contains(&P::PARTICIPANT) {
            // Not involved (no coupon, no points): nothing to decide, nothing to write.
            return Ok(());
        }
        let key = contract::dedup_key(placed.order_id, domain, "placed");
        if let Some(recorded) = self.live.store().dedup(&key).map_err(transient)? {
            return republish_recorded(&self.live, &delivery, &recorded, domain).await;
        }
        let command = self
            .domain
            .on_placed(&self.live, placed, &meta_of(&delivery))
            .await?;
        self.decide(delivery, key, command, Input::Placed).await
    }
}

/// Which input a decision answers: it sets the ids of what is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Input {
    /// `order.placed`.
    Placed,
    /// The first `order.failed` of an order.
    Failed,
    /// A later `order.failed` (re-drive or operator retry) after a compensation had failed.
    FailedRetry,
}

impl<P: ParticipantDomain> ParticipantHandler<P> {
    async fn handle_failed(&self, delivery: Delivery) -> Result<(), HandleError> {
        let domain = P::PARTICIPANT.name();
        let SagaMessage::Failed(failed) = &delivery.message else {
            return Err(HandleError::Poison("expected order.failed".into()));
        };
        if !failed.required.contains(&P::PARTICIPANT) {
            return Ok(());
        }
        let key = contract::dedup_key(failed.order_id, domain, "failed");
        if let Some(recorded) = self.live.store().dedup(&key).map_err(transient)? {
            // A compensation that failed before may be retried by a later order.failed
            // (re-drive or operator retry); anything else is a plain duplicate.
            let failed_before = recorded
                .outbox
                .iter()
                .any(|m| m.subject.ends_with("_failed"));
            if !failed_before {
                return republish_recorded(&self.live, &delivery, &recorded, domain).await;
            }
            let retry_key = format!("{key}/{}", delivery.msg_id);
            let command = self.domain.on_failed(&self.live, failed).await?;
            return self
                .decide(delivery, retry_key, command, Input::FailedRetry)
                .await;
        }
        let command = self.domain.on_failed(&self.live, failed).await?;
        self.decide(delivery, key, command, Input::Failed).await
    }

    #[tracing::instrument(name = "decide", skip_all, fields(
        service = P::PARTICIPANT.name(),
        order_id = %delivery.message.order_id(),
        trace_id = %delivery.envelope.trace_id,
        input = ?input,
    ))]
    async fn decide(
        &self,
        delivery: Delivery,
        key: String,
        command: Option<<P::D as Domain>::Command>,
        input: Input,
    ) -> Result<(), HandleError> {
        let Some(command) = command else {
            return Ok(());
        };
        // Retries of a failed compensation are keyed by their cause, and so are their ids.
        let suffix = (input == Input::FailedRetry).then(|| delivery.msg_id.clone());
        let order_id = delivery.message.order_id();
        let cause = delivery.msg_id.clone();
        let meta = meta_of(&delivery);
        let trace_id = delivery.envelope.trace_id.clone();
        let traceparent = meta.traceparent.clone();
        let executed = self
            .live
            .execute(
                Execution {
                    meta,
                    dedup_key: Some(key),
                },
                command,
                |state, events| {
                    let now = now_ms();
                    let mut out = Vec::new();
                    if events.is_empty() && input != Input::Placed {
                        // Already settled here (e.g. an operator's retry cancelled it after
                        // the first compensation failed): answer this order.failed with the
                        // outcome recorded then, under an id of this delivery, so an outcome
                        // the broker lost is recovered by a re-drive.
                        if let Some(event) = P::settled_outcome(state, order_id) {
                            let message = SagaMessage::Participant(event);
                            let first =
                                message::first_publish(&message, &trace_id, &traceparent, now)?;
                            out.push(message::republish(&first, &cause));
                        }
                        return Ok(out);
                    }
                    for event in events.iter().filter_map(P::outcome) {
                        if event.kind == OutcomeKind::CompensationFailed {
                            // The alert commits with the failure itself: it cannot be lost.
                            out.push(compensation_alert(&event, &trace_id, &suffix));
                        }
                        let message = SagaMessage::Participant(event);
                        let first = message::first_publish(&message, &trace_id, &traceparent, now)?;
                        // A retried compensation publishes again: it needs an id of its own.
                        out.push(match &suffix {
                            Some(cause) => message::republish(&first, cause),
                            None => first,
                        });
                    }
                    Ok(out)
                },
            )
            .await
            .map_err(transient)?;
        match executed {
            Ok(Executed::Committed { events, outbox })
                if events.is_empty() && !outbox.is_empty() =>
            {
                let subjects: Vec<&str> = outbox.iter().map(|m| m.subject.as_str()).collect();
                let detail = format!(
                    "{}: {} ({}) found the order already settled; re-published {subjects:?}",
                    P::PARTICIPANT.name(),
                    delivery.subject,
                    delivery.msg_id
                );
                self.live
                    .note(meta_of(&delivery), "settled_republished", detail)
                    .await
                    .map_err(transient)
            }
            Ok(Executed::Committed { events, .. }) => {
                count_outcomes(events.iter().filter_map(P::outcome));
                Ok(())
            }
            Ok(Executed::Duplicate(recorded)) => {
                republish_recorded(&self.live, &delivery, &recorded, P::PARTICIPANT.name()).await
            }
            Err(rejection) => Err(HandleError::Poison(format!(
                "{} refused {}: {rejection:?}",
                P::PARTICIPANT.name(),
                delivery.subject
            ))),
        }
    }
}
