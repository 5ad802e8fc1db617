//! The order domain's given/when/then tests.

use super::*;
use contract::fixtures::{self, line};
use eventlog::scenario::given;

const ORDER: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001);
const PLACED_AT: u64 = 1_000;
const DEADLINE: u64 = 31_000;

fn order_with(coupon_id: Option<&str>, points: u64) -> OrderPlaced {
    OrderPlaced {
        items: vec![line("sku-1", 2, 5_000)],
        coupon_id: coupon_id.map(Into::into),
        points,
        amount: 10_000,
        placed_at_ms: PLACED_AT,
        deadline_ms: DEADLINE,
        ..fixtures::placed(ORDER)
    }
}

/// An order that needs all four participants.
fn full_order() -> OrderPlaced {
    order_with(Some("WELCOME10"), 500)
}

fn placed(order: OrderPlaced) -> OrderEvent {
    OrderEvent::Placed {
        order,
        trace_id: "trace-1".into(),
        idempotency_key: Some("key-1".into()),
    }
}

fn outcome(participant: Participant, kind: OutcomeKind, reason: Option<&str>) -> ParticipantEvent {
    ParticipantEvent {
        order_id: ORDER,
        participant,
        kind,
        reason: reason.map(Into::into),
    }
}

fn record(
    participant: Participant,
    kind: OutcomeKind,
    reason: Option<&str>,
    now_ms: u64,
) -> OrderCommand {
    OrderCommand::RecordOutcome {
        event: outcome(participant, kind, reason),
        now_ms,
    }
}

fn recorded(
    participant: Participant,
    kind: OutcomeKind,
    reason: Option<&str>,
    at_ms: u64,
) -> OrderEvent {
    OrderEvent::OutcomeRecorded {
        order_id: ORDER,
        participant,
        kind,
        reason: reason.map(Into::into),
        at_ms,
    }
}

fn succeeded(participant: Participant, at_ms: u64) -> OrderEvent {
    recorded(participant, OutcomeKind::Succeeded, None, at_ms)
}

fn compensated(participant: Participant, at_ms: u64) -> OrderEvent {
    recorded(participant, OutcomeKind::Compensated, None, at_ms)
}

const DECLINE_REASON: &str = "payment declined: amount above limit";

/// A full order whose payment was declined after stock, coupon and point succeeded.
fn failed_history() -> Vec<OrderEvent> {
    vec![
        placed(full_order()),
        succeeded(Participant::Stock, 2_000),
        succeeded(Participant::Coupon, 2_000),
        succeeded(Participant::Point, 2_000),
        recorded(
            Participant::Payment,
            OutcomeKind::Rejected,
            Some("amount above limit"),
            3_000,
        ),
        OrderEvent::Failed {
            order_id: ORDER,
            reason: DECLINE_REASON.into(),
            at_ms: 3_000,
        },
    ]
}

/// The failed order, with every compensation in except the point refund, which failed.
fn needs_attention_history() -> Vec<OrderEvent> {
    let mut events = failed_history();
    events.extend([
        compensated(Participant::Payment, 4_000),
        compensated(Participant::Stock, 4_000),
        compensated(Participant::Coupon, 4_000),
    ]);
    events.extend(point_refund_failed(5_000));
    events
}

/// The point refund failing for good, as recorded.
fn point_refund_failed(at_ms: u64) -> [OrderEvent; 2] {
    [
        recorded(
            Participant::Point,
            OutcomeKind::CompensationFailed,
            Some("ledger down"),
            at_ms,
        ),
        OrderEvent::AttentionNeeded {
            order_id: ORDER,
            participant: Participant::Point,
            reason: "point refund_failed: ledger down".into(),
            at_ms,
        },
    ]
}

fn completed_history() -> Vec<OrderEvent> {
    vec![
        placed(order_with(None, 0)),
        succeeded(Participant::Payment, 2_000),
        succeeded(Participant::Stock, 2_000),
        OrderEvent::Completed {
            order_id: ORDER,
            at_ms: 2_000,
        },
    ]
}

