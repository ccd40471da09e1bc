//! `chronicle export-evidence` and `chronicle verify-evidence`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use chronicle::datadir::DataDir;
use chronicle_core::{PrincipalId, StreamId};
use chronicle_records::ServiceError;
use chronicle_store::evidence::{Bundle, build_bundle_with_orders, verify_bundle_at_least};

/// Write a self-contained evidence bundle for one stream, for a recipient: its entries from the
/// first, an inclusion proof for each against one signed checkpoint, the checkpoint, the log's
/// verifier key, the registry entries needed to check every author signature, and (unless
/// --no-content) the opened payloads so a checker can match content to what each author signed.
///
/// The bundle is released to the recipient, a registered principal: with content, only if the
/// policy lets the recipient's role receive every entry of the record with its content for the
/// purpose, and the release is logged with the hash of the bundle; without content, only if the
/// role may read log entries, logged as an audit entry.
///
/// Example: chronicle export-evidence --data-dir D --case CR-2024-001 --recipient court.cp23 --purpose C --out case.json
#[derive(clap::Args)]
pub struct ExportArgs {
    /// The data directory.
    #[arg(long)]
    data_dir: PathBuf,
    /// The case, by its docket number.
    #[arg(long, conflicts_with = "stream", required_unless_present = "stream")]
    case: Option<String>,
    /// Any stream, by id (32 hex digits).
    #[arg(long)]
    stream: Option<String>,
    /// Where to write the bundle (JSON).
    #[arg(long)]
    out: PathBuf,
    /// Leave the opened payloads out (prove existence, order and authorship only).
    #[arg(long)]
    no_content: bool,
    /// Who receives the bundle: a registered principal (its role decides what it may receive).
    #[arg(long)]
    recipient: String,
    /// The purpose of the release: C J E F H I S V X A.
    #[arg(long, default_value = "C")]
    purpose: String,
    /// The legal authority for the release (a subpoena, a court order).
    #[arg(long)]
    authority: Option<String>,
}

