//! Test harness: a real nats-server and the five real services, each with its own data dir,
//! started in-process on fixed free ports so they can be stopped and restarted in place.

pub mod cdp;
pub mod pg;
pub mod procs;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bus::retry::RetryPolicy;
use bus::testing::{eventually, free_port, NatsServer};
use order::handler::{DataPlatformSettings, SupervisorPolicy};
use payment::gateway::{PgTimeouts, SimulatedRules};
use serde_json::{json, Value};
use servicekit::app::App;
use servicekit::cli::{NoArgs, Service};
use servicekit::settings::CommonArgs;

/// The admin token the harness configures.
pub const ADMIN_TOKEN: &str = "test-admin-token";
/// The services, in start order (participants first, so the order service finds them).
pub const SERVICES: [&str; 5] = ["payment", "stock", "coupon", "point", "order"];
/// How long tests wait for a saga to settle.
pub const SETTLE: Duration = Duration::from_secs(60);
/// Events between snapshots in end-to-end runs: small, so restarts start from a snapshot.
pub const E2E_SNAPSHOT_EVERY_EVENTS: u64 = 50;

/// How to start the system.
#[derive(Debug, Clone)]
pub struct Options {
    /// A real PG's base URL (`PG_URL`); the simulated PG when `None`.
    pub pg_url: Option<String>,
    /// Rules of the simulated PG.
    pub pg: SimulatedRules,
    /// Timeouts of the real PG's client.
    pub pg_timeouts: PgTimeouts,
    /// Operator alert webhook of the order service.
    pub alert_webhook_url: Option<String>,
    /// Saga deadline.
    pub saga_deadline: Duration,
    /// The order service's re-drive timing (production by default).
    pub supervisor: SupervisorPolicy,
    /// Data platform endpoint; without it the order service writes `dataplatform.jsonl`.
    pub dataplatform_url: Option<String>,
    /// Data platform timeouts and retry budget (a budget of seconds by default: see
    /// [`TEST_DATAPLATFORM_RETRY`]).
    pub dataplatform: DataPlatformSettings,
    /// Every service's HTTP rate limit, requests per second per client IP (`HTTP_RATE_LIMIT`).
    pub rate_limit: u32,
}

/// The harness's data platform retry policy: parked after about 1.5 s of backoff (6 attempts)
/// instead of production's minutes, so DLQ tests run in seconds.
pub const TEST_DATAPLATFORM_RETRY: RetryPolicy = RetryPolicy {
    backoff_ms_min: 100,
    backoff_ms_max: 400,
    budget_ms: 1_500,
};

impl Default for Options {
    fn default() -> Self {
        Self {
            saga_deadline: Duration::from_secs(30),
            pg: SimulatedRules::default(),
            pg_url: None,
            pg_timeouts: PgTimeouts::default(),
            alert_webhook_url: None,
            supervisor: SupervisorPolicy::default(),
            dataplatform_url: None,
            dataplatform: DataPlatformSettings {
                retry: TEST_DATAPLATFORM_RETRY,
                ..DataPlatformSettings::default()
            },
            rate_limit: servicekit::settings::DEFAULT_RATE_LIMIT_PER_SEC,
        }
    }
}

impl Options {
    /// The defaults, with a simulated PG that declines payments above `amount`.
    pub fn declining_above(amount: u64) -> Self {
        Self {
            pg: SimulatedRules {
                decline_above: amount,
                ..SimulatedRules::default()
            },
            ..Self::default()
        }
    }
}

/// The whole system under test.
pub struct System {
    /// The broker.
    pub nats: NatsServer,
    /// Root of the services' data dirs.
    pub root: tempfile::TempDir,
    /// Options it was started with.
    pub options: Options,
    ports: BTreeMap<&'static str, u16>,
    apps: BTreeMap<&'static str, App>,
    /// HTTP client.
    pub http: reqwest::Client,
}

impl System {
    /// Starts nats-server and all five services.
    pub async fn start(options: Options) -> Self {
        let nats = NatsServer::start().await;
        let root = tempfile::tempdir().expect("a temporary directory");
        let ports = SERVICES.iter().map(|s| (*s, free_port())).collect();
        let mut system = Self {
            nats,
            root,
            options,
            ports,
            apps: BTreeMap::new(),
            http: reqwest::Client::new(),
        };
        for service in SERVICES {
            let mut attempt = 1;
            loop {
                match system.try_start_service(service).await {
                    Ok(()) => break,
                    // `free_port` only found the port free: a test running alongside may have
                    // bound it since. Order starts last, so the participants' ports it is given
                    // are the final ones.
                    Err(err) if attempt < 3 && err.contains("in use") => {
                        attempt += 1;
                        system.ports.insert(service, free_port());
                    }
                    Err(err) => panic!("{service} did not start: {err}"),
                }
            }
        }
        system
    }

