//! The one table from domain errors to gRPC status codes.
//!
//! | error | code |
//! |---|---|
//! | a field of the request is missing or malformed | `INVALID_ARGUMENT`, naming the field |
//! | a records rule about the state (duplicate SID, disposition exists, ...) | `FAILED_PRECONDITION` |
//! | the stream is not at the version the caller expected | `ABORTED` |
//! | no such subject, case, cycle, charge, checkpoint or position; an expunged record; a record of which the policy shows the caller nothing (the same answer as for an unknown one) | `NOT_FOUND` |
//! | the role may not do this, for this purpose; the command's key is revoked or unknown | `PERMISSION_DENIED` |
//! | no client certificate, a certificate naming no registered principal, a principal with no valid key, a command signature that does not verify | `UNAUTHENTICATED` |
//! | more commands or bytes than allowed, a page too large | `RESOURCE_EXHAUSTED` |
//! | the store is shutting down | `UNAVAILABLE` |
//! | the call's deadline (`grpc-timeout`, or the server's limit) passed | `CANCELLED`, "Timeout expired" (from tonic) |
//! | the store failed (damage, i/o); a refusal that could not be logged | `INTERNAL` |

use chronicle_core::RegistryError;
use chronicle_records::ServiceError;
use chronicle_records::validate::RecordsError;
use chronicle_records::view::ViewError;
use chronicle_store::{AppendError, CheckpointError, ReadError};
use chronicle_tlog::TreeError;
use tonic::{Code, Status};

/// A missing or malformed request field.
pub fn invalid(field: &str, reason: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{field}: {reason}"))
}

/// The status for a records-service error.
pub fn of_service(e: &ServiceError) -> Status {
    match e {
        ServiceError::Invalid(r) => of_records(r),
        ServiceError::Append(a) => of_append(a),
        ServiceError::Read(r) => of_read(r),
        ServiceError::View(ViewError::Denied { .. }) => Status::permission_denied(e.to_string()),
        ServiceError::View(ViewError::UnknownSubject(_)) => Status::not_found(e.to_string()),
        ServiceError::View(ViewError::NothingShown { .. }) => Status::not_found(e.to_string()),
        ServiceError::NotFound(_) | ServiceError::Expunged { .. } => Status::not_found(e.to_string()),
        ServiceError::Refused(_) => Status::permission_denied(e.to_string()),
        ServiceError::BadField { .. } => Status::invalid_argument(e.to_string()),
        ServiceError::PageTooLarge { .. } | ServiceError::RateLimited { .. } => {
            Status::resource_exhausted(e.to_string())
        }
        _ => Status::internal(e.to_string()),
    }
}

fn of_records(e: &RecordsError) -> Status {
    let msg = e.to_string();
    match e {
        RecordsError::Malformed(_)
        | RecordsError::DateOrder { .. }
        | RecordsError::FutureDate { .. }
        | RecordsError::EmptyScope => Status::invalid_argument(msg),
        RecordsError::RoleNotAllowed { .. } | RecordsError::UnknownPrincipal(_) | RecordsError::NotBound(_) => {
            Status::permission_denied(msg)
        }
        RecordsError::UnknownSubject(_) | RecordsError::UnknownCycle(_) | RecordsError::UnknownCharge(_) => {
            Status::not_found(msg)
        }
        _ => Status::failed_precondition(msg),
    }
}

fn of_registry(e: &RegistryError, msg: String) -> Status {
    match e {
        RegistryError::BadSignature => Status::unauthenticated(msg),
        RegistryError::UnknownPrincipal(_)
        | RegistryError::UnknownKey { .. }
        | RegistryError::KeyRevoked { .. }
        | RegistryError::KeyRetired { .. }
        | RegistryError::NotAllowed { .. } => Status::permission_denied(msg),
        _ => Status::failed_precondition(msg),
    }
}

/// The status for an append error.
pub fn of_append(e: &AppendError) -> Status {
    let msg = e.to_string();
    match e {
        AppendError::Empty => Status::invalid_argument(format!("commands: {msg}")),
        AppendError::TooManyCommands { .. } | AppendError::TooLarge { .. } => Status::resource_exhausted(msg),
        AppendError::Malformed { index, .. } => Status::invalid_argument(format!("commands[{index}]: {msg}")),
        AppendError::StreamMismatch { index, .. } => {
            Status::invalid_argument(format!("commands[{index}].statement.stream: {msg}"))
        }
        AppendError::NotAllowedInStream { .. } | AppendError::DuplicateIdempotencyKey { .. } => {
            Status::invalid_argument(msg)
        }
        AppendError::WrongExpectedVersion { .. } => Status::aborted(msg),
        AppendError::Unauthorized { source, .. } | AppendError::Registry { source, .. } => of_registry(source, msg),
        AppendError::IdempotencyConflict { .. } => Status::failed_precondition(msg),
        AppendError::Unavailable(_) => Status::unavailable(msg),
        _ => Status::internal(msg),
    }
}

/// The status for a read error.
pub fn of_read(e: &ReadError) -> Status {
    match e {
        ReadError::PageTooLarge { .. } => Status::resource_exhausted(e.to_string()),
        ReadError::Closed => Status::unavailable(e.to_string()),
        _ => Status::internal(e.to_string()),
    }
}

/// The status for a tree error (a proof asked of sizes the log does not have).
pub fn of_tree(e: &TreeError) -> Status {
    match e {
        TreeError::IndexOutOfRange { .. } | TreeError::SizeOutOfRange { .. } => Status::out_of_range(e.to_string()),
        _ => Status::invalid_argument(e.to_string()),
    }
}

/// The status for a checkpoint error.
pub fn of_checkpoint(e: &CheckpointError) -> Status {
    match e {
        CheckpointError::NotFound(_) => Status::not_found(e.to_string()),
        CheckpointError::Tree(t) => of_tree(t),
        _ => Status::internal(e.to_string()),
    }
}

/// Whether a refusal of a submission is one the access log records: a policy decision or a
/// signature that does not verify, not a malformed call or a records rule.
pub fn is_denial(s: &Status) -> bool {
    matches!(s.code(), Code::PermissionDenied | Code::Unauthenticated)
}

/// tonic refuses a message over the size limit with `OUT_OF_RANGE`; gRPC's own servers, and our
/// error table, say `RESOURCE_EXHAUSTED`. Rewrites exactly that refusal (recognized by tonic's
/// message) in a trailers-only response.
pub fn oversize_is_resource_exhausted<B>(mut resp: http::Response<B>) -> http::Response<B> {
    let h = resp.headers_mut();
    let oversize = h.get("grpc-status").is_some_and(|v| v == "11")
        && h.get("grpc-message")
            .and_then(|m| m.to_str().ok())
            .is_some_and(|m| m.contains("message%20length%20too%20large") || m.contains("message length too large"));
    if oversize {
        h.insert("grpc-status", http::HeaderValue::from_static("8"));
    }
    resp
}
