//! The global allocator of every service binary: mimalloc.
//!
//! Declared here rather than in each `main.rs`: every service links servicekit, and a
//! `#[global_allocator]` in any linked crate applies to the whole binary. The services allocate
//! many small, short-lived buffers (messages, JSON, sled batches) on many threads, where
//! mimalloc's per-thread free lists cost less than glibc malloc's arenas; measured with
//! `scripts/bench.sh` (README, Performance).

/// The allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turns transparent huge pages off for this process.
///
/// mimalloc asks the kernel for huge pages on its arenas (`madvise`), and a 2 MiB page stays
/// resident while any small object on it lives: an idle service measured 84 MiB with them,
/// 44 MiB without, and the gap grows with the objects a long history scatters. Called before
/// the runtime starts, so nearly every mapping is made after it. `MIMALLOC_ALLOW_THP=1` keeps
/// them (mimalloc's own setting; trades memory for fewer page faults).
pub fn disable_transparent_huge_pages() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return;
    }
    #[cfg(target_os = "linux")]
    if let Err(err) = rustix::thread::disable_transparent_huge_pages(true) {
        // Only costs memory: say so and go on.
        eprintln!("warning: could not turn transparent huge pages off: {err}");
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn huge_pages_are_off_for_the_process_after_the_call() {
        // When (the flag is per process and inherited: harmless for the test binary)
        super::disable_transparent_huge_pages();
        // Then the kernel says so, unless the environment asked to keep them
        let disabled = rustix::thread::transparent_huge_pages_are_disabled().expect("prctl");
        assert_eq!(disabled, std::env::var_os("MIMALLOC_ALLOW_THP").is_none());
    }
}
