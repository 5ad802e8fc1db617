//! What the data platform received: the order service's file sink, one JSON line per order.

use std::collections::BTreeMap;
use std::path::Path;

use uuid::Uuid;

use crate::{AuditError, Result};

pub use contract::DATAPLATFORM_FILE;

/// The lines of the data platform file, counted by order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Received {
    /// Lines per orderId.
    pub lines: BTreeMap<Uuid, usize>,
    /// 1-based numbers of lines without a readable `orderId`.
    pub unreadable: Vec<usize>,
}

/// Reads and counts the file; a missing file means nothing was received.
pub fn read(path: &Path) -> Result<Received> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(AuditError::DataPlatform {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    Ok(count(&text))
}

/// Counts lines per orderId; blank lines are ignored.
pub fn count(text: &str) -> Received {
    let mut received = Received::default();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match contract::feed_line_order_id(line) {
            Some(id) => *received.lines.entry(id).or_insert(0) += 1,
            None => received.unreadable.push(index + 1),
        }
    }
    received
}
