//! Merkle tree costs at scale: stored-hash upkeep per appended entry, and inclusion and
//! consistency proof generation at 1M and 10M entries, reading stored hashes from sled.
//!
//! The tree is built through the same code the writer uses (`TreeTail`, a group of 1,000 leaves
//! per atomic sled batch), over synthetic leaves: the entries themselves do not matter to the
//! tree's cost, only their hashes. Run with `cargo bench --bench tree -- [--entries N]`.

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

fn main() {
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
