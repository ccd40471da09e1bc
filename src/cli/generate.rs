//! `chronicle generate`: a synthetic, realistic backlog in the import format.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use serde_json::json;

/// Write a synthetic backlog (JSON Lines, docs/IMPORT.md): people with names and dates of birth,
/// arrests with charges from a small statute table, court cases, a mix of dispositions and
/// sentences, about 10% of cases sealed and about 1% expunged. Deterministic for a given --seed.
///
/// Example: chronicle generate --subjects 1000 --out backlog.jsonl
#[derive(clap::Args)]
pub struct GenerateArgs {
    /// How many people.
    #[arg(long)]
    subjects: u64,
    /// Where to write the file.
    #[arg(long)]
    out: PathBuf,
    /// Seed of the generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

const LAST: [&str; 12] =
    ["GARCIA", "SMITH", "JOHNSON", "NGUYEN", "BROWN", "DAVIS", "LOPEZ", "WILSON", "MARTIN", "LEE", "WALKER", "HALL"];
const FIRST: [&str; 12] =
    ["MARIA", "JAMES", "LINDA", "ROBERT", "ANA", "DAVID", "SUSAN", "JOSE", "KAREN", "MICHAEL", "LISA", "CARLOS"];
const STATUTES: [(&str, &str, &str, &str); 8] = [
    ("13-1802", "2399", "THEFT", "misdemeanor"),
    ("13-1502", "5799", "CRIMINAL TRESPASS", "misdemeanor"),
    ("13-1203", "1313", "ASSAULT", "misdemeanor"),
    ("13-1506", "2202", "BURGLARY", "felony"),
    ("13-3405", "3562", "POSSESSION OF MARIJUANA", "misdemeanor"),
    ("28-1381", "5404", "DRIVING UNDER THE INFLUENCE", "misdemeanor"),
    ("13-1204", "1315", "AGGRAVATED ASSAULT", "felony"),
    ("13-2310", "2699", "FRAUDULENT SCHEMES", "felony"),
];
const DISPOSITIONS: [&str; 7] =
    ["guilty_plea", "dismissed", "nolle_prosequi", "convicted_at_trial", "acquitted", "diversion", "open"];

struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

pub fn run(a: GenerateArgs) -> Result<ExitCode> {
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(&a.out).with_context(|| format!("creating {}", a.out.display()))?,
    );
    let mut r = Lcg(a.seed.wrapping_mul(0x9E3779B97F4A7C15) | 1);
    let mut lines = 0u64;
    let mut put = |v: serde_json::Value| -> Result<()> {
        writeln!(f, "{v}")?;
        lines += 1;
        Ok(())
    };
    let date = |y: u64, m: u64, d: u64| format!("{y:04}-{m:02}-{d:02}");
    for i in 0..a.subjects {
        let person = format!("P-{}-{i}", a.seed);
        let dob = date(1950 + r.below(50), 1 + r.below(12), 1 + r.below(28));
        put(
            json!({"op":"enroll","ref":person,"sid":format!("SID-{}-{i:07}", a.seed),"name":{"last":LAST[r.below(12) as usize],"first":FIRST[r.below(12) as usize]},"dob":dob}),
        )?;
        for c in 0..1 + r.below(3) {
            let case = format!("{person}-C{c}");
            let year = 2012 + r.below(13);
            let n = 1 + r.below(3);
            let charges: Vec<_> = (1..=n)
                .map(|seq| {
                    let (statute, code, literal, level) = STATUTES[r.below(8) as usize];
                    json!({"seq":seq,"statute":statute,"offense_code":code,"literal":literal,"level":level,"counts":1})
                })
                .collect();
            put(
                json!({"op":"arrest","ref":case,"subject":person,"tracking_number":format!("OTN-{}-{i}-{c}", a.seed),"agency_ori":"AZ0070000","arrest_date":date(year, 1 + r.below(6), 1 + r.below(28)),"charges":charges}),
            )?;
            put(
                json!({"op":"court_case","case":case,"court_ori":"AZ007015J","docket":format!("CR-{year}-{}-{i:07}-{c}", a.seed)}),
            )?;
            let on = date(year, 7 + r.below(6), 1 + r.below(28));
            for seq in 1..=n {
                let d = DISPOSITIONS[r.below(7) as usize];
                if d == "open" {
                    continue;
                }
                put(json!({"op":"disposition","case":case,"seq":seq,"disposition":d,"date":on}))?;
                if d == "guilty_plea" || d == "convicted_at_trial" {
                    put(json!({"op":"sentence","case":case,"seq":seq,"kind":"probation","term_days":365,"date":on}))?;
                }
            }
            let roll = r.below(100);
            if roll < 10 {
                put(
                    json!({"op":"order","case":case,"order_id":format!("SEAL-{i}-{c}"),"kind":"seal","scope":"whole_cycle","statute":"18 Pa.C.S. 9122.2","effective":date(year + 1, 1, 15)}),
                )?;
            } else if roll < 11 {
                put(
                    json!({"op":"expunge","case":case,"order_id":format!("EXP-{i}-{c}"),"statute":"PC 851.93","effective":date(year + 1, 2, 15)}),
                )?;
            }
        }
    }
    f.flush()?;
    drop(f);
    println!("wrote {lines} lines for {} people to {}", a.subjects, a.out.display());
    Ok(ExitCode::SUCCESS)
}
