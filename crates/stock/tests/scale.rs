//! A shop that ran for years, compressed: `SCALE_ORDERS` orders (default 1,000,000) through the
//! live stock state on a real sled dir, every tenth failed at once and every hundredth failed
//! long after it left memory. Prints the process's resident memory, the snapshot and the restart;
//! asserts only what is exact (memory holds the window, restart == fold from scratch, balances).
//! Ignored by default (minutes): `cargo test --release -p stock --no-default-features --test scale
//! -- --ignored --nocapture`.

use std::time::Instant;

use contract::fixtures::{self, line};
use contract::ledger::OPEN_WINDOW;
use eventlog::live::{self, Execution, Live};
use eventlog::snapshot::SnapshotPolicy;
use eventlog::testing_hooks::env_number;
use eventlog::{EventMeta, EventStore, ReplayBound, StoreConfig};
use stock::domain::{Stock, StockCommand};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

// The services' allocator, so the memory printed is what a service would hold (with the
// `service` feature servicekit, linked in, declares it already).
#[cfg(not(feature = "service"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Concurrent handlers (the consumer's lanes).
const LANES: u64 = 64;
/// Units on the shelf: more than every order takes.
const SHELF: u64 = 1 << 40;

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn run(live: &Live<Stock>, n: u64, action: &str, command: StockCommand) {
    let order_id = Uuid::from_u128(u128::from(n));
    let execution = Execution {
        meta: EventMeta {
            correlation_id: order_id.to_string(),
            ..EventMeta::default()
        },
        dedup_key: Some(format!("{order_id}/stock/{action}")),
    };
    live.execute(execution, command, |_, _| Ok(Vec::new()))
        .await
        .expect("executes")
        .expect("accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "minutes: a million orders"]
async fn a_million_orders_leave_memory_bounded_and_restart_quick() {
    let orders = env_number("SCALE_ORDERS").unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = || {
        let mut config = StoreConfig::new(dir.path());
        if let Some(mb) = env_number("SCALE_SLED_MB") {
            config.cache_capacity_bytes = mb * 1024 * 1024;
        }
        config
    };
    let baseline = rss_mb();
    let live = Live::<Stock>::open(EventStore::open(config()).expect("opens")).expect("opens");
    let opened = rss_mb();
    let shutdown = CancellationToken::new();
    let snapshots = tokio::spawn(
        live.clone()
            .run_snapshots(SnapshotPolicy::default(), shutdown.clone()),
    );
    let execution = Execution {
        meta: EventMeta::default(),
        dedup_key: None,
    };
    live.execute(
        execution,
        StockCommand::Restock {
            sku: "sku-1".into(),
            qty: SHELF,
        },
        |_, _| Ok(Vec::new()),
    )
    .await
    .expect("executes")
    .expect("accepted");

    let started = Instant::now();
    let mut lanes = Vec::new();
    for lane in 0..LANES {
        let live = live.clone();
        lanes.push(tokio::spawn(async move {
            let mut n = lane + 1;
            while n <= orders {
                let placed = contract::OrderPlaced {
                    items: vec![line("sku-1", 1, 100)],
                    ..fixtures::placed(Uuid::from_u128(u128::from(n)))
                };
                run(&live, n, "placed", StockCommand::HandlePlaced { placed }).await;
                let failed_at_once = n % 10 == 0;
                // Fails long after: by now it left memory (twice the window ago).
                let old = n.checked_sub(2 * OPEN_WINDOW).filter(|o| o % 100 == 1);
                if failed_at_once {
                    let order_id = Uuid::from_u128(u128::from(n));
                    run(&live, n, "failed", StockCommand::HandleFailed { order_id }).await;
                }
                if let Some(old) = old {
                    let order_id = Uuid::from_u128(u128::from(old));
                    run(
                        &live,
                        old,
                        "failed",
                        StockCommand::HandleFailed { order_id },
                    )
                    .await;
                }
                n += LANES;
            }
        }));
    }
    for lane in lanes {
        lane.await.expect("lane");
    }
    let elapsed = started.elapsed();
    let state = live.read(Clone::clone).await.expect("reads");
    let rss = rss_mb();
    shutdown.cancel();
    snapshots.await.expect("task").expect("snapshots");
    let snapshot_seq = live.snapshot(2).await.expect("snapshot");
    let snapshot_bytes = snapshot_seq
        .and_then(|seq| live.store().snapshot_bytes(seq).ok().flatten())
        .map_or(0, |b| b.len());
    drop(live);

    let closed = rss_mb();
    let reopening = Instant::now();
    let store = EventStore::open(config()).expect("opens");
    let store_open = reopening.elapsed();
    let reopened = Live::<Stock>::open(store).expect("opens");
    let restart = reopening.elapsed();
    let reopened_rss = rss_mb();
    let restarted = reopened.read(Clone::clone).await.expect("reads");
    let scratch = live::rebuild_from_scratch::<Stock>(reopened.store(), ReplayBound::default())
        .expect("folds")
        .state;
    println!(
        "RSS MB: before open {baseline:.1}, opened {opened:.1}, after the orders {rss:.1}, closed {closed:.1}, reopened {reopened_rss:.1}"
    );
    println!(
        "{orders} orders in {elapsed:?}; RSS {rss:.1} MB; {} entries in memory; snapshot {snapshot_bytes} bytes; restart {restart:?} (of which the store's open {store_open:?}); log head {}",
        state.orders.len(),
        reopened.store().head()
    );

    assert!(restarted == state);
    assert!(scratch == state);
    assert!(state.orders.len() <= usize::try_from(OPEN_WINDOW).expect("fits"));
    let failed = orders / 10 + orders.saturating_sub(2 * OPEN_WINDOW).div_ceil(100);
    assert_eq!(state.available("sku-1"), Some(SHELF - orders + failed));
}
