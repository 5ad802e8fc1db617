//! Settings every service takes (flags with environment fallbacks) and where it runs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::Result;
use bus::jetstream::{NatsSettings, Retention};
use eventlog::event_store::{
    EventStore, StoreConfig, DEFAULT_DEDUP_CACHE_ENTRIES, DEFAULT_DEDUP_FILTER_KEYS,
    DEFAULT_SLED_CACHE_MB,
};
use eventlog::snapshot::{SnapshotPolicy, DEFAULT_SNAPSHOT_EVERY_EVENTS, DEFAULT_SNAPSHOT_KEEP};

/// Settings every service takes, as flags with environment fallbacks.
#[derive(Clone, clap::Args)]
pub struct CommonArgs {
    /// NATS server URL.
    #[arg(
        long,
        env = "NATS_URL",
        default_value = "nats://127.0.0.1:4222",
        global = true
    )]
    pub nats_url: String,
    /// NATS user (with --nats-password).
    #[arg(long, env = "NATS_USER", global = true)]
    pub nats_user: Option<String>,
    /// NATS password.
    #[arg(long, env = "NATS_PASSWORD", global = true, hide_env_values = true)]
    pub nats_password: Option<String>,
    /// NATS credentials file.
    #[arg(long, env = "NATS_CREDS", global = true)]
    pub nats_creds: Option<PathBuf>,
    /// Require TLS to NATS.
    #[arg(long, env = "NATS_TLS", global = true)]
    pub nats_tls: bool,
    /// Directory of this service's event log.
    #[arg(long, env = "DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// HTTP listen address.
    #[arg(long, env = "HTTP_ADDR", global = true)]
    pub http_addr: Option<SocketAddr>,
    /// Bearer token for admin routes; without it admin routes are off.
    #[arg(long, env = "ADMIN_TOKEN", global = true, hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Requests per second the HTTP API accepts (beyond that: 429).
    #[arg(long, env = "HTTP_RATE_LIMIT", default_value_t = DEFAULT_RATE_LIMIT_PER_SEC, global = true)]
    pub rate_limit: u32,
    /// Snapshots, store caches and broker retention: what keeps a long-lived service bounded.
    #[command(flatten)]
    pub state: StateArgs,
}

/// Settings for state that lives for years: snapshots, the dedup index, sled's cache, and how much
/// history the broker keeps (README, "State that lives for years").
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct StateArgs {
    /// Snapshot the state after this many events (0: not by count).
    #[arg(long, env = "SNAPSHOT_EVERY_EVENTS", default_value_t = DEFAULT_SNAPSHOT_EVERY_EVENTS, global = true)]
    pub snapshot_every_events: u64,
    /// Snapshot at least this often while events arrive, e.g. `60s` (`0s`: not by time).
    #[arg(long, env = "SNAPSHOT_EVERY", default_value = "60s", value_parser = humantime::parse_duration, global = true)]
    pub snapshot_every: Duration,
    /// Snapshots kept (the newest; 0 turns snapshots off).
    #[arg(long, env = "SNAPSHOT_KEEP", default_value_t = DEFAULT_SNAPSHOT_KEEP, global = true)]
    pub snapshot_keep: usize,
    /// sled's page cache, in MiB.
    #[arg(long, env = "SLED_CACHE_MB", default_value_t = DEFAULT_SLED_CACHE_MB, global = true)]
    pub sled_cache_mb: u64,
    /// Dedup keys the in-memory Bloom filter is sized for (~1.2 bytes each; grown at start to
    /// twice the keys on disk).
    #[arg(long, env = "DEDUP_FILTER_KEYS", default_value_t = DEFAULT_DEDUP_FILTER_KEYS, global = true)]
    pub dedup_filter_keys: usize,
    /// Recent dedup records kept in memory.
    #[arg(long, env = "DEDUP_CACHE_ENTRIES", default_value_t = DEFAULT_DEDUP_CACHE_ENTRIES, global = true)]
    pub dedup_cache_entries: usize,
    /// How long the saga streams (ORDER, PAYMENT, STOCK, COUPON, POINT) keep messages.
    #[arg(long, env = "STREAM_MAX_AGE", default_value = "7days", value_parser = humantime::parse_duration, global = true)]
    pub stream_max_age: Duration,
    /// Most MiB each saga stream keeps (the oldest messages go first).
    #[arg(long, env = "STREAM_MAX_MB", default_value_t = DEFAULT_STREAM_MAX_MB, global = true)]
    pub stream_max_mb: u64,
    /// How long the DLQ and OPS streams keep messages.
    #[arg(long, env = "DLQ_MAX_AGE", default_value = "30days", value_parser = humantime::parse_duration, global = true)]
    pub dlq_max_age: Duration,
    /// Most MiB the DLQ and OPS streams keep each.
    #[arg(long, env = "DLQ_MAX_MB", default_value_t = DEFAULT_DLQ_MAX_MB, global = true)]
    pub dlq_max_mb: u64,
}

