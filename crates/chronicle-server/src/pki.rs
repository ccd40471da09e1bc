//! The local certificate authority: a CA made by `chronicle init`, the server's certificate and
//! one client certificate per principal.
//!
//! A client certificate names its principal in the subject's common name; the server trusts only
//! certificates issued by this CA, and maps the name to the principal's registry entry (its role,
//! and whether it still holds a valid key) on every call. TLS keys are ECDSA P-256, the key type
//! every TLS stack accepts; they are separate from the principals' ed25519 signing keys, so a
//! leaked TLS key lets nobody sign commands.

use chronicle_core::PrincipalId;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

/// How long a client certificate is valid unless said otherwise.
pub const CLIENT_CERTIFICATE_DAYS: i64 = 365;

/// The longest a client certificate may be valid (ten years).
pub const CLIENT_CERTIFICATE_DAYS_MAX: i64 = 3653;

/// The period a client certificate is valid: from an hour ago (clocks differ) for `days` days,
/// 1 to [`CLIENT_CERTIFICATE_DAYS_MAX`] (anything else is clamped into that range).
pub fn validity_days(days: i64) -> (OffsetDateTime, OffsetDateTime) {
    let now = OffsetDateTime::now_utc();
    (now - Duration::hours(1), now + Duration::days(days.clamp(1, CLIENT_CERTIFICATE_DAYS_MAX)))
}

/// A fresh random serial number (RFC 5280: unique per CA, positive, at most 20 bytes).
fn serial() -> rcgen::SerialNumber {
    let mut b = chronicle_core::random_array::<16>();
    b[0] &= 0x7f;
    b[0] |= 0x01;
    rcgen::SerialNumber::from_slice(&b)
}

/// A certificate operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// Generating or signing failed.
    #[error("certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// A certificate could not be read.
    #[error("certificate: {0}")]
    Parse(String),
    /// The certificate names no principal, or one that is not a valid principal id.
    #[error("the client certificate names no principal ({0})")]
    NoPrincipal(String),
}

/// A certificate and its private key, PEM.
#[derive(Clone)]
pub struct Issued {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
}

/// The local CA.
pub struct LocalCa {
    cert_pem: String,
    key: KeyPair,
}

impl LocalCa {
    /// Makes a new CA for the ledger with the given origin.
    pub fn generate(origin: &str) -> Result<LocalCa, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Chronicle");
        dn.push(DnType::CommonName, format!("Chronicle local CA for {origin}"));
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(LocalCa { cert_pem: cert.pem(), key })
    }

    /// Loads a CA from its certificate and key.
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<LocalCa, PkiError> {
        let key = KeyPair::from_pem(key_pem)?;
        // Check that the pair belongs together before issuing anything with it.
        let (rest, pem) =
            x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).map_err(|e| PkiError::Parse(e.to_string()))?;
        // One certificate and nothing after it: a second one appended to the file would be
        // trusted beside it by whoever loads the file as a bundle.
        if !rest.iter().all(u8::is_ascii_whitespace) {
            return Err(PkiError::Parse("the CA file holds more than the CA certificate".into()));
        }
        let cert = pem.parse_x509().map_err(|e| PkiError::Parse(e.to_string()))?;
        if cert.tbs_certificate.subject_pki.subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(PkiError::Parse("the CA key does not belong to the CA certificate".into()));
        }
        Ok(LocalCa { cert_pem: cert_pem.to_string(), key })
    }

    /// The CA certificate, PEM: what servers and clients trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA key, PEM (a secret).
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    fn issue(&self, mut params: CertificateParams) -> Result<Issued, PkiError> {
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, &self.key)?;
        let key = KeyPair::generate()?;
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(serial());
        let cert = params.signed_by(&key, &issuer)?;
        Ok(Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }

    /// A server certificate for these host names and addresses (always with `localhost`,
    /// 127.0.0.1 and ::1).
    pub fn issue_server(&self, hosts: &[String]) -> Result<Issued, PkiError> {
        let mut names: Vec<String> = vec!["localhost".into()];
        names.extend(hosts.iter().filter(|h| h.parse::<std::net::IpAddr>().is_err()).cloned());
        let mut params = CertificateParams::new(names)?;
        for ip in ["127.0.0.1", "::1"].iter().map(|s| s.to_string()).chain(hosts.iter().cloned()) {
            if let Ok(addr) = ip.parse() {
                params.subject_alt_names.push(SanType::IpAddress(addr));
            }
        }
        params.distinguished_name.push(DnType::CommonName, "Chronicle server");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        self.issue(params)
    }

    /// A client certificate for a principal, with a TLS key made here (valid for
    /// [`CLIENT_CERTIFICATE_DAYS`]): for the demo and the quick start, where the bureau makes
    /// the principal's keys for convenience.
    pub fn issue_client(&self, principal: &PrincipalId) -> Result<Issued, PkiError> {
        self.issue_client_valid(principal, validity_days(CLIENT_CERTIFICATE_DAYS))
    }

    /// [`LocalCa::issue_client`] valid for the given period.
    pub fn issue_client_valid(
        &self,
        principal: &PrincipalId,
        validity: (OffsetDateTime, OffsetDateTime),
    ) -> Result<Issued, PkiError> {
        self.issue(client_params(principal, validity)?)
    }

    /// A client certificate for a principal over the key of a certificate signing request its
    /// author made (`chronicle keygen`): the CA never sees the private key. The request's
    /// signature must verify; what the certificate says (the principal, its use, its validity)
    /// is the CA's to decide, so only the request's key is taken from it.
    pub fn issue_client_for_request(
        &self,
        principal: &PrincipalId,
        request_pem: &str,
        validity: (OffsetDateTime, OffsetDateTime),
    ) -> Result<String, PkiError> {
        let mut request = CertificateSigningRequestParams::from_pem(request_pem)
            .map_err(|e| PkiError::Parse(format!("the certificate signing request: {e}")))?;
        // A request made for another principal is a mix-up, not something to certify.
        let named = match request.params.distinguished_name.get(&DnType::CommonName) {
            Some(rcgen::DnValue::Utf8String(s)) => Some(s.clone()),
            Some(rcgen::DnValue::PrintableString(s)) => Some(s.as_str().to_string()),
            _ => None,
        };
        if named.as_deref() != Some(principal.as_str()) {
            return Err(PkiError::Parse(format!(
                "the certificate signing request names {}, not {principal}",
                named.unwrap_or_else(|| "no principal".into())
            )));
        }
        request.params = client_params(principal, validity)?;
        request.params.use_authority_key_identifier_extension = true;
        request.params.serial_number = Some(serial());
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, &self.key)?;
        Ok(request.signed_by(&issuer)?.pem())
    }
}

