//! The bare JetStream saga skeleton: the saga's message pattern with nothing else.
//!
//! `skel.order.placed` -> payment, stock, point (and coupon for a fifth of the orders) each
//! publish a reply -> the order side counts the replies and publishes `skel.order.completed` ->
//! a data-platform consumer sees it and the driver counts the order done. File-storage streams,
//! durable pull consumers, explicit acks and `Nats-Msg-Id` on every publish, as in the services;
//! no decisions, no storage, one process. Its rate is the ceiling the services are measured
//! against.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, consumer::AckPolicy, stream};
use futures::StreamExt;
use tokio::sync::oneshot;

/// Messages per pull request (as the services' consumer runner).
const PULL_BATCH: usize = 256;
/// How long the driver waits for one order before counting it lost.
const ORDER_TIMEOUT: Duration = Duration::from_secs(10);
/// The participants that reply to every order.
const ALWAYS: [&str; 3] = ["payment", "stock", "point"];
/// Every fifth order also involves the coupon participant.
const COUPON_EVERY: u64 = 5;

/// What one skeleton run measured.
#[derive(Debug, Clone)]
pub(crate) struct SkeletonResult {
    /// Orders completed.
    pub orders: u64,
    /// Orders that did not complete within [`ORDER_TIMEOUT`].
    pub lost: u64,
    /// Measured time.
    pub elapsed: Duration,
    /// Latency of each completed order, microseconds.
    pub latencies_us: Vec<u64>,
}

type Waiting = Arc<Mutex<HashMap<u64, oneshot::Sender<()>>>>;

fn stream_config(name: &str, subject: &str) -> stream::Config {
    stream::Config {
        name: name.to_owned(),
        subjects: vec![subject.to_owned()],
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    }
}

async fn consumer(
    js: &jetstream::Context,
    stream: &str,
    durable: &str,
    filter: &str,
) -> anyhow::Result<jetstream::consumer::Consumer<pull::Config>> {
    let stream = js.get_stream(stream).await?;
    let consumer = stream
        .get_or_create_consumer(
            durable,
            pull::Config {
                durable_name: Some(durable.to_owned()),
                filter_subject: filter.to_owned(),
                ack_policy: AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                max_ack_pending: 20_000,
                ..Default::default()
            },
        )
        .await?;
    Ok(consumer)
}

async fn publish(
    js: &jetstream::Context,
    subject: String,
    msg_id: String,
    payload: bytes::Bytes,
) -> anyhow::Result<()> {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", msg_id.as_str());
    js.publish_with_headers(subject, headers, payload)
        .await?
        .await?;
    Ok(())
}

/// Pulls every message of `consumer` and hands it to `handle`, whose work runs in a task of its
/// own so a slow publish does not hold up the pull; runs until `tasks` is aborted.
fn handle_each<F, Fut>(
    tasks: &mut tokio::task::JoinSet<anyhow::Result<()>>,
    consumer: jetstream::consumer::Consumer<pull::Config>,
    mut handle: F,
) where
    F: FnMut(jetstream::Message) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    tasks.spawn(async move {
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(PULL_BATCH)
            .messages()
            .await?;
        while let Some(message) = messages.next().await {
            let message = message.map_err(|e| anyhow::anyhow!("{e}"))?;
            tokio::spawn(handle(message));
        }
        anyhow::Ok(())
    });
}

/// Publishes the reply (the order's number and the subject, keyed by both) if there is one, then
/// acks the message; a failed publish leaves it unacked, to be redelivered.
async fn reply_then_ack(
    js: &jetstream::Context,
    message: jetstream::Message,
    reply: Option<(u64, String)>,
) {
    if let Some((id, subject)) = reply {
        let msg_id = format!("{id}.{subject}");
        if publish(js, subject, msg_id, message.payload.clone())
            .await
            .is_err()
        {
            return;
        }
    }
    let _ = message.ack().await;
}

/// Payload: `<order number> <replies required>`.
fn parse(payload: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(payload).ok()?;
    let (id, required) = text.split_once(' ')?;
    Some((id.parse().ok()?, required.parse().ok()?))
}

