//! Chaos suite: the five services as real processes under load while a chaos task SIGKILLs and
//! restarts them at random and restarts (or wipes) the broker. Afterwards every order must have
//! settled (COMPLETED and delivered to the data platform, or FAILED) and the offline audit of the
//! five logs must be clean.
//!
//! CI-sized by default; `scripts/chaos.sh` runs it longer. Knobs (environment):
//! `CHAOS_ORDERS` (orders placed, default 300), `CHAOS_SECONDS` (how long the load and the chaos
//! last, default 45), `CHAOS_SEED` (the workload and chaos draws; printed, so a run can be
//! repeated). Needs the service binaries: `cargo build --bins` first.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use audit::{AuditInput, AuditReport};
use bus::retry::{Backoff, RetryPolicy};
use e2e::procs::{Api, ProcOptions, ProcSystem};
use e2e::{AdminWrite, SERVICES};
use futures::StreamExt;
use serde_json::Value;

/// Orders placed when `CHAOS_ORDERS` is not set.
const DEFAULT_ORDERS: usize = 300;
/// Seconds of load and chaos when `CHAOS_SECONDS` is not set.
const DEFAULT_SECONDS: u64 = 45;
/// How long the orders may take to settle once the chaos stopped.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(180);
/// Saga deadline of the order service: short, so chaos makes some sagas expire.
const SAGA_DEADLINE: Duration = Duration::from_secs(5);
/// Attempts at placing one order (same Idempotency-Key) before it counts as not placed.
const PLACE_ATTEMPTS_MAX: u32 = 40;
/// First retry backoff of a placement; doubles per attempt.
const PLACE_BACKOFF_MS_MIN: u64 = 100;
/// Cap of the placement retry backoff.
const PLACE_BACKOFF_MS_MAX: u64 = 2_000;
/// Placements in flight at once.
const LOAD_IN_FLIGHT_MAX: usize = 32;
/// Pause between chaos strikes, in ms (drawn uniformly).
const STRIKE_PAUSE_MS: (u64, u64) = (1_000, 2_000);
/// How long a killed service stays down, in ms (drawn uniformly).
const DOWN_MS: (u64, u64) = (100, 1_500);
/// One strike in this many kills two services at once.
const DOUBLE_KILL_ONE_IN: u64 = 6;
/// Orders shown with their timelines when the saga does not settle.
const TIMELINES_SHOWN_MAX: usize = 10;

/// The simulated PG declines amounts above this (the payment service's default).
const PG_DECLINE_ABOVE: u64 = 1_000_000;
/// Users placing orders.
const USERS: usize = 20;
/// Points every user is credited with.
const POINTS_PER_USER: u64 = 5_000;
/// SKUs with more stock than the run can use.
const PLENTY_SKUS: [&str; 4] = ["apple", "banana", "cherry", "date"];
/// Units of each plentiful SKU.
const PLENTY_QTY: u64 = 1_000_000;
/// SKUs that run out during the run.
const SCARCE_SKUS: [&str; 2] = ["truffle", "saffron"];
/// Units of each scarce SKU.
const SCARCE_QTY: u64 = 8;
/// A quantity no SKU has (the API's largest line quantity).
const TOO_MANY: u64 = 10_000;
/// Coupons used up during seeding, before the chaos.
const PRE_USED_COUPONS: usize = 5;

/// Serialises the tests of this file: two chaos runs at once on two cores would mostly test
/// the machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Service kills, and broker restarts on the same store.
const KILLS_AND_RESTARTS: Scenario = Scenario {
    name: "kills and broker restarts",
    default_seed: 0x00C0_FFEE,
    restarts: Every { min: 3, secs: 15 },
    wipes: Every { min: 0, secs: 0 },
};

