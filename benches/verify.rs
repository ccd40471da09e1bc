//! `verify` throughput on a generated log, beside this machine's raw ed25519 rates measured in the
//! same run, so that the ratio shows how close verification comes to the signature-checking limit.
//! Run with `cargo bench --bench verify -- [--entries N] [--rounds R] [--commit-every C]`: the
//! ledger commits the stream heads every C entries (10,000 by default, as the server's checkpoint
//! policy; 0 for none), and `verify` recomputes every commitment.

mod common;

use std::time::Instant;

use chronicle_core::{Command, StreamId};
use chronicle_store::{AppendRequest, ExpectedVersion, verify_log};
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _};
use rayon::prelude::*;

fn main() {
    let entries = common::arg("--entries", 200_000) as usize;
    let rounds = common::arg("--rounds", 3) as usize;
    let commit_every = common::arg("--commit-every", 10_000) as usize;
    let tmp = tempfile::tempdir().unwrap();
    let (dir, store, clerk) = common::ledger(tmp.path());

    let t = Instant::now();
    let commands: Vec<Command> = (0..entries)
        .into_par_iter()
        .map(|i| common::command(&clerk, StreamId::derive("verify-bench", &format!("{}", i / 8)), &format!("v{i}")))
        .collect();
    let ledger = dir.ledger().unwrap();
    for (i, chunk) in commands.chunks(8).enumerate() {
        let stream = chunk[0].statement().stream;
        store.append(AppendRequest { stream, expected: ExpectedVersion::Any, commands: chunk.to_vec() }).unwrap();
        if commit_every > 0 && (i + 1) * 8 % commit_every == 0 {
            store.commit_stream_heads(&ledger).unwrap();
        }
    }
    let len = store.head().len;
    drop(store);
    println!("generated a log of {len} entries in {:.1}s", t.elapsed().as_secs_f64());

    let mut verify_rates = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        let r = verify_log(&dir.log_dir(), |_, _| {}).unwrap();
        assert!(r.is_ok());
        assert_eq!(r.heads_commitments, entries.checked_div(commit_every).unwrap_or(0) as u64);
        verify_rates.push(r.entries_verified as f64 / t.elapsed().as_secs_f64());
    }

    // Raw ed25519 rates on the same machine, same run.
    let key = SigningKey::from_bytes(&[7; 32]);
    let vk = key.verifying_key();
    let msgs: Vec<Vec<u8>> = (0..4096u32).map(|i| format!("message {i} of some two hundred bytes ........................................................................................................................").into_bytes()).collect();
    let sigs: Vec<Signature> = msgs.iter().map(|m| key.sign(m)).collect();
    let mut single = Vec::new();
    let mut batch1 = Vec::new();
    let mut batch2 = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        for (m, s) in msgs.iter().zip(&sigs) {
            vk.verify(m, s).unwrap();
        }
        single.push(msgs.len() as f64 / t.elapsed().as_secs_f64());
        let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
        let keys = vec![vk; msgs.len()];
        let t = Instant::now();
        for ((m, s), k) in refs.chunks(256).zip(sigs.chunks(256)).zip(keys.chunks(256)) {
            ed25519_dalek::verify_batch(m, s, k).unwrap();
        }
        batch1.push(msgs.len() as f64 / t.elapsed().as_secs_f64());
        let t = Instant::now();
        refs.par_chunks(256).zip(sigs.par_chunks(256)).zip(keys.par_chunks(256)).for_each(|((m, s), k)| {
            ed25519_dalek::verify_batch(m, s, k).unwrap();
        });
        batch2.push(msgs.len() as f64 / t.elapsed().as_secs_f64());
    }
    let v = common::median(verify_rates);
    let b2 = common::median(batch2.clone());
    println!("median of {rounds} runs, {} cores", rayon::current_num_threads());
    println!("{:<44} {:>12}", "measure", "per second");
    println!("{:<44} {:>12.0}", "chronicle verify (entries)", v);
    println!("{:<44} {:>12.0}", "ed25519 verify, one core", common::median(single));
    println!("{:<44} {:>12.0}", "ed25519 verify_batch(256), one core", common::median(batch1));
    println!("{:<44} {:>12.0}", "ed25519 verify_batch(256), all cores", b2);
    println!("verify / raw batch verification on all cores: {:.2}", v / b2);
}
