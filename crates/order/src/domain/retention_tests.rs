//! Settled orders leave the state: given/when/then on retention, the archive's rebuild and
//! decisions about archived orders.

use super::*;
use contract::fixtures;
use eventlog::domain::fold;

const ORDER: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_00a1);

fn placed(order_id: Uuid, key: &str) -> OrderEvent {
    OrderEvent::Placed {
        order: fixtures::placed(order_id),
        trace_id: format!("trace-{order_id}"),
        idempotency_key: Some(key.into()),
    }
}

fn outcome(
    order_id: Uuid,
    participant: Participant,
    kind: OutcomeKind,
    at_ms: u64,
) -> OrderCommand {
    OrderCommand::RecordOutcome {
        event: ParticipantEvent {
            order_id,
            participant,
            kind,
            reason: None,
        },
        now_ms: at_ms,
    }
}

/// Decides and applies commands one by one with `D`, as the live state does; returns the
/// state and every event, in log order.
fn run<D: Domain<State = Orders, Event = OrderEvent, Command = OrderCommand>>(
    first: Vec<OrderEvent>,
    commands: Vec<OrderCommand>,
) -> (Orders, Vec<OrderEvent>) {
    let mut state = Orders::default();
    let mut log = first;
    for event in &log {
        D::evolve(&mut state, event);
    }
    for command in commands {
        if let Ok(events) = D::decide(&state, command) {
            for event in &events {
                D::evolve(&mut state, event);
            }
            log.extend(events);
        }
    }
    (state, log)
}

/// `order_id`'s outcomes in turn, each `(participant, kind, at_ms)`.
fn outcomes(order_id: Uuid, steps: &[(Participant, OutcomeKind, u64)]) -> Vec<OrderCommand> {
    steps
        .iter()
        .map(|&(participant, kind, at_ms)| outcome(order_id, participant, kind, at_ms))
        .collect()
}

/// One order failed and compensated by both participants.
fn failing(order_id: Uuid) -> Vec<OrderCommand> {
    outcomes(
        order_id,
        &[
            (Participant::Payment, OutcomeKind::Succeeded, 2_000),
            (Participant::Stock, OutcomeKind::Rejected, 2_100),
            (Participant::Payment, OutcomeKind::Compensated, 2_200),
            (Participant::Stock, OutcomeKind::Compensated, 2_300),
        ],
    )
}

/// One order failed whose stock compensation failed for good.
fn compensation_failing(order_id: Uuid) -> Vec<OrderCommand> {
    let mut commands = failing(order_id);
    if let Some(last) = commands.last_mut() {
        *last = outcome(
            order_id,
            Participant::Stock,
            OutcomeKind::CompensationFailed,
            2_300,
        );
    }
    commands
}

/// One order completed and delivered to the data platform.
fn completing(order_id: Uuid) -> Vec<OrderCommand> {
    let mut commands = outcomes(
        order_id,
        &[
            (Participant::Payment, OutcomeKind::Succeeded, 2_000),
            (Participant::Stock, OutcomeKind::Succeeded, 2_100),
        ],
    );
    commands.push(OrderCommand::MarkDelivered {
        order_id,
        now_ms: 2_200,
    });
    commands
}

#[test]
fn an_order_that_fails_and_is_compensated_leaves_the_state_and_is_counted() {
    // Given / When
    let (state, _) = run::<Order>(vec![placed(ORDER, "k")], failing(ORDER));
    // Then
    assert!(state.orders.is_empty());
    assert!(state.open.is_empty());
    assert!(state.by_trace.is_empty());
    assert!(state.by_idempotency_key.is_empty());
    assert_eq!(state.status_counts.get(OrderStatus::Failed), 1);
    assert_eq!(state.status_counts.get(OrderStatus::Compensating), 0);
}

