//! The operator console in a real headless browser (Debian's `chromium`, installed by
//! `scripts/ensure-chromium.sh`): user-supplied strings are rendered as text, never as markup.
//! Screenshots of what the browser rendered go to `target/screenshots/`.

use std::process::Stdio;
use std::time::Duration;

use e2e::cdp::{chromium, screenshots_dir, HEADLESS_FLAGS};
use e2e::{order_body, System};

/// A userId that runs script when a page parses it as HTML (and passes the id check).
const USER_PAYLOAD: &str = r#"<img src=x onerror="document.body.dataset.pwned=1">"#;
/// A SKU that does the same, reaching the page through the failure reason.
const SKU_PAYLOAD: &str = r#"<img src=x onerror="document.title='pwned'">"#;
/// The longest one browser run may take before the test gives up on it (a hang guard, not
/// a measurement).
const BROWSER_RUN_MAX: Duration = Duration::from_secs(120);

/// Runs headless chromium on `url` with `mode` (`--dump-dom` or `--screenshot=<path>`), letting
/// the page's scripts run (fetches included) for a few seconds of virtual time; returns stdout.
async fn browse(url: &str, mode: &str) -> String {
    let profile = tempfile::tempdir().expect("a browser profile directory");
    let mut command = tokio::process::Command::new(chromium());
    command
        .args(HEADLESS_FLAGS)
        .arg("--virtual-time-budget=5000")
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(mode)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = tokio::time::timeout(BROWSER_RUN_MAX, command.output())
        .await
        .unwrap_or_else(|_| panic!("chromium did not finish {mode} {url}"))
        .unwrap_or_else(|e| panic!("chromium did not start ({e}): run scripts/ensure-chromium.sh"));
    assert!(
        output.status.success(),
        "chromium {mode} {url} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The DOM after the page's scripts ran, and a screenshot of it under `name`.
async fn render(url: &str, name: &str) -> String {
    let dom = browse(url, "--dump-dom").await;
    let shot = screenshots_dir().join(format!("{name}.png"));
    browse(url, &format!("--screenshot={}", shot.display())).await;
    assert!(shot.is_file(), "no screenshot at {}", shot.display());
    eprintln!("screenshot of {url}: {}", shot.display());
    dom
}

/// `text` as the browser serialises a text node holding it.
fn as_text(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn assert_inert(dom: &str, view: &str) {
    assert!(
        !dom.contains("data-pwned"),
        "{view}: the userId ran as script (data-pwned set):\n{dom}"
    );
    assert!(
        dom.contains("<title>Order saga dashboard</title>"),
        "{view}: the title changed (a payload ran as script):\n{dom}"
    );
    assert!(
        !dom.contains("<img"),
        "{view}: a user string was parsed into an element:\n{dom}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_supplied_strings_are_rendered_as_text_in_the_dashboard_and_the_timeline() {
    // Given an order by a user whose id is markup, and one for a SKU that is markup
    let system = System::start_default().await;
    system.restock("apple", 5).await;
    let by_markup_user = system
        .place_id(order_body(USER_PAYLOAD, &[("apple", 1, 500)], None, 0, 500))
        .await;
    let for_markup_sku = system
        .place_id(order_body("bob", &[(SKU_PAYLOAD, 1, 500)], None, 0, 500))
        .await;
    system.settled(&by_markup_user).await;
    let failed = system.settled(&for_markup_sku).await;
    assert_eq!(failed["status"], "FAILED", "{failed}");
    let reason = failed["failureReason"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    // When the console is rendered by a real browser
    let base = system.url("order");
    let dom = render(&format!("{base}/"), "dashboard").await;

    // Then the userId is shown as text and nothing ran
    assert_inert(&dom, "dashboard");
    assert!(
        dom.contains(&as_text(USER_PAYLOAD)),
        "the dashboard does not show the userId as text:\n{dom}"
    );
    assert!(
        dom.contains(&by_markup_user) && dom.contains(&for_markup_sku),
        "the dashboard lists both orders:\n{dom}"
    );
    if reason.contains(SKU_PAYLOAD) {
        assert!(
            dom.contains(&as_text(SKU_PAYLOAD)),
            "the reason as text:\n{dom}"
        );
    }

    // When an order's timeline is opened through its deep link
    let dom = render(
        &format!("{base}/#/orders/{by_markup_user}"),
        "dashboard-timeline",
    )
    .await;

    // Then its steps show the userId as text too
    assert_inert(&dom, "timeline");
    assert!(
        dom.contains(&format!("Timeline of {by_markup_user}")),
        "the deep link opens the timeline:\n{dom}"
    );
    assert!(
        dom.contains("OrderPlaced") || dom.contains("order.placed") || dom.contains("Placed"),
        "the timeline lists the placement:\n{dom}"
    );
}