fn client_params(
    principal: &PrincipalId,
    (not_before, not_after): (OffsetDateTime, OffsetDateTime),
) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::OrganizationName, "Chronicle principal");
    params.distinguished_name.push(DnType::CommonName, principal.as_str());
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.not_before = not_before;
    params.not_after = not_after;
    Ok(params)
}

/// A TLS key and a certificate signing request naming `principal`, both PEM, made on the
/// author's machine (`chronicle keygen`); the key never leaves it.
pub fn request(principal: &PrincipalId) -> Result<Issued, PkiError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, principal.as_str());
    let csr = params.serialize_request(&key)?;
    Ok(Issued { cert_pem: csr.pem()?, key_pem: key.serialize_pem() })
}

/// A certificate's SHA-256 fingerprint (of its DER), lowercase hex, and its expiry.
pub fn fingerprint(cert_pem: &str) -> Result<(String, OffsetDateTime), PkiError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).map_err(|e| PkiError::Parse(e.to_string()))?;
    let cert = pem.parse_x509().map_err(|e| PkiError::Parse(e.to_string()))?;
    Ok((fingerprint_der(&pem.contents), cert.validity().not_after.to_datetime()))
}

/// The SHA-256 fingerprint of a certificate's DER, lowercase hex: how the registry names it.
pub fn fingerprint_der(der: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(der))
}

/// The registry entry recording a certificate issued to `principal` (to be signed by an admin).
pub fn certificate_record(principal: &PrincipalId, cert_pem: &str) -> Result<chronicle_core::RegistryEvent, PkiError> {
    let (fingerprint, not_after) = fingerprint(cert_pem)?;
    Ok(chronicle_core::RegistryEvent::certificate_issued(principal.clone(), fingerprint, not_after.unix_timestamp()))
}

/// The principal a client certificate (DER) names: its subject's common name.
pub fn principal_of(cert_der: &[u8]) -> Result<PrincipalId, PkiError> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).map_err(|e| PkiError::Parse(e.to_string()))?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or_else(|| PkiError::NoPrincipal("no common name".into()))?;
    PrincipalId::new(cn).map_err(|e| PkiError::NoPrincipal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn der(pem: &str) -> Vec<u8> {
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap().1.contents
    }

    #[test]
    fn a_client_certificate_names_its_principal_and_a_reloaded_ca_issues_more() {
        let ca = LocalCa::generate("test.example/log").unwrap();
        let clerk = ca.issue_client(&PrincipalId::new("clerk.rivera").unwrap()).unwrap();
        assert_eq!(principal_of(&der(&clerk.cert_pem)).unwrap().as_str(), "clerk.rivera");
        let again = LocalCa::load(ca.cert_pem(), &ca.key_pem()).unwrap();
        let court = again.issue_client(&PrincipalId::new("court.cms").unwrap()).unwrap();
        assert_eq!(principal_of(&der(&court.cert_pem)).unwrap().as_str(), "court.cms");
        // The server certificate's common name is not a principal id.
        let server = ca.issue_server(&[]).unwrap();
        assert!(matches!(principal_of(&der(&server.cert_pem)), Err(PkiError::NoPrincipal(_))));
        // A CA certificate with another CA's key is refused.
        let other = LocalCa::generate("other").unwrap();
        assert!(matches!(LocalCa::load(ca.cert_pem(), &other.key_pem()), Err(PkiError::Parse(_))));
        assert!(principal_of(b"not a certificate").is_err());
    }
}
