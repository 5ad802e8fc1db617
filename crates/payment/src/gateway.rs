//! Payment gateways: the trait, the deterministic simulated PG (embedded default), and an HTTP
//! client for a real PG. The orderId is the idempotency key of every call.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use contract::OrderPlaced;
use uuid::Uuid;

use crate::domain::GatewayDecision;

/// A gateway call that did not get an answer (worth retrying), as opposed to a decline.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("payment gateway unavailable: {0}")]
pub struct GatewayUnavailable(pub String);

/// A payment gateway. Both calls must be idempotent on the order id.
pub trait PaymentGateway: Send + Sync + 'static {
    /// Charges an order.
    fn approve(
        &self,
        order: &OrderPlaced,
    ) -> impl std::future::Future<Output = Result<GatewayDecision, GatewayUnavailable>> + Send;
    /// Cancels an order's charge. `authorization` is `None` when payment never learned the
    /// answer to its charge request; cancelling an order the PG never charged is a no-op there.
    fn cancel(
        &self,
        order_id: Uuid,
        authorization: Option<&str>,
    ) -> impl std::future::Future<Output = Result<(), GatewayUnavailable>> + Send;
}

/// Rules of the simulated PG.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulatedRules {
    /// Decline any amount above this.
    #[arg(long, env = "PG_DECLINE_ABOVE", default_value_t = 1_000_000)]
    pub decline_above: u64,
    /// Decline these users (comma separated).
    #[arg(long, env = "PG_DECLINE_USERS", value_delimiter = ',')]
    pub decline_users: Vec<String>,
    /// Fraction of orders declined as a simulated gateway failure (deterministic per order).
    #[arg(long, env = "PG_FAILURE_RATE", default_value_t = 0.0)]
    pub failure_rate: f64,
    /// Seed of the failure draw.
    #[arg(long, env = "PG_SEED", default_value_t = 0)]
    pub seed: u64,
    /// Latency added to every call, in ms.
    #[arg(long, env = "PG_LATENCY_MS", default_value_t = 0)]
    pub latency_ms: u64,
    /// Make every cancellation fail (to exercise compensation failure).
    #[arg(long, env = "PG_CANCEL_FAILS", default_value_t = false)]
    pub cancel_fails: bool,
}

impl Default for SimulatedRules {
    fn default() -> Self {
        Self {
            decline_above: 1_000_000,
            decline_users: Vec::new(),
            failure_rate: 0.0,
            seed: 0,
            latency_ms: 0,
            cancel_fails: false,
        }
    }
}

/// The embedded, deterministic PG: the same order always gets the same answer.
#[derive(Debug, Clone, Default)]
pub struct SimulatedGateway {
    /// Its rules.
    pub rules: SimulatedRules,
}

impl SimulatedGateway {
    /// The decision for an order, without latency: a pure function of rules and order.
    pub fn decide(&self, order: &OrderPlaced) -> GatewayDecision {
        let rules = &self.rules;
        if order.amount > rules.decline_above {
            return GatewayDecision::Declined {
                reason: format!(
                    "amount {} above limit {}",
                    order.amount, rules.decline_above
                ),
            };
        }
        if rules.decline_users.contains(&order.user_id) {
            return GatewayDecision::Declined {
                reason: format!("user {} is declined", order.user_id),
            };
        }
        if rules.failure_rate > 0.0 {
            let mut hasher = DefaultHasher::new();
            (rules.seed, order.order_id).hash(&mut hasher);
            let draw = (hasher.finish() % 1_000_000) as f64 / 1_000_000.0;
            if draw < rules.failure_rate {
                return GatewayDecision::Declined {
                    reason: "simulated gateway failure".into(),
                };
            }
        }
        GatewayDecision::Approved {
            authorization: format!("sim-{}", order.order_id.simple()),
        }
    }
}

impl PaymentGateway for SimulatedGateway {
    async fn approve(&self, order: &OrderPlaced) -> Result<GatewayDecision, GatewayUnavailable> {
        if self.rules.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.rules.latency_ms)).await;
        }
        Ok(self.decide(order))
    }

    async fn cancel(
        &self,
        order_id: Uuid,
        _authorization: Option<&str>,
    ) -> Result<(), GatewayUnavailable> {
        if self.rules.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.rules.latency_ms)).await;
        }
        if self.rules.cancel_fails {
            return Err(GatewayUnavailable(format!(
                "simulated cancel failure for {order_id}"
            )));
        }
        Ok(())
    }
}

