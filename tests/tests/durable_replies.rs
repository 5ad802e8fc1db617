//! No reply runs ahead of the disk: a process killed between a decision and its flush has
//! answered nothing about that decision, and after a restart the log holds nothing of it.
//!
//! The order service runs in a child process (this test binary, re-run with a filter). Its
//! store writer is held between applying a commit group and flushing it
//! (`eventlog::testing_hooks`), the child sends requests that depend on the held decision, and the
//! parent SIGKILLs it. A control run releases the hold and sees every reply.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bus::testing::{free_port, NatsServer};
use eventlog::event_store::{EventStore, StoreConfig};
use eventlog::live::Live;
use order::domain::Order;

/// Environment variable that turns the child on; it names the order data dir.
const CHILD_DIR_ENV: &str = "DURABLE_REPLIES_CHILD_DIR";
/// NATS URL handed to the child.
const CHILD_NATS_ENV: &str = "DURABLE_REPLIES_CHILD_NATS";
/// When set, the child releases the hold once the decision is applied (the control run).
const CHILD_RELEASE_ENV: &str = "DURABLE_REPLIES_CHILD_RELEASE";
/// The child's test name, as its filter.
const CHILD_TEST: &str = "durable_replies_child";
/// The idempotency key both placements carry.
const KEY: &str = "durable-replies-key";
/// How long the parent waits for the child to announce each step.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the parent listens for (forbidden) replies while the flush is held.
const QUIET_WINDOW: Duration = Duration::from_secs(2);

fn order_body() -> serde_json::Value {
    serde_json::json!({
        "userId": "durable-user",
        "items": [{"sku": "apple", "qty": 1, "price": 100}],
        "couponId": null,
        "points": 0,
        "amount": 100
    })
}

/// Not a test on its own: the child process of the tests below.
#[tokio::test]
async fn durable_replies_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
        return;
    };
    let nats_url = std::env::var(CHILD_NATS_ENV).expect("the parent names the NATS URL");
    let port = free_port();
    let dead = format!("http://127.0.0.1:{}", free_port());
    let common = servicekit::settings::CommonArgs {
        nats_url,
        nats_user: None,
        nats_password: None,
        nats_creds: None,
        nats_tls: false,
        data_dir: Some(dir.into()),
        http_addr: Some(format!("127.0.0.1:{port}").parse().expect("an address")),
        admin_token: Some("t".into()),
        rate_limit: servicekit::settings::DEFAULT_RATE_LIMIT_PER_SEC,
        state: Default::default(),
    };
    let settings = order::config::Settings {
        common,
        saga_deadline: Duration::from_secs(600),
        participant_urls: [dead.clone(), dead.clone(), dead.clone(), dead],
        dataplatform_url: None,
        alert_webhook_url: None,
        supervisor: Default::default(),
        dataplatform: Default::default(),
    };
    let app = order::app::build(settings)
        .await
        .expect("the order service starts");
    let base = format!("http://{}", app.addr());
    let http = reqwest::Client::new();

    // Hold every flush from here on, then place an order.
    eventlog::testing_hooks::set_hold_flush(true);
    let held_before = eventlog::testing_hooks::held_groups();
    let place = |label: &'static str| {
        let http = http.clone();
        let url = format!("{base}/orders");
        tokio::spawn(async move {
            let response = http
                .post(url)
                .header("Idempotency-Key", KEY)
                .json(&order_body())
                .send()
                .await;
            if let Ok(response) = response {
                let status = response.status().as_u16();
                let body: serde_json::Value = response.json().await.unwrap_or_default();
                println!("ANSWERED {label} {status} {}", body["orderId"]);
            }
        })
    };
    let first = place("first");
    while eventlog::testing_hooks::held_groups() == held_before {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The placement is decided and applied, not flushed. Everything below depends on it.
    println!("APPLIED");
    let second = place("second");
    let list = {
        let http = http.clone();
        let url = format!("{base}/orders?limit=10");
        tokio::spawn(async move {
            if let Ok(response) = http.get(url).send().await {
                let body: serde_json::Value = response.json().await.unwrap_or_default();
                let ids: Vec<String> = body["orders"]
                    .as_array()
                    .map(|orders| orders.iter().map(|o| o["orderId"].to_string()).collect())
                    .unwrap_or_default();
                println!("ANSWERED list {}", ids.join(","));
            }
        })
    };
    if std::env::var_os(CHILD_RELEASE_ENV).is_some() {
        tokio::time::sleep(Duration::from_millis(200)).await;
        eventlog::testing_hooks::set_hold_flush(false);
        for task in [first, second, list] {
            task.await.expect("a request task");
        }
        println!("RELEASED");
    }
    // Wait to be killed.
    tokio::time::sleep(Duration::from_secs(600)).await;
}

