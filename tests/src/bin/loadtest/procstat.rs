//! CPU time and resident memory of processes, read from `/proc` (Linux only).

use std::collections::BTreeMap;

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`; 100 on Linux).
const TICKS_PER_SEC_DEFAULT: u64 = 100;

/// Ticks per second, asked of `getconf` once.
pub(crate) fn ticks_per_sec() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(TICKS_PER_SEC_DEFAULT)
}

/// `(comm, ppid, utime + stime in ticks)` of a process.
fn stat(pid: u32) -> Option<(String, u32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm is in parentheses and may hold spaces: split after the last ')'.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_owned();
    let fields: Vec<&str> = text[close + 2..].split_whitespace().collect();
    // After comm: state(0) ppid(1) ... utime(11) stime(12).
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((comm, ppid, utime + stime))
}

/// CPU ticks (user + system) a process has used so far.
pub(crate) fn cpu_ticks(pid: u32) -> Option<u64> {
    stat(pid).map(|(_, _, ticks)| ticks)
}

/// Resident set size in KiB (`VmRSS`).
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Direct children of this process by command name (`nats-server`, `order`, ...).
pub(crate) fn children_by_name() -> BTreeMap<String, u32> {
    let me = std::process::id();
    let mut found = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some((comm, ppid, _)) = stat(pid) {
            if ppid == me {
                found.insert(comm, pid);
            }
        }
    }
    found
}

/// CPU ticks of each named process at one moment.
#[derive(Debug, Clone, Default)]
pub(crate) struct CpuSnapshot(pub BTreeMap<String, u64>);

impl CpuSnapshot {
    /// Reads every named process.
    pub(crate) fn take(pids: &BTreeMap<String, u32>) -> Self {
        Self(
            pids.iter()
                .filter_map(|(name, pid)| cpu_ticks(*pid).map(|t| (name.clone(), t)))
                .collect(),
        )
    }

    /// Milliseconds of CPU each process used between `self` and `later`.
    pub(crate) fn ms_until(
        &self,
        later: &CpuSnapshot,
        ticks_per_sec: u64,
    ) -> BTreeMap<String, f64> {
        later
            .0
            .iter()
            .map(|(name, after)| {
                let before = self.0.get(name).copied().unwrap_or(*after);
                let ms = after.saturating_sub(before) as f64 * 1_000.0 / ticks_per_sec as f64;
                (name.clone(), ms)
            })
            .collect()
    }
}
