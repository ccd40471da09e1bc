//! `chronicle append-loop` (hidden): appends forever and records every acknowledged entry.
//!
//! Used by the crash tests: the test kills this process at random moments and then checks that
//! every position written to the `--acked` file is in the log with the hash written beside it.
//! And by the I/O fault tests, which make a file-system call fail under it: with `--after-error`,
//! a refused append is written down as `error <why>` and the loop tries a few more, so the test
//! can check that nothing is acknowledged after a failed write or sync.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use chronicle::datadir::DataDir;
use chronicle_core::{Command, Draft, EventType, PayloadKind, References, StreamId, Timestamp};
use chronicle_store::{AppendRequest, ExpectedVersion};

/// Append in a loop from several threads, writing each acknowledged position to a file.
#[derive(clap::Args)]
pub struct AppendLoopArgs {
    /// The data directory (created by `init`).
    #[arg(long)]
    data_dir: PathBuf,
    /// File to which "position hash" lines are appended after each acknowledgement.
    #[arg(long)]
    acked: PathBuf,
    /// Concurrent appenders.
    #[arg(long, default_value_t = 4)]
    threads: usize,
    /// Reopen sled in place about every N bytes written (default: the store's own policy), so
    /// that kills also land during reopens.
    #[arg(long)]
    settle_every: Option<u64>,
    /// Stop after this many requests per appender (default: never).
    #[arg(long)]
    count: Option<u64>,
    /// After an append fails, write `error <why>` and try this many more before stopping (exit
    /// 1); without it, the first failure stops the loop.
    #[arg(long)]
    after_error: Option<u64>,
}

pub fn run(a: AppendLoopArgs) -> Result<ExitCode> {
    let dir = DataDir::new(&a.data_dir, None);
    let store = dir.open()?;
    store.set_settle_every(a.settle_every);
    let admin = Arc::new(dir.admin()?);
    let acked = Arc::new(Mutex::new(std::fs::OpenOptions::new().create(true).append(true).open(&a.acked)?));
    let run_id = hex::encode(chronicle_core::random_array::<8>());
    let mut handles = Vec::new();
    for t in 0..a.threads {
        let (store, admin, acked, run_id) = (store.clone(), admin.clone(), acked.clone(), run_id.clone());
        let (count, after_error) = (a.count.unwrap_or(u64::MAX), a.after_error);
        handles.push(std::thread::spawn(move || -> Result<()> {
            let mut failed: Option<u64> = None;
            for i in 0..count {
                if failed.is_some_and(|at| i > at + after_error.unwrap_or(0)) {
                    break;
                }
                let stream = StreamId::derive("crash", &format!("{}", (i + t as u64) % 8));
                let n = 1 + (i % 3) as usize;
                let commands = (0..n)
                    .map(|j| {
                        Command::sign(
                            &admin,
                            Draft {
                                stream,
                                event_type: EventType::new("test.appended")?,
                                effective_time: Timestamp::now(),
                                refs: References {
                                    idempotency_key: format!("{run_id}-{t}-{i}-{j}").into_bytes(),
                                    ..Default::default()
                                },
                                payload_kind: PayloadKind::Sealed,
                                payload: format!("{{\"thread\":{t},\"i\":{i},\"j\":{j}}}").into_bytes(),
                            },
                        )
                        .map_err(anyhow::Error::from)
                    })
                    .collect::<Result<Vec<_>>>()?;
                let r = match store.append(AppendRequest { stream, expected: ExpectedVersion::Any, commands }) {
                    Ok(r) => r,
                    Err(e) if after_error.is_some() => {
                        failed.get_or_insert(i);
                        let mut f = acked.lock().map_err(|_| anyhow::anyhow!("lock poisoned"))?;
                        writeln!(f, "error {}", e.to_string().replace('\n', " "))?;
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                };
                let mut lines = String::new();
                for e in &r.entries {
                    lines.push_str(&format!("{} {}\n", e.position, e.hash));
                }
                let mut f = acked.lock().map_err(|_| anyhow::anyhow!("lock poisoned"))?;
                f.write_all(lines.as_bytes())?;
            }
            match failed {
                Some(_) => Err(anyhow::anyhow!("appends failed")),
                None => Ok(()),
            }
        }));
    }
    for h in handles {
        h.join().map_err(|_| anyhow::anyhow!("appender panicked"))??;
    }
    Ok(ExitCode::SUCCESS)
}