/// A real PG over HTTP: `POST {base}/approvals` and `POST {base}/cancellations`, JSON bodies,
/// `Idempotency-Key: <orderId>`. A 2xx `{"approved": bool, "authorization"?, "reason"?}` answers.
#[derive(Debug, Clone)]
pub struct HttpGateway {
    /// Base URL.
    pub base_url: String,
    /// Client with timeouts (see [`HttpGateway::new`]).
    pub client: reqwest::Client,
}

/// Timeouts of the HTTP PG client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct PgTimeouts {
    /// How long connecting to the PG may take.
    #[arg(long = "pg-connect-timeout", env = "PG_CONNECT_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration, global = true)]
    pub connect: Duration,
    /// How long one whole PG call (connect, request, answer) may take.
    #[arg(long = "pg-timeout", env = "PG_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration, global = true)]
    pub request: Duration,
}

impl Default for PgTimeouts {
    fn default() -> Self {
        Self {
            connect: DEFAULT_PG_CONNECT_TIMEOUT,
            request: DEFAULT_PG_TIMEOUT,
        }
    }
}

/// Default of `PG_CONNECT_TIMEOUT`.
pub const DEFAULT_PG_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default of `PG_TIMEOUT`.
pub const DEFAULT_PG_TIMEOUT: Duration = Duration::from_secs(5);

impl HttpGateway {
    /// A client of the PG at `base_url` with explicit connect and request timeouts: a PG that
    /// does not answer in time counts as unavailable (the call is retried, never assumed).
    pub fn new(base_url: String, timeouts: PgTimeouts) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .timeout(timeouts.request)
            .build()?;
        Ok(Self { base_url, client })
    }
}

impl PaymentGateway for HttpGateway {
    async fn approve(&self, order: &OrderPlaced) -> Result<GatewayDecision, GatewayUnavailable> {
        let response = self
            .client
            .post(format!("{}/approvals", self.base_url.trim_end_matches('/')))
            .header("Idempotency-Key", order.order_id.to_string())
            .json(&serde_json::json!({"orderId": order.order_id, "userId": order.user_id, "amount": order.amount}))
            .send()
            .await
            .map_err(|e| GatewayUnavailable(e.to_string()))?;
        if !response.status().is_success() {
            return Err(GatewayUnavailable(format!("HTTP {}", response.status())));
        }
        let body: serde_json::Value = response
            .json()
            .await
            .map_err(|e| GatewayUnavailable(e.to_string()))?;
        if body.get("approved").and_then(|v| v.as_bool()) == Some(true) {
            let authorization = body
                .get("authorization")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned();
            Ok(GatewayDecision::Approved { authorization })
        } else {
            let reason = body
                .get("reason")
                .and_then(|v| v.as_str())
                .unwrap_or("declined")
                .to_owned();
            Ok(GatewayDecision::Declined { reason })
        }
    }

    async fn cancel(
        &self,
        order_id: Uuid,
        authorization: Option<&str>,
    ) -> Result<(), GatewayUnavailable> {
        let response = self
            .client
            .post(format!(
                "{}/cancellations",
                self.base_url.trim_end_matches('/')
            ))
            .header("Idempotency-Key", order_id.to_string())
            .json(&serde_json::json!({"orderId": order_id, "authorization": authorization}))
            .send()
            .await
            .map_err(|e| GatewayUnavailable(e.to_string()))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(GatewayUnavailable(format!("HTTP {}", response.status())))
        }
    }
}

/// The gateway a payment service runs with.
#[derive(Debug, Clone)]
pub enum Gateway {
    /// Embedded simulation.
    Simulated(SimulatedGateway),
    /// Real PG over HTTP.
    Http(HttpGateway),
}

impl PaymentGateway for Gateway {
    async fn approve(&self, order: &OrderPlaced) -> Result<GatewayDecision, GatewayUnavailable> {
        match self {
            Gateway::Simulated(g) => g.approve(order).await,
            Gateway::Http(g) => g.approve(order).await,
        }
    }

    async fn cancel(
        &self,
        order_id: Uuid,
        authorization: Option<&str>,
    ) -> Result<(), GatewayUnavailable> {
        match self {
            Gateway::Simulated(g) => g.cancel(order_id, authorization).await,
            Gateway::Http(g) => g.cancel(order_id, authorization).await,
        }
    }
}
