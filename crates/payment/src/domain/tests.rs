//! The payment domain's given/when/then tests.

use super::*;
use contract::fixtures::{self, check_outcomes, check_variants, line, order};
use eventlog::scenario::given;

fn placed(order_id: Uuid, amount: u64) -> OrderPlaced {
    OrderPlaced {
        items: vec![line("sku-1", 1, amount)],
        amount,
        ..fixtures::placed(order_id)
    }
}

fn approve(order_id: Uuid, amount: u64) -> PaymentCommand {
    PaymentCommand::HandlePlaced {
        placed: placed(order_id, amount),
        decision: GatewayDecision::Approved {
            authorization: "auth-1".into(),
        },
    }
}

fn decline(order_id: Uuid, amount: u64) -> PaymentCommand {
    PaymentCommand::HandlePlaced {
        placed: placed(order_id, amount),
        decision: GatewayDecision::Declined {
            reason: "amount above limit".into(),
        },
    }
}

fn fail(order_id: Uuid, cancel: CancelResult) -> PaymentCommand {
    PaymentCommand::HandleFailed { order_id, cancel }
}

fn approved(order_id: Uuid, amount: u64) -> PaymentEvent {
    PaymentEvent::Approved {
        order_id,
        amount,
        authorization: "auth-1".into(),
    }
}

fn declined(order_id: Uuid, amount: u64) -> PaymentEvent {
    PaymentEvent::Declined {
        order_id,
        amount,
        reason: "amount above limit".into(),
    }
}

fn cancel_failed(order_id: Uuid) -> PaymentEvent {
    PaymentEvent::CancelFailed {
        order_id,
        reason: "gateway timeout".into(),
    }
}

fn requested(order_id: Uuid, amount: u64) -> PaymentEvent {
    PaymentEvent::ApprovalRequested { order_id, amount }
}

fn request(order_id: Uuid, amount: u64) -> PaymentCommand {
    PaymentCommand::RequestApproval {
        placed: placed(order_id, amount),
    }
}

/// An approved charge, cancelled at the gateway after the order failed.
fn cancelled_after_approval() -> Vec<PaymentEvent> {
    vec![
        approved(order(1), 700),
        PaymentEvent::Cancelled { order_id: order(1) },
    ]
}

fn skipped(order_id: Uuid) -> PaymentEvent {
    ledger::compensation_skipped(order_id)
}

/// The cold key of an order: what a reader of it asks `Live::read_key` for.
fn key(order_id: Uuid) -> String {
    order_id.to_string()
}

#[test]
fn a_fresh_charge_is_recorded_with_what_the_gateway_may_hold() {
    // The command, what it records, its status and authorization, whether the PG is to be asked.
    let cases = [
        (
            request(order(1), 700),
            requested(order(1), 700),
            PaymentStatus::Requested,
            None,
            true,
        ),
        (
            approve(order(1), 700),
            approved(order(1), 700),
            PaymentStatus::Approved,
            Some("auth-1"),
            false,
        ),
    ];
    for (command, recorded, status, authorization, ask_gateway) in cases {
        // Given
        let scenario = given::<Payment>([]);
        assert!(needs_approval_request(scenario.state(), order(1)));
        assert!(needs_gateway_approval(scenario.state(), order(1)));
        // When
        let state = scenario.when(command).then([recorded]);
        // Then
        let payment = state.payment(order(1)).expect("recorded");
        assert_eq!((payment.status, payment.amount), (status, 700));
        assert_eq!(payment.authorization.as_deref(), authorization);
        assert!(!needs_approval_request(&state, order(1)));
        assert_eq!(needs_gateway_approval(&state, order(1)), ask_gateway);
        assert!(needs_gateway_cancel(&state, order(1)));
        assert_eq!(settled_outcome(&state, order(1)), None);
    }
    // The intent to charge is the payment's own: the saga does not hear of it.
    assert_eq!(outcome(&requested(order(1), 700)), None);
}

