//! Process harness: a real nats-server and the five services as child processes of the built
//! binaries, so a service can be SIGKILLed like a crashed pod and started again on the same
//! port and data dir. Data dirs are laid out as `<root>/<service>` (what `audit` expects), logs
//! are appended to `<root>/logs/<service>.log`.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use bus::testing::{free_port, NatsServer};
use serde_json::{json, Value};

use crate::{record_types, send_json, AdminWrite, ADMIN_TOKEN, SERVICES};

/// How long a started service may take to answer `GET /readyz` with 200.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `stop` waits after SIGTERM before it SIGKILLs.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// Timeout of one HTTP request from the harness.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often readiness and exits are polled.
const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// How to start the process-based system.
#[derive(Debug, Clone)]
pub struct ProcOptions {
    /// `PG_URL` of the payment service: a real PG instead of the simulated one.
    pub pg_url: Option<String>,
    /// `PG_TIMEOUT` of the payment service's PG client (its default when `None`).
    pub pg_timeout: Option<Duration>,
    /// `PG_DECLINE_ABOVE` of the payment service's simulated PG.
    pub pg_decline_above: u64,
    /// `SAGA_DEADLINE` of the order service.
    pub saga_deadline: Duration,
    /// `RUST_LOG` of every service.
    pub rust_log: String,
}

impl Default for ProcOptions {
    fn default() -> Self {
        Self {
            saga_deadline: Duration::from_secs(5),
            pg_decline_above: 1_000_000,
            rust_log: "warn".to_owned(),
            pg_url: None,
            pg_timeout: None,
        }
    }
}

/// A cheap, cloneable HTTP handle on the running system (ports do not change on restarts).
#[derive(Debug, Clone)]
pub struct Api {
    ports: BTreeMap<&'static str, u16>,
    /// The HTTP client (with a per-request timeout).
    pub http: reqwest::Client,
}

impl Api {
    /// A service's base URL.
    pub fn url(&self, service: &str) -> String {
        format!("http://127.0.0.1:{}", self.ports[service])
    }

    /// GET a path on a service: status and JSON body (Null when the body is not JSON).
    pub async fn get(&self, service: &str, path: &str) -> Result<(u16, Value), reqwest::Error> {
        send_json(self.http.get(format!("{}{path}", self.url(service)))).await
    }

    /// POST JSON to a service with the admin token.
    pub async fn post_admin(
        &self,
        service: &str,
        path: &str,
        body: Value,
    ) -> Result<(u16, Value), reqwest::Error> {
        let request = self.http.post(format!("{}{path}", self.url(service)));
        send_json(request.bearer_auth(ADMIN_TOKEN).json(&body)).await
    }

    /// Sends an admin write (panics unless it gets the status it is meant to).
    pub async fn seed(&self, write: AdminWrite) {
        let reply = self
            .post_admin(write.service, &write.path, write.body)
            .await;
        assert!(
            matches!(reply, Ok((status, _)) if status == write.ok),
            "{} {}: {reply:?}",
            write.service,
            write.path
        );
    }

    /// Record types of a service's log of an order (timeline notes as `note.<kind>`); none if the
    /// service does not answer.
    pub async fn log_types(&self, service: &str, order_id: &str) -> Vec<String> {
        let request = self
            .http
            .get(format!("{}/log/{order_id}", self.url(service)));
        let reply = send_json(request.bearer_auth(ADMIN_TOKEN)).await;
        reply
            .map(|(_, body)| record_types(&body))
            .unwrap_or_default()
    }

    /// One attempt at placing an order with an `Idempotency-Key`: the reply's status and body.
    pub async fn place(
        &self,
        body: &Value,
        idempotency_key: &str,
    ) -> Result<(u16, Value), reqwest::Error> {
        let request = self.http.post(format!("{}/orders", self.url("order")));
        send_json(
            request
                .header("Idempotency-Key", idempotency_key)
                .json(body),
        )
        .await
    }

    /// An order as the order service shows it, or None if it is unreachable or unknown.
    pub async fn order(&self, order_id: &str) -> Option<Value> {
        match self.get("order", &format!("/orders/{order_id}")).await {
            Ok((200, order)) => Some(order),
            _ => None,
        }
    }

