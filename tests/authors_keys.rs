//! Authors hold their own keys: `chronicle keygen` makes a principal's signing key and TLS key on
//! its own machine; the bureau registers the public key and issues a certificate over the
//! request's key (`principal add --public-key --csr`), and never holds either private key; the
//! principal signs and submits with them over mutual TLS; a certificate past its expiry is
//! refused at TLS.

mod common;

use std::path::Path;

use common::{chronicle, ok};

/// Every file under `root`, with its bytes.
fn files(root: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// The base64 body of a PEM file, as one line (how it would appear if copied anywhere).
fn pem_body(pem: &str) -> String {
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}

#[test]
fn a_principal_registered_from_its_own_keys_signs_and_submits_and_the_bureau_holds_neither_private_key() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let d = data.to_str().unwrap();
    ok(&["init", "--data-dir", d]);
    // On the clerk's machine.
    let author = tmp.path().join("clerk-machine");
    let said = ok(&["keygen", "--id", "clerk.own", "--out", author.to_str().unwrap()]);
    assert!(said.contains("signing.pub") && said.contains("tls.csr.pem"), "{said}");
    let again = chronicle(&["keygen", "--id", "clerk.own", "--out", author.to_str().unwrap()]);
    assert!(!again.status.success(), "keys are never made over existing ones");
    // At the bureau: only the public key and the request travel.
    let returned = tmp.path().join("returned");
    let said = ok(&[
        "principal",
        "add",
        "--data-dir",
        d,
        "--id",
        "clerk.own",
        "--role",
        "records_clerk",
        "--public-key",
        author.join("signing.pub").to_str().unwrap(),
        "--csr",
        author.join("tls.csr.pem").to_str().unwrap(),
        "--creds-out",
        returned.to_str().unwrap(),
    ]);
    assert!(said.contains("certificate sha256") && said.contains("valid until"), "{said}");
    for name in ["cert.pem", "ca.pem"] {
        std::fs::copy(returned.join(name), author.join(name)).unwrap();
    }
    let mut names: Vec<String> =
        std::fs::read_dir(&returned).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["ca.pem", "cert.pem"], "the bureau returns the certificate and nothing else");

    // No file the bureau wrote holds either private key, in PEM, as one line, or raw.
    let signing_pem = std::fs::read_to_string(author.join("signing.key.pem")).unwrap();
    let tls_pem = std::fs::read_to_string(author.join("tls.key.pem")).unwrap();
    let signer = chronicle_core::Signer::from_pem_file(
        chronicle_core::PrincipalId::new("clerk.own").unwrap(),
        &author.join("signing.key.pem"),
    )
    .unwrap();
    let raw_seed = signer.signing_key().to_bytes();
    for (path, bytes) in files(&data).into_iter().chain(files(&returned)) {
        for (what, needle) in [
            ("signing key PEM", signing_pem.as_bytes().to_vec()),
            ("signing key base64", pem_body(&signing_pem).into_bytes()),
            ("signing key seed", raw_seed.to_vec()),
            ("TLS key PEM", tls_pem.as_bytes().to_vec()),
            ("TLS key base64", pem_body(&tls_pem).into_bytes()),
        ] {
            assert!(!contains(&bytes, &needle), "{} holds the author's {what}", path.display());
        }
    }

    // The author's directory is its credentials: it signs and submits over mutual TLS.
    let (tmp_keep, dir) = (tmp, chronicle::datadir::DataDir::new(&data, None));
    let s = common::Served::reopen(tmp_keep, dir);
    let addr = format!("localhost:{}", s.addr.port());
    let out = ok(&[
        "enroll",
        "--server",
        &addr,
        "--creds",
        author.to_str().unwrap(),
        "--sid",
        "PA-77",
        "--last",
        "Roe",
        "--first",
        "Ann",
        "--dob",
        "1990-01-02",
    ]);
    assert!(out.contains("position"), "{out}");
    let enrolled = s
        .store
        .read_log(0, 1000)
        .unwrap()
        .into_iter()
        .find(|e| e.statement.event_type.as_str() == "records.subject_enrolled")
        .expect("the enrollment");
    assert_eq!(enrolled.statement.author.as_str(), "clerk.own");
    assert_eq!(enrolled.statement.key_id, signer.key_id());
}

