//! The data platform's embedded file sink: completed orders as JSON lines, grouped per fsync.
//!
//! Appends from every forwarder lane go to one writer thread, which takes whatever is queued
//! (up to [`FILE_SINK_GROUP_MAX`] appends), writes it with one `write` and makes it durable with
//! one `fdatasync`, then answers every append of the group. An append is answered only once its
//! line is durable. Orders already written are dropped; the sink remembers the last
//! [`FILE_SINK_RECENT_IDS`] of them (loaded from the file's last [`FILE_SINK_TAIL_BYTES`] at start,
//! so a start costs the same after a million orders), which covers the only way a written order
//! comes back: a redelivery before its `DataPlatformDelivered` is recorded.

use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::io::{BufRead as _, BufReader, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// Most appends written and synced together.
pub const FILE_SINK_GROUP_MAX: usize = 1_024;
/// Appends queued for the writer before `append` waits.
pub const FILE_SINK_QUEUE: usize = 1_024;
/// How many written orderIds the sink remembers to drop repeats (~50 bytes each).
pub const FILE_SINK_RECENT_IDS: usize = 16_384;
/// How much of the file's end is read at open to remember its latest orders: enough for
/// [`FILE_SINK_RECENT_IDS`] lines of a few hundred bytes.
pub const FILE_SINK_TAIL_BYTES: u64 = 8 * 1024 * 1024;

struct Append {
    order_id: Uuid,
    line: String,
    done: oneshot::Sender<Result<(), String>>,
}

/// Handle on the writer thread; the thread ends when the last handle is dropped.
#[derive(Debug, Clone)]
pub struct FileSink {
    path: PathBuf,
    queue: mpsc::Sender<Append>,
}

/// The last `capacity` ids, oldest evicted first.
#[derive(Debug)]
struct RecentIds {
    set: HashSet<Uuid>,
    order: VecDeque<Uuid>,
    capacity: usize,
}

impl RecentIds {
    fn new(capacity: usize) -> Self {
        Self {
            set: HashSet::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    fn contains(&self, id: &Uuid) -> bool {
        self.set.contains(id)
    }

    fn insert(&mut self, id: Uuid) {
        if !self.set.insert(id) {
            return;
        }
        self.order.push_back(id);
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        debug_assert_eq!(self.set.len(), self.order.len());
    }
}

impl FileSink {
    /// Opens (creating) the file and starts its writer thread.
    pub fn open(path: PathBuf) -> std::io::Result<Self> {
        Self::open_with_memory(path, FILE_SINK_RECENT_IDS)
    }

    /// [`FileSink::open`] remembering `recent_ids` written orders.
    pub fn open_with_memory(path: PathBuf, recent_ids: usize) -> std::io::Result<Self> {
        let mut recent = RecentIds::new(recent_ids);
        if let Ok(mut file) = File::open(&path) {
            let len = file.metadata()?.len();
            let start = len.saturating_sub(FILE_SINK_TAIL_BYTES);
            file.seek(SeekFrom::Start(start))?;
            let mut lines = BufReader::new(file).split(b'\n');
            if start > 0 {
                // Most likely the middle of a line.
                lines.next();
            }
            for line in lines {
                if let Some(id) = contract::feed_line_order_id(&String::from_utf8_lossy(&line?)) {
                    recent.insert(id);
                }
            }
        }
        let (queue, rx) = mpsc::channel(FILE_SINK_QUEUE);
        let writer_path = path.clone();
        std::thread::Builder::new()
            .name("dataplatform-file".into())
            .spawn(move || write_groups(&writer_path, rx, recent))?;
        Ok(Self { path, queue })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one order's line (a newline is added) and returns once it is durable; an order
    /// already in the file is not written again.
    pub async fn append(&self, order_id: Uuid, line: String) -> Result<(), String> {
        let (done, answer) = oneshot::channel();
        self.queue
            .send(Append {
                order_id,
                line,
                done,
            })
            .await
            .map_err(|_| "data platform file writer stopped".to_owned())?;
        answer
            .await
            .map_err(|_| "data platform file writer stopped".to_owned())?
    }
}

/// The writer thread: one write and one sync per group of queued appends. The file is opened
/// per group (one open next to one fsync), so a sink that was broken (the path unusable) and
/// then repaired works again without a restart, as the per-append sink did.
fn write_groups(path: &Path, mut rx: mpsc::Receiver<Append>, mut recent: RecentIds) {
    let mut group: Vec<Append> = Vec::with_capacity(FILE_SINK_GROUP_MAX);
    let mut buffer = String::new();
    let mut in_group: HashSet<Uuid> = HashSet::new();
    // Waits for one append, then takes whatever else is queued: the group.
    while rx.blocking_recv_many(&mut group, FILE_SINK_GROUP_MAX) > 0 {
        buffer.clear();
        in_group.clear();
        for append in &group {
            if recent.contains(&append.order_id) || !in_group.insert(append.order_id) {
                continue;
            }
            buffer.push_str(&append.line);
            buffer.push('\n');
        }
        let written = if buffer.is_empty() {
            Ok(())
        } else {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut file| {
                    file.write_all(buffer.as_bytes())?;
                    file.sync_data()
                })
                .map_err(|e| e.to_string())
        };
        if written.is_ok() {
            for id in in_group.drain() {
                recent.insert(id);
            }
        }
        for append in group.drain(..) {
            // A caller that gave up no longer needs the answer.
            let _ = append.done.send(written.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: Uuid) -> String {
        serde_json::json!({"orderId": id, "amount": 1}).to_string()
    }

    fn lines_per_order(path: &Path) -> std::collections::HashMap<Uuid, usize> {
        let text = std::fs::read_to_string(path).expect("the sink file");
        let mut counts = std::collections::HashMap::new();
        for l in text.lines() {
            *counts
                .entry(contract::feed_line_order_id(l).expect("every line has an orderId"))
                .or_insert(0) += 1;
        }
        counts
    }

    #[tokio::test]
    async fn concurrent_appends_each_land_once_and_are_in_the_file_when_answered() {
        // Given a sink
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("dataplatform.jsonl");
        let sink = FileSink::open(path.clone()).expect("the sink");
        // When 200 orders are appended at once, each twice
        let ids: Vec<Uuid> = (0..200).map(|_| Uuid::now_v7()).collect();
        let appends = ids.iter().chain(ids.iter()).map(|id| {
            let sink = sink.clone();
            let id = *id;
            async move { sink.append(id, line(id)).await }
        });
        let results = futures::future::join_all(appends).await;
        // Then every append succeeded, and the file holds each order exactly once
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        let counts = lines_per_order(&path);
        assert_eq!(counts.len(), ids.len());
        assert!(counts.values().all(|n| *n == 1), "{counts:?}");
    }

    #[tokio::test]
    async fn a_reopened_sink_does_not_write_an_order_already_in_the_file() {
        // Given an order written by a sink that was then dropped (a restart)
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("dataplatform.jsonl");
        let id = Uuid::now_v7();
        FileSink::open(path.clone())
            .expect("the sink")
            .append(id, line(id))
            .await
            .expect("written");
        // When the order is delivered again to a new sink on the same file
        let sink = FileSink::open(path.clone()).expect("the sink again");
        sink.append(id, line(id)).await.expect("answered");
        // Then it is still in the file once
        assert_eq!(lines_per_order(&path).get(&id), Some(&1));
    }

    #[tokio::test]
    async fn the_sink_remembers_only_the_most_recent_orders() {
        // Given a sink that remembers 3 orders, and 5 orders written
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("dataplatform.jsonl");
        let sink = FileSink::open_with_memory(path.clone(), 3).expect("the sink");
        let ids: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();
        for id in &ids {
            sink.append(*id, line(*id)).await.expect("written");
        }
        // When the newest and the oldest are delivered again
        sink.append(ids[4], line(ids[4])).await.expect("answered");
        sink.append(ids[0], line(ids[0])).await.expect("answered");
        // Then the newest is dropped as a repeat; the oldest, beyond memory, is written again
        // (the forwarder's DataPlatformDelivered record is what stops old repeats)
        let counts = lines_per_order(&path);
        assert_eq!(counts.get(&ids[4]), Some(&1));
        assert_eq!(counts.get(&ids[0]), Some(&2));
    }

    #[tokio::test]
    async fn an_unusable_path_fails_each_append_until_it_is_repaired() {
        // Given a sink whose path is a directory
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("dataplatform.jsonl");
        let sink = FileSink::open(path.clone()).expect("the sink");
        std::fs::create_dir(&path).expect("the path is free");
        let id = Uuid::now_v7();
        // When an order is appended, Then it fails
        assert!(sink.append(id, line(id)).await.is_err());
        // When the path is repaired and the order delivered again, Then it is written once
        std::fs::remove_dir(&path).expect("the directory is removed");
        sink.append(id, line(id)).await.expect("written");
        assert_eq!(lines_per_order(&path).get(&id), Some(&1));
    }

    #[test]
    fn recent_ids_never_hold_more_than_their_capacity() {
        let mut recent = RecentIds::new(10);
        for _ in 0..1_000 {
            recent.insert(Uuid::now_v7());
        }
        assert_eq!(recent.set.len(), 10);
        assert_eq!(recent.order.len(), 10);
    }
}
