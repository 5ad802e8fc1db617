//! Entries that left memory come back from the log on demand (`Domain::hydrate`): a command about
//! an evicted order decides exactly as if the entry had stayed, the state afterwards equals the
//! fold of the log from scratch, and snapshots of it verify.

use std::path::Path;
use std::time::Duration;

use eventlog::domain::Domain;
use eventlog::live::{self, Executed, Execution, Live};
use eventlog::resident::Resident;
use eventlog::testing_hooks::{held_groups, set_hold_flush};
use eventlog::{snapshot, EventMeta, EventStore, ReplayBound, StoreConfig};
use serde::{Deserialize, Serialize};

/// A shelf lending units to orders: a balance that stays, per-order entries that leave.
struct Shelf;

/// Orders kept in memory: the last three opened.
const WINDOW: u64 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Lent {
    Out(u64),
    Back,
    Tombstone,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct ShelfState {
    units: u64,
    orders: Resident<String, Lent>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum ShelfEvent {
    Stocked { units: u64 },
    LentOut { order: String, units: u64 },
    Returned { order: String, units: u64 },
    Tombstoned { order: String },
    Ignored { order: String },
}

#[derive(Debug)]
enum ShelfCommand {
    Stock(u64),
    Lend(String, u64),
    Return(String),
}

fn order_of(event: &ShelfEvent) -> Option<&str> {
    match event {
        ShelfEvent::Stocked { .. } => None,
        ShelfEvent::LentOut { order, .. }
        | ShelfEvent::Returned { order, .. }
        | ShelfEvent::Tombstoned { order }
        | ShelfEvent::Ignored { order } => Some(order),
    }
}

impl Domain for Shelf {
    type State = ShelfState;
    type Event = ShelfEvent;
    type Command = ShelfCommand;
    type Rejection = ();

    fn decide(state: &ShelfState, command: ShelfCommand) -> Result<Vec<ShelfEvent>, ()> {
        Ok(match command {
            ShelfCommand::Stock(units) => vec![ShelfEvent::Stocked { units }],
            ShelfCommand::Lend(order, units) => match state.orders.get(&order) {
                Some(Lent::Tombstone) => vec![ShelfEvent::Ignored { order }],
                Some(_) => vec![],
                None if units <= state.units => vec![ShelfEvent::LentOut { order, units }],
                None => return Err(()),
            },
            ShelfCommand::Return(order) => match state.orders.get(&order) {
                Some(Lent::Out(units)) => vec![ShelfEvent::Returned {
                    units: *units,
                    order,
                }],
                Some(_) => vec![],
                None => vec![ShelfEvent::Tombstoned { order }],
            },
        })
    }

    fn evolve(state: &mut ShelfState, event: &ShelfEvent) {
        match event {
            ShelfEvent::Stocked { units } => state.units += units,
            ShelfEvent::LentOut { order, units } => {
                state.units -= units;
                assert!(state
                    .orders
                    .open(order.clone(), Lent::Out(*units), WINDOW)
                    .is_none());
            }
            ShelfEvent::Returned { order, units } => {
                // The units come from the event: the entry may be gone from memory.
                state.units += units;
                if let Some(entry) = state.orders.settle(order) {
                    assert!(matches!(entry, Lent::Out(_)));
                }
            }
            ShelfEvent::Tombstoned { order } => assert!(!state.orders.contains_key(order)),
            ShelfEvent::Ignored { .. } => {}
        }
    }

    fn event_type(event: &ShelfEvent) -> &'static str {
        match event {
            ShelfEvent::Stocked { .. } => "Stocked",
            ShelfEvent::LentOut { .. } => "LentOut",
            ShelfEvent::Returned { .. } => "Returned",
            ShelfEvent::Tombstoned { .. } => "Tombstoned",
            ShelfEvent::Ignored { .. } => "Ignored",
        }
    }

    fn stream_of(event: &ShelfEvent) -> String {
        match order_of(event) {
            Some(order) => format!("order-{order}"),
            None => "shelf".to_owned(),
        }
    }

    fn cold_key(command: &ShelfCommand) -> Option<String> {
        match command {
            ShelfCommand::Stock(_) => None,
            ShelfCommand::Lend(order, _) | ShelfCommand::Return(order) => Some(order.clone()),
        }
    }

    fn is_resident(state: &ShelfState, key: &str) -> bool {
        state.orders.contains_key(&key.to_owned())
    }

    fn hydrate(state: &mut ShelfState, key: &str, events: &[ShelfEvent]) {
        let mut entry = None;
        for event in events.iter().filter(|e| order_of(e) == Some(key)) {
            entry = match event {
                ShelfEvent::LentOut { units, .. } => Some(Lent::Out(*units)),
                ShelfEvent::Returned { .. } => Some(Lent::Back),
                ShelfEvent::Tombstoned { .. } => Some(Lent::Tombstone),
                ShelfEvent::Ignored { .. } | ShelfEvent::Stocked { .. } => entry,
            };
        }
        if let Some(entry) = entry {
            state.orders.hydrate(key.to_owned(), entry);
        }
    }

    fn retire(state: &mut ShelfState, key: &str) {
        state.orders.retire(&key.to_owned());
    }

    // Like the participants: every event about an order is on its stream.
    fn cold_stream(key: &str) -> Option<String> {
        Some(format!("order-{key}"))
    }

    const SNAPSHOT_VERSION: u32 = 7;
}

/// The flush hold is process-wide: the tests of this binary take turns.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn open(dir: &Path) -> Live<Shelf> {
    Live::open(EventStore::open(StoreConfig::new(dir)).expect("the store opens")).expect("opens")
}

