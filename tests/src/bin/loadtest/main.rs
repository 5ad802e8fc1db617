//! `loadtest`: the saga's throughput and latency, measured against the release binaries.
//!
//! Starts nats-server (free port, temp store) and the five services as child processes, seeds
//! them through the admin API, drives `POST /orders?wait=10s` with the saga-5 mix in a closed
//! loop (N connections for D seconds) and at a fixed rate (latency from the intended send time),
//! reports orders/s, latency percentiles, CPU-ms per order and RSS of every process, checks that
//! every order ended COMPLETED or FAILED and that `audit` finds nothing, and runs the bare
//! JetStream skeleton of the same message pattern for the ratio. `scripts/bench.sh` builds and
//! runs it; see the README's Performance section.

mod history;
mod procstat;
mod skeleton;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use e2e::procs::{ProcOptions, ProcSystem};
use e2e::ADMIN_TOKEN;
use futures::StreamExt;
use serde_json::{json, Value};

use procstat::CpuSnapshot;

/// How long the run waits for the last orders to become terminal.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Points of a normal order; a rejected one asks for more than any balance.
const POINTS_PER_ORDER: u64 = 10;
/// Every user's starting balance.
const CREDIT_PER_USER: u64 = 100_000_000;
/// Points of an order meant to be rejected by the point service (above every balance).
const POINTS_REJECTED: u64 = 1_000_000_000;
/// Every SKU's stock.
const STOCK_PER_SKU: u64 = 1_000_000_000;
/// Most requests the fixed-rate generator keeps open at once.
const FIXED_RATE_MAX_IN_FLIGHT: usize = 4_096;
/// Attempts of one seed request that keeps getting 429.
const SEED_ATTEMPTS_MAX: u32 = 100;
/// Pause before a rate-limited seed request is sent again.
const SEED_RETRY_PAUSE_MS: u64 = 50;

/// Load test of the order saga against the release binaries (127.0.0.1 only).
#[derive(Debug, Parser)]
#[command(name = "loadtest")]
struct Args {
    /// Concurrent connections of the closed loop.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Closed-loop duration (0s skips it).
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    closed: Duration,
    /// Fixed-rate duration (0s skips it).
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    fixed: Duration,
    /// Fixed rate in orders/s (default: half the closed-loop rate, or 200 without one).
    #[arg(long)]
    rate: Option<f64>,
    /// Skeleton duration (0s skips it).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    skeleton: Duration,
    /// Warm-up before the measured phases (not counted).
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// SKUs restocked.
    #[arg(long, default_value_t = 1_000)]
    skus: u64,
    /// Users credited.
    #[arg(long, default_value_t = 10_000)]
    users: u64,
    /// Coupons issued.
    #[arg(long, default_value_t = 50_000)]
    coupons: u64,
    /// Concurrent admin requests while seeding.
    #[arg(long, default_value_t = 64)]
    seed_concurrency: usize,
    /// Saga deadline of the order service.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    saga_deadline: Duration,
    /// Keep the data dirs and logs afterwards (the path is printed).
    #[arg(long)]
    keep: bool,
    /// Instead of the timed phases: place this many orders and measure, at checkpoints, what
    /// history costs each service (RSS, disk, restart, verify/replay, query latency).
    #[arg(long)]
    history: Option<u64>,
    /// Where `--history` writes its table, CSV and SVG.
    #[arg(long, default_value = "target/history-bench")]
    report: PathBuf,
}

/// What kind of order the mix picked.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Plain,
    Coupon,
    PointsRejected,
}

/// The saga-5 mix: 1-3 lines, 20% with a coupon, 10% rejected by points (then compensated).
struct Mix {
    skus: u64,
    users: u64,
    coupons: u64,
    next_coupon: AtomicU64,
}

