//! gRPC load: 64 clients submitting and 64 reading at once, for 30 s, over mutual TLS on
//! loopback, against one server in this process.
//!
//! Submitters send pre-signed arrests (each opens a new case for one of the seeded subjects;
//! client signing is excluded from the clock and measured separately); readers ask for seeded
//! subjects' records as a records clerk (inside the bureau, so no dissemination is written per
//! read). Each client has its own connection. Server and clients share this machine's cores.
//! Run with `cargo bench --bench grpc_load -- [--seconds N] [--submitters S] [--readers R]
//! [--subjects N] [--floor]`.
//!
//! `--floor` measures the transport's own cost instead: as many clients as submitters and readers
//! together call the standard health service's `Check` (a handler that does no work) over the
//! same mutual-TLS connections. Its rate and CPU per call are what any gRPC service costs on this
//! machine before it does anything, the floor under the figures of the real mix.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chronicle_client::v1 as pb;
use chronicle_client::{Client, Credentials};
use chronicle_core::{Command, PrincipalId, RegistryEvent, Role, Signer, StreamId, Timestamp};
use chronicle_records::model::ChargeSpec;
use chronicle_records::service::draft;
use chronicle_records::{Date, Level, Name, RecordEvent, Records};
use chronicle_store::{AppendRequest, ExpectedVersion};