#[test]
fn the_gateways_answer_is_recorded_whether_the_charge_was_requested_first_or_not() {
    for history in [vec![], vec![requested(order(1), 700)]] {
        // Given
        let scenario = given::<Payment>(history.clone());
        // When the gateway approves
        let state = scenario
            .when(approve(order(1), 700))
            .then([approved(order(1), 700)]);
        // Then
        let payment = state.payment(order(1)).expect("recorded");
        assert_eq!(payment.status, PaymentStatus::Approved);
        assert_eq!(payment.authorization.as_deref(), Some("auth-1"));
        assert!(!needs_gateway_approval(&state, order(1)));

        // When it declines instead
        let declining = given::<Payment>(history).when(decline(order(1), 700));
        // Then the order is rejected and nothing is held
        let state = declining.then([declined(order(1), 700)]);
        let payment = state.payment(order(1)).expect("recorded");
        assert_eq!(payment.status, PaymentStatus::Declined);
        assert_eq!(payment.reason.as_deref(), Some("amount above limit"));
        assert!(!needs_gateway_approval(&state, order(1)));
        assert!(!needs_gateway_cancel(&state, order(1)));
    }
}

/// Checks that `command`, after each of `histories`, decides nothing.
#[track_caller]
fn decides_nothing_after(
    histories: impl IntoIterator<Item = Vec<PaymentEvent>>,
    command: PaymentCommand,
) {
    for history in histories {
        given::<Payment>(history)
            .when(command.clone())
            .then_nothing();
    }
}

#[test]
fn an_approval_without_an_authorization_is_refused() {
    // Given
    let scenario = given::<Payment>([]);
    // When
    let when = scenario.when(PaymentCommand::HandlePlaced {
        placed: placed(order(1), 700),
        decision: GatewayDecision::Approved {
            authorization: String::new(),
        },
    });
    // Then
    when.then_rejected(PaymentRejection::EmptyAuthorization { order_id: order(1) });
}

/// A charge the gateway may hold: approved, or requested with its answer unknown.
fn charges() -> [PaymentEvent; 2] {
    [approved(order(1), 700), requested(order(1), 700)]
}

#[test]
fn a_failed_order_has_its_charge_cancelled_at_the_gateway() {
    for charge in charges() {
        // Given
        let scenario = given::<Payment>([charge]);
        assert!(needs_gateway_cancel(scenario.state(), order(1)));
        // When
        let when = scenario.when(fail(order(1), CancelResult::Cancelled));
        // Then
        let state = when.then_read(
            &key(order(1)),
            [PaymentEvent::Cancelled { order_id: order(1) }],
        );
        assert_eq!(state.status(order(1)), Some(PaymentStatus::Cancelled));
        assert!(!needs_gateway_approval(&state, order(1)));
        assert!(!needs_gateway_cancel(&state, order(1)));
        let settled = settled_outcome(&state, order(1)).expect("settled");
        assert_eq!(settled.subject(), "payment.cancelled");
    }
}

#[test]
fn a_cancellation_that_keeps_failing_is_recorded_for_an_operator_and_retryable() {
    for charge in charges() {
        // Given
        let scenario = given::<Payment>([charge]);
        // When
        let when = scenario.when(fail(
            order(1),
            CancelResult::Failed {
                reason: "gateway timeout".into(),
            },
        ));
        // Then
        let state = when.then([cancel_failed(order(1))]);
        let payment = state.payment(order(1)).expect("recorded");
        assert_eq!(payment.status, PaymentStatus::CancelFailed);
        assert_eq!(payment.reason.as_deref(), Some("gateway timeout"));
        assert!(needs_gateway_cancel(&state, order(1)));
        assert!(!needs_gateway_approval(&state, order(1)));
        assert_eq!(settled_outcome(&state, order(1)), None);
    }
    let published = outcome(&cancel_failed(order(1))).expect("publishes");
    assert_eq!(published.subject(), "payment.cancel_failed");
}

