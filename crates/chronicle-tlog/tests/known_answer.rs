//! Known answers from outside this project: RFC 6962's reference tree (as used by Go's
//! `sumdb/tlog` and transparency-dev/merkle tests) and the C2SP signed-note test vector.

use chronicle_tlog::note::{parse_verifier_key, verifier_key, verify_note};
use chronicle_tlog::tree::{
    EMPTY_HASH, TreeError, TreeHash, consistency_proof, inclusion_proof, leaf_hash, root, verify_consistency,
    verify_inclusion,
};
use chronicle_tlog::{MemoryTree, NoteSigner, sign_checkpoint, verify_checkpoint};

const LEAVES: [&str; 8] =
    ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"];
const ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

fn h(s: &str) -> TreeHash {
    TreeHash(hex::decode(s).unwrap().try_into().unwrap())
}

fn reference_tree() -> MemoryTree {
    let mut t = MemoryTree::new();
    for l in LEAVES {
        t.push(&hex::decode(l).unwrap());
    }
    t
}

#[test]
fn roots_match_rfc6962_for_every_size() {
    let t = reference_tree();
    assert_eq!(EMPTY_HASH, h(ROOTS[0]));
    for (size, want) in ROOTS.iter().enumerate() {
        assert_eq!(root(size as u64, &t).unwrap(), h(want), "size {size}");
    }
}

#[test]
fn inclusion_proofs_match_the_reference() {
    let t = reference_tree();
    let cases: [(u64, u64, &[&str]); 3] = [
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (0, 1, &[]),
    ];
    for (index, size, want) in cases {
        let p = inclusion_proof(index, size, &t).unwrap();
        assert_eq!(p, want.iter().map(|s| h(s)).collect::<Vec<_>>(), "leaf {index} in {size}");
        let leaf = leaf_hash(&hex::decode(LEAVES[index as usize]).unwrap());
        verify_inclusion(leaf, index, size, &p, h(ROOTS[size as usize])).unwrap();
    }
}

