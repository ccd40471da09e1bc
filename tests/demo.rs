//! The README's main command: `chronicle demo` plays its story, every step says what it showed,
//! and it ends with verify passing and an evidence bundle checked offline.

#[test]
fn the_demo_tells_the_whole_story_and_ends_verified() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chronicle"))
        .args(["demo", "--data-dir", dir.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let steps = [
        "1. A new ledger in",
        "2. The clerk enrolled two people",
        "3. Police arrested Jane",
        "4. The court dismissed the trespass charge",
        "5. The court sealed the dismissed charge",
        "the employer (purpose E) sees 1 charge(s): THEFT (GuiltyPlea, none)",
        "law enforcement (purpose C) sees 2 charge(s): THEFT (GuiltyPlea, none); CRIMINAL TRESPASS (Dismissed, sealed)",
        "the employer asking for a criminal-justice purpose was refused",
        "7. The court corrected the theft disposition to nolo contendere",
        "before the move, John Roe's record, to a court, sees 1 charge(s): POSSESSION OF MARIJUANA",
        "after the move, John Roe's record, to a court, sees 0 charge(s)",
        "the case's history shows the move",
        "data key(s) destroyed",
        "a court sees 2 charge(s): THEFT (NoloContendere, none); CRIMINAL TRESPASS (Dismissed, sealed)",
        "what remains of it: order EXP-2024-3",
        "history of the expunged case: expunged by order EXP-2024-3",
        "reproduces its",
        "same hash",
        "11. An evidence bundle for case CR-2024-001, checked offline",
        "verified: the checkpoint of log demo.chronicle.localhost/ledger",
        "12. verify: ok",
        "2 entries' keys destroyed, their signatures still verify",
    ];
    let mut from = 0;
    for step in steps {
        let at = text[from..].find(step).unwrap_or_else(|| panic!("missing or out of order: {step:?}\n{text}"));
        from += at;
    }
    // The kept ledger verifies again from the command line.
    let v = std::process::Command::new(env!("CARGO_BIN_EXE_chronicle"))
        .args(["verify", "--data-dir", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(v.status.code(), Some(0));
}