#[test]
fn a_completed_order_stays_until_the_data_platform_has_it_even_while_parked() {
    // Given a completed order whose delivery is parked
    let mut commands = completing(ORDER);
    let deliver = commands.pop().expect("the delivery");
    commands.push(OrderCommand::ParkDelivery {
        order_id: ORDER,
        reason: "HTTP 503".into(),
        msg_id: "m".into(),
        now_ms: 2_150,
    });
    let (state, log) = run::<Order>(vec![placed(ORDER, "k")], commands);
    assert_eq!(state.orders[&ORDER].status, OrderStatus::Completed);
    assert!(state.open.contains(&ORDER));
    // When it is resumed and delivered
    let (state, _) = run::<Order>(
        log,
        vec![
            OrderCommand::ResumeDelivery {
                order_id: ORDER,
                now_ms: 2_160,
            },
            deliver,
        ],
    );
    // Then it leaves the state
    assert!(state.orders.is_empty() && state.open.is_empty());
    assert_eq!(state.status_counts.get(OrderStatus::Completed), 1);
}

#[test]
fn needs_attention_and_pending_orders_stay() {
    // Given one pending order and one whose compensation failed for good
    let other = Uuid::from_u128(7);
    let (state, _) = run::<Order>(
        vec![placed(ORDER, "a"), placed(other, "b")],
        compensation_failing(ORDER),
    );
    // Then both are still in memory with their lookups
    assert_eq!(state.orders[&ORDER].status, OrderStatus::NeedsAttention);
    assert_eq!(state.orders[&other].status, OrderStatus::Pending);
    assert_eq!(state.by_idempotency_key.len(), 2);
    assert_eq!(state.by_trace.len(), 2);
}

/// Many orders through every path, interleaved.
fn mixed_history() -> (Vec<OrderEvent>, Vec<OrderCommand>) {
    let mut placed_events = Vec::new();
    let mut commands = Vec::new();
    for i in 0..40u128 {
        let id = Uuid::from_u128(1_000 + i);
        placed_events.push(placed(id, &format!("key-{i}")));
        commands.extend(match i % 4 {
            0 => failing(id),
            1 => completing(id),
            2 => completing(id)[..2].to_vec(),
            _ => vec![outcome(
                id,
                Participant::Payment,
                OutcomeKind::Succeeded,
                2_000,
            )],
        });
        // A late repeat after the order settled, with a new key: kept for the record.
        commands.push(outcome(
            id,
            Participant::Stock,
            OutcomeKind::Compensated,
            9_000,
        ));
    }
    (placed_events, commands)
}

#[test]
fn a_fold_from_scratch_equals_the_live_state_and_survives_a_snapshot() {
    // Given decisions applied one by one, as the live state does
    let (placed_events, commands) = mixed_history();
    let (live, log) = run::<Order>(placed_events, commands);
    // When the log is folded from scratch, and the state goes through a snapshot's encoding
    let folded = fold::<Order>(&log);
    let bytes = postcard::to_stdvec(&live).expect("encodes");
    let restored: Orders = postcard::from_bytes(&bytes).expect("decodes");
    // Then all three agree, and only unsettled orders are held
    assert_eq!(folded, live);
    assert_eq!(restored, live);
    assert_eq!(
        live.orders.len(),
        20,
        "the completed-undelivered and the pending ones"
    );
    assert!(live.orders.values().all(|saga| !saga.is_settled()));
    // ... and the counts are those of the whole history
    let history = fold::<OrderHistory>(&log);
    assert_eq!(history.orders.len(), 40);
    assert_eq!(history.status_counts, live.status_counts);
}

#[test]
fn the_archive_rebuilds_every_order_as_the_whole_history_holds_it() {
    // Given the whole history
    let (placed_events, commands) = mixed_history();
    let (history, log) = run::<OrderHistory>(placed_events, commands);
    // When each order is rebuilt from its own events
    for (id, saga) in &history.orders {
        let own: Vec<&OrderEvent> = log.iter().filter(|e| e.order_id() == *id).collect();
        // Then it is the saga the state held
        assert_eq!(saga_of(own).as_ref(), Some(saga), "{id}");
    }
    assert_eq!(saga_of(&[]), None);
}