    /// Orders with a status (at most 1000), or None if the order service did not answer.
    pub async fn orders_with_status(&self, status: &str) -> Option<Vec<Value>> {
        match self
            .get("order", &format!("/orders?status={status}&limit=1000"))
            .await
        {
            Ok((200, body)) => body["orders"].as_array().cloned(),
            _ => None,
        }
    }

    /// An order's saga timeline across all five domains (Null if unavailable).
    pub async fn timeline(&self, order_id: &str) -> Value {
        match self
            .get("order", &format!("/orders/{order_id}/timeline"))
            .await
        {
            Ok((_, body)) => body,
            Err(err) => json!({"error": err.to_string()}),
        }
    }

    /// Whether a service answers `GET /readyz` with 200.
    pub async fn ready(&self, service: &str) -> bool {
        matches!(self.get(service, "/readyz").await, Ok((200, _)))
    }
}

/// The broker plus the five services as child processes.
pub struct ProcSystem {
    /// The broker.
    pub nats: NatsServer,
    /// Options it was started with.
    pub options: ProcOptions,
    root: Option<tempfile::TempDir>,
    root_path: PathBuf,
    bin_dir: PathBuf,
    api: Api,
    children: BTreeMap<&'static str, Child>,
    starts: BTreeMap<&'static str, u32>,
}

impl ProcSystem {
    /// Starts nats-server and the five services (participants first), each ready.
    pub async fn start(options: ProcOptions) -> Self {
        let bin_dir = bin_dir();
        let nats = NatsServer::start().await;
        let root = tempfile::tempdir().expect("a temporary directory");
        let root_path = root.path().to_path_buf();
        std::fs::create_dir_all(root_path.join("logs")).expect("a logs directory");
        let ports = SERVICES.iter().map(|s| (*s, free_port())).collect();
        let http = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .build()
            .expect("an HTTP client");
        let mut system = Self {
            nats,
            options,
            root: Some(root),
            root_path,
            bin_dir,
            api: Api { ports, http },
            children: BTreeMap::new(),
            starts: BTreeMap::new(),
        };
        for service in SERVICES {
            system.start_service(service).await;
        }
        system
    }

    /// The HTTP handle.
    pub fn api(&self) -> Api {
        self.api.clone()
    }

    /// Root of the data dirs (`<root>/<service>`) and logs (`<root>/logs`).
    pub fn root(&self) -> &Path {
        &self.root_path
    }

    /// A service's data directory.
    pub fn data_dir(&self, service: &str) -> PathBuf {
        self.root_path.join(service)
    }

    /// A service's log file.
    pub fn log_path(&self, service: &str) -> PathBuf {
        self.root_path.join("logs").join(format!("{service}.log"))
    }

    /// Whether a service's process is running (reaps it if it exited).
    pub fn is_running(&mut self, service: &str) -> bool {
        self.exited(service).is_none() && self.children.contains_key(service)
    }

    /// If the service's process exited on its own, reaps it and returns how it ended.
    pub fn exited(&mut self, service: &str) -> Option<ExitStatus> {
        let child = self.children.get_mut(service)?;
        match child.try_wait() {
            Ok(Some(status)) => {
                self.children.remove(service);
                Some(status)
            }
            _ => None,
        }
    }