impl Default for StateArgs {
    fn default() -> Self {
        Self {
            snapshot_every_events: DEFAULT_SNAPSHOT_EVERY_EVENTS,
            snapshot_every: eventlog::snapshot::DEFAULT_SNAPSHOT_EVERY,
            snapshot_keep: DEFAULT_SNAPSHOT_KEEP,
            sled_cache_mb: DEFAULT_SLED_CACHE_MB,
            dedup_filter_keys: DEFAULT_DEDUP_FILTER_KEYS,
            dedup_cache_entries: DEFAULT_DEDUP_CACHE_ENTRIES,
            stream_max_age: bus::jetstream::STREAM_MAX_AGE,
            stream_max_mb: DEFAULT_STREAM_MAX_MB,
            dlq_max_age: bus::jetstream::DLQ_MAX_AGE,
            dlq_max_mb: DEFAULT_DLQ_MAX_MB,
        }
    }
}

/// Default byte limit of each saga stream, MiB.
pub const DEFAULT_STREAM_MAX_MB: u64 = 1024;
/// Default byte limit of DLQ and OPS, MiB.
pub const DEFAULT_DLQ_MAX_MB: u64 = 256;
const MIB: u64 = 1024 * 1024;

/// Default HTTP rate limit of a service, requests per second.
pub const DEFAULT_RATE_LIMIT_PER_SEC: u32 = 10_000;
/// Largest request body any route accepts unless it sets its own limit.
pub const MAX_REQUEST_BODY_BYTES: usize = 64 * 1024;

// Secrets (admin token, NATS password) must never reach a log line, so Debug redacts them.
impl std::fmt::Debug for CommonArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redact = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("CommonArgs")
            .field("nats_url", &self.nats_url)
            .field("nats_user", &self.nats_user)
            .field("nats_password", &redact(&self.nats_password))
            .field("nats_creds", &self.nats_creds)
            .field("nats_tls", &self.nats_tls)
            .field("data_dir", &self.data_dir)
            .field("http_addr", &self.http_addr)
            .field("admin_token", &redact(&self.admin_token))
            .field("rate_limit", &self.rate_limit)
            .field("state", &self.state)
            .finish()
    }
}

impl CommonArgs {
    /// NATS connection settings for a service.
    pub fn nats(&self, name: &str) -> NatsSettings {
        NatsSettings {
            url: self.nats_url.clone(),
            user: self.nats_user.clone(),
            password: self.nats_password.clone(),
            credentials_file: self.nats_creds.clone(),
            tls_required: self.nats_tls,
            tls_root_cert: None,
            name: name.to_owned(),
        }
    }

    /// Where and how a service runs, with its default HTTP address.
    pub fn service_config(&self, domain: &'static str, default_addr: &str) -> ServiceConfig {
        ServiceConfig {
            domain,
            data_dir: self.data_dir(domain),
            http_addr: http_addr_or(self, default_addr),
            nats: self.nats(domain),
            rate_limit: self.rate_limit,
            admin_token: self.admin_token.clone(),
            store: self.store_config(domain),
            snapshots: self.snapshot_policy(),
            retention: self.retention(),
        }
    }

