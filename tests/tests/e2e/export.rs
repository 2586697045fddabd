//! `consentry export` through the binary: the rows are `check`'s answers,
//! the three formats agree, Parquet carries its metadata, outputs are
//! deterministic, and the export takes the trust path of `check`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use arrow::array::{Array, AsArray};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use consentry::Isrc;
use consentry_tests::data;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;

use super::fixture::{Fixture, RUN_LIMIT};

/// The fixture, published, pinned and synced at NOW.
fn synced() -> Fixture {
    let f = Fixture::published();
    f.verifier(&["init", "--root", "site/root/1.cbor"]).ok();
    f.verifier(&["sync", "site"]).ok();
    f
}

/// A CSV file (or text) as header + rows of strings.
fn csv_rows(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let h = r.headers().unwrap().iter().map(str::to_string).collect();
    let rows = r
        .records()
        .map(|rec| rec.unwrap().iter().map(str::to_string).collect())
        .collect();
    (h, rows)
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A JSON lines file as rows of strings in `columns` order, written the
/// way the CSV writes them (arrays joined by a space, null as empty).
fn jsonl_rows(text: &str, columns: &[String]) -> Vec<Vec<String>> {
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let obj = v.as_object().unwrap();
            // The same keys (serde_json's map sorts them; the file keeps
            // the column order, checked below on the raw line).
            assert_eq!(
                obj.keys().collect::<BTreeSet<_>>(),
                columns.iter().collect::<BTreeSet<_>>(),
                "{l}"
            );
            let at = |c: &String| l.find(&format!("\"{c}\":")).unwrap();
            assert!(columns.windows(2).all(|w| at(&w[0]) < at(&w[1])), "{l}");
            columns
                .iter()
                .map(|c| match &obj[c] {
                    serde_json::Value::Null => String::new(),
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Array(a) => a
                        .iter()
                        .map(|x| x.as_str().unwrap().to_string())
                        .collect::<Vec<_>>()
                        .join(" "),
                    other => other.to_string(),
                })
                .collect()
        })
        .collect()
}

/// A Parquet file as its column names and rows of strings, written the way
/// the CSV writes them, and its metadata.
fn parquet_rows(
    p: &Path,
) -> (
    Vec<String>,
    Vec<Vec<String>>,
    parquet::file::metadata::ParquetMetaData,
) {
    let b = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(p).unwrap()).unwrap();
    let meta = b.metadata().as_ref().clone();
    let names: Vec<String> = b
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let mut rows = Vec::new();
    let opts = FormatOptions::default();
    for batch in b.build().unwrap() {
        let batch = batch.unwrap();
        let cols: Vec<Vec<String>> = batch
            .columns()
            .iter()
            .map(|col| {
                if let Some(list) = col.as_list_opt::<i32>() {
                    return (0..list.len())
                        .map(|i| {
                            let v = list.value(i);
                            let s = v.as_string::<i32>();
                            (0..s.len())
                                .map(|j| s.value(j).to_string())
                                .collect::<Vec<_>>()
                                .join(" ")
                        })
                        .collect();
                }
                let fmt = ArrayFormatter::try_new(col.as_ref(), &opts).unwrap();
                (0..col.len())
                    .map(|i| {
                        if col.is_null(i) {
                            String::new()
                        } else {
                            fmt.value(i).to_string()
                        }
                    })
                    .collect()
            })
            .collect();
        for i in 0..batch.num_rows() {
            rows.push(cols.iter().map(|c| c[i].clone()).collect());
        }
    }
    (names, rows, meta)
}

/// The exact-scope ISRCs the example registry publishes: every exact scope
/// of a declaration that nothing supersedes (SPEC.md §3.4; revocations
/// included), computed from the declarations file alone.
fn exact_isrcs() -> BTreeSet<String> {
    let mut r = csv::Reader::from_path(data("declarations.csv")).unwrap();
    let h = r.headers().unwrap().clone();
    let col = |n: &str| h.iter().position(|c| c == n).unwrap();
    let (id, sup, scope) = (col("declaration_id"), col("supersedes"), col("scope"));
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    let superseded: BTreeSet<&str> = rows.iter().map(|r| &r[sup]).collect();
    rows.iter()
        .filter(|r| !superseded.contains(&r[id]))
        .filter_map(|r| Isrc::parse(&r[scope]).ok().map(Isrc::compact))
        .collect()
}

