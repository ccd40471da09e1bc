//! `chronicle serve`: the gRPC server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use chronicle::datadir::DataDir;
use chronicle_server::{Limits, Shared, Transport};

/// Serve the ledger over gRPC with mutual TLS (client certificates from the ledger's CA).
///
/// Stops on SIGINT or SIGTERM: calls in flight finish (every acknowledged append is durable),
/// the projection is persisted, and the store is closed.
///
/// Example: chronicle serve --data-dir /var/lib/chronicle --listen 0.0.0.0:50051
#[derive(clap::Args)]
pub struct ServeArgs {
    /// The data directory.
    #[arg(long)]
    data_dir: PathBuf,
    /// The secrets directory (default DATA_DIR/secrets).
    #[arg(long)]
    secrets_dir: Option<PathBuf>,
    /// The address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:50051")]
    listen: SocketAddr,
    /// Plaintext, callers named by the x-chronicle-principal header: for development only, and
    /// refused on any address that is not loopback.
    #[arg(long)]
    insecure_loopback: bool,
    /// The longest a call may take, in seconds (a shorter client deadline wins).
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
    /// Start although the log does not reach the last checkpoint the ledger signed (it was
    /// restored from an older copy, or cut short), giving the reason: the rollback is recorded in
    /// the log, and no checkpoint is signed until the log grows past the size signed before.
    /// Without it, such a log is refused (exit 3).
    #[arg(long, value_name = "REASON")]
    accept_rollback: Option<String>,
}

pub fn run(a: ServeArgs) -> Result<ExitCode> {
    let dir = DataDir::new(&a.data_dir, a.secrets_dir);
    let info = dir.info()?;
    let transport = if a.insecure_loopback {
        if !a.listen.ip().is_loopback() {
            anyhow::bail!(
                "--insecure-loopback refuses {}: only loopback addresses may be served without TLS",
                a.listen
            );
        }
        Transport::InsecureLoopback
    } else {
        Transport::MutualTls(dir.tls_files()?)
    };
    let store = match &a.accept_rollback {
        None => dir.open()?,
        Some(reason) => {
            let (store, accepted) = dir.open_accepting_rollback(reason)?;
            if accepted {
                eprintln!(
                    "accepted a rollback of the log (recorded at position {}): no checkpoint is signed until the log passes the size signed before",
                    store.head().len - 1
                );
            }
            store
        }
    };
    let records = dir.open_records(store)?;
    let shared = Arc::new(Shared {
        records,
        ledger: dir.ledger()?,
        note: dir.note_signer()?,
        origin: info.origin,
        tls: !a.insecure_loopback,
    });
    let limits = Limits { timeout: Duration::from_secs(a.timeout_secs), ..Limits::default() };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let root = dir.root.clone();
    rt.block_on(async move {
        let listener =
            tokio::net::TcpListener::bind(a.listen).await.with_context(|| format!("binding {}", a.listen))?;
        let addr = listener.local_addr()?;
        let mode = if a.insecure_loopback { "plaintext (insecure loopback)" } else { "mutual TLS" };
        println!("listening on {addr} ({mode}); ledger {}", root.display());
        chronicle_server::serve(shared, listener, transport, limits, shutdown_signal()).await?;
        println!("stopped: calls in flight finished, projection persisted");
        anyhow::Ok(())
    })?;
    drop(rt);
    let took = dir.settle()?;
    println!("store settled for the next start in {:.2}s", took.as_secs_f64());
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