#[test]
fn consistency_proofs_match_the_reference() {
    let t = reference_tree();
    let cases: [(u64, u64, &[&str]); 4] = [
        (1, 1, &[]),
        (
            2,
            8,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    for (first, second, want) in cases {
        let p = consistency_proof(first, second, &t).unwrap();
        assert_eq!(p, want.iter().map(|s| h(s)).collect::<Vec<_>>(), "{first} -> {second}");
        verify_consistency(first, h(ROOTS[first as usize]), second, h(ROOTS[second as usize]), &p).unwrap();
    }
}

#[test]
fn proofs_verify_at_every_size_and_tampering_is_rejected() {
    let mut t = MemoryTree::new();
    let data: Vec<Vec<u8>> = (0..70u32).map(|i| format!("entry {i}").into_bytes()).collect();
    let mut roots = vec![EMPTY_HASH];
    for d in &data {
        t.push(d);
        roots.push(root(t.size(), &t).unwrap());
    }
    for size in 1..=data.len() as u64 {
        let r = roots[size as usize];
        for index in 0..size {
            let leaf = leaf_hash(&data[index as usize]);
            let p = inclusion_proof(index, size, &t).unwrap();
            verify_inclusion(leaf, index, size, &p, r).unwrap();
            if size > 1 {
                let other = (index + 1) % size;
                assert!(verify_inclusion(leaf, other, size, &p, r).is_err(), "wrong index accepted");
            }
            if let Some(first) = p.first() {
                let mut bad = p.clone();
                bad[0] = TreeHash([first.0[0] ^ 1; 32]);
                assert_eq!(verify_inclusion(leaf, index, size, &bad, r), Err(TreeError::InvalidProof));
            }
        }
        for first in 1..=size {
            let p = consistency_proof(first, size, &t).unwrap();
            verify_consistency(first, roots[first as usize], size, r, &p).unwrap();
            if first < size {
                assert!(verify_consistency(first, roots[first as usize - 1], size, r, &p).is_err());
            }
        }
    }
    assert!(matches!(inclusion_proof(5, 5, &t), Err(TreeError::IndexOutOfRange { .. })));
    assert!(matches!(consistency_proof(0, 5, &t), Err(TreeError::BadSizes { .. })));
    assert!(matches!(consistency_proof(6, 5, &t), Err(TreeError::BadSizes { .. })));
    let long = vec![EMPTY_HASH; 65];
    assert_eq!(verify_inclusion(EMPTY_HASH, 0, 2, &long, EMPTY_HASH), Err(TreeError::ProofTooLong(65)));
}

#[test]
fn c2sp_signed_note_test_vector_verifies() {
    let vkey = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
    let note = "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";
    assert_eq!(verify_note(note.as_bytes(), vkey).unwrap(), b"This is an example message.\n");
    // Our own encoding of the verifier key reproduces the spec's string.
    let (name, key) = parse_verifier_key(vkey).unwrap();
    assert_eq!(verifier_key(&name, &key), vkey);
    // A changed message or a different key is refused.
    let altered = note.replace("example message", "exemplary message");
    assert!(verify_note(altered.as_bytes(), vkey).is_err());
    let other = NoteSigner::new("example.com/foo", ed25519_dalek::SigningKey::from_bytes(&[3; 32])).unwrap();
    assert!(verify_note(note.as_bytes(), &other.verifier_key()).is_err());
}

#[test]
fn signed_checkpoints_round_trip_and_reject_tampering() {
    let t = reference_tree();
    let signer =
        NoteSigner::new("records.example.gov/chronicle", ed25519_dalek::SigningKey::from_bytes(&[5; 32])).unwrap();
    let note = sign_checkpoint(&signer, "records.example.gov/chronicle", 8, root(8, &t).unwrap()).unwrap();
    let text = String::from_utf8(note.clone()).unwrap();
    assert!(text.starts_with("records.example.gov/chronicle\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n\n\u{2014} records.example.gov/chronicle "), "{text}");
    let cp = verify_checkpoint(&note, &signer.verifier_key()).unwrap();
    assert_eq!((cp.size, cp.root), (8, h(ROOTS[8])));
    let forged = text.replace("\n8\n", "\n9\n");
    assert!(verify_checkpoint(forged.as_bytes(), &signer.verifier_key()).is_err());
}

#[test]
fn cosignatures_round_trip_and_witness_request_is_well_formed() {
    use chronicle_tlog::witness::{add_checkpoint_body, cosign, verify_cosignature};
    let t = reference_tree();
    let signer = NoteSigner::new("log.example", ed25519_dalek::SigningKey::from_bytes(&[5; 32])).unwrap();
    let note = sign_checkpoint(&signer, "log.example", 8, root(8, &t).unwrap()).unwrap();
    let text = chronicle_tlog::note::note_text(&note).unwrap();
    let witness = ed25519_dalek::SigningKey::from_bytes(&[6; 32]);
    let line = cosign("witness.example", &witness, 1_700_000_000, &text);
    assert_eq!(verify_cosignature(&line, "witness.example", &witness.verifying_key(), &text), Ok(1_700_000_000));
    let other_text = text.clone().into_iter().rev().collect::<Vec<u8>>();
    assert!(verify_cosignature(&line, "witness.example", &witness.verifying_key(), &other_text).is_err());
    assert!(verify_cosignature(&line, "other.example", &witness.verifying_key(), &text).is_err());
    let proof = consistency_proof(6, 8, &t).unwrap();
    let body = String::from_utf8(add_checkpoint_body(6, &proof, &note)).unwrap();
    let mut lines = body.lines();
    assert_eq!(lines.next(), Some("old 6"));
    assert_eq!(lines.next(), Some("DrxdNDf74tsVi58Sah0RjjCBgQMdCpSfje3t68VY72o="));
    assert_eq!(body.split("\n\n").count(), 3, "proof block, then the note's text and signatures");
    assert!(body.ends_with(std::str::from_utf8(&note).unwrap()));
}
