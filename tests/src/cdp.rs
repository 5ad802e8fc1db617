//! A minimal Chrome DevTools Protocol client: enough to drive Debian's headless `chromium` with
//! real mouse clicks and keyboard input, read the page through `Runtime.evaluate`, and take
//! screenshots. One browser, one page, flattened session over the browser's websocket.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// How long the browser may take to start and print its DevTools URL.
pub const LAUNCH_MAX: Duration = Duration::from_secs(60);
/// How long one protocol call may take (a hang guard, not a measurement).
pub const CALL_MAX: Duration = Duration::from_secs(60);
/// How every test runs chromium: headless, in a container (no sandbox, GPU or /dev/shm), with a
/// fresh profile's first-run pages skipped, on a 1280x900 window without scrollbars.
pub const HEADLESS_FLAGS: [&str; 7] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--hide-scrollbars",
    "--window-size=1280,900",
];
/// Outgoing protocol messages queued at most.
const OUTGOING_QUEUE: usize = 64;

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// A headless chromium with one page; killed on drop.
pub struct Browser {
    _child: tokio::process::Child,
    _profile: tempfile::TempDir,
    outgoing: mpsc::Sender<String>,
    pending: Pending,
    next_id: AtomicU64,
    session: String,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// The browser binary: `$CHROMIUM`, else `chromium` on PATH; a missing browser fails naming the
/// install script.
pub fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return PathBuf::from(path);
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("chromium"))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "chromium is not installed: run scripts/ensure-chromium.sh \
             (apt-get update && apt-get install -y chromium), or set CHROMIUM to a Chromium binary"
        )
    })
}