#[test]
fn a_charge_cannot_be_compensated_without_asking_the_gateway() {
    for charge in charges() {
        // Given
        let scenario = given::<Payment>([charge]);
        // When
        let when = scenario.when(fail(order(1), CancelResult::NotNeeded));
        // Then
        when.then_rejected(PaymentRejection::GatewayCancelRequired { order_id: order(1) });
    }
}

#[test]
fn a_failed_cancellation_can_be_retried() {
    // Given
    let scenario = given::<Payment>([approved(order(1), 700), cancel_failed(order(1))]);
    // When
    let when = scenario.when(fail(order(1), CancelResult::Cancelled));
    // Then
    let state = when.then_read(
        &key(order(1)),
        [PaymentEvent::Cancelled { order_id: order(1) }],
    );
    let payment = state.payment(order(1)).expect("recorded");
    assert_eq!(payment.status, PaymentStatus::Cancelled);
    assert_eq!(payment.reason, None);
}

#[test]
fn a_retried_cancellation_may_fail_again() {
    // Given
    let scenario = given::<Payment>([approved(order(1), 700), cancel_failed(order(1))]);
    // When
    let when = scenario.when(fail(
        order(1),
        CancelResult::Failed {
            reason: "gateway down".into(),
        },
    ));
    // Then
    let state = when.then([PaymentEvent::CancelFailed {
        order_id: order(1),
        reason: "gateway down".into(),
    }]);
    let payment = state.payment(order(1)).expect("recorded");
    assert_eq!(payment.status, PaymentStatus::CancelFailed);
    assert_eq!(payment.reason.as_deref(), Some("gateway down"));
}

#[test]
fn a_failure_before_the_placement_leaves_a_tombstone() {
    // Given
    let scenario = given::<Payment>([]);
    assert!(!needs_gateway_cancel(
        &scenario.read_key(&key(order(1))),
        order(1)
    ));
    // When
    let when = scenario.when(fail(order(1), CancelResult::NotNeeded));
    // Then
    let state = when.then_read(&key(order(1)), [ledger::tombstoned(order(1))]);
    assert_eq!(state.status(order(1)), Some(PaymentStatus::Tombstoned));
    assert!(!needs_gateway_approval(&state, order(1)));
}

#[test]
fn a_late_placement_after_a_tombstone_is_ignored() {
    // Given
    let scenario = given::<Payment>([ledger::tombstoned(order(1))]);
    // When
    let when = scenario.when(approve(order(1), 700));
    // Then
    let ignored = PaymentEvent::PlacementIgnored(IgnoredPlacement {
        order_id: order(1),
        reason: "order already failed (tombstone)".into(),
    });
    assert_eq!(outcome(&ignored), None);
    let state = when.then_read(&key(order(1)), [ignored]);
    assert_eq!(state.status(order(1)), Some(PaymentStatus::Tombstoned));
}

#[test]
fn compensating_a_declined_order_is_skipped() {
    // Given
    let scenario = given::<Payment>([declined(order(1), 2_000_000)]);
    // When
    let when = scenario.when(fail(order(1), CancelResult::NotNeeded));
    // Then
    let state = when.then_read(&key(order(1)), [ledger::compensation_skipped(order(1))]);
    let payment = state.payment(order(1)).expect("recorded");
    assert_eq!(payment.status, PaymentStatus::Declined);
    assert!(payment.compensation_skipped);
}

#[test]
fn a_repeated_placement_is_a_no_op() {
    let histories = [
        vec![approved(order(1), 700)],
        vec![declined(order(1), 700)],
        vec![approved(order(1), 700), cancel_failed(order(1))],
        vec![requested(order(1), 700), approved(order(1), 700)],
        vec![requested(order(1), 700), declined(order(1), 700)],
    ];
    decides_nothing_after(histories, approve(order(1), 700));
}

