//! Snapshots and the dedup index against real sled files: a restart from snapshots equals a fold
//! from scratch, a damaged or stale snapshot is never trusted, `verify` catches a snapshot that
//! disagrees with the log, bounded replays agree with the fold, dedup answers survive eviction
//! and reopening.

mod common;

use std::path::Path;

use common::counter::{CountEvent, Counter, Counts};
use common::WAIT;
use eventlog::domain::Domain;
use eventlog::event_store::{EventStore, ReplayBound, StoreConfig};
use eventlog::live::{self, Execution, Live};
use eventlog::snapshot::{self, Refused, SnapshotPolicy, Verdict};
use eventlog::testing_hooks::{event, eventually};
use eventlog::{Commit, CommitOutcome, EventMeta};
use tokio_util::sync::CancellationToken;

/// The same domain after a change of its state's shape.
struct CounterV2;

impl Domain for CounterV2 {
    type State = Counts;
    type Event = CountEvent;
    type Command = (String, u64);
    type Rejection = ();
    const SNAPSHOT_VERSION: u32 = 2;

    fn decide(state: &Counts, command: (String, u64)) -> Result<Vec<CountEvent>, ()> {
        Counter::decide(state, command)
    }
    fn evolve(state: &mut Counts, event: &CountEvent) {
        Counter::evolve(state, event)
    }
    fn event_type(event: &CountEvent) -> &'static str {
        Counter::event_type(event)
    }
    fn stream_of(event: &CountEvent) -> String {
        Counter::stream_of(event)
    }
}

fn open(dir: &Path) -> EventStore {
    EventStore::open(StoreConfig::new(dir)).expect("the store opens")
}

async fn add(live: &Live<Counter>, i: u64) {
    let execution = Execution {
        meta: EventMeta {
            correlation_id: format!("o{i}"),
            ..EventMeta::default()
        },
        dedup_key: Some(format!("o{i}/counter/add")),
    };
    live.execute(execution, (format!("k{}", i % 7), i), |_, _| Ok(Vec::new()))
        .await
        .expect("executes")
        .expect("accepted");
}

async fn add_range(live: &Live<Counter>, range: std::ops::Range<u64>) {
    for i in range {
        add(live, i).await;
    }
}

fn scratch(store: &EventStore, bound: ReplayBound) -> Counts {
    live::rebuild_from_scratch::<Counter>(store, bound)
        .expect("folds")
        .state
}

/// A log of 50 events with snapshots at 20 and 40 (and one at 10, pruned by keep = 2), in a
/// fresh directory, reopened as a restarted service would.
async fn log_with_snapshots() -> (tempfile::TempDir, EventStore) {
    let dir = tempfile::tempdir().expect("a temp dir");
    {
        let live = Live::<Counter>::open(open(dir.path())).expect("opens");
        for (events, snapshot_at) in [(0..10, 10), (10..20, 20), (20..40, 40)] {
            add_range(&live, events).await;
            assert_eq!(live.snapshot(2).await.expect("snapshot"), Some(snapshot_at));
        }
        add_range(&live, 40..50).await;
    }
    let store = open(dir.path());
    (dir, store)
}

#[tokio::test]
async fn a_restart_after_snapshots_yields_exactly_the_state_of_a_fold_from_scratch() {
    // Given a log of 50 events with snapshots taken along the way, newest two kept
    let (_dir, store) = log_with_snapshots().await;

    // When the service restarts
    let rebuilt = live::rebuild_report::<Counter>(&store, ReplayBound::default()).expect("folds");
    let live = Live::<Counter>::open(store.clone()).expect("reopens");

    // Then it started from the newest snapshot, folded only the tail, and has the fold's state
    assert_eq!(store.snapshot_seqs().expect("lists"), vec![20, 40]);
    assert_eq!(rebuilt.snapshot_seq, Some(40));
    assert_eq!(rebuilt.folded, 10);
    let state = scratch(&store, ReplayBound::default());
    assert_eq!(rebuilt.state, state);
    assert_eq!(live.read(|s| s.clone()).await.expect("reads"), state);
    // And decisions continue from the right stream versions
    add_range(&live, 50..60).await;
    let after = scratch(&store, ReplayBound::default());
    assert_eq!(live.read(|s| s.clone()).await.expect("reads"), after);
    assert_eq!(after.total, (0..60).sum::<u64>());
}

