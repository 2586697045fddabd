//! Import declarations from CSV and JSONL files: all or nothing.
//!
//! Every file and row is read and checked first; problems are collected across
//! all of them (`file:line:field: message`) and, if there is any, nothing is
//! written. Otherwise the new declarations and status changes are written in one
//! transaction ([`Db`] keeps the live set equal to
//! [`consentry::declaration::resolve`] of all declarations).
//!
//! Re-importing a declaration that is already recorded with the same content is
//! a no-op ("unchanged"); one whose only difference is its `status` is an
//! update; any other difference is an error, because declarations are
//! immutable.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use consentry::declaration::{COLUMNS, Declaration, FieldError, REQUIRED, check_relations};

use crate::db::{Batch, Db};

/// Longest line (or CSV row) accepted, in bytes.
pub const MAX_LINE: usize = 1 << 20;

/// How many problems an [`ImportError`] lists; the rest are counted.
pub const MAX_PROBLEMS: usize = 100;

/// Slack for the CSV reader's read-ahead when bounding one row's size.
const READ_AHEAD: u64 = 64 * 1024;

/// How to import.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportOptions {
    /// `recorded_at` for the new declarations (Unix seconds); `None` = the
    /// system clock.
    pub recorded_at: Option<i64>,
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
#[derive(Debug, Default)]
struct Problems {
    list: Vec<Problem>,
    total: usize,
}

impl Problems {
    fn push(&mut self, file: &str, line: Option<u64>, field: Option<&str>, message: String) {
        self.total += 1;
        if self.list.len() < MAX_PROBLEMS {
            self.list.push(Problem {
                file: file.to_string(),
                line,
                field: field.map(str::to_string),
                message,
            });
        }
    }
}

/// Where a row came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Loc {
    file: usize,
    line: u64,
}

/// Everything read from the files.
#[derive(Debug, Default)]
struct Input {
    names: Vec<String>,
    rows: usize,
    /// Valid rows.
    decls: Vec<(Loc, Declaration)>,
    /// Ids of rows that failed their own checks (so that rows relating to them
    /// are not blamed for it).
    failed: HashSet<String>,
    problems: Problems,
}

impl Input {
    fn problem(&mut self, file: usize, line: Option<u64>, field: &str, message: String) {
        let field = (!field.is_empty()).then_some(field);
        self.problems.push(&self.names[file], line, field, message);
    }

    /// Validate one flattened row. `json` maps field names back to the JSONL
    /// spelling in messages.
    fn row(&mut self, loc: Loc, row: &BTreeMap<String, String>, json: bool) {
        match Declaration::from_row(row) {
            Ok(d) => self.decls.push((loc, d)),
            Err(errs) => {
                self.fail(row);
                for FieldError { field, message } in errs {
                    let (field, message) = if json {
                        (
                            json_field(&field),
                            message.replacen("unknown column", "unknown field", 1),
                        )
                    } else {
                        (field, message)
                    };
                    self.problem(loc.file, Some(loc.line), &field, message);
                }
            }
        }
    }

    fn fail(&mut self, row: &BTreeMap<String, String>) {
        if let Some(id) = row
            .get("declaration_id")
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
        {
            self.failed.insert(id.to_string());
        }
    }
}

/// The JSONL spelling of an import column.
fn json_field(column: &str) -> String {
    match column {
        "declarant_name" | "declarant_id" | "declarant_role" => {
            format!("declarant.{}", &column["declarant_".len()..])
        }
        "all" | "train-ai" | "train-genai" | "ai-use" | "search" => format!("preferences.{column}"),
        "policy_url" | "policy_sha256" => format!("policy.{}", &column["policy_".len()..]),
        "territories_include" | "territories_exclude" => {
            format!("territories.{}", &column["territories_".len()..])
        }
        other => other.to_string(),
    }
}

const NOT_UTF8: &str = "is not valid UTF-8; save the file as UTF-8";

// ---------------------------------------------------------------------------
// JSONL

enum LineRead {
    Eof,
    Line,
    /// The line was longer than the cap; it was skipped (its total length).
    TooLong(u64),
}

/// Read one line (without its `\n`) into `buf`, storing at most `cap` bytes;
/// a longer line is consumed and reported, never buffered.
fn read_line_bounded<R: BufRead>(r: &mut R, buf: &mut Vec<u8>, cap: usize) -> io::Result<LineRead> {
    buf.clear();
    let mut any = false;
    let mut len: u64 = 0;
    let mut too_long = false;
    loop {
        let avail = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if avail.is_empty() {
            return Ok(match (any, too_long) {
                (false, _) => LineRead::Eof,
                (true, false) => LineRead::Line,
                (true, true) => LineRead::TooLong(len),
            });
        }
        any = true;
        let newline = avail.iter().position(|&b| b == b'\n');
        let chunk = &avail[..newline.unwrap_or(avail.len())];
        len += chunk.len() as u64;
        if !too_long {
            if buf.len() + chunk.len() > cap {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(chunk);
            }
        }
        let used = newline.map_or(avail.len(), |i| i + 1);
        r.consume(used);
        if newline.is_some() {
            return Ok(if too_long {
                LineRead::TooLong(len)
            } else {
                LineRead::Line
            });
        }
    }
}

