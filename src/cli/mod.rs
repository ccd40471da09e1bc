//! One module per command.

pub mod append_loop;
pub mod audit;
pub mod checkpoint;
pub mod clerk;
pub mod client;
pub mod demo;
pub mod evidence;
pub mod expunge_loop;
pub mod generate;
pub mod import;
pub mod init;
pub mod keygen;
pub mod log_key;
pub mod principal;
pub mod proof;
pub mod query;
pub mod rebuild;
pub mod serve;
pub mod verify;
pub mod witness;

/// Exit code: bad usage or bad input.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: the ledger failed verification.
pub const EXIT_FAULT: u8 = 1;
/// Exit code: the data directory or another resource could not be used.
pub const EXIT_UNUSABLE: u8 = 3;