    /// Starts a service (no-op if it runs) and waits until `GET /readyz` answers 200.
    pub async fn start_service(&mut self, service: &'static str) {
        if self.is_running(service) {
            return;
        }
        let count = self.starts.entry(service).or_insert(0);
        *count += 1;
        let start_number = *count;
        let log_path = self.log_path(service);
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("a service log file");
        let _ = writeln!(
            log,
            "===== {service} start #{start_number} at {} ms =====",
            eventlog::clock::now_ms()
        );
        let binary = self.bin_dir.join(service);
        let mut command = Command::new(&binary);
        command
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("NATS_URL", self.nats.url())
            .env("DATA_DIR", self.data_dir(service))
            .env(
                "HTTP_ADDR",
                format!("127.0.0.1:{}", self.api.ports[service]),
            )
            .env("ADMIN_TOKEN", ADMIN_TOKEN)
            .env("RUST_LOG", &self.options.rust_log)
            .env("RUST_BACKTRACE", "1")
            // Allocator and sled cache settings reach the services, so a benchmark can compare
            // them.
            .envs(std::env::vars_os().filter(|(name, _)| {
                name.to_str()
                    .is_some_and(|name| name.starts_with("MIMALLOC_") || name == "SLED_CACHE_MB")
            }))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("a second handle on the log file"))
            .stderr(log);
        if service == "order" {
            command
                .env("SAGA_DEADLINE", humantime_secs(self.options.saga_deadline))
                .env("PAYMENT_URL", self.api.url("payment"))
                .env("STOCK_URL", self.api.url("stock"))
                .env("COUPON_URL", self.api.url("coupon"))
                .env("POINT_URL", self.api.url("point"));
        }
        if service == "payment" {
            command.env(
                "PG_DECLINE_ABOVE",
                self.options.pg_decline_above.to_string(),
            );
            if let Some(url) = &self.options.pg_url {
                command.env("PG_URL", url);
            }
            if let Some(timeout) = self.options.pg_timeout {
                command.env("PG_TIMEOUT", humantime_secs(timeout));
            }
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        self.children.insert(service, child);
        self.wait_ready(service).await;
    }

    async fn wait_ready(&mut self, service: &'static str) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.exited(service) {
                panic!(
                    "{service} exited with {status} while starting; log tail:\n{}",
                    self.log_tail(service, 40)
                );
            }
            if self.api.ready(service).await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{service} not ready within {READY_TIMEOUT:?}; log tail:\n{}",
                self.log_tail(service, 40)
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// SIGKILLs a service (a crash) and reaps it; returns whether it was running.
    pub fn kill(&mut self, service: &str) -> bool {
        match self.children.remove(service) {
            Some(mut child) => {
                let _ = child.kill();
                let _ = child.wait();
                true
            }
            None => false,
        }
    }

    /// Kills and starts a service again.
    pub async fn restart(&mut self, service: &'static str) {
        self.kill(service);
        self.start_service(service).await;
    }

    /// Stops a service gracefully: SIGTERM, then SIGKILL after [`STOP_GRACE`]. Returns how it
    /// ended (None if it was not running).
    pub async fn stop(&mut self, service: &str) -> Option<ExitStatus> {
        let mut child = self.children.remove(service)?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        let _ = child.kill();
        child.wait().ok()
    }

    /// Stops every service (order first), returning how each ended.
    pub async fn stop_all(&mut self) -> Vec<(&'static str, Option<ExitStatus>)> {
        let mut ended = Vec::new();
        for service in SERVICES.iter().rev() {
            ended.push((*service, self.stop(service).await));
        }
        ended
    }

    /// How often a service was started (the first start included).
    pub fn starts(&self, service: &str) -> u32 {
        self.starts.get(service).copied().unwrap_or(0)
    }

    /// The last `lines` lines of a service's log.
    pub fn log_tail(&self, service: &str, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_path(service)).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// How many messages the DLQ stream holds: messages a consumer gave up on.
    pub async fn dead_letters(&self) -> Result<u64, Box<dyn std::error::Error + Send + Sync>> {
        let js = async_nats::jetstream::new(async_nats::connect(self.nats.url()).await?);
        let mut dlq = js.get_stream(contract::DLQ_STREAM).await?;
        Ok(dlq.info().await?.state.messages)
    }

    /// Keeps the data root after the test (for inspection) and returns its path.
    pub fn keep_root(&mut self) -> PathBuf {
        if let Some(root) = self.root.take() {
            let _ = root.keep();
        }
        self.root_path.clone()
    }
}

impl Drop for ProcSystem {
    fn drop(&mut self) {
        for (_, mut child) in std::mem::take(&mut self.children) {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() && self.root.is_some() {
            let path = self.keep_root();
            eprintln!("test failed: data and logs kept in {}", path.display());
        }
    }
}

/// A duration as `SAGA_DEADLINE` takes it (`humantime`), in milliseconds.
fn humantime_secs(duration: Duration) -> String {
    format!("{}ms", duration.as_millis())
}

/// `target/<profile>`: where cargo put the service binaries next to this test executable.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    for service in SERVICES {
        let binary = dir.join(service);
        assert!(
            binary.is_file(),
            "no {service} binary at {}: run `cargo build --bins` first",
            binary.display()
        );
    }
    dir
}