#[test]
fn a_repeated_failure_is_a_no_op() {
    let histories = [
        (cancelled_after_approval(), PaymentStatus::Cancelled),
        (
            vec![declined(order(1), 700), skipped(order(1))],
            PaymentStatus::Declined,
        ),
        (
            vec![ledger::tombstoned(order(1))],
            PaymentStatus::Tombstoned,
        ),
    ];
    for (history, settled) in histories {
        // Given
        let scenario = given::<Payment>(history);
        // When
        let when = scenario.when(fail(order(1), CancelResult::NotNeeded));
        // Then
        let state = when.then_read(&key(order(1)), []);
        assert_eq!(state.status(order(1)), Some(settled));
    }
}

#[test]
fn a_repeated_charge_request_records_nothing_new() {
    let histories = [
        vec![requested(order(1), 700)],
        vec![requested(order(1), 700), approved(order(1), 700)],
        vec![ledger::tombstoned(order(1))],
        vec![
            requested(order(1), 700),
            PaymentEvent::Cancelled { order_id: order(1) },
        ],
    ];
    decides_nothing_after(histories, request(order(1), 700));
}

#[test]
fn a_late_placement_after_a_cancelled_request_is_ignored_without_asking_the_gateway() {
    // Given
    let scenario = given::<Payment>([
        requested(order(1), 700),
        PaymentEvent::Cancelled { order_id: order(1) },
    ]);
    assert!(!needs_gateway_approval(
        &scenario.read_key(&key(order(1))),
        order(1)
    ));
    // When: even an approval the gateway gave before the cancel reached it
    let when = scenario.when(approve(order(1), 700));
    // Then
    let ignored = ledger::placement_ignored(order(1), CANCELLED_PLACEMENT);
    assert_eq!(outcome(&ignored), None);
    let state = when.then_read(&key(order(1)), [ignored]);
    assert_eq!(state.status(order(1)), Some(PaymentStatus::Cancelled));
}

#[test]
fn a_failed_or_cancelled_order_never_asks_the_gateway_to_charge() {
    let histories = [
        vec![ledger::tombstoned(order(1))],
        vec![
            requested(order(1), 700),
            PaymentEvent::Cancelled { order_id: order(1) },
        ],
        cancelled_after_approval(),
        vec![requested(order(1), 700), cancel_failed(order(1))],
        vec![declined(order(1), 700), skipped(order(1))],
    ];
    for history in histories {
        // Given
        let scenario = given::<Payment>(history);
        // Then
        assert!(!needs_gateway_approval(
            &scenario.read_key(&key(order(1))),
            order(1)
        ));
    }
}

#[test]
fn a_settled_order_reports_its_recorded_compensation() {
    let cases = [
        (
            cancelled_after_approval(),
            Some(("payment.cancelled", None)),
        ),
        (
            vec![
                approved(order(1), 700),
                cancel_failed(order(1)),
                PaymentEvent::Cancelled { order_id: order(1) },
            ],
            Some(("payment.cancelled", None)),
        ),
        (
            vec![ledger::tombstoned(order(1))],
            Some(("payment.cancelled", Some(TOMBSTONE_REASON))),
        ),
        (
            vec![declined(order(1), 700), skipped(order(1))],
            Some(("payment.cancelled", Some(NOTHING_TO_UNDO))),
        ),
        (vec![approved(order(1), 700)], None),
        (vec![declined(order(1), 700)], None),
        (vec![approved(order(1), 700), cancel_failed(order(1))], None),
        (vec![requested(order(1), 700)], None),
        (vec![], None),
    ];
    for (history, expected) in cases {
        // Given
        let scenario = given::<Payment>(history.clone());
        // When
        let settled = settled_outcome(&scenario.read_key(&key(order(1))), order(1));
        // Then
        let got = settled.as_ref().map(|e| (e.subject(), e.reason.as_deref()));
        let expected = expected.map(|(s, r)| (s.to_owned(), r));
        assert_eq!(got, expected, "{history:?}");
        if let Some(event) = settled {
            assert_eq!(event.order_id, order(1));
            assert_eq!(event.participant, Participant::Payment);
        }
    }
}

