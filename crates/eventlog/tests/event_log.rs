//! The sled event log on real directories: ordering and metadata, optimistic concurrency,
//! input dedup, durability across a SIGKILL, and the hash chain's tamper detection.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{handler_commit, placed_entry, placed_msg_id, spawn_child_test};
use eventlog::record::GENESIS_HASH;
use eventlog::testing_hooks::{event, eventually, meta_for, open_store};
use eventlog::{
    Commit, CommitOutcome, Error, EventStore, NewEvent, Record, ReplayBound, StreamAppend,
};
use uuid::Uuid;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_millis() as u64
}

fn append(stream: &str, expected_version: u64, events: Vec<NewEvent>) -> StreamAppend {
    StreamAppend {
        stream: stream.to_owned(),
        expected_version,
        events,
    }
}

/// A commit of one append about `meta`'s order.
fn appending(meta: &str, stream: &str, expected_version: u64, events: Vec<NewEvent>) -> Commit {
    Commit {
        meta: meta_for(meta),
        appends: vec![append(stream, expected_version, events)],
        ..Commit::default()
    }
}

fn seqs(records: &[Record]) -> Vec<u64> {
    records.iter().map(|r| r.global_seq).collect()
}

fn read_all(store: &EventStore, from: u64, bound: ReplayBound) -> Vec<u64> {
    store
        .read_all(from, bound)
        .map(|r| r.expect("every record reads back").global_seq)
        .collect()
}

async fn commit(store: &EventStore, commit: Commit) -> (u64, u64) {
    match store.commit(commit).await.expect("the commit is durable") {
        CommitOutcome::Committed {
            first_seq,
            last_seq,
        } => (first_seq, last_seq),
        CommitOutcome::Duplicate(record) => panic!("unexpected duplicate {record:?}"),
    }
}