    /// Starts the system with default options.
    pub async fn start_default() -> Self {
        Self::start(Options::default()).await
    }

    /// A service's data directory.
    pub fn data_dir(&self, service: &str) -> PathBuf {
        self.root.path().join(service)
    }

    /// A service's base URL.
    pub fn url(&self, service: &str) -> String {
        format!("http://127.0.0.1:{}", self.ports[service])
    }

    fn common(&self, service: &str) -> CommonArgs {
        CommonArgs {
            nats_url: self.nats.url(),
            nats_user: None,
            nats_password: None,
            nats_creds: None,
            nats_tls: false,
            data_dir: Some(self.data_dir(service)),
            http_addr: Some(
                format!("127.0.0.1:{}", self.ports[service])
                    .parse()
                    .expect("a socket address"),
            ),
            admin_token: Some(ADMIN_TOKEN.to_owned()),
            rate_limit: self.options.rate_limit,
            // Snapshots every few events, so restarts in these tests start from snapshots.
            state: servicekit::settings::StateArgs {
                snapshot_every_events: E2E_SNAPSHOT_EVERY_EVENTS,
                ..Default::default()
            },
        }
    }

    /// Starts (or restarts) one service on its port and data dir.
    pub async fn start_service(&mut self, service: &'static str) {
        if let Err(err) = self.try_start_service(service).await {
            panic!("{service} did not start: {err}");
        }
    }

    async fn try_start_service(&mut self, service: &'static str) -> Result<(), String> {
        let common = self.common(service);
        let app = match service {
            "order" => {
                let settings = order::config::Settings {
                    common,
                    saga_deadline: self.options.saga_deadline,
                    participant_urls: [
                        self.url("payment"),
                        self.url("stock"),
                        self.url("coupon"),
                        self.url("point"),
                    ],
                    dataplatform_url: self.options.dataplatform_url.clone(),
                    alert_webhook_url: self.options.alert_webhook_url.clone(),
                    supervisor: self.options.supervisor,
                    dataplatform: self.options.dataplatform,
                };
                order::app::build(settings).await
            }
            "payment" => {
                payment::app::build(
                    &common,
                    self.options.pg_url.clone(),
                    self.options.pg_timeouts,
                    self.options.pg.clone(),
                )
                .await
            }
            "stock" => stock::StockParticipant::start(&common, NoArgs {}).await,
            "coupon" => coupon::CouponParticipant::start(&common, NoArgs {}).await,
            "point" => point::PointParticipant::start(&common, NoArgs {}).await,
            other => panic!("no service {other}"),
        };
        let app = app.map_err(|e| format!("{e:#}"))?;
        self.apps.insert(service, app);
        Ok(())
    }

    /// Stops one service gracefully and waits until it has released its data dir.
    pub async fn stop_service(&mut self, service: &str) {
        if let Some(app) = self.apps.remove(service) {
            app.stop()
                .await
                .unwrap_or_else(|e| panic!("{service} stopped with an error: {e}"));
        }
    }

    /// Stops every service.
    pub async fn stop_all(&mut self) {
        for service in SERVICES.iter().rev() {
            self.stop_service(service).await;
        }
    }

    /// GET a path on a service: status and JSON body.
    pub async fn get(&self, service: &str, path: &str) -> (u16, Value) {
        reachable(send_json(self.http.get(format!("{}{path}", self.url(service)))).await)
    }

    /// GET a path on a service with the admin token: status and JSON body.
    pub async fn get_admin(&self, service: &str, path: &str) -> (u16, Value) {
        let request = self.http.get(format!("{}{path}", self.url(service)));
        reachable(send_json(request.bearer_auth(ADMIN_TOKEN)).await)
    }

    /// POST JSON to a service, with the admin token.
    pub async fn post(&self, service: &str, path: &str, body: Value) -> (u16, Value) {
        let request = self.http.post(format!("{}{path}", self.url(service)));
        reachable(send_json(request.bearer_auth(ADMIN_TOKEN).json(&body)).await)
    }

    /// Sends an admin write and asserts the status it is meant to get.
    pub async fn seed(&self, write: AdminWrite) {
        let (status, body) = self.post(write.service, &write.path, write.body).await;
        assert_eq!(status, write.ok, "{} {}: {body}", write.service, write.path);
    }

    /// Restocks a SKU.
    pub async fn restock(&self, sku: &str, qty: u64) {
        self.seed(AdminWrite::restock(sku, qty)).await;
    }

    /// Issues a coupon.
    pub async fn issue_coupon(&self, coupon_id: &str, user_id: Option<&str>) {
        self.seed(AdminWrite::issue_coupon(coupon_id, user_id))
            .await;
    }

    /// Credits points.
    pub async fn credit(&self, user_id: &str, points: u64) {
        self.seed(AdminWrite::credit(user_id, points)).await;
    }