/// `(decision, reason, decided_by)` of an exported row, by its key column.
fn answers_by_key(
    header: &[String],
    rows: &[Vec<String>],
    key: &str,
) -> BTreeMap<String, (String, String, String)> {
    let col = |n: &str| header.iter().position(|c| c == n).unwrap();
    let (k, d, r, b) = (col(key), col("decision"), col("reason"), col("decided_by"));
    rows.iter()
        .map(|row| {
            (
                row[k].clone(),
                (row[d].clone(), row[r].clone(), row[b].clone()),
            )
        })
        .collect()
}

#[test]
fn every_golden_question_gets_checks_answer_from_the_export_and_its_prefix_rule() {
    let f = synced();
    let mut golden = csv::Reader::from_path(data("lookups.csv")).unwrap();
    let golden: Vec<csv::StringRecord> = golden.records().map(Result::unwrap).collect();
    // One export per distinct question (use, territory, at).
    let questions: BTreeSet<(String, String, String)> = golden
        .iter()
        .map(|g| (g[1].to_string(), g[2].to_string(), g[3].to_string()))
        .collect();
    // `check`'s answers to the golden questions (each row its own use,
    // territory and at) are the golden answers; the export must give them too.
    let c = f
        .verifier(&[
            "check",
            "--csv",
            "--input",
            data("lookups.csv").to_str().unwrap(),
        ])
        .ok();
    let (ch, crows) = csv_rows(&c.stdout);
    let col = |n: &str| ch.iter().position(|c| c == n).unwrap();
    let checked: Vec<(String, String, String)> = crows
        .iter()
        .map(|r| {
            (
                r[col("decision")].clone(),
                r[col("reason")].clone(),
                r[col("decided_by")].clone(),
            )
        })
        .collect();
    let golden_answers: Vec<(String, String, String)> = golden
        .iter()
        .map(|g| (g[4].to_string(), g[5].to_string(), g[6].to_string()))
        .collect();
    assert_eq!(
        checked, golden_answers,
        "check answers the golden questions"
    );
    let want_exact = exact_isrcs();
    assert!(want_exact.len() >= 8, "{want_exact:?}");
    let (mut from_entries, mut from_prefixes) = (0, 0);
    for (n, (use_, territory, at)) in questions.iter().enumerate() {
        let out = format!("out{n}");
        let mut args = vec![
            "export", "--format", "csv", "--out", &out, "--use", use_, "--at", at,
        ];
        if !territory.is_empty() {
            args.extend(["--territory", territory.as_str()]);
        }
        f.verifier(&args).ok();
        let (eh, erows) = csv_rows(&read(&f.path(&out).join("entries.csv")));
        let (ph, prows) = csv_rows(&read(&f.path(&out).join("prefixes.csv")));
        let entries = answers_by_key(&eh, &erows, "isrc");
        let prefixes = answers_by_key(&ph, &prows, "prefix");
        // Exactly the ISRCs with an entry of their own, sorted.
        assert_eq!(
            entries.keys().cloned().collect::<BTreeSet<_>>(),
            want_exact,
            "{out}"
        );
        let keys: Vec<&String> = erows.iter().map(|r| &r[0]).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "sorted: {keys:?}");

        for g in golden
            .iter()
            .filter(|g| (&g[1], &g[2], &g[3]) == (use_.as_str(), territory.as_str(), at.as_str()))
        {
            let want = (g[4].to_string(), g[5].to_string(), g[6].to_string());
            let Ok(isrc) = Isrc::parse(&g[0]) else {
                continue;
            };
            let isrc = isrc.compact();
            // The README's rule: the entry row, else the registrant-year
            // row, else the registrant row, else unknown/no_record.
            let got = if let Some(e) = entries.get(&isrc) {
                from_entries += 1;
                e.clone()
            } else if let Some(p) = prefixes
                .get(&isrc[..7])
                .or_else(|| prefixes.get(&isrc[..5]))
            {
                from_prefixes += 1;
                p.clone()
            } else {
                ("unknown".into(), "no_record".into(), String::new())
            };
            assert_eq!(got, want, "export {g:?}");
        }
    }
    // The test reaches both files.
    assert!(from_entries >= 15, "{from_entries}");
    assert!(from_prefixes >= 10, "{from_prefixes}");
}

