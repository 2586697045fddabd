//! Import declarations from CSV and JSONL files: all or nothing.
//!
//! Every file and row is read and checked first; problems are collected across
//! all of them (`file:line:field: message`) and, if there is any, nothing is
//! written. Otherwise the new declarations and status changes are written in one
//! transaction (the registry [`Backend`] keeps the live set equal to
//! [`consentry::declaration::resolve`] of all declarations).
//!
//! Re-importing a declaration that is already recorded with the same content is
//! a no-op ("unchanged"); one whose only difference is its `status` is an
//! update; any other difference is an error, because declarations are
//! immutable.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::PathBuf;

use consentry::declaration::{Declaration, check_relations};

use crate::db::Batch;
use crate::registry::{self, Backend};

/// Longest line (or CSV row) accepted, in bytes.
pub const MAX_LINE: usize = 1 << 20;

/// How many problems an [`ImportError`] lists; the rest are counted.
pub const MAX_PROBLEMS: usize = 100;

/// Slack for the CSV reader's read-ahead when bounding one row's size.
const READ_AHEAD: u64 = 64 * 1024;

/// How to import.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportOptions {
    /// `recorded_at` for the new declarations (Unix seconds): the caller's
    /// clock (the library never reads one).
    pub recorded_at: i64,
}

/// What an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// New declarations recorded.
    pub added: usize,
    /// Rows already recorded with the same content (skipped).
    pub unchanged: usize,
    /// Recorded declarations whose status changed.
    pub updated: usize,
    /// Files read.
    pub files: usize,
    /// Data rows read (header and blank lines not counted).
    pub rows: usize,
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "imported {} from {} ({} unchanged, {} updated)",
            plural(self.added, "declaration", "declarations"),
            plural(self.files, "file", "files"),
            self.unchanged,
            self.updated
        )
    }
}

/// One problem with the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file as it was named.
    pub file: String,
    /// 1-based physical line, when the problem has one.
    pub line: Option<u64>,
    /// Column (CSV) or field (JSONL; nested as `declarant.name`); `(line)`,
    /// `(row)` or `(header)` for the whole line.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ":{field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Why nothing was imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The input has problems; the first [`MAX_PROBLEMS`] are listed.
    Invalid {
        problems: Vec<Problem>,
        /// Problems found beyond those listed.
        more: usize,
    },
    /// The database failed (nothing was written).
    Database(#[source] anyhow::Error),
}

impl ImportError {
    /// The listed problems (empty for a database error).
    pub fn problems(&self) -> &[Problem] {
        match self {
            ImportError::Invalid { problems, .. } => problems,
            ImportError::Database(_) => &[],
        }
    }
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportError::Invalid { problems, more } => {
                for p in problems {
                    writeln!(f, "{p}")?;
                }
                if *more > 0 {
                    writeln!(f, "… and {more} more problems")?;
                }
                let total = problems.len() + more;
                write!(
                    f,
                    "{}; nothing was imported",
                    plural(total, "problem", "problems")
                )
            }
            ImportError::Database(e) => {
                write!(f, "registry database error: {e:#}\nnothing was imported")
            }
        }
    }
}

impl From<anyhow::Error> for ImportError {
    fn from(e: anyhow::Error) -> Self {
        ImportError::Database(e)
    }
}

/// Problems collected so far: the first [`MAX_PROBLEMS`] kept, all counted.
mod read;

#[cfg(feature = "fuzzing")]
pub(crate) use read::read_bytes;
pub use read::{Format, ImportInput, InputSource};
use read::{Input, Loc, Problems, read_inputs};

/// Names of the stored fields in which two versions of a declaration differ.
fn differences(a: &Declaration, b: &Declaration) -> Vec<&'static str> {
    let (p, q) = (&a.policy, &b.policy);
    [
        ("seq", a.seq != b.seq),
        ("action", a.action != b.action),
        ("supersedes", a.supersedes != b.supersedes),
        ("scope", a.scope != b.scope),
        ("declared_at", a.declared_at != b.declared_at),
        ("declarant", p.declarant != q.declarant),
        ("preferences", p.uses != q.uses),
        ("policy", p.terms != q.terms),
        (
            "territories",
            p.include != q.include || p.exclude != q.exclude,
        ),
        ("valid_from", p.from != q.from),
        ("valid_until", p.until != q.until),
        ("status", p.status != q.status),
    ]
    .into_iter()
    .filter_map(|(name, differs)| differs.then_some(name))
    .collect()
}