impl Mix {
    fn order(&self, n: u64) -> (Kind, Value) {
        let r = splitmix(n);
        let kind = match r % 10 {
            0 => Kind::PointsRejected,
            1 | 2 => Kind::Coupon,
            _ => Kind::Plain,
        };
        let lines = 1 + (r >> 8) % 3;
        let mut amount = 0;
        let items: Vec<Value> = (0..lines)
            .map(|i| {
                let sku = (r >> (16 + 10 * i)) % self.skus;
                let qty = 1 + (r >> (12 + i)) % 3;
                let price = 100 + sku;
                amount += qty * price;
                json!({"sku": format!("sku-{sku}"), "qty": qty, "price": price})
            })
            .collect();
        let coupon = match kind {
            Kind::Coupon => {
                let c = self.next_coupon.fetch_add(1, Ordering::Relaxed) % self.coupons;
                Some(format!("coupon-{c}"))
            }
            _ => None,
        };
        let points = match kind {
            Kind::PointsRejected => POINTS_REJECTED,
            _ => POINTS_PER_ORDER,
        };
        let body = json!({
            "userId": format!("user-{}", (r >> 40) % self.users),
            "items": items,
            "couponId": coupon,
            "points": points,
            "amount": amount,
        });
        (kind, body)
    }
}

/// A fixed pseudo-random spread of `n` (splitmix64), so runs place the same mix.
fn splitmix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Outcomes of one measured phase.
#[derive(Debug, Default)]
struct Phase {
    latencies_us: Vec<u64>,
    completed: u64,
    failed: u64,
    waited_out: u64,
    errors: u64,
    elapsed: Duration,
}

impl Phase {
    fn merge(&mut self, other: Phase) {
        self.latencies_us.extend(other.latencies_us);
        self.completed += other.completed;
        self.failed += other.failed;
        self.waited_out += other.waited_out;
        self.errors += other.errors;
    }

    fn terminal(&self) -> u64 {
        self.completed + self.failed
    }

    fn record(&mut self, latency: Duration, reply: Result<(u16, Value), reqwest::Error>) {
        match reply {
            Ok((200, body)) => {
                self.latencies_us.push(latency.as_micros() as u64);
                match body["status"].as_str() {
                    Some("COMPLETED") => self.completed += 1,
                    _ => self.failed += 1,
                }
            }
            Ok((202, _)) => self.waited_out += 1,
            _ => self.errors += 1,
        }
    }
}

/// A percentile of sorted microseconds, in milliseconds.
fn percentile_ms(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1_000.0
}

fn latency_line(latencies_us: &mut [u64]) -> String {
    latencies_us.sort_unstable();
    format!(
        "p50 {:.1} ms  p99 {:.1} ms  p999 {:.1} ms  max {:.1} ms",
        percentile_ms(latencies_us, 50.0),
        percentile_ms(latencies_us, 99.0),
        percentile_ms(latencies_us, 99.9),
        percentile_ms(latencies_us, 100.0),
    )
}

/// Where the load phases send orders, and the mix they draw them from.
#[derive(Clone)]
struct Load {
    http: reqwest::Client,
    url: String,
    mix: Arc<Mix>,
    /// Orders drawn so far, across phases.
    counter: Arc<AtomicU64>,
}

impl Load {
    /// Places the mix's next order: the reply's status and body.
    async fn place_next(&self) -> Result<(u16, Value), reqwest::Error> {
        self.place(self.counter.fetch_add(1, Ordering::Relaxed))
            .await
    }

    /// Places the mix's order number `n`: the reply's status and body.
    async fn place(&self, n: u64) -> Result<(u16, Value), reqwest::Error> {
        let (_, body) = self.mix.order(n);
        e2e::send_json(self.http.post(&self.url).json(&body)).await
    }
}

/// When a closed loop stops.
#[derive(Debug, Clone, Copy)]
enum Until {
    /// At this time.
    Time(Instant),
    /// Once this many orders have been numbered (across phases).
    Orders(u64),
}

/// `connections` loops, each placing its next order once the previous one answered.
async fn closed_loop(load: &Load, connections: usize, until: Until) -> Phase {
    let started = Instant::now();
    let mut loops = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let load = load.clone();
        loops.spawn(async move {
            let mut phase = Phase::default();
            loop {
                let n = match until {
                    Until::Time(end) if Instant::now() >= end => break,
                    Until::Time(_) => load.counter.fetch_add(1, Ordering::Relaxed),
                    Until::Orders(last) => {
                        let n = load.counter.fetch_add(1, Ordering::Relaxed);
                        if n >= last {
                            // Handed back: the next phase numbers from here.
                            load.counter.fetch_sub(1, Ordering::Relaxed);
                            break;
                        }
                        n
                    }
                };
                let sent = Instant::now();
                let reply = load.place(n).await;
                phase.record(sent.elapsed(), reply);
            }
            phase
        });
    }
    let mut total = Phase::default();
    while let Some(joined) = loops.join_next().await {
        total.merge(joined.expect("a load loop"));
    }
    total.elapsed = started.elapsed();
    total
}