#[test]
fn parquet_csv_and_jsonl_agree_row_for_row_and_parquet_carries_its_metadata() {
    let f = synced();
    let q = ["--use", "train-genai", "--at", "2026-11-25"];
    for fmt in ["parquet", "csv", "jsonl"] {
        let mut args = vec!["export", "--format", fmt, "--out", fmt];
        args.extend(q);
        f.verifier(&args).ok();
    }
    let check = f.verifier(&["check", "--json", "GBNWR2500017"]).ok().stdout;
    let check: serde_json::Value = serde_json::from_str(check.trim()).unwrap();
    let manifest = check["manifest_sha256"].as_str().unwrap();
    for name in ["entries", "prefixes"] {
        let (ch, crows) = csv_rows(&read(&f.path("csv").join(format!("{name}.csv"))));
        let jrows = jsonl_rows(&read(&f.path("jsonl").join(format!("{name}.jsonl"))), &ch);
        let (ph, prows, meta) = parquet_rows(&f.path("parquet").join(format!("{name}.parquet")));
        assert_eq!(ph, ch, "{name}: the same columns");
        assert!(!crows.is_empty(), "{name}");
        assert_eq!(jrows, crows, "{name}: jsonl = csv");
        assert_eq!(prows, crows, "{name}: parquet = csv");

        let fm = meta.file_metadata();
        assert_eq!(fm.created_by(), Some("consentry 0.1.0"));
        let kv: BTreeMap<String, String> = fm
            .key_value_metadata()
            .unwrap()
            .iter()
            .map(|k| (k.key.clone(), k.value.clone().unwrap_or_default()))
            .collect();
        assert_eq!(kv["consentry.export.file"], name);
        assert_eq!(kv["consentry.snapshot.version"], "1");
        assert_eq!(kv["consentry.manifest.sha256"], manifest);
        assert_eq!(kv["consentry.question.use"], "train-genai");
        assert_eq!(kv["consentry.question.territory"], "");
        assert_eq!(kv["consentry.question.at"], "2026-11-25");
        assert_eq!(kv["consentry.expired"], "false");
        let expires = &kv["consentry.expires"];
        assert!(
            expires.starts_with("2026-11-") && expires.ends_with('Z'),
            "{expires}"
        );
        assert!(meta.num_row_groups() >= 1);
        let col = |n: &str| ph.iter().position(|c| c == n).unwrap();
        for rg in meta.row_groups() {
            for c in rg.columns() {
                assert!(
                    matches!(c.compression(), Compression::ZSTD(_)),
                    "{name} {}: {:?}",
                    c.column_path(),
                    c.compression()
                );
            }
            for cat in ["decision", "reason"] {
                assert!(
                    rg.column(col(cat)).dictionary_page_offset().is_some(),
                    "{name} {cat} is dictionary-encoded"
                );
            }
        }
    }
    // The values are the ones check prints: D6 is constrained with terms.
    let (ch, crows) = csv_rows(&read(&f.path("csv").join("entries.csv")));
    let col = |n: &str| ch.iter().position(|c| c == n).unwrap();
    let d6 = crows
        .iter()
        .find(|r| r[col("isrc")] == "DEXY12300001")
        .unwrap();
    assert_eq!(d6[col("decision")], "constrained");
    assert_eq!(d6[col("decided_by")], "D6");
    assert_eq!(d6[col("terms_url")], "https://klang.example/ai-licence-v2");
    assert_eq!(
        d6[col("terms_sha256")],
        "2f0c1b5a7d9e3f41c6a8b2d4e6f80a1c3e5b7d9f1a2c4e6b8d0f2a4c6e8b0d2f"
    );
    let d4 = crows
        .iter()
        .find(|r| r[col("isrc")] == "USQZ92400123")
        .unwrap();
    assert_eq!(
        (
            &d4[col("decision")][..],
            &d4[col("reason")][..],
            &d4[col("decided_by")][..]
        ),
        ("disallow", "conflict", "D3 D4")
    );
    assert_eq!(d4[col("terms_url")], "", "terms only for constrained");
}

#[test]
fn exports_are_byte_identical_and_never_overwrite_without_force() {
    let f = synced();
    for fmt in ["parquet", "csv", "jsonl"] {
        let a = format!("{fmt}-a");
        let b = format!("{fmt}-b");
        let args = |out: &str| {
            vec![
                "export".to_string(),
                "--format".into(),
                fmt.into(),
                "--out".into(),
                out.into(),
                "--at".into(),
                "2026-11-25".into(),
            ]
        };
        let run = |extra: &[&str], out: &str| {
            let mut v: Vec<String> = args(out);
            v.extend(extra.iter().map(|s| (*s).to_string()));
            let v: Vec<&str> = v.iter().map(String::as_str).collect();
            f.verifier(&v)
        };
        run(&[], &a).ok();
        let first = consentry_tests::tree(&f.path(&a));
        assert_eq!(
            first.keys().cloned().collect::<Vec<_>>(),
            [format!("entries.{fmt}"), format!("prefixes.{fmt}")],
            "no temporary file is left"
        );
        // Another run into another directory: the same bytes.
        run(&[], &b).ok();
        assert_eq!(consentry_tests::tree(&f.path(&b)), first, "{fmt}");
        // Into the first again: refused, nothing touched.
        let refused = run(&[], &a).expect_code(2);
        assert!(
            refused.stderr.contains("already exists") && refused.stderr.contains("--force"),
            "{}",
            refused.stderr
        );
        assert!(refused.stderr.contains("hint:"), "{}", refused.stderr);
        assert_eq!(consentry_tests::tree(&f.path(&a)), first);
        // With --force: replaced, by the same bytes.
        let out = run(&["--force", "--json"], &a).ok();
        let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
        assert_eq!(v["entries"]["rows"], exact_isrcs().len());
        assert_eq!(v["snapshot"]["version"], 1);
        assert_eq!(consentry_tests::tree(&f.path(&a)), first);
    }
}

