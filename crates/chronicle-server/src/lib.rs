//! Chronicle's gRPC server: courts and agencies use the ledger over the network.
//!
//! Mutual TLS with a local CA ([`pki`]); every call is made by a registered principal
//! ([`auth`]), decided by its role and stated purpose, refusals logged as access-denied entries
//! and releases outside the bureau as disseminations ([`services`]); one table maps domain errors
//! to status codes ([`status`]). The standard health service and server reflection (v1 and
//! v1alpha) are served beside the three Chronicle services, so off-the-shelf tools work.

pub mod auth;
pub mod pki;
pub mod services;
pub mod status;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chronicle_proto::v1::{ledger_server::LedgerServer, proofs_server::ProofsServer, records_server::RecordsServer};
use chronicle_store::CheckpointPolicy;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

pub use services::{PRINCIPAL_HEADER, Shared};

/// The server could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// Plaintext was asked for on an address that is not loopback.
    #[error("--insecure-loopback refuses {0}: only 127.0.0.0/8 and ::1 may be served without TLS")]
    NotLoopback(std::net::SocketAddr),
    /// The transport failed.
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Reflection could not be built from the descriptor sets.
    #[error("reflection: {0}")]
    Reflection(String),
    /// Socket trouble.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// Persisting the projection at shutdown failed.
    #[error("at shutdown: {0}")]
    Shutdown(String),
}

/// Seconds between loggings of folded refusals (see the records crate's `refusals`).
const REFUSALS_FLUSH_EVERY_S: u64 = 5;

/// The server's certificate and key and the CA its clients' certificates must chain to.
#[derive(Clone)]
pub struct TlsFiles {
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// The server certificate, PEM.
    pub cert_pem: String,
    /// The server key, PEM.
    pub key_pem: String,
}

/// How callers connect.
#[derive(Clone)]
pub enum Transport {
    /// TLS with client certificates from the ledger's CA.
    MutualTls(TlsFiles),
    /// Plaintext on a loopback address, the caller named by a header: for development only.
    InsecureLoopback,
}

/// Limits on what one call may ask of the server.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The largest request or response message, bytes.
    pub max_message_bytes: usize,
    /// The longest a call may take (a shorter `grpc-timeout` from the client wins).
    pub timeout: Duration,
    /// Calls served at once on one connection.
    pub concurrency_per_connection: usize,
}

impl Default for Limits {
    fn default() -> Self {
        // A batch holds at most 4 MiB of payload; signatures, statements and framing fit in the rest.
        Limits { max_message_bytes: 5 * 1024 * 1024, timeout: Duration::from_secs(60), concurrency_per_connection: 256 }
    }
}

/// A server running on the current tokio runtime, for embedding (tests, benchmarks, tools).
pub struct Running {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    done: tokio::task::JoinHandle<Result<(), ServeError>>,
}

impl Running {
    /// Stops it gracefully (as on SIGTERM) and waits for it.
    pub async fn stop(self) -> Result<(), ServeError> {
        let _ = self.stop.send(());
        self.done.await.map_err(|e| ServeError::Shutdown(e.to_string()))?
    }
}

/// Binds `addr` (port 0 picks one) and serves on the current runtime until [`Running::stop`].
pub async fn start(
    shared: Arc<Shared>,
    addr: std::net::SocketAddr,
    transport: Transport,
    limits: Limits,
) -> Result<Running, ServeError> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let done = tokio::spawn(serve(shared, listener, transport, limits, async move {
        let _ = stopped.await;
    }));
    Ok(Running { addr, stop, done })
}

/// Serves the ledger on `listener` until `shutdown` completes, then finishes the calls in flight
/// (every acknowledged append is already durable) and persists the projection.
pub async fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    transport: Transport,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let addr = listener.local_addr()?;
    let mut builder = Server::builder()
        .timeout(limits.timeout)
        .concurrency_limit_per_connection(limits.concurrency_per_connection)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)));
    match &transport {
        Transport::MutualTls(files) => {
            let tls = ServerTlsConfig::new()
                .identity(Identity::from_pem(&files.cert_pem, &files.key_pem))
                .client_ca_root(Certificate::from_pem(&files.ca_pem))
                .client_auth_optional(false);
            builder = builder.tls_config(tls)?;
        }
        Transport::InsecureLoopback if !addr.ip().is_loopback() => return Err(ServeError::NotLoopback(addr)),
        Transport::InsecureLoopback => {}
    }

    let (reporter, health) = tonic_health::server::health_reporter();
    let max = limits.max_message_bytes;
    let ledger = LedgerServer::new(services::LedgerService(shared.clone()))
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let records = RecordsServer::new(services::RecordsService(shared.clone()))
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let proofs = ProofsServer::new(services::ProofsService(shared.clone()))
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    reporter.set_serving::<LedgerServer<services::LedgerService>>().await;
    reporter.set_serving::<RecordsServer<services::RecordsService>>().await;
    reporter.set_serving::<ProofsServer<services::ProofsService>>().await;

    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(chronicle_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1().map_err(|e| ServeError::Reflection(e.to_string()))?;
    let reflection_v1alpha = reflection().build_v1alpha().map_err(|e| ServeError::Reflection(e.to_string()))?;

    // Checkpoints are signed as the log grows (the default policy: every 10,000 entries or
    // 60 s), so auditors always find a recent one; refusals beyond the rate logged one by one are
    // logged together every few seconds.
    let ticker = {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            for tick in 0u64.. {
                every.tick().await;
                let s = shared.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    if tick % REFUSALS_FLUSH_EVERY_S == 0 {
                        let _ = s.records.flush_refusals(&s.ledger);
                    }
                    s.records.store().maybe_checkpoint(&s.ledger, &s.note, &s.origin, CheckpointPolicy::default())
                })
                .await;
            }
        })
    };

    // Small request, small answer: without TCP_NODELAY each answer waits for the peer's
    // delayed ACK (tens of milliseconds).
    let served = builder
        .layer(tower::util::MapResponseLayer::new(status::oversize_is_resource_exhausted))
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(ledger)
        .add_service(records)
        .add_service(proofs)
        .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), shutdown)
        .await;
    ticker.abort();
    reporter.set_not_serving::<LedgerServer<services::LedgerService>>().await;
    served?;
    let s = shared.clone();
    tokio::task::spawn_blocking(move || {
        let _ = s.records.flush_refusals(&s.ledger);
        s.records.persist()
    })
    .await
    .map_err(|e| ServeError::Shutdown(e.to_string()))?
    .map_err(|e| ServeError::Shutdown(e.to_string()))?;
    Ok(())
}