#[test]
fn placing_an_order_makes_it_pending_and_findable_by_trace_and_key() {
    // Given
    let scenario = given::<Order>([]);
    // When
    let state = scenario
        .when(OrderCommand::Place {
            order: full_order(),
            trace_id: "trace-1".into(),
            idempotency_key: Some("key-1".into()),
        })
        // Then
        .then([placed(full_order())]);
    let saga = &state.orders[&ORDER];
    assert_eq!(saga.status, OrderStatus::Pending);
    assert_eq!(saga.required, Participant::ALL.to_vec());
    assert_eq!(saga.waiting_for(), Participant::ALL.to_vec());
    assert_eq!(saga.updated_at_ms, PLACED_AT);
    assert_eq!(state.by_trace["trace-1"], ORDER);
    assert_eq!(state.by_idempotency_key["key-1"], ORDER);
}

#[test]
fn placing_an_order_id_twice_is_rejected() {
    // Given
    let scenario = given::<Order>([placed(full_order())]);
    // When
    scenario
        .when(OrderCommand::Place {
            order: full_order(),
            trace_id: "trace-2".into(),
            idempotency_key: None,
        })
        // Then
        .then_rejected(OrderRejection::DuplicateOrder(ORDER));
}

#[test]
fn reusing_an_idempotency_key_names_the_order_it_placed() {
    // Given
    let scenario = given::<Order>([placed(full_order())]);
    let mut other = full_order();
    other.order_id = Uuid::from_u128(2);
    // When
    scenario
        .when(OrderCommand::Place {
            order: other,
            trace_id: "trace-2".into(),
            idempotency_key: Some("key-1".into()),
        })
        // Then
        .then_rejected(OrderRejection::IdempotencyKeyReused {
            key: "key-1".into(),
            order_id: ORDER,
        });
}

#[test]
fn an_outcome_for_an_unknown_order_is_rejected() {
    // Given
    let scenario = given::<Order>([]);
    // When
    scenario
        .when(record(
            Participant::Payment,
            OutcomeKind::Succeeded,
            None,
            2_000,
        ))
        // Then
        .then_rejected(OrderRejection::UnknownOrder(ORDER));
}

#[test]
fn the_last_of_four_successes_completes_the_order() {
    // Given
    let scenario = given::<Order>([
        placed(full_order()),
        succeeded(Participant::Payment, 2_000),
        succeeded(Participant::Stock, 2_100),
        succeeded(Participant::Coupon, 2_200),
    ]);
    // When
    let state = scenario
        .when(record(
            Participant::Point,
            OutcomeKind::Succeeded,
            None,
            2_300,
        ))
        // Then
        .then([
            succeeded(Participant::Point, 2_300),
            OrderEvent::Completed {
                order_id: ORDER,
                at_ms: 2_300,
            },
        ]);
    let saga = &state.orders[&ORDER];
    assert_eq!(saga.status, OrderStatus::Completed);
    assert!(saga.status.is_terminal());
    assert!(saga.waiting_for().is_empty());
    assert_eq!(saga.updated_at_ms, 2_300);
}

#[test]
fn without_coupon_and_points_payment_and_stock_are_enough() {
    // Given
    let scenario = given::<Order>([
        placed(order_with(None, 0)),
        succeeded(Participant::Payment, 2_000),
    ]);
    assert_eq!(
        scenario.state().orders[&ORDER].required,
        vec![Participant::Payment, Participant::Stock]
    );
    // When
    scenario
        .when(record(
            Participant::Stock,
            OutcomeKind::Succeeded,
            None,
            2_100,
        ))
        // Then
        .then([
            succeeded(Participant::Stock, 2_100),
            OrderEvent::Completed {
                order_id: ORDER,
                at_ms: 2_100,
            },
        ]);
}

#[test]
fn completion_waits_for_every_required_participant() {
    // Given
    let scenario = given::<Order>([
        placed(full_order()),
        succeeded(Participant::Payment, 2_000),
        succeeded(Participant::Stock, 2_100),
    ]);
    // When
    let state = scenario
        .when(record(
            Participant::Coupon,
            OutcomeKind::Succeeded,
            None,
            2_200,
        ))
        // Then
        .then([succeeded(Participant::Coupon, 2_200)]);
    let saga = &state.orders[&ORDER];
    assert_eq!(saga.status, OrderStatus::Pending);
    assert_eq!(saga.waiting_for(), vec![Participant::Point]);
}