/// Check the rows against each other and against the registry; build the
/// batch to write.
fn plan(
    db: &dyn Backend,
    input: &mut Input,
    recorded_at: i64,
) -> anyhow::Result<(Batch, ImportReport)> {
    let mut report = ImportReport {
        files: input.names.len(),
        rows: input.rows,
        ..ImportReport::default()
    };
    let decls = std::mem::take(&mut input.decls);

    // Duplicate ids inside the import: blame every occurrence.
    let mut seen: HashMap<&str, Vec<Loc>> = HashMap::new();
    for (loc, d) in &decls {
        seen.entry(d.id.as_str()).or_default().push(*loc);
    }
    let mut dup: HashSet<String> = HashSet::new();
    for (loc, d) in &decls {
        let locs = &seen[d.id.as_str()];
        if locs.len() < 2 {
            continue;
        }
        dup.insert(d.id.clone());
        let mut others: Vec<String> = locs
            .iter()
            .filter(|l| *l != loc)
            .take(3)
            .map(|l| format!("{}:{}", input.names[l.file], l.line))
            .collect();
        if locs.len() > 4 {
            others.push(format!("{} more", locs.len() - 4));
        }
        input.problem(
            loc.file,
            Some(loc.line),
            "declaration_id",
            format!(
                "{} appears more than once in this import (also at {}); ids are unique",
                d.id,
                others.join(", ")
            ),
        );
    }
    drop(seen);
    input.failed.extend(dup.iter().cloned());

    // Against the registry: unchanged, status update, new, or a conflict.
    let max_seq = db.max_seq()?;
    let mut where_is: HashMap<String, Loc> = HashMap::new();
    let mut known: Vec<Declaration> = Vec::new(); // recorded, in the import
    let mut adds: Vec<(Loc, Declaration)> = Vec::new();
    let mut updates: Vec<Declaration> = Vec::new();
    // One read for all the ids (one round trip to a server database).
    let mut recorded = {
        let ids: Vec<&str> = decls
            .iter()
            .map(|(_, d)| d.id.as_str())
            .filter(|id| !dup.contains(*id))
            .collect();
        db.declarations(&ids)?
    };
    for (loc, d) in decls {
        if dup.contains(d.id.as_str()) {
            continue;
        }
        if i64::try_from(d.seq).is_err() {
            input.problem(
                loc.file,
                Some(loc.line),
                "seq",
                format!(
                    "{} is too large; the largest seq accepted is {}",
                    d.seq,
                    i64::MAX
                ),
            );
            input.failed.insert(d.id.clone());
            continue;
        }
        match recorded.remove(&d.id) {
            Some(old) if old == d => {
                report.unchanged += 1;
                where_is.insert(d.id.clone(), loc);
                known.push(d);
            }
            Some(old) => {
                let diff = differences(&old, &d);
                if diff == ["status"] {
                    report.updated += 1;
                    where_is.insert(d.id.clone(), loc);
                    updates.push(d.clone());
                    known.push(d);
                } else {
                    input.problem(
                        loc.file,
                        Some(loc.line),
                        "declaration_id",
                        format!(
                            "declaration {} already exists with different content ({} differ); \
                             declarations are immutable: publish a new declaration that \
                             supersedes it",
                            d.id,
                            diff.join(", ")
                        ),
                    );
                    input.failed.insert(d.id.clone());
                }
            }
            None => {
                if d.seq <= max_seq {
                    input.problem(
                        loc.file,
                        Some(loc.line),
                        "seq",
                        format!(
                            "{} is not greater than {max_seq}, the largest seq already in the \
                             registry; sequence numbers only grow: give new declarations seq {} \
                             or more",
                            d.seq,
                            max_seq + 1
                        ),
                    );
                }
                adds.push((loc, d));
            }
        }
    }
    adds.sort_by_key(|(_, d)| d.seq);

    // Relations (SPEC.md §3.3) over the new and changed declarations and the
    // recorded ones they touch: the ones they supersede and whatever else
    // supersedes those. That is what `check_relations` over the whole registry
    // would look at for them, without loading the whole registry.
    let mut rel: Vec<Declaration> = Vec::new();
    let mut in_rel: HashSet<String> = HashSet::new();
    let import_ids: HashSet<String> = known
        .iter()
        .chain(adds.iter().map(|(_, d)| d))
        .map(|d| d.id.clone())
        .collect();
    let targets: Vec<String> = known
        .iter()
        .chain(adds.iter().map(|(_, d)| d))
        .filter_map(|d| d.supersedes.clone())
        .collect();
    for t in &targets {
        let mut recorded = db.superseding(t)?;
        if !import_ids.contains(t)
            && let Some(target) = db.declaration(t)?
        {
            recorded.insert(0, target);
        }
        for d in recorded {
            if !import_ids.contains(&d.id) && in_rel.insert(d.id.clone()) {
                rel.push(d);
            }
        }
    }
    rel.sort_by_key(|d| d.seq);
    for d in known {
        if in_rel.insert(d.id.clone()) {
            rel.push(d);
        }
    }
    let mut checked_adds = Vec::new();
    for (loc, d) in &adds {
        // A row that relates to a row with its own errors cannot be judged;
        // the other row's errors are reported.
        if d.supersedes
            .as_deref()
            .is_some_and(|t| input.failed.contains(t))
        {
            input.failed.insert(d.id.clone());
            continue;
        }
        where_is.insert(d.id.clone(), *loc);
        checked_adds.push(d.clone());
    }
    rel.extend(checked_adds);
    for (id, message) in check_relations(&rel) {
        let (field, message) = message
            .split_once(": ")
            .map_or((String::new(), message.clone()), |(f, m)| {
                (f.to_string(), m.to_string())
            });
        // Problems are charged to the later declaration of a pair, and the
        // recorded ones come first: a problem of a recorded declaration is
        // about its own relations, which were checked when it was imported
        // and may only look broken here because its own target was not
        // loaded.
        if let Some(loc) = where_is.get(&id) {
            input.problem(loc.file, Some(loc.line), &field, message);
        }
    }

    report.added = adds.len();
    let batch = Batch {
        adds: adds.into_iter().map(|(_, d)| d).collect(),
        status_updates: updates,
        recorded_at,
    };
    Ok((batch, report))
}

