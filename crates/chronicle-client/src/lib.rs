//! A Rust client for Chronicle's gRPC API: connect with a principal's credentials, sign and
//! submit commands, read records and cases for a purpose, stream histories and the log, fetch
//! checkpoints and proofs.
//!
//! Credentials live in a directory (written by `chronicle init` for the first admin and by
//! `chronicle principal add` for everyone else):
//!
//! ```text
//! principal         the principal id, one line
//! ca.pem            the ledger's CA certificate (trust anchor for the server)
//! cert.pem          the principal's TLS client certificate
//! tls.key.pem       its TLS key
//! signing.key.pem   the principal's ed25519 signing key (PKCS#8), if it signs commands
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chronicle_core::{Command, Draft, PrincipalId, Signer, StreamId};
use chronicle_proto::v1 as pb;
use tonic::Request;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

pub use chronicle_proto::v1;
pub use tonic::{Code, Status};

/// The header naming the caller on an insecure loopback server (development only).
pub const PRINCIPAL_HEADER: &str = "x-chronicle-principal";

/// A client operation failed before reaching the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// A credentials file is missing or unreadable.
    #[error("credentials {path}: {reason}")]
    Credentials {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The address is not usable.
    #[error("server address {0:?}: {1}")]
    Address(String, String),
    /// Connecting failed.
    #[error("connecting to {0}: {1}")]
    Connect(String, String),
    /// These credentials hold no signing key.
    #[error("the credentials of {0} hold no signing key")]
    NoSigningKey(PrincipalId),
    /// Signing failed.
    #[error("signing: {0}")]
    Sign(String),
    /// The server refused or failed the call.
    #[error("{}: {}", .0.code(), .0.message())]
    Status(#[from] Status),
}

/// A principal's credentials.
#[derive(Clone)]
pub struct Credentials {
    /// The principal.
    pub principal: PrincipalId,
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// The client certificate, PEM.
    pub cert_pem: String,
    /// The TLS key, PEM.
    pub key_pem: String,
    /// The signing key, if the principal signs commands.
    pub signer: Option<Arc<Signer>>,
}

fn read(dir: &Path, name: &str) -> Result<String, ClientError> {
    let path = dir.join(name);
    std::fs::read_to_string(&path)
        .map_err(|e| ClientError::Credentials { path: path.display().to_string(), reason: e.to_string() })
}

impl Credentials {
    /// Loads credentials from a directory.
    pub fn load(dir: &Path) -> Result<Credentials, ClientError> {
        let id = read(dir, "principal")?;
        let principal = PrincipalId::new(id.trim()).map_err(|e| ClientError::Credentials {
            path: dir.join("principal").display().to_string(),
            reason: e.to_string(),
        })?;
        let key_file = dir.join("signing.key.pem");
        let signer = if key_file.exists() {
            Some(Arc::new(Signer::from_pem_file(principal.clone(), &key_file).map_err(|e| {
                ClientError::Credentials { path: key_file.display().to_string(), reason: e.to_string() }
            })?))
        } else {
            None
        };
        Ok(Credentials {
            ca_pem: read(dir, "ca.pem")?,
            cert_pem: read(dir, "cert.pem")?,
            key_pem: read(dir, "tls.key.pem")?,
            principal,
            signer,
        })
    }

    /// The files a credentials directory holds, by name, for whoever writes one.
    pub fn files(&self) -> Vec<(&'static str, String)> {
        let mut f = vec![
            ("principal", format!("{}\n", self.principal)),
            ("ca.pem", self.ca_pem.clone()),
            ("cert.pem", self.cert_pem.clone()),
            ("tls.key.pem", self.key_pem.clone()),
        ];
        if let Some(s) = &self.signer {
            f.push(("signing.key.pem", s.to_pem()));
        }
        f
    }
}

/// A connection to a Chronicle server as one principal.
#[derive(Clone)]
pub struct Client {
    ledger: pb::ledger_client::LedgerClient<Channel>,
    records: pb::records_client::RecordsClient<Channel>,
    proofs: pb::proofs_client::ProofsClient<Channel>,
    principal: PrincipalId,
    signer: Option<Arc<Signer>>,
    insecure: bool,
    deadline: Option<std::time::Duration>,
}

fn host_of(addr: &str) -> String {
    // "host:port" or "[v6]:port".
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']').to_string()
}