/// Service kills, and a broker that now and then loses its whole store.
const KILLS_AND_DATA_LOSS: Scenario = Scenario {
    name: "kills and broker data loss",
    default_seed: 0x0BAD_D15C,
    restarts: Every { min: 1, secs: 30 },
    wipes: Every { min: 1, secs: 120 },
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_settle_and_the_audit_passes_under_kills_and_broker_restarts() {
    run(KILLS_AND_RESTARTS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_settle_and_the_audit_passes_after_the_broker_loses_its_store() {
    run(KILLS_AND_DATA_LOSS).await;
}

/// What happens to the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BrokerFault {
    /// Clean stop and start on the same store.
    Restart,
    /// Crash, store deleted, started empty.
    Wipe,
}

impl BrokerFault {
    /// What the chaos log says while it strikes.
    fn doing(self) -> &'static str {
        match self {
            BrokerFault::Restart => "restarting nats-server",
            BrokerFault::Wipe => "wiping nats-server's store",
        }
    }
}

/// How often a broker fault happens: once per `secs` of the run, at least `min` times
/// (`secs` 0: exactly `min` times).
#[derive(Debug, Clone, Copy)]
struct Every {
    min: u64,
    secs: u64,
}

impl Every {
    fn times(self, run_secs: u64) -> u64 {
        self.min.max(run_secs.checked_div(self.secs).unwrap_or(0))
    }
}

/// One chaos run's settings.
struct Scenario {
    name: &'static str,
    default_seed: u64,
    restarts: Every,
    wipes: Every,
}

impl Scenario {
    /// The broker faults, each at a fraction of the orders placed: restarts spread evenly from
    /// a quarter of the first slot, wipes from the middle of theirs.
    fn broker_faults(&self, run_secs: u64) -> Vec<(f64, BrokerFault)> {
        let spread = |every: Every, offset: f64, fault: BrokerFault| {
            let n = every.times(run_secs);
            (0..n).map(move |k| ((k as f64 + offset) / n as f64, fault))
        };
        let mut faults: Vec<_> = spread(self.restarts, 0.25, BrokerFault::Restart)
            .chain(spread(self.wipes, 0.5, BrokerFault::Wipe))
            .collect();
        faults.sort_by(|a, b| a.0.total_cmp(&b.0));
        faults
    }
}

async fn run(scenario: Scenario) {
    let _serial = SERIAL.lock().await;
    let orders: usize = env_or("CHAOS_ORDERS", DEFAULT_ORDERS);
    let seconds: u64 = env_or("CHAOS_SECONDS", DEFAULT_SECONDS);
    let seed: u64 = env_or("CHAOS_SEED", scenario.default_seed);
    println!(
        "chaos [{}]: {orders} orders over {seconds}s, seed {seed} (repeat with CHAOS_SEED={seed})",
        scenario.name
    );

    // Given: the system as processes, seeded with stock, coupons and points
    let system = ProcSystem::start(ProcOptions {
        saga_deadline: SAGA_DEADLINE,
        pg_decline_above: PG_DECLINE_ABOVE,
        ..ProcOptions::default()
    })
    .await;
    println!(
        "chaos [{}]: data and logs under {}",
        scenario.name,
        system.root().display()
    );
    let api = system.api();
    let plans = Arc::new(plan(seed, orders));
    let seeded = seed_data(&api, &plans, seed).await;

    // When: the load runs while services are killed and the broker restarts or loses its store
    let stop = Arc::new(AtomicBool::new(false));
    let placed = Arc::new(AtomicUsize::new(0));
    let chaos = tokio::spawn(chaos(
        system,
        seed ^ 0x0005_DEEC_E66D,
        scenario.broker_faults(seconds),
        stop.clone(),
        placed.clone(),
        orders,
    ));
    let load_started = Instant::now();
    let placements = place_all(
        api.clone(),
        plans.clone(),
        Duration::from_secs(seconds),
        placed,
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    let (mut system, counts) = match chaos.await {
        Ok(done) => done,
        Err(err) => std::panic::resume_unwind(err.into_panic()),
    };

    // Then: every order settles, the services stop cleanly, the audit is clean
    let unplaced: Vec<&Placement> = placements.iter().filter(|p| p.order_id.is_none()).collect();
    let mut ids: Vec<String> = placements
        .iter()
        .filter_map(|p| p.order_id.clone())
        .collect();
    ids.extend(seeded.iter().cloned());
    let load_took = load_started.elapsed();
    let settle_started = Instant::now();
    let settled = match settle(&api, &ids).await {
        Ok(settled) => settled,
        Err(unsettled) => {
            print_unsettled(&api, &unsettled).await;
            system.keep_root();
            panic!(
                "{} of {} orders did not settle within {SETTLE_TIMEOUT:?} (seed {seed}); logs under {}",
                unsettled.len(),
                ids.len(),
                system.root().display()
            );
        }
    };
    println!(
        "chaos [{}]: load and chaos took {:.1}s, settling {:.1}s",
        scenario.name,
        load_took.as_secs_f64(),
        settle_started.elapsed().as_secs_f64()
    );
    let outcomes = tally(&plans, &placements, &settled);
    let ended = system.stop_all().await;
    let report = audit::audit(
        &AuditInput {
            data_root: system.root().to_path_buf(),
        },
        eventlog::clock::now_ms(),
    )
    .unwrap_or_else(|e| panic!("the audit could not run: {e}"));

    print_summary(
        &scenario, seed, &counts, &system, &outcomes, &report, &ended,
    );
    let unclean_exits: Vec<String> = ended
        .iter()
        .filter(|(_, status)| !status.is_some_and(|s| s.success()))
        .map(|(service, status)| format!("{service}: {status:?}"))
        .collect();
    let clean = report.is_clean()
        && unplaced.is_empty()
        && outcomes.wrong.is_empty()
        && counts.crashes.is_empty()
        && unclean_exits.is_empty();
    if !clean {
        system.keep_root();
    }
    assert!(
        report.is_clean(),
        "the audit is not clean (seed {seed}):\n{}",
        report.render()
    );
    assert!(
        unplaced.is_empty(),
        "{} orders could not be placed (seed {seed}): {:?}",
        unplaced.len(),
        unplaced
            .iter()
            .take(10)
            .map(|p| (p.index, &p.last_error))
            .collect::<Vec<_>>()
    );
    assert!(
        outcomes.wrong.is_empty(),
        "orders that must fail completed (seed {seed}): {:?}",
        outcomes.wrong
    );
    assert!(
        counts.crashes.is_empty(),
        "services exited on their own during the chaos (seed {seed}): {:?}",
        counts.crashes
    );
    assert!(
        unclean_exits.is_empty(),
        "services did not stop cleanly on SIGTERM (seed {seed}): {unclean_exits:?}"
    );
}

fn env_or<T: FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a valid value")),
        Err(_) => default,
    }
}

