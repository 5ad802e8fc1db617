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

fn place(order: OrderPlaced, trace_id: &str, idempotency_key: Option<&str>) -> OrderCommand {
    OrderCommand::Place {
        order,
        trace_id: trace_id.into(),
        idempotency_key: idempotency_key.map(Into::into),
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

/// A participant's success arriving at `now_ms`.
fn success(participant: Participant, now_ms: u64) -> OrderCommand {
    record(participant, OutcomeKind::Succeeded, None, now_ms)
}

/// A participant's compensation arriving at `now_ms`.
fn compensation(participant: Participant, now_ms: u64) -> OrderCommand {
    record(participant, OutcomeKind::Compensated, None, now_ms)
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

fn duplicate(participant: Participant, kind: OutcomeKind, at_ms: u64) -> OrderEvent {
    OrderEvent::DuplicateIgnored {
        order_id: ORDER,
        participant,
        kind,
        at_ms,
    }
}

// The order's own facts, in the order of a saga's life.

fn completed(at_ms: u64) -> OrderEvent {
    OrderEvent::Completed {
        order_id: ORDER,
        at_ms,
    }
}

fn failed(reason: &str, at_ms: u64) -> OrderEvent {
    OrderEvent::Failed {
        order_id: ORDER,
        reason: reason.into(),
        at_ms,
    }
}

/// The last compensation is in: the order is FAILED.
fn all_compensated(at_ms: u64) -> OrderEvent {
    OrderEvent::Compensated {
        order_id: ORDER,
        at_ms,
    }
}

fn redriven(attempt: u32, at_ms: u64) -> OrderEvent {
    OrderEvent::FailureRedriven {
        order_id: ORDER,
        attempt,
        at_ms,
    }
}

fn retried(attempt: u32, at_ms: u64) -> OrderEvent {
    OrderEvent::CompensationRetried {
        order_id: ORDER,
        attempt,
        at_ms,
    }
}

fn delivered(at_ms: u64) -> OrderEvent {
    OrderEvent::DataPlatformDelivered {
        order_id: ORDER,
        at_ms,
    }
}

fn parked(at_ms: u64) -> OrderEvent {
    OrderEvent::DeliveryParked {
        order_id: ORDER,
        reason: "HTTP 503".into(),
        msg_id: "m-1".into(),
        at_ms,
    }
}

fn resumed(at_ms: u64) -> OrderEvent {
    OrderEvent::DeliveryResumed {
        order_id: ORDER,
        at_ms,
    }
}

/// A command about the order that carries nothing but its time.
#[derive(Debug, Clone, Copy)]
enum Ask {
    Expire,
    Redrive,
    Retry,
    MarkDelivered,
    Resume,
}

fn ask(what: Ask, now_ms: u64) -> OrderCommand {
    let order_id = ORDER;
    match what {
        Ask::Expire => OrderCommand::Expire { order_id, now_ms },
        Ask::Redrive => OrderCommand::Redrive { order_id, now_ms },
        Ask::Retry => OrderCommand::RetryCompensation { order_id, now_ms },
        Ask::MarkDelivered => OrderCommand::MarkDelivered { order_id, now_ms },
        Ask::Resume => OrderCommand::ResumeDelivery { order_id, now_ms },
    }
}

fn escalate(redrives: u32, now_ms: u64) -> OrderCommand {
    OrderCommand::Escalate {
        order_id: ORDER,
        redrives,
        now_ms,
    }
}

fn park(msg_id: &str, now_ms: u64) -> OrderCommand {
    OrderCommand::ParkDelivery {
        order_id: ORDER,
        reason: "HTTP 503".into(),
        msg_id: msg_id.into(),
        now_ms,
    }
}

/// `history` followed by `more`.
fn then_also(
    mut history: Vec<OrderEvent>,
    more: impl IntoIterator<Item = OrderEvent>,
) -> Vec<OrderEvent> {
    history.extend(more);
    history
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
        failed(DECLINE_REASON, 3_000),
    ]
}

/// The failed order with payment and stock compensated, and the point refund failed for good.
fn point_refund_failed_history() -> Vec<OrderEvent> {
    let compensations = [
        compensated(Participant::Payment, 4_000),
        compensated(Participant::Stock, 4_000),
    ];
    then_also(
        then_also(failed_history(), compensations),
        point_refund_failed(5_000),
    )
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
        completed(2_000),
    ]
}

/// The failed order with every compensation in except point's, which never answered.
fn point_silent_history() -> Vec<OrderEvent> {
    let more = [
        compensated(Participant::Payment, 4_000),
        compensated(Participant::Stock, 4_000),
        compensated(Participant::Coupon, 4_000),
        redriven(1, 6_000),
    ];
    then_also(failed_history(), more)
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
fn placing_an_order_makes_it_pending_and_findable_by_trace_and_key() {
    // Given
    let scenario = given::<Order>([]);
    // When
    let state = scenario
        .when(place(full_order(), "trace-1", Some("key-1")))
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

/// Checks that `command`, after each history, is refused with `rejection`.
#[track_caller]
fn assert_rejected<const N: usize>(
    rejection: OrderRejection,
    cases: [(Vec<OrderEvent>, OrderCommand); N],
) {
    for (history, command) in cases {
        let when = given::<Order>(history).when(command);
        when.then_rejected(rejection.clone());
    }
}

#[test]
fn commands_that_do_not_apply_are_rejected() {
    let pending = || vec![placed(full_order())];
    let place_again = place(full_order(), "trace-2", None);
    assert_rejected(
        OrderRejection::DuplicateOrder(ORDER),
        [(pending(), place_again)],
    );
    // A reused idempotency key names the order it placed.
    let other = OrderPlaced {
        order_id: Uuid::from_u128(2),
        ..full_order()
    };
    let reused = OrderRejection::IdempotencyKeyReused {
        key: "key-1".into(),
        order_id: ORDER,
    };
    assert_rejected(
        reused,
        [(pending(), place(other, "trace-2", Some("key-1")))],
    );
    let unknown = success(Participant::Payment, 2_000);
    assert_rejected(OrderRejection::UnknownOrder(ORDER), [(vec![], unknown)]);
    // Only an order needing attention is retried by an operator.
    let retry = ask(Ask::Retry, 7_000);
    assert_rejected(
        OrderRejection::NotNeedingAttention(ORDER),
        [(failed_history(), retry)],
    );
    // Nobody is missing from a completed or pending order, nor from one needing attention
    // whose every participant answered: there is nobody to re-drive or escalate for.
    assert_rejected(
        OrderRejection::NotCompensating(ORDER),
        [
            (completed_history(), escalate(20, 20_000)),
            (pending(), ask(Ask::Redrive, 2_000)),
            (needs_attention_history(), ask(Ask::Redrive, 6_000)),
        ],
    );
    let not_parked = (completed_history(), ask(Ask::Resume, 7_000));
    assert_rejected(OrderRejection::NotParked(ORDER), [not_parked]);
    assert_rejected(
        OrderRejection::NotCompleted(ORDER),
        [
            (failed_history(), park("m-1", 7_000)),
            (pending(), ask(Ask::MarkDelivered, 3_000)),
        ],
    );
}

#[test]
fn commands_already_answered_change_nothing() {
    let cases = [
        // Before the deadline, expiry does nothing; nor does it after completion.
        (vec![placed(full_order())], ask(Ask::Expire, DEADLINE - 1)),
        (completed_history(), ask(Ask::Expire, DEADLINE + 1)),
        // Escalating again in the same round.
        (
            then_also(point_silent_history(), [redrives_exhausted(10_000)]),
            escalate(1, 20_000),
        ),
        // Another copy of a parked delivery failing for good.
        (
            then_also(completed_history(), [parked(5_000)]),
            park("m-2", 6_000),
        ),
        // A completed order is delivered to the data platform once.
        (
            then_also(completed_history(), [delivered(3_000)]),
            ask(Ask::MarkDelivered, 4_000),
        ),
    ];
    for (history, command) in cases {
        // OrderHistory keeps settled orders (the delivered one) in the state.
        given::<OrderHistory>(history).when(command).then_nothing();
    }
}

#[test]
fn outcomes_that_change_nothing_are_recorded_as_ignored_duplicates() {
    let cases = [
        // A participant outside the order.
        (
            vec![placed(order_with(None, 0))],
            Participant::Coupon,
            OutcomeKind::Succeeded,
            2_000,
        ),
        // A redelivered outcome.
        (
            vec![placed(full_order()), succeeded(Participant::Payment, 2_000)],
            Participant::Payment,
            OutcomeKind::Succeeded,
            2_500,
        ),
        // A success arriving after its compensation.
        (
            then_also(failed_history(), [compensated(Participant::Stock, 4_000)]),
            Participant::Stock,
            OutcomeKind::Succeeded,
            4_500,
        ),
    ];
    for (history, participant, kind, at_ms) in cases {
        // Given
        let scenario = given::<Order>(history);
        let before = &scenario.state().orders[&ORDER];
        let (updated_at_ms, status) = (before.updated_at_ms, before.status);
        // When
        let state = scenario
            .when(record(participant, kind, None, at_ms))
            // Then
            .then([duplicate(participant, kind, at_ms)]);
        let saga = &state.orders[&ORDER];
        assert_eq!(saga.updated_at_ms, updated_at_ms, "the saga is untouched");
        assert_eq!(saga.status, status);
    }
}

#[test]
fn an_order_completes_once_every_required_participant_succeeded() {
    use Participant::{Coupon, Payment, Point, Stock};
    // The order, who succeeded before, who succeeds now, who is awaited after.
    let cases = [
        (full_order(), vec![Payment, Stock, Coupon], Point, vec![]),
        (full_order(), vec![Payment, Stock], Coupon, vec![Point]),
        // Without coupon and points, payment and stock are enough.
        (order_with(None, 0), vec![Payment], Stock, vec![]),
    ];
    for (order, before, last, awaited) in cases {
        // Given
        let mut history = vec![placed(order)];
        history.extend(
            before
                .iter()
                .zip((2_000..).step_by(100))
                .map(|(p, at)| succeeded(*p, at)),
        );
        let at_ms = 2_000 + 100 * before.len() as u64;
        let scenario = given::<Order>(history);
        // When
        let when = scenario.when(success(last, at_ms));
        // Then
        let mut decided = vec![succeeded(last, at_ms)];
        if awaited.is_empty() {
            decided.push(completed(at_ms));
        }
        let state = when.then(decided);
        let saga = &state.orders[&ORDER];
        assert_eq!(saga.waiting_for(), awaited);
        assert_eq!(saga.status.is_terminal(), awaited.is_empty());
        let status = match awaited.is_empty() {
            true => OrderStatus::Completed,
            false => OrderStatus::Pending,
        };
        assert_eq!((saga.status, saga.updated_at_ms), (status, at_ms));
    }
    let simple = given::<Order>([placed(order_with(None, 0))]);
    assert_eq!(simple.state().orders[&ORDER].required, vec![Payment, Stock]);
}

#[test]
fn the_first_rejection_fails_the_order_with_its_reason() {
    // Given
    let scenario = given::<Order>(failed_history()[..4].to_vec());
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
    let first = Some("declined");
    let scenario = given::<Order>([
        placed(full_order()),
        recorded(Participant::Payment, OutcomeKind::Rejected, first, 2_000),
        failed("payment declined: declined", 2_000),
    ]);
    // When
    let sold_out = Some("sold out");
    let state = scenario
        .when(record(
            Participant::Stock,
            OutcomeKind::Rejected,
            sold_out,
            2_500,
        ))
        // Then
        .then([recorded(
            Participant::Stock,
            OutcomeKind::Rejected,
            sold_out,
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
    let compensations = [
        compensated(Participant::Payment, 4_000),
        compensated(Participant::Stock, 4_100),
        compensated(Participant::Coupon, 4_200),
    ];
    let scenario = given::<OrderHistory>(then_also(failed_history(), compensations));
    // When
    let when = scenario.when(compensation(Participant::Point, 4_300));
    // Then
    let state = when.then([
        compensated(Participant::Point, 4_300),
        all_compensated(4_300),
    ]);
    let saga = &state.orders[&ORDER];
    assert_eq!(saga.status, OrderStatus::Failed);
    assert!(saga.status.is_terminal());
    assert_eq!(saga.failure_reason.as_deref(), Some(DECLINE_REASON));
}

#[test]
fn a_failed_compensation_needs_attention_instead_of_failing_the_order() {
    // Given
    let mut history = point_refund_failed_history();
    history.truncate(history.len() - 2);
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
    let scenario = given::<Order>(point_refund_failed_history());
    // When
    let when = scenario.when(compensation(Participant::Coupon, 6_000));
    // Then
    let state = when.then([compensated(Participant::Coupon, 6_000)]);
    let saga = &state.orders[&ORDER];
    assert_eq!(saga.status, OrderStatus::NeedsAttention);
    assert!(saga.waiting_for().is_empty());
}

#[test]
fn an_operator_retry_followed_by_the_compensation_fails_the_order() {
    // Given
    let scenario = given::<OrderHistory>(needs_attention_history());
    // When
    let retried_state = scenario
        .when(ask(Ask::Retry, 7_000))
        .then([retried(1, 7_000)]);
    // Then
    let saga = &retried_state.orders[&ORDER];
    assert_eq!(saga.status, OrderStatus::Compensating);
    assert_eq!(saga.redrives, 1);
    assert_eq!(saga.attention_reason, None);
    assert_eq!(saga.waiting_for(), vec![Participant::Point]);

    // Given the retry is in the log
    let history = then_also(needs_attention_history(), [retried(1, 7_000)]);
    // When
    let when = given::<OrderHistory>(history).when(compensation(Participant::Point, 8_000));
    // Then
    let state = when.then([
        compensated(Participant::Point, 8_000),
        all_compensated(8_000),
    ]);
    assert_eq!(state.orders[&ORDER].status, OrderStatus::Failed);
}

#[test]
fn a_participant_fixing_its_own_compensation_resolves_the_attention() {
    // Given
    let scenario = given::<Order>(needs_attention_history());
    // When
    let when = scenario.when(compensation(Participant::Point, 9_000));
    // Then
    when.then([
        compensated(Participant::Point, 9_000),
        all_compensated(9_000),
    ]);
}

#[test]
fn exhausted_redrives_leave_the_order_needing_attention_with_a_reason() {
    // Given
    let scenario = given::<Order>(point_silent_history());
    // When
    let when = scenario.when(escalate(1, 10_000));
    // Then
    let state = when.then([redrives_exhausted(10_000)]);
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
fn exhausted_redrives_after_a_failed_compensation_keep_both_reasons() {
    // Given point's refund failed and coupon never answered
    let scenario = given::<Order>(point_refund_failed_history());
    // When
    let when = scenario.when(escalate(20, 9_000));
    // Then
    let state = when.then([OrderEvent::RedrivesExhausted {
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
    let history = then_also(point_silent_history(), [redrives_exhausted(10_000)]);
    // When
    let retried_state = given::<OrderHistory>(history.clone())
        .when(ask(Ask::Retry, 11_000))
        // Then
        .then([retried(2, 11_000)]);
    let saga = &retried_state.orders[&ORDER];
    assert_eq!(saga.status, OrderStatus::Compensating);
    assert_eq!(saga.attention_reason, None);
    assert_eq!(saga.round_redrives, 0, "a fresh round of re-drives");
    assert!(!saga.redrives_exhausted);

    // Given the retry is in the log
    let history = then_also(history, [retried(2, 11_000)]);
    // When point finally answers
    let when = given::<OrderHistory>(history).when(compensation(Participant::Point, 12_000));
    // Then
    let state = when.then([
        compensated(Participant::Point, 12_000),
        all_compensated(12_000),
    ]);
    assert_eq!(state.orders[&ORDER].status, OrderStatus::Failed);
    assert!(!state.open.contains(&ORDER));
}

#[test]
fn a_delivery_is_parked_once_and_a_resume_takes_it_up_again() {
    // Given
    let scenario = given::<Order>(completed_history());
    // When
    let state = scenario.when(park("m-1", 5_000)).then([parked(5_000)]);
    // Then
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

    // Given it is parked; When an operator re-drives it
    let history = then_also(completed_history(), [parked(5_000)]);
    let when = given::<Order>(history).when(ask(Ask::Resume, 7_000));
    // Then
    let state = when.then([resumed(7_000)]);
    assert_eq!(state.orders[&ORDER].delivery_parked, None);
}

#[test]
fn delivering_a_completed_order_records_it_and_unparks_it() {
    for history in [
        completed_history(),
        then_also(completed_history(), [parked(5_000)]),
    ] {
        // Given
        let scenario = given::<OrderHistory>(history);
        // When
        let state = scenario
            .when(ask(Ask::MarkDelivered, 8_000))
            .then([delivered(8_000)]);
        // Then
        let saga = &state.orders[&ORDER];
        assert!(saga.data_platform_delivered);
        assert_eq!(saga.delivery_parked, None);
        assert!(!state.open.contains(&ORDER));
    }
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
    let when = scenario.when(ask(Ask::Expire, DEADLINE));
    // Then
    let reason = "deadline passed, waiting for stock, point";
    let state = when.then([failed(reason, DEADLINE)]);
    assert_eq!(state.orders[&ORDER].status, OrderStatus::Compensating);
}

#[test]
fn each_redrive_counts_one_more_attempt_while_someone_is_missing() {
    let cases = [
        (
            then_also(failed_history(), [redriven(1, 10_000)]),
            20_000,
            2,
            OrderStatus::Compensating,
        ),
        // An order needing attention is re-driven to those still missing.
        (
            point_refund_failed_history(),
            6_000,
            1,
            OrderStatus::NeedsAttention,
        ),
    ];
    for (history, now_ms, attempt, status) in cases {
        // Given
        let scenario = given::<Order>(history);
        // When
        let when = scenario.when(ask(Ask::Redrive, now_ms));
        // Then
        let state = when.then([redriven(attempt, now_ms)]);
        let saga = &state.orders[&ORDER];
        assert_eq!((saga.redrives, saga.status), (attempt, status));
        assert_eq!(saga.updated_at_ms, now_ms);
    }
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
    let p = Participant::Payment;
    let k = OutcomeKind::Succeeded;
    let events = [
        placed(full_order()),
        recorded(p, k, None, 1),
        completed(1),
        failed("r", 1),
        all_compensated(1),
        OrderEvent::AttentionNeeded {
            order_id: ORDER,
            participant: p,
            reason: "r".into(),
            at_ms: 1,
        },
        redriven(1, 1),
        retried(1, 1),
        delivered(1),
        duplicate(p, k, 1),
        redrives_exhausted(1),
        parked(1),
        resumed(1),
    ];
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
    // Then
    fixtures::check_variants::<Order>(&events, &names, None, ORDER);
}

#[test]
fn events_render_as_camel_case_json() {
    // Given
    let event = redriven(1, 5);
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