/// Strip a serde_json error's position (the line is always 1 here).
fn json_message(e: &serde_json::Error) -> String {
    let s = e.to_string();
    let msg = s.rfind(" at line ").map_or(s.as_str(), |i| &s[..i]);
    format!("is not valid JSON: {msg} (column {})", e.column())
}

fn read_jsonl(input: &mut Input, file: usize, reader: impl Read) -> io::Result<()> {
    let mut r = BufReader::with_capacity(64 * 1024, reader);
    let mut buf = Vec::new();
    let mut line: u64 = 0;
    loop {
        let read = read_line_bounded(&mut r, &mut buf, MAX_LINE)?;
        line += 1;
        match read {
            LineRead::Eof => return Ok(()),
            LineRead::TooLong(len) => {
                input.rows += 1;
                input.problem(
                    file,
                    Some(line),
                    "(line)",
                    format!("is {len} bytes long; a line may be at most {MAX_LINE} bytes (1 MiB)"),
                );
                continue;
            }
            LineRead::Line => {}
        }
        let mut bytes = buf.as_slice();
        if line == 1 {
            bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        }
        bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        let Ok(text) = std::str::from_utf8(bytes) else {
            input.rows += 1;
            input.problem(file, Some(line), "(line)", NOT_UTF8.into());
            continue;
        };
        if text.trim().is_empty() {
            continue;
        }
        input.rows += 1;
        let loc = Loc { file, line };
        let value: serde_json::Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                input.problem(file, Some(line), "(line)", json_message(&e));
                continue;
            }
        };
        match consentry::declaration::row_from_json(&value) {
            Ok(row) => input.row(loc, &row, true),
            Err(errs) => {
                if let Some(id) = value.get("declaration_id").and_then(|v| v.as_str()) {
                    input.failed.insert(id.trim().to_string());
                }
                for FieldError { field, message } in errs {
                    input.problem(file, Some(line), &field, message);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// CSV

/// Which limit stopped a CSV file.
#[derive(Debug, Clone, Copy)]
enum Trip {
    /// A physical line longer than [`MAX_LINE`] (its line number).
    Line(u64),
    /// One row (quoted fields may span lines) longer than [`MAX_LINE`].
    Row,
}

/// A reader that stops a CSV parse before it buffers an overlong line or row:
/// the csv crate would otherwise grow its record buffer without bound.
struct Guard<R> {
    inner: R,
    /// Current physical line (1-based) and its length so far.
    line: u64,
    line_len: usize,
    /// Bytes handed out, and where the current row started (set by the caller).
    total: u64,
    row_start: u64,
    tripped: Option<Trip>,
}

impl<R: Read> Read for Guard<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.tripped.is_some() {
            return Err(io::Error::other("import limit exceeded"));
        }
        let n = self.inner.read(out)?;
        let mut rest = &out[..n];
        while !rest.is_empty() {
            match rest.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.line_len += i;
                    if self.line_len > MAX_LINE {
                        break;
                    }
                    self.line += 1;
                    self.line_len = 0;
                    rest = &rest[i + 1..];
                }
                None => {
                    self.line_len += rest.len();
                    rest = &[];
                }
            }
        }
        if self.line_len > MAX_LINE {
            self.tripped = Some(Trip::Line(self.line));
            return Err(io::Error::other("line too long"));
        }
        self.total += n as u64;
        if self.total - self.row_start > MAX_LINE as u64 + READ_AHEAD {
            self.tripped = Some(Trip::Row);
            return Err(io::Error::other("row too long"));
        }
        Ok(n)
    }
}

/// Check the header; returns the column names, or `None` after reporting why
/// the file cannot be read.
fn csv_header(
    input: &mut Input,
    file: usize,
    line: u64,
    rec: &csv::ByteRecord,
) -> Option<Vec<String>> {
    let before = input.problems.total;
    let mut names: Vec<String> = Vec::new();
    for (i, raw) in rec.iter().enumerate() {
        let Ok(name) = std::str::from_utf8(raw) else {
            input.problem(file, Some(line), "(header)", NOT_UTF8.into());
            return None;
        };
        let name = name.trim().to_string();
        if name.is_empty() {
            input.problem(
                file,
                Some(line),
                "(header)",
                format!("column {} has no name", i + 1),
            );
        } else if !COLUMNS.contains(&name.as_str()) {
            input.problem(
                file,
                Some(line),
                &name,
                format!(
                    "unknown column {name:?}; the columns are {}",
                    COLUMNS.join(", ")
                ),
            );
        } else if names.contains(&name) {
            input.problem(
                file,
                Some(line),
                &name,
                "column appears twice in the header".into(),
            );
        }
        names.push(name);
    }
    for req in REQUIRED {
        if !names.iter().any(|n| n == req) {
            input.problem(
                file,
                Some(line),
                req,
                "required column is missing from the header".into(),
            );
        }
    }
    (input.problems.total == before).then_some(names)
}

