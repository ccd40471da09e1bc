//! Chronicle's criminal-records domain: the event vocabulary, command validation, the projection
//! (rap sheets, cases, dissemination logs, lookups), the access policy as data, requester views,
//! history and as-of queries.
//!
//! Layering: this crate sits on the store (appends, reads) and core (signing); it knows nothing of
//! gRPC. Everything it shows is a pure function of the log (I6).

pub mod access;
pub mod date;
pub mod disclose;
pub mod history;
#[cfg(feature = "test-hooks")]
pub mod hooks;
pub mod import;
pub mod model;
pub mod persist;
pub mod policy;
pub mod refusals;
pub mod service;
pub mod state;
pub mod validate;
pub mod view;

pub use access::{Call, Caller};
pub use date::Date;
pub use disclose::{CheckResponse, RecipientsQuery, RecordQuery, Target};
pub use history::HistoryQuery;
pub use model::{ChargeSpec, DispositionKind, Level, Name, Purpose, RecordEvent, ReliefKind, Scope};
pub use policy::{Access, Policy};
pub use refusals::Denial;
pub use service::{RebuildPhases, Records, ServiceError};
pub use state::State;
pub use validate::RecordsError;
pub use view::{RecordView, Request, view};