#[test]
fn a_participant_outside_the_order_is_ignored() {
    // Given
    let scenario = given::<Order>([placed(order_with(None, 0))]);
    // When
    scenario
        .when(record(
            Participant::Coupon,
            OutcomeKind::Succeeded,
            None,
            2_000,
        ))
        // Then
        .then([OrderEvent::DuplicateIgnored {
            order_id: ORDER,
            participant: Participant::Coupon,
            kind: OutcomeKind::Succeeded,
            at_ms: 2_000,
        }]);
}

#[test]
fn the_first_rejection_fails_the_order_with_its_reason() {
    // Given
    let scenario = given::<Order>([
        placed(full_order()),
        succeeded(Participant::Stock, 2_000),
        succeeded(Participant::Coupon, 2_000),
        succeeded(Participant::Point, 2_000),
    ]);
    // When
    let state = scenario
        .when(record(
            Participant::Payment,
            OutcomeKind::Rejected,
            Some("amount above limit"),
            3_000,
        ))
        // Then
        .then(failed_history().split_off(4));
    let saga = &state.orders[&ORDER];
    assert_eq!(saga.status, OrderStatus::Compensating);
    assert_eq!(saga.failure_reason.as_deref(), Some(DECLINE_REASON));
    assert_eq!(saga.waiting_for(), Participant::ALL.to_vec());
}

#[test]
fn a_second_rejection_after_the_failure_is_recorded_without_failing_again() {
    // Given
    let scenario = given::<Order>([
        placed(full_order()),
        recorded(
            Participant::Payment,
            OutcomeKind::Rejected,
            Some("declined"),
            2_000,
        ),
        OrderEvent::Failed {
            order_id: ORDER,
            reason: "payment declined: declined".into(),
            at_ms: 2_000,
        },
    ]);
    // When
    let state = scenario
        .when(record(
            Participant::Stock,
            OutcomeKind::Rejected,
            Some("sold out"),
            2_500,
        ))
        // Then
        .then([recorded(
            Participant::Stock,
            OutcomeKind::Rejected,
            Some("sold out"),
            2_500,
        )]);
    let saga = &state.orders[&ORDER];
    assert_eq!(saga.status, OrderStatus::Compensating);
    assert_eq!(
        saga.failure_reason.as_deref(),
        Some("payment declined: declined")
    );
}

#[test]
fn the_last_compensation_marks_the_order_failed() {
    // Given
    let mut history = failed_history();
    history.extend([
        compensated(Participant::Payment, 4_000),
        compensated(Participant::Stock, 4_100),
        compensated(Participant::Coupon, 4_200),
    ]);
    let scenario = given::<OrderHistory>(history);
    // When
    let state = scenario
        .when(record(
            Participant::Point,
            OutcomeKind::Compensated,
            None,
            4_300,
        ))
        // Then
        .then([
            compensated(Participant::Point, 4_300),
            OrderEvent::Compensated {
                order_id: ORDER,
                at_ms: 4_300,
            },
        ]);
    let saga = &state.orders[&ORDER];
    assert_eq!(saga.status, OrderStatus::Failed);
    assert!(saga.status.is_terminal());
    assert_eq!(saga.failure_reason.as_deref(), Some(DECLINE_REASON));
}

#[test]
fn a_failed_compensation_needs_attention_instead_of_failing_the_order() {
    // Given
    let mut history = failed_history();
    history.extend([
        compensated(Participant::Payment, 4_000),
        compensated(Participant::Stock, 4_000),
    ]);
    let scenario = given::<Order>(history);
    // When
    let state = scenario
        .when(record(
            Participant::Point,
            OutcomeKind::CompensationFailed,
            Some("ledger down"),
            5_000,
        ))
        // Then
        .then(point_refund_failed(5_000));
    let saga = &state.orders[&ORDER];
    assert_eq!(saga.status, OrderStatus::NeedsAttention);
    assert_eq!(
        saga.attention_reason.as_deref(),
        Some("point refund_failed: ledger down")
    );
    assert_eq!(saga.waiting_for(), vec![Participant::Coupon]);
}

#[test]
fn the_last_compensation_after_a_failed_one_leaves_the_order_needing_attention() {
    // Given
    let mut history = failed_history();
    history.extend([
        compensated(Participant::Payment, 4_000),
        compensated(Participant::Stock, 4_000),
    ]);
    history.extend(point_refund_failed(5_000));
    let scenario = given::<Order>(history);
    // When
    let state = scenario
        .when(record(
            Participant::Coupon,
            OutcomeKind::Compensated,
            None,
            6_000,
        ))
        // Then
        .then([compensated(Participant::Coupon, 6_000)]);
    let saga = &state.orders[&ORDER];
    assert_eq!(saga.status, OrderStatus::NeedsAttention);
    assert!(saga.waiting_for().is_empty());
}

