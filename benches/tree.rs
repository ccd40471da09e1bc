//! Merkle tree costs at scale: stored-hash upkeep per appended entry, and inclusion and
//! consistency proof generation at 1M and 10M entries, reading stored hashes from sled; and the
//! heads map (`chronicle_tlog::heads`) built and kept up to date at 260,000 streams.
//!
//! The tree is built through the same code the writer uses (`TreeTail`, a group of 1,000 leaves
//! per atomic sled batch), over synthetic leaves: the entries themselves do not matter to the
//! tree's cost, only their hashes. Run with `cargo bench --bench tree -- [--entries N] [--streams N] [--heads-only 1]`.

mod common;

use std::time::Instant;

use chronicle_store::tree::{SledTree, TreeTail};
use chronicle_tlog::tree::{consistency_proof, inclusion_proof, leaf_hash, root};

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 11
    }
}

/// The heads map (`chronicle_tlog::heads`) at `streams` streams: built whole from sorted heads (as
/// at an open), then kept up to date through `updates` heads set at random with the root taken
/// every 1,000 (as per group commits), and one proof.
fn heads_map(streams: u64, updates: u64) {
    use chronicle_tlog::heads::{HeadsMap, StreamHead};
    let mut rng = Lcg(7);
    let id = |n: u64| -> [u8; 16] { *blake3::hash(&n.to_be_bytes()).as_bytes().first_chunk::<16>().unwrap() };
    let mut heads: Vec<StreamHead> =
        (0..streams).map(|n| StreamHead { stream: id(n), version: 0, hash: [1; 32] }).collect();
    heads.sort();
    let started = Instant::now();
    let mut map = HeadsMap::new(heads).unwrap();
    let root = map.root();
    let built = started.elapsed();
    let started = Instant::now();
    for u in 0..updates {
        let n = rng.next() % streams;
        map.set(StreamHead { stream: id(n), version: u + 1, hash: [2; 32] });
        if u % 1000 == 999 {
            map.root();
        }
    }
    let root_after = map.root();
    let updated = started.elapsed();
    let started = Instant::now();
    let proof = map.prove(&id(3)).unwrap();
    let proved = started.elapsed();
    proof.verify(&root_after).unwrap();
    assert_ne!(root, root_after);
    println!(
        "heads map, {streams} streams: built in {:.3}s; {updates} heads set in {:.3}s ({:.2} us each, root every 1,000); one proof {:.1} us, {} hashes",
        built.as_secs_f64(),
        updated.as_secs_f64(),
        updated.as_secs_f64() * 1e6 / updates as f64,
        proved.as_secs_f64() * 1e6,
        proof.path.len()
    );
}

fn main() {
    heads_map(common::arg("--streams", 260_000), 1_000_000);
    if common::arg("--heads-only", 0) == 1 {
        return;
    }
    let max = common::arg("--entries", 10_000_000);
    let checkpoints: Vec<u64> = [1_000_000u64, 10_000_000].into_iter().filter(|n| *n <= max).collect();
    let tmp = tempfile::tempdir().unwrap();
    let db = sled::Config::new().path(tmp.path()).cache_capacity(256 << 20).flush_every_ms(None).open().unwrap();
    let keys = chronicle_store::IntegrityKeys::from_master(&chronicle_core::MasterKey::generate(), 0);
    let mut tail = TreeTail::load(&db, 0, &keys).unwrap();
    let mut rng = Lcg(7);
    let started = Instant::now();
    let mut n = 0u64;
    println!(
        "{:>12} {:>22} {:>22} {:>22}",
        "tree size", "append µs/entry", "inclusion proof µs", "consistency proof µs"
    );
    for &target in &checkpoints {
        let t = Instant::now();
        let first = n;
        while n < target {
            let mut batch = sled::Batch::default();
            for _ in 0..1000 {
                tail.append(&db, n, leaf_hash(&n.to_be_bytes())).unwrap();
                n += 1;
            }
            tail.write_into(&mut batch);
            db.apply_batch(batch).unwrap();
        }
        db.flush().unwrap();
        let per_entry = t.elapsed().as_secs_f64() * 1e6 / (n - first) as f64;
        let reader = SledTree::new(&db, Some(&keys));
        let _ = root(n, &reader).unwrap();
        let mut inc = Vec::new();
        let mut con = Vec::new();
        for _ in 0..2000 {
            let i = rng.next() % n;
            let t = Instant::now();
            let p = inclusion_proof(i, n, &reader).unwrap();
            inc.push(t.elapsed().as_secs_f64() * 1e6);
            assert!(p.len() <= 64);
            let m = 1 + rng.next() % n;
            let t = Instant::now();
            consistency_proof(m, n, &reader).unwrap();
            con.push(t.elapsed().as_secs_f64() * 1e6);
        }
        inc.sort_by(f64::total_cmp);
        con.sort_by(f64::total_cmp);
        println!(
            "{:>12} {:>22.2} {:>15.1} (p99 {:>4.0}) {:>15.1} (p99 {:>4.0})",
            n,
            per_entry,
            common::percentile(&inc, 0.5),
            common::percentile(&inc, 0.99),
            common::percentile(&con, 0.5),
            common::percentile(&con, 0.99)
        );
    }
    println!("built {n} leaves in {:.1}s", started.elapsed().as_secs_f64());
}
