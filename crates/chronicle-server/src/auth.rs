//! Who is calling: the principal a client certificate names, checked against the registry.
//!
//! The TLS layer has already checked that the certificate chains to the ledger's CA and is within
//! its validity. Here the certificate itself must be recorded in the registry for the principal it
//! names (by its SHA-256 fingerprint) and not revoked, and the principal must still hold at least
//! one valid key: revoking a certificate, or a principal's keys, in the registry shuts it out of
//! the server at once, with no certificate revocation list to distribute. A certificate the CA
//! issued but the registry never recorded is refused too. What the caller may then do is decided by the records crate's
//! `access` module, and nowhere here.

use chronicle_core::PrincipalId;
use chronicle_records::Caller;
use tonic::{Request, Status};

use crate::services::{PRINCIPAL_HEADER, Shared};

/// Resolves the caller of a request, or refuses it with UNAUTHENTICATED, saying which principal
/// the caller claimed to be (if it named one) so that the refusal can be logged.
pub fn caller<T>(shared: &Shared, req: &Request<T>) -> Result<Caller, (Option<String>, Status)> {
    let mut fingerprint = None;
    let principal = if shared.tls {
        let certs = req.peer_certs().ok_or_else(|| (None, Status::unauthenticated("no client certificate")))?;
        let leaf = certs.first().ok_or_else(|| (None, Status::unauthenticated("no client certificate")))?;
        fingerprint = Some(crate::pki::fingerprint_der(leaf.as_ref()));
        crate::pki::principal_of(leaf.as_ref()).map_err(|e| (None, Status::unauthenticated(e.to_string())))?
    } else {
        let v = req.metadata().get(PRINCIPAL_HEADER).ok_or_else(|| {
            (None, Status::unauthenticated(format!("insecure loopback: name the principal in {PRINCIPAL_HEADER}")))
        })?;
        let s = v.to_str().map_err(|_| (None, Status::unauthenticated(format!("{PRINCIPAL_HEADER}: not text"))))?;
        PrincipalId::new(s).map_err(|e| (None, Status::unauthenticated(format!("{PRINCIPAL_HEADER}: {e}"))))?
    };
    let claimed = || Some(principal.to_string());
    let registry = shared.records.store().registry();
    let p = registry
        .principal(&principal)
        .ok_or_else(|| (claimed(), Status::unauthenticated(format!("{principal} is not a registered principal"))))?;
    if let Some(fp) = fingerprint {
        match registry.certificate(&fp) {
            // (TLS checked the validity at the handshake; a connection kept open past it is not
            // served either.)
            Some(c) if c.principal == principal && c.not_after <= time::OffsetDateTime::now_utc().unix_timestamp() => {
                let why = format!("the certificate {fp} of {principal} expired");
                return Err((claimed(), Status::unauthenticated(why)));
            }
            Some(c) if c.principal == principal && c.revoked_at.is_none() => {}
            Some(c) if c.principal == principal => {
                let at = c.revoked_at.unwrap_or_default();
                let why = format!("the certificate {fp} of {principal} was revoked at position {at}");
                return Err((claimed(), Status::unauthenticated(why)));
            }
            _ => {
                let why = format!("the certificate {fp} is not recorded in the registry for {principal}");
                return Err((claimed(), Status::unauthenticated(why)));
            }
        }
    }
    let active =
        p.keys.iter().filter_map(|k| registry.key(k)).any(|k| k.revoked_at.is_none() && k.retired_at.is_none());
    if !active {
        return Err((
            claimed(),
            Status::unauthenticated(format!("{principal} holds no valid key (revoked or retired)")),
        ));
    }
    Ok(Caller { role: p.role, principal })
}
