//! `loadtest --history N`: what N orders of history cost each service.
//!
//! Drives the saga-5 mix in a closed loop up to each checkpoint (10k, 100k, 250k, 500k, 1M by
//! default, cut at N) while a probe pages `GET /orders` (plain, by status, by user) and reads
//! `GET /stats`. At each checkpoint, with every order terminal, it records per service: RSS
//! under load, disk bytes per order, then stops the service and times `verify` (a fold from
//! seq 1: events/s) and `replay` (from the newest snapshot), starts it again and times
//! restart-to-ready and the RSS after the restart. Results go to stdout as a Markdown table
//! and to `<report>/history.{md,csv}` and `<report>/history.svg` (RSS and restart time against
//! orders). Invariants are checked as in the other modes (every order terminal, `audit`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::procs::{Api, ProcSystem};
use e2e::SERVICES;

use crate::procstat;
use crate::{closed_loop, stats, Load, Until};

/// Default checkpoints, cut at the number of orders asked for.
const CHECKPOINTS: [u64; 5] = [10_000, 100_000, 250_000, 500_000, 1_000_000];
/// Pause between two rounds of the query probe.
const PROBE_PAUSE: Duration = Duration::from_millis(100);
/// How long a checkpoint waits for the orders placed so far to become terminal.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(300);

/// One service's figures at one checkpoint.
#[derive(Debug, Clone, Default)]
struct ServiceFigures {
    rss_mib: f64,
    rss_after_restart_mib: f64,
    disk_bytes: u64,
    restart_ready_s: f64,
    verify_events: u64,
    verify_s: f64,
    replay_folded: u64,
    replay_s: f64,
}

/// Everything measured at one checkpoint.
#[derive(Debug, Clone, Default)]
struct Checkpoint {
    orders: u64,
    load_rate: f64,
    query_p50_ms: f64,
    query_p99_ms: f64,
    queries: usize,
    services: BTreeMap<&'static str, ServiceFigures>,
}

/// Latencies of the query probe while load runs, in microseconds.
async fn probe(api: Api, users: u64, stop: Arc<AtomicBool>) -> Vec<u64> {
    let mut latencies = Vec::new();
    let mut round = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let paths = [
            "/orders?limit=50".to_owned(),
            "/orders?status=COMPLETED&limit=50".to_owned(),
            format!("/orders?userId=user-{}&limit=20", round % users.max(1)),
            "/stats".to_owned(),
        ];
        for path in &paths {
            let sent = Instant::now();
            if let Ok((200, _)) = api.get("order", path).await {
                latencies.push(sent.elapsed().as_micros() as u64);
            }
        }
        round += 1;
        tokio::time::sleep(PROBE_PAUSE).await;
    }
    latencies
}

/// Total size of the files below `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_bytes(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Runs an offline command of a stopped service; returns its stdout and how long it took.
fn offline(bin_dir: &Path, service: &str, data_dir: &Path, command: &str) -> (String, f64) {
    let started = Instant::now();
    let output = std::process::Command::new(bin_dir.join(service))
        .arg(command)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATA_DIR", data_dir)
        .env("RUST_LOG", "warn")
        .output();
    let elapsed = started.elapsed().as_secs_f64();
    match output {
        Ok(out) => (String::from_utf8_lossy(&out.stdout).into_owned(), elapsed),
        Err(err) => (format!("cannot run {service} {command}: {err}"), elapsed),
    }
}