fn main() {
    let seconds = common::arg("--seconds", 30);
    let submitters = common::arg("--submitters", 64) as usize;
    let readers = common::arg("--readers", 64) as usize;
    let subjects = common::arg("--subjects", 1000) as usize;
    let floor_only = std::env::args().any(|a| a == "--floor");
    // Name every thread by side, so that the server's CPU and the clients' can be told apart.
    rayon::ThreadPoolBuilder::new().thread_name(|i| format!("server-rayon-{i}")).build_global().unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let dir = chronicle::datadir::DataDir::new(tmp.path().join("data"), None);
    let init = dir.init("load.chronicle.localhost/ledger").unwrap();
    let register = |id: &str, role: Role| {
        let s = Signer::generate(PrincipalId::new(id).unwrap());
        let cmd = Command::sign(
            &init.admin,
            RegistryEvent::register(s.principal().clone(), role, &s.verifying_key()).draft(),
        )
        .unwrap();
        let req = AppendRequest { stream: StreamId::REGISTRY, expected: ExpectedVersion::Any, commands: vec![cmd] };
        init.store.append(req).unwrap();
        let (_, record) = dir.issue_credentials(&s, None, true).unwrap();
        let req = AppendRequest { stream: StreamId::REGISTRY, expected: ExpectedVersion::Any, commands: vec![record] };
        init.store.append(req).unwrap();
        s
    };
    let clerk = register("clerk", Role::RecordsClerk);
    let police = Arc::new(register("pd", Role::LawEnforcement));
    let records = Records::open(init.store.clone()).unwrap();
    records.set_ledger(dir.ledger().unwrap()).unwrap();
    let seeded: Vec<(String, StreamId)> = (0..subjects)
        .map(|i| {
            let id = StreamId::random();
            let sid = format!("LD-{i}");
            let ev = RecordEvent::SubjectEnrolled {
                sid: sid.clone(),
                fbi: None,
                name: Name { last: format!("Last{i}"), first: "First".into(), middle: None },
                dob: Date::parse("1980-01-01").unwrap(),
            };
            records.record(&clerk, id, &ev, Timestamp::now(), None).unwrap();
            (sid, id)
        })
        .collect();

    // Pre-sign the submissions on all cores, timing it: the client's signing cost.
    let per = if floor_only { 0 } else { (15_000 * seconds as usize).div_ceil(submitters.max(1)) };
    let sign_started = Instant::now();
    let work: Vec<Vec<(StreamId, Command)>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..submitters)
            .map(|a| {
                let police = police.clone();
                let seeded = &seeded;
                s.spawn(move || {
                    (0..per)
                        .map(|i| {
                            let subject = seeded[(a * 7919 + i) % seeded.len()].1;
                            let cycle = StreamId::random();
                            let ev = RecordEvent::ArrestRecorded {
                                subject: subject.to_hex(),
                                tracking_number: format!("OTN-{a}-{i}"),
                                agency_ori: "AZ0070000".into(),
                                arrest_date: Date::parse("2024-05-01").unwrap(),
                                charges: vec![ChargeSpec {
                                    seq: 1,
                                    statute: "13-1802".into(),
                                    offense_code: "2399".into(),
                                    literal: "THEFT OF PROPERTY".into(),
                                    level: Level::Misdemeanor,
                                    counts: 1,
                                }],
                            };
                            let key = format!("{a}-{i}").into_bytes();
                            (cycle, Command::sign(&police, draft(cycle, &ev, Timestamp::now(), None, key)).unwrap())
                        })
                        .collect()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let signed = (per * submitters) as f64;
    let sign_secs = sign_started.elapsed().as_secs_f64();

    let shared = Arc::new(chronicle_server::Shared {
        records,
        ledger: init.ledger,
        note: dir.note_signer().unwrap(),
        origin: dir.info().unwrap().origin,
        tls: true,
    });
    let server_rt = runtime("server-rt");
    let transport = chronicle_server::Transport::MutualTls(dir.tls_files().unwrap());
    let loopback = "127.0.0.1:0".parse().unwrap();
    let limits = chronicle_server::Limits::default();
    let server = server_rt.block_on(chronicle_server::start(shared, loopback, transport, limits)).unwrap();
    let addr = server.addr.to_string();

    let police_creds = Credentials::load(&dir.credentials_dir("pd")).unwrap();
    let clerk_creds = Credentials::load(&dir.credentials_dir("clerk")).unwrap();
    let client_rt = runtime("client-rt");
    if floor_only {
        floor(&client_rt, &addr, &police_creds, submitters + readers, seconds);
        server_rt.block_on(server.stop()).unwrap();
        return;
    }
    let mut cpu_before = Default::default();
    let done = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let (submit_lat, read_lat, elapsed, cpu) = client_rt.block_on(async {
        let mut submit_clients = Vec::new();
        for _ in 0..submitters {
            submit_clients.push(Client::connect(&addr, &police_creds).await.unwrap());
        }
        let mut read_clients = Vec::new();
        for _ in 0..readers {
            read_clients.push(Client::connect(&addr, &clerk_creds).await.unwrap());
        }
        let started = Instant::now();
        cpu_before = common::cpu_by_thread();
        let subs: Vec<_> = submit_clients
            .into_iter()
            .zip(work)
            .map(|(mut c, cmds)| {
                let (done, errors) = (done.clone(), errors.clone());
                tokio::spawn(async move {
                    let mut lat = Vec::new();
                    for (stream, cmd) in cmds {
                        if done.load(Ordering::Relaxed) {
                            break;
                        }
                        timed("submit", &mut lat, &errors, c.submit(stream, None, std::slice::from_ref(&cmd))).await;
                    }
                    lat
                })
            })
            .collect();
        let sids: Arc<Vec<String>> = Arc::new(seeded.iter().map(|(s, _)| s.clone()).collect());
        let reads: Vec<_> = read_clients
            .into_iter()
            .enumerate()
            .map(|(r, mut c)| {
                let (done, errors, sids) = (done.clone(), errors.clone(), sids.clone());
                tokio::spawn(async move {
                    let mut lat = Vec::new();
                    let mut i = r;
                    while !done.load(Ordering::Relaxed) {
                        i = (i + 7919) % sids.len();
                        let req = pb::RecordRequest {
                            sid: sids[i].clone(),
                            purpose: pb::Purpose::A as i32,
                            ..Default::default()
                        };
                        timed("read", &mut lat, &errors, c.record(req)).await;
                    }
                    lat
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        done.store(true, Ordering::Relaxed);
        let cpu = common::cpu_between(&cpu_before, &common::cpu_by_thread());
        let mut submit_lat = Vec::new();
        for s in subs {
            submit_lat.extend(s.await.unwrap());
        }
        let mut read_lat = Vec::new();
        for r in reads {
            read_lat.extend(r.await.unwrap());
        }
        (submit_lat, read_lat, started.elapsed().as_secs_f64(), cpu)
    });
    server_rt.block_on(server.stop()).unwrap();

    let mut submit_lat = submit_lat;
    let mut read_lat = read_lat;
    submit_lat.sort_by(|a, b| a.total_cmp(b));
    read_lat.sort_by(|a, b| a.total_cmp(b));
    println!("gRPC load over mutual TLS on loopback: {submitters} submitting + {readers} reading clients, {seconds}s");
    println!("{:<36} {:>12.0}", "submitted entries/s", submit_lat.len() as f64 / elapsed);
    println!("{:<36} {:>12.2}", "submit p50 (ms)", common::percentile(&submit_lat, 0.5));
    println!("{:<36} {:>12.2}", "submit p99 (ms)", common::percentile(&submit_lat, 0.99));
    println!("{:<36} {:>12.0}", "reads/s", read_lat.len() as f64 / elapsed);
    println!("{:<36} {:>12.2}", "read p50 (ms)", common::percentile(&read_lat, 0.5));
    println!("{:<36} {:>12.2}", "read p99 (ms)", common::percentile(&read_lat, 0.99));
    println!("{:<36} {:>12}", "errors", errors.load(Ordering::Relaxed));
    println!("{:<36} {:>12.0}", "client signing, signatures/s (all cores)", signed / sign_secs);
    // Where the CPU went while the clock ran.
    let (server, client) = by_side(&cpu);
    let (subs, reads) = (submit_lat.len() as f64, read_lat.len() as f64);
    println!("{:<36} {:>12.2}", "CPU used, cores (of 2)", (server + client) / elapsed);
    println!("{:<36} {:>12.2}", "  server, cores", server / elapsed);
    println!("{:<36} {:>12.2}", "  clients, cores", client / elapsed);
    if reads == 0.0 && subs > 0.0 {
        println!("{:<36} {:>12.0}", "server CPU per submit (µs)", server / subs * 1e6);
        println!("{:<36} {:>12.0}", "client CPU per submit (µs)", client / subs * 1e6);
    }
    if subs == 0.0 && reads > 0.0 {
        println!("{:<36} {:>12.0}", "server CPU per read (µs)", server / reads * 1e6);
        println!("{:<36} {:>12.0}", "client CPU per read (µs)", client / reads * 1e6);
    }
    print_threads(&cpu, elapsed);
}

/// Times one call: its latency (ms) goes to `lat`; a failure is counted, and the first few printed.
async fn timed<T, E: std::fmt::Display>(
    what: &str,
    lat: &mut Vec<f64>,
    errors: &AtomicU64,
    call: impl std::future::Future<Output = Result<T, E>>,
) {
    let t = Instant::now();
    match call.await {
        Ok(_) => lat.push(t.elapsed().as_secs_f64() * 1e3),
        Err(e) => {
            if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                eprintln!("{what} error: {e}");
            }
        }
    }
}

/// CPU seconds by side: (the server: its runtime, the store's threads, sled's and the thread
/// pool; the clients: their runtime, TLS and HTTP/2 included).
fn by_side(cpu: &std::collections::BTreeMap<String, f64>) -> (f64, f64) {
    let client: f64 = cpu.iter().filter(|(n, _)| n.starts_with("client-rt")).map(|(_, t)| t).sum();
    (cpu.values().sum::<f64>() - client, client)
}

/// With `CHRONICLE_BENCH_THREADS` set, each thread's share of the cores while the clock ran.
fn print_threads(cpu: &std::collections::BTreeMap<String, f64>, elapsed: f64) {
    if std::env::var_os("CHRONICLE_BENCH_THREADS").is_some() {
        for (name, t) in cpu {
            println!("  {name:<34} {:>12.2}", t / elapsed);
        }
    }
}

/// The transport's floor: `clients` clients, each on its own mutual-TLS connection, call the
/// health service's `Check` in a loop for `seconds`.
fn floor(rt: &tokio::runtime::Runtime, addr: &str, creds: &Credentials, clients: usize, seconds: u64) {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let done = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let (mut lat, elapsed, cpu) = rt.block_on(async {
        let mut channels = Vec::new();
        for _ in 0..clients {
            let tls = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&creds.ca_pem))
                .identity(Identity::from_pem(&creds.cert_pem, &creds.key_pem))
                .domain_name("127.0.0.1");
            let endpoint = Endpoint::from_shared(format!("https://{addr}")).unwrap().tls_config(tls).unwrap();
            channels.push(endpoint.connect().await.unwrap());
        }
        let started = Instant::now();
        let before = common::cpu_by_thread();
        let tasks: Vec<_> = channels
            .into_iter()
            .map(|ch| {
                let (done, errors) = (done.clone(), errors.clone());
                tokio::spawn(async move {
                    let mut health = HealthClient::new(ch);
                    let mut lat = Vec::new();
                    while !done.load(Ordering::Relaxed) {
                        let req = HealthCheckRequest { service: "chronicle.v1.Ledger".into() };
                        timed("health check", &mut lat, &errors, health.check(req)).await;
                    }
                    lat
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        done.store(true, Ordering::Relaxed);
        let cpu = common::cpu_between(&before, &common::cpu_by_thread());
        let mut lat = Vec::new();
        for t in tasks {
            lat.extend(t.await.unwrap());
        }
        (lat, started.elapsed().as_secs_f64(), cpu)
    });
    lat.sort_by(|a, b| a.total_cmp(b));
    let calls = lat.len() as f64;
    let (server, client) = by_side(&cpu);
    println!("transport floor over mutual TLS on loopback: {clients} clients calling health Check, {seconds}s");
    println!("{:<36} {:>12.0}", "calls/s", calls / elapsed);
    println!("{:<36} {:>12.2}", "call p50 (ms)", common::percentile(&lat, 0.5));
    println!("{:<36} {:>12.2}", "call p99 (ms)", common::percentile(&lat, 0.99));
    println!("{:<36} {:>12}", "errors", errors.load(Ordering::Relaxed));
    println!("{:<36} {:>12.2}", "CPU used, cores (of 2)", (server + client) / elapsed);
    println!("{:<36} {:>12.0}", "server CPU per call (µs)", server / calls * 1e6);
    println!("{:<36} {:>12.0}", "client CPU per call (µs)", client / calls * 1e6);
    print_threads(&cpu, elapsed);
}

/// A two-thread runtime whose threads carry `name`, so that their CPU time can be told apart.
fn runtime(name: &str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .thread_keep_alive(Duration::from_secs(3600))
        .enable_all()
        .build()
        .unwrap()
}