#[tokio::test]
async fn a_corrupt_snapshot_is_ignored_and_the_older_one_then_the_whole_log_is_folded() {
    // Given snapshots at 20 and 40
    let (_dir, store) = log_with_snapshots().await;
    let state = scratch(&store, ReplayBound::default());

    // When the newest one has a flipped byte
    store.corrupt_snapshot_for_test(40, 100).expect("corrupted");

    // Then it is refused and the one at 20 is used, with the same resulting state
    assert!(matches!(
        snapshot::load::<Counter>(&store, 40).expect("reads"),
        Err(Refused::Corrupt(_))
    ));
    let rebuilt = live::rebuild_report::<Counter>(&store, ReplayBound::default()).expect("folds");
    assert_eq!(rebuilt.snapshot_seq, Some(20));
    assert_eq!(rebuilt.folded, 30);
    assert_eq!(rebuilt.state, state);

    // When the older one is unreadable too (cut short)
    let bytes = store.snapshot_bytes(20).expect("reads").expect("exists");
    store
        .put_snapshot_bytes(20, &bytes[..bytes.len() / 2])
        .expect("written");

    // Then the whole log is folded
    let rebuilt = live::rebuild_report::<Counter>(&store, ReplayBound::default()).expect("folds");
    assert_eq!(rebuilt.snapshot_seq, None);
    assert_eq!(rebuilt.folded, 50);
    assert_eq!(rebuilt.state, state);
    let live = Live::<Counter>::open(store).expect("opens");
    assert_eq!(live.read(|s| s.clone()).await.expect("reads"), state);
}

#[tokio::test]
async fn a_snapshot_of_another_state_version_is_ignored_not_trusted() {
    // Given snapshots written by a build whose state is version 1
    let (_dir, store) = log_with_snapshots().await;

    // When a build with state version 2 opens the log
    let rebuilt = live::rebuild_report::<CounterV2>(&store, ReplayBound::default()).expect("folds");

    // Then it folds the whole log: the old snapshots are stale to it
    assert_eq!(rebuilt.snapshot_seq, None);
    assert_eq!(rebuilt.folded, 50);
    assert_eq!(rebuilt.state, scratch(&store, ReplayBound::default()));
    assert!(matches!(
        snapshot::load::<CounterV2>(&store, 40).expect("reads"),
        Err(Refused::Stale(_))
    ));
}

#[tokio::test]
async fn a_snapshot_of_another_log_is_refused() {
    // Given a snapshot taken in one log
    let (_dir, store) = log_with_snapshots().await;
    let bytes = store.snapshot_bytes(40).expect("reads").expect("exists");

    // When it is copied into another log of the same length but other events
    let other = tempfile::tempdir().expect("a temp dir");
    let live = Live::<Counter>::open(open(other.path())).expect("opens");
    add_range(&live, 100..150).await;
    live.store().put_snapshot_bytes(40, &bytes).expect("copied");

    // Then it is not used
    assert!(matches!(
        snapshot::load::<Counter>(live.store(), 40).expect("reads"),
        Err(Refused::Corrupt(_))
    ));
    let rebuilt =
        live::rebuild_report::<Counter>(live.store(), ReplayBound::default()).expect("folds");
    assert_eq!(rebuilt.snapshot_seq, None);
}

#[tokio::test]
async fn verify_reports_a_snapshot_that_disagrees_with_the_fold() {
    // Given a log with genuine snapshots at 20 and 40
    let (_dir, store) = log_with_snapshots().await;
    let (_, folded) = all_snapshots_match(&store);
    assert_eq!(folded, 50);

    // When a well-formed snapshot with a wrong state is stored at 30
    let mut wrong = scratch(
        &store,
        ReplayBound {
            upto_seq: Some(30),
            upto_time_ms: None,
        },
    );
    wrong.total += 1;
    snapshot::write::<Counter>(&store, 30, &wrong, 10).expect("written");

    // Then verify names it, and only it
    let (checks, _) = snapshot::verify::<Counter>(&store).expect("verifies");
    let verdicts: Vec<_> = checks
        .iter()
        .map(|c| (c.global_seq, c.verdict.clone()))
        .collect();
    assert_eq!(
        verdicts,
        vec![
            (20, Verdict::Matches),
            (30, Verdict::Differs),
            (40, Verdict::Matches)
        ]
    );
}

