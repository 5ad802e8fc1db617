//! Connecting to NATS and declaring the design's streams and durable consumers.

use std::time::Duration;

use async_nats::jetstream::{
    self,
    consumer::{pull, AckPolicy, DeliverPolicy},
    stream::{self, DiscardPolicy, RetentionPolicy, StorageType},
};

use crate::error::{Error, Result};
use crate::retry::{Backoff, RetryPolicy};
use contract::{Participant, DLQ_STREAM, OPS_STREAM, ORDER_STREAM};

/// Publish acks the outbox relay keeps outstanding at once (the consumers' ack window follows it).
pub const RELAY_MAX_IN_FLIGHT: usize = 1024;
/// Attempts to reach NATS at start-up before giving up.
pub const CONNECT_ATTEMPTS_MAX: u32 = 30;
/// First start-up connect backoff; doubles per failed attempt.
pub const CONNECT_BACKOFF_MS_MIN: u64 = 50;
/// Cap of the start-up connect backoff.
pub const CONNECT_BACKOFF_MS_MAX: u64 = 2_000;
/// How long one connect attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the server remembers a `Nats-Msg-Id`.
pub const DUPLICATE_WINDOW_SECS: u64 = 120;
/// How long saga streams keep messages (our own logs are the record; streams are transport).
pub const STREAM_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Most bytes a saga stream keeps (`STREAM_MAX_BYTES`); the oldest go first beyond it.
pub const STREAM_MAX_BYTES: i64 = 1024 * 1024 * 1024;
/// How long the DLQ keeps messages for operators.
pub const DLQ_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Most bytes the DLQ and OPS streams keep each (`DLQ_MAX_BYTES`).
pub const DLQ_MAX_BYTES: i64 = 256 * 1024 * 1024;

/// How much history the broker keeps. The services never need it to be correct (their sled logs
/// are the record; streams are transport), but a consumer that is down longer than the limits
/// allow loses the messages it has not read yet: the saga deadline and re-drives then settle
/// those orders. Every service declares the streams, so give every service the same values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Age limit of ORDER, PAYMENT, STOCK, COUPON, POINT.
    pub saga_max_age: Duration,
    /// Byte limit of each saga stream.
    pub saga_max_bytes: i64,
    /// Age limit of DLQ and OPS.
    pub dlq_max_age: Duration,
    /// Byte limit of DLQ and of OPS.
    pub dlq_max_bytes: i64,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            saga_max_age: STREAM_MAX_AGE,
            saga_max_bytes: STREAM_MAX_BYTES,
            dlq_max_age: DLQ_MAX_AGE,
            dlq_max_bytes: DLQ_MAX_BYTES,
        }
    }
}

/// The retention this process declares streams with: set once at start-up from the service's
/// settings ([`set_retention`]), read by every re-declaration (the relay and consumers repair
/// lost streams with the same values, so they never fight the service's settings).
static RETENTION: std::sync::RwLock<Option<Retention>> = std::sync::RwLock::new(None);

/// Sets the retention every later stream declaration of this process uses.
pub fn set_retention(retention: Retention) {
    if let Ok(mut current) = RETENTION.write() {
        *current = Some(retention);
    }
}

/// The retention this process declares streams with.
pub fn retention() -> Retention {
    RETENTION.read().ok().and_then(|r| *r).unwrap_or_default()
}
/// How long the server waits for an ack before redelivering. Handlers bound their own calls
/// below this (e.g. the data platform's request timeout), so a slow message is not handed out
/// twice; retries of failures are the runner's naks (`consumer::RetryPolicy`), not ack_wait.
pub const ACK_WAIT_SECS: u64 = 30;
/// Unacked messages a consumer may hold.
pub const MAX_ACK_PENDING: i64 = 20_000;

/// How to reach NATS: URL plus the credentials and TLS options passed through to the client.
#[derive(Debug, Clone, Default)]
pub struct NatsSettings {
    /// Server URL(s), comma separated.
    pub url: String,
    /// User name for user/password auth.
    pub user: Option<String>,
    /// Password for user/password auth (never logged).
    pub password: Option<String>,
    /// Path of a `.creds` file.
    pub credentials_file: Option<std::path::PathBuf>,
    /// Require TLS.
    pub tls_required: bool,
    /// Extra root certificate (PEM) for TLS.
    pub tls_root_cert: Option<std::path::PathBuf>,
    /// Client name shown by the server.
    pub name: String,
}

