//! Throughput of the store: commits per second with group commit against one flush per commit,
//! and the outbox relay's publish rate to a local nats-server.
//!
//! Run: `cargo bench -p store --features test-util --bench throughput`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{broker, fill_outbox, handler_commit, stream_count, temp_store};
use contract::ORDER_STREAM;
use eventlog::{CommitOutcome, EventStore, FlushPolicy, StoreConfig};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Tasks committing at once, like a consumer's lanes and HTTP handlers together.
const CONCURRENT_TASKS: usize = 256;
/// Commits measured with group commit.
const GROUP_COMMITS: usize = 20_000;
/// Commits measured with one flush per commit (slow: one fsync each).
const EVERY_COMMIT_COMMITS: usize = 1_000;
/// Outbox entries the relay publishes.
const RELAY_ENTRIES: usize = 20_000;
/// Entries per commit when filling the outbox for the relay figure.
const RELAY_FILL_PER_COMMIT: usize = 500;
/// Longest the relay figure may take before the benchmark gives up.
const RELAY_DEADLINE: Duration = Duration::from_secs(300);

struct Figure {
    name: &'static str,
    ops: usize,
    elapsed: Duration,
    p50: Option<Duration>,
    p99: Option<Duration>,
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let figures = runtime.block_on(async {
        vec![
            commits(
                "commit, GroupCommit",
                FlushPolicy::GroupCommit,
                GROUP_COMMITS,
            )
            .await,
            commits(
                "commit, EveryCommit",
                FlushPolicy::EveryCommit,
                EVERY_COMMIT_COMMITS,
            )
            .await,
            relay(RELAY_ENTRIES).await,
        ]
    });
    print_table(&figures);
}

/// `total` handler-shaped commits (one event, one outbox entry, a dedup key) from
/// [`CONCURRENT_TASKS`] tasks.
async fn commits(name: &'static str, flush: FlushPolicy, total: usize) -> Figure {
    let dir = tempfile::tempdir().expect("a temp dir");
    let store =
        EventStore::open(StoreConfig::new(dir.path()).with_flush(flush)).expect("the store opens");
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..CONCURRENT_TASKS {
        let store = store.clone();
        let mine = total / CONCURRENT_TASKS + usize::from(task < total % CONCURRENT_TASKS);
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(mine);
            for _ in 0..mine {
                let commit = handler_commit(Uuid::new_v4());
                let at = Instant::now();
                let outcome = store.commit(commit).await.expect("the commit is durable");
                latencies.push(at.elapsed());
                assert!(matches!(outcome, CommitOutcome::Committed { .. }));
            }
            latencies
        });
    }
    let mut latencies = Vec::with_capacity(total);
    while let Some(done) = tasks.join_next().await {
        latencies.extend(done.expect("a committing task"));
    }
    let elapsed = started.elapsed();
    assert_eq!(store.head(), total as u64);
    assert_eq!(store.outbox_len(), total);
    latencies.sort();
    Figure {
        name,
        ops: total,
        elapsed,
        p50: Some(latencies[latencies.len() / 2]),
        p99: Some(latencies[latencies.len() * 99 / 100]),
    }
}

/// Publishes `total` durable outbox entries through the relay, timed until the outbox is empty.
async fn relay(total: usize) -> Figure {
    let (_server, js) = broker().await;
    let (_dir, store) = temp_store();
    fill_outbox(&store, total, RELAY_FILL_PER_COMMIT).await;

    let token = CancellationToken::new();
    let started = Instant::now();
    let relay = tokio::spawn(bus::outbox::run_relay(
        store.clone(),
        js.clone(),
        token.clone(),
    ));
    while store.outbox_len() > 0 {
        assert!(started.elapsed() < RELAY_DEADLINE, "the relay stalled");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = started.elapsed();
    token.cancel();
    relay
        .await
        .expect("the relay joins")
        .expect("the relay stops cleanly");
    assert_eq!(stream_count(&js, ORDER_STREAM).await, total as u64);
    Figure {
        name: "relay publish (acked)",
        ops: total,
        elapsed,
        p50: None,
        p99: None,
    }
}

fn print_table(figures: &[Figure]) {
    let ms = |d: Option<Duration>| {
        d.map_or_else(
            || "-".to_owned(),
            |d| format!("{:.2}", d.as_secs_f64() * 1e3),
        )
    };
    println!();
    println!(
        "{:<24} {:>8} {:>10} {:>12} {:>10} {:>10}",
        "scenario", "ops", "seconds", "ops/s", "p50 ms", "p99 ms"
    );
    for f in figures {
        println!(
            "{:<24} {:>8} {:>10.3} {:>12.0} {:>10} {:>10}",
            f.name,
            f.ops,
            f.elapsed.as_secs_f64(),
            f.ops as f64 / f.elapsed.as_secs_f64(),
            ms(f.p50),
            ms(f.p99)
        );
    }
    println!("({CONCURRENT_TASKS} concurrent committing tasks; one event + one outbox entry + a dedup key per commit)");
}
