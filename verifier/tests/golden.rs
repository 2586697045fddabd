//! The lookup rule against the golden questions in tests/data/lookups.csv, with
//! the example registry read from both import formats.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use consentry::Isrc;
use consentry::declaration::{Declaration, Record, check_relations, resolve, row_from_json};
use consentry::lookup::{Answer, Question, lookup};
use consentry::model::{Use, parse_territory};
use consentry::time::parse_date;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data");

fn from_csv() -> Vec<Declaration> {
    let mut r = csv::Reader::from_path(format!("{DATA}/declarations.csv")).unwrap();
    let headers = r.headers().unwrap().clone();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            let row: BTreeMap<String, String> = headers
                .iter()
                .zip(rec.iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect();
            Declaration::from_row(&row).unwrap()
        })
        .collect()
}

fn from_jsonl() -> Vec<Declaration> {
    std::fs::read_to_string(format!("{DATA}/declarations.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            Declaration::from_row(&row_from_json(&serde_json::from_str(l).unwrap()).unwrap())
                .unwrap()
        })
        .collect()
}

fn answer(records: &[Record], isrc: &str, use_: &str, territory: &str, at: &str) -> Answer {
    let Ok(isrc) = Isrc::parse(isrc) else {
        return Answer::invalid_isrc();
    };
    let q = Question {
        isrc,
        use_: Use::parse(use_).unwrap(),
        territory: (!territory.is_empty()).then(|| parse_territory(territory).unwrap()),
        at: parse_date(at).unwrap(),
    };
    lookup(&q, records.iter().map(Record::entry))
}

fn check_all(decls: &[Declaration]) {
    assert!(check_relations(decls).is_empty());
    let records = resolve(decls);
    let mut r = csv::Reader::from_path(format!("{DATA}/lookups.csv")).unwrap();
    let mut n = 0;
    for rec in r.records() {
        let rec = rec.unwrap();
        let got = answer(&records, &rec[0], &rec[1], &rec[2], &rec[3]);
        let want_ids: Vec<&str> = rec[6].split_whitespace().collect();
        assert_eq!(
            (
                got.decision.name(),
                got.reason.name(),
                got.decided_by
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
            ),
            (&rec[4], &rec[5], want_ids),
            "row {rec:?}"
        );
        n += 1;
    }
    assert!(n >= 36, "golden file has {n} rows");
}

#[test]
fn golden_lookups_from_csv() {
    check_all(&from_csv());
}

#[test]
fn golden_lookups_from_jsonl() {
    check_all(&from_jsonl());
}

#[test]
fn csv_and_jsonl_give_the_same_declarations() {
    assert_eq!(from_csv(), from_jsonl());
}