#[tokio::test]
async fn appended_events_read_back_in_order_with_all_their_metadata() {
    // Given an empty store
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = open_store(dir.path());
    let before_ms = now_ms();

    // When two orders' streams are appended to, interleaved, in four commits
    let first = commit(
        &store,
        appending(
            "A",
            "order-A",
            0,
            vec![
                event("OrderPlaced", b"a1"),
                event("PaymentRequested", b"a2"),
            ],
        ),
    )
    .await;
    let second = commit(
        &store,
        appending("AB", "order-AB", 0, vec![event("OrderPlaced", b"ab1")]),
    )
    .await;
    let third = commit(
        &store,
        appending("A", "order-A", 2, vec![event("PaymentApproved", b"a3")]),
    )
    .await;
    let early_ms = store.get(4).expect("record 4").recorded_at_ms;
    // A later commit must carry a later time; poll the clock rather than sleep.
    eventually(Duration::from_secs(5), "the clock to move on", || async {
        (now_ms() > early_ms).then_some(())
    })
    .await;
    let fourth = commit(
        &store,
        appending("A", "order-A", 3, vec![event("OrderCompleted", b"a4")]),
    )
    .await;
    let after_ms = now_ms();

    // Then each commit got the next global seqs
    assert_eq!(
        [first, second, third, fourth],
        [(1, 2), (3, 3), (4, 4), (5, 5)]
    );
    assert_eq!(store.head(), 5);
    assert_eq!(store.stream_version("order-A").expect("version"), 4);
    assert_eq!(store.stream_version("order-AB").expect("version"), 1);
    assert_eq!(store.stream_version("order-none").expect("version"), 0);

    // And a stream reads back in order with every field it was given
    let a = store.read_stream("order-A").expect("stream A reads");
    assert_eq!(seqs(&a), [1, 2, 4, 5]);
    let expected = [
        ("OrderPlaced", b"a1".as_slice()),
        ("PaymentRequested", b"a2"),
        ("PaymentApproved", b"a3"),
        ("OrderCompleted", b"a4"),
    ];
    for (i, (record, (event_type, payload))) in a.iter().zip(expected).enumerate() {
        assert_eq!(record.stream, "order-A");
        assert_eq!(record.stream_seq, i as u64 + 1);
        assert_eq!(record.event_type, event_type);
        assert_eq!(record.schema_version, 1);
        assert_eq!(record.payload, payload);
        assert_eq!(record.meta, meta_for("A"));
        assert!((before_ms..=after_ms).contains(&record.recorded_at_ms));
    }
    assert_eq!(a[0].prev_hash, GENESIS_HASH);
    assert_ne!(a[1].prev_hash, GENESIS_HASH);
    let ab = store.read_stream("order-AB").expect("stream AB reads");
    assert_eq!(seqs(&ab), [3]);
    assert_eq!(
        (ab[0].stream_seq, ab[0].payload.as_slice()),
        (1, b"ab1".as_slice())
    );
    assert_eq!(ab[0].meta, meta_for("AB"));
    assert_eq!(store.get(3).expect("record 3"), ab[0]);

    // And the whole log reads from any position and within any bound
    let all = ReplayBound::default();
    assert_eq!(read_all(&store, 0, all), [1, 2, 3, 4, 5]);
    assert_eq!(read_all(&store, 3, all), [3, 4, 5]);
    assert_eq!(read_all(&store, 6, all), Vec::<u64>::new());
    let upto_3 = ReplayBound {
        upto_seq: Some(3),
        upto_time_ms: None,
    };
    assert_eq!(read_all(&store, 1, upto_3), [1, 2, 3]);
    assert_eq!(read_all(&store, 2, upto_3), [2, 3]);
    let until_early = ReplayBound {
        upto_seq: None,
        upto_time_ms: Some(early_ms),
    };
    assert_eq!(read_all(&store, 1, until_early), [1, 2, 3, 4]);
    let both = ReplayBound {
        upto_seq: Some(2),
        upto_time_ms: Some(early_ms),
    };
    assert_eq!(read_all(&store, 1, both), [1, 2]);
    let before_all = ReplayBound {
        upto_seq: None,
        upto_time_ms: Some(before_ms - 1),
    };
    assert_eq!(read_all(&store, 1, before_all), Vec::<u64>::new());
    let full: Vec<Record> = store
        .read_all(1, all)
        .collect::<eventlog::Result<_>>()
        .expect("the log reads");
    assert_eq!(
        full[3], a[2],
        "read_all and read_stream return the same record"
    );

    // And a correlation id finds its records, in log order, and no one else's
    assert_eq!(seqs(&store.read_correlated("A").expect("A")), [1, 2, 4, 5]);
    assert_eq!(seqs(&store.read_correlated("AB").expect("AB")), [3]);
    assert!(store.read_correlated("nobody").expect("none").is_empty());
    let report = store.verify().expect("the log verifies");
    assert_eq!((report.records, report.streams), (5, 2));
}

#[tokio::test]
async fn a_correlation_reads_its_own_stream_and_its_records_on_other_streams_in_log_order() {
    // Given order X's events on its own stream (found through the stream index) and on an
    // entity stream (found through a correlation key), interleaved with order Y's
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = open_store(dir.path());
    let mut mixed = appending("X", "order-X", 0, vec![event("Reserved", b"x1")]);
    mixed
        .appends
        .push(append("sku-1", 0, vec![event("Taken", b"x2")]));
    commit(&store, mixed).await;
    commit(
        &store,
        appending("Y", "sku-1", 1, vec![event("Taken", b"y1")]),
    )
    .await;
    commit(
        &store,
        appending("X", "order-X", 1, vec![event("Restored", b"x3")]),
    )
    .await;
    commit(
        &store,
        appending("X", "sku-1", 2, vec![event("Returned", b"x4")]),
    )
    .await;

    // When X's records are read / Then every one comes once, in log order, and none of Y's
    assert_eq!(seqs(&store.read_correlated("X").expect("X")), [1, 2, 4, 5]);
    assert_eq!(seqs(&store.read_correlated("Y").expect("Y")), [3]);
    // And stream versions are derived from the index alone
    assert_eq!(store.stream_version("sku-1").expect("reads"), 3);
    assert_eq!(store.stream_version("order-X").expect("reads"), 2);
    assert_eq!(store.stream_version("order-Z").expect("reads"), 0);
    store.verify().expect("the log verifies");
}