    /// Gives every participant something for alice to order with: 10 apples, her coupon C1 and
    /// 500 points.
    pub async fn seed_alice(&self) {
        self.restock("apple", 10).await;
        self.issue_coupon("C1", Some("alice")).await;
        self.credit("alice", 500).await;
    }

    /// Starts the system and seeds it with [`System::seed_alice`].
    pub async fn start_seeded(options: Options) -> Self {
        let system = Self::start(options).await;
        system.seed_alice().await;
        system
    }

    /// Places alice's order that takes a part from every participant (2 apples, C1, 100 points)
    /// on a system fresh from [`System::seed_alice`], and checks that it completed and what each
    /// participant has left. Returns the order's id.
    pub async fn complete_alice_order(&self) -> String {
        let id = self.settle(alice_order(2, 100, 900), "COMPLETED").await;
        assert_eq!(self.available("apple").await, 8);
        assert_eq!(self.balance("alice").await, 400);
        assert_eq!(self.coupon("C1").await["status"], "USED");
        id
    }

    /// Places an order; returns the reply's status and body.
    pub async fn place(&self, body: Value) -> (u16, Value) {
        let request = self.http.post(format!("{}/orders", self.url("order")));
        reachable(send_json(request.json(&body)).await)
    }

    /// Places an order and returns its id.
    pub async fn place_id(&self, body: Value) -> String {
        let (status, reply) = self.place(body).await;
        assert_eq!(status, 202, "placing: {reply}");
        reply["orderId"].as_str().expect("an orderId").to_owned()
    }

    /// Places an order, waits until it settles, and checks the status it settled in; returns its
    /// id.
    pub async fn settle(&self, body: Value, expected: &str) -> String {
        let id = self.place_id(body).await;
        let order = self.settled(&id).await;
        assert_eq!(order["status"], expected, "{order}");
        id
    }

    /// Waits until an order is terminal (COMPLETED or FAILED) or NEEDS_ATTENTION; returns it.
    pub async fn settled(&self, order_id: &str) -> Value {
        eventually(SETTLE, &format!("order {order_id} to settle"), || async {
            let (status, order) = self.get("order", &format!("/orders/{order_id}")).await;
            let done = matches!(
                order["status"].as_str(),
                Some("COMPLETED" | "FAILED" | "NEEDS_ATTENTION")
            );
            (status == 200 && done).then_some(order)
        })
        .await
    }

    /// An order as the order service shows it (Null if it does not know it).
    pub async fn order(&self, order_id: &str) -> Value {
        self.get("order", &format!("/orders/{order_id}")).await.1
    }

    /// Waits until an order's status is `status`; returns the order.
    pub async fn order_becomes(&self, order_id: &str, status: &str) -> Value {
        eventually(
            SETTLE,
            &format!("order {order_id} to be {status}"),
            || async {
                let order = self.order(order_id).await;
                (order["status"] == status).then_some(order)
            },
        )
        .await
    }

    /// Asks the order service, as the operator, to retry an order's compensation: the reply's
    /// status and body.
    pub async fn retry_compensation(&self, order_id: &str) -> (u16, Value) {
        let path = format!("/orders/{order_id}/retry-compensation");
        self.post("order", &path, Value::Null).await
    }