/// The first `error:` line's code.
fn error_code(stderr: &str) -> String {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line in {stderr}"));
    line["error: ".len()..]
        .split(':')
        .next()
        .unwrap()
        .to_string()
}

/// `consentry --store store --now NOW ARGS…`.
fn at_time(f: &Fixture, now: &str, args: &[&str]) -> consentry_tests::Run {
    let mut full = vec!["--store", "store", "--now", now];
    full.extend_from_slice(args);
    consentry_tests::run_bounded("consentry", &full, f.root(), RUN_LIMIT)
}

#[test]
#[allow(clippy::many_single_char_names)]
fn expired_and_tampered_stores_are_refused_with_checks_codes() {
    let f = synced();
    let export = ["export", "--format", "csv", "--out", "out"];
    f.verifier(&export).ok();
    let good = consentry_tests::tree(&f.path("out"));

    // Expired: the code of check; with --allow-expired, every row says so.
    let later = "2026-12-31T00:00:00Z";
    let c = at_time(&f, later, &["check", "GBNWR2500017"]).expect_code(2);
    let e = at_time(&f, later, &["export", "--format", "csv", "--out", "late"]).expect_code(2);
    assert_eq!(error_code(&e.stderr), "expired", "{}", e.stderr);
    assert_eq!(error_code(&e.stderr), error_code(&c.stderr));
    assert!(!f.path("late").exists(), "nothing written");
    at_time(
        &f,
        later,
        &[
            "--allow-expired",
            "export",
            "--format",
            "csv",
            "--out",
            "late",
            "--at",
            "2026-11-25",
        ],
    )
    .ok();
    let (h, rows) = csv_rows(&read(&f.path("late").join("entries.csv")));
    let col = h.iter().position(|c| c == "expired").unwrap();
    assert!(rows.iter().all(|r| r[col] == "true"), "{rows:?}");

    // A damaged local index: answered from verified files, the same bytes.
    let idx = std::fs::read_dir(f.path("store/local/index"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "idx"))
        .unwrap();
    let mut b = std::fs::read(&idx).unwrap();
    let n = b.len() - 3;
    b[n] ^= 1;
    std::fs::write(&idx, &b).unwrap();
    let out = f
        .verifier(&["export", "--format", "csv", "--out", "out", "--force"])
        .ok();
    assert!(out.stderr.contains("corrupt"), "{}", out.stderr);
    assert_eq!(consentry_tests::tree(&f.path("out")), good);

    // A damaged shard (and no index to hide it): refused like check.
    std::fs::remove_file(&idx).unwrap();
    let shard = std::fs::read_dir(f.path("store/shard"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .next()
        .unwrap();
    let mut s = std::fs::read(&shard).unwrap();
    let n = s.len() / 2;
    s[n] ^= 0x20;
    std::fs::write(&shard, &s).unwrap();
    let c = f.verifier(&["check", "GBNWR2500017"]).expect_code(2);
    let e = f
        .verifier(&["export", "--format", "csv", "--out", "out2"])
        .expect_code(2);
    assert_eq!(error_code(&e.stderr), error_code(&c.stderr), "{}", e.stderr);
    assert!(e.stderr.contains("hint:"), "{}", e.stderr);
    assert!(!f.path("out2").join("entries.csv").exists());

    // A forged head: refused before anything is read.
    let mut head = std::fs::read(f.path("store/head.cbor")).unwrap();
    let n = head.len() - 5;
    head[n] ^= 1;
    std::fs::write(f.path("store/head.cbor"), &head).unwrap();
    let c = f.verifier(&["check", "GBNWR2500017"]).expect_code(2);
    let e = f
        .verifier(&["export", "--format", "parquet", "--out", "out3"])
        .expect_code(2);
    assert_eq!(error_code(&e.stderr), error_code(&c.stderr), "{}", e.stderr);
    assert!(!f.path("out3").exists());
}