/// A certificate is served only while the registry records it for its principal and has not
/// revoked it; revoking it leaves the principal's signing key, and what it signed, valid.
#[test]
fn a_certificate_past_its_expiry_revoked_or_never_recorded_is_refused() {
    let s = common::Served::start(true);
    let principal = chronicle_core::PrincipalId::new("clerk").unwrap();
    let tls = chronicle_server::pki::request(&principal).unwrap();
    let ca = s.dir.ca().unwrap();
    let now = time::OffsetDateTime::now_utc();
    let expired = ca
        .issue_client_for_request(
            &principal,
            &tls.cert_pem,
            (now - time::Duration::days(30), now - time::Duration::days(1)),
        )
        .unwrap();
    let good = ca.issue_client_for_request(&principal, &tls.cert_pem, chronicle_server::pki::validity_days(1)).unwrap();
    let creds = |cert_pem: String| chronicle_client::Credentials {
        ca_pem: ca.cert_pem().to_string(),
        cert_pem,
        key_pem: tls.key_pem.clone(),
        principal: principal.clone(),
        signer: None,
    };
    let addr = format!("localhost:{}", s.addr.port());
    let refused = |cert: String| -> String {
        s.rt.block_on(async {
            match chronicle_client::Client::connect(&addr, &creds(cert)).await {
                Err(e) => e.to_string(),
                Ok(mut c) => match c.checkpoint(0).await {
                    Err(e) => e.to_string(),
                    Ok(_) => String::new(),
                },
            }
        })
    };
    // Issued by the CA, valid, but not recorded in the registry.
    assert!(refused(good.clone()).contains("not recorded in the registry"), "an unrecorded certificate was served");
    let admin = s.dir.admin().unwrap();
    let record = |event: chronicle_core::RegistryEvent| {
        let cmd = chronicle_core::Command::sign(&admin, event.draft()).unwrap();
        s.store
            .append(chronicle_store::AppendRequest {
                stream: chronicle_core::StreamId::REGISTRY,
                expected: chronicle_store::ExpectedVersion::Any,
                commands: vec![cmd],
            })
            .unwrap()
    };
    record(chronicle_server::pki::certificate_record(&principal, &good).unwrap());
    assert_eq!(refused(good.clone()), "", "a recorded certificate is served");
    // Past its expiry (recorded or not): refused at TLS.
    record(chronicle_server::pki::certificate_record(&principal, &expired).unwrap());
    assert!(!refused(expired).is_empty(), "an expired certificate was served");
    // Revoked: refused, while the principal's signing key, and its other certificate, stay valid.
    let (fp, _) = chronicle_server::pki::fingerprint(&good).unwrap();
    let at = record(chronicle_core::RegistryEvent::certificate_revoked(principal.clone(), fp.clone(), "lost laptop"))
        .entries[0]
        .position;
    let why = refused(good);
    assert!(why.contains(&format!("revoked at position {at}")), "{why}");
    let registry = s.store.registry();
    let p = registry.principal(&principal).unwrap();
    assert!(p.keys.iter().all(|k| registry.key(k).unwrap().revoked_at.is_none()), "the signing key stays valid");
    let clerk = s.client("clerk");
    s.rt.block_on(async move {
        let mut clerk = clerk;
        clerk.checkpoint(0).await.expect("the clerk's own certificate still serves");
    });

    // A request whose signature does not verify (its subject changed after signing) is refused.
    let mut der = x509_parser::pem::parse_x509_pem(tls.cert_pem.as_bytes()).unwrap().1.contents;
    let at = der.windows(b"clerk".len()).position(|w| w == b"clerk").unwrap();
    der[at] = b'k';
    let forged = format!(
        "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &der)
    );
    assert!(ca.issue_client_for_request(&principal, &forged, chronicle_server::pki::validity_days(1)).is_err());
}