#[tokio::test]
async fn an_append_with_a_stale_expected_version_is_a_conflict_and_writes_nothing() {
    // Given a stream at version 2 and one outbox entry waiting
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = open_store(dir.path());
    let order = Uuid::new_v4();
    commit(
        &store,
        Commit {
            meta: meta_for("o1"),
            appends: vec![append(
                "order-1",
                0,
                vec![event("OrderPlaced", b"1"), event("PaymentApproved", b"2")],
            )],
            outbox: vec![placed_entry(order)],
            ..Commit::default()
        },
    )
    .await;

    // When a commit appends to a fresh stream and to that stream at version 1
    let outcome = store
        .commit(Commit {
            meta: meta_for("o1"),
            appends: vec![
                append("order-fresh", 0, vec![event("OrderPlaced", b"x")]),
                append("order-1", 1, vec![event("OrderFailed", b"3")]),
            ],
            dedup_key: Some("o1/order/fail".into()),
            outbox: vec![placed_entry(Uuid::new_v4())],
            ..Commit::default()
        })
        .await;

    // Then it is a version conflict naming the stream and both versions
    match outcome {
        Err(Error::VersionConflict {
            stream,
            expected,
            actual,
        }) => assert_eq!((stream.as_str(), expected, actual), ("order-1", 1, 2)),
        other => panic!("expected a version conflict, got {other:?}"),
    }
    // And nothing of it was written: no event, no stream, no dedup record, no outbox entry
    assert_eq!(store.head(), 2);
    assert_eq!(read_all(&store, 1, ReplayBound::default()), [1, 2]);
    assert_eq!(store.stream_version("order-1").expect("version"), 2);
    assert_eq!(store.stream_version("order-fresh").expect("version"), 0);
    assert!(store.read_stream("order-fresh").expect("reads").is_empty());
    assert!(store.dedup("o1/order/fail").expect("dedup reads").is_none());
    assert_eq!(store.outbox_len(), 1);
    // And the next append at the right version continues the log without a gap
    let next = commit(
        &store,
        appending("o1", "order-1", 2, vec![event("OrderFailed", b"3")]),
    )
    .await;
    assert_eq!(next, (3, 3));
    assert_eq!(store.verify().expect("the log verifies").records, 3);
}

#[tokio::test]
async fn of_two_concurrent_appends_at_the_same_version_exactly_one_wins() {
    // Given an empty stream
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = open_store(dir.path());
    let at_zero =
        |payload: &[u8]| appending("race", "order-race", 0, vec![event("OrderPlaced", payload)]);

    // When two appends both expecting version 0 are queued together
    let left = store.enqueue(at_zero(b"left")).await.expect("queued");
    let right = store.enqueue(at_zero(b"right")).await.expect("queued");
    let (left, right) = tokio::join!(left, right);

    // Then the first queued wins and the other is a conflict
    assert_eq!(
        left.expect("the first append wins"),
        CommitOutcome::Committed {
            first_seq: 1,
            last_seq: 1
        }
    );
    assert!(matches!(
        right,
        Err(Error::VersionConflict {
            expected: 0,
            actual: 1,
            ..
        })
    ));
    let stream = store.read_stream("order-race").expect("reads");
    assert_eq!(stream.len(), 1);
    assert_eq!(stream[0].payload, b"left");
}

#[tokio::test]
async fn a_commit_whose_dedup_key_exists_is_a_duplicate_with_the_recorded_outbox_and_writes_nothing(
) {
    // Given an input that was handled: one event, its dedup key and one outbox entry
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = open_store(dir.path());
    let order = Uuid::new_v4();
    let original = handler_commit(order);
    let key = original.dedup_key.clone().expect("a dedup key");
    assert_eq!(commit(&store, original.clone()).await, (1, 1));
    let recorded = store
        .dedup(&key)
        .expect("reads")
        .expect("the key is recorded");

    // When the same commit is retried (its expected version now stale)
    let retried = store.commit(original.clone()).await;
    // And a different decision for the same input is committed at the current version
    let other_entry = placed_entry(Uuid::new_v4());
    let redecided = store
        .commit(Commit {
            meta: meta_for("other"),
            appends: vec![append(
                &format!("order-{order}"),
                1,
                vec![event("OrderFailed", b"no")],
            )],
            dedup_key: Some(key.clone()),
            outbox: vec![other_entry],
            ..Commit::default()
        })
        .await;

    // Then both are duplicates carrying what the first handling produced
    for outcome in [retried, redecided] {
        match outcome.expect("a duplicate is not an error") {
            CommitOutcome::Duplicate(record) => {
                assert_eq!(record, recorded);
                assert_eq!(record.outbox, original.outbox);
                assert_eq!(record.global_seq, 1);
            }
            other => panic!("expected a duplicate, got {other:?}"),
        }
    }
    // And nothing new was written
    assert_eq!(store.head(), 1);
    assert_eq!(
        store.stream_version(&format!("order-{order}")).expect("v"),
        1
    );
    assert_eq!(store.outbox_len(), 1);
    assert!(store.read_correlated("other").expect("reads").is_empty());
    let report = store.verify().expect("the log verifies");
    assert_eq!(
        (report.records, report.dedup_records, report.outbox_pending),
        (1, 1, 1)
    );
}