#[test]
fn an_operator_retry_followed_by_the_compensation_fails_the_order() {
    // Given
    let retried = given::<OrderHistory>(needs_attention_history())
        // When
        .when(OrderCommand::RetryCompensation {
            order_id: ORDER,
            now_ms: 7_000,
        })
        // Then
        .then([OrderEvent::CompensationRetried {
            order_id: ORDER,
            attempt: 1,
            at_ms: 7_000,
        }]);
    let saga = &retried.orders[&ORDER];
    assert_eq!(saga.status, OrderStatus::Compensating);
    assert_eq!(saga.redrives, 1);
    assert_eq!(saga.attention_reason, None);
    assert_eq!(saga.waiting_for(), vec![Participant::Point]);

    // Given the retry is in the log
    let mut history = needs_attention_history();
    history.push(OrderEvent::CompensationRetried {
        order_id: ORDER,
        attempt: 1,
        at_ms: 7_000,
    });
    // When
    let state = given::<OrderHistory>(history)
        .when(record(
            Participant::Point,
            OutcomeKind::Compensated,
            None,
            8_000,
        ))
        // Then
        .then([
            compensated(Participant::Point, 8_000),
            OrderEvent::Compensated {
                order_id: ORDER,
                at_ms: 8_000,
            },
        ]);
    assert_eq!(state.orders[&ORDER].status, OrderStatus::Failed);
}

#[test]
fn a_participant_fixing_its_own_compensation_resolves_the_attention() {
    // Given
    let scenario = given::<Order>(needs_attention_history());
    // When
    scenario
        .when(record(
            Participant::Point,
            OutcomeKind::Compensated,
            None,
            9_000,
        ))
        // Then
        .then([
            compensated(Participant::Point, 9_000),
            OrderEvent::Compensated {
                order_id: ORDER,
                at_ms: 9_000,
            },
        ]);
}

#[test]
fn retrying_compensation_of_an_order_not_needing_attention_is_rejected() {
    // Given
    let scenario = given::<Order>(failed_history());
    // When
    scenario
        .when(OrderCommand::RetryCompensation {
            order_id: ORDER,
            now_ms: 7_000,
        })
        // Then
        .then_rejected(OrderRejection::NotNeedingAttention(ORDER));
}

/// The failed order with every compensation in except point's, which never answered.
fn point_silent_history() -> Vec<OrderEvent> {
    let mut events = failed_history();
    events.extend([
        compensated(Participant::Payment, 4_000),
        compensated(Participant::Stock, 4_000),
        compensated(Participant::Coupon, 4_000),
        OrderEvent::FailureRedriven {
            order_id: ORDER,
            attempt: 1,
            at_ms: 6_000,
        },
    ]);
    events
}

fn redrives_exhausted(at_ms: u64) -> OrderEvent {
    OrderEvent::RedrivesExhausted {
        order_id: ORDER,
        waiting_for: vec![Participant::Point],
        reason: "no compensation from point after 1 re-drives of order.failed".into(),
        at_ms,
    }
}

#[test]
fn exhausted_redrives_leave_the_order_needing_attention_with_a_reason() {
    // Given
    let scenario = given::<Order>(point_silent_history());
    // When
    let state = scenario
        .when(OrderCommand::Escalate {
            order_id: ORDER,
            redrives: 1,
            now_ms: 10_000,
        })
        // Then
        .then([redrives_exhausted(10_000)]);
    let saga = &state.orders[&ORDER];
    assert_eq!(saga.status, OrderStatus::NeedsAttention);
    assert_eq!(
        saga.attention_reason.as_deref(),
        Some("no compensation from point after 1 re-drives of order.failed")
    );
    assert!(saga.redrives_exhausted);
    assert_eq!(saga.escalations, 1);
    assert_eq!(saga.waiting_for(), vec![Participant::Point]);
    assert!(state.open.contains(&ORDER), "still an operator's to close");
}