    /// How the service's log is opened: its directory, sled cache and dedup index sizes.
    pub fn store_config(&self, domain: &str) -> StoreConfig {
        StoreConfig {
            cache_capacity_bytes: self.state.sled_cache_mb.saturating_mul(MIB),
            dedup_filter_keys: self.state.dedup_filter_keys,
            dedup_cache_entries: self.state.dedup_cache_entries,
            ..StoreConfig::new(self.data_dir(domain))
        }
    }

    /// When the service snapshots its state.
    pub fn snapshot_policy(&self) -> SnapshotPolicy {
        SnapshotPolicy {
            every_events: self.state.snapshot_every_events,
            every: self.state.snapshot_every,
            keep: self.state.snapshot_keep,
        }
    }

    /// The broker retention the service declares its streams with.
    pub fn retention(&self) -> Retention {
        let bytes = |mb: u64| i64::try_from(mb.saturating_mul(MIB)).unwrap_or(i64::MAX);
        Retention {
            saga_max_age: self.state.stream_max_age,
            saga_max_bytes: bytes(self.state.stream_max_mb),
            dlq_max_age: self.state.dlq_max_age,
            dlq_max_bytes: bytes(self.state.dlq_max_mb),
        }
    }

    /// The data directory, defaulting to `./data/<domain>`.
    pub fn data_dir(&self, domain: &str) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("data").join(domain))
    }
}

/// Opens a service's log with the default cache and dedup sizes.
pub fn open_store(dir: &Path) -> Result<EventStore> {
    open_store_with(&StoreConfig::new(dir))
}

/// Opens a service's log as configured.
pub fn open_store_with(config: &StoreConfig) -> Result<EventStore> {
    std::fs::create_dir_all(&config.path)?;
    Ok(EventStore::open(config.clone())?)
}

/// A participant's HTTP address: the flag, or its default.
pub fn http_addr_or(common: &CommonArgs, default: &str) -> SocketAddr {
    common
        .http_addr
        .unwrap_or_else(|| default.parse().expect("default addresses are valid"))
}

/// Where a service listens and what it needs to start.
pub struct ServiceConfig {
    /// Domain name.
    pub domain: &'static str,
    /// Data directory.
    pub data_dir: PathBuf,
    /// HTTP address (port 0 picks a free one).
    pub http_addr: SocketAddr,
    /// NATS connection.
    pub nats: NatsSettings,
    /// HTTP requests per second accepted.
    pub rate_limit: u32,
    /// Admin bearer token of the common admin routes (`/log/{orderId}`); `None` turns them off.
    pub admin_token: Option<String>,
    /// How the log is opened (its path is `data_dir`).
    pub store: StoreConfig,
    /// When the state is snapshotted.
    pub snapshots: SnapshotPolicy,
    /// How much history the broker keeps.
    pub retention: Retention,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        state: StateArgs,
    }

    #[test]
    fn state_settings_default_to_the_same_values_on_the_command_line_and_in_code() {
        let parsed = Cli::try_parse_from(["service"]).expect("parses");
        assert_eq!(parsed.state, StateArgs::default());
    }

    #[test]
    fn state_settings_parse_durations_and_sizes() {
        let parsed = Cli::try_parse_from([
            "service",
            "--snapshot-every=5m",
            "--snapshot-every-events=0",
            "--stream-max-age=3days",
            "--stream-max-mb=64",
            "--sled-cache-mb=48",
        ])
        .expect("parses");
        assert_eq!(parsed.state.snapshot_every, Duration::from_secs(300));
        assert_eq!(parsed.state.snapshot_every_events, 0);
        assert_eq!(
            parsed.state.stream_max_age,
            Duration::from_secs(3 * 24 * 3600)
        );
        assert_eq!(parsed.state.stream_max_mb, 64);
        assert_eq!(parsed.state.sled_cache_mb, 48);
    }
}