/// Orders sent on a fixed schedule; latency counts from when each was due, so a stalled
/// server is charged for the orders it delayed (no coordinated omission).
async fn fixed_rate(load: &Load, rate: f64, duration: Duration) -> Phase {
    let started = tokio::time::Instant::now();
    let total_orders = (rate * duration.as_secs_f64()).round() as u64;
    let slots = Arc::new(tokio::sync::Semaphore::new(FIXED_RATE_MAX_IN_FLIGHT));
    let mut total = Phase::default();
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..total_orders {
        let due = started + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due).await;
        let permit = slots.clone().acquire_owned().await.expect("semaphore open");
        let load = load.clone();
        sends.spawn(async move {
            let _permit = permit;
            let mut phase = Phase::default();
            let reply = load.place_next().await;
            phase.record(due.elapsed(), reply);
            phase
        });
        // Reap finished sends as we go so the set stays small.
        while let Some(done) = sends.try_join_next() {
            total.merge(done.expect("a send"));
        }
    }
    while let Some(joined) = sends.join_next().await {
        total.merge(joined.expect("a send"));
    }
    total.elapsed = started.elapsed();
    total
}

/// Seeds stock, points and coupons through the admin API, `concurrency` requests at a time.
async fn seed(api: &e2e::procs::Api, args: &Args) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut requests: Vec<(&'static str, String, Value)> = Vec::new();
    for s in 0..args.skus {
        requests.push((
            "stock",
            format!("/stock/sku-{s}/restock"),
            json!({"qty": STOCK_PER_SKU}),
        ));
    }
    for u in 0..args.users {
        requests.push((
            "point",
            format!("/points/user-{u}/credit"),
            json!({"points": CREDIT_PER_USER}),
        ));
    }
    for c in 0..args.coupons {
        requests.push((
            "coupon",
            "/coupons".to_owned(),
            json!({"couponId": format!("coupon-{c}"), "userId": null, "discount": 100, "expiresAt": null}),
        ));
    }
    let failures: Vec<String> = futures::stream::iter(requests)
        .map(|(service, path, body)| async move {
            let key = seed_key(&format!("seed:{service}:{path}:{body}"));
            // The services rate-limit HTTP (HTTP_RATE_LIMIT): a 429 is retried after a pause,
            // and the Idempotency-Key makes a retried write apply once.
            let mut last = String::new();
            for _ in 0..SEED_ATTEMPTS_MAX {
                let sent = api
                    .http
                    .post(format!("{}{path}", api.url(service)))
                    .bearer_auth(ADMIN_TOKEN)
                    .header("Idempotency-Key", &key)
                    .json(&body)
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => return None,
                    Ok(r) if r.status().as_u16() == 429 => {
                        last = format!("{service} {path}: HTTP 429");
                        tokio::time::sleep(Duration::from_millis(SEED_RETRY_PAUSE_MS)).await;
                    }
                    Ok(r) => return Some(format!("{service} {path}: HTTP {}", r.status())),
                    Err(e) => return Some(format!("{service} {path}: {e}")),
                }
            }
            Some(last)
        })
        .buffer_unordered(args.seed_concurrency)
        .filter_map(std::future::ready)
        .collect()
        .await;
    if let Some(first) = failures.first() {
        anyhow::bail!("{} seed requests failed, first: {first}", failures.len());
    }
    Ok(started.elapsed())
}

/// A short idempotency key derived from the request (a retried seed is applied once).
fn seed_key(text: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    format!("seed-{:016x}", h.finish())
}

