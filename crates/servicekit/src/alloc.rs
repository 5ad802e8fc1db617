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
