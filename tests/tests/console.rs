//! The operator console driven by a real headless browser (Debian's `chromium` over the DevTools
//! protocol: real mouse clicks and typing) against the real system: search, an order's sequence
//! diagram, a DLQ re-drive and an operator's retry of an order that needs attention.
//! Screenshots of every page go to `target/screenshots/console-*.png`.

use std::time::Duration;

use bus::testing::eventually;
use contract::DATAPLATFORM_CONSUMER;
use e2e::cdp::{screenshots_dir, Browser};
use e2e::pg::FakePg;
use e2e::{order_body, Options, System, ADMIN_TOKEN};
use serde_json::Value;

/// How long a page may take to show what a step waits for (a hang guard, not a measurement).
const PAGE_WITHIN: Duration = Duration::from_secs(30);
/// How long the system may take to reach a state the test set up.
const SYSTEM_WITHIN: Duration = Duration::from_secs(90);

async fn shot(browser: &Browser, name: &str) {
    let path = screenshots_dir().join(format!("console-{name}.png"));
    browser.screenshot(&path).await;
    eprintln!("screenshot: {}", path.display());
}

/// Opens a console URL, forgetting that the previous page was ready (a hash change keeps the
/// document).
async fn visit(browser: &Browser, url: &str) {
    browser
        .eval("document.body && delete document.body.dataset.ready")
        .await;
    browser.goto(url).await;
}

/// Opens a console URL and waits until it rendered `view`.
async fn show(browser: &Browser, url: &str, view: &str) {
    visit(browser, url).await;
    loaded(browser, view).await;
}

/// Waits until `condition` holds on the page; `what` names it if it never does.
async fn until(browser: &Browser, condition: &str, what: &str) -> Value {
    browser.wait_for(condition, what, PAGE_WITHIN).await
}

/// Waits until the console finished rendering `view` (it sets `body[data-ready]`).
async fn loaded(browser: &Browser, view: &str) {
    let ready = format!("document.body.dataset.ready === '{view}'");
    until(browser, &ready, &format!("the {view} page")).await;
}