#[test]
fn escalating_again_in_the_same_round_records_nothing() {
    // Given
    let mut history = point_silent_history();
    history.push(redrives_exhausted(10_000));
    // When
    given::<Order>(history)
        .when(OrderCommand::Escalate {
            order_id: ORDER,
            redrives: 1,
            now_ms: 20_000,
        })
        // Then
        .then_nothing();
}

#[test]
fn escalating_an_order_nobody_is_missing_from_is_rejected() {
    // Given
    let scenario = given::<Order>(completed_history());
    // When
    scenario
        .when(OrderCommand::Escalate {
            order_id: ORDER,
            redrives: 20,
            now_ms: 20_000,
        })
        // Then
        .then_rejected(OrderRejection::NotCompensating(ORDER));
}

#[test]
fn exhausted_redrives_after_a_failed_compensation_keep_both_reasons() {
    // Given point's refund failed and coupon never answered
    let mut history = failed_history();
    history.extend([
        compensated(Participant::Payment, 4_000),
        compensated(Participant::Stock, 4_000),
    ]);
    history.extend(point_refund_failed(5_000));
    let scenario = given::<Order>(history);
    // When
    let state = scenario
        .when(OrderCommand::Escalate {
            order_id: ORDER,
            redrives: 20,
            now_ms: 9_000,
        })
        // Then
        .then([OrderEvent::RedrivesExhausted {
            order_id: ORDER,
            waiting_for: vec![Participant::Coupon],
            reason: "no compensation from coupon after 20 re-drives of order.failed".into(),
            at_ms: 9_000,
        }]);
    assert_eq!(
        state.orders[&ORDER].attention_reason.as_deref(),
        Some(
            "point refund_failed: ledger down; \
             no compensation from coupon after 20 re-drives of order.failed"
        )
    );
}

#[test]
fn an_operator_retry_after_exhausted_redrives_fails_the_order_once_the_participant_answers() {
    // Given
    let mut history = point_silent_history();
    history.push(redrives_exhausted(10_000));
    // When
    let retried = given::<OrderHistory>(history.clone())
        .when(OrderCommand::RetryCompensation {
            order_id: ORDER,
            now_ms: 11_000,
        })
        // Then
        .then([OrderEvent::CompensationRetried {
            order_id: ORDER,
            attempt: 2,
            at_ms: 11_000,
        }]);
    let saga = &retried.orders[&ORDER];
    assert_eq!(saga.status, OrderStatus::Compensating);
    assert_eq!(saga.attention_reason, None);
    assert_eq!(saga.round_redrives, 0, "a fresh round of re-drives");
    assert!(!saga.redrives_exhausted);

    // Given the retry is in the log
    history.push(OrderEvent::CompensationRetried {
        order_id: ORDER,
        attempt: 2,
        at_ms: 11_000,
    });
    // When point finally answers
    let state = given::<OrderHistory>(history)
        .when(record(
            Participant::Point,
            OutcomeKind::Compensated,
            None,
            12_000,
        ))
        // Then
        .then([
            compensated(Participant::Point, 12_000),
            OrderEvent::Compensated {
                order_id: ORDER,
                at_ms: 12_000,
            },
        ]);
    assert_eq!(state.orders[&ORDER].status, OrderStatus::Failed);
    assert!(!state.open.contains(&ORDER));
}

fn parked(at_ms: u64) -> OrderEvent {
    OrderEvent::DeliveryParked {
        order_id: ORDER,
        reason: "HTTP 503".into(),
        msg_id: "m-1".into(),
        at_ms,
    }
}

#[test]
fn a_delivery_is_parked_once_and_a_resume_takes_it_up_again() {
    // Given
    let scenario = given::<Order>(completed_history());
    // When
    let state = scenario
        .when(OrderCommand::ParkDelivery {
            order_id: ORDER,
            reason: "HTTP 503".into(),
            msg_id: "m-1".into(),
            now_ms: 5_000,
        })
        // Then
        .then([parked(5_000)]);
    let saga = &state.orders[&ORDER];
    assert_eq!(
        saga.delivery_parked,
        Some(ParkedDelivery {
            reason: "HTTP 503".into(),
            msg_id: "m-1".into()
        })
    );
    assert_eq!(saga.delivery_parks, 1);
    assert_eq!(saga.updated_at_ms, 2_000, "parking is not saga progress");

    // Given it is parked
    let mut history = completed_history();
    history.push(parked(5_000));
    // When another copy fails for good
    given::<Order>(history.clone())
        .when(OrderCommand::ParkDelivery {
            order_id: ORDER,
            reason: "HTTP 503".into(),
            msg_id: "m-2".into(),
            now_ms: 6_000,
        })
        // Then
        .then_nothing();
    // When an operator re-drives it
    let state = given::<Order>(history)
        .when(OrderCommand::ResumeDelivery {
            order_id: ORDER,
            now_ms: 7_000,
        })
        // Then
        .then([OrderEvent::DeliveryResumed {
            order_id: ORDER,
            at_ms: 7_000,
        }]);
    assert_eq!(state.orders[&ORDER].delivery_parked, None);
}

