//! `verify` checks the stream index against the records in two passes: every way
//! the index can disagree with the log is named, on a real sled directory.

use eventlog::{Commit, CommitOutcome, EventMeta, EventStore, NewEvent, StoreConfig, StreamAppend};

/// Stream names of both index layouts: an entity stream's index has a key per record, an order's
/// own stream (`order-<id>`) one packed key.
const PREFIXES: [&str; 2] = ["s-", "order-"];

/// A log of three streams (`<prefix>0`, `<prefix>1`, `<prefix>2`) with two events each,
/// interleaved.
async fn log_of_three_streams(dir: &std::path::Path, prefix: &str) -> EventStore {
    let store = EventStore::open(StoreConfig::new(dir)).expect("the store opens");
    for round in 0..2u64 {
        for stream in 0..3u64 {
            let outcome = store
                .commit(Commit {
                    meta: EventMeta {
                        correlation_id: format!("{prefix}{stream}"),
                        ..EventMeta::default()
                    },
                    appends: vec![StreamAppend {
                        stream: format!("{prefix}{stream}"),
                        expected_version: round,
                        events: vec![NewEvent {
                            event_type: "Happened".into(),
                            schema_version: 1,
                            payload: vec![round as u8, stream as u8],
                        }],
                    }],
                    ..Commit::default()
                })
                .await
                .expect("commits");
            assert!(matches!(outcome, CommitOutcome::Committed { .. }));
        }
    }
    store
}

/// What `verify` says of the log of three streams once the index entry of `stream`'s event
/// `version` is tampered with: pointed at record `seq`, or removed (`None`).
async fn verify_error_with_index_entry(
    prefix: &str,
    stream: &str,
    version: u64,
    seq: Option<u64>,
) -> String {
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = log_of_three_streams(dir.path(), prefix).await;
    store
        .tamper_stream_index_for_test(&format!("{prefix}{stream}"), version, seq)
        .expect("tampers");
    match store.verify() {
        Ok(report) => panic!("verify passed a tampered index: {report:?}"),
        Err(err) => err.to_string(),
    }
}

#[tokio::test]
async fn an_intact_log_verifies_with_its_record_and_stream_counts() {
    for prefix in PREFIXES {
        // Given a log of three streams of two events
        let dir = tempfile::tempdir().expect("a temp dir");
        let store = log_of_three_streams(dir.path(), prefix).await;
        // When verified / Then
        let report = store.verify().expect("the log verifies");
        assert_eq!((report.records, report.streams), (6, 3), "{prefix}");
        // ... and each stream reads back whole, in order
        for stream in 0..3u64 {
            let name = format!("{prefix}{stream}");
            let seqs: Vec<u64> = store
                .read_stream(&name)
                .expect("reads")
                .iter()
                .map(|r| r.global_seq)
                .collect();
            assert_eq!(seqs, [stream + 1, stream + 4], "{name}");
            assert_eq!(store.stream_version(&name).expect("a version"), 2);
        }
    }
}

#[tokio::test]
async fn every_way_the_index_can_disagree_with_the_log_is_named() {
    // (the index entry tampered with: stream, event, record it points at or None for removed;
    // what verify names)
    let cases = [
        // 1's first event pointing at 2's first record (seq 3): the two passes' digests differ
        ("1", 1, Some(3), "does not point at exactly the records"),
        // 0's last entry removed: the stream still looks gapless, but a record is unnamed
        ("0", 2, None, "does not point at exactly the records"),
        // 2's first entry removed: the stream then starts at 2
        ("2", 1, None, "2 starts at 2"),
        // an entry for a stream the log never wrote
        ("9", 1, Some(1), "does not point at exactly the records"),
    ];
    for prefix in PREFIXES {
        for (stream, version, seq, named) in cases {
            // Given the log of three streams with that index entry tampered with
            // When verified
            let error = verify_error_with_index_entry(prefix, stream, version, seq).await;
            // Then
            assert!(
                error.contains(named),
                "{prefix}{stream} {version} {seq:?}: {error}"
            );
        }
    }
}

#[tokio::test]
async fn appends_at_the_end_through_a_tiny_stream_cache_keep_every_stream_gapless() {
    for prefix in PREFIXES {
        appends_through_a_tiny_stream_cache(prefix).await;
    }
}

async fn appends_through_a_tiny_stream_cache(prefix: &'static str) {
    // Given a writer that caches 2 stream heads, and 400 appends at the end of 10 streams,
    // queued at once so that groups hold several appends to one stream
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = EventStore::open(StoreConfig {
        stream_cache_entries: 2,
        ..StoreConfig::new(dir.path())
    })
    .expect("the store opens");
    let mut commits = tokio::task::JoinSet::new();
    for i in 0..400u64 {
        let store = store.clone();
        commits.spawn(async move {
            store
                .commit(Commit {
                    appends: vec![StreamAppend {
                        stream: format!("{prefix}{}", i % 10),
                        expected_version: eventlog::ANY_VERSION,
                        events: vec![NewEvent {
                            event_type: "Happened".into(),
                            schema_version: 1,
                            payload: i.to_be_bytes().to_vec(),
                        }],
                    }],
                    ..Commit::default()
                })
                .await
                .expect("commits")
        });
    }
    while let Some(done) = commits.join_next().await {
        done.expect("a commit task");
    }

    // When verified / Then every stream is gapless and its index names exactly its records
    let report = store.verify().expect("the log verifies");
    assert_eq!((report.records, report.streams), (400, 10));
    for stream in 0..10 {
        let seqs: Vec<u64> = store
            .read_stream(&format!("{prefix}{stream}"))
            .expect("reads")
            .iter()
            .map(|r| r.stream_seq)
            .collect();
        assert_eq!(seqs, (1..=40).collect::<Vec<_>>(), "{prefix}{stream}");
    }
}

#[tokio::test]
async fn an_order_stream_indexed_a_key_per_record_by_an_earlier_version_goes_on_packed() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let append = |store: EventStore, version: u64| async move {
        let outcome = store
            .commit(Commit {
                appends: vec![StreamAppend {
                    stream: "order-L".into(),
                    expected_version: version,
                    events: vec![NewEvent {
                        event_type: "Happened".into(),
                        schema_version: 1,
                        payload: vec![version as u8],
                    }],
                }],
                ..Commit::default()
            })
            .await
            .expect("commits");
        assert!(matches!(outcome, CommitOutcome::Committed { .. }));
    };
    // Given an order stream of two records whose index an earlier version wrote, a key each
    let store = EventStore::open(StoreConfig::new(dir.path())).expect("the store opens");
    append(store.clone(), 0).await;
    append(store.clone(), 1).await;
    store
        .unpack_stream_index_for_test("order-L")
        .expect("unpacks");
    drop(store);
    // When two more records are appended after a restart
    let store = EventStore::open(StoreConfig::new(dir.path())).expect("the store reopens");
    assert_eq!(store.stream_version("order-L").expect("a version"), 2);
    append(store.clone(), 2).await;
    append(store.clone(), 3).await;
    // Then the stream reads back whole and in order, its version counts all four, and the
    // index of both layouts verifies
    let seqs: Vec<(u64, u64)> = store
        .read_stream("order-L")
        .expect("reads")
        .iter()
        .map(|r| (r.stream_seq, r.global_seq))
        .collect();
    assert_eq!(seqs, [(1, 1), (2, 2), (3, 3), (4, 4)]);
    assert_eq!(store.stream_version("order-L").expect("a version"), 4);
    let report = store.verify().expect("the log verifies");
    assert_eq!((report.records, report.streams), (4, 1));
}
