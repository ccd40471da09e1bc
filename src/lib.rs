//! The `chronicle` application: the data directory, and the commands of the `chronicle` binary.
//!
//! The library half exists so that tests and benchmarks use exactly the code the binary uses
//! to lay out and open a data directory.

pub mod datadir;

/// jemalloc for every program built on this crate (the binary, its tests and benchmarks):
/// replaying the log and serving many connections allocate and free short-lived buffers on all
/// cores. Measured back to back on this machine: the system allocator and mimalloc both turn that
/// into fresh pages and zeroing (mimalloc's arenas land on transparent huge pages, zeroed 2 MiB at
/// a time, and its options cannot be set from safe Rust); jemalloc rebuilt a 235,000-entry log at
/// 76,500 entries/s against mimalloc's 56,000, and appended at least as fast.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
