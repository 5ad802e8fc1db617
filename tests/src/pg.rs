//! A real HTTP payment gateway played by the test process: `POST /approvals` and
//! `POST /cancellations` exactly as payment's `HttpGateway` calls them (`Idempotency-Key:
//! <orderId>`, JSON bodies), idempotent on the order id, keeping a ledger of live charges.
//!
//! Ledger rules: an approval charges the order once (a repeat answers with the same
//! authorization); a cancellation voids the charge, and a cancellation of an order never charged
//! is a no-op that is remembered, so a later approval of that order declines. How each call is
//! answered (at once, late, never, with jitter) is configurable per user, so a test can make one
//! order slow without knowing its id in advance.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

/// How the PG answers an approval. The charge (or the decline) is always decided first: the
/// behaviour only delays the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Answers at once.
    Prompt,
    /// Charges, then answers after this long (longer than payment's PG_TIMEOUT: a lost answer).
    AnswerAfter(Duration),
    /// Charges, then never answers (the caller times out or dies).
    Hang,
    /// Answers after a latency drawn per call, up to this long.
    Jitter(Duration),
}

/// One order's charge at the PG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// The amount charged.
    pub amount: u64,
    /// The authorization handed out.
    pub authorization: String,
    /// Voided by a cancellation.
    pub voided: bool,
}

#[derive(Debug, Default)]
struct Ledger {
    charges: HashMap<String, Charge>,
    /// Orders cancelled (charged or not): a later approval declines.
    cancelled: HashSet<String>,
    /// Approval calls per order.
    approval_calls: HashMap<String, u32>,
    /// Charges made per order (a repeat approval must not charge again).
    charges_made: HashMap<String, u32>,
    /// Cancellation calls per order.
    cancel_calls: HashMap<String, u32>,
    /// Behaviour per user id.
    behaviours: HashMap<String, Behaviour>,
    default_behaviour: Option<Behaviour>,
    /// Cancellations answer 503 while set.
    cancels_fail: bool,
    /// Requests whose Idempotency-Key did not match the body's orderId.
    bad_requests: Vec<String>,
    seed: u64,
}

/// The fake PG: its URL, and a handle on its ledger and behaviour.
#[derive(Clone)]
pub struct FakePg {
    url: String,
    ledger: Arc<Mutex<Ledger>>,
}

impl FakePg {
    /// Starts the PG on a free local port, answering promptly by default.
    pub async fn start() -> Self {
        let ledger = Arc::new(Mutex::new(Ledger {
            default_behaviour: Some(Behaviour::Prompt),
            ..Ledger::default()
        }));
        let app = Router::new()
            .route("/approvals", post(approve))
            .route("/cancellations", post(cancel))
            .with_state(ledger.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let addr = listener.local_addr().expect("bound");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url: format!("http://{addr}"),
            ledger,
        }
    }

    /// Base URL (payment's `PG_URL`).
    pub fn url(&self) -> String {
        self.url.clone()
    }

    fn with<R>(&self, f: impl FnOnce(&mut Ledger) -> R) -> R {
        f(&mut self.ledger.lock().expect("the PG ledger lock"))
    }

    /// How approvals of a user's orders are answered.
    pub fn set_behaviour(&self, user_id: &str, behaviour: Behaviour) {
        self.with(|l| l.behaviours.insert(user_id.to_owned(), behaviour));
    }

    /// How approvals of other users' orders are answered.
    pub fn set_default_behaviour(&self, behaviour: Behaviour) {
        self.with(|l| l.default_behaviour = Some(behaviour));
    }

    /// Seed of the jitter draw.
    pub fn set_seed(&self, seed: u64) {
        self.with(|l| l.seed = seed);
    }

    /// Makes cancellations fail (503) or succeed again.
    pub fn set_cancels_fail(&self, fail: bool) {
        self.with(|l| l.cancels_fail = fail);
    }

    /// The amount of an order's live (charged, not voided) charge.
    pub fn live_charge(&self, order_id: &str) -> Option<u64> {
        self.with(|l| {
            l.charges
                .get(order_id)
                .filter(|c| !c.voided)
                .map(|c| c.amount)
        })
    }

    /// The order's charge, voided or not.
    pub fn charge(&self, order_id: &str) -> Option<Charge> {
        self.with(|l| l.charges.get(order_id).cloned())
    }

    /// Orders with a live charge.
    pub fn live_orders(&self) -> Vec<String> {
        self.with(|l| {
            l.charges
                .iter()
                .filter(|(_, c)| !c.voided)
                .map(|(id, _)| id.clone())
                .collect()
        })
    }

