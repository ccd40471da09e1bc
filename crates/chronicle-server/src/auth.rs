//! Who is calling: the principal a client certificate names, checked against the registry.
//!
//! The TLS layer has already checked that the certificate chains to the ledger's CA. Here the
//! name in it must be a registered principal that still holds at least one valid key: revoking a
//! principal's keys in the registry shuts it out of the server at once, with no certificate
//! revocation list to distribute.

use chronicle_core::{PrincipalId, Role};
use tonic::{Request, Status};

use crate::services::{PRINCIPAL_HEADER, Shared};

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The principal.
    pub principal: PrincipalId,
    /// Its role in the registry.
    pub role: Role,
}

/// Roles inside the bureau: their reads are not disseminations.
pub fn inside_bureau(role: Role) -> bool {
    matches!(role, Role::RecordsClerk | Role::Admin | Role::Ledger | Role::Auditor)
}

/// Resolves the caller of a request, or refuses it with UNAUTHENTICATED.
pub fn caller<T>(shared: &Shared, req: &Request<T>) -> Result<Caller, Status> {
    let principal = if shared.tls {
        let certs = req.peer_certs().ok_or_else(|| Status::unauthenticated("no client certificate"))?;
        let leaf = certs.first().ok_or_else(|| Status::unauthenticated("no client certificate"))?;
        crate::pki::principal_of(leaf.as_ref()).map_err(|e| Status::unauthenticated(e.to_string()))?
    } else {
        let v = req.metadata().get(PRINCIPAL_HEADER).ok_or_else(|| {
            Status::unauthenticated(format!("insecure loopback: name the principal in {PRINCIPAL_HEADER}"))
        })?;
        let s = v.to_str().map_err(|_| Status::unauthenticated(format!("{PRINCIPAL_HEADER}: not text")))?;
        PrincipalId::new(s).map_err(|e| Status::unauthenticated(format!("{PRINCIPAL_HEADER}: {e}")))?
    };
    let registry = shared.records.store().registry();
    let p = registry
        .principal(&principal)
        .ok_or_else(|| Status::unauthenticated(format!("{principal} is not a registered principal")))?;
    let active =
        p.keys.iter().filter_map(|k| registry.key(k)).any(|k| k.revoked_at.is_none() && k.retired_at.is_none());
    if !active {
        return Err(Status::unauthenticated(format!("{principal} holds no valid key (revoked or retired)")));
    }
    Ok(Caller { principal, role: p.role })
}
