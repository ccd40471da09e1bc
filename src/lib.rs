//! The `chronicle` application: the data directory, and the commands of the `chronicle` binary.
//!
//! The library half exists so that tests and benchmarks use exactly the code the binary uses
//! to lay out and open a data directory.

pub mod datadir;
