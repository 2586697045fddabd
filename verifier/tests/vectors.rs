//! Every test vector in `tests/vectors/` (SPEC.md §12) must meet the
//! expectation its README header states: `valid` (and the listed lookups), or
//! `reject CODE` — refused with exactly that error code, at the §7 step its
//! `step:` line names, and naming the site file of its `file:` line if any.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use consentry::fetch::DirFetch;
use consentry::lookup::Question;
use consentry::model::Use;
use consentry::store::Store;
use consentry::sync::{SyncOptions, sync};
use consentry::verify::Expiry;
use consentry::{Code, Isrc, time};

struct Header {
    expect: String,
    step: String,
    file: String,
    now: i64,
    pin: String,
    checks: Vec<String>,
}

fn header(text: &str) -> Header {
    let mut h = Header {
        expect: String::new(),
        step: String::new(),
        file: String::new(),
        now: 0,
        pin: String::new(),
        checks: Vec::new(),
    };
    for line in text.lines() {
        let Some((k, v)) = line.split_once(": ") else {
            continue;
        };
        match k {
            "expect" => h.expect = v.to_string(),
            "step" => h.step = v.to_string(),
            "file" => h.file = v.to_string(),
            "now" => h.now = time::parse_timestamp(v).unwrap(),
            "pin" => h.pin = v.to_string(),
            "check" => h.checks.push(v.to_string()),
            _ => {}
        }
    }
    h
}

fn run_vector(dir: &Path) -> Result<(), String> {
    let h = header(&std::fs::read_to_string(dir.join("README")).map_err(|e| e.to_string())?);
    let steps = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10"];
    if (h.expect == "valid") != h.step.is_empty()
        || !(h.step.is_empty() || steps.contains(&h.step.as_str()))
    {
        return Err(format!(
            "header: expect {:?} with step {:?}",
            h.expect, h.step
        ));
    }
    let store_dir = tempfile::tempdir().unwrap();
    let root = std::fs::read(dir.join(&h.pin)).unwrap();
    let (store, _) = Store::init(store_dir.path(), &root, false).map_err(|e| e.to_string())?;
    let result = sync(
        &store,
        &DirFetch::new(dir.join("site")),
        &SyncOptions {
            now: h.now,
            expiry: Expiry::Enforce,
            keep_history: None,
        },
    );
    match (h.expect.as_str(), result) {
        ("valid", Ok(_)) => {
            for c in &h.checks {
                let f: Vec<&str> = c.split_whitespace().collect();
                let q = Question {
                    isrc: Isrc::parse(f[0]).unwrap(),
                    use_: Use::parse(f[1]).unwrap(),
                    territory: None,
                    at: time::day_of(h.now),
                };
                let res = store
                    .check(std::slice::from_ref(&q), h.now, Expiry::Enforce)
                    .map_err(|e| e.to_string())?;
                let a = &res.answers[0];
                let got = format!("{} {} {}", a.decision, a.reason, a.decided_by.join(" "));
                if got != f[2..].join(" ") {
                    return Err(format!("check {c}: got {got}"));
                }
            }
            Ok(())
        }
        ("valid", Err(e)) => Err(format!("expected valid, got {e}")),
        (exp, Ok(_)) => Err(format!("expected {exp}, but sync accepted it")),
        (exp, Err(e)) => {
            let name = exp.strip_prefix("reject ").unwrap_or(exp);
            let Some(code) = Code::parse(name) else {
                return Err(format!(
                    "the header names {name:?}, which is no code of SPEC.md §9"
                ));
            };
            if e.code != code {
                Err(format!("expected code {code}, got {e}"))
            } else if !h.file.is_empty() && !e.file.ends_with(&h.file) {
                Err(format!(
                    "expected the rejection to name {}, got {e}",
                    h.file
                ))
            } else {
                Ok(())
            }
        }
    }
}

#[test]
fn every_vector_meets_its_header() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 40, "vectors missing: {}", dirs.len());
    let failures: Vec<String> = dirs
        .iter()
        .filter_map(|d| {
            run_vector(d)
                .err()
                .map(|e| format!("{}: {e}", d.file_name().unwrap().to_string_lossy()))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