#[tokio::test]
async fn two_commits_of_one_input_in_the_same_batch_apply_once() {
    // Given an empty store
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = open_store(dir.path());
    let order = Uuid::new_v4();
    let mut second = handler_commit(Uuid::new_v4());
    second.dedup_key = handler_commit(order).dedup_key;

    // When two commits with the same dedup key are queued back to back
    let first = store.enqueue(handler_commit(order)).await.expect("queued");
    let second = store.enqueue(second).await.expect("queued");
    let (first, second) = tokio::join!(first, second);

    // Then the first applies and the second is its duplicate
    assert!(matches!(
        first.expect("applied"),
        CommitOutcome::Committed { last_seq: 1, .. }
    ));
    match second.expect("a duplicate") {
        CommitOutcome::Duplicate(record) => {
            let ids: Vec<&str> = record.outbox.iter().map(|m| m.msg_id.as_str()).collect();
            assert_eq!(ids, [placed_msg_id(order).as_str()]);
        }
        other => panic!("expected a duplicate, got {other:?}"),
    }
    assert_eq!((store.head(), store.outbox_len()), (1, 1));
}

/// Environment variable that turns [`crash_child_commits_then_hangs`] on, naming its store dir.
const CHILD_DIR_ENV: &str = "STORE_CHILD_DIR";
/// Prefix of the child's line announcing the last acknowledged global seq.
const ACKED_PREFIX: &str = "ACKED_LAST_SEQ=";
/// Commits the child makes (and has acknowledged) before it is killed.
const CHILD_COMMITS: u128 = 512;
/// Tasks the child commits from, so its commits share group flushes.
const CHILD_TASKS: u128 = 32;
/// The helper's test name, as the child's test filter.
const CHILD_TEST: &str = "crash_child_commits_then_hangs";

/// The deterministic order of the child's i-th commit, so the parent knows what to look for.
fn child_order(i: u128) -> Uuid {
    Uuid::from_u128(0x00C0_FFEE_0000 + i)
}

/// Not a test on its own: the child process of
/// [`an_append_that_returned_survives_a_sigkill_of_its_process`]. It commits, prints the last
/// acknowledged global seq, then hangs until killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "helper: only acts when re-executed with STORE_CHILD_DIR set"]
async fn crash_child_commits_then_hangs() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
        return;
    };
    let store = open_store(Path::new(&dir));
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..CHILD_TASKS {
        let store = store.clone();
        tasks.spawn(async move {
            let mut last = 0;
            for i in (task..CHILD_COMMITS).step_by(CHILD_TASKS as usize) {
                let mut commit = handler_commit(child_order(i));
                commit.appends[0].events[0].payload = i.to_be_bytes().to_vec();
                match store.commit(commit).await.expect("the child's commit") {
                    CommitOutcome::Committed { last_seq, .. } => last = last.max(last_seq),
                    CommitOutcome::Duplicate(_) => panic!("fresh inputs are not duplicates"),
                }
            }
            last
        });
    }
    let mut last = 0;
    while let Some(result) = tasks.join_next().await {
        last = last.max(result.expect("a child task"));
    }
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "\n{ACKED_PREFIX}{last}").expect("stdout");
    stdout.flush().expect("stdout");
    drop(stdout);
    std::future::pending::<()>().await;
}

