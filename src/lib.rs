//! The `chronicle` application: the data directory, and the commands of the `chronicle` binary.
//!
//! The library half exists so that tests and benchmarks use exactly the code the binary uses
//! to lay out and open a data directory.

pub mod datadir;

/// mimalloc for every program built on this crate (the binary, its tests and benchmarks):
/// replaying the log allocates and frees many short-lived buffers on all cores, which the system
/// allocator turns into page faults and zeroing.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
