//! Payment's part in the saga: charge at the PG on `order.placed`, cancel on `order.failed`.

use bus::consumer::HandleError;
use bus::retry::{retry, Backoff, RetryPolicy};
use contract::{OrderFailed, OrderPlaced, Participant, ParticipantEvent};
use eventlog::live::{Executed, Execution, Live};
use eventlog::record::EventMeta;
use servicekit::participant::{transient, ParticipantDomain};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::{
    self, CancelResult, GatewayDecision, Payment, PaymentCommand, PaymentEvent, PaymentState,
};
use crate::gateway::{Gateway, PaymentGateway};

/// Cancellation attempts within one delivery before the failure is recorded.
pub const CANCEL_ATTEMPTS: u32 = 4;
/// First backoff between cancellation attempts; doubles each time.
pub const CANCEL_BACKOFF_MS_MIN: u64 = 50;
/// Cap of the backoff between cancellation attempts.
pub const CANCEL_BACKOFF_MS_MAX: u64 = 400;

/// The cancellation retries within one delivery: [`CANCEL_ATTEMPTS`] calls, 50, 100, 200 ms
/// apart, no wait after the last one.
pub fn cancel_backoff() -> Backoff {
    Backoff::new(RetryPolicy::forever(
        CANCEL_BACKOFF_MS_MIN,
        CANCEL_BACKOFF_MS_MAX,
    ))
    .with_max_attempts(CANCEL_ATTEMPTS)
}

/// Plugs the payment domain and its gateway into the shared participant handler.
pub struct PaymentParticipant {
    /// The PG.
    pub gateway: Gateway,
}

impl ParticipantDomain for PaymentParticipant {
    type D = Payment;
    const PARTICIPANT: Participant = Participant::Payment;

    async fn on_placed(
        &self,
        live: &Live<Payment>,
        placed: &OrderPlaced,
        meta: &EventMeta,
    ) -> Result<Option<PaymentCommand>, HandleError> {
        let order_id = placed.order_id;
        // The payment may have left memory (a redelivery long after): read_key brings it back.
        let (needed, unrecorded) = live
            .read_key(&order_id.to_string(), |s| {
                (
                    domain::needs_gateway_approval(s, order_id),
                    domain::needs_approval_request(s, order_id),
                )
            })
            .await
            .map_err(|e| HandleError::Transient(e.to_string()))?;
        if unrecorded {
            // The attempt is durable before the PG is called: if payment never learns the
            // answer (timeout, crash), a failing order is still cancelled at the PG.
            record_request(live, placed, meta).await?;
        }
        let decision = if needed {
            // The PG is idempotent on the order id, so a redelivery after a timeout or a crash
            // between this call and the commit gets the same answer back, not a second charge.
            let decision = self
                .gateway
                .approve(placed)
                .await
                .map_err(|e| HandleError::Transient(e.to_string()))?;
            self.usable(order_id, decision).await
        } else {
            GatewayDecision::Declined {
                reason: "not asked: the order was already answered".into(),
            }
        };
        Ok(Some(PaymentCommand::HandlePlaced {
            placed: placed.clone(),
            decision,
        }))
    }

    async fn on_failed(
        &self,
        live: &Live<Payment>,
        failed: &OrderFailed,
    ) -> Result<Option<PaymentCommand>, HandleError> {
        let order_id = failed.order_id;
        // `Some(None)`: a charge was requested but its answer is unknown; cancelled by order id.
        let authorization = live
            .read_key(&order_id.to_string(), |s| {
                domain::needs_gateway_cancel(s, order_id)
                    .then(|| s.payment(order_id).and_then(|p| p.authorization.clone()))
            })
            .await
            .map_err(|e| HandleError::Transient(e.to_string()))?;
        let cancel = match authorization {
            None => CancelResult::NotNeeded,
            Some(authorization) => {
                self.cancel_with_retries(order_id, authorization.as_deref())
                    .await
            }
        };
        Ok(Some(PaymentCommand::HandleFailed { order_id, cancel }))
    }

    fn outcome(event: &PaymentEvent) -> Option<ParticipantEvent> {
        domain::outcome(event)
    }