    /// How often payment asked to charge an order.
    pub fn approval_calls(&self, order_id: &str) -> u32 {
        self.with(|l| l.approval_calls.get(order_id).copied().unwrap_or(0))
    }

    /// How often the PG actually charged an order (at most once if payment behaves).
    pub fn charges_made(&self, order_id: &str) -> u32 {
        self.with(|l| l.charges_made.get(order_id).copied().unwrap_or(0))
    }

    /// How often payment asked to cancel an order.
    pub fn cancel_calls(&self, order_id: &str) -> u32 {
        self.with(|l| l.cancel_calls.get(order_id).copied().unwrap_or(0))
    }

    /// Orders with an approval call (in arrival order is not kept).
    pub fn orders_asked(&self) -> Vec<String> {
        self.with(|l| l.approval_calls.keys().cloned().collect())
    }

    /// Requests that broke the protocol (Idempotency-Key differing from the orderId).
    pub fn bad_requests(&self) -> Vec<String> {
        self.with(|l| l.bad_requests.clone())
    }
}

/// The ledger as the PG's handlers extract it.
type Shared = State<Arc<Mutex<Ledger>>>;
/// What a PG endpoint answers: JSON, or only a status.
type Answer = Result<Json<Value>, StatusCode>;

fn order_id_of(
    ledger: &Mutex<Ledger>,
    headers: &HeaderMap,
    body: &Value,
) -> Result<String, StatusCode> {
    let order_id = body["orderId"].as_str().unwrap_or_default().to_owned();
    let key = headers
        .get("Idempotency-Key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if order_id.is_empty() || key != order_id {
        ledger
            .lock()
            .expect("the PG ledger lock")
            .bad_requests
            .push(format!("key {key:?} for body {body}"));
        return Err(StatusCode::BAD_REQUEST);
    }
    Ok(order_id)
}

async fn approve(State(ledger): Shared, headers: HeaderMap, Json(body): Json<Value>) -> Answer {
    let order_id = order_id_of(&ledger, &headers, &body)?;
    let user_id = body["userId"].as_str().unwrap_or_default().to_owned();
    let amount = body["amount"].as_u64().ok_or(StatusCode::BAD_REQUEST)?;
    let (answer, behaviour, call, seed) = {
        let mut l = ledger.lock().expect("the PG ledger lock");
        let call = {
            let calls = l.approval_calls.entry(order_id.clone()).or_insert(0);
            *calls += 1;
            *calls
        };
        let answer = if l.cancelled.contains(&order_id) {
            json!({"approved": false, "reason": "order cancelled at the PG"})
        } else if let Some(charge) = l.charges.get(&order_id) {
            // Idempotent: the same order gets the same approval, never a second charge.
            json!({"approved": true, "authorization": charge.authorization})
        } else {
            let authorization = format!("pg-{order_id}");
            l.charges.insert(
                order_id.clone(),
                Charge {
                    amount,
                    authorization: authorization.clone(),
                    voided: false,
                },
            );
            *l.charges_made.entry(order_id.clone()).or_insert(0) += 1;
            json!({"approved": true, "authorization": authorization})
        };
        let behaviour = l
            .behaviours
            .get(&user_id)
            .copied()
            .or(l.default_behaviour)
            .unwrap_or(Behaviour::Prompt);
        (answer, behaviour, call, l.seed)
    };
    match behaviour {
        Behaviour::Prompt => {}
        Behaviour::AnswerAfter(delay) => tokio::time::sleep(delay).await,
        Behaviour::Hang => std::future::pending::<()>().await,
        Behaviour::Jitter(max) => {
            let mut hasher = DefaultHasher::new();
            (seed, &order_id, call).hash(&mut hasher);
            let max_ms = max.as_millis().max(1) as u64;
            tokio::time::sleep(Duration::from_millis(hasher.finish() % max_ms)).await;
        }
    }
    Ok(Json(answer))
}

async fn cancel(State(ledger): Shared, headers: HeaderMap, Json(body): Json<Value>) -> Answer {
    let order_id = order_id_of(&ledger, &headers, &body)?;
    let mut l = ledger.lock().expect("the PG ledger lock");
    *l.cancel_calls.entry(order_id.clone()).or_insert(0) += 1;
    if l.cancels_fail {
        return Err(StatusCode::SERVICE_UNAVAILABLE);
    }
    // Idempotent: voiding twice, or cancelling an order never charged, is a remembered no-op.
    if let Some(charge) = l.charges.get_mut(&order_id) {
        charge.voided = true;
    }
    l.cancelled.insert(order_id);
    Ok(Json(json!({"cancelled": true})))
}
