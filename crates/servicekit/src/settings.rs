//! Settings every service takes (flags with environment fallbacks) and where it runs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::error::Result;
use bus::jetstream::NatsSettings;
use eventlog::event_store::{EventStore, StoreConfig};

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
}

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
        }
    }

    /// The data directory, defaulting to `./data/<domain>`.
    pub fn data_dir(&self, domain: &str) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("data").join(domain))
    }
}

/// Opens a service's log.
pub fn open_store(dir: &Path) -> Result<EventStore> {
    std::fs::create_dir_all(dir)?;
    Ok(EventStore::open(StoreConfig::new(dir))?)
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
}
