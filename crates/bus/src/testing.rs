//! A real nats-server for tests (feature `test-util`): free port, temporary store, killed on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a started server may take to accept JetStream requests.
pub const SERVER_READY_TIMEOUT_SECS: u64 = 20;

const INSTALL_HINT: &str =
    "nats-server not found on PATH; install it with: apt-get update && apt-get install -y nats-server";

/// A nats-server child process with JetStream, owned by a test.
pub struct NatsServer {
    port: u16,
    store_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    child: Option<Child>,
    extra_args: Vec<String>,
}

impl NatsServer {
    /// Starts a server on a free port with a fresh temporary store.
    pub async fn start() -> Self {
        Self::start_with_args(Vec::new()).await
    }

    /// Starts a server with extra command-line arguments (e.g. `-c nats/nats.conf`).
    pub async fn start_with_args(extra_args: Vec<String>) -> Self {
        let temp = tempfile::tempdir().expect("a temporary directory for the nats store");
        let port = free_port();
        let mut server = Self {
            port,
            store_dir: temp.path().join("jetstream"),
            _temp: Some(temp),
            child: None,
            extra_args,
        };
        server.spawn().await;
        server
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JetStream store directory.
    pub fn store_dir(&self) -> &Path {
        &self.store_dir
    }

    /// Kills the server (SIGKILL: a crash, not a clean shutdown).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server cleanly (SIGTERM... via kill on drop is a crash; this waits for exit).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops and starts the server on the same port and store (a broker restart).
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    /// Stops the server, deletes its store (broker data loss) and starts it again empty.
    pub async fn wipe(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.store_dir);
        self.spawn().await;
    }

    /// Starts the server if it is not running.
    pub async fn start_again(&mut self) {
        if self.child.is_none() {
            self.spawn().await;
        }
    }

    async fn spawn(&mut self) {
        let log = std::fs::File::create(self.store_dir.with_extension("log"))
            .expect("a log file for nats-server");
        let child = Command::new("nats-server")
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&self.store_dir)
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => panic!("{INSTALL_HINT}"),
            Err(err) => panic!("cannot start nats-server: {err}"),
        };
        self.child = Some(child);
        self.wait_ready().await;
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(SERVER_READY_TIMEOUT_SECS);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "nats-server exited with {status}; see {}",
                        self.store_dir.with_extension("log").display()
                    );
                }
            }
            if jetstream_ready(&self.url()).await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nats-server on port {} not ready within {SERVER_READY_TIMEOUT_SECS}s",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// Whether the server answers JetStream API requests (it may accept connections earlier).
async fn jetstream_ready(url: &str) -> bool {
    let Ok(Ok(client)) =
        tokio::time::timeout(Duration::from_secs(2), async_nats::connect(url)).await
    else {
        return false;
    };
    let reply = tokio::time::timeout(
        Duration::from_secs(2),
        client.request("$JS.API.INFO", bytes::Bytes::new()),
    )
    .await;
    match reply {
        Ok(Ok(message)) => {
            let body = String::from_utf8_lossy(&message.payload);
            body.contains("\"type\"") && !body.contains("\"error\"")
        }
        _ => false,
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port")
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout` (the store's
/// helper, so the bus's tests and the store's wait alike).
pub use eventlog::testing_hooks::eventually;
