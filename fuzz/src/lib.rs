//! Chronicle's fuzz targets (see docs/FUZZING.md). The bodies live in `targets.rs`, which the
//! stable test `tests/fuzz_replay.rs` also includes to replay every corpus file and past crash.

/// Where `fixtures/`, `corpus/` and `artifacts/` are.
pub const FUZZ_DIR: &str = env!("CARGO_MANIFEST_DIR");

pub mod targets;