/// Import `files` into `db`: every row is checked first, and either all of
/// them are recorded (in one transaction) or none is. Each file's name says
/// its format (and compression); see [`import_inputs`].
pub fn import_files(
    db: &mut dyn Backend,
    files: &[PathBuf],
    opts: &ImportOptions,
) -> Result<ImportReport, ImportError> {
    let inputs: Vec<ImportInput> = files.iter().map(ImportInput::file).collect();
    import_inputs(db, &inputs, opts, &crate::progress::Silent)
}

/// Import files or standard input (CSV or JSONL, plain, gzip or zstd) into
/// `db`, all or nothing, reporting the bytes read to `progress`.
pub fn import_inputs(
    db: &mut dyn Backend,
    inputs: &[ImportInput],
    opts: &ImportOptions,
    progress: &dyn crate::progress::Progress,
) -> Result<ImportReport, ImportError> {
    let recorded_at = opts.recorded_at;
    let mut input = read_inputs(inputs, progress);
    registry::write_transaction(db, |db| {
        let (batch, report) = plan(db, &mut input, recorded_at)?;
        if input.problems.total > 0 {
            let Problems { list, total } = std::mem::take(&mut input.problems);
            return Err(ImportError::Invalid {
                more: total - list.len(),
                problems: list,
            });
        }
        if !batch.adds.is_empty() || !batch.status_updates.is_empty() {
            registry::apply(db, &batch)?;
        }
        Ok(report)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::db::Db;
    use crate::source::Source;
    use consentry::declaration::{COLUMNS, resolve};

    const T0: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

    fn data(name: &str) -> PathBuf {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/")).join(name)
    }

    fn opts(t: i64) -> ImportOptions {
        ImportOptions { recorded_at: t }
    }

    /// A registry holding the example data, in a temporary directory.
    struct Fixture {
        dir: tempfile::TempDir,
        path: PathBuf,
        db: Db,
    }

    impl Fixture {
        fn empty() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("registry.db");
            let db = Db::create(&path).unwrap();
            Fixture { dir, path, db }
        }

        fn loaded() -> Fixture {
            let mut f = Fixture::empty();
            let r = import_files(&mut f.db, &[data("declarations.csv")], &opts(T0)).unwrap();
            assert_eq!(r.added, 16);
            f
        }

        fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
            let p = self.dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            p
        }

        fn import(&mut self, files: &[PathBuf]) -> Result<ImportReport, ImportError> {
            import_files(&mut self.db, files, &opts(T0 + 3600))
        }

        /// Import, expecting a refusal that changes nothing; the messages.
        fn rejected(&mut self, files: &[PathBuf]) -> Vec<String> {
            let dump = self.db.dump();
            let bytes = std::fs::read(&self.path).unwrap();
            let err = match self.import(files) {
                Ok(r) => panic!("import was accepted: {r}"),
                Err(e) => e,
            };
            assert_eq!(self.db.dump(), dump, "the database content changed");
            assert_eq!(
                std::fs::read(&self.path).unwrap(),
                bytes,
                "the file changed"
            );
            let text = err.to_string();
            assert!(
                text.ends_with("nothing was imported"),
                "last line must say so: {text}"
            );
            err.problems().iter().map(ToString::to_string).collect()
        }
    }

    fn assert_live_is_resolve(db: &Db) {
        let all = db.all_declarations().unwrap();
        let mut live = db.live_prefixes().unwrap();
        live.extend(db.live_exact_records().unwrap());
        live.sort_by(|a, b| {
            (a.scope.key_range().0, a.scope, a.seq).cmp(&(b.scope.key_range().0, b.scope, b.seq))
        });
        assert_eq!(live, resolve(&all));
    }

    /// A valid CSV row (id X1, seq 101 unless overridden).
    fn csv_row(overrides: &[(&str, &str)]) -> String {
        let base = [
            ("declaration_id", "X1"),
            ("seq", "101"),
            ("action", "declare"),
            ("scope", "GBNWR2600001"),
            ("declarant_name", "Northwind Records"),
            ("declarant_id", "ddex:PADPIDA2014021201U"),
            ("declarant_role", "label"),
            ("train-ai", "n"),
            ("declared_at", "2026-01-01T00:00:00Z"),
            ("status", "active"),
        ];
        COLUMNS
            .iter()
            .map(|c| {
                overrides
                    .iter()
                    .chain(base.iter())
                    .find(|(k, _)| k == c)
                    .map_or("", |(_, v)| *v)
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    fn csv(rows: &[String]) -> String {
        let mut s = COLUMNS.join(",") + "\n";
        for r in rows {
            s.push_str(r);
            s.push('\n');
        }
        s
    }

    fn json_row(id: &str, seq: u64) -> serde_json::Value {
        serde_json::json!({
            "declaration_id": id,
            "seq": seq,
            "action": "declare",
            "scope": "GBNWR2600001",
            "declarant": {"name": "Northwind Records", "id": "ddex:PADPIDA2014021201U", "role": "label"},
            "preferences": {"train-ai": "n"},
            "territories": {"include": ["WW"]},
            "declared_at": "2026-01-01T00:00:00Z",
            "status": "active"
        })
    }

    fn has(messages: &[String], needle: &str) -> bool {
        messages.iter().any(|m| m.contains(needle))
    }

    #[track_caller]
    fn assert_has(messages: &[String], needles: &[&str]) {
        for n in needles {
            assert!(has(messages, n), "no message contains {n:?}: {messages:#?}");
        }
    }

    #[test]
    fn csv_then_jsonl_of_the_same_data_is_all_unchanged() {
        let mut f = Fixture::loaded();
        assert_live_is_resolve(&f.db);
        let dump = f.db.dump();
        let r = f.import(&[data("declarations.jsonl")]).unwrap();
        assert_eq!(
            r,
            ImportReport {
                added: 0,
                unchanged: 16,
                updated: 0,
                files: 1,
                rows: 16
            }
        );
        assert_eq!(
            r.to_string(),
            "imported 0 declarations from 1 file (16 unchanged, 0 updated)"
        );
        assert_eq!(f.db.dump(), dump);
        // And the other way round, from scratch.
        let mut g = Fixture::empty();
        let r = g.import(&[data("declarations.jsonl")]).unwrap();
        assert_eq!(
            r.to_string(),
            "imported 16 declarations from 1 file (0 unchanged, 0 updated)"
        );
        assert_eq!(
            g.db.all_declarations().unwrap(),
            f.db.all_declarations().unwrap()
        );
        assert_live_is_resolve(&g.db);
    }

    #[test]
    fn one_import_of_both_formats_rejects_every_id_twice() {
        let mut f = Fixture::empty();
        let m = f.rejected(&[data("declarations.csv"), data("declarations.jsonl")]);
        assert_eq!(m.len(), 32, "{m:#?}");
        assert_has(
            &m,
            &[
                "declarations.csv:2:declaration_id: D1 appears more than once in this import (also at ",
                "declarations.jsonl:1:declaration_id: D1 appears more than once",
            ],
        );
    }

    #[test]
    fn bad_rows_are_reported_with_file_line_and_field_and_nothing_is_imported() {
        let ten_mb = "a".repeat(10 << 20);
        let good = csv_row(&[]);
        let cases: Vec<(&str, &str, Vec<u8>, Vec<&str>)> = vec![
            (
                "bad ISRC",
                "bad.csv",
                csv(&[csv_row(&[("scope", "GBNWR26000X1")])]).into(),
                vec!["bad.csv:2:scope: \"GBNWR26000X1\": character 11"],
            ),
            (
                "unknown use letter",
                "bad.csv",
                csv(&[csv_row(&[("all", "x")])]).into(),
                vec!["bad.csv:2:all: \"x\" is not a preference"],
            ),
            (
                "bad territory",
                "bad.csv",
                csv(&[csv_row(&[("territories_include", "FR XX")])]).into(),
                vec!["bad.csv:2:territories_include: \"XX\" is not an ISO 3166-1"],
            ),
            (
                "valid_until before valid_from",
                "bad.csv",
                csv(&[csv_row(&[
                    ("valid_from", "2026-05-01"),
                    ("valid_until", "2026-04-30"),
                ])])
                .into(),
                vec!["bad.csv:2:valid_until: is before valid_from"],
            ),
            (
                "duplicate ids",
                "bad.csv",
                csv(&[good.clone(), csv_row(&[("seq", "102")])]).into(),
                vec![
                    "bad.csv:2:declaration_id: X1 appears more than once in this import (also at ",
                    "bad.csv:3:declaration_id: X1 appears more than once",
                ],
            ),
            (
                "non-UTF-8 CSV field",
                "bad.csv",
                [
                    csv(std::slice::from_ref(&good)).as_bytes(),
                    csv_row(&[("declaration_id", "X2"), ("seq", "102")])
                        .replace("Northwind", "Caf\u{1}")
                        .as_bytes(),
                ]
                .concat()
                .into_iter()
                .map(|b| if b == 1 { 0xE9 } else { b })
                .collect(),
                vec!["bad.csv:3:declarant_name: is not valid UTF-8; save the file as UTF-8"],
            ),
            (
                "non-UTF-8 JSONL line",
                "bad.jsonl",
                b"{\"declaration_id\": \"X1\xff\"}\n".to_vec(),
                vec!["bad.jsonl:1:(line): is not valid UTF-8; save the file as UTF-8"],
            ),
            (
                "10 MB CSV line",
                "bad.csv",
                csv(&[good.clone(), ten_mb.clone()]).into(),
                vec!["bad.csv:3:(line): is longer than 1048576 bytes (1 MiB)"],
            ),
            (
                "10 MB JSONL line, and reading goes on after it",
                "bad.jsonl",
                format!("{}\n{ten_mb}\n{{\n", json_row("X1", 101)).into(),
                vec![
                    "bad.jsonl:2:(line): is 10485760 bytes long; a line may be at most 1048576",
                    "bad.jsonl:3:(line): is not valid JSON",
                ],
            ),
            (
                "a quote left open",
                "bad.csv",
                format!(
                    "{}\nX2,102,declare,,\"GBNWR2600002{}",
                    csv(std::slice::from_ref(&good)),
                    "\n0123456789".repeat(200_000)
                )
                .into(),
                vec!["bad.csv:3:(row): the row starting here is longer than 1048576 bytes"],
            ),
            (
                "UTF-16 CSV (a spreadsheet's \"Unicode text\")",
                "bad.csv",
                [0xFF, 0xFE]
                    .into_iter()
                    .chain(
                        csv(std::slice::from_ref(&good))
                            .encode_utf16()
                            .flat_map(u16::to_le_bytes),
                    )
                    .collect(),
                vec!["bad.csv:1:(header): is not valid UTF-8; save the file as UTF-8"],
            ),
            (
                "semicolon-separated CSV",
                "bad.csv",
                csv(std::slice::from_ref(&good)).replace(',', ";").into(),
                vec!["(separate columns with commas, not semicolons or tabs)"],
            ),
            (
                "unknown column",
                "bad.csv",
                format!("{},colour\n{good},blue\n", COLUMNS.join(",")).into(),
                vec!["bad.csv:1:colour: unknown column \"colour\"; the columns are declaration_id"],
            ),
            (
                "missing required column",
                "bad.csv",
                "declaration_id,scope\nX1,GBNWR2600001\n".into(),
                vec![
                    "bad.csv:1:seq: required column is missing",
                    "bad.csv:1:declared_at: required column is missing",
                ],
            ),
            (
                "wrong field count",
                "bad.csv",
                csv(&["X1,101,declare".into()]).into(),
                vec!["bad.csv:2:(row): has 3 fields; the header has 21 columns"],
            ),
            (
                "empty CSV",
                "bad.csv",
                Vec::new(),
                vec!["bad.csv:1:(header): the file is empty"],
            ),
            (
                "not JSON",
                "bad.jsonl",
                b"{\"declaration_id\": \"X1\",\n".to_vec(),
                vec![
                    "bad.jsonl:1:(line): is not valid JSON: EOF while parsing a value (column 24)",
                ],
            ),
            (
                "not an object",
                "bad.ndjson",
                b"\n\n[1, 2]\n".to_vec(),
                vec!["bad.ndjson:3:(line): must be a JSON object"],
            ),
            (
                "JSONL problems use the JSON field names",
                "bad.jsonl",
                {
                    let mut v = json_row("X1", 101);
                    v["declarant"]["role"] = "boss".into();
                    v["preferences"]["all"] = "maybe".into();
                    v["colour"] = "blue".into();
                    v["territories"] = serde_json::json!({"include": "WW"});
                    format!("{v}\n").into()
                },
                vec!["bad.jsonl:1:territories.include: must be an array of codes"],
            ),
            (
                "JSONL field errors after flattening",
                "bad.jsonl",
                {
                    let mut v = json_row("X1", 101);
                    v["declarant"]["role"] = "boss".into();
                    v["preferences"]["all"] = "maybe".into();
                    v["colour"] = "blue".into();
                    format!("{v}\n").into()
                },
                vec![
                    "bad.jsonl:1:declarant.role: \"boss\" is not one of",
                    "bad.jsonl:1:preferences.all: \"maybe\" is not a preference",
                    "bad.jsonl:1:colour: unknown field \"colour\"",
                ],
            ),
            (
                "supersedes nothing",
                "bad.csv",
                csv(&[csv_row(&[("supersedes", "NOPE")])]).into(),
                vec!["bad.csv:2:supersedes: no declaration \"NOPE\" exists"],
            ),
            (
                "supersedes another declarant's declaration",
                "bad.csv",
                csv(&[csv_row(&[("supersedes", "D4")])]).into(),
                vec!["bad.csv:2:supersedes: D4 belongs to another declarant"],
            ),
            (
                "supersedes what is already superseded",
                "bad.csv",
                csv(&[csv_row(&[("supersedes", "D13")])]).into(),
                vec!["bad.csv:2:supersedes: D13 is already superseded by D14"],
            ),
            (
                "replaces a revocation",
                "bad.csv",
                csv(&[csv_row(&[
                    ("supersedes", "D10"),
                    ("declarant_name", "Sakura Music"),
                    ("declarant_id", "ddex:PADPIDA2020020202S"),
                ])])
                .into(),
                vec!["bad.csv:2:supersedes: D10 is a revocation and cannot be replaced"],
            ),
            (
                "revokes with another scope",
                "bad.csv",
                csv(&[csv_row(&[
                    ("action", "revoke"),
                    ("supersedes", "D2"),
                    ("train-ai", ""),
                ])])
                .into(),
                vec!["bad.csv:2:scope: a revocation must have the scope of D2 (GBNWR2500017)"],
            ),
            (
                "two new declarations supersede the same one",
                "bad.csv",
                csv(&[
                    csv_row(&[("supersedes", "D2")]),
                    csv_row(&[
                        ("declaration_id", "X2"),
                        ("seq", "102"),
                        ("supersedes", "D2"),
                    ]),
                ])
                .into(),
                vec!["bad.csv:3:supersedes: D2 is already superseded by X1"],
            ),
            (
                "two new declarations share a seq",
                "bad.csv",
                csv(&[good.clone(), csv_row(&[("declaration_id", "X2")])]).into(),
                vec!["bad.csv:3:seq: 101 is also the seq of X1"],
            ),
            (
                "seq does not grow",
                "bad.csv",
                csv(&[csv_row(&[("seq", "16")])]).into(),
                vec![
                    "bad.csv:2:seq: 16 is not greater than 16, the largest seq already in the registry; sequence numbers only grow",
                ],
            ),
            (
                "seq beyond SQLite's integers",
                "bad.csv",
                csv(&[csv_row(&[("seq", "18446744073709551615")])]).into(),
                vec!["bad.csv:2:seq: 18446744073709551615 is too large"],
            ),
            (
                "a recorded declaration with other content",
                "bad.csv",
                std::fs::read_to_string(data("declarations.csv"))
                    .unwrap()
                    .replace(
                        "D5,5,declare,,FR-AB1,Label Bleu,ddex:PADPIDA2011050918B,rights_owner,n",
                        "D5,5,declare,,FR-AB1,Label Bleu,ddex:PADPIDA2011050918B,rights_owner,y",
                    )
                    .into(),
                vec![
                    "bad.csv:6:declaration_id: declaration D5 already exists with different content (preferences differ); declarations are immutable: publish a new declaration that supersedes it",
                ],
            ),
            (
                "unknown file type",
                "bad.txt",
                csv(std::slice::from_ref(&good)).into(),
                vec!["bad.txt: unknown file type; name import files *.csv, *.jsonl or *.ndjson"],
            ),
        ];
        let mut f = Fixture::loaded();
        for (what, name, bytes, expected) in cases {
            let path = f.write(name, &bytes);
            let messages = f.rejected(std::slice::from_ref(&path));
            for e in &expected {
                assert!(
                    has(&messages, e),
                    "{what}: no message contains {e:?}: {messages:#?}"
                );
            }
            std::fs::remove_file(path).unwrap();
        }
        let missing = f.dir.path().join("missing.csv");
        assert_has(&f.rejected(&[missing]), &["missing.csv: cannot be read: "]);
        assert_live_is_resolve(&f.db);
    }

    #[test]
    fn a_row_relating_to_a_broken_row_is_not_blamed_for_it() {
        let mut f = Fixture::loaded();
        let path = f.write(
            "bad.csv",
            csv(&[
                csv_row(&[("scope", "nonsense")]),
                csv_row(&[
                    ("declaration_id", "X2"),
                    ("seq", "102"),
                    ("supersedes", "X1"),
                ]),
            ]),
        );
        let m = f.rejected(&[path]);
        assert_eq!(m.len(), 1, "{m:#?}");
        assert_has(&m, &["bad.csv:2:scope: "]);
    }

    #[test]
    fn problems_are_collected_across_files_and_capped_at_a_hundred() {
        let mut f = Fixture::loaded();
        let a = f.write("a.csv", csv(&[csv_row(&[("all", "x")])]));
        let b = f.write("b.jsonl", "{}\n");
        let m = f.rejected(&[a.clone(), b]);
        assert_has(
            &m,
            &[
                "a.csv:2:all: ",
                "b.jsonl:1:declaration_id: is required and empty",
            ],
        );

        let rows: Vec<String> = (0..150)
            .map(|i| {
                csv_row(&[
                    ("declaration_id", &format!("Y{i}")),
                    ("seq", &(200 + i).to_string()),
                    ("scope", "bad"),
                ])
            })
            .collect();
        let many = f.write("many.csv", csv(&rows));
        let err = f.import(&[many, a]).unwrap_err();
        let text = err.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), MAX_PROBLEMS + 2, "{text}");
        assert!(lines[0].contains("many.csv:2:scope: "), "{text}");
        assert_eq!(lines[MAX_PROBLEMS], "… and 51 more problems");
        assert_eq!(
            lines[MAX_PROBLEMS + 1],
            "151 problems; nothing was imported"
        );
    }

    #[test]
    fn a_status_only_change_is_an_update() {
        let mut f = Fixture::loaded();
        let before = f.db.last_change().unwrap();
        let text = std::fs::read_to_string(data("declarations.csv"))
            .unwrap()
            .replace(
                "2025-02-10T12:30:00Z,active",
                "2025-02-10T12:30:00Z,disputed",
            )
            // D9 is revoked: its status changes, nothing is published.
            .replace(
                "2025-05-01T03:00:00Z,active",
                "2025-05-01T03:00:00Z,disputed",
            );
        let path = f.write("status.csv", text);
        let r = f.import(std::slice::from_ref(&path)).unwrap();
        assert_eq!((r.added, r.unchanged, r.updated), (0, 14, 2));
        assert_eq!(
            r.to_string(),
            "imported 0 declarations from 1 file (14 unchanged, 2 updated)"
        );
        assert_eq!(f.db.change_kinds()[before as usize..], ["update:D2"]);
        let d2 = f.db.declaration("D2").unwrap().unwrap();
        assert!(d2.policy.is_disputed());
        let status: String =
            f.db.connection()
                .query_row("SELECT status FROM declarations WHERE id = 'D9'", [], |r| {
                    r.get(0)
                })
                .unwrap();
        assert_eq!(status, "disputed");
        let after = f.db.last_change().unwrap();
        let changes = f.db.exact_changes(before, after).unwrap();
        assert_eq!(changes.len(), 1);
        assert!(changes[0].existed_before && changes[0].exists_after);
        assert_eq!(f.db.registry_time().unwrap(), T0 + 3600);
        assert_live_is_resolve(&f.db);
        // Importing the same again changes nothing.
        let r = f.import(&[path]).unwrap();
        assert_eq!((r.added, r.unchanged, r.updated), (0, 16, 0));
    }

    #[test]
    fn bom_crlf_and_upper_case_extensions_are_accepted() {
        let mut plain = Fixture::empty();
        plain.import(&[data("declarations.csv")]).unwrap();
        let csv_text = std::fs::read_to_string(data("declarations.csv")).unwrap();
        let jsonl_text = std::fs::read_to_string(data("declarations.jsonl")).unwrap();
        for (name, text) in [("bom.CSV", csv_text), ("bom.JSONL", jsonl_text)] {
            let mut f = Fixture::empty();
            let bytes = format!("\u{feff}{}", text.replace('\n', "\r\n"));
            let path = f.write(name, bytes);
            let r = f.import(&[path]).unwrap();
            assert_eq!((r.added, r.rows), (16, 16), "{name}");
            assert_eq!(
                f.db.all_declarations().unwrap(),
                plain.db.all_declarations().unwrap(),
                "{name}"
            );
        }
    }

    #[test]
    fn header_only_csv_and_empty_jsonl_import_nothing() {
        let mut f = Fixture::loaded();
        let dump = f.db.dump();
        let header = f.write("header.csv", format!("{}\r\n", COLUMNS.join(",")));
        let empty = f.write("empty.jsonl", "");
        let blank = f.write("blank.ndjson", "\n  \n\r\n");
        let r = f.import(&[header, empty, blank]).unwrap();
        assert_eq!(
            r,
            ImportReport {
                files: 3,
                ..ImportReport::default()
            }
        );
        assert_eq!(
            r.to_string(),
            "imported 0 declarations from 3 files (0 unchanged, 0 updated)"
        );
        assert_eq!(f.db.dump(), dump);
        assert_eq!(f.import(&[]).unwrap(), ImportReport::default());
    }

    #[test]
    fn a_csv_with_only_some_optional_columns_and_quoted_fields_imports() {
        let mut f = Fixture::loaded();
        let text = "declaration_id,seq,scope,declarant_name,declarant_id,declarant_role,train-genai,declared_at,action\n\
                    X1,101,gb-nwr-26,\"Northwind Records, Ltd\",ddex:PADPIDA2014021201U,label,n,2026-01-01T00:00:00Z,declare\n\
                    X2,102,GB-NWR-26-00007,\"Northwind \"\"North\"\" Records\",ddex:PADPIDA2014021201U,label,y,2026-01-01T00:00:00Z,declare\n";
        // A field spanning lines: the row is reported at its first line and
        // the rows after it at theirs.
        let broken = text.replace("Northwind Records, Ltd", "Northwind\nRecords")
            + "X3,103,GB-NWR-26-00008,N,ddex:PADPIDA2014021201U,label,y,2026-01-01T00:00:00Z,revise\n";
        let path = f.write("broken.csv", broken);
        let m = f.rejected(&[path]);
        assert_has(
            &m,
            &[
                "broken.csv:2:declarant_name: holds the control character U+000A",
                "broken.csv:5:action: \"revise\" is not declare or revoke",
            ],
        );
        assert_eq!(m.len(), 2, "{m:#?}");
        let path = f.write("some.csv", text);
        let r = f.import(&[path]).unwrap();
        assert_eq!((r.added, r.rows), (2, 2));
        let x2 = f.db.declaration("X2").unwrap().unwrap();
        assert_eq!(x2.policy.declarant.name, "Northwind \"North\" Records");
        assert_eq!(x2.scope.canonical(), "GBNWR2600007");
        let x1 = f.db.declaration("X1").unwrap().unwrap();
        assert_eq!(x1.scope.canonical(), "GB-NWR-26");
        assert_eq!(x1.policy.declarant.name, "Northwind Records, Ltd");
        assert_live_is_resolve(&f.db);
    }

    #[test]
    fn replacing_and_revoking_recorded_declarations_updates_the_live_set() {
        let mut f = Fixture::loaded();
        let before = f.db.last_change().unwrap();
        let path = f.write(
            "next.csv",
            csv(&[
                csv_row(&[
                    ("supersedes", "D2"),
                    ("scope", "GBNWR2500017"),
                    ("seq", "17"),
                ]),
                csv_row(&[
                    ("declaration_id", "X2"),
                    ("seq", "18"),
                    ("action", "revoke"),
                    ("supersedes", "D1"),
                    ("scope", "GB-NWR"),
                    ("train-ai", ""),
                ]),
            ]),
        );
        let r = f.import(&[path]).unwrap();
        assert_eq!(r.added, 2);
        assert_eq!(
            f.db.change_kinds()[before as usize..],
            ["insert:X1", "delete:D2", "insert:X2", "delete:D1"]
        );
        assert_live_is_resolve(&f.db);
        assert!(
            f.db.prefixes_changed(before, f.db.last_change().unwrap())
                .unwrap()
        );
    }

    /// Mutated example files must give an answer or a list of problems, never a
    /// panic, and a refusal must leave the database as it was.
    #[test]
    fn mutated_input_never_panics_and_refusals_change_nothing() {
        let mut f = Fixture::empty();
        let mut rng = crate::generate::Rng::new(7);
        let sources = [
            ("m.csv", std::fs::read(data("declarations.csv")).unwrap()),
            (
                "m.jsonl",
                std::fs::read(data("declarations.jsonl")).unwrap(),
            ),
        ];
        let specials = [
            b'"', b',', b'\n', b'\r', 0xFF, 0xC3, b'{', b'}', b'\\', 0, b' ',
        ];
        let (mut ok, mut refused) = (0, 0);
        for i in 0..300 {
            let (name, src) = &sources[i % 2];
            let mut bytes = src.clone();
            for _ in 0..=rng.below(4) {
                let at = rng.below(bytes.len() as u64 + 1) as usize;
                match rng.below(4) {
                    0 if at < bytes.len() => bytes[at] = *rng.pick(&specials),
                    1 => bytes.insert(at.min(bytes.len()), *rng.pick(&specials)),
                    2 => bytes.truncate(at),
                    _ => {
                        let end = (at + rng.below(40) as usize).min(bytes.len());
                        bytes.drain(at.min(end)..end);
                    }
                }
            }
            let path = f.write(name, &bytes);
            let dump = f.db.dump();
            match f.import(&[path]) {
                Ok(_) => ok += 1,
                Err(e) => {
                    refused += 1;
                    assert!(!e.problems().is_empty(), "{e}");
                    assert_eq!(f.db.dump(), dump);
                }
            }
            assert_live_is_resolve(&f.db);
        }
        assert!(ok > 0 && refused > 0, "ok {ok}, refused {refused}");
    }
}