async fn stats(api: &e2e::procs::Api) -> BTreeMap<String, u64> {
    match api.get("order", "/stats").await {
        Ok((200, body)) => body["orders"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default(),
        _ => BTreeMap::new(),
    }
}

/// Per-process CPU-ms per order and RSS after a phase.
fn print_processes(
    before: &CpuSnapshot,
    after: &CpuSnapshot,
    pids: &BTreeMap<String, u32>,
    orders: u64,
    ticks: u64,
) {
    let ms = before.ms_until(after, ticks);
    let orders = orders.max(1) as f64;
    let mut total = 0.0;
    println!(
        "  {:<12} {:>14} {:>10}",
        "process", "CPU-ms/order", "RSS MiB"
    );
    for (name, pid) in pids {
        let used = ms.get(name).copied().unwrap_or(0.0);
        total += used;
        let rss = procstat::rss_kib(*pid).unwrap_or(0) as f64 / 1024.0;
        println!("  {name:<12} {:>14.3} {rss:>10.1}", used / orders);
    }
    println!("  {:<12} {:>14.3}", "total", total / orders);
}

async fn run(args: Args) -> anyhow::Result<bool> {
    let ticks = procstat::ticks_per_sec();
    let options = ProcOptions {
        saga_deadline: args.saga_deadline,
        ..ProcOptions::default()
    };
    println!("starting nats-server and the five services (release binaries)...");
    let mut system = ProcSystem::start(options).await;
    let api = system.api();
    let mut pids = procstat::children_by_name();
    pids.insert("loadgen".to_owned(), std::process::id());
    let seeded = seed(&api, &args).await?;
    println!(
        "seeded {} SKUs, {} users, {} coupons in {:.1} s",
        args.skus,
        args.users,
        args.coupons,
        seeded.as_secs_f64()
    );
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(FIXED_RATE_MAX_IN_FLIGHT)
        .timeout(Duration::from_secs(30))
        .build()?;
    let load = Load {
        http,
        url: format!("{}/orders?wait=10s", api.url("order")),
        mix: Arc::new(Mix {
            skus: args.skus.max(1),
            users: args.users.max(1),
            coupons: args.coupons.max(1),
            next_coupon: AtomicU64::new(0),
        }),
        counter: Arc::new(AtomicU64::new(0)),
    };
    if let Some(orders) = args.history {
        let ok = history::run(&mut system, &load, &args, orders).await?;
        let audited = audit(&mut system).await?;
        if args.keep {
            println!("data and logs kept in {}", system.keep_root().display());
        }
        return Ok(ok && audited);
    }
    let mut placed = 0u64;
    if !args.warmup.is_zero() {
        let w = closed_loop(
            &load,
            args.connections,
            Until::Time(Instant::now() + args.warmup),
        )
        .await;
        placed += w.terminal() + w.waited_out;
        println!(
            "warm-up: {} orders in {:.1} s",
            w.terminal(),
            w.elapsed.as_secs_f64()
        );
    }
    let mut closed_rate = None;
    let mut ok = true;
    if !args.closed.is_zero() {
        let before = CpuSnapshot::take(&pids);
        let mut phase = closed_loop(
            &load,
            args.connections,
            Until::Time(Instant::now() + args.closed),
        )
        .await;
        let after = CpuSnapshot::take(&pids);
        placed += phase.terminal() + phase.waited_out;
        let rate = phase.terminal() as f64 / phase.elapsed.as_secs_f64();
        closed_rate = Some(rate);
        println!(
            "\nclosed loop: {} connections, {:.1} s: {rate:.0} orders/s ({} COMPLETED, {} FAILED, {} still pending at wait end, {} errors)",
            args.connections,
            phase.elapsed.as_secs_f64(),
            phase.completed,
            phase.failed,
            phase.waited_out,
            phase.errors
        );
        println!("  latency: {}", latency_line(&mut phase.latencies_us));
        print_processes(&before, &after, &pids, phase.terminal(), ticks);
        ok &= phase.errors == 0;
    }
    if !args.fixed.is_zero() {
        let rate = args
            .rate
            .or(closed_rate.map(|r| (r / 2.0).max(1.0)))
            .unwrap_or(200.0);
        let before = CpuSnapshot::take(&pids);
        let mut phase = fixed_rate(&load, rate, args.fixed).await;
        let after = CpuSnapshot::take(&pids);
        placed += phase.terminal() + phase.waited_out;
        println!(
            "\nfixed rate: {rate:.0} orders/s offered for {:.1} s: {:.0} orders/s done ({} COMPLETED, {} FAILED, {} still pending at wait end, {} errors)",
            args.fixed.as_secs_f64(),
            phase.terminal() as f64 / phase.elapsed.as_secs_f64(),
            phase.completed,
            phase.failed,
            phase.waited_out,
            phase.errors
        );
        println!(
            "  latency from intended send: {}",
            latency_line(&mut phase.latencies_us)
        );
        print_processes(&before, &after, &pids, phase.terminal(), ticks);
        ok &= phase.errors == 0;
    }

    // Invariants: every order terminal, then the offline audit over the stopped services.
    let settle_until = Instant::now() + SETTLE_TIMEOUT;
    let counts = loop {
        let counts = stats(&api).await;
        let open: u64 = ["PENDING", "COMPENSATING", "NEEDS_ATTENTION"]
            .iter()
            .map(|s| counts.get(*s).copied().unwrap_or(0))
            .sum();
        if open == 0 || Instant::now() >= settle_until {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let terminal =
        counts.get("COMPLETED").copied().unwrap_or(0) + counts.get("FAILED").copied().unwrap_or(0);
    let all: u64 = counts.values().sum();
    let every_terminal = terminal == all && all == placed;
    println!(
        "\ninvariants: {all} orders known, {placed} placed, statuses {counts:?}: {}",
        if every_terminal {
            "every order COMPLETED or FAILED"
        } else {
            "NOT every order is terminal"
        }
    );
    ok &= every_terminal;
    // The data platform gets a completed order after it completed: let the last ones through
    // before the services stop, or the audit rightly reports them as still on their way.
    let completed = counts.get("COMPLETED").copied().unwrap_or(0);
    let feed = system.data_dir("order").join(contract::DATAPLATFORM_FILE);
    while feed_lines(&feed) < completed && Instant::now() < settle_until {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Nothing given up on: under this load every message is one the services can handle.
    let dead_letters = system
        .dead_letters()
        .await
        .map_err(anyhow::Error::from_boxed)?;
    println!("dead-lettered messages: {dead_letters}");
    ok &= dead_letters == 0;
    ok &= audit(&mut system).await?;

    if !args.skeleton.is_zero() {
        let nats_pid = pids.get("nats-server").copied();
        let me = std::process::id();
        let skeleton_pids: BTreeMap<String, u32> = nats_pid
            .map(|p| ("nats-server".to_owned(), p))
            .into_iter()
            .chain([("skeleton".to_owned(), me)])
            .collect();
        let cpu_before = CpuSnapshot::take(&skeleton_pids);
        let mut result = skeleton::run(&system.nats.url(), args.connections, args.skeleton).await?;
        let cpu_after = CpuSnapshot::take(&skeleton_pids);
        let rate = result.orders as f64 / result.elapsed.as_secs_f64();
        println!(
            "\nJetStream skeleton: {} in flight, {:.1} s: {rate:.0} orders/s ({} lost)",
            args.connections,
            result.elapsed.as_secs_f64(),
            result.lost
        );
        println!("  latency: {}", latency_line(&mut result.latencies_us));
        print_processes(
            &cpu_before,
            &cpu_after,
            &skeleton_pids,
            result.orders,
            ticks,
        );
        if let Some(closed) = closed_rate {
            println!(
                "  ratio services/skeleton: {:.3} ({closed:.0} / {rate:.0})",
                closed / rate
            );
        }
    }
    if args.keep {
        println!("data and logs kept in {}", system.keep_root().display());
    }
    Ok(ok)
}

/// Stops every service and runs `audit` over their logs; returns whether it passed.
async fn audit(system: &mut ProcSystem) -> anyhow::Result<bool> {
    let root: PathBuf = system.root().to_path_buf();
    for (service, ended) in system.stop_all().await {
        if !ended.is_some_and(|s| s.success()) {
            println!("  {service} stopped with {ended:?}");
        }
    }
    let audit_bin = std::env::current_exe()?
        .parent()
        .map(|d| d.join("audit"))
        .ok_or_else(|| anyhow::anyhow!("no directory for the audit binary"))?;
    let audit = std::process::Command::new(&audit_bin)
        .arg("--data-root")
        .arg(&root)
        .output()?;
    let audit_text = String::from_utf8_lossy(&audit.stdout);
    println!(
        "audit ({}): {}",
        audit.status,
        audit_text.lines().last().unwrap_or("")
    );
    if !audit.status.success() {
        println!("{audit_text}{}", String::from_utf8_lossy(&audit.stderr));
        return Ok(false);
    }
    Ok(true)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Args::parse()).await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => {
            println!("FAILED: see above");
            std::process::ExitCode::from(1)
        }
        Err(err) => {
            eprintln!("loadtest failed: {err:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Lines in the data platform feed file (one per delivered order; 0 while it does not exist).
fn feed_lines(path: &std::path::Path) -> u64 {
    std::fs::read(path)
        .map(|bytes| bytes.iter().filter(|b| **b == b'\n').count() as u64)
        .unwrap_or(0)
}
