//! Durable append throughput and latency with 1, 16 and 64 concurrent appenders.
//!
//! Each appender is an async task (on a two-thread tokio runtime, as in the server) calling
//! `Store::append_async` with one pre-signed command per request (client signing is excluded; the store's signature check is included). Every
//! acknowledged append passed the full durability point (sled flush + fdatasync). Run with
//! `cargo bench --bench append -- [--seconds N] [--rounds R] [--appenders A]`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chronicle_core::StreamId;
use chronicle_store::{AppendRequest, ExpectedVersion};

fn main() {
    let seconds = common::arg("--seconds", 5);
    let rounds = common::arg("--rounds", 3);
    let batch = common::arg("--batch", 1).max(1) as usize;
    println!("durable append, {batch} command(s) per request, {seconds}s per run, median of {rounds} runs");
    println!("{:>10} {:>12} {:>10} {:>10} {:>12}", "appenders", "entries/s", "p50 ms", "p99 ms", "entries");
    let only = common::arg("--appenders", 0) as usize;
    let by_thread = std::env::var_os("CHRONICLE_BENCH_THREADS").is_some();
    rayon::ThreadPoolBuilder::new().thread_name(|i| format!("rayon-{i}")).build_global().unwrap();
    for appenders in [1usize, 16, 64].into_iter().filter(|a| only == 0 || *a == only) {
        let mut rates = Vec::new();
        let mut p50s = Vec::new();
        let mut p99s = Vec::new();
        let mut counts = Vec::new();
        for _ in 0..rounds {
            let tmp = tempfile::tempdir().unwrap();
            let (_dir, store, clerk) = common::ledger(tmp.path());
            let clerk = Arc::new(clerk);
            // Pre-sign enough commands for the run on all cores before the clock starts.
            let per = (60_000 * seconds as usize / appenders).clamp(2_000, 400_000);
            let work: Vec<Vec<chronicle_core::Command>> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..appenders)
                    .map(|a| {
                        let clerk = clerk.clone();
                        s.spawn(move || {
                            (0..per)
                                .map(|i| {
                                    common::command(
                                        &clerk,
                                        StreamId::derive("bench", &format!("{}", (a * 7919 + i / batch) % 5000)),
                                        &format!("{a}-{i}"),
                                    )
                                })
                                .collect()
                        })
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let deadline = Instant::now() + Duration::from_secs(seconds);
            let started = Instant::now();
            // Appenders are async tasks on a two-thread runtime, as in the gRPC server.
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("appender-rt")
                .enable_all()
                .build()
                .unwrap();
            let cpu_before = common::cpu_by_thread();
            let latencies: Vec<Vec<f64>> = rt.block_on(async {
                let tasks: Vec<_> = work
                    .into_iter()
                    .map(|cmds| {
                        let store = store.clone();
                        tokio::spawn(async move {
                            let mut lat = Vec::new();
                            for request in cmds.chunks(batch) {
                                if Instant::now() >= deadline {
                                    break;
                                }
                                let stream = request[0].statement().stream;
                                let commands: Vec<_> =
                                    request.iter().filter(|c| c.statement().stream == stream).cloned().collect();
                                let n = commands.len();
                                let t = Instant::now();
                                store
                                    .append_async(AppendRequest { stream, expected: ExpectedVersion::Any, commands })
                                    .await
                                    .unwrap();
                                let ms = t.elapsed().as_secs_f64() * 1e3;
                                lat.extend(std::iter::repeat_n(ms, n));
                            }
                            lat
                        })
                    })
                    .collect();
                let mut out = Vec::new();
                for t in tasks {
                    out.push(t.await.unwrap());
                }
                out
            });
            let elapsed = started.elapsed().as_secs_f64();
            let cpu = common::cpu_between(&cpu_before, &common::cpu_by_thread());
            let mut all: Vec<f64> = latencies.into_iter().flatten().collect();
            if by_thread {
                // CPU per appended entry, by thread (sled's I/O threads summed).
                let mut by: std::collections::BTreeMap<String, f64> = Default::default();
                for (name, t) in cpu {
                    let name = if name.starts_with("sled-io") { "sled-io".to_string() } else { name };
                    *by.entry(name).or_default() += t;
                }
                let total: f64 = by.values().sum();
                let line: Vec<String> = by
                    .iter()
                    .filter(|(_, t)| **t > 0.0)
                    .map(|(n, t)| format!("{n} {:.0}", t / all.len() as f64 * 1e6))
                    .collect();
                println!("  CPU µs per entry: total {:.0}; {}", total / all.len() as f64 * 1e6, line.join(", "));
            }
            all.sort_by(|a, b| a.total_cmp(b));
            rates.push(all.len() as f64 / elapsed);
            p50s.push(common::percentile(&all, 0.5));
            p99s.push(common::percentile(&all, 0.99));
            counts.push(all.len() as f64);
        }
        println!(
            "{:>10} {:>12.0} {:>10.2} {:>10.2} {:>12.0}",
            appenders,
            common::median(rates),
            common::median(p50s),
            common::median(p99s),
            common::median(counts)
        );
    }
}