/// Kills the child if the parent test fails before it does.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn an_append_that_returned_survives_a_sigkill_of_its_process() {
    // Given a child process that committed and acknowledged some events, then hangs
    let dir = tempfile::tempdir().expect("a temp dir");
    let child = spawn_child_test(CHILD_TEST, CHILD_DIR_ENV, dir.path());
    let mut child = KillOnDrop(child);
    let stdout = child.0.stdout.take().expect("piped stdout");
    let acked: u64 = BufReader::new(stdout)
        .lines()
        .map(|line| line.expect("child stdout"))
        // libtest may print "test <name> ... " on the same line before the test's output.
        .find_map(|line| {
            line.split_once(ACKED_PREFIX)
                .map(|(_, seq)| seq.trim().to_owned())
        })
        .expect("the child announced its last acknowledged seq before exiting")
        .parse()
        .expect("a global seq");

    // When it is SIGKILLed (no clean shutdown, no final flush) and the dir is reopened
    child.0.kill().expect("SIGKILL the child");
    let status = child.0.wait().expect("the child is reaped");
    assert!(!status.success(), "the child was killed, not finished");
    let store = open_store(dir.path());

    // Then every acknowledged event is there, with its dedup record and outbox entry
    assert_eq!(acked, CHILD_COMMITS as u64);
    assert!(store.head() >= acked);
    let bound = ReplayBound {
        upto_seq: Some(acked),
        upto_time_ms: None,
    };
    assert_eq!(read_all(&store, 1, bound), (1..=acked).collect::<Vec<_>>());
    for i in 0..CHILD_COMMITS {
        let order = child_order(i);
        let records = store.read_stream(&format!("order-{order}")).expect("reads");
        assert_eq!(records.len(), 1, "order {i} has its event");
        assert_eq!(records[0].payload, i.to_be_bytes());
        assert_eq!(records[0].meta.correlation_id, order.to_string());
        let key = handler_commit(order).dedup_key.expect("a dedup key");
        assert!(
            store.dedup(&key).expect("reads").is_some(),
            "order {i} is deduped"
        );
    }
    assert_eq!(store.outbox_len(), CHILD_COMMITS as usize);
    // And the log is intact
    let report = store.verify().expect("the reopened log verifies");
    assert_eq!(report.records, acked);
    assert_eq!(report.dedup_records, CHILD_COMMITS as u64);
}

#[tokio::test]
async fn verify_names_the_record_whose_byte_was_flipped() {
    // Given a log of ten records that verifies
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = open_store(dir.path());
    for i in 0..10u64 {
        commit(
            &store,
            appending(
                "chain",
                "order-chain",
                i,
                vec![event("Tick", &i.to_be_bytes())],
            ),
        )
        .await;
    }
    assert_eq!(store.verify().expect("intact").records, 10);

    // When one byte of record 6 is flipped, wherever it is (body or stored hash)
    for byte in [0, 1, 17, 40, usize::MAX] {
        store.corrupt_record_for_test(6, byte).expect("flip");

        // Then verify reports corruption at seq 6
        match store.verify() {
            Err(Error::Corrupt { seq: 6, .. }) => {}
            other => panic!("byte {byte}: expected corruption at 6, got {other:?}"),
        }
        // And reading that record fails, naming it, while its neighbours still read
        assert!(matches!(store.get(6), Err(Error::Corrupt { seq: 6, .. })));
        assert!(store.read_stream("order-chain").is_err());
        assert_eq!(store.get(5).expect("record 5").stream_seq, 5);
        assert_eq!(store.get(7).expect("record 7").stream_seq, 7);
        let replay: Vec<_> = store.read_all(1, ReplayBound::default()).collect();
        assert!(matches!(replay[5], Err(Error::Corrupt { seq: 6, .. })));
        // And the fold's read (hash-checked on its read-ahead thread) stops there
        let mut folded = 0;
        let fold = store.for_each_record(1, ReplayBound::default(), |_| {
            folded += 1;
            Ok(())
        });
        assert!(
            matches!(fold, Err(Error::Corrupt { seq: 6, .. })),
            "{fold:?}"
        );
        assert_eq!(folded, 5);

        // And flipping it back restores a log that verifies
        store.corrupt_record_for_test(6, byte).expect("flip back");
        assert_eq!(store.verify().expect("restored").records, 10);
    }
}