/// xorshift64*: small, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        // splitmix64 of the seed, so nearby seeds give unrelated streams; never zero.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Self((z ^ (z >> 31)) | 1)
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..=hi`.
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    fn chance(&mut self, one_in: u64) -> bool {
        self.next_u64() % one_in == 0
    }
}

/// The kinds of orders the load places.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Plain,
    WithCoupon,
    WithPoints,
    WithCouponAndPoints,
    Scarce,
    PaymentDeclined,
    OutOfStock,
    UsedCoupon,
    UnknownCoupon,
    TooFewPoints,
}

impl Kind {
    /// Kinds with their weights in the mix.
    const MIX: [(Kind, usize); 10] = [
        (Kind::Plain, 3),
        (Kind::WithCoupon, 2),
        (Kind::WithPoints, 2),
        (Kind::WithCouponAndPoints, 2),
        (Kind::Scarce, 2),
        (Kind::PaymentDeclined, 1),
        (Kind::OutOfStock, 1),
        (Kind::UsedCoupon, 1),
        (Kind::UnknownCoupon, 1),
        (Kind::TooFewPoints, 1),
    ];

    /// Whether the order must fail whatever the chaos did (a participant always rejects it).
    fn must_fail(self) -> bool {
        matches!(
            self,
            Kind::PaymentDeclined
                | Kind::OutOfStock
                | Kind::UsedCoupon
                | Kind::UnknownCoupon
                | Kind::TooFewPoints
        )
    }

    fn draw(rng: &mut Rng) -> Kind {
        let total: usize = Self::MIX.iter().map(|(_, w)| w).sum();
        let mut pick = rng.below(total);
        for (kind, weight) in Self::MIX {
            if pick < weight {
                return kind;
            }
            pick -= weight;
        }
        unreachable!("the draw is below the total weight")
    }
}

/// One order the load will place.
#[derive(Debug, Clone)]
struct Plan {
    kind: Kind,
    body: Value,
    idempotency_key: String,
    /// A coupon issued for this order alone during seeding: (couponId, userId).
    fresh_coupon: Option<(String, String)>,
}

fn user(i: usize) -> String {
    format!("user-{i:02}")
}

fn used_coupon(seed: u64, k: usize) -> (String, String) {
    (format!("USED-{seed:x}-{k}"), user(k % USERS))
}

/// The workload: a pure function of the seed.
fn plan(seed: u64, orders: usize) -> Vec<Plan> {
    let mut rng = Rng::new(seed);
    (0..orders)
        .map(|index| {
            let kind = Kind::draw(&mut rng);
            let mut user_id = user(rng.below(USERS));
            let plenty = |rng: &mut Rng| {
                (
                    PLENTY_SKUS[rng.below(PLENTY_SKUS.len())],
                    rng.between(1, 3),
                    rng.between(100, 5_000),
                )
            };
            let mut lines = vec![plenty(&mut rng)];
            if rng.chance(3) {
                lines.push(plenty(&mut rng));
            }
            let fresh = format!("F-{seed:x}-{index}");
            let mut coupon: Option<String> = None;
            let mut points = 0;
            let mut amount_override = None;
            match kind {
                Kind::Plain => {}
                Kind::WithCoupon => coupon = Some(fresh.clone()),
                Kind::WithPoints => points = rng.between(10, 200),
                Kind::WithCouponAndPoints => {
                    coupon = Some(fresh.clone());
                    points = rng.between(10, 200);
                }
                Kind::Scarce => {
                    lines.push((
                        SCARCE_SKUS[rng.below(SCARCE_SKUS.len())],
                        rng.between(1, 2),
                        9_000,
                    ));
                    if rng.chance(2) {
                        points = rng.between(10, 200);
                    }
                }
                Kind::PaymentDeclined => {
                    amount_override = Some(PG_DECLINE_ABOVE + rng.between(1, 1_000_000));
                    if rng.chance(2) {
                        coupon = Some(fresh.clone());
                    }
                    if rng.chance(2) {
                        points = rng.between(10, 200);
                    }
                }
                Kind::OutOfStock => {
                    lines.push((SCARCE_SKUS[rng.below(SCARCE_SKUS.len())], TOO_MANY, 1));
                    if rng.chance(2) {
                        coupon = Some(fresh.clone());
                    }
                    if rng.chance(2) {
                        points = rng.between(10, 200);
                    }
                }
                Kind::UsedCoupon => {
                    let (coupon_id, owner) = used_coupon(seed, rng.below(PRE_USED_COUPONS));
                    coupon = Some(coupon_id);
                    user_id = owner;
                    if rng.chance(2) {
                        points = rng.between(10, 200);
                    }
                }
                Kind::UnknownCoupon => {
                    coupon = Some(format!("NOPE-{seed:x}-{index}"));
                    if rng.chance(2) {
                        points = rng.between(10, 200);
                    }
                }
                Kind::TooFewPoints => {
                    points = POINTS_PER_USER * 1_000;
                    if rng.chance(2) {
                        coupon = Some(fresh.clone());
                    }
                }
            }
            let amount = amount_override.unwrap_or_else(|| {
                lines
                    .iter()
                    .map(|(_, qty, price)| qty * price)
                    .sum::<u64>()
                    .max(1)
            });
            let fresh_coupon =
                (coupon.as_deref() == Some(fresh.as_str())).then(|| (fresh, user_id.clone()));
            Plan {
                kind,
                body: e2e::order_body(&user_id, &lines, coupon.as_deref(), points, amount),
                idempotency_key: format!("chaos-{seed:x}-{index}"),
                fresh_coupon,
            }
        })
        .collect()
}

/// Stock, coupons and points; uses up the pre-used coupons. Returns the seeding orders' ids.
async fn seed_data(api: &Api, plans: &[Plan], seed: u64) -> Vec<String> {
    for sku in PLENTY_SKUS {
        api.seed(AdminWrite::restock(sku, PLENTY_QTY)).await;
    }
    for sku in SCARCE_SKUS {
        api.seed(AdminWrite::restock(sku, SCARCE_QTY)).await;
    }
    for i in 0..USERS {
        api.seed(AdminWrite::credit(&user(i), POINTS_PER_USER))
            .await;
    }
    for (coupon_id, owner) in plans.iter().filter_map(|p| p.fresh_coupon.as_ref()) {
        api.seed(AdminWrite::issue_coupon(coupon_id, Some(owner)))
            .await;
    }
    let mut seeding = Vec::new();
    for k in 0..PRE_USED_COUPONS {
        let (coupon_id, owner) = used_coupon(seed, k);
        api.seed(AdminWrite::issue_coupon(&coupon_id, Some(&owner)))
            .await;
        let body = e2e::order_body(
            &owner,
            &[(PLENTY_SKUS[0], 1, 500)],
            Some(&coupon_id),
            0,
            400,
        );
        let reply = api.place(&body, &format!("seed-{seed:x}-{k}")).await;
        let order_id = match reply {
            Ok((202, reply)) => reply["orderId"].as_str().unwrap_or_default().to_owned(),
            other => panic!("seeding order with {coupon_id}: {other:?}"),
        };
        let order = bus::testing::eventually(
            Duration::from_secs(60),
            "a seeding order to complete",
            || async {
                api.order(&order_id)
                    .await
                    .filter(|o| matches!(o["status"].as_str(), Some("COMPLETED" | "FAILED")))
            },
        )
        .await;
        assert_eq!(order["status"], "COMPLETED", "seeding order: {order}");
        seeding.push(order_id);
    }
    seeding
}

/// How one planned order's placement ended.
#[derive(Debug)]
struct Placement {
    index: usize,
    order_id: Option<String>,
    attempts: u32,
    last_error: String,
}

/// Places every planned order, paced evenly over `span`, retrying each with its key.
async fn place_all(
    api: Api,
    plans: Arc<Vec<Plan>>,
    span: Duration,
    placed: Arc<AtomicUsize>,
) -> Vec<Placement> {
    let start = tokio::time::Instant::now();
    let step = span / plans.len().max(1) as u32;
    let mut placements: Vec<Placement> = futures::stream::iter(0..plans.len())
        .map(|index| {
            let api = api.clone();
            let plans = plans.clone();
            let placed = placed.clone();
            async move {
                tokio::time::sleep_until(start + step * index as u32).await;
                let placement = place_with_retry(&api, index, &plans[index]).await;
                placed.fetch_add(1, Ordering::SeqCst);
                placement
            }
        })
        .buffer_unordered(LOAD_IN_FLIGHT_MAX)
        .collect()
        .await;
    placements.sort_by_key(|p| p.index);
    placements
}

async fn place_with_retry(api: &Api, index: usize, plan: &Plan) -> Placement {
    let mut backoff = Backoff::new(RetryPolicy::forever(
        PLACE_BACKOFF_MS_MIN,
        PLACE_BACKOFF_MS_MAX,
    ))
    .with_max_attempts(PLACE_ATTEMPTS_MAX);
    let mut last_error = String::new();
    loop {
        let attempt = u32::try_from(backoff.failures() + 1).expect("at most PLACE_ATTEMPTS_MAX");
        match api.place(&plan.body, &plan.idempotency_key).await {
            Ok((200 | 202, reply)) => {
                if let Some(order_id) = reply["orderId"].as_str() {
                    return Placement {
                        index,
                        order_id: Some(order_id.to_owned()),
                        attempts: attempt,
                        last_error,
                    };
                }
                last_error = format!("no orderId in {reply}");
            }
            // 409: the store was busy with this key; 5xx: the service is unwell. Both retry.
            Ok((status, reply)) if status == 409 || status >= 500 => {
                last_error = format!("HTTP {status}: {reply}")
            }
            Ok((status, reply)) => {
                return Placement {
                    index,
                    order_id: None,
                    attempts: attempt,
                    last_error: format!("HTTP {status}: {reply}"),
                }
            }
            Err(err) => last_error = err.to_string(),
        }
        match backoff.next_delay() {
            Some(delay) => tokio::time::sleep(delay).await,
            None => {
                return Placement {
                    index,
                    order_id: None,
                    attempts: attempt,
                    last_error,
                }
            }
        }
    }
}

/// What the chaos task did.
#[derive(Debug, Default)]
struct ChaosCounts {
    kills: u32,
    nats_restarts: u32,
    wipes: u32,
    /// Services found exited without being killed: (service, how it ended).
    crashes: Vec<String>,
}

/// Kills and restarts services at random until `stop`; restarts or wipes the broker when the
/// load passes each scheduled fraction. Hands the system back with every service running.
async fn chaos(
    mut system: ProcSystem,
    seed: u64,
    broker: Vec<(f64, BrokerFault)>,
    stop: Arc<AtomicBool>,
    placed: Arc<AtomicUsize>,
    total: usize,
) -> (ProcSystem, ChaosCounts) {
    let mut rng = Rng::new(seed);
    let mut counts = ChaosCounts::default();
    let mut broker = broker.into_iter().peekable();
    loop {
        let pause = Duration::from_millis(rng.between(STRIKE_PAUSE_MS.0, STRIKE_PAUSE_MS.1));
        let until = Instant::now() + pause;
        while Instant::now() < until && !stop.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        revive_crashed(&mut system, &mut counts).await;
        let stopping = stop.load(Ordering::SeqCst);
        let progress = placed.load(Ordering::SeqCst) as f64 / total.max(1) as f64;
        // Scheduled broker faults happen even if the load finished first.
        while let Some((_, fault)) = broker.next_if(|(at, _)| stopping || progress >= *at) {
            println!(
                "chaos: {} at {:.0}% of the orders",
                fault.doing(),
                progress * 100.0
            );
            match fault {
                BrokerFault::Restart => {
                    system.nats.restart().await;
                    counts.nats_restarts += 1;
                }
                BrokerFault::Wipe => {
                    system.nats.wipe().await;
                    counts.wipes += 1;
                }
            }
        }
        if stopping {
            break;
        }
        let mut victims = vec![SERVICES[rng.below(SERVICES.len())]];
        if rng.chance(DOUBLE_KILL_ONE_IN) {
            let second = SERVICES[rng.below(SERVICES.len())];
            if second != victims[0] {
                victims.push(second);
            }
        }
        for victim in &victims {
            if system.kill(victim) {
                counts.kills += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.between(DOWN_MS.0, DOWN_MS.1))).await;
        for victim in victims {
            system.start_service(victim).await;
        }
    }
    revive_crashed(&mut system, &mut counts).await;
    (system, counts)
}

/// Starts again any service that exited although nobody killed it, and records it.
async fn revive_crashed(system: &mut ProcSystem, counts: &mut ChaosCounts) {
    for service in SERVICES {
        if let Some(status) = system.exited(service) {
            let tail = system.log_tail(service, 20);
            println!("chaos: {service} exited on its own with {status}; log tail:\n{tail}");
            counts.crashes.push(format!("{service}: {status}"));
        }
        system.start_service(service).await;
    }
}

/// Waits until every order is FAILED, or COMPLETED with its data platform delivery recorded.
/// Returns the last view of each, or the unsettled ones on timeout.
async fn settle(
    api: &Api,
    ids: &[String],
) -> Result<BTreeMap<String, Value>, Vec<(String, Value)>> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let mut settled = BTreeMap::new();
    let mut pending: BTreeMap<String, Value> =
        ids.iter().map(|id| (id.clone(), Value::Null)).collect();
    loop {
        let mut still = BTreeMap::new();
        for (id, last) in pending {
            match api.order(&id).await {
                Some(order) if is_settled(&order) => {
                    settled.insert(id, order);
                }
                Some(order) => {
                    still.insert(id, order);
                }
                None => {
                    still.insert(id, last);
                }
            }
        }
        pending = still;
        if pending.is_empty() {
            return Ok(settled);
        }
        if Instant::now() >= deadline {
            return Err(pending.into_iter().collect());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn is_settled(order: &Value) -> bool {
    match order["status"].as_str() {
        Some("FAILED") => true,
        Some("COMPLETED") => order["dataPlatformDelivered"] == true,
        _ => false,
    }
}

async fn print_unsettled(api: &Api, unsettled: &[(String, Value)]) {
    println!("UNSETTLED: {} orders", unsettled.len());
    for (id, order) in unsettled {
        println!(
            "  {id}: status {} waiting for {} redrives {} delivered {} reason {}",
            order["status"],
            order["waitingFor"],
            order["redrives"],
            order["dataPlatformDelivered"],
            order["failureReason"]
        );
    }
    for (id, _) in unsettled.iter().take(TIMELINES_SHOWN_MAX) {
        let timeline = api.timeline(id).await;
        println!("TIMELINE of {id}:");
        println!(
            "{}",
            serde_json::to_string_pretty(&timeline).unwrap_or_default()
        );
    }
}

/// Outcomes per kind, and the orders whose outcome contradicts their kind.
#[derive(Debug, Default)]
struct Outcomes {
    /// kind -> (completed, failed)
    by_kind: BTreeMap<Kind, (usize, usize)>,
    completed: usize,
    failed: usize,
    retried_placements: usize,
    wrong: Vec<String>,
}

fn tally(plans: &[Plan], placements: &[Placement], settled: &BTreeMap<String, Value>) -> Outcomes {
    let mut outcomes = Outcomes::default();
    for placement in placements {
        if placement.attempts > 1 {
            outcomes.retried_placements += 1;
        }
        let Some(order) = placement.order_id.as_ref().and_then(|id| settled.get(id)) else {
            continue;
        };
        let kind = plans[placement.index].kind;
        let entry = outcomes.by_kind.entry(kind).or_default();
        match order["status"].as_str() {
            Some("COMPLETED") => {
                entry.0 += 1;
                outcomes.completed += 1;
                if kind.must_fail() {
                    outcomes
                        .wrong
                        .push(format!("{kind:?} order {} COMPLETED", order["orderId"]));
                }
            }
            _ => {
                entry.1 += 1;
                outcomes.failed += 1;
            }
        }
    }
    outcomes
}

fn print_summary(
    scenario: &Scenario,
    seed: u64,
    counts: &ChaosCounts,
    system: &ProcSystem,
    outcomes: &Outcomes,
    report: &AuditReport,
    ended: &[(&str, Option<std::process::ExitStatus>)],
) {
    let restarts: u32 = SERVICES
        .iter()
        .map(|s| system.starts(s).saturating_sub(1))
        .sum();
    println!("==== chaos [{}] seed {seed} ====", scenario.name);
    println!(
        "orders {} (completed {}, failed {}; placements retried {}), audit total {}",
        outcomes.completed + outcomes.failed,
        outcomes.completed,
        outcomes.failed,
        outcomes.retried_placements,
        report.orders.total
    );
    println!(
        "kills {}, service restarts {restarts} ({}), nats restarts {}, wipes {}, crashes {}",
        counts.kills,
        SERVICES
            .iter()
            .map(|s| format!("{s} {}", system.starts(s).saturating_sub(1)))
            .collect::<Vec<_>>()
            .join(", "),
        counts.nats_restarts,
        counts.wipes,
        counts.crashes.len()
    );
    for (kind, (completed, failed)) in &outcomes.by_kind {
        println!(
            "  {kind:<20} completed {completed:>5}  failed {failed:>5}",
            kind = format!("{kind:?}")
        );
    }
    println!(
        "stopped: {}",
        ended
            .iter()
            .map(|(s, status)| format!(
                "{s} {}",
                status.map_or("gone".to_owned(), |st| st.to_string())
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("audit:\n{}", report.render());
}
