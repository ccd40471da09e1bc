//! The one signature rule (see `chronicle_core::sign`), by known answers: a signature whose R
//! carries a torsion component, which ed25519 batch verification accepts about half the time, is
//! refused by the strict check every time; keys of small or mixed order are refused at
//! registration. A principal could grind the first offline and, before the rule was one,
//! get it into the log through the batch check at append, after which every evidence bundle
//! holding it failed.

mod common;

use chronicle_core::registry::parse_public_key;
use chronicle_core::sign::{verify_message, verify_statement};
use chronicle_core::{PrincipalId, Signer};
use curve25519_dalek::edwards::CompressedEdwardsY;
use curve25519_dalek::traits::IsIdentity;

/// The point (0, -1): of order 2.
fn order_two() -> curve25519_dalek::EdwardsPoint {
    let mut y = [0xff; 32];
    y[0] = 0xec;
    y[31] = 0x7f;
    let t = CompressedEdwardsY(y).decompress().unwrap();
    assert!(!t.is_identity() && (t + t).is_identity(), "(0, -1) has order 2");
    t
}

fn signer(seed: u8) -> Signer {
    Signer::from_seed(PrincipalId::new("p").unwrap(), [seed; 32])
}

/// A valid signature over `statement`, and a torsion twin: signed as the signer of the attack
/// would, with R' = rB + T for the order-2 point T in the hash, and s = r + H(R' ‖ A ‖ M)·a, so
/// that [s]B = R' + [k]A − T. The cofactorless equation is off by T; a batch's random multiple of
/// it vanishes when the multiple is even.
fn signature_and_torsion_twin(s: &Signer, seed: u8, statement: &[u8]) -> ([u8; 64], [u8; 64]) {
    use curve25519_dalek::{EdwardsPoint, Scalar};
    use sha2::{Digest, Sha512};
    let good = s.sign_statement(statement);
    // The secret scalar, as ed25519 derives it from the seed (RFC 8032, 5.1.5).
    let h = Sha512::digest([seed; 32]);
    let mut a_bytes: [u8; 32] = h[..32].try_into().unwrap();
    a_bytes[0] &= 248;
    a_bytes[31] &= 127;
    a_bytes[31] |= 64;
    let a = Scalar::from_bytes_mod_order(a_bytes);
    let message = chronicle_core::entry::signing_message(statement);
    let r = Scalar::from_bytes_mod_order_wide(&Sha512::digest([&[0x5a; 32][..], &message].concat()).into());
    let r_twin = (EdwardsPoint::mul_base(&r) + order_two()).compress();
    let k = Scalar::from_bytes_mod_order_wide(
        &Sha512::new()
            .chain_update(r_twin.as_bytes())
            .chain_update(s.verifying_key().as_bytes())
            .chain_update(&message)
            .finalize()
            .into(),
    );
    let s_twin = r + k * a;
    let mut twin = [0u8; 64];
    twin[..32].copy_from_slice(r_twin.as_bytes());
    twin[32..].copy_from_slice(s_twin.as_bytes());
    (good, twin)
}

#[test]
fn a_signature_whose_r_has_a_torsion_component_is_refused_by_the_strict_check() {
    let s = signer(7);
    let statement = b"a statement";
    let (good, twin) = signature_and_torsion_twin(&s, 7, statement);
    assert!(verify_statement(&s.verifying_key(), statement, &good));
    assert!(!verify_statement(&s.verifying_key(), statement, &twin));
    let message = chronicle_core::entry::signing_message(statement);
    assert!(!verify_message(&s.verifying_key(), &message, &twin));
}

/// Why the rule has no batch check: ed25519-dalek's batch verification draws its random scalars
/// from a transcript of its inputs, and cancels the order-2 component of R whenever the scalar
/// drawn is even. A signer grinding statements (any field it chooses, such as the idempotency
/// key) finds one whose twin passes the batch about every second try; the strict check refuses
/// every twin.
#[test]
fn batch_verification_accepts_about_half_of_the_ground_torsion_twins() {
    let s = signer(9);
    // In a batch beside another principal's good signature, as at append.
    let other = signer(10);
    let other_message = chronicle_core::entry::signing_message(b"another statement");
    let other_sig = ed25519_dalek::Signature::from_bytes(&other.sign_statement(b"another statement"));
    let mut accepted = 0;
    for i in 0..64 {
        let statement = format!("ground offline, try {i}").into_bytes();
        let (_, twin) = signature_and_torsion_twin(&s, 9, &statement);
        let message = chronicle_core::entry::signing_message(&statement);
        let batch = ed25519_dalek::verify_batch(
            &[&other_message[..], &message[..]],
            &[other_sig, ed25519_dalek::Signature::from_bytes(&twin)],
            &[other.verifying_key(), s.verifying_key()],
        );
        accepted += usize::from(batch.is_ok());
        assert!(!verify_message(&s.verifying_key(), &message, &twin), "try {i}");
    }
    assert!((16..=48).contains(&accepted), "the batch accepted {accepted} of 64 twins");
}

