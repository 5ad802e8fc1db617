//! Settled orders leave memory and still answer as before: the order API over a real sled log
//! (no broker needed: outcomes are recorded through the handler's own function).

use std::collections::BTreeSet;
use std::time::Duration;

use contract::{OutcomeKind, Participant, ParticipantEvent};
use eventlog::event_store::{EventStore, ReplayBound, StoreConfig};
use eventlog::live::{rebuild_from_scratch, rebuild_report, Executed, Execution, Live};
use eventlog::record::EventMeta;
use eventlog::testing_hooks::env_number;
use order::api::{router, ApiState};
use order::domain::{
    Order, OrderCommand, OrderEvent, OrderHistory, OrderSaga, OrderStatus, Orders,
};
use order::handler::{execute_or_archived, outcome_dedup_key, record_outcome};
use order::waiters::OrderWaiters;
use serde_json::Value;
use uuid::Uuid;

struct Service {
    live: Live<Order>,
    base: String,
    http: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
}

async fn start(dir: &std::path::Path) -> Service {
    let store = EventStore::open(StoreConfig::new(dir)).expect("a store");
    let live = Live::<Order>::open(store).expect("the state");
    let state = ApiState {
        live: live.clone(),
        saga_deadline: Duration::from_secs(600),
        participant_urls: Vec::new(),
        client: reqwest::Client::new(),
        admin_token: Some("t".into()),
        waiters: OrderWaiters::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let base = format!("http://{}", listener.local_addr().expect("an address"));
    let app = router(state);
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Service {
        live,
        base,
        http: reqwest::Client::new(),
        server,
    }
}

impl Service {
    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("answered");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn place(&self, user: &str, key: Option<&str>, amount: u64) -> Value {
        let body = serde_json::json!({
            "userId": user,
            "items": [{"sku": "apple", "qty": 1, "price": amount}],
            "amount": amount,
        });
        let mut request = self.http.post(format!("{}/orders", self.base)).json(&body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await.expect("answered");
        assert_eq!(response.status().as_u16(), 202);
        response.json().await.expect("json")
    }

    async fn outcome(
        &self,
        order_id: Uuid,
        participant: Participant,
        kind: OutcomeKind,
        msg_id: &str,
    ) -> Executed<OrderEvent> {
        let event = ParticipantEvent {
            order_id,
            participant,
            kind,
            reason: (kind == OutcomeKind::Rejected).then(|| "no".to_owned()),
        };
        let subject = format!("{}.{kind:?}", participant.name());
        let key = outcome_dedup_key(&event, &subject, msg_id);
        let meta = EventMeta {
            correlation_id: order_id.to_string(),
            ..EventMeta::default()
        };
        record_outcome(&self.live, meta, key, &event)
            .await
            .expect("durable")
            .expect("accepted")
    }

    /// Records `steps` on `order_id` in turn, each as its own message.
    async fn outcomes(&self, order_id: Uuid, steps: &[(Participant, OutcomeKind)]) {
        for (n, &(participant, kind)) in steps.iter().enumerate() {
            self.outcome(order_id, participant, kind, &format!("m{}", n + 1))
                .await;
        }
    }

    async fn deliver(&self, order_id: Uuid) {
        let execution = Execution {
            meta: EventMeta {
                correlation_id: order_id.to_string(),
                ..EventMeta::default()
            },
            dedup_key: None,
        };
        let command = OrderCommand::MarkDelivered {
            order_id,
            now_ms: eventlog::clock::now_ms(),
        };
        execute_or_archived(&self.live, execution, command)
            .await
            .expect("durable")
            .expect("accepted");
    }

    async fn state(&self) -> Orders {
        self.live.read(|s| s.clone()).await.expect("a read")
    }

    /// Every page of a listing, following `nextCursor`; also the number of pages.
    async fn all_pages(&self, query: &str, limit: usize) -> (Vec<String>, usize) {
        let mut ids = Vec::new();
        let mut cursor = String::new();
        let mut pages = 0;
        loop {
            let (status, body) = self
                .get(&format!("/orders?{query}&limit={limit}&cursor={cursor}"))
                .await;
            assert_eq!(status, 200, "{body}");
            pages += 1;
            let orders = body["orders"].as_array().expect("orders");
            assert!(orders.len() <= limit);
            ids.extend(
                orders
                    .iter()
                    .map(|o| o["orderId"].as_str().expect("id").to_owned()),
            );
            match body["nextCursor"].as_str() {
                Some(next) => cursor = next.to_owned(),
                None => return (ids, pages),
            }
        }
    }
}

fn id_of(body: &Value) -> Uuid {
    body["orderId"]
        .as_str()
        .expect("orderId")
        .parse()
        .expect("a uuid")
}

/// The whole history, folded from the log with every order kept: what answers must match.
fn history(live: &Live<Order>) -> Orders {
    rebuild_from_scratch::<OrderHistory>(live.store(), ReplayBound::default())
        .expect("folds")
        .state
}

/// Payment rejected and both participants compensated: the order fails and settles.
const FAILING: [(Participant, OutcomeKind); 3] = [
    (Participant::Payment, OutcomeKind::Rejected),
    (Participant::Payment, OutcomeKind::Compensated),
    (Participant::Stock, OutcomeKind::Compensated),
];
/// Payment and stock in: the order completes.
const COMPLETING: [(Participant, OutcomeKind); 2] = [
    (Participant::Payment, OutcomeKind::Succeeded),
    (Participant::Stock, OutcomeKind::Succeeded),
];

type Wanted = Box<dyn Fn(&OrderSaga) -> bool>;

#[tokio::test]
async fn settled_orders_leave_memory_and_answer_as_before() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let service = start(dir.path()).await;

    // Given orders of three users through every path: failed, delivered, completed and not
    // delivered, pending
    let mut placed = Vec::new();
    for i in 0..48u64 {
        let user = format!("user-{}", i % 3);
        let key = format!("key-{i}");
        let body = service.place(&user, Some(&key), 100 + i).await;
        let trace = body["traceId"].as_str().expect("trace").to_owned();
        placed.push((id_of(&body), key, trace));
    }
    for (i, (id, _, _)) in placed.iter().enumerate() {
        let id = *id;
        match i % 4 {
            0 => service.outcomes(id, &FAILING).await,
            1 => {
                service.outcomes(id, &COMPLETING).await;
                service.deliver(id).await;
            }
            2 => service.outcomes(id, &COMPLETING).await,
            _ => {}
        }
    }

    // Then memory holds only the orders that can still change
    let state = service.state().await;
    let full = history(&service.live);
    assert_eq!(full.orders.len(), 48);
    assert_eq!(
        state.orders.len(),
        24,
        "completed-undelivered and pending only"
    );
    assert!(state.orders.values().all(|s| !s.is_settled()));
    assert_eq!(state.status_counts, full.status_counts);

    // ... and an evicted order answers its status, timeline and trace as a live one would
    for (i, (id, _, trace)) in placed.iter().enumerate().filter(|(i, _)| i % 4 < 2) {
        let saga = &full.orders[id];
        assert!(!state.orders.contains_key(id));
        let (status, body) = service.get(&format!("/orders/{id}")).await;
        assert_eq!(status, 200);
        assert_eq!(body["status"], saga.status.as_str(), "{i}");
        assert_eq!(body["traceId"], saga.trace_id.as_str());
        assert_eq!(body["updatedAtMs"], saga.updated_at_ms);
        assert_eq!(body["dataPlatformDelivered"], saga.data_platform_delivered);
        assert_eq!(
            body["outcomes"],
            serde_json::to_value(&saga.outcomes).expect("json")
        );
        let (status, timeline) = service.get(&format!("/orders/{id}/timeline")).await;
        assert_eq!(status, 200);
        assert_eq!(timeline["status"], saga.status.as_str());
        let records = service
            .live
            .store()
            .read_correlated(&id.to_string())
            .expect("records");
        assert_eq!(
            timeline["steps"].as_array().map(Vec::len),
            Some(records.len())
        );
        let (status, by_trace) = service.get(&format!("/traces/{trace}")).await;
        assert_eq!(status, 200);
        assert_eq!(by_trace["orderId"], id.to_string());
    }
    let (status, _) = service.get(&format!("/orders/{}", Uuid::now_v7())).await;
    assert_eq!(status, 404);
    let (status, _) = service.get("/traces/no-such-trace").await;
    assert_eq!(status, 404);

    // When a reused Idempotency-Key (with another body even) comes for an evicted order
    let (evicted, key, _) = &placed[0];
    let again = service.place("someone-else", Some(key), 999).await;
    // Then it answers that order, and nothing is placed
    assert_eq!(id_of(&again), *evicted);
    assert_eq!(again["status"], "FAILED");
    assert_eq!(history(&service.live).orders.len(), 48);

    // When a late compensation with a new message id reaches the evicted failed order
    let late_compensation = || {
        service.outcome(
            *evicted,
            Participant::Stock,
            OutcomeKind::Compensated,
            "late-1",
        )
    };
    let late = late_compensation().await;
    // Then it is recorded as a duplicate, as before; the same message again is a dedup hit
    assert!(
        matches!(&late, Executed::Committed { events, .. }
            if matches!(events[..], [OrderEvent::DuplicateIgnored { .. }])),
        "{late:?}"
    );
    let repeat = late_compensation().await;
    assert!(matches!(repeat, Executed::Duplicate(_)), "{repeat:?}");
    // ... and delivering an evicted, delivered order again is a no-op, as before
    service.deliver(placed[1].0).await;

    // Then /stats comes from the counts
    let (_, stats) = service.get("/stats").await;
    for status in OrderStatus::ALL {
        assert_eq!(
            stats["orders"][status.as_str()],
            full.status_counts.get(status),
            "{status}"
        );
    }

    // Then every listing returns each matching order exactly once, newest first, over pages
    let full = history(&service.live);
    let mut newest_first: Vec<&OrderSaga> = full.orders.values().collect();
    newest_first.sort_by_key(|s| std::cmp::Reverse((s.order.placed_at_ms, s.order.order_id)));
    let from = newest_first[30].order.placed_at_ms;
    let to = newest_first[5].order.placed_at_ms;
    let queries: Vec<(String, Wanted)> = vec![
        (String::new(), Box::new(|_| true)),
        (
            "userId=user-1".into(),
            Box::new(|s| s.order.user_id == "user-1"),
        ),
        (
            "status=COMPLETED".into(),
            Box::new(|s| s.status == OrderStatus::Completed),
        ),
        (
            "status=FAILED".into(),
            Box::new(|s| s.status == OrderStatus::Failed),
        ),
        (
            "status=PENDING".into(),
            Box::new(|s| s.status == OrderStatus::Pending),
        ),
        (
            "status=completed&userId=user-2".into(),
            Box::new(|s| s.status == OrderStatus::Completed && s.order.user_id == "user-2"),
        ),
        (
            "status=PENDING&userId=user-0".into(),
            Box::new(|s| s.status == OrderStatus::Pending && s.order.user_id == "user-0"),
        ),
        (
            format!("from={from}&to={to}"),
            Box::new(move |s| s.order.placed_at_ms >= from && s.order.placed_at_ms < to),
        ),
        (
            format!("status=FAILED&userId=user-0&from={from}"),
            Box::new(move |s| {
                s.status == OrderStatus::Failed
                    && s.order.user_id == "user-0"
                    && s.order.placed_at_ms >= from
            }),
        ),
    ];
    for (query, wanted) in &queries {
        let expected: Vec<String> = newest_first
            .iter()
            .filter(|s| wanted(s))
            .map(|s| s.order.order_id.to_string())
            .collect();
        assert!(!expected.is_empty(), "?{query} matches something");
        for limit in [1, 5, 100] {
            let (ids, pages) = service.all_pages(query, limit).await;
            assert_eq!(ids, expected, "?{query} limit {limit}");
            let unique: BTreeSet<_> = ids.iter().collect();
            assert_eq!(unique.len(), ids.len(), "?{query}");
            assert!(pages >= expected.len().div_ceil(limit), "?{query}");
        }
    }
    service.server.abort();
}

#[tokio::test]
async fn a_restart_after_snapshots_is_the_fold_from_scratch() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let service = start(dir.path()).await;
    // Given orders settled and not, with snapshots taken between them
    for round in 0..3u64 {
        for i in 0..10u64 {
            let body = service.place("u", None, 100 + i).await;
            let id = id_of(&body);
            if i % 2 == 0 {
                // Stock's compensation still missing leaves the order compensating.
                let settles = i % 4 == 0 || round == 2;
                let steps = if settles { &FAILING[..] } else { &FAILING[..2] };
                service.outcomes(id, steps).await;
            }
        }
        service.live.snapshot(2).await.expect("a snapshot");
    }
    service.place("u", None, 5).await;
    let live_state = service.state().await;
    // When the state is rebuilt as a restart does (newest snapshot plus the log after it)
    let restarted =
        rebuild_report::<Order>(service.live.store(), ReplayBound::default()).expect("rebuilds");
    let scratch =
        rebuild_from_scratch::<Order>(service.live.store(), ReplayBound::default()).expect("folds");
    // Then it started from a snapshot and equals both the fold from scratch and the live state
    assert!(restarted.snapshot_seq.is_some());
    assert_eq!(restarted.state, scratch.state);
    assert_eq!(restarted.state, live_state);
    assert!(live_state.orders.len() < 31, "settled orders left");
    // ... and a real reopen of the directory holds that state too
    service.server.abort();
    let _ = service.server.await;
    drop(service.live);
    let store = EventStore::open(StoreConfig::new(dir.path())).expect("reopens");
    let reopened = Live::<Order>::open(store).expect("the state");
    assert_eq!(
        reopened.read(|s| s.clone()).await.expect("a read"),
        scratch.state
    );
}

