//! Wiring the order service: consumers, supervisor, data platform forwarder and HTTP.

use std::sync::Arc;

use bus::consumer::run_consumer;
use bus::jetstream::ConsumerSpec;
use contract::{Participant, DATAPLATFORM_CONSUMER, ORDER_COMPLETED, ORDER_STREAM};
use futures::FutureExt;
use servicekit::app::{task, App, Task};
use servicekit::cli::Service;
use servicekit::settings::CommonArgs;

use crate::admin::{self, AdminState};
use crate::api::{self, ApiState};
use crate::config::{OrderArgs, Settings};
use crate::domain::{Order, Orders};
use crate::handler::{
    run_alert_webhook, run_supervisor, DataPlatformForwarder, DataPlatformSink, OutcomeHandler,
};
use crate::waiters::OrderWaiters;

/// Starts the order service.
pub async fn build(settings: Settings) -> servicekit::Result<App> {
    let config = settings
        .common
        .service_config("order", crate::config::DEFAULT_HTTP_ADDR);
    App::start::<Order>(config, |parts| {
        let mut tasks: Vec<Task> = Vec::new();
        crate::observe::orders_by_status(&parts.scrape, parts.live.clone());
        let waiters = OrderWaiters::default();
        let outcomes = Arc::new(OutcomeHandler {
            live: parts.live.clone(),
            waiters: waiters.clone(),
        });
        for participant in Participant::ALL {
            let spec = ConsumerSpec::new(
                participant.stream(),
                participant.order_consumer(),
                &format!("{}.>", participant.name()),
            );
            let run = run_consumer(
                parts.js.clone(),
                spec,
                outcomes.clone(),
                parts.shutdown.clone(),
            );
            tasks.push(task(participant.order_consumer(), run));
        }
        let sink = match &settings.dataplatform_url {
            Some(url) => DataPlatformSink::http(url.clone(), &settings.dataplatform)?,
            None => DataPlatformSink::file(parts.data_dir.join(contract::DATAPLATFORM_FILE))?,
        };
        let retry = settings.dataplatform.retry;
        let forwarder = Arc::new(DataPlatformForwarder {
            live: parts.live.clone(),
            sink,
            retry,
        });
        // The forwarder parks an order on the same decision the runner dead-letters it on.
        let spec = ConsumerSpec::new(ORDER_STREAM, DATAPLATFORM_CONSUMER, ORDER_COMPLETED)
            .with_retry(retry);
        tasks.push(task(
            "dataplatform forwarder",
            run_consumer(parts.js.clone(), spec, forwarder, parts.shutdown.clone()),
        ));
        if let Some(url) = settings.alert_webhook_url.clone() {
            tasks.push((
                "alert webhook",
                run_alert_webhook(parts.js.clone(), url, parts.shutdown.clone()).boxed(),
            ));
        }
        let store = parts.live.store().clone();
        tasks.push((
            "order reindex",
            async move {
                let written = crate::archive::reindex(&store).await?;
                if written > 0 {
                    tracing::info!(entries = written, "indexed the orders already in the log");
                }
                Ok(())
            }
            .boxed(),
        ));
        tasks.push((
            "saga supervisor",
            run_supervisor(
                parts.live.clone(),
                settings.supervisor,
                parts.shutdown.clone(),
            )
            .boxed(),
        ));
        let state = ApiState {
            live: parts.live.clone(),
            saga_deadline: settings.saga_deadline,
            participant_urls: Participant::ALL
                .into_iter()
                .zip(settings.participant_urls.iter().cloned())
                .collect(),
            client: reqwest::Client::new(),
            admin_token: settings.common.admin_token.clone(),
            waiters,
        };
        let admin = AdminState {
            live: parts.live.clone(),
            js: parts.js.clone(),
            admin_token: settings.common.admin_token.clone(),
            participant_urls: state.participant_urls.clone(),
            client: state.client.clone(),
        };
        Ok((
            api::router(state).merge(admin::router(admin)).route(
                "/openapi.json",
                servicekit::openapi::route("order", api::openapi()),
            ),
            tasks,
        ))
    })
    .await
}

/// The order binary's `serve` and offline commands, through the shared shell.
pub struct OrderService;

impl Service for OrderService {
    type D = Order;
    type Args = OrderArgs;
    const NAME: &'static str = "order";
    const ABOUT: &'static str = "Order service: accepts orders, tracks the saga, answers timelines";

    fn render_state(state: &Orders) -> serde_json::Value {
        serde_json::to_value(state.orders.values().collect::<Vec<_>>()).unwrap_or_default()
    }

    async fn start(common: &CommonArgs, args: OrderArgs) -> servicekit::Result<App> {
        build(Settings::from_cli(common.clone(), args)).await
    }
}