/// `OPEN_WINDOW` newer payments (declined: nothing to cancel), enough to push order(1) out.
fn newer_payments() -> impl Iterator<Item = PaymentEvent> {
    (2..=u128::from(ledger::OPEN_WINDOW) + 1).map(|n| declined(order(n), 2_000_000))
}

#[test]
fn a_settled_payment_leaves_memory_and_a_read_of_it_comes_from_the_log() {
    // Given an approval cancelled after its order failed
    let history = [approved(order(1), 700)];
    // When
    let when = given::<Payment>(history).when(fail(order(1), CancelResult::Cancelled));
    // Then memory holds nothing for it, and a reader of the order still sees it
    let state = when.then([PaymentEvent::Cancelled { order_id: order(1) }]);
    assert!(state.payments.is_empty());
    let read = given::<Payment>(cancelled_after_approval()).read_key(&key(order(1)));
    assert_eq!(read.status(order(1)), Some(PaymentStatus::Cancelled));
    assert_eq!(read.payment(order(1)).map(|p| p.amount), Some(700));
}

#[test]
fn an_evicted_approval_is_cancelled_at_the_gateway_when_its_order_fails() {
    // Given an approval long ago: no longer in memory
    let history: Vec<PaymentEvent> = [approved(order(1), 700)]
        .into_iter()
        .chain(newer_payments())
        .collect();
    let scenario = given::<Payment>(history.clone());
    assert_eq!(scenario.state().status(order(1)), None);
    // Then the handler's read of the order (from the log) says the PG must cancel, with the
    // authorization it needs
    let read = scenario.read_key(&key(order(1)));
    assert!(needs_gateway_cancel(&read, order(1)));
    assert_eq!(
        read.payment(order(1)).and_then(|p| p.authorization.clone()),
        Some("auth-1".to_owned())
    );
    // And deciding without the PG's answer is refused, as from memory
    given::<Payment>(history.clone())
        .when(fail(order(1), CancelResult::NotNeeded))
        .then_rejected(PaymentRejection::GatewayCancelRequired { order_id: order(1) });
    // When the PG cancelled it
    let when = scenario.when(fail(order(1), CancelResult::Cancelled));
    // Then the cancellation is recorded once (the state is the fold of the log)
    let state = when.then_read(
        &key(order(1)),
        [PaymentEvent::Cancelled { order_id: order(1) }],
    );
    assert_eq!(state.status(order(1)), Some(PaymentStatus::Cancelled));
    given::<Payment>(
        history
            .into_iter()
            .chain([PaymentEvent::Cancelled { order_id: order(1) }]),
    )
    .when(fail(order(1), CancelResult::NotNeeded))
    .then_nothing();
}

#[test]
fn an_evicted_charge_request_gets_its_answer_recorded_on_redelivery() {
    // Given a charge requested long ago whose answer was never recorded
    let history: Vec<PaymentEvent> = [requested(order(1), 700)]
        .into_iter()
        .chain(newer_payments())
        .collect();
    let scenario = given::<Payment>(history);
    let read = scenario.read_key(&key(order(1)));
    assert!(needs_gateway_approval(&read, order(1)));
    assert!(!needs_approval_request(&read, order(1)));
    // When the redelivered order.placed brings the PG's answer
    let when = scenario.when(approve(order(1), 700));
    // Then it is recorded and the payment is open again (the fold agrees)
    let state = when.then([approved(order(1), 700)]);
    assert_eq!(state.status(order(1)), Some(PaymentStatus::Approved));
}