/// Runs the skeleton for `duration` with `in_flight` orders outstanding at a time.
pub(crate) async fn run(
    nats_url: &str,
    in_flight: usize,
    duration: Duration,
) -> anyhow::Result<SkeletonResult> {
    let client = async_nats::connect(nats_url).await?;
    let js = jetstream::ContextBuilder::new()
        .max_ack_inflight(2048)
        .backpressure_on_inflight(true)
        .build(client);
    let mut streams = vec![("SKEL_ORDER".to_owned(), "skel.order.>".to_owned())];
    for p in ALWAYS.iter().chain(&["coupon"]) {
        streams.push((format!("SKEL_{}", p.to_uppercase()), format!("skel.{p}.>")));
    }
    for (name, subject) in &streams {
        let _ = js.delete_stream(name).await;
        js.create_stream(stream_config(name, subject)).await?;
    }
    let mut tasks = tokio::task::JoinSet::new();

    // Participants: reply to every order they are part of, then ack.
    for p in ALWAYS.iter().chain(&["coupon"]) {
        let consumer =
            consumer(&js, "SKEL_ORDER", &format!("skel-{p}"), "skel.order.placed").await?;
        let (js, p) = (js.clone(), p.to_string());
        handle_each(&mut tasks, consumer, move |message| {
            let (js, p) = (js.clone(), p.clone());
            async move {
                let reply = parse(&message.payload)
                    .filter(|(_, required)| p != "coupon" || *required == 4)
                    .map(|(id, _)| (id, format!("skel.{p}.done")));
                reply_then_ack(&js, message, reply).await;
            }
        });
    }

    // The order side: count replies, publish completed once all required have answered.
    let counts: Arc<Mutex<HashMap<u64, u64>>> = Arc::default();
    for p in ALWAYS.iter().chain(&["coupon"]) {
        let consumer = consumer(
            &js,
            &format!("SKEL_{}", p.to_uppercase()),
            &format!("skel-order-{p}"),
            &format!("skel.{p}.>"),
        )
        .await?;
        let (js, counts) = (js.clone(), counts.clone());
        handle_each(&mut tasks, consumer, move |message| {
            let (js, counts) = (js.clone(), counts.clone());
            async move {
                let completed = parse(&message.payload).filter(|(id, required)| {
                    let mut counts = counts.lock().expect("counts lock");
                    let n = counts.entry(*id).or_insert(0);
                    *n += 1;
                    let done = *n == *required;
                    if done {
                        counts.remove(id);
                    }
                    done
                });
                let reply = completed.map(|(id, _)| (id, "skel.order.completed".to_owned()));
                reply_then_ack(&js, message, reply).await;
            }
        });
    }

    // The data platform side: a completed order is done for the driver.
    let waiting: Waiting = Arc::default();
    {
        let consumer = consumer(
            &js,
            "SKEL_ORDER",
            "skel-dataplatform",
            "skel.order.completed",
        )
        .await?;
        let (js, waiting) = (js.clone(), waiting.clone());
        handle_each(&mut tasks, consumer, move |message| {
            if let Some((id, _)) = parse(&message.payload) {
                if let Some(tx) = waiting.lock().expect("waiting lock").remove(&id) {
                    let _ = tx.send(());
                }
            }
            let js = js.clone();
            async move { reply_then_ack(&js, message, None).await }
        });
    }

    // The driver: `in_flight` closed loops placing orders until the time is up.
    let next_id = Arc::new(std::sync::atomic::AtomicU64::new(1));
    let started = Instant::now();
    let until = started + duration;
    let mut drivers = tokio::task::JoinSet::new();
    for _ in 0..in_flight {
        let js = js.clone();
        let waiting = waiting.clone();
        let next_id = next_id.clone();
        drivers.spawn(async move {
            let mut latencies = Vec::new();
            let mut lost = 0u64;
            while Instant::now() < until {
                let id = next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let required = if id % COUPON_EVERY == 0 { 4 } else { 3 };
                let (tx, rx) = oneshot::channel();
                waiting.lock().expect("waiting lock").insert(id, tx);
                let sent = Instant::now();
                let subject = "skel.order.placed".to_owned();
                let msg_id = format!("{id}.{subject}");
                let payload = bytes::Bytes::from(format!("{id} {required}"));
                if publish(&js, subject, msg_id, payload).await.is_err() {
                    lost += 1;
                    continue;
                }
                match tokio::time::timeout(ORDER_TIMEOUT, rx).await {
                    Ok(Ok(())) => latencies.push(sent.elapsed().as_micros() as u64),
                    _ => lost += 1,
                }
            }
            (latencies, lost)
        });
    }
    let mut latencies_us = Vec::new();
    let mut lost = 0;
    while let Some(joined) = drivers.join_next().await {
        let (l, n) = joined?;
        latencies_us.extend(l);
        lost += n;
    }
    let elapsed = started.elapsed();
    tasks.abort_all();
    for (name, _) in &streams {
        let _ = js.delete_stream(name).await;
    }
    Ok(SkeletonResult {
        orders: latencies_us.len() as u64,
        lost,
        elapsed,
        latencies_us,
    })
}