impl Browser {
    /// Starts headless chromium and opens one blank page of 1280x900.
    pub async fn launch() -> Self {
        let profile = tempfile::tempdir().expect("a browser profile directory");
        let mut child = tokio::process::Command::new(chromium())
            .args(HEADLESS_FLAGS)
            .arg("--remote-debugging-port=0")
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("chromium did not start ({e}): run scripts/ensure-chromium.sh")
            });
        let stderr = child.stderr.take().expect("piped stderr");
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        let ws_url = tokio::time::timeout(LAUNCH_MAX, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(at) = line.find("ws://") {
                    return line[at..].trim().to_owned();
                }
            }
            panic!("chromium exited without a DevTools URL")
        })
        .await
        .expect("chromium printed its DevTools URL in time");
        // Keep draining stderr so the browser never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let (socket, _) = tokio_tungstenite::connect_async(ws_url.as_str())
            .await
            .expect("the DevTools websocket accepts us");
        let (mut sink, mut stream) = socket.split();
        let (outgoing, mut queue) = mpsc::channel::<String>(OUTGOING_QUEUE);
        let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
        let reader_pending = pending.clone();
        let reader = tokio::spawn(async move {
            loop {
                tokio::select! {
                    out = queue.recv() => match out {
                        Some(text) => if sink.send(Message::text(text)).await.is_err() { break },
                        None => break,
                    },
                    incoming = stream.next() => match incoming {
                        Some(Ok(Message::Text(text))) => {
                            let Ok(value) = serde_json::from_str::<Value>(&text) else { continue };
                            if let Some(id) = value.get("id").and_then(Value::as_u64) {
                                let waiter = reader_pending.lock().expect("lock").remove(&id);
                                if let Some(waiter) = waiter {
                                    let _ = waiter.send(value);
                                }
                            }
                        }
                        Some(Ok(_)) => {}
                        _ => break,
                    },
                }
            }
        });
        let mut browser = Self {
            _child: child,
            _profile: profile,
            outgoing,
            pending,
            next_id: AtomicU64::new(1),
            session: String::new(),
            reader,
        };
        let target = browser
            .call("Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let target_id = target["targetId"].as_str().expect("a target id").to_owned();
        let attached = browser
            .call(
                "Target.attachToTarget",
                json!({"targetId": target_id, "flatten": true}),
            )
            .await;
        browser.session = attached["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        browser.call("Page.enable", json!({})).await;
        browser.call("Runtime.enable", json!({})).await;
        browser
            .call(
                "Emulation.setDeviceMetricsOverride",
                json!({"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": false}),
            )
            .await;
        browser
    }

    /// One protocol call on the page's session (the browser's own before it has one); panics on
    /// a protocol error.
    pub async fn call(&self, method: &str, params: Value) -> Value {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut message = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("lock").insert(id, tx);
        self.outgoing
            .send(message.to_string())
            .await
            .expect("the DevTools connection is open");
        let reply = tokio::time::timeout(CALL_MAX, rx)
            .await
            .unwrap_or_else(|_| panic!("{method} did not answer"))
            .unwrap_or_else(|_| panic!("the DevTools connection closed during {method}"));
        if let Some(error) = reply.get("error") {
            panic!("{method} failed: {error}");
        }
        reply["result"].clone()
    }

    /// Opens a URL (the page loads in the background: wait for what you need).
    pub async fn goto(&self, url: &str) {
        self.call("Page.navigate", json!({"url": url})).await;
    }

    /// Evaluates a JS expression (promises awaited) and returns its value.
    pub async fn eval(&self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("{expression} threw: {exception}");
        }
        result["result"]["value"].clone()
    }

    /// Polls a JS expression until it is truthy; returns its value. `what` names it on timeout.
    pub async fn wait_for(&self, expression: &str, what: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        // A page still loading may not have what the expression reads: that is "not yet".
        let guarded = format!(
            "(() => {{ try {{ return ({expression}); }} catch (_) {{ return null; }} }})()"
        );
        loop {
            let value = self.eval(&guarded).await;
            let truthy = !matches!(value, Value::Null | Value::Bool(false))
                && value != json!(0)
                && value != json!("");
            if truthy {
                return value;
            }
            if Instant::now() >= deadline {
                let body = self
                    .eval("document.body ? document.body.innerText : ''")
                    .await;
                panic!("waited {within:?} for {what} ({expression}); the page shows:\n{body}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A real mouse click in the middle of the first element matching `selector`.
    pub async fn click(&self, selector: &str) {
        let selector_js = serde_json::to_string(selector).expect("a string");
        let point = self
            .eval(&format!(
                "(() => {{ const e = document.querySelector({selector_js}); if (!e) return null; \
                 e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect(); \
                 return [r.left + r.width / 2, r.top + r.height / 2]; }})()"
            ))
            .await;
        let (x, y) = match point.as_array().map(|p| (p[0].as_f64(), p[1].as_f64())) {
            Some((Some(x), Some(y))) => (x, y),
            _ => panic!("nothing to click at {selector}"),
        };
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}),
            )
            .await;
        }
    }

    /// Clicks an input and types `text` into it, replacing what it held.
    pub async fn type_into(&self, selector: &str, text: &str) {
        self.click(selector).await;
        let selector_js = serde_json::to_string(selector).expect("a string");
        self.eval(&format!("document.querySelector({selector_js}).select()"))
            .await;
        self.call("Input.insertText", json!({"text": text})).await;
    }

    /// Saves a PNG of the whole page at `path`.
    pub async fn screenshot(&self, path: &Path) {
        let height = self
            .eval("Math.max(document.documentElement.scrollHeight, 900)")
            .await
            .as_f64()
            .unwrap_or(900.0)
            .min(8_000.0);
        let shot = self
            .call(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true,
                       "clip": {"x": 0, "y": 0, "width": 1280, "height": height, "scale": 1}}),
            )
            .await;
        let data = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("base64 screenshot");
        std::fs::write(path, data).expect("the screenshot is written");
    }
}

/// `target/screenshots/` (or under `$CARGO_TARGET_DIR`), created.
pub fn screenshots_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("screenshots");
    std::fs::create_dir_all(&dir).expect("a screenshots directory");
    dir
}