/// A shelf of `units` in a fresh store, once this test's turn came (see [`SERIAL`]); the guard
/// and the directory live as long as the test holds them.
async fn shelf_of(
    units: u64,
) -> (
    tokio::sync::MutexGuard<'static, ()>,
    tempfile::TempDir,
    Live<Shelf>,
) {
    let serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let live = open(dir.path());
    run(&live, ShelfCommand::Stock(units)).await;
    (serial, dir, live)
}

/// Runs a command the way a handler does (correlation id = the order) and returns its events.
async fn run(live: &Live<Shelf>, command: ShelfCommand) -> Vec<ShelfEvent> {
    let correlation_id = Shelf::cold_key(&command).unwrap_or_else(|| "admin".to_owned());
    let execution = Execution {
        meta: EventMeta {
            correlation_id,
            ..EventMeta::default()
        },
        dedup_key: None,
    };
    match live
        .execute(execution, command, |_, _| Ok(Vec::new()))
        .await
        .expect("executes")
        .expect("accepted")
    {
        Executed::Committed { events, .. } => events,
        Executed::Duplicate(_) => panic!("no dedup key, no duplicate"),
    }
}

async fn state(live: &Live<Shelf>) -> ShelfState {
    live.read(Clone::clone).await.expect("reads")
}

fn scratch(live: &Live<Shelf>) -> ShelfState {
    live::rebuild_from_scratch::<Shelf>(live.store(), ReplayBound::default())
        .expect("folds")
        .state
}

#[tokio::test]
async fn a_command_on_an_evicted_entry_decides_as_if_it_had_stayed_and_the_state_equals_the_fold() {
    // Given five orders lent out of a shelf of 100: the first two left memory (window of 3)
    let (_serial, dir, live) = shelf_of(100).await;
    for i in 1..=5 {
        run(&live, ShelfCommand::Lend(format!("o{i}"), i)).await;
    }
    let before = state(&live).await;
    assert_eq!(before.units, 85);
    assert!(!before.orders.contains_key(&"o1".to_owned()));
    assert!(before.orders.contains_key(&"o3".to_owned()));
    assert!(before == scratch(&live));

    // When the evicted o1 is returned, twice, and lent again (a late redelivery)
    let returned = run(&live, ShelfCommand::Return("o1".into())).await;
    let again = run(&live, ShelfCommand::Return("o1".into())).await;
    let relent = run(&live, ShelfCommand::Lend("o1".into(), 1)).await;

    // Then it comes back once, exactly as from memory, and nothing stays in memory for it
    assert_eq!(
        returned,
        vec![ShelfEvent::Returned {
            order: "o1".into(),
            units: 1
        }]
    );
    assert_eq!(again, vec![]);
    assert_eq!(relent, vec![]);
    let after = state(&live).await;
    assert_eq!(after.units, 86);
    assert!(!after.orders.contains_key(&"o1".to_owned()));
    // And a read of the key sees what the log says about it
    let seen = live
        .read_key("o1", |s| s.orders.get(&"o1".to_owned()).copied())
        .await
        .expect("reads");
    assert_eq!(seen, Some(Lent::Back));

    // When a tombstone is left for an unknown order, then its late placement arrives
    assert_eq!(
        run(&live, ShelfCommand::Return("o9".into())).await,
        vec![ShelfEvent::Tombstoned { order: "o9".into() }]
    );
    assert_eq!(
        run(&live, ShelfCommand::Lend("o9".into(), 1)).await,
        vec![ShelfEvent::Ignored { order: "o9".into() }]
    );
    let live_state = state(&live).await;
    assert!(live_state == scratch(&live));

    // When a snapshot is taken and the service restarts from it
    assert!(live.snapshot(2).await.expect("snapshot").is_some());
    run(&live, ShelfCommand::Return("o2".into())).await;
    let final_state = state(&live).await;
    drop(live);
    let reopened = open(dir.path());

    // Then the restart equals the live state and the fold from scratch, and verify agrees
    assert!(state(&reopened).await == final_state);
    assert!(final_state == scratch(&reopened));
    assert_eq!(final_state.units, 88);
    let (checks, _) = snapshot::verify::<Shelf>(reopened.store()).expect("verifies");
    assert_eq!(checks.len(), 1);
    assert!(
        checks
            .iter()
            .all(|c| matches!(c.verdict, snapshot::Verdict::Matches)),
        "{checks:?}"
    );
}

#[tokio::test]
async fn a_cold_read_waits_for_the_commit_that_just_settled_the_entry() {
    // Given an order in memory, settled by a commit the writer holds before its flush
    let (_serial, _dir, live) = shelf_of(10).await;
    run(&live, ShelfCommand::Lend("o1".into(), 4)).await;
    set_hold_flush(true);
    let held = held_groups();
    let returning = {
        let live = live.clone();
        tokio::spawn(async move { run(&live, ShelfCommand::Return("o1".into())).await })
    };
    while held_groups() == held {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    // When the same order comes again while that commit is not yet on disk
    let again = {
        let live = live.clone();
        tokio::spawn(async move { run(&live, ShelfCommand::Return("o1".into())).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;

    // Then it waits (the log does not have the return yet), and once it has, decides on it:
    // nothing to return twice, no tombstone
    assert!(!again.is_finished());
    set_hold_flush(false);
    assert_eq!(returning.await.expect("task").len(), 1);
    assert_eq!(again.await.expect("task"), vec![]);
    assert_eq!(state(&live).await.units, 10);
    assert!(state(&live).await == scratch(&live));
}