#[test]
fn a_command_about_a_settled_order_is_decided_as_when_it_was_in_memory() {
    // Given one failed and one delivered order, settled and gone from the live state
    let (failed, delivered) = (Uuid::from_u128(1), Uuid::from_u128(2));
    let first = vec![placed(failed, "f"), placed(delivered, "d")];
    let mut commands = failing(failed);
    commands.extend(completing(delivered));
    let (live, log) = run::<Order>(first.clone(), commands.clone());
    let (history, _) = run::<OrderHistory>(first, commands);
    assert!(live.orders.is_empty());
    let archived =
        |id: Uuid| saga_of(log.iter().filter(|e| e.order_id() == id)).expect("in the log");
    let asks = |id: Uuid| {
        let mut asks = outcomes(
            id,
            &[
                (Participant::Stock, OutcomeKind::Compensated, 9_000),
                (Participant::Payment, OutcomeKind::Succeeded, 9_000),
                (Participant::Coupon, OutcomeKind::Succeeded, 9_000),
                (Participant::Payment, OutcomeKind::CompensationFailed, 9_000),
            ],
        );
        asks.extend([
            OrderCommand::Expire {
                order_id: id,
                now_ms: 99_000,
            },
            OrderCommand::Redrive {
                order_id: id,
                now_ms: 9_000,
            },
            OrderCommand::RetryCompensation {
                order_id: id,
                now_ms: 9_000,
            },
            OrderCommand::MarkDelivered {
                order_id: id,
                now_ms: 9_000,
            },
            OrderCommand::Escalate {
                order_id: id,
                redrives: 3,
                now_ms: 9_000,
            },
            OrderCommand::ParkDelivery {
                order_id: id,
                reason: "r".into(),
                msg_id: "m".into(),
                now_ms: 9_000,
            },
            OrderCommand::ResumeDelivery {
                order_id: id,
                now_ms: 9_000,
            },
        ]);
        asks
    };
    for id in [failed, delivered] {
        for command in asks(id) {
            // When the live state decides it with the archived saga
            let without = Order::decide(&live, command.clone());
            let with = Order::decide(
                &live,
                OrderCommand::OnArchived {
                    saga: Box::new(archived(id)),
                    command: Box::new(command.clone()),
                },
            );
            // Then it is refused as unknown without, and decided as before with it
            assert_eq!(
                without,
                Err(OrderRejection::UnknownOrder(id)),
                "{command:?}"
            );
            assert_eq!(
                with,
                OrderHistory::decide(&history, command.clone()),
                "{command:?}"
            );
        }
    }
    // ... and what such a decision records changes nothing in the live state
    let mut after = live.clone();
    let late = Order::decide(
        &live,
        OrderCommand::OnArchived {
            saga: Box::new(archived(delivered)),
            command: Box::new(outcome(
                delivered,
                Participant::Stock,
                OutcomeKind::Compensated,
                9_000,
            )),
        },
    )
    .expect("recorded");
    assert!(
        matches!(late[..], [OrderEvent::OutcomeRecorded { .. }]),
        "{late:?}"
    );
    for event in &late {
        Order::evolve(&mut after, event);
    }
    assert_eq!(after, live);
}

#[test]
fn an_archived_saga_of_another_order_decides_nothing() {
    let saga = saga_of(&[placed(ORDER, "k")]).expect("placed");
    let result = Order::decide(
        &Orders::default(),
        OrderCommand::OnArchived {
            saga: Box::new(saga),
            command: Box::new(OrderCommand::Expire {
                order_id: Uuid::from_u128(9),
                now_ms: 1,
            }),
        },
    );
    assert_eq!(result, Err(OrderRejection::UnknownOrder(ORDER)));
}
