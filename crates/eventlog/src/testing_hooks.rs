//! Failure injection for tests (feature `test-util`): hold the writer between applying a
//! commit group and flushing it, to show that nothing is answered before the disk has it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

static HOLD_FLUSH: AtomicBool = AtomicBool::new(false);
static HELD_GROUPS: AtomicU64 = AtomicU64::new(0);
/// How often a held writer looks whether it may flush.
const HOLD_POLL_MS: u64 = 1;

/// While `true`, every store writer in this process applies commit groups but does not flush
/// them, so their callers are not answered. A SIGKILL in that window loses them, as a crash would.
pub fn set_hold_flush(hold: bool) {
    HOLD_FLUSH.store(hold, Ordering::SeqCst);
}

/// Commit groups that were applied and then held before their flush: a test's sign that a
/// decision reached the writer.
pub fn held_groups() -> u64 {
    HELD_GROUPS.load(Ordering::SeqCst)
}

/// Called by the writer right before it flushes.
pub(crate) fn hold_flush() {
    if !HOLD_FLUSH.load(Ordering::SeqCst) {
        return;
    }
    HELD_GROUPS.fetch_add(1, Ordering::SeqCst);
    while HOLD_FLUSH.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(HOLD_POLL_MS));
    }
}