/// `verify` says "log OK: N records in ..."; the count it checked.
fn verified_records(text: &str) -> u64 {
    text.split("log OK: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// `replay` prints a JSON report with `eventsFolded`.
fn replayed_events(text: &str) -> u64 {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v["eventsFolded"].as_u64())
        .unwrap_or(0)
}

/// Waits until no order is open any more (or the timeout); returns the order count known.
async fn settle(api: &Api) -> u64 {
    let until = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let counts = stats(api).await;
        let open: u64 = ["PENDING", "COMPENSATING", "NEEDS_ATTENTION"]
            .iter()
            .map(|s| counts.get(*s).copied().unwrap_or(0))
            .sum();
        if open == 0 || Instant::now() >= until {
            return counts.values().sum();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Measures every service at a checkpoint: RSS, disk, then stop / verify / replay / start.
async fn measure(system: &mut ProcSystem, bin_dir: &Path, checkpoint: &mut Checkpoint) {
    let pids = procstat::children_by_name();
    for service in SERVICES {
        let figures = checkpoint.services.entry(service).or_default();
        figures.rss_mib = pids
            .get(service)
            .and_then(|pid| procstat::rss_kib(*pid))
            .unwrap_or(0) as f64
            / 1024.0;
        figures.disk_bytes = dir_bytes(&system.data_dir(service));
    }
    for service in SERVICES {
        system.stop(service).await;
        let data_dir = system.data_dir(service);
        let (verify_text, verify_s) = offline(bin_dir, service, &data_dir, "verify");
        if !verify_text.contains("log OK") {
            println!("  {service} verify: {}", verify_text.trim());
        }
        let (replay_text, replay_s) = offline(bin_dir, service, &data_dir, "replay");
        let started = Instant::now();
        system.start_service(service).await;
        let restart_ready_s = started.elapsed().as_secs_f64();
        let rss_after = procstat::children_by_name()
            .get(service)
            .and_then(|pid| procstat::rss_kib(*pid))
            .unwrap_or(0) as f64
            / 1024.0;
        let figures = checkpoint.services.entry(service).or_default();
        figures.verify_events = verified_records(&verify_text);
        figures.verify_s = verify_s;
        figures.replay_folded = replayed_events(&replay_text);
        figures.replay_s = replay_s;
        figures.restart_ready_s = restart_ready_s;
        figures.rss_after_restart_mib = rss_after;
    }
}

fn percentile_ms(latencies_us: &mut [u64], p: f64) -> f64 {
    latencies_us.sort_unstable();
    crate::percentile_ms(latencies_us, p)
}

/// The Markdown table: one row per checkpoint and service.
fn markdown(checkpoints: &[Checkpoint]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| orders | load orders/s | GET /orders p50 / p99 ms | service | RSS MiB (load) | RSS MiB (after restart) | disk B/order | restart-to-ready s | verify events/s | replay s (events folded) |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
    for c in checkpoints {
        for (i, (service, f)) in c.services.iter().enumerate() {
            let head = if i == 0 {
                format!(
                    "| {} | {:.0} | {:.1} / {:.1} ({} queries) ",
                    c.orders, c.load_rate, c.query_p50_ms, c.query_p99_ms, c.queries
                )
            } else {
                "| | | ".to_owned()
            };
            let verify_rate = if f.verify_s > 0.0 {
                f.verify_events as f64 / f.verify_s
            } else {
                0.0
            };
            let _ = writeln!(
                out,
                "{head}| {service} | {:.1} | {:.1} | {:.0} | {:.2} | {:.0} | {:.2} ({}) |",
                f.rss_mib,
                f.rss_after_restart_mib,
                f.disk_bytes as f64 / c.orders.max(1) as f64,
                f.restart_ready_s,
                verify_rate,
                f.replay_s,
                f.replay_folded
            );
        }
    }
    out
}

fn csv(checkpoints: &[Checkpoint]) -> String {
    let mut out = String::from(
        "orders,service,rss_mib,rss_after_restart_mib,disk_bytes,restart_ready_s,verify_events,verify_s,replay_folded,replay_s,load_rate,query_p50_ms,query_p99_ms\n",
    );
    for c in checkpoints {
        for (service, f) in &c.services {
            let _ = writeln!(
                out,
                "{},{service},{:.1},{:.1},{},{:.3},{},{:.3},{},{:.3},{:.0},{:.2},{:.2}",
                c.orders,
                f.rss_mib,
                f.rss_after_restart_mib,
                f.disk_bytes,
                f.restart_ready_s,
                f.verify_events,
                f.verify_s,
                f.replay_folded,
                f.replay_s,
                c.load_rate,
                c.query_p50_ms,
                c.query_p99_ms
            );
        }
    }
    out
}

/// Reads one figure of a service, for a chart.
type Metric = fn(&ServiceFigures) -> f64;

/// Two line charts side by side: RSS under load and restart-to-ready, against orders.
fn svg(checkpoints: &[Checkpoint]) -> String {
    const W: f64 = 420.0;
    const H: f64 = 260.0;
    const PAD: f64 = 48.0;
    const COLOURS: [&str; 5] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"];
    let max_orders = checkpoints.iter().map(|c| c.orders).max().unwrap_or(1) as f64;
    let panels: [(&str, Metric); 2] = [
        ("RSS under load (MiB)", |f| f.rss_mib),
        ("restart-to-ready (s)", |f| f.restart_ready_s),
    ];
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" font-family="sans-serif" font-size="11">"#,
        2.0 * W,
        H + 30.0
    );
    for (p, (title, value)) in panels.iter().enumerate() {
        let x0 = p as f64 * W;
        let max_y = checkpoints
            .iter()
            .flat_map(|c| c.services.values().map(value))
            .fold(0.0_f64, f64::max)
            .max(1e-9)
            * 1.1;
        let sx = |orders: u64| x0 + PAD + (orders as f64 / max_orders) * (W - 2.0 * PAD);
        let sy = |v: f64| H - PAD + 10.0 - (v / max_y) * (H - 2.0 * PAD);
        let _ = write!(
            out,
            r#"<text x="{}" y="16">{title}</text><line x1="{}" y1="{}" x2="{}" y2="{}" stroke="black"/><line x1="{}" y1="{}" x2="{}" y2="{}" stroke="black"/>"#,
            x0 + PAD,
            x0 + PAD,
            sy(0.0),
            x0 + W - PAD,
            sy(0.0),
            x0 + PAD,
            sy(0.0),
            x0 + PAD,
            sy(max_y),
        );
        let _ = write!(
            out,
            r#"<text x="{}" y="{}" text-anchor="end">{:.1}</text><text x="{}" y="{}" text-anchor="end">0</text><text x="{}" y="{}" text-anchor="end">{} orders</text>"#,
            x0 + PAD - 4.0,
            sy(max_y / 1.1) + 4.0,
            max_y / 1.1,
            x0 + PAD - 4.0,
            sy(0.0) + 4.0,
            x0 + W - PAD,
            sy(0.0) + 16.0,
            max_orders as u64
        );
        for (i, service) in SERVICES.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let points: Vec<String> = checkpoints
                .iter()
                .filter_map(|c| {
                    c.services
                        .get(service)
                        .map(|f| format!("{:.1},{:.1}", sx(c.orders), sy(value(f))))
                })
                .collect();
            let _ = write!(
                out,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/><text x="{}" y="{}" fill="{colour}">{service}</text>"#,
                points.join(" "),
                x0 + W - PAD + 4.0 - 60.0,
                30.0 + 14.0 * i as f64,
            );
        }
    }
    out.push_str("</svg>\n");
    out
}

/// The history benchmark; returns whether every order ended terminal and `audit` passed.
pub(crate) async fn run(
    system: &mut ProcSystem,
    load: &Load,
    args: &crate::Args,
    orders: u64,
) -> anyhow::Result<bool> {
    let report = args.report.as_path();
    let api = system.api();
    let bin_dir: PathBuf = std::env::current_exe()?
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow::anyhow!("no directory for the service binaries"))?;
    let mut marks: Vec<u64> = CHECKPOINTS
        .iter()
        .copied()
        .filter(|c| *c < orders)
        .collect();
    marks.push(orders);
    std::fs::create_dir_all(report)?;
    let mut checkpoints: Vec<Checkpoint> = Vec::new();
    let mut ok = true;
    for mark in marks {
        let stop = Arc::new(AtomicBool::new(false));
        let prober = tokio::spawn(probe(api.clone(), args.users, stop.clone()));
        let phase = closed_loop(load, args.connections, Until::Orders(mark)).await;
        stop.store(true, Ordering::Relaxed);
        let mut latencies = prober.await.unwrap_or_default();
        ok &= phase.errors == 0;
        let known = settle(&api).await;
        let mut checkpoint = Checkpoint {
            orders: mark,
            load_rate: phase.terminal() as f64 / phase.elapsed.as_secs_f64().max(1e-9),
            queries: latencies.len(),
            query_p50_ms: percentile_ms(&mut latencies, 50.0),
            query_p99_ms: percentile_ms(&mut latencies, 99.0),
            services: BTreeMap::new(),
        };
        if known != mark {
            println!("  checkpoint {mark}: the order service knows {known} orders");
            ok = false;
        }
        measure(system, &bin_dir, &mut checkpoint).await;
        checkpoints.push(checkpoint);
        let table = markdown(&checkpoints);
        println!("\n{table}");
        std::fs::write(report.join("history.md"), &table)?;
        std::fs::write(report.join("history.csv"), csv(&checkpoints))?;
        std::fs::write(report.join("history.svg"), svg(&checkpoints))?;
    }
    println!("report written to {}", report.display());
    Ok(ok)
}