#[test]
fn delivering_a_parked_order_unparks_it() {
    // Given
    let mut history = completed_history();
    history.push(parked(5_000));
    // When
    let state = given::<OrderHistory>(history)
        .when(OrderCommand::MarkDelivered {
            order_id: ORDER,
            now_ms: 8_000,
        })
        // Then
        .then([OrderEvent::DataPlatformDelivered {
            order_id: ORDER,
            at_ms: 8_000,
        }]);
    assert_eq!(state.orders[&ORDER].delivery_parked, None);
    assert!(!state.open.contains(&ORDER));
}

#[test]
fn resuming_a_delivery_that_is_not_parked_is_rejected() {
    // Given
    let scenario = given::<Order>(completed_history());
    // When
    scenario
        .when(OrderCommand::ResumeDelivery {
            order_id: ORDER,
            now_ms: 7_000,
        })
        // Then
        .then_rejected(OrderRejection::NotParked(ORDER));
}

#[test]
fn parking_an_order_that_is_not_completed_is_rejected() {
    // Given
    let scenario = given::<Order>(failed_history());
    // When
    scenario
        .when(OrderCommand::ParkDelivery {
            order_id: ORDER,
            reason: "HTTP 503".into(),
            msg_id: "m-1".into(),
            now_ms: 7_000,
        })
        // Then
        .then_rejected(OrderRejection::NotCompleted(ORDER));
}

#[test]
fn before_the_deadline_expiry_does_nothing() {
    // Given
    let scenario = given::<Order>([placed(full_order())]);
    // When
    scenario
        .when(OrderCommand::Expire {
            order_id: ORDER,
            now_ms: DEADLINE - 1,
        })
        // Then
        .then_nothing();
}

#[test]
fn at_the_deadline_the_order_fails_naming_whom_it_waited_for() {
    // Given
    let scenario = given::<Order>([
        placed(full_order()),
        succeeded(Participant::Payment, 2_000),
        succeeded(Participant::Coupon, 2_000),
    ]);
    // When
    let state = scenario
        .when(OrderCommand::Expire {
            order_id: ORDER,
            now_ms: DEADLINE,
        })
        // Then
        .then([OrderEvent::Failed {
            order_id: ORDER,
            reason: "deadline passed, waiting for stock, point".into(),
            at_ms: DEADLINE,
        }]);
    assert_eq!(state.orders[&ORDER].status, OrderStatus::Compensating);
}

#[test]
fn expiring_a_completed_order_does_nothing() {
    // Given
    let scenario = given::<Order>(completed_history());
    // When
    scenario
        .when(OrderCommand::Expire {
            order_id: ORDER,
            now_ms: DEADLINE + 1,
        })
        // Then
        .then_nothing();
}

#[test]
fn each_redrive_counts_one_more_attempt() {
    // Given
    let mut history = failed_history();
    history.push(OrderEvent::FailureRedriven {
        order_id: ORDER,
        attempt: 1,
        at_ms: 10_000,
    });
    let scenario = given::<Order>(history);
    // When
    let state = scenario
        .when(OrderCommand::Redrive {
            order_id: ORDER,
            now_ms: 20_000,
        })
        // Then
        .then([OrderEvent::FailureRedriven {
            order_id: ORDER,
            attempt: 2,
            at_ms: 20_000,
        }]);
    assert_eq!(state.orders[&ORDER].redrives, 2);
    assert_eq!(state.orders[&ORDER].updated_at_ms, 20_000);
}