impl NatsSettings {
    /// Settings for a plain URL.
    pub fn new(url: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            name: name.into(),
            ..Self::default()
        }
    }

    async fn options(&self) -> Result<async_nats::ConnectOptions> {
        let mut options = match &self.credentials_file {
            Some(path) => async_nats::ConnectOptions::with_credentials_file(path.clone()).await?,
            None => async_nats::ConnectOptions::new(),
        };
        if let (Some(user), Some(password)) = (&self.user, &self.password) {
            options = options.user_and_password(user.clone(), password.clone());
        }
        if self.tls_required {
            options = options.require_tls(true);
        }
        if let Some(root) = &self.tls_root_cert {
            options = options.add_root_certificates(root.clone());
        }
        Ok(options
            .name(self.name.clone())
            // Reconnect forever: a broker restart must never take a service down.
            .max_reconnects(None)
            .connection_timeout(CONNECT_TIMEOUT))
    }
}

/// Connects, retrying with capped backoff ([`CONNECT_ATTEMPTS_MAX`] attempts, no wait after the
/// last); the error names the URL and the last cause.
pub async fn connect(settings: &NatsSettings) -> Result<async_nats::Client> {
    let mut backoff = Backoff::new(RetryPolicy::forever(
        CONNECT_BACKOFF_MS_MIN,
        CONNECT_BACKOFF_MS_MAX,
    ))
    .with_max_attempts(CONNECT_ATTEMPTS_MAX);
    loop {
        let attempt = u32::try_from(backoff.failures() + 1).unwrap_or(u32::MAX);
        let options = settings.options().await?;
        let failure = match tokio::time::timeout(CONNECT_TIMEOUT, options.connect(&settings.url))
            .await
        {
            Ok(Ok(client)) => return Ok(client),
            Ok(Err(err)) => {
                tracing::warn!(url = %settings.url, attempt, error = %err, "NATS not reachable yet");
                Error::Connect {
                    url: settings.url.clone(),
                    attempts: attempt,
                    source: err,
                }
            }
            Err(_) => {
                tracing::warn!(url = %settings.url, attempt, "NATS connect timed out");
                Error::Timeout {
                    op: "connect to NATS",
                    after: CONNECT_TIMEOUT.saturating_mul(attempt),
                }
            }
        };
        // Start-up has no shutdown to honour yet: the caller's process exits on Ctrl-C.
        match backoff.next_delay() {
            Some(delay) => tokio::time::sleep(delay).await,
            None => return Err(failure),
        }
    }
}

/// The JetStream context used by every service: many publish acks may be in flight.
pub fn context(client: async_nats::Client) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .max_ack_inflight(RELAY_MAX_IN_FLIGHT * 2)
        .backpressure_on_inflight(true)
        .build(client)
}

/// The design's streams with their configuration, at this process's [`retention`].
pub fn stream_configs() -> Vec<stream::Config> {
    stream_configs_with(&retention())
}

/// The design's streams with their configuration, at the given retention.
pub fn stream_configs_with(limits: &Retention) -> Vec<stream::Config> {
    let saga = |name: &str, subject: &str| stream::Config {
        name: name.to_owned(),
        subjects: vec![subject.to_owned()],
        storage: StorageType::File,
        retention: RetentionPolicy::Limits,
        discard: DiscardPolicy::Old,
        max_age: limits.saga_max_age,
        max_bytes: limits.saga_max_bytes,
        duplicate_window: Duration::from_secs(DUPLICATE_WINDOW_SECS),
        num_replicas: 1,
        ..Default::default()
    };
    let mut configs = vec![saga(ORDER_STREAM, "order.>")];
    for participant in Participant::ALL {
        configs.push(saga(
            participant.stream(),
            &format!("{}.>", participant.name()),
        ));
    }
    configs.push(stream::Config {
        max_age: limits.dlq_max_age,
        max_bytes: limits.dlq_max_bytes,
        ..saga(DLQ_STREAM, "dlq.>")
    });
    configs.push(stream::Config {
        max_age: limits.dlq_max_age,
        max_bytes: limits.dlq_max_bytes,
        ..saga(OPS_STREAM, "ops.>")
    });
    configs
}

/// Declares every stream idempotently: creates what is missing, updates drifted settings.
pub async fn ensure_streams(js: &jetstream::Context) -> Result<()> {
    ensure_streams_with(js, &retention()).await
}

/// [`ensure_streams`] at the given retention.
pub async fn ensure_streams_with(js: &jetstream::Context, limits: &Retention) -> Result<()> {
    for wanted in stream_configs_with(limits) {
        ensure_stream(js, wanted).await?;
    }
    Ok(())
}