async fn dlq_seqs(system: &System) -> Vec<(u64, Value)> {
    let (_, body) = system.get_admin("order", "/admin/dlq").await;
    body["entries"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| (e["seq"].as_u64().unwrap_or(0), e.clone()))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_finds_orders_reads_their_saga_redrives_the_dlq_and_retries_a_stuck_order_in_the_console(
) {
    // Given a system whose PG can be told to fail cancellations, and a data platform that
    // cannot take anything yet (its file is a directory)
    let pg = FakePg::start().await;
    let mut system = System::start(Options {
        pg_url: Some(pg.url()),
        ..Options::default()
    })
    .await;
    system.restock("apple", 10).await;
    let sink = system.break_dataplatform_file();
    // ... a failed order (stock refuses; payment's approval is cancelled)
    let too_many = order_body("dave", &[("apple", 50, 100)], None, 0, 5_000);
    let failed = system.settle(too_many, "FAILED").await;
    let failed_order = system.order(&failed).await;
    let failed_trace = failed_order["traceId"]
        .as_str()
        .expect("a traceId")
        .to_owned();
    // ... a completed order, whose delivery to the data platform ends in the DLQ
    let bought = order_body("carol", &[("apple", 1, 500)], None, 0, 500);
    let completed = system.settle(bought, "COMPLETED").await;
    let (dlq_seq, _) = eventually(SYSTEM_WITHIN, "the parked delivery in the DLQ", || async {
        dlq_seqs(&system).await.into_iter().find(|(_, e)| {
            e["orderId"] == completed.as_str() && e["consumer"] == DATAPLATFORM_CONSUMER
        })
    })
    .await;
    // ... and an order whose payment cannot be cancelled: it needs attention
    pg.set_cancels_fail(true);
    let uncancellable = order_body("erin", &[("apple", 60, 100)], None, 0, 6_000);
    let stuck = system.settle(uncancellable, "NEEDS_ATTENTION").await;
    let base = system.url("order");
    let browser = Browser::launch().await;

    // When the operator searches orders by userId
    show(&browser, &format!("{base}/#/orders"), "orders").await;
    let all = browser
        .eval("document.querySelectorAll('#orders tr').length")
        .await;
    assert_eq!(all, 3, "every order is listed before filtering");
    shot(&browser, "orders").await;
    browser.type_into("#f-user", "carol").await;
    browser.click("#search-button").await;
    // Then only carol's order is listed
    until(
        &browser,
        "location.hash.includes('userId=carol') && document.body.dataset.ready === 'orders'",
        "the search for carol",
    )
    .await;
    let rows = browser
        .eval("[...document.querySelectorAll('#orders tr')].map(r => r.dataset.orderId)")
        .await;
    assert_eq!(rows, serde_json::json!([completed]), "carol's order only");
    shot(&browser, "orders-search").await;

    // When the operator pages through all orders one at a time
    show(&browser, &format!("{base}/#/orders?limit=1"), "orders").await;
    for shown in 2..=3 {
        browser.click("#next-page").await;
        until(
            &browser,
            &format!("document.querySelectorAll('#orders tr').length === {shown}"),
            &format!("page {shown}"),
        )
        .await;
    }
    // Then each order appears once, newest first, and there is no further page
    let paged = browser
        .eval("[...document.querySelectorAll('#orders tr')].map(r => r.dataset.orderId)")
        .await;
    assert_eq!(paged, serde_json::json!([stuck, completed, failed]));
    until(
        &browser,
        "document.getElementById('next-page').disabled",
        "the last page",
    )
    .await;

    // When the operator looks an order up by its traceId
    show(&browser, &format!("{base}/#/orders"), "orders").await;
    browser.type_into("#f-trace", &failed_trace).await;
    browser.click("#open-button").await;
    // Then that order opens
    let opened = format!("document.body.dataset.ready === 'order' && document.getElementById('title').textContent.includes('{failed}')");
    until(&browser, &opened, "the order found by its traceId").await;

    // When the operator opens the failed order from a search by status
    show(
        &browser,
        &format!("{base}/#/orders?status=FAILED"),
        "orders",
    )
    .await;
    browser
        .click(&format!("tr[data-order-id='{failed}'] a"))
        .await;
    loaded(&browser, "order").await;
    // Then its diagram shows order.placed reaching payment and stock, their outcomes, and the
    // compensation the failure caused
    let subjects = browser
        .eval("[...document.querySelectorAll('#sequence .arrow')].map(a => `${a.dataset.from}>${a.dataset.to}:${a.dataset.subject}`)")
        .await;
    let subjects: Vec<String> = serde_json::from_value(subjects).expect("a list of arrows");
    for wanted in [
        "order>payment:order.placed",
        "order>stock:order.placed",
        "payment>order:payment.approved",
        "stock>order:stock.insufficient",
        "order>payment:order.failed",
        "payment>order:payment.cancelled",
    ] {
        assert!(
            subjects.iter().any(|s| s == wanted),
            "no arrow {wanted}: {subjects:?}"
        );
    }
    let failure_arrow = browser
        .eval("document.querySelector('#sequence .arrow[data-subject=\"stock.insufficient\"]').dataset.kind")
        .await;
    assert_eq!(failure_arrow, "failure");
    let compensation_arrow = browser
        .eval("document.querySelector('#sequence .arrow[data-subject=\"payment.cancelled\"]').dataset.kind")
        .await;
    assert_eq!(compensation_arrow, "compensation");
    // ... above the timeline, whose payloads open on a click
    browser.click("#timeline details summary").await;
    let open = browser
        .eval("document.querySelector('#timeline details').open")
        .await;
    assert_eq!(open, true, "a payload opens");
    shot(&browser, "order-failed").await;
    // ... and the completed order shows its way to the data platform
    show(&browser, &format!("{base}/#/orders/{completed}"), "order").await;
    for wanted in [
        "order.placed",
        "payment.approved",
        "stock.reserved",
        "order.completed",
    ] {
        until(
            &browser,
            &format!("document.querySelector('#sequence .arrow[data-subject=\"{wanted}\"]')"),
            &format!("an arrow for {wanted}"),
        )
        .await;
    }
    shot(&browser, "order-completed").await;

    // When the operator opens the DLQ (giving the admin token once) and re-drives the parked
    // delivery after the data platform is fixed
    visit(&browser, &format!("{base}/#/dlq")).await;
    until(
        &browser,
        "!document.getElementById('token-box').hidden",
        "the admin token prompt",
    )
    .await;
    browser.type_into("#token-input", ADMIN_TOKEN).await;
    browser.click("#token-save").await;
    loaded(&browser, "dlq").await;
    let groups = browser
        .eval("[...document.querySelectorAll('#dlq-groups tr')].map(r => r.dataset.consumer)")
        .await;
    assert_eq!(groups, serde_json::json!([DATAPLATFORM_CONSUMER]));
    browser
        .click(&format!("tr[data-seq='{dlq_seq}'] button.inspect"))
        .await;
    until(
        &browser,
        "document.getElementById('dlq-body')",
        "the decoded entry",
    )
    .await;
    let body = browser
        .eval("document.getElementById('dlq-body').textContent")
        .await;
    assert!(
        body.as_str().unwrap_or_default().contains(&completed),
        "the decoded message names the order: {body}"
    );
    shot(&browser, "dlq").await;
    std::fs::remove_dir(&sink).expect("the directory is removed");
    browser
        .click(&format!("tr[data-seq='{dlq_seq}'] button.redrive"))
        .await;
    // Then the entry leaves the list, and the order reaches the data platform
    let gone = format!(
        "document.body.dataset.ready === 'dlq' && !document.querySelector(\"tr[data-seq='{dlq_seq}']\")"
    );
    until(&browser, &gone, "the re-driven entry to leave the list").await;
    shot(&browser, "dlq-redriven").await;
    eventually(
        SYSTEM_WITHIN,
        "the data platform to have the order",
        || async { (system.dataplatform_lines(&completed) == 1).then_some(()) },
    )
    .await;

    // When the operator fixes the PG and retries the stuck order from "Needs attention"
    show(&browser, &format!("{base}/#/attention"), "attention").await;
    let listed = browser
        .eval("[...document.querySelectorAll('#attention tr')].map(r => r.dataset.orderId)")
        .await;
    assert_eq!(listed, serde_json::json!([stuck]), "only the stuck order");
    shot(&browser, "attention").await;
    pg.set_cancels_fail(false);
    browser
        .click(&format!("button.retry[data-order-id='{stuck}']"))
        .await;
    // Then the order settles as FAILED and leaves the list
    eventually(
        SYSTEM_WITHIN,
        "the retried order to fail cleanly",
        || async {
            let (_, order) = system.get("order", &format!("/orders/{stuck}")).await;
            (order["status"] == "FAILED").then_some(())
        },
    )
    .await;
    show(&browser, &format!("{base}/#/orders/{stuck}"), "order").await;
    let title = browser
        .eval("document.getElementById('title').textContent")
        .await;
    assert!(
        title.as_str().unwrap_or_default().ends_with("(FAILED)"),
        "{title}"
    );
    until(
        &browser,
        "document.querySelector('#sequence .note[data-type=\"CompensationRetried\"]')",
        "the operator's retry as a note on the diagram",
    )
    .await;
    shot(&browser, "order-retried").await;
    show(&browser, &format!("{base}/#/attention"), "attention").await;
    assert_eq!(
        browser
            .eval("document.querySelectorAll('#attention tr').length")
            .await,
        0
    );

    // When the operator looks at alerts and health
    show(&browser, &format!("{base}/#/alerts"), "alerts").await;
    // Then the failed compensation's alert is listed
    let kinds = browser
        .eval(
            "[...document.querySelectorAll('#alerts tr td:nth-child(2)')].map(t => t.textContent)",
        )
        .await;
    assert!(
        kinds
            .as_array()
            .is_some_and(|k| k.iter().any(|k| k == "compensation_failed")),
        "{kinds}"
    );
    shot(&browser, "alerts").await;
    show(&browser, &format!("{base}/#/health"), "health").await;
    // ... and all five services are ready, with every durable consumer's lag
    let ready = browser
        .eval("[...document.querySelectorAll('#services tr')].map(r => r.dataset.service + ':' + r.children[1].textContent)")
        .await;
    assert_eq!(
        ready,
        serde_json::json!([
            "order:ready",
            "payment:ready",
            "stock:ready",
            "coupon:ready",
            "point:ready"
        ])
    );
    let consumers = browser
        .eval("document.querySelectorAll('#consumers tr').length")
        .await;
    assert_eq!(consumers, 13);
    shot(&browser, "health").await;

    // When a participant cannot be reached
    system.stop_service("coupon").await;
    show(&browser, &format!("{base}/#/orders/{completed}"), "order").await;
    // Then its lane says so, instead of being an empty lane
    let marked = "document.querySelector('#sequence .lane[data-lane=\"coupon\"][data-unreachable=\"true\"]')";
    until(&browser, marked, "the coupon lane marked unreachable").await;
    // ... and the operator's DLQ redrive is on the diagram: a note and the message sent again
    let redriven = "document.querySelector('#sequence .note[data-type=\"note.dlq_redrive\"]') && document.querySelector('#sequence .arrow.again[data-subject=\"order.completed\"][data-to=\"dataplatform\"]')";
    until(&browser, redriven, "the redrive on the diagram").await;
    shot(&browser, "order-unreachable").await;
    // ... and health shows it not ready
    show(&browser, &format!("{base}/#/health"), "health").await;
    let coupon = browser
        .eval("document.querySelector('#services tr[data-service=\"coupon\"]').children[1].textContent")
        .await;
    assert_eq!(coupon, "NOT READY");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_routes_behind_the_console_filter_page_and_report_and_the_admin_ones_need_the_token() {
    // Given three orders by two users
    let system = System::start_default().await;
    system.restock("apple", 10).await;
    let mut ids = Vec::new();
    for user in ["ann", "ben", "ann"] {
        let id = system
            .place_id(order_body(user, &[("apple", 1, 100)], None, 0, 100))
            .await;
        system.settled(&id).await;
        ids.push(id);
    }

    // When the orders are paged one at a time
    let mut cursor: Option<String> = None;
    let mut paged = Vec::new();
    loop {
        let path = match &cursor {
            Some(c) => format!("/orders?limit=1&cursor={c}"),
            None => "/orders?limit=1".to_owned(),
        };
        let (status, page) = system.get("order", &path).await;
        assert_eq!(status, 200, "{page}");
        paged.extend(
            page["orders"]
                .as_array()
                .expect("orders")
                .iter()
                .map(|o| o["orderId"].as_str().expect("an id").to_owned()),
        );
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        assert!(paged.len() <= 3, "paging does not end: {paged:?}");
    }
    // Then every order comes once, newest first
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(paged, newest_first);

    // When they are filtered by user and by time
    let (_, anns) = system.get("order", "/orders?userId=ann").await;
    let (_, placed) = system.get("order", &format!("/orders/{}", ids[1])).await;
    let second_at = placed["placedAtMs"].as_u64().expect("placedAtMs");
    let (_, from_second) = system
        .get("order", &format!("/orders?from={second_at}"))
        .await;
    let (_, before_second) = system
        .get("order", &format!("/orders?to={second_at}"))
        .await;
    // Then each filter holds
    let ids_of = |body: &Value| -> Vec<String> {
        body["orders"]
            .as_array()
            .map(|o| {
                o.iter()
                    .map(|o| o["orderId"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(ids_of(&anns), [ids[2].clone(), ids[0].clone()]);
    assert_eq!(ids_of(&from_second), [ids[2].clone(), ids[1].clone()]);
    assert_eq!(ids_of(&before_second), [ids[0].clone()]);
    let (status, bad) = system.get("order", "/orders?cursor=not-a-cursor").await;
    assert_eq!(status, 400, "{bad}");
    assert_eq!(bad["field"], "cursor", "{bad}");

    // When every service's status is read
    for service in e2e::SERVICES {
        let (status, body) = system.get(service, "/status").await;
        // Then it names itself, its log head and its outbox backlog
        assert_eq!(status, 200, "{service}: {body}");
        assert_eq!(body["domain"], service, "{body}");
        assert!(
            body["logHead"].is_u64() && body["outboxBacklog"].is_u64(),
            "{body}"
        );
    }

    // When the alerts and health are asked for without and with the token
    for path in ["/admin/alerts", "/admin/health"] {
        let (anonymous, _) = system.get("order", path).await;
        assert_eq!(anonymous, 401, "{path}");
    }
    let (status, alerts) = system.get_admin("order", "/admin/alerts?limit=5").await;
    assert_eq!(status, 200, "{alerts}");
    assert_eq!(alerts["alerts"], serde_json::json!([]), "no alert yet");
    let (status, health) = system.get_admin("order", "/admin/health").await;
    // Then health lists five ready services and thirteen consumers with their lag
    assert_eq!(status, 200, "{health}");
    let services = health["services"].as_array().expect("services");
    assert_eq!(services.len(), 5, "{health}");
    assert!(services.iter().all(|s| s["ready"] == true), "{health}");
    let consumers = health["consumers"].as_array().expect("consumers");
    assert_eq!(consumers.len(), 13, "{health}");
    assert!(
        consumers.iter().all(|c| c["numPending"].is_u64()),
        "{health}"
    );

    // When an alert is published on OPS
    let js = system.jetstream().await;
    for n in 1..=3 {
        js.publish(
            format!("ops.alert.test_{n}"),
            serde_json::json!({"kind": format!("test_{n}"), "orderId": null})
                .to_string()
                .into(),
        )
        .await
        .expect("published")
        .await
        .expect("stored");
    }
    let (_, alerts) = system.get_admin("order", "/admin/alerts?limit=2").await;
    // Then the feed shows the newest first, as many as asked for
    let kinds: Vec<&str> = alerts["alerts"]
        .as_array()
        .map(|a| a.iter().filter_map(|a| a["kind"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(kinds, ["test_3", "test_2"], "{alerts}");
    assert_eq!(alerts["alerts"][0]["subject"], "ops.alert.test_3");
    assert!(
        alerts["alerts"][0]["timeMs"].as_u64().unwrap_or(0) > 0,
        "{alerts}"
    );
}