#[tokio::test]
async fn a_log_written_before_the_indexes_is_reindexed_once_and_answers_as_before() {
    let dir = tempfile::tempdir().expect("a temp dir");
    // Given a log written without index entries (as before they existed): one failed order
    // placed with an Idempotency-Key, one pending. (`OrderHistory` decides and records like
    // `Order`, but names no index entries.)
    let store = EventStore::open(StoreConfig::new(dir.path())).expect("a store");
    let live = Live::<OrderHistory>::open(store).expect("the state");
    let (failed, pending) = (Uuid::now_v7(), Uuid::now_v7());
    for (id, key) in [(failed, "old-key"), (pending, "other-key")] {
        let execution = Execution {
            meta: EventMeta {
                correlation_id: id.to_string(),
                ..EventMeta::default()
            },
            ..Execution::default()
        };
        let command = OrderCommand::Place {
            order: contract::fixtures::placed(id),
            trace_id: format!("trace-{id}"),
            idempotency_key: Some(key.into()),
        };
        live.execute(execution, command, |_, _| Ok(Vec::new()))
            .await
            .expect("durable")
            .expect("placed");
    }
    for (participant, kind) in [
        (Participant::Payment, OutcomeKind::Rejected),
        (Participant::Payment, OutcomeKind::Compensated),
        (Participant::Stock, OutcomeKind::Compensated),
    ] {
        let event = ParticipantEvent {
            order_id: failed,
            participant,
            kind,
            reason: None,
        };
        let execution = Execution {
            meta: EventMeta {
                correlation_id: failed.to_string(),
                ..EventMeta::default()
            },
            ..Execution::default()
        };
        let command = OrderCommand::RecordOutcome { event, now_ms: 5 };
        live.execute(execution, command, |_, _| Ok(Vec::new()))
            .await
            .expect("durable")
            .expect("recorded");
    }
    assert!(
        order::archive::order_by_trace(live.store(), &format!("trace-{failed}"))
            .expect("reads")
            .is_none()
    );
    drop(live);

    // When the service starts on it and re-indexes (once)
    let service = start(dir.path()).await;
    let written = order::archive::reindex(service.live.store())
        .await
        .expect("reindexes");
    assert!(written > 0);
    assert_eq!(
        order::archive::reindex(service.live.store())
            .await
            .expect("done already"),
        0
    );

    // Then the settled order is found by trace, listing and status, and its key is not reused
    let (status, by_trace) = service.get(&format!("/traces/trace-{failed}")).await;
    assert_eq!(status, 200);
    assert_eq!(by_trace["status"], "FAILED");
    let (ids, _) = service.all_pages("", 1).await;
    assert_eq!(ids, [pending.to_string(), failed.to_string()]);
    let (ids, _) = service.all_pages("status=FAILED&userId=user-1", 10).await;
    assert_eq!(ids, [failed.to_string()]);
    let again = service.place("user-1", Some("old-key"), 100).await;
    assert_eq!(id_of(&again), failed);
    assert_eq!(history(&service.live).orders.len(), 2);
    service.server.abort();
}

