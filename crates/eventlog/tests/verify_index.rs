//! `verify` checks the stream index against the records in two passes: every way
//! the index can disagree with the log is named, on a real sled directory.

use eventlog::{Commit, CommitOutcome, EventMeta, EventStore, NewEvent, StoreConfig, StreamAppend};

/// A log of three streams (`s-0`, `s-1`, `s-2`) with two events each, interleaved.
async fn log_of_three_streams(dir: &std::path::Path) -> EventStore {
    let store = EventStore::open(StoreConfig::new(dir)).expect("the store opens");
    for round in 0..2u64 {
        for stream in 0..3u64 {
            let outcome = store
                .commit(Commit {
                    meta: EventMeta {
                        correlation_id: format!("s-{stream}"),
                        ..EventMeta::default()
                    },
                    appends: vec![StreamAppend {
                        stream: format!("s-{stream}"),
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
async fn verify_error_with_index_entry(stream: &str, version: u64, seq: Option<u64>) -> String {
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = log_of_three_streams(dir.path()).await;
    store
        .tamper_stream_index_for_test(stream, version, seq)
        .expect("tampers");
    match store.verify() {
        Ok(report) => panic!("verify passed a tampered index: {report:?}"),
        Err(err) => err.to_string(),
    }
}

#[tokio::test]
async fn an_intact_log_verifies_with_its_record_and_stream_counts() {
    // Given a log of three streams of two events
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = log_of_three_streams(dir.path()).await;
    // When verified / Then
    let report = store.verify().expect("the log verifies");
    assert_eq!((report.records, report.streams), (6, 3));
}

#[tokio::test]
async fn every_way_the_index_can_disagree_with_the_log_is_named() {
    // (the index entry tampered with: stream, event, record it points at or None for removed;
    // what verify names)
    let cases = [
        // s-1's first event pointing at s-2's first record (seq 3): the two passes' digests differ
        ("s-1", 1, Some(3), "does not point at exactly the records"),
        // s-0's last entry removed: the stream still looks gapless, but a record is unnamed
        ("s-0", 2, None, "does not point at exactly the records"),
        // s-2's first entry removed: the stream then starts at 2
        ("s-2", 1, None, "stream s-2 starts at 2"),
        // an entry for a stream the log never wrote
        ("s-9", 1, Some(1), "does not point at exactly the records"),
    ];
    for (stream, version, seq, named) in cases {
        // Given the log of three streams with that index entry tampered with
        // When verified
        let error = verify_error_with_index_entry(stream, version, seq).await;
        // Then
        assert!(error.contains(named), "{stream} {version} {seq:?}: {error}");
    }
}

#[tokio::test]
async fn appends_at_the_end_through_a_tiny_stream_cache_keep_every_stream_gapless() {
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
                        stream: format!("s-{}", i % 10),
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
            .read_stream(&format!("s-{stream}"))
            .expect("reads")
            .iter()
            .map(|r| r.stream_seq)
            .collect();
        assert_eq!(seqs, (1..=40).collect::<Vec<_>>(), "s-{stream}");
    }
}
