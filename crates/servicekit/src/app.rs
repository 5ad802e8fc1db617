//! Starting and stopping a service: log, live state, NATS, relay, consumers, HTTP, as one unit.

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::Router;
use futures::future::BoxFuture;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::http::{common_routes, probe_routes, serve_http};
use crate::settings::{open_store_with, ServiceConfig};
use bus::jetstream as js_setup;
use bus::jetstream::ConsumerSpec;
use bus::outbox::run_relay;
use contract::{ORDER_FAILED, ORDER_PLACED, ORDER_STREAM};
use eventlog::domain::Domain;
use eventlog::event_store::StoreConfig;
use eventlog::live::Live;

/// How often the rate limiter forgets clients whose quota is full again.
pub const RATE_LIMIT_SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// What a service's wiring gets to build its routes and tasks from.
pub struct Parts<D: Domain> {
    /// Live state over the log.
    pub live: Live<D>,
    /// NATS client.
    pub nats: async_nats::Client,
    /// JetStream context.
    pub js: async_nats::jetstream::Context,
    /// Cancelled on shutdown.
    pub shutdown: CancellationToken,
    /// The service's data directory.
    pub data_dir: PathBuf,
    /// What `/metrics` refreshes before rendering; the wiring may add gauges of its own.
    pub scrape: crate::observe::ScrapeHooks,
}

/// A background task of a service, with a name for the shutdown report.
pub type Task = (&'static str, BoxFuture<'static, Result<()>>);

/// Names a background task whose error is any of the layers' errors.
pub fn task<E>(
    name: &'static str,
    future: impl std::future::Future<Output = std::result::Result<(), E>> + Send + 'static,
) -> Task
where
    crate::Error: From<E>,
{
    use futures::FutureExt;
    (name, future.map(|r| r.map_err(crate::Error::from)).boxed())
}

/// A running service.
pub struct App {
    addr: SocketAddr,
    shutdown: CancellationToken,
    fatal: CancellationToken,
    tasks: JoinSet<(&'static str, Result<()>)>,
    domain: &'static str,
}

impl App {
    /// Opens the log, rebuilds state, connects to NATS, declares streams, and starts the relay,
    /// the tasks `wire` returns, and HTTP with the common routes merged into `wire`'s router.
    pub async fn start<D: Domain>(
        config: ServiceConfig,
        wire: impl FnOnce(&Parts<D>) -> Result<(Router, Vec<Task>)>,
    ) -> Result<App> {
        // Install the Prometheus recorder before anything records.
        let _ = crate::telemetry::metrics_handle();
        let store = open_store_with(&StoreConfig {
            path: config.data_dir.clone(),
            ..config.store.clone()
        })?;
        let live = Live::<D>::open(store.clone())?;
        let nats = js_setup::connect(&config.nats).await?;
        let js = js_setup::context(nats.clone());
        // Every later re-declaration (relay, consumers) uses the same limits.
        js_setup::set_retention(config.retention);
        js_setup::ensure_streams(&js).await?;
        let shutdown = CancellationToken::new();
        let parts = Parts {
            live: live.clone(),
            nats: nats.clone(),
            js: js.clone(),
            shutdown: shutdown.clone(),
            data_dir: config.data_dir.clone(),
            scrape: crate::observe::service_hooks(config.domain, store.clone(), js.clone()),
        };
        let (router, tasks) = wire(&parts)?;
        let rate_limit = crate::http::rate_limit_config(config.rate_limit);
        let router = router
            .merge(common_routes(
                &live,
                config.domain,
                nats.clone(),
                config.admin_token.clone(),
            ))
            .merge(crate::observe::metrics_routes(parts.scrape.clone()))
            // Before any layer: it reaches only the routes' method routers, not layered routes.
            .method_not_allowed_fallback(crate::http::method_not_allowed)
            .fallback(crate::http::route_not_found)
            .layer(axum::extract::DefaultBodyLimit::max(
                crate::settings::MAX_REQUEST_BODY_BYTES,
            ))
            .layer(crate::http::rate_limit_layer(rate_limit.clone()))
            // The probes are merged after the rate limit: they are never limited.
            .merge(probe_routes(&live, config.domain, nats.clone()))
            // Outermost: every request is counted and traced, refused ones included.
            .layer(axum::middleware::from_fn_with_state(
                config.domain,
                crate::observe::track_http,
            ));
        let listener = tokio::net::TcpListener::bind(config.http_addr).await?;
        let addr = listener.local_addr()?;

        let mut set = JoinSet::new();
        let relay_shutdown = shutdown.clone();
        set.spawn(async move {
            (
                "outbox relay",
                run_relay(store, js, relay_shutdown)
                    .await
                    .map(|_| ())
                    .map_err(crate::Error::from),
            )
        });
        for (name, task) in tasks {
            set.spawn(async move { (name, task.await) });
        }
        // The limiter keeps a state per client IP; clients gone quiet are forgotten.
        let sweep_shutdown = shutdown.clone();
        set.spawn(async move {
            let mut every = tokio::time::interval(RATE_LIMIT_SWEEP_INTERVAL);
            loop {
                tokio::select! {
                    _ = every.tick() => {
                        rate_limit.limiter().retain_recent();
                        rate_limit.limiter().shrink_to_fit();
                    }
                    _ = sweep_shutdown.cancelled() => break,
                }
            }
            ("rate limit sweep", Ok(()))
        });
        let snapshots = live
            .clone()
            .run_snapshots(config.snapshots, shutdown.clone());
        set.spawn(async move { ("snapshots", snapshots.await.map_err(crate::Error::from)) });
        let http_shutdown = shutdown.clone();
        set.spawn(async move {
            let result = serve_http(listener, router, http_shutdown).await;
            ("http", result.map_err(crate::Error::Io))
        });
        // A live state that cannot be trusted stops the whole service.
        let fatal = live.fatal();
        let fatal_watch = fatal.clone();
        let stop_all = shutdown.clone();
        set.spawn(async move {
            tokio::select! {
                _ = fatal_watch.cancelled() => {
                    tracing::error!("state diverged from the log; stopping");
                    stop_all.cancel();
                }
                _ = stop_all.cancelled() => {}
            }
            ("fatal watch", Ok(()))
        });
        tracing::info!(domain = config.domain, %addr, data_dir = %config.data_dir.display(), "service started");
        Ok(App {
            addr,
            shutdown,
            fatal,
            tasks: set,
            domain: config.domain,
        })
    }

