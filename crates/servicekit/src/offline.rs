//! The offline commands every binary has besides `serve`: replay, verify, export.

use std::path::PathBuf;
use std::time::UNIX_EPOCH;

use eventlog::domain::Domain;
use eventlog::event_store::{EventStore, ReplayBound, StoreConfig};
use eventlog::live;
use eventlog::snapshot::{self, Refused, Verdict};

/// The offline commands every binary has besides `serve`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Offline {
    /// Rebuild state from the log (optionally up to a global seq or a time) and print it.
    Replay {
        /// Stop after this global seq.
        #[arg(long)]
        upto_seq: Option<u64>,
        /// Ignore records after this time (RFC 3339, or ms since the Unix epoch).
        #[arg(long)]
        upto_time: Option<String>,
    },
    /// Check the hash chain, that the log folds into a state, and that every snapshot equals
    /// the fold of the log up to its seq.
    Verify,
    /// Write the log as JSON lines.
    Export {
        /// Output file (stdout when absent).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Parses `--upto-time`: RFC 3339 or ms since the epoch.
pub fn parse_time_ms(text: &str) -> std::result::Result<u64, String> {
    if let Ok(ms) = text.parse::<u64>() {
        return Ok(ms);
    }
    humantime::parse_rfc3339_weak(text)
        .map_err(|e| format!("--upto-time {text:?}: {e} (use RFC 3339 or ms since epoch)"))
        .and_then(|t| {
            t.duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .map_err(|e| e.to_string())
        })
}

/// Runs an offline command against a store (a data dir with the default config, or a config:
/// the sled cache size is the knob for replay and verify speed on a large log); prints to
/// stdout. Returns the process exit code.
pub fn run_offline<D: Domain>(
    domain: &str,
    store: impl Into<StoreConfig>,
    command: &Offline,
    render_state: impl Fn(&D::State) -> serde_json::Value,
) -> std::result::Result<u8, String> {
    let config = store.into();
    let dir = config.path.as_path();
    if !dir.exists() {
        return Err(format!("no data directory at {}", dir.display()));
    }
    let store = EventStore::open(config).map_err(|e| e.to_string())?;
    match command {
        Offline::Replay {
            upto_seq,
            upto_time,
        } => {
            let bound = ReplayBound {
                upto_seq: *upto_seq,
                upto_time_ms: upto_time.as_deref().map(parse_time_ms).transpose()?,
            };
            // Starts from the newest usable snapshot inside the bound.
            let rebuilt = live::rebuild_report::<D>(&store, bound).map_err(|e| e.to_string())?;
            let (state, folded) = (rebuilt.state, rebuilt.folded);
            let report = serde_json::json!({
                "domain": domain,
                "eventsFolded": folded,
                "fromSnapshotSeq": rebuilt.snapshot_seq,
                "head": store.head(),
                "bound": { "uptoSeq": bound.upto_seq, "uptoTimeMs": bound.upto_time_ms },
                "state": render_state(&state),
            });
            println!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
            Ok(0)
        }
        Offline::Verify => {
            // One read of the log: hash chain, stream index, and the fold from seq 1 (never
            // from a snapshot) compared with every snapshot. Every record must decode with the
            // current schema and fold without tripping one of evolve's invariant assertions; a
            // tripped one is reported, not a crash.
            let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                snapshot::verify_all::<D>(&store)
            }));
            let (report, checks) = match checked {
                Ok(Ok((report, checks, _))) => (report, checks),
                Ok(Err(err)) => {
                    println!("{domain}: log INVALID: {err}");
                    return Ok(1);
                }
                Err(_) => {
                    println!("{domain}: log does not fold: an event breaks a domain invariant (see the panic above)");
                    return Ok(1);
                }
            };
            let mut bad = 0;
            for check in &checks {
                match &check.verdict {
                    Verdict::Matches => {}
                    Verdict::Differs => {
                        bad += 1;
                        println!(
                            "{domain}: snapshot at seq {} DIFFERS from the fold of the log up to it",
                            check.global_seq
                        );
                    }
                    Verdict::Refused(Refused::Corrupt(why)) => {
                        bad += 1;
                        println!(
                            "{domain}: snapshot at seq {} is CORRUPT: {why}",
                            check.global_seq
                        );
                    }
                    Verdict::Refused(Refused::Stale(why)) => println!(
                        "{domain}: snapshot at seq {} is from another version and unused ({why})",
                        check.global_seq
                    ),
                }
            }
            if bad > 0 {
                println!("{domain}: {bad} bad snapshot(s); they are ignored at start, delete them or let newer ones replace them");
                return Ok(1);
            }
            println!(
                "{domain}: log OK: {} records in {} streams, hash chain intact, state folds; {} snapshots match the fold; {} outbox entries pending, {} dedup records",
                report.records,
                report.streams,
                checks
                    .iter()
                    .filter(|c| c.verdict == Verdict::Matches)
                    .count(),
                report.outbox_pending,
                report.dedup_records
            );
            Ok(0)
        }
        Offline::Export { out } => {
            let mut sink: Box<dyn std::io::Write> = match out {
                Some(path) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout())),
            };
            let mut count = 0u64;
            for record in store.read_all(1, ReplayBound::default()) {
                let record = record.map_err(|e| e.to_string())?;
                let line = live::render_record::<D>(domain, &record);
                writeln!(sink, "{line}").map_err(|e| e.to_string())?;
                count += 1;
            }
            sink.flush().map_err(|e| e.to_string())?;
            eprintln!("{domain}: exported {count} records");
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventlog::live::{Execution, Live};
    use serde::{Deserialize, Serialize};

    /// A running total: the smallest domain with a state worth snapshotting.
    struct Tally;

    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    struct Total(u64);

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Added(u64);

    impl Domain for Tally {
        type State = Total;
        type Event = Added;
        type Command = u64;
        // A tally takes every number.
        type Rejection = std::convert::Infallible;
        fn decide(_: &Total, n: u64) -> Result<Vec<Added>, Self::Rejection> {
            Ok(vec![Added(n)])
        }
        fn evolve(state: &mut Total, event: &Added) {
            state.0 += event.0;
        }
        fn event_type(_: &Added) -> &'static str {
            "Added"
        }
        fn stream_of(_: &Added) -> String {
            "tally".into()
        }
    }

    fn render(state: &Total) -> serde_json::Value {
        serde_json::json!(state.0)
    }

    #[tokio::test]
    async fn verify_exits_1_when_a_snapshot_disagrees_with_the_fold_of_the_log() {
        // Given a log of ten events with a genuine snapshot at 10
        let dir = tempfile::tempdir().expect("a temp dir");
        {
            let store = EventStore::open(StoreConfig::new(dir.path())).expect("opens");
            let live = Live::<Tally>::open(store).expect("opens");
            for n in 1..=10 {
                live.execute(Execution::default(), n, |_, _| Ok(Vec::new()))
                    .await
                    .expect("executes")
                    .expect("accepted");
            }
            assert_eq!(live.snapshot(5).await.expect("snapshot"), Some(10));
        }
        let verify = || run_offline::<Tally>("tally", dir.path(), &Offline::Verify, render);
        assert_eq!(verify(), Ok(0));

        // When a snapshot with a wrong total is stored at 5
        {
            let store = EventStore::open(StoreConfig::new(dir.path())).expect("opens");
            let bound = ReplayBound {
                upto_seq: Some(5),
                upto_time_ms: None,
            };
            let upto = live::rebuild_from_scratch::<Tally>(&store, bound).expect("folds");
            let wrong = Total(upto.state.0 + 1);
            snapshot::write::<Tally>(&store, 5, &wrong, 5).expect("written");
        }

        // Then verify fails
        assert_eq!(verify(), Ok(1));
    }
}