/// Kills the child if the parent fails first.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the child and returns its stdout lines as they come.
fn spawn_child(
    dir: &std::path::Path,
    nats: &NatsServer,
    release: bool,
) -> (KillOnDrop, mpsc::Receiver<String>) {
    let mut command = Command::new(std::env::current_exe().expect("the test binary"));
    command
        .args([CHILD_TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_ENV, dir)
        .env(CHILD_NATS_ENV, nats.url())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if release {
        command.env(CHILD_RELEASE_ENV, "1");
    }
    let mut child = command.spawn().expect("the child starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (KillOnDrop(child), rx)
}

/// A broker and the child over a fresh data dir, with the child's stdout lines as they come.
struct ChildRun {
    child: KillOnDrop,
    lines: mpsc::Receiver<String>,
    dir: std::path::PathBuf,
    _data: tempfile::TempDir,
    _nats: NatsServer,
}

impl ChildRun {
    /// Starts a broker and the child; `release`: see [`CHILD_RELEASE_ENV`].
    async fn start(release: bool) -> Self {
        let nats = NatsServer::start().await;
        let data = tempfile::tempdir().expect("a temp dir");
        let dir = data.path().join("order");
        let (child, lines) = spawn_child(&dir, &nats, release);
        Self {
            child,
            lines,
            dir,
            _data: data,
            _nats: nats,
        }
    }

    /// SIGKILLs the child, then reads which orders its log holds.
    async fn kill_and_read_log(mut self) -> Vec<uuid::Uuid> {
        self.child.0.kill().expect("SIGKILL the child");
        let _ = self.child.0.wait();
        orders_in_log(&self.dir).await
    }
}

/// Lines until one equals `marker`; panics after [`STEP_TIMEOUT`].
fn lines_until(lines: &mpsc::Receiver<String>, marker: &str) -> Vec<String> {
    let deadline = Instant::now() + STEP_TIMEOUT;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            // libtest may print its own "test ... " prefix on the same line.
            Ok(line) if line.ends_with(marker) => return seen,
            Ok(line) => seen.push(strip_libtest(&line)),
            Err(_) => panic!("the child never printed {marker}; it printed {seen:?}"),
        }
    }
}

/// A child line without libtest's "test <name> ... " prefix.
fn strip_libtest(line: &str) -> String {
    match line.find("ANSWERED") {
        Some(at) => line[at..].to_owned(),
        None => line.to_owned(),
    }
}

/// The orders the log holds after the process is gone.
async fn orders_in_log(dir: &std::path::Path) -> Vec<uuid::Uuid> {
    let store = EventStore::open(StoreConfig::new(dir)).expect("the log reopens");
    let live = Live::<Order>::open(store).expect("the state rebuilds");
    live.read(|s| s.orders.keys().copied().collect())
        .await
        .expect("a durable read")
}

#[tokio::test]
async fn a_process_killed_between_decision_and_flush_has_answered_nothing_about_it() {
    // Given the order service in a child process whose writer holds its flush
    let run = ChildRun::start(false).await;
    let lines = &run.lines;

    // When an order is placed, decided and applied but not flushed, and the same Idempotency-Key
    // and a listing ask about it
    let before = lines_until(lines, "APPLIED");
    assert!(
        before.iter().all(|l| !l.starts_with("ANSWERED")),
        "a reply ran ahead of the flush: {before:?}"
    );
    let quiet_until = Instant::now() + QUIET_WINDOW;
    let mut replies = Vec::new();
    while let Some(left) = quiet_until.checked_duration_since(Instant::now()) {
        if let Ok(line) = lines.recv_timeout(left) {
            replies.push(strip_libtest(&line));
        }
    }
    // Then nobody was answered while the decision was not durable
    assert!(
        replies.iter().all(|l| !l.starts_with("ANSWERED")),
        "replies ran ahead of the disk: {replies:?}"
    );

    // And after a crash in that window, the log holds nothing of the order: no answer was a lie
    assert!(
        run.kill_and_read_log().await.is_empty(),
        "the killed decision must not be in the log"
    );
}

#[tokio::test]
async fn once_the_flush_lands_every_reply_names_the_same_durable_order() {
    // Given the same child, whose hold is released after the decision was applied
    let run = ChildRun::start(true).await;

    // When the flush lands
    let replies = lines_until(&run.lines, "RELEASED");

    // Then both placements answer with one order id, the listing shows it, and it is in the log
    let placed: Vec<&String> = replies
        .iter()
        .filter(|l| l.starts_with("ANSWERED first") || l.starts_with("ANSWERED second"))
        .collect();
    assert_eq!(placed.len(), 2, "both placements answered: {replies:?}");
    let ids: Vec<&str> = placed
        .iter()
        .filter_map(|l| l.split_whitespace().nth(3))
        .collect();
    assert_eq!(ids.len(), 2, "{replies:?}");
    assert_eq!(
        ids[0], ids[1],
        "one Idempotency-Key, one order: {replies:?}"
    );
    let listed = replies
        .iter()
        .find(|l| l.starts_with("ANSWERED list"))
        .unwrap_or_else(|| panic!("the listing answered: {replies:?}"));
    assert!(listed.contains(ids[0]), "{listed}");
    let in_log = run.kill_and_read_log().await;
    assert_eq!(in_log.len(), 1, "{in_log:?}");
    assert_eq!(format!("\"{}\"", in_log[0]), ids[0]);
}