    /// The bound HTTP address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The token that stops the service.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until every task ended (after shutdown), reporting how each ended.
    /// Fails if any task failed or the state diverged.
    pub async fn wait(mut self) -> Result<()> {
        let mut first_error = None;
        while let Some(joined) = self.tasks.join_next().await {
            match joined {
                Ok((name, Ok(()))) => tracing::info!(domain = self.domain, task = name, "stopped"),
                Ok((name, Err(err))) => {
                    tracing::error!(domain = self.domain, task = name, error = %err, "failed");
                    // One task failing stops the others: a half-running service helps no one.
                    self.shutdown.cancel();
                    first_error.get_or_insert(err);
                }
                Err(err) => {
                    tracing::error!(domain = self.domain, error = %err, "task panicked");
                    self.shutdown.cancel();
                    first_error.get_or_insert(crate::Error::Diverged);
                }
            }
        }
        if let Some(err) = first_error {
            return Err(err);
        }
        if self.fatal.is_cancelled() {
            return Err(crate::Error::Diverged);
        }
        Ok(())
    }

    /// Stops the service and waits for it.
    pub async fn stop(self) -> Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }
}

/// Starts a participant service: its `ORDER` consumer with the shared handler, plus its routes.
pub async fn start_participant<P: crate::participant::ParticipantDomain>(
    config: ServiceConfig,
    domain: P,
    routes: impl FnOnce(&Live<P::D>) -> Router,
) -> Result<App> {
    use futures::FutureExt;
    App::start::<P::D>(config, |parts| {
        let name = P::PARTICIPANT.name();
        let handler = std::sync::Arc::new(crate::participant::ParticipantHandler::new(
            parts.live.clone(),
            domain,
        ));
        // A consumer per input, each filtered on its subject (nats-server 2.9 takes one filter
        // per consumer): one on `order.>` would also take every order.completed, a delivery
        // and an ack per participant and order for nothing. The two may run in any order: a
        // participant takes order.failed before order.placed (tombstone) as it must anyway.
        let failed = P::PARTICIPANT.failed_consumer();
        // Until this release `name` took both subjects.
        let failed_spec =
            ConsumerSpec::new(ORDER_STREAM, failed, ORDER_FAILED).taking_over_from(name);
        let placed_spec = ConsumerSpec::new(ORDER_STREAM, name, ORDER_PLACED);
        let js = parts.js.clone();
        let taker = failed_spec.clone();
        let placed_run = bus::consumer::run_consumer(
            parts.js.clone(),
            placed_spec,
            handler.clone(),
            parts.shutdown.clone(),
        );
        let placed = async move {
            // The taker-over first, while `name` still acknowledges order.failed too, so it
            // starts where `name` left off. (Broker away: its own runner declares it later, and
            // an order.failed skipped meanwhile is re-driven by the order service.)
            if let Err(err) = js_setup::ensure_consumer(&js, &taker).await {
                tracing::warn!(consumer = taker.durable, error = %err, "not declared yet");
            }
            placed_run.await
        };
        let failed_run = bus::consumer::run_consumer(
            parts.js.clone(),
            failed_spec,
            handler,
            parts.shutdown.clone(),
        );
        let consumers = vec![
            (name, placed.map(|r| r.map_err(crate::Error::from)).boxed()),
            (
                failed,
                failed_run.map(|r| r.map_err(crate::Error::from)).boxed(),
            ),
        ];
        Ok((routes(&parts.live), consumers))
    })
    .await
}