#[tokio::test]
async fn replay_with_a_bound_below_between_or_above_snapshots_equals_the_fold_up_to_it() {
    // Given snapshots at 20 and 40 of a 50-event log
    let (_dir, store) = log_with_snapshots().await;

    // When replaying up to seqs around and at the snapshots
    for upto in [1, 5, 19, 20, 21, 39, 40, 41, 50, 70] {
        let bound = ReplayBound {
            upto_seq: Some(upto),
            upto_time_ms: None,
        };
        let rebuilt = live::rebuild_report::<Counter>(&store, bound).expect("folds");
        // Then the state is the fold of the records up to the bound
        assert_eq!(rebuilt.state.clone(), scratch(&store, bound), "upto {upto}");
        let expected_snapshot = [40, 20].into_iter().find(|s| *s <= upto);
        assert_eq!(rebuilt.snapshot_seq, expected_snapshot, "upto {upto}");
    }
    // And up to times: before everything, at a snapshot's record, at the end
    for seq in [1, 20, 40, 50] {
        let (_, at) = store.record_hash(seq).expect("a record");
        for t in [at.saturating_sub(1), at, at + 1] {
            let bound = ReplayBound {
                upto_seq: None,
                upto_time_ms: Some(t),
            };
            let rebuilt = live::rebuild_report::<Counter>(&store, bound).expect("folds");
            assert_eq!(rebuilt.state, scratch(&store, bound), "upto time {t}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_taken_while_decisions_run_hold_exactly_the_log_up_to_their_seq() {
    // Given decisions running concurrently
    let dir = tempfile::tempdir().expect("a temp dir");
    let live = Live::<Counter>::open(open(dir.path())).expect("opens");
    let mut tasks = tokio::task::JoinSet::new();
    for lane in 0..8u64 {
        let live = live.clone();
        tasks.spawn(async move { add_range(&live, lane * 1000..lane * 1000 + 100).await });
    }

    // When snapshots are taken in between (as long as the decisions run, however slowly the
    // machine schedules them), and once more at the end
    while !tasks.is_empty() {
        live.snapshot(10).await.expect("snapshot");
        tokio::task::yield_now().await;
        while tasks.try_join_next().is_some() {}
    }
    live.snapshot(10).await.expect("snapshot");

    // Then each equals the fold of the log up to its seq
    let (checked, folded) = all_snapshots_match(live.store());
    assert_eq!(folded, 800);
    assert!(checked > 0);
}

#[tokio::test]
async fn the_snapshot_task_snapshots_after_the_configured_number_of_events() {
    // Given the snapshot task running with a count of 10 and no time trigger
    let dir = tempfile::tempdir().expect("a temp dir");
    let live = Live::<Counter>::open(open(dir.path())).expect("opens");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(live.clone().run_snapshots(
        SnapshotPolicy {
            every_events: 10,
            every: std::time::Duration::ZERO,
            keep: 2,
        },
        shutdown.clone(),
    ));

    // When 25 events are written
    add_range(&live, 0..25).await;

    // Then a snapshot at 10 or more exists, and it verifies
    let newest = eventually(WAIT, "a snapshot", || async {
        live.store()
            .snapshot_seqs()
            .expect("lists")
            .last()
            .copied()
            .filter(|s| *s >= 20)
    })
    .await;
    assert!(newest <= 25);
    shutdown.cancel();
    task.await.expect("joins").expect("ends cleanly");
    all_snapshots_match(live.store());
}

#[tokio::test]
async fn dedup_lookups_answer_as_before_after_eviction_and_across_a_reopen() {
    // Given a store with a tiny dedup cache and filter, and 500 handled inputs
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = StoreConfig {
        dedup_cache_entries: 8,
        dedup_filter_keys: 16,
        ..StoreConfig::new(dir.path())
    };
    let mut seqs = Vec::new();
    {
        let store = EventStore::open(config.clone()).expect("opens");
        for i in 0..500u64 {
            let outcome = store
                .commit(Commit {
                    appends: vec![eventlog::StreamAppend {
                        stream: format!("s-{i}"),
                        expected_version: 0,
                        events: vec![event("E", &i.to_be_bytes())],
                    }],
                    dedup_key: Some(dedup_key(i)),
                    ..Commit::default()
                })
                .await
                .expect("commits");
            let CommitOutcome::Committed { last_seq, .. } = outcome else {
                panic!("new input")
            };
            seqs.push(last_seq);
        }
        assert!(store.dedup_cached() <= 8);

        // Then every key answers with its record although most were evicted from the cache, and
        // a retried input is a duplicate
        dedup_answers(&store, &seqs, 7).await;
    }

    // When the store is reopened (filter rebuilt from disk, cache empty)
    let store = EventStore::open(config).expect("reopens");

    // Then the answers are the same
    assert_eq!(store.dedup_cached(), 0);
    dedup_answers(&store, &seqs, 499).await;
}

/// Verifies every snapshot against the fold of the log up to its seq and asserts that each
/// matches; returns how many snapshots were checked and how many events were folded.
fn all_snapshots_match(store: &EventStore) -> (usize, u64) {
    let (checks, folded) = snapshot::verify::<Counter>(store).expect("verifies");
    assert!(
        checks.iter().all(|c| c.verdict == Verdict::Matches),
        "{checks:?}"
    );
    (checks.len(), folded)
}

/// The dedup key of the i-th input of the dedup test.
fn dedup_key(i: u64) -> String {
    format!("o{i}/stock/reserve")
}

/// Asserts that the dedup test's inputs `0..seqs.len()` answer with their records, the next 100
/// were never seen, and input `retried` committed again is a duplicate of its record.
async fn dedup_answers(store: &EventStore, seqs: &[u64], retried: u64) {
    let handled = seqs.len() as u64;
    for i in 0..handled {
        let record = store.dedup(&dedup_key(i)).expect("reads").expect("seen");
        assert_eq!(record.global_seq, seqs[i as usize]);
    }
    for i in handled..handled + 100 {
        assert!(store.dedup(&dedup_key(i)).expect("reads").is_none());
    }
    let again = store
        .commit(Commit {
            dedup_key: Some(dedup_key(retried)),
            ..Commit::default()
        })
        .await
        .expect("commits");
    let seq = seqs[retried as usize];
    assert!(matches!(again, CommitOutcome::Duplicate(r) if r.global_seq == seq));
}
