//! Typed settings of the order service: flags with environment fallbacks.

use std::time::Duration;

use bus::retry::RetryPolicy;
use servicekit::cli::ServiceCommand;
use servicekit::settings::CommonArgs;

use crate::handler::{DataPlatformSettings, SupervisorPolicy};

/// Default HTTP address of the order service.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8080";

/// The order service's command line.
#[derive(Debug, clap::Parser)]
#[command(
    name = "order",
    about = "Order service: accepts orders, tracks the saga, answers timelines"
)]
pub struct Cli {
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Settings shared by every service.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Order-specific settings.
    #[command(flatten)]
    pub order: OrderArgs,
}

/// Subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// `serve` (the default) and the offline log commands every service has.
    #[command(flatten)]
    Service(ServiceCommand),
    /// Operate the dead-letter queue through a running order service's admin API
    /// (token from ADMIN_TOKEN or --admin-token).
    Dlq(DlqArgs),
    /// Ask a running order service to retry the failed compensations of a NEEDS_ATTENTION order.
    RetryCompensation {
        /// The order.
        order_id: String,
        /// Base URL of the order service.
        #[arg(long, default_value = DEFAULT_ADMIN_URL)]
        url: String,
    },
}

/// Default base URL the `dlq` commands talk to.
pub const DEFAULT_ADMIN_URL: &str = "http://127.0.0.1:8080";

/// `order dlq ...`: which order service, and what to do.
#[derive(Debug, Clone, clap::Args)]
pub struct DlqArgs {
    /// Base URL of the order service.
    #[arg(long, default_value = DEFAULT_ADMIN_URL)]
    pub url: String,
    /// What to do.
    #[command(subcommand)]
    pub action: DlqAction,
}

/// The DLQ operations.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum DlqAction {
    /// List entries, with a summary by consumer and reason.
    List {
        /// Most entries to list.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Show one entry with its decoded payload.
    Show {
        /// The entry's DLQ sequence.
        seq: u64,
    },
    /// Publish an entry again on its original subject (under a fresh message id) and remove it.
    Redrive {
        /// The entry's DLQ sequence.
        seq: u64,
    },
    /// Remove an entry for good.
    Discard {
        /// The entry's DLQ sequence.
        seq: u64,
    },
}

/// Settings only the order service has.
#[derive(Debug, Clone, clap::Args)]
pub struct OrderArgs {
    /// How long a saga may stay PENDING before it fails.
    #[arg(long, env = "SAGA_DEADLINE", default_value = "30s", global = true)]
    pub saga_deadline: humantime::Duration,
    /// Base URL of the payment service (for timelines).
    #[arg(
        long,
        env = "PAYMENT_URL",
        default_value = "http://127.0.0.1:8081",
        global = true
    )]
    pub payment_url: String,
    /// Base URL of the stock service.
    #[arg(
        long,
        env = "STOCK_URL",
        default_value = "http://127.0.0.1:8082",
        global = true
    )]
    pub stock_url: String,
    /// Base URL of the coupon service.
    #[arg(
        long,
        env = "COUPON_URL",
        default_value = "http://127.0.0.1:8083",
        global = true
    )]
    pub coupon_url: String,
    /// Base URL of the point service.
    #[arg(
        long,
        env = "POINT_URL",
        default_value = "http://127.0.0.1:8084",
        global = true
    )]
    pub point_url: String,
    /// Data platform endpoint; without it completed orders go to `<data dir>/dataplatform.jsonl`.
    #[arg(long, env = "DATAPLATFORM_URL", global = true)]
    pub dataplatform_url: Option<String>,
    /// Webhook that receives every operator alert (`ops.alert.*`) as a JSON POST.
    #[arg(long, env = "ALERT_WEBHOOK_URL", global = true)]
    pub alert_webhook_url: Option<String>,
    /// Re-publishes of `order.failed` per round before a silent compensation makes the order
    /// NEEDS_ATTENTION.
    #[arg(long, env = "REDRIVE_MAX", default_value_t = crate::handler::REDRIVE_MAX, global = true)]
    pub redrive_max: u32,
    /// First re-drive backoff (doubles per re-drive).
    #[arg(long, env = "REDRIVE_BACKOFF_MIN", default_value = "2s", global = true)]
    pub redrive_backoff_min: humantime::Duration,
    /// Cap of the re-drive backoff.
    #[arg(
        long,
        env = "REDRIVE_BACKOFF_MAX",
        default_value = "60s",
        global = true
    )]
    pub redrive_backoff_max: humantime::Duration,
    /// Connect timeout of the data platform endpoint.
    #[arg(
        long,
        env = "DATAPLATFORM_CONNECT_TIMEOUT",
        default_value = "2s",
        global = true
    )]
    pub dataplatform_connect_timeout: humantime::Duration,
    /// Timeout of one data platform request (keep it below the 30 s consumer ack wait).
    #[arg(
        long,
        env = "DATAPLATFORM_TIMEOUT",
        default_value = "10s",
        global = true
    )]
    pub dataplatform_timeout: humantime::Duration,
    /// How long a failing data platform delivery is retried (backoff only) before it is parked
    /// in the DLQ with one alert.
    #[arg(
        long,
        env = "DATAPLATFORM_RETRY_BUDGET",
        default_value = "10m",
        global = true
    )]
    pub dataplatform_retry_budget: humantime::Duration,
    /// Cap of the backoff between data platform attempts.
    #[arg(
        long,
        env = "DATAPLATFORM_RETRY_BACKOFF_MAX",
        default_value = "30s",
        global = true
    )]
    pub dataplatform_retry_backoff_max: humantime::Duration,
}

/// Everything the order service needs to run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Shared settings.
    pub common: CommonArgs,
    /// Saga deadline.
    pub saga_deadline: Duration,
    /// Participant base URLs, in `Participant::ALL` order.
    pub participant_urls: [String; 4],
    /// Data platform endpoint.
    pub dataplatform_url: Option<String>,
    /// Operator alert webhook.
    pub alert_webhook_url: Option<String>,
    /// Re-drive and re-send timing.
    pub supervisor: SupervisorPolicy,
    /// Data platform timeouts and retry budget.
    pub dataplatform: DataPlatformSettings,
}

impl Settings {
    /// Settings from the parsed command line.
    pub fn from_cli(common: CommonArgs, order: OrderArgs) -> Self {
        Self {
            common,
            saga_deadline: order.saga_deadline.into(),
            participant_urls: [
                order.payment_url,
                order.stock_url,
                order.coupon_url,
                order.point_url,
            ],
            dataplatform_url: order.dataplatform_url,
            alert_webhook_url: order.alert_webhook_url,
            supervisor: SupervisorPolicy {
                redrive_max: order.redrive_max,
                redrive_backoff_ms_min: millis(order.redrive_backoff_min.into()),
                redrive_backoff_ms_max: millis(order.redrive_backoff_max.into()),
                ..SupervisorPolicy::default()
            },
            dataplatform: DataPlatformSettings {
                connect_timeout: order.dataplatform_connect_timeout.into(),
                request_timeout: order.dataplatform_timeout.into(),
                retry: RetryPolicy {
                    budget_ms: millis(order.dataplatform_retry_budget.into()),
                    backoff_ms_max: millis(order.dataplatform_retry_backoff_max.into()),
                    ..RetryPolicy::PRODUCTION
                },
            },
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
