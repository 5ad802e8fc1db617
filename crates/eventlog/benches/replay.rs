//! Replay and verify speed: events per second folded from a sled log from scratch, from a
//! snapshot near its end, and checked by `verify` (fold from seq 1 plus snapshot comparison).
//!
//! Run: `cargo bench -p eventlog --features test-util --bench replay`
//! (`REPLAY_BENCH_EVENTS` sets the log's size, default 500,000).

#[allow(dead_code)]
#[path = "../tests/common/counter.rs"]
mod counter;

use std::time::{Duration, Instant};

use counter::{CountEvent, Counter};
use eventlog::event_store::{EventStore, ReplayBound, StoreConfig};
use eventlog::live::{self, Live};
use eventlog::testing_hooks::env_number;
use eventlog::{snapshot, Commit, NewEvent, StreamAppend};

/// The services' allocator (servicekit::alloc), so the figures are those of `replay`/`verify`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Events in the log unless `REPLAY_BENCH_EVENTS` says otherwise.
const DEFAULT_EVENTS: u64 = 500_000;
/// Events per commit while filling the log (filling is not measured).
const EVENTS_PER_COMMIT: u64 = 1_000;
/// Distinct keys of the state (its size).
const KEYS: u64 = 10_000;

fn rate(events: u64, elapsed: Duration) -> String {
    format!(
        "{:>12.0} events/s ({events} events in {:.2?})",
        events as f64 / elapsed.as_secs_f64(),
        elapsed
    )
}

fn main() {
    let total = env_number("REPLAY_BENCH_EVENTS").unwrap_or(DEFAULT_EVENTS);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let dir = tempfile::tempdir().expect("a temp dir");
    let cache_mb =
        env_number("REPLAY_BENCH_CACHE_MB").unwrap_or(eventlog::event_store::DEFAULT_SLED_CACHE_MB);
    let store = EventStore::open(StoreConfig {
        cache_capacity_bytes: cache_mb * 1024 * 1024,
        ..StoreConfig::new(dir.path())
    })
    .expect("the store opens");
    runtime.block_on(async {
        let mut written = 0;
        let mut commit_no = 0u64;
        while written < total {
            let n = EVENTS_PER_COMMIT.min(total - written);
            let events = (0..n)
                .map(|i| NewEvent {
                    event_type: "Added".into(),
                    schema_version: 1,
                    payload: postcard::to_stdvec(&CountEvent::Added {
                        key: format!("k{}", (written + i) % KEYS),
                        n: 1,
                    })
                    .expect("encodes"),
                })
                .collect();
            store
                .commit(Commit {
                    appends: vec![StreamAppend {
                        stream: format!("batch-{commit_no}"),
                        expected_version: 0,
                        events,
                    }],
                    ..Commit::default()
                })
                .await
                .expect("commits");
            written += n;
            commit_no += 1;
        }
    });
    println!("log: {total} events, {KEYS} keys of state, sled cache {cache_mb} MiB");

    let fold_from_scratch = |pass: &str| {
        let started = Instant::now();
        let folded =
            live::rebuild_from_scratch::<Counter>(&store, ReplayBound::default()).expect("folds");
        println!(
            "replay from seq 1 ({pass}):  {}",
            rate(folded.folded, started.elapsed())
        );
        folded
    };
    let scratch = fold_from_scratch("1st");
    assert_eq!(scratch.state.total, total);
    // The second pass reads through a warm cache.
    fold_from_scratch("2nd");

    // A snapshot 90% of the way in, as a service that snapshots regularly would have.
    let at = total * 9 / 10;
    let bound = ReplayBound {
        upto_seq: Some(at),
        upto_time_ms: None,
    };
    let upto = live::rebuild_from_scratch::<Counter>(&store, bound).expect("folds");
    let started = Instant::now();
    snapshot::write::<Counter>(&store, at, &upto.state, 2).expect("written");
    println!("snapshot write ({} keys): {:.2?}", KEYS, started.elapsed());

    let started = Instant::now();
    let rebuilt = live::rebuild_report::<Counter>(&store, ReplayBound::default()).expect("folds");
    println!(
        "open from snapshot:       {} folded after seq {:?} in {:.2?}",
        rebuilt.folded,
        rebuilt.snapshot_seq,
        started.elapsed()
    );
    assert_eq!(rebuilt.state, scratch.state);

    let started = Instant::now();
    let report = store.verify().expect("the log verifies");
    println!(
        "verify log (chain, index):{}",
        rate(report.records, started.elapsed())
    );
    let started = Instant::now();
    let (_, checks, folded) = snapshot::verify_all::<Counter>(&store).expect("verifies");
    println!(
        "`verify` (all of it):     {}",
        rate(folded, started.elapsed())
    );
    assert!(checks
        .iter()
        .all(|c| c.verdict == snapshot::Verdict::Matches));

    let started = Instant::now();
    let live = Live::<Counter>::open(store.clone()).expect("opens");
    println!("Live::open:               {:.2?}", started.elapsed());
    drop(live);
}