async fn ensure_stream(js: &jetstream::Context, wanted: stream::Config) -> Result<()> {
    match js.get_stream(&wanted.name).await {
        Ok(existing) => {
            // `get_stream` just fetched the stream's info: no second round trip.
            let have = &existing.cached_info().config;
            if have.storage != wanted.storage {
                return Err(Error::JetStream {
                    op: "check stream",
                    message: format!(
                        "stream {} uses {:?} storage, the design wants {:?}; recreate it by hand",
                        wanted.name, have.storage, wanted.storage
                    ),
                });
            }
            let drifted = have.subjects != wanted.subjects
                || have.retention != wanted.retention
                || have.max_age != wanted.max_age
                || have.max_bytes != wanted.max_bytes
                || have.duplicate_window != wanted.duplicate_window
                || have.discard != wanted.discard;
            if drifted {
                tracing::warn!(stream = %wanted.name, "stream configuration drifted; updating");
                js.update_stream(&wanted)
                    .await
                    .map_err(|e| Error::jetstream("update stream", e))?;
            }
            Ok(())
        }
        Err(_) => {
            js.create_stream(wanted.clone())
                .await
                .map_err(|e| Error::jetstream("create stream", e))?;
            tracing::info!(stream = %wanted.name, "stream created");
            Ok(())
        }
    }
}

/// A durable pull consumer the design names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerSpec {
    /// Stream it reads.
    pub stream: String,
    /// Durable name.
    pub durable: String,
    /// Subject filter.
    pub filter: String,
    /// How the runner retries transient failures before the DLQ.
    pub retry: crate::retry::RetryPolicy,
    /// A consumer of the same stream that used to take this one's subjects too: when this one is
    /// first created, it starts after the last message that one acknowledged in order, instead of
    /// at the start of the stream.
    pub takes_over_from: Option<String>,
}

impl ConsumerSpec {
    /// A consumer spec.
    pub fn new(stream: &str, durable: &str, filter: &str) -> Self {
        Self {
            stream: stream.to_owned(),
            durable: durable.to_owned(),
            filter: filter.to_owned(),
            retry: crate::retry::RetryPolicy::default(),
            takes_over_from: None,
        }
    }

    /// The same consumer, taking over its subjects from `predecessor` (see
    /// [`ConsumerSpec::takes_over_from`]).
    pub fn taking_over_from(mut self, predecessor: &str) -> Self {
        self.takes_over_from = Some(predecessor.to_owned());
        self
    }

    /// The same consumer with another retry policy (tests use a budget of seconds).
    pub fn with_retry(mut self, retry: crate::retry::RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    fn config(&self) -> pull::Config {
        pull::Config {
            durable_name: Some(self.durable.clone()),
            filter_subject: self.filter.clone(),
            ack_policy: AckPolicy::Explicit,
            deliver_policy: DeliverPolicy::All,
            ack_wait: Duration::from_secs(ACK_WAIT_SECS),
            // Unlimited at the server: the runner itself moves a message to the DLQ once its
            // retry budget (`ConsumerSpec::retry`, minutes by default) is spent, so nothing is
            // ever silently dropped by the server.
            max_deliver: -1,
            max_ack_pending: MAX_ACK_PENDING,
            ..Default::default()
        }
    }
}

/// Declares a durable pull consumer idempotently and returns it.
pub async fn ensure_consumer(
    js: &jetstream::Context,
    spec: &ConsumerSpec,
) -> Result<jetstream::consumer::Consumer<pull::Config>> {
    let stream = js
        .get_stream(&spec.stream)
        .await
        .map_err(|e| Error::jetstream("get stream", e))?;
    let wanted = spec.config();
    match stream.get_consumer::<pull::Config>(&spec.durable).await {
        Ok(consumer) => {
            let have = &consumer.cached_info().config;
            if have.filter_subject != wanted.filter_subject
                || have.max_ack_pending != wanted.max_ack_pending
                || have.ack_wait != wanted.ack_wait
            {
                tracing::warn!(consumer = %spec.durable, "consumer configuration drifted; updating");
                return stream
                    .update_consumer(wanted)
                    .await
                    .map_err(|e| Error::jetstream("update consumer", e));
            }
            Ok(consumer)
        }
        Err(_) => {
            let mut wanted = wanted;
            if let Some(predecessor) = &spec.takes_over_from {
                // Messages up to the predecessor's ack floor were handled by it; those after it
                // may not have been. (A message the predecessor skips once narrowed, before this
                // consumer exists, is re-driven by the saga: order.failed until compensated.)
                if let Ok(mut before) = stream.get_consumer::<pull::Config>(predecessor).await {
                    if let Ok(info) = before.info().await {
                        wanted.deliver_policy = DeliverPolicy::ByStartSequence {
                            start_sequence: info.ack_floor.stream_sequence + 1,
                        };
                        tracing::info!(
                            consumer = %spec.durable,
                            predecessor = %predecessor,
                            start_sequence = info.ack_floor.stream_sequence + 1,
                            "consumer takes over from its predecessor"
                        );
                    }
                }
            }
            stream
                .create_consumer(wanted)
                .await
                .map_err(|e| Error::jetstream("create consumer", e))
        }
    }
}