impl Client {
    /// Connects over mutual TLS to `addr` (`host:port`).
    pub async fn connect(addr: &str, creds: &Credentials) -> Result<Client, ClientError> {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&creds.ca_pem))
            .identity(Identity::from_pem(&creds.cert_pem, &creds.key_pem))
            .domain_name(host_of(addr));
        let endpoint = Endpoint::from_shared(format!("https://{addr}"))
            .map_err(|e| ClientError::Address(addr.into(), e.to_string()))?
            .tls_config(tls)
            .map_err(|e| ClientError::Address(addr.into(), e.to_string()))?;
        let channel = endpoint.connect().await.map_err(|e| ClientError::Connect(addr.into(), error_chain(&e)))?;
        Ok(Client::over(channel, creds.principal.clone(), creds.signer.clone(), false))
    }

    /// Connects in plaintext to a server on loopback started with `--insecure-loopback`,
    /// naming the caller in a header. For development only.
    pub async fn connect_insecure(
        addr: &str,
        principal: PrincipalId,
        signer: Option<Arc<Signer>>,
    ) -> Result<Client, ClientError> {
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| ClientError::Address(addr.into(), e.to_string()))?;
        let channel = endpoint.connect().await.map_err(|e| ClientError::Connect(addr.into(), error_chain(&e)))?;
        Ok(Client::over(channel, principal, signer, true))
    }

    fn over(channel: Channel, principal: PrincipalId, signer: Option<Arc<Signer>>, insecure: bool) -> Client {
        let max = 5 * 1024 * 1024;
        Client {
            ledger: pb::ledger_client::LedgerClient::new(channel.clone())
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
            records: pb::records_client::RecordsClient::new(channel.clone())
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
            proofs: pb::proofs_client::ProofsClient::new(channel).max_decoding_message_size(max),
            principal,
            signer,
            insecure,
            deadline: None,
        }
    }

    /// Gives every later call this deadline, sent to the server as `grpc-timeout`: the server
    /// ends a call still running when it passes (tonic reports that as `CANCELLED`, "Timeout
    /// expired"). A submission cut off this way may still have been appended; resubmitting the
    /// same signed command is safe and returns the first answer (`duplicate = true`).
    pub fn with_deadline(mut self, deadline: Option<std::time::Duration>) -> Client {
        self.deadline = deadline;
        self
    }

    /// The principal this client acts as.
    pub fn principal(&self) -> &PrincipalId {
        &self.principal
    }

    /// The signer, if the credentials hold one.
    pub fn signer(&self) -> Result<&Signer, ClientError> {
        self.signer.as_deref().ok_or_else(|| ClientError::NoSigningKey(self.principal.clone()))
    }

    fn req<T>(&self, msg: T) -> Request<T> {
        let mut r = Request::new(msg);
        if let Some(d) = self.deadline {
            r.set_timeout(d);
        }
        if self.insecure
            && let Ok(v) = self.principal.as_str().parse()
        {
            r.metadata_mut().insert(PRINCIPAL_HEADER, v);
        }
        r
    }

    /// Submits signed commands for one stream.
    pub async fn submit(
        &mut self,
        stream: StreamId,
        expected: Option<pb::expected_version::Expected>,
        commands: &[Command],
    ) -> Result<pb::SubmitResponse, ClientError> {
        let req = pb::SubmitRequest {
            stream: stream.0.to_vec(),
            expected: expected.map(|e| pb::ExpectedVersion { expected: Some(e) }),
            commands: commands.iter().map(signed).collect(),
        };
        Ok(self.ledger.submit(self.req(req)).await?.into_inner())
    }

    /// Signs a draft with this principal's key and submits it.
    pub async fn sign_and_submit(&mut self, draft: Draft) -> Result<pb::SubmitResponse, ClientError> {
        let stream = draft.stream;
        let cmd = Command::sign(self.signer()?, draft).map_err(|e| ClientError::Sign(e.to_string()))?;
        self.submit(stream, None, &[cmd]).await
    }

    /// A subject's record for a purpose.
    pub async fn record(&mut self, req: pb::RecordRequest) -> Result<pb::RecordResponse, ClientError> {
        Ok(self.records.get_record(self.req(req)).await?.into_inner())
    }

    /// A background check.
    pub async fn background_check(&mut self, req: pb::RecordRequest) -> Result<pb::RecordResponse, ClientError> {
        Ok(self.records.background_check(self.req(req)).await?.into_inner())
    }

    /// A case by docket.
    pub async fn case(&mut self, req: pb::CaseRequest) -> Result<pb::RecordResponse, ClientError> {
        Ok(self.records.get_case(self.req(req)).await?.into_inner())
    }

    /// One page of a history.
    pub async fn history_page(&mut self, req: pb::HistoryRequest) -> Result<pb::HistoryPage, ClientError> {
        Ok(self.records.history(self.req(req)).await?.into_inner())
    }

    /// A whole history, page after page (each page is a call of its own, and a release of its
    /// own for a caller outside the bureau).
    pub async fn history(&mut self, mut req: pb::HistoryRequest) -> Result<Vec<pb::HistoryItem>, ClientError> {
        let mut out = Vec::new();
        loop {
            let page = self.history_page(req.clone()).await?;
            out.extend(page.items);
            if !page.more_items {
                return Ok(out);
            }
            req.from_position = page.next_position;
        }
    }

    /// The ids of a subject (by SID) or a case (by docket), for a command this principal writes.
    pub async fn resolve(&mut self, req: pb::ResolveRequest) -> Result<pb::ResolveResponse, ClientError> {
        Ok(self.records.resolve(self.req(req)).await?.into_inner())
    }

    /// Who received a record outside the bureau, one page.
    pub async fn recipients(&mut self, req: pb::RecipientsRequest) -> Result<pb::RecipientsResponse, ClientError> {
        Ok(self.records.recipients(self.req(req)).await?.into_inner())
    }

    /// A past release rebuilt and checked against its logged hash.
    pub async fn reproduce(&mut self, position: u64) -> Result<pb::ReproduceResponse, ClientError> {
        Ok(self.records.reproduce(self.req(pb::ReproduceRequest { position })).await?.into_inner())
    }

    /// Follows the log from a position.
    pub async fn subscribe(&mut self, from: u64) -> Result<tonic::Streaming<pb::LogEntry>, ClientError> {
        let req = pb::SubscribeRequest { from_position: from };
        Ok(self.ledger.subscribe(self.req(req)).await?.into_inner())
    }

    /// The signed checkpoint at a size (0: the latest).
    pub async fn checkpoint(&mut self, tree_size: u64) -> Result<Vec<u8>, ClientError> {
        let req = pb::CheckpointRequest { tree_size };
        Ok(self.proofs.get_checkpoint(self.req(req)).await?.into_inner().note)
    }

    /// The inclusion proof of one entry, with its bytes (for roles that may read the log).
    pub async fn inclusion_proof(
        &mut self,
        position: u64,
        tree_size: u64,
    ) -> Result<pb::InclusionProofResponse, ClientError> {
        let req = pb::InclusionProofRequest { position, tree_size, leaf_hash: Vec::new() };
        Ok(self.proofs.get_inclusion_proof(self.req(req)).await?.into_inner())
    }

    /// The inclusion proof of an entry the caller holds, by its RFC 6962 leaf hash: the audit
    /// path, no entry bytes.
    pub async fn inclusion_check(
        &mut self,
        position: u64,
        tree_size: u64,
        leaf_hash: [u8; 32],
    ) -> Result<pb::InclusionProofResponse, ClientError> {
        let req = pb::InclusionProofRequest { position, tree_size, leaf_hash: leaf_hash.to_vec() };
        Ok(self.proofs.get_inclusion_proof(self.req(req)).await?.into_inner())
    }

    /// The consistency proof between two sizes.
    pub async fn consistency_proof(
        &mut self,
        first: u64,
        second: u64,
    ) -> Result<pb::ConsistencyProofResponse, ClientError> {
        let req = pb::ConsistencyProofRequest { first, second };
        Ok(self.proofs.get_consistency_proof(self.req(req)).await?.into_inner())
    }
}

/// A command as sent on the wire.
pub fn signed(c: &Command) -> pb::SignedCommand {
    pb::SignedCommand {
        statement: c.statement_bytes().to_vec(),
        salt: c.salt().to_vec(),
        payload: c.payload().to_vec(),
        signature: c.signature().to_vec(),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Where a credentials directory of the given principal lives under a secrets directory.
pub fn credentials_dir(secrets: &Path, principal: &str) -> PathBuf {
    secrets.join("principals").join(principal)
}