fn read_csv(input: &mut Input, file: usize, reader: impl Read) -> io::Result<()> {
    let guard = Guard {
        inner: reader,
        line: 1,
        line_len: 0,
        total: 0,
        row_start: 0,
        tripped: None,
    };
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(guard);
    let mut rec = csv::ByteRecord::new();
    let mut header: Option<Vec<String>> = None;
    loop {
        match rdr.read_byte_record(&mut rec) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                let line = rdr.position().line();
                match rdr.get_ref().tripped {
                    Some(Trip::Line(l)) => input.problem(
                        file,
                        Some(l),
                        "(line)",
                        format!(
                            "is longer than {MAX_LINE} bytes (1 MiB), the longest line accepted; \
                             the rest of the file was not read"
                        ),
                    ),
                    Some(Trip::Row) => input.problem(
                        file,
                        Some(line),
                        "(row)",
                        format!(
                            "the row starting here is longer than {MAX_LINE} bytes (1 MiB): \
                             is a quote (\") left open? The rest of the file was not read"
                        ),
                    ),
                    None => match e.into_kind() {
                        csv::ErrorKind::Io(e) => return Err(e),
                        other => input.problem(
                            file,
                            Some(line),
                            "(row)",
                            format!("is not valid CSV: {other:?}"),
                        ),
                    },
                }
                return Ok(());
            }
        }
        let line = rec
            .position()
            .map_or_else(|| rdr.position().line(), csv::Position::line);
        let next = rdr.position().byte();
        rdr.get_mut().row_start = next;
        let Some(columns) = &header else {
            match csv_header(input, file, line, &rec) {
                Some(h) => header = Some(h),
                None => return Ok(()),
            }
            continue;
        };
        input.rows += 1;
        if rec.len() != columns.len() {
            input.problem(
                file,
                Some(line),
                "(row)",
                format!(
                    "has {} fields; the header has {} columns",
                    rec.len(),
                    columns.len()
                ),
            );
            if let Some(i) = columns.iter().position(|c| c == "declaration_id")
                && let Some(Ok(id)) = rec.get(i).map(std::str::from_utf8)
                && !id.trim().is_empty()
            {
                input.failed.insert(id.trim().to_string());
            }
            continue;
        }
        let mut row = BTreeMap::new();
        let mut bad = None;
        for (name, raw) in columns.iter().zip(rec.iter()) {
            match std::str::from_utf8(raw) {
                Ok(v) => {
                    row.insert(name.clone(), v.to_string());
                }
                Err(_) => bad = bad.or(Some(name.clone())),
            }
        }
        if let Some(field) = bad {
            input.fail(&row);
            input.problem(file, Some(line), &field, NOT_UTF8.into());
            continue;
        }
        input.row(Loc { file, line }, &row, false);
    }
    if header.is_none() {
        input.problem(
            file,
            Some(1),
            "(header)",
            format!(
                "the file is empty; a CSV import starts with a header row naming its columns: {}",
                COLUMNS.join(",")
            ),
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Import

#[derive(Clone, Copy)]
enum Format {
    Csv,
    Jsonl,
}

fn format_of(path: &Path) -> Option<Format> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "csv" => Some(Format::Csv),
        "jsonl" | "ndjson" => Some(Format::Jsonl),
        _ => None,
    }
}

fn read_files(files: &[PathBuf]) -> Input {
    let mut input = Input {
        names: files.iter().map(|p| p.display().to_string()).collect(),
        ..Input::default()
    };
    for (i, path) in files.iter().enumerate() {
        let Some(format) = format_of(path) else {
            input.problem(
                i,
                None,
                "",
                "unknown file type; name import files *.csv, *.jsonl or *.ndjson".into(),
            );
            continue;
        };
        let result = File::open(path).and_then(|f| match format {
            Format::Csv => read_csv(&mut input, i, f),
            Format::Jsonl => read_jsonl(&mut input, i, f),
        });
        if let Err(e) = result {
            input.problem(i, None, "", format!("cannot be read: {e}"));
        }
    }
    input
}

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
fn plan(db: &Db, input: &mut Input, recorded_at: i64) -> anyhow::Result<(Batch, ImportReport)> {
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
        let others: Vec<String> = locs
            .iter()
            .filter(|l| *l != loc)
            .map(|l| format!("{}:{}", input.names[l.file], l.line))
            .collect();
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
        match db.declaration(&d.id)? {
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
/// them are recorded (in one transaction) or none is.
pub fn import_files(
    db: &mut Db,
    files: &[PathBuf],
    opts: &ImportOptions,
) -> Result<ImportReport, ImportError> {
    let recorded_at = opts.recorded_at.unwrap_or_else(consentry::time::now);
    let mut input = read_files(files);
    let (batch, report) = plan(db, &mut input, recorded_at)?;
    if input.problems.total > 0 {
        let Problems { list, total } = input.problems;
        return Err(ImportError::Invalid {
            more: total - list.len(),
            problems: list,
        });
    }
    if !batch.adds.is_empty() || !batch.status_updates.is_empty() {
        db.apply(&batch)?;
    }
    Ok(report)
}