pub fn export(a: ExportArgs) -> Result<ExitCode> {
    let purpose = match super::client::records_purpose(&a.purpose) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: --purpose: {e}");
            return Ok(ExitCode::from(super::EXIT_USAGE));
        }
    };
    let recipient = match PrincipalId::new(a.recipient.as_str()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: --recipient: {e}");
            return Ok(ExitCode::from(super::EXIT_USAGE));
        }
    };
    let dir = DataDir::new(&a.data_dir, None);
    let store = dir.open()?;
    // With the ledger's signer, as every command opens it: any notice of an order still missing
    // (a crash between an order and its notices) is written before a bundle is made.
    let records = dir.open_records(store.clone())?;
    let stream = match (&a.case, &a.stream) {
        (Some(docket), _) => {
            let found = records.projection().state.cycle_by_docket(docket);
            match found {
                Some(s) => s,
                None => bail!(
                    "no case with docket {docket:?} (an expunged case's docket is destroyed with it: export its opaque \
                     entries with --stream ID --no-content, the id its order in the destruction log names)"
                ),
            }
        }
        (None, Some(hex)) => StreamId::from_hex(hex).context("--stream must be 32 hex digits")?,
        (None, None) => bail!("give --case or --stream"),
    };
    let recipient = match records.caller(&recipient) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: --recipient: {e}");
            return Ok(ExitCode::from(super::EXIT_USAGE));
        }
    };
    let info = dir.info()?;
    let ledger = dir.ledger()?;
    // The orders that cover the stream, whose notices its orders stream holds.
    let orders: Vec<u64> = records
        .projection()
        .state
        .expunged
        .values()
        .filter(|t| t.streams.contains(&stream))
        .map(|t| t.position)
        .collect();
    let build = || {
        let persist = |e: &dyn std::fmt::Display| ServiceError::Persist(e.to_string());
        // The stream heads are committed first, so that the bundle can prove every entry is there.
        let note_signer = dir.note_signer().map_err(|e| persist(&e))?;
        let (_, size, note) =
            store.checkpoint_with_heads(&ledger, &note_signer, &info.origin).map_err(|e| persist(&e))?;
        let log_key = dir.log_key().map_err(|e| ServiceError::Persist(e.to_string()))?;
        let bundle = build_bundle_with_orders(&store, &stream, &note, size, &log_key, !a.no_content, &orders)
            .map_err(|e| ServiceError::Persist(e.to_string()))?;
        let bytes = serde_json::to_vec_pretty(&bundle).map_err(|e| ServiceError::Persist(e.to_string()))?;
        Ok(((bundle, size), bytes))
    };
    let export = chronicle_records::disclose::EvidenceExport {
        recipient,
        purpose,
        authority: a.authority.clone(),
        stream,
        with_content: !a.no_content,
    };
    let released = records.export_evidence(&ledger, &export, build);
    let ((bundle, size), bytes) = match released {
        Ok(b) => b,
        Err(e @ (ServiceError::Refused(_) | ServiceError::NotFound(_))) => {
            eprintln!("refused: {e}");
            return Ok(ExitCode::from(super::client::EXIT_REFUSED));
        }
        Err(e) => return Err(e.into()),
    };
    std::fs::write(&a.out, &bytes).with_context(|| format!("writing {}", a.out.display()))?;
    println!(
        "wrote {} entries of stream {} with proofs against tree size {size} to {}",
        bundle.entries.len(),
        stream,
        a.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Check an evidence bundle with no data directory: the checkpoint's signature against the log
/// key you trust, every inclusion proof, the stream's chain from its first entry, that no entry
/// of the stream or of the registry is left out (the ledger's heads commitment, the checkpoint's
/// last entry, proves their last entries), every author signature against the registry as of
/// that entry, and any content against its commitment.
///
/// Exits 0 and says what was proved, or 1 naming what failed.
///
/// Example: chronicle verify-evidence case.json --log-key 'records.example.gov/chronicle+1a2b3c4d+AX...'
#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The bundle.
    file: PathBuf,
    /// The log's verifier key, obtained from the bureau through a channel you trust.
    #[arg(long)]
    log_key: String,
    /// Print the findings as JSON (`{"ok": true, "proven": {...}}` or `{"ok": false, "reason": ...}`).
    #[arg(long)]
    json: bool,
    /// Refuse a bundle that proves the stream complete at a log size below this one (say, the
    /// size of the latest checkpoint you hold): an older bundle may lack what was appended since.
    #[arg(long, default_value_t = 0)]
    at_least: u64,
}

pub fn verify(a: VerifyArgs) -> Result<ExitCode> {
    let bytes = std::fs::read(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    let bundle: Bundle = match serde_json::from_slice(&bytes) {
        Ok(b) => b,
        Err(e) => bail!("{} is not an evidence bundle: {e}", a.file.display()),
    };
    match verify_bundle_at_least(&bundle, &a.log_key, a.at_least) {
        Ok(p) => {
            if a.json {
                let proven = serde_json::json!({
                    "origin": p.origin,
                    "tree_size": p.tree_size,
                    "stream": p.stream,
                    "entries": p.entries,
                    "complete_at": p.complete_at,
                    "commitment_position": p.commitment_position,
                    "orders": p.orders,
                    "registry_entries": p.registry_entries,
                    "content_checked": p.content_checked,
                    "last_hash": p.last_hash.to_hex(),
                });
                println!("{}", serde_json::json!({ "ok": true, "proven": proven, "summary": p.describe() }));
            } else {
                println!("{}", p.describe());
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            if a.json {
                println!("{}", serde_json::json!({ "ok": false, "reason": e.to_string() }));
            } else {
                println!("REJECTED: {e}");
            }
            Ok(ExitCode::from(super::EXIT_FAULT))
        }
    }
}