/// `principal list | rotate | revoke`: the registry as the bureau sees it, a key rotated to one
/// the principal made, and a key revoked; an entry signed before stays valid (`verify` passes).
#[test]
fn principals_are_listed_rotated_and_revoked_and_earlier_entries_stay_valid() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let d = data.to_str().unwrap();
    ok(&["init", "--data-dir", d]);
    let first = tmp.path().join("first");
    ok(&["keygen", "--id", "court.cp23", "--out", first.to_str().unwrap()]);
    let pubkey = |dir: &Path| dir.join("signing.pub").to_str().unwrap().to_string();
    let csr = first.join("tls.csr.pem");
    ok(&[
        "principal",
        "add",
        "--data-dir",
        d,
        "--id",
        "court.cp23",
        "--role",
        "court",
        "--public-key",
        &pubkey(&first),
        "--csr",
        csr.to_str().unwrap(),
        "--creds-out",
        tmp.path().join("returned").to_str().unwrap(),
    ]);
    let list = || -> serde_json::Value {
        let out = ok(&["principal", "list", "--data-dir", d, "--json"]);
        out.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|v| v["principal"] == "court.cp23")
            .expect("listed")
    };
    let listed = list();
    assert_eq!(listed["role"], "court");
    let keys = listed["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["state"], "valid");
    let old_id = keys[0]["key_id"].as_str().unwrap().to_string();
    assert_eq!(
        keys[0]["public_key"].as_str().unwrap(),
        std::fs::read_to_string(first.join("signing.pub")).unwrap().trim()
    );

    // An entry signed with the first key.
    let signer = chronicle_core::Signer::from_pem_file(
        chronicle_core::PrincipalId::new("court.cp23").unwrap(),
        &first.join("signing.key.pem"),
    )
    .unwrap();
    {
        let store = chronicle::datadir::DataDir::new(&data, None).open().unwrap();
        let s = common::stream("court-notes");
        store
            .append(chronicle_store::AppendRequest {
                stream: s,
                expected: chronicle_store::ExpectedVersion::Any,
                commands: vec![common::record(&signer, s, "note-1", "{}")],
            })
            .unwrap();
    }

    let second = tmp.path().join("second");
    ok(&["keygen", "--id", "court.cp23", "--out", second.to_str().unwrap()]);
    let said = ok(&["principal", "rotate", "--data-dir", d, "--id", "court.cp23", "--public-key", &pubkey(&second)]);
    assert!(said.contains(&format!("{old_id} retired")), "{said}");
    let keys = list()["keys"].as_array().unwrap().clone();
    assert_eq!(keys.len(), 2);
    assert!(keys[0]["state"].as_str().unwrap().starts_with("retired at"), "{keys:?}");
    assert_eq!(keys[1]["state"], "valid");
    let new_id = keys[1]["key_id"].as_str().unwrap().to_string();

    let said =
        ok(&["principal", "revoke", "--data-dir", d, "--id", "court.cp23", "--key-id", &new_id, "--reason", "stolen"]);
    assert!(said.contains("revoked key"), "{said}");
    assert!(list()["keys"][1]["state"].as_str().unwrap().starts_with("revoked at"));
    // Its certificate is a separate credential: still valid, and revoked on its own.
    let certs = list()["certificates"].as_array().unwrap().clone();
    assert_eq!(certs.len(), 1);
    assert_eq!(certs[0]["state"], "valid");
    let fp = certs[0]["fingerprint"].as_str().unwrap().to_string();
    let returned_cert = std::fs::read_to_string(tmp.path().join("returned/cert.pem")).unwrap();
    assert_eq!(fp, chronicle_server::pki::fingerprint(&returned_cert).unwrap().0);
    let revoke_cert = |reason: &str| {
        chronicle(&[
            "principal",
            "revoke",
            "--data-dir",
            d,
            "--id",
            "court.cp23",
            "--certificate",
            &fp,
            "--reason",
            reason,
        ])
    };
    let said = String::from_utf8(revoke_cert("left").stdout).unwrap();
    assert!(said.contains("revoked certificate"), "{said}");
    assert!(list()["certificates"][0]["state"].as_str().unwrap().starts_with("revoked at"));
    assert!(!revoke_cert("again").status.success(), "a certificate is revoked once");
    // A new certificate for the same principal (a renewal, or after a revocation).
    let third = tmp.path().join("third");
    ok(&["keygen", "--id", "court.cp23", "--out", third.to_str().unwrap()]);
    let renewed = tmp.path().join("renewed");
    let csr3 = third.join("tls.csr.pem");
    let said = ok(&[
        "principal",
        "certify",
        "--data-dir",
        d,
        "--id",
        "court.cp23",
        "--csr",
        csr3.to_str().unwrap(),
        "--creds-out",
        renewed.to_str().unwrap(),
    ]);
    assert!(said.contains("certified court.cp23"), "{said}");
    let certs = list()["certificates"].as_array().unwrap().clone();
    assert_eq!(certs.len(), 2);
    assert_eq!(certs[1]["state"], "valid");
    // Refused, changing nothing: a request naming another principal, a validity out of range,
    // a directory that already holds something (left as it was).
    let other = tmp.path().join("other");
    ok(&["keygen", "--id", "someone.else", "--out", other.to_str().unwrap()]);
    let busy = tmp.path().join("busy");
    std::fs::create_dir_all(&busy).unwrap();
    std::fs::write(busy.join("notes.txt"), b"mine").unwrap();
    let before = ok(&["principal", "list", "--data-dir", d]);
    for (args, why) in [
        (
            vec![
                "--csr",
                other.join("tls.csr.pem").to_str().unwrap(),
                "--creds-out",
                tmp.path().join("x").to_str().unwrap(),
            ],
            "names someone.else",
        ),
        (
            vec![
                "--csr",
                csr3.to_str().unwrap(),
                "--valid-days",
                "3000000",
                "--creds-out",
                tmp.path().join("y").to_str().unwrap(),
            ],
            "--valid-days",
        ),
        (vec!["--csr", csr3.to_str().unwrap(), "--creds-out", busy.to_str().unwrap()], "not empty"),
    ] {
        let mut all = vec!["principal", "certify", "--data-dir", d, "--id", "court.cp23"];
        all.extend(args);
        let out = chronicle(&all);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(why), "{all:?}: {err}");
    }
    assert_eq!(ok(&["principal", "list", "--data-dir", d]), before);
    assert!(!tmp.path().join("x").exists() && !tmp.path().join("y").exists(), "a refused command leaves no directory");
    assert_eq!(std::fs::read(busy.join("notes.txt")).unwrap(), b"mine");
    assert_eq!(std::fs::read_dir(&busy).unwrap().count(), 1);
    // Bad input changes nothing.
    let before = ok(&["principal", "list", "--data-dir", d]);
    for bad in [
        vec!["principal", "revoke", "--data-dir", d, "--id", "court.cp23", "--key-id", "zz", "--reason", "x"],
        vec!["principal", "rotate", "--data-dir", d, "--id", "court.cp23", "--public-key", d],
        vec!["principal", "rotate", "--data-dir", d, "--id", "nobody", "--public-key", &pubkey(&second)],
    ] {
        let out = chronicle(&bad);
        assert!(!out.status.success(), "{bad:?} succeeded");
    }
    assert_eq!(ok(&["principal", "list", "--data-dir", d]), before);
    let out = ok(&["verify", "--data-dir", d]);
    assert!(out.starts_with("ok:"), "{out}");
}