#[test]
fn keys_of_small_or_mixed_order_are_refused_at_registration() {
    // The identity (small order), the order-2 point, and a good key plus the order-2 point.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let t = order_two().compress().to_bytes();
    let good = signer(3).verifying_key();
    let mixed = (good.to_edwards() + order_two()).compress().to_bytes();
    for (what, key) in [("identity", identity), ("order 2", t), ("mixed order", mixed)] {
        let e = parse_public_key(&hex::encode(key)).unwrap_err();
        assert!(e.to_string().contains("order"), "{what}: {e}");
    }
    assert!(parse_public_key(&hex::encode(good.to_bytes())).is_ok());
}

/// At append: a command whose signature is a torsion twin is refused, every time, whether the
/// verifier checks it alone or beside others.
#[test]
fn a_torsion_twin_is_refused_at_append() {
    use chronicle_core::{Command, RegistryEvent, Role, StreamId};
    use chronicle_store::{AppendError, ExpectedVersion};
    let l = common::Ledger::new();
    let seed = 21;
    let s = Signer::from_seed(PrincipalId::new("grinder").unwrap(), [seed; 32]);
    let reg = Command::sign(
        &l.admin,
        RegistryEvent::register(s.principal().clone(), Role::RecordsClerk, &s.verifying_key()).draft(),
    )
    .unwrap();
    l.append(StreamId::REGISTRY, ExpectedVersion::Any, vec![reg]).unwrap();
    let before = l.store.head().len;
    for i in 0..16 {
        let stream = common::stream(&format!("s{i}"));
        let good = common::record(&s, stream, &format!("k{i}"), "{}");
        let (_, twin) = signature_and_torsion_twin(&s, seed, good.statement_bytes());
        let forged =
            Command::from_parts(good.statement_bytes().to_vec(), *good.salt(), good.payload().to_vec(), twin).unwrap();
        // Alone, and beside a good command of another stream in the same group.
        let other = common::stream(&format!("o{i}"));
        let fine = common::record(&s, other, &format!("o{i}"), "{}");
        let (a, b) = std::thread::scope(|t| {
            let a = t.spawn(|| l.append(stream, ExpectedVersion::Any, vec![forged.clone()]));
            let b = t.spawn(|| l.append(other, ExpectedVersion::Any, vec![fine.clone()]));
            (a.join().unwrap(), b.join().unwrap())
        });
        assert!(
            matches!(a, Err(AppendError::Unauthorized { source: chronicle_core::RegistryError::BadSignature, .. })),
            "try {i}: {a:?}"
        );
        assert!(b.is_ok(), "try {i}: {b:?}");
    }
    assert_eq!(l.store.head().len, before + 16, "only the good commands were appended");
}

/// Only the ledger rotates or revokes the ledger's own key: an admin may not (it could stop the
/// ledger signing, or rotate in a key of its own and sign as the ledger).
#[test]
fn no_one_but_the_ledger_rotates_or_revokes_the_ledgers_key() {
    use chronicle_core::registry::{KeyRevoked, KeyRotated};
    use chronicle_core::{Command, RegistryEvent, StreamId};
    use chronicle_store::ExpectedVersion;
    let l = common::Ledger::new();
    let ledger = l.ledger.principal().clone();
    let kid = l.ledger.key_id().to_string();
    let mine = signer(44);
    let attempts = [
        RegistryEvent::Revoked(KeyRevoked { principal: ledger.clone(), key_id: kid.clone(), reason: "r".into() }),
        RegistryEvent::Rotated(KeyRotated {
            principal: ledger.clone(),
            retires: kid.clone(),
            new_public_key: hex::encode(mine.verifying_key().to_bytes()),
        }),
    ];
    for ev in attempts {
        let cmd = Command::sign(&l.admin, ev.draft()).unwrap();
        let e = l.append(StreamId::REGISTRY, ExpectedVersion::Any, vec![cmd]).unwrap_err();
        assert!(e.to_string().contains("the ledger's own key"), "{e}");
    }
}