#[test]
fn redriving_a_pending_order_is_rejected() {
    // Given
    let scenario = given::<Order>([placed(full_order())]);
    // When
    scenario
        .when(OrderCommand::Redrive {
            order_id: ORDER,
            now_ms: 2_000,
        })
        // Then
        .then_rejected(OrderRejection::NotCompensating(ORDER));
}

#[test]
fn redriving_an_order_needing_attention_only_helps_while_someone_is_missing() {
    // Given
    let scenario = given::<Order>(needs_attention_history());
    // When
    scenario
        .when(OrderCommand::Redrive {
            order_id: ORDER,
            now_ms: 6_000,
        })
        // Then
        .then_rejected(OrderRejection::NotCompensating(ORDER));
}

#[test]
fn redriving_an_order_needing_attention_reaches_those_still_missing() {
    // Given
    let mut history = failed_history();
    history.extend([
        compensated(Participant::Payment, 4_000),
        compensated(Participant::Stock, 4_000),
    ]);
    history.extend(point_refund_failed(5_000));
    let scenario = given::<Order>(history);
    // When
    let state = scenario
        .when(OrderCommand::Redrive {
            order_id: ORDER,
            now_ms: 6_000,
        })
        // Then
        .then([OrderEvent::FailureRedriven {
            order_id: ORDER,
            attempt: 1,
            at_ms: 6_000,
        }]);
    assert_eq!(state.orders[&ORDER].status, OrderStatus::NeedsAttention);
}

#[test]
fn a_redelivered_outcome_is_ignored_without_touching_the_saga() {
    // Given
    let scenario = given::<Order>([placed(full_order()), succeeded(Participant::Payment, 2_000)]);
    // When
    let state = scenario
        .when(record(
            Participant::Payment,
            OutcomeKind::Succeeded,
            None,
            2_500,
        ))
        // Then
        .then([OrderEvent::DuplicateIgnored {
            order_id: ORDER,
            participant: Participant::Payment,
            kind: OutcomeKind::Succeeded,
            at_ms: 2_500,
        }]);
    assert_eq!(state.orders[&ORDER].updated_at_ms, 2_000);
}

#[test]
fn a_success_arriving_after_its_compensation_is_ignored() {
    // Given
    let mut history = failed_history();
    history.push(compensated(Participant::Stock, 4_000));
    let scenario = given::<Order>(history);
    // When
    scenario
        .when(record(
            Participant::Stock,
            OutcomeKind::Succeeded,
            None,
            4_500,
        ))
        // Then
        .then([OrderEvent::DuplicateIgnored {
            order_id: ORDER,
            participant: Participant::Stock,
            kind: OutcomeKind::Succeeded,
            at_ms: 4_500,
        }]);
}

#[test]
fn a_completed_order_is_delivered_to_the_data_platform_once() {
    // Given
    let scenario = given::<OrderHistory>(completed_history());
    // When
    let state = scenario
        .when(OrderCommand::MarkDelivered {
            order_id: ORDER,
            now_ms: 3_000,
        })
        // Then
        .then([OrderEvent::DataPlatformDelivered {
            order_id: ORDER,
            at_ms: 3_000,
        }]);
    assert!(state.orders[&ORDER].data_platform_delivered);

    // Given the delivery is in the log
    let mut history = completed_history();
    history.push(OrderEvent::DataPlatformDelivered {
        order_id: ORDER,
        at_ms: 3_000,
    });
    // When
    given::<OrderHistory>(history)
        .when(OrderCommand::MarkDelivered {
            order_id: ORDER,
            now_ms: 4_000,
        })
        // Then
        .then_nothing();
}

#[test]
fn delivering_an_order_that_is_not_completed_is_rejected() {
    // Given
    let scenario = given::<Order>([placed(full_order())]);
    // When
    scenario
        .when(OrderCommand::MarkDelivered {
            order_id: ORDER,
            now_ms: 3_000,
        })
        // Then
        .then_rejected(OrderRejection::NotCompleted(ORDER));
}