    /// Every entry of the order service's DLQ, through its admin route.
    pub async fn dlq_entries(&self) -> Vec<Value> {
        let (status, body) = self.get_admin("order", "/admin/dlq").await;
        assert_eq!(status, 200, "{body}");
        body["entries"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until the data platform has an order exactly once and the order log records the
    /// delivery.
    pub async fn delivered(&self, order_id: &str) {
        eventually(SETTLE, &format!("order {order_id} delivered"), || async {
            let recorded = self.order(order_id).await["dataPlatformDelivered"] == true;
            (recorded && self.dataplatform_lines(order_id) == 1).then_some(())
        })
        .await;
    }

    /// Available units of a SKU.
    pub async fn available(&self, sku: &str) -> u64 {
        self.get("stock", &format!("/stock/{sku}")).await.1["available"]
            .as_u64()
            .unwrap_or(0)
    }

    /// A user's point balance.
    pub async fn balance(&self, user_id: &str) -> u64 {
        self.get("point", &format!("/points/{user_id}")).await.1["balance"]
            .as_u64()
            .unwrap_or(0)
    }

    /// A coupon's state.
    pub async fn coupon(&self, coupon_id: &str) -> Value {
        self.get("coupon", &format!("/coupons/{coupon_id}")).await.1
    }

    /// A payment's status, or None.
    pub async fn payment_status(&self, order_id: &str) -> Option<String> {
        let (status, body) = self.get("payment", &format!("/payments/{order_id}")).await;
        (status == 200).then(|| body["status"].as_str().unwrap_or_default().to_owned())
    }

    /// A participant's own log of an order (an admin route).
    pub async fn log_types(&self, service: &str, order_id: &str) -> Vec<String> {
        let (_, body) = self.get_admin(service, &format!("/log/{order_id}")).await;
        record_types(&body)
    }

    /// The file the order service's data platform writes to when it has no endpoint.
    pub fn dataplatform_file(&self) -> PathBuf {
        self.data_dir("order").join("dataplatform.jsonl")
    }

    /// Makes the file data platform refuse every write by putting a directory where its file
    /// goes; removing that directory fixes it. Returns its path.
    pub fn break_dataplatform_file(&self) -> PathBuf {
        let sink = self.dataplatform_file();
        std::fs::create_dir(&sink).expect("the sink path is free");
        sink
    }

    /// Lines the data platform received for an order.
    pub fn dataplatform_lines(&self, order_id: &str) -> usize {
        std::fs::read_to_string(self.dataplatform_file())
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(order_id))
            .count()
    }

    /// A JetStream context of its own (for injecting messages).
    pub async fn jetstream(&self) -> async_nats::jetstream::Context {
        let client = async_nats::connect(self.nats.url())
            .await
            .expect("nats reachable");
        async_nats::jetstream::new(client)
    }
}

/// JSON bodies a test's endpoint received.
pub type Received = Arc<Mutex<Vec<Value>>>;

/// Serves `app` on a free local port; returns the URL of `path` on it.
pub async fn serve(app: axum::Router, path: &str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let addr = listener.local_addr().expect("bound");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}{path}")
}

/// A local operator webhook that keeps every alert POSTed to it: its URL and what it received.
pub async fn alert_webhook() -> (String, Received) {
    let received = Received::default();
    let kept = received.clone();
    let app = axum::Router::new().route(
        "/alerts",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let kept = kept.clone();
            async move {
                kept.lock().expect("lock").push(body);
                "ok"
            }
        }),
    );
    (serve(app, "/alerts").await, received)
}

/// The `type` of every record in a JSON array of log records (none if it is not an array).
pub fn record_types(records: &Value) -> Vec<String> {
    records
        .as_array()
        .map(|records| {
            records
                .iter()
                .filter_map(|r| r["type"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Sends a request: the reply's status and JSON body (Null when the body is not JSON).
pub async fn send_json(request: reqwest::RequestBuilder) -> reqwest::Result<(u16, Value)> {
    let response = request.send().await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

/// The reply of a service the test needs to be up.
fn reachable<T>(reply: reqwest::Result<T>) -> T {
    reply.unwrap_or_else(|e| panic!("service unreachable: {e}"))
}

/// An admin write that seeds a participant, and the status it gets when it is applied.
#[derive(Debug, Clone)]
pub struct AdminWrite {
    /// The service it goes to.
    pub service: &'static str,
    /// Its path.
    pub path: String,
    /// Its JSON body.
    pub body: Value,
    /// The status it gets when applied.
    pub ok: u16,
}

impl AdminWrite {
    fn new(service: &'static str, path: String, body: Value, ok: u16) -> Self {
        Self {
            service,
            path,
            body,
            ok,
        }
    }

    /// Restocks `qty` units of a SKU.
    pub fn restock(sku: &str, qty: u64) -> Self {
        Self::new(
            "stock",
            format!("/stock/{sku}/restock"),
            json!({"qty": qty}),
            200,
        )
    }

    /// Issues a coupon worth 100, to one user or to anyone.
    pub fn issue_coupon(coupon_id: &str, user_id: Option<&str>) -> Self {
        let body =
            json!({"couponId": coupon_id, "userId": user_id, "discount": 100, "expiresAt": null});
        Self::new("coupon", "/coupons".to_owned(), body, 201)
    }

    /// Credits a user's points.
    pub fn credit(user_id: &str, points: u64) -> Self {
        let path = format!("/points/{user_id}/credit");
        Self::new("point", path, json!({"points": points}), 200)
    }
}

/// alice's order of `apples` apples at 500 each with her coupon C1 and `points` points, paying
/// `amount`.
pub fn alice_order(apples: u64, points: u64, amount: u64) -> Value {
    order_body(
        "alice",
        &[("apple", apples, 500)],
        Some("C1"),
        points,
        amount,
    )
}

/// An order body.
pub fn order_body(
    user: &str,
    lines: &[(&str, u64, u64)],
    coupon: Option<&str>,
    points: u64,
    amount: u64,
) -> Value {
    json!({
        "userId": user,
        "items": lines.iter().map(|(sku, qty, price)| json!({"sku": sku, "qty": qty, "price": price})).collect::<Vec<_>>(),
        "couponId": coupon,
        "points": points,
        "amount": amount,
    })
}