/// Resident memory of this process, in KiB (Linux).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Not a check: measures memory, state and snapshot size and restart time after `ORDERS`
/// settled orders (default 20,000). `ORDERS=1000000 cargo test --release -p order --test
/// retention -- --ignored --nocapture memory`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn memory_after_many_settled_orders() {
    let orders = env_number("ORDERS").unwrap_or(20_000);
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut config = StoreConfig::new(dir.path());
    if let Some(mb) = env_number("SLED_CACHE_MB") {
        config.cache_capacity_bytes = mb * 1024 * 1024;
    }
    let live =
        Live::<Order>::open(EventStore::open(config.clone()).expect("a store")).expect("the state");
    let before = rss_kib();
    let started = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..orders {
        let live = live.clone();
        tasks.spawn(async move {
            let id = Uuid::now_v7();
            let mut order = contract::fixtures::placed(id);
            order.user_id = format!("user-{}", i % 1000);
            let trace = format!("{:032x}", id.as_u128());
            let meta = EventMeta {
                correlation_id: id.to_string(),
                ..EventMeta::default()
            };
            let key = format!("key-{i}");
            let execution = Execution {
                meta: meta.clone(),
                dedup_key: Some(order::archive::placement_dedup_key(&key)),
            };
            let command = OrderCommand::Place {
                order,
                trace_id: trace,
                idempotency_key: Some(key),
            };
            live.execute(execution, command, |_, _| Ok(Vec::new()))
                .await
                .expect("durable")
                .expect("placed");
            for participant in [Participant::Payment, Participant::Stock] {
                let event = ParticipantEvent {
                    order_id: id,
                    participant,
                    kind: OutcomeKind::Succeeded,
                    reason: None,
                };
                let key = outcome_dedup_key(&event, participant.name(), "m");
                record_outcome(&live, meta.clone(), key, &event)
                    .await
                    .expect("durable")
                    .expect("recorded");
            }
            let execution = Execution {
                meta,
                ..Execution::default()
            };
            let command = OrderCommand::MarkDelivered {
                order_id: id,
                now_ms: 1,
            };
            execute_or_archived(&live, execution, command)
                .await
                .expect("durable")
                .expect("delivered");
        });
        if tasks.len() >= 512 {
            tasks.join_next().await;
        }
    }
    while tasks.join_next().await.is_some() {}
    let placed_in = started.elapsed();
    let state = live.read(|s| s.clone()).await.expect("a read");
    let state_bytes = postcard::to_stdvec(&state).expect("encodes").len();
    live.snapshot(2).await.expect("a snapshot");
    let after = rss_kib();
    drop(live);
    let reopened = std::time::Instant::now();
    let store = EventStore::open(config).expect("a store");
    let store_open = reopened.elapsed();
    let live = Live::<Order>::open(store).expect("the state");
    let ready_in = reopened.elapsed();
    let held = live.read(|s| s.orders.len()).await.expect("a read");
    println!(
        "orders {orders} in {placed_in:?}: rss {before} KiB -> {after} KiB, state {state_bytes} bytes ({} held), reopen {ready_in:?} (store {store_open:?}; {held} held), disk {} MiB",
        state.orders.len(),
        live.store().size_on_disk().unwrap_or(0) / (1024 * 1024)
    );
    assert_eq!(held, 0);
    assert_eq!(state.status_counts.get(OrderStatus::Completed), orders);
}
