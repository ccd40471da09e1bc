//! The AEAD under every sealed payload and wrapped key: XChaCha20-Poly1305 as Chronicle runs it
//! (HChaCha20, then ring's ChaCha20-Poly1305) beside RustCrypto's `XChaCha20Poly1305`, opening
//! messages of the sizes a replay opens (a 32-byte content key, a few hundred bytes of payload).
//!
//! Run with `cargo bench --bench seal -- [--rounds R]`.

mod common;

use std::hint::black_box;
use std::time::Instant;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chronicle_core::payload::{NONCE_LEN, SymmetricKey, aead_open, aead_seal};

/// Nanoseconds per call of `f`, over `n` calls.
fn per_call(n: u32, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed().as_nanos() as f64 / f64::from(n)
}

fn main() {
    let rounds = common::arg("--rounds", 5);
    let key = SymmetricKey::random();
    let aad: &[u8] = b"chronicle.bench.aad\n0123456789abcdef0123456789abcdef";
    println!("{:<10} {:>16} {:>16} {:>16}", "bytes", "open (ns)", "RustCrypto (ns)", "seal (ns)");
    for len in [32usize, 600, 4000] {
        let msg = vec![7u8; len];
        let sealed = aead_seal(&key, &[aad], &msg);
        let other = chacha20poly1305::XChaCha20Poly1305::new(&(*key.as_bytes()).into());
        let nonce: [u8; NONCE_LEN] = sealed[..NONCE_LEN].try_into().expect("a nonce");
        // Both open the same bytes to the same message.
        let theirs = other.decrypt(&nonce.into(), Payload { msg: &sealed[NONCE_LEN..], aad }).expect("opens");
        assert_eq!(&aead_open(&key, &[aad], &sealed).expect("opens")[..], &theirs[..]);
        let (mut ours, mut rc, mut seal) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            ours.push(per_call(100_000, || {
                black_box(aead_open(&key, &[aad], black_box(&sealed)).expect("opens"));
            }));
            rc.push(per_call(100_000, || {
                let c = chacha20poly1305::XChaCha20Poly1305::new(&(*key.as_bytes()).into());
                black_box(
                    c.decrypt(&nonce.into(), Payload { msg: black_box(&sealed[NONCE_LEN..]), aad }).expect("opens"),
                );
            }));
            seal.push(per_call(100_000, || {
                black_box(aead_seal(&key, &[aad], black_box(&msg)));
            }));
        }
        println!(
            "{len:<10} {:>16.0} {:>16.0} {:>16.0}",
            common::median(ours),
            common::median(rc),
            common::median(seal)
        );
    }
}