#[test]
fn a_late_placement_after_an_evicted_tombstone_never_reaches_the_gateway() {
    // Given a tombstone (never kept in memory) and many payments since
    let history: Vec<PaymentEvent> = [ledger::tombstoned(order(1))]
        .into_iter()
        .chain(newer_payments())
        .collect();
    let scenario = given::<Payment>(history);
    // Then the handler's read says: do not charge, do not record a request
    let read = scenario.read_key(&key(order(1)));
    assert!(!needs_gateway_approval(&read, order(1)));
    assert!(!needs_approval_request(&read, order(1)));
    // When the placement is decided anyway
    let when = scenario.when(approve(order(1), 700));
    // Then it is ignored
    when.then([ledger::placement_ignored(order(1), LATE_PLACEMENT)]);
}

#[test]
fn every_event_maps_to_its_subject() {
    // Given
    let cases = [
        (approved(order(1), 700), "payment.approved", None),
        (
            declined(order(1), 700),
            "payment.declined",
            Some("amount above limit"),
        ),
        (
            PaymentEvent::Cancelled { order_id: order(1) },
            "payment.cancelled",
            None,
        ),
        (
            cancel_failed(order(1)),
            "payment.cancel_failed",
            Some("gateway timeout"),
        ),
        (
            ledger::tombstoned(order(1)),
            "payment.cancelled",
            Some("nothing to undo: order.failed arrived before order.placed"),
        ),
        (
            skipped(order(1)),
            "payment.cancelled",
            Some("rejected, nothing to undo"),
        ),
    ];
    check_outcomes(Participant::Payment, &cases);
}

#[test]
fn variants_keep_their_postcard_positions_names_and_streams() {
    // Given
    let events = [
        approved(order(1), 700),
        declined(order(1), 700),
        PaymentEvent::Cancelled { order_id: order(1) },
        cancel_failed(order(1)),
        ledger::tombstoned(order(1)),
        skipped(order(1)),
        ledger::placement_ignored(order(1), LATE_PLACEMENT),
        requested(order(1), 700),
    ];
    let names = [
        "Approved",
        "Declined",
        "Cancelled",
        "CancelFailed",
        "Tombstoned",
        "CompensationSkipped",
        "PlacementIgnored",
        "ApprovalRequested",
    ];
    check_variants::<Payment>(&events, &names, None, order(1));
}

#[test]
fn statuses_and_payments_render_with_their_contract_names() {
    // Given
    let statuses = [
        PaymentStatus::Approved,
        PaymentStatus::Declined,
        PaymentStatus::Cancelled,
        PaymentStatus::CancelFailed,
        PaymentStatus::Tombstoned,
        PaymentStatus::Requested,
    ];
    let state = given::<Payment>([approved(order(1), 700), cancel_failed(order(1))]);
    // When
    let names: Vec<String> = statuses
        .iter()
        .map(|status| serde_json::to_string(status).expect("serialises"))
        .collect();
    let payment = serde_json::to_value(state.state().payment(order(1))).expect("serialises");
    let event = serde_json::to_value(approved(order(1), 700)).expect("serialises");
    // Then
    assert_eq!(
        names,
        [
            "\"APPROVED\"",
            "\"DECLINED\"",
            "\"CANCELLED\"",
            "\"CANCEL_FAILED\"",
            "\"TOMBSTONED\"",
            "\"REQUESTED\""
        ]
    );
    for status in statuses {
        assert_eq!(
            format!("\"{status}\""),
            serde_json::to_string(&status).expect("serialises")
        );
    }
    assert_eq!(
        payment,
        serde_json::json!({
            "orderId": order(1), "amount": 700, "status": "CANCEL_FAILED",
            "authorization": "auth-1", "reason": "gateway timeout",
            "compensationSkipped": false
        })
    );
    assert_eq!(
        event,
        serde_json::json!({"approved": {
            "orderId": order(1), "amount": 700, "authorization": "auth-1"
        }})
    );
}