#[test]
fn statuses_use_their_contract_names_in_json_and_text() {
    // Given
    let statuses = OrderStatus::ALL;
    // When
    let json: Vec<String> = statuses
        .iter()
        .map(|s| serde_json::to_string(s).expect("status serialises"))
        .collect();
    // Then
    assert_eq!(
        json,
        [
            "\"PENDING\"",
            "\"COMPLETED\"",
            "\"COMPENSATING\"",
            "\"FAILED\"",
            "\"NEEDS_ATTENTION\""
        ]
    );
    for status in statuses {
        assert_eq!(
            serde_json::to_string(&status).expect("serialises"),
            format!("\"{}\"", status.as_str())
        );
        assert_eq!(OrderStatus::parse(status.as_str()), Some(status));
    }
    assert_eq!(
        OrderStatus::parse("needs_attention"),
        Some(OrderStatus::NeedsAttention)
    );
    assert_eq!(OrderStatus::parse("DONE"), None);
}

#[test]
fn event_variants_keep_their_postcard_positions_and_names() {
    // Given one event of every variant, in declaration order
    let mut events = vec![placed(full_order())];
    let id = ORDER;
    let p = Participant::Payment;
    let k = OutcomeKind::Succeeded;
    events.extend([
        recorded(p, k, None, 1),
        OrderEvent::Completed {
            order_id: id,
            at_ms: 1,
        },
        OrderEvent::Failed {
            order_id: id,
            reason: "r".into(),
            at_ms: 1,
        },
        OrderEvent::Compensated {
            order_id: id,
            at_ms: 1,
        },
        OrderEvent::AttentionNeeded {
            order_id: id,
            participant: p,
            reason: "r".into(),
            at_ms: 1,
        },
        OrderEvent::FailureRedriven {
            order_id: id,
            attempt: 1,
            at_ms: 1,
        },
        OrderEvent::CompensationRetried {
            order_id: id,
            attempt: 1,
            at_ms: 1,
        },
        OrderEvent::DataPlatformDelivered {
            order_id: id,
            at_ms: 1,
        },
        OrderEvent::DuplicateIgnored {
            order_id: id,
            participant: p,
            kind: k,
            at_ms: 1,
        },
        OrderEvent::RedrivesExhausted {
            order_id: id,
            waiting_for: vec![p],
            reason: "r".into(),
            at_ms: 1,
        },
        OrderEvent::DeliveryParked {
            order_id: id,
            reason: "r".into(),
            msg_id: "m".into(),
            at_ms: 1,
        },
        OrderEvent::DeliveryResumed {
            order_id: id,
            at_ms: 1,
        },
    ]);
    let names = [
        "Placed",
        "OutcomeRecorded",
        "Completed",
        "Failed",
        "Compensated",
        "AttentionNeeded",
        "FailureRedriven",
        "CompensationRetried",
        "DataPlatformDelivered",
        "DuplicateIgnored",
        "RedrivesExhausted",
        "DeliveryParked",
        "DeliveryResumed",
    ];
    for (position, event) in events.iter().enumerate() {
        // When
        let bytes = postcard::to_stdvec(event).expect("encodes");
        let back: OrderEvent = postcard::from_bytes(&bytes).expect("decodes");
        // Then
        assert_eq!(usize::from(bytes[0]), position, "{event:?} moved");
        assert_eq!(&back, event);
        assert_eq!(Order::event_type(event), names[position]);
        assert_eq!(Order::stream_of(event), format!("order-{ORDER}"));
    }
}

#[test]
fn events_render_as_camel_case_json() {
    // Given
    let event = OrderEvent::FailureRedriven {
        order_id: ORDER,
        attempt: 1,
        at_ms: 5,
    };
    // When
    let json = serde_json::to_value(&event).expect("serialises");
    // Then
    assert_eq!(
        json,
        serde_json::json!({"failureRedriven": {"orderId": ORDER, "attempt": 1, "atMs": 5}})
    );
}

#[test]
fn the_status_counts_follow_an_order_from_pending_through_compensating_to_failed() {
    // Given
    let mut state = Orders::default();
    let count = |state: &Orders, status| state.status_counts.get(status);
    // When
    Order::evolve(&mut state, &placed(full_order()));
    // Then
    assert_eq!(count(&state, OrderStatus::Pending), 1);
    // When
    let history = point_silent_history();
    for event in &history[1..] {
        Order::evolve(&mut state, event);
    }
    // Then
    let status = state.orders[&ORDER].status;
    assert_eq!(count(&state, status), 1, "{status}");
    let total: u64 = OrderStatus::ALL.iter().map(|s| count(&state, *s)).sum();
    assert_eq!(total, 1, "one order, counted once");
    assert_eq!(count(&state, OrderStatus::Pending), 0);
}