    fn settled_outcome(state: &PaymentState, order_id: Uuid) -> Option<ParticipantEvent> {
        domain::settled_outcome(state, order_id)
    }
}

/// Commits `ApprovalRequested` for an order, durably, before its PG call. No dedup key (the
/// command is a no-op once the order is known) and nothing to publish.
async fn record_request(
    live: &Live<Payment>,
    placed: &OrderPlaced,
    meta: &EventMeta,
) -> Result<(), HandleError> {
    let execution = Execution {
        meta: meta.clone(),
        dedup_key: None,
    };
    let command = PaymentCommand::RequestApproval {
        placed: placed.clone(),
    };
    match live
        .execute(execution, command, |_, _| Ok(Vec::new()))
        .await
        .map_err(transient)?
    {
        Ok(Executed::Committed { .. } | Executed::Duplicate(_)) => Ok(()),
        Err(rejection) => Err(HandleError::Poison(format!(
            "payment refused to record the charge request: {rejection:?}"
        ))),
    }
}

impl PaymentParticipant {
    /// An approval payment cannot record (no authorization to cancel it by later) is undone at
    /// the PG at once and reported as a decline: payment repairs its own failure itself.
    async fn usable(&self, order_id: Uuid, decision: GatewayDecision) -> GatewayDecision {
        match decision {
            GatewayDecision::Approved { authorization } if authorization.trim().is_empty() => {
                let reason = match self
                    .cancel_with_retries(order_id, Some(&authorization))
                    .await
                {
                    CancelResult::Failed { reason } => {
                        format!("the PG approved without an authorization; cancelling it failed: {reason}")
                    }
                    _ => "the PG approved without an authorization; approval cancelled".to_owned(),
                };
                GatewayDecision::Declined { reason }
            }
            other => other,
        }
    }

    async fn cancel_with_retries(
        &self,
        order_id: Uuid,
        authorization: Option<&str>,
    ) -> CancelResult {
        // The waits are short (350 ms in all) and the consumer lets an in-flight delivery finish
        // on shutdown, so they are not cut short: a recorded outcome beats a redelivery.
        let never = CancellationToken::new();
        let cancelled = retry(cancel_backoff(), &never, |attempt| async move {
            self.gateway
                .cancel(order_id, authorization)
                .await
                .map_err(|err| {
                    tracing::warn!(%order_id, attempt, error = %err, "cancel at the PG failed");
                    err.to_string()
                })
        })
        .await;
        match cancelled {
            Ok(()) => CancelResult::Cancelled,
            Err(err) => CancelResult::Failed {
                reason: format!(
                    "cancel failed {} times: {}",
                    err.attempts(),
                    err.into_last()
                ),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::{SimulatedGateway, SimulatedRules};
    use std::time::Duration;

    fn participant(cancel_fails: bool) -> PaymentParticipant {
        PaymentParticipant {
            gateway: Gateway::Simulated(SimulatedGateway {
                rules: SimulatedRules {
                    cancel_fails,
                    ..SimulatedRules::default()
                },
            }),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancellation_that_keeps_failing_is_tried_four_times_without_a_wait_after_the_last() {
        // Given a PG whose cancellations always fail, on a paused clock
        let payment = participant(true);
        let start = tokio::time::Instant::now();
        // When the cancellation is retried
        let result = payment
            .cancel_with_retries(Uuid::from_u128(7), Some("auth"))
            .await;
        // Then it failed CANCEL_ATTEMPTS times, 50 + 100 + 200 ms apart, and returned at once
        assert!(
            matches!(&result, CancelResult::Failed { reason } if reason.starts_with("cancel failed 4 times")),
            "{result:?}"
        );
        assert_eq!(start.elapsed(), Duration::from_millis(350));
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancellation_that_succeeds_does_not_wait() {
        // Given a PG that cancels
        let payment = participant(false);
        let start = tokio::time::Instant::now();
        // When / Then
        assert_eq!(
            payment.cancel_with_retries(Uuid::from_u128(7), None).await,
            CancelResult::Cancelled
        );
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
