//! Reading import files: CSV and JSONL rows, bounded line by line, into
//! declarations and `file:line:field` problems, before the registry is
//! looked at.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::progress::{CountingReader, Progress, Unit};

use consentry::declaration::{COLUMNS, Declaration, FieldError, REQUIRED};

use super::{MAX_LINE, MAX_PROBLEMS, Problem, READ_AHEAD};

#[derive(Debug, Default)]
pub(super) struct Problems {
    pub(super) list: Vec<Problem>,
    pub(super) total: usize,
}

impl Problems {
    pub(super) fn push(
        &mut self,
        file: &str,
        line: Option<u64>,
        field: Option<&str>,
        message: String,
    ) {
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
pub(super) struct Loc {
    pub(super) file: usize,
    pub(super) line: u64,
}

/// Everything read from the files.
#[derive(Debug, Default)]
pub(super) struct Input {
    pub(super) names: Vec<String>,
    pub(super) rows: usize,
    /// Valid rows.
    pub(super) decls: Vec<(Loc, Declaration)>,
    /// Ids of rows that failed their own checks (so that rows relating to them
    /// are not blamed for it).
    pub(super) failed: HashSet<String>,
    pub(super) problems: Problems,
}

impl Input {
    pub(super) fn problem(&mut self, file: usize, line: Option<u64>, field: &str, message: String) {
        let field = (!field.is_empty()).then_some(field);
        self.problems.push(&self.names[file], line, field, message);
    }

    /// Validate one flattened row. `json` maps field names back to the JSONL
    /// spelling in messages.
    pub(super) fn row(&mut self, loc: Loc, row: &BTreeMap<String, String>, json: bool) {
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

    pub(super) fn fail(&mut self, row: &BTreeMap<String, String>) {
        if let Some(id) = row
            .get("declaration_id")
            .map(|s| consentry::text::trim(s))
            .filter(|s| !s.is_empty())
        {
            self.failed.insert(id.to_string());
        }
    }
}

/// The JSONL spelling of an import column.
pub(super) fn json_field(column: &str) -> String {
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

pub(super) const NOT_UTF8: &str = "is not valid UTF-8; save the file as UTF-8";

// ---------------------------------------------------------------------------
// JSONL

pub(super) enum LineRead {
    Eof,
    Line,
    /// The line was longer than the cap; it was skipped (its total length).
    TooLong(u64),
}

/// Read one line (without its `\n`) into `buf`, storing at most `cap` bytes;
/// a longer line is consumed and reported, never buffered.
pub(super) fn read_line_bounded<R: BufRead>(
    r: &mut R,
    buf: &mut Vec<u8>,
    cap: usize,
) -> io::Result<LineRead> {
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
pub(super) fn json_message(e: &serde_json::Error) -> String {
    let s = e.to_string();
    let msg = s.rfind(" at line ").map_or(s.as_str(), |i| &s[..i]);
    format!("is not valid JSON: {msg} (column {})", e.column())
}

pub(super) fn read_jsonl(input: &mut Input, file: usize, reader: impl Read) -> io::Result<()> {
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
        if consentry::text::is_blank(text) {
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
                    input.failed.insert(consentry::text::trim(id).to_string());
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
pub(super) enum Trip {
    /// A physical line longer than [`MAX_LINE`] (its line number).
    Line(u64),
    /// One row (quoted fields may span lines) longer than [`MAX_LINE`].
    Row,
}

/// A reader that stops a CSV parse before it buffers an overlong line or row:
/// the csv crate would otherwise grow its record buffer without bound.
pub(super) struct Guard<R> {
    pub(super) inner: R,
    /// Current physical line (1-based) and its length so far.
    pub(super) line: u64,
    pub(super) line_len: usize,
    /// Bytes handed out, and where the current row started (set by the caller).
    pub(super) total: u64,
    pub(super) row_start: u64,
    pub(super) tripped: Option<Trip>,
}

impl<R: Read> Read for Guard<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.tripped.is_some() {
            return Err(io::Error::other("import limit exceeded"));
        }
        let n = self.inner.read(out)?;
        let mut rest = &out[..n];
        while let Some(i) = rest.iter().position(|&b| b == b'\n') {
            self.line_len += i;
            if self.line_len > MAX_LINE {
                break;
            }
            self.line += 1;
            self.line_len = 0;
            rest = &rest[i + 1..];
        }
        if self.line_len <= MAX_LINE {
            self.line_len += rest.len();
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
pub(super) fn csv_header(
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
        let name = consentry::text::trim(name).to_string();
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
                    "unknown column \"{name}\"; the columns are {}{}",
                    COLUMNS.join(", "),
                    if name.contains(';') || name.contains('\t') {
                        " (separate columns with commas, not semicolons or tabs)"
                    } else {
                        ""
                    }
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

pub(super) fn read_csv(input: &mut Input, file: usize, reader: impl Read) -> io::Result<()> {
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
    // The line where the next row starts.
    let mut next_line = 1;
    loop {
        match rdr.read_byte_record(&mut rec) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                let line = next_line;
                match rdr.get_ref().tripped {
                    Some(Trip::Line(l)) => input.problem(
                        file,
                        Some(l),
                        "(line)",
                        format!(
                            "is longer than {MAX_LINE} bytes (1 MiB), the longest line accepted \
                             (lines end in LF or CR LF); the rest of the file was not read"
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
                    None => {
                        if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                            if let csv::ErrorKind::Io(e) = e.into_kind() {
                                return Err(e);
                            }
                        } else {
                            // csv's Display, never its Debug.
                            input.problem(
                                file,
                                Some(line),
                                "(row)",
                                format!("is not valid CSV: {e}"),
                            );
                        }
                    }
                }
                return Ok(());
            }
        }
        let line = rec
            .position()
            .map_or_else(|| rdr.position().line(), csv::Position::line);
        let next = rdr.position().byte();
        next_line = rdr.position().line();
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
                && !consentry::text::is_blank(id)
            {
                input.failed.insert(consentry::text::trim(id).to_string());
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

/// How an input's rows are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Jsonl,
}

/// How an input is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    fn name(self) -> &'static str {
        match self {
            Compression::None => "plain",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// The compression (from a last `.gz`, `.zst` or `.zstd`) and the format (from
/// the extension before it) a file's name says.
pub(super) fn format_of(path: &Path) -> (Compression, Option<Format>) {
    let ext = |p: &Path| {
        p.extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
    };
    let (compression, inner) = match ext(path).as_deref() {
        Some("gz") => (Compression::Gzip, path.file_stem().map(Path::new)),
        Some("zst" | "zstd") => (Compression::Zstd, path.file_stem().map(Path::new)),
        _ => (Compression::None, Some(path)),
    };
    let format = match inner.and_then(ext).as_deref() {
        Some("csv") => Some(Format::Csv),
        Some("jsonl" | "ndjson") => Some(Format::Jsonl),
        _ => None,
    };
    (compression, format)
}

/// Where an import input comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputSource {
    /// A file: `.csv`, `.jsonl` or `.ndjson`, optionally followed by `.gz` or
    /// `.zst`.
    File(PathBuf),
    /// Standard input (named `<stdin>` in messages): gzip and zstd are
    /// recognised by their magic bytes, the format by `format` or by its
    /// first line (`{` starts JSONL, a known column name starts CSV).
    Stdin,
}

/// One import input and, when given, the format to read it as (otherwise the
/// file name, or for stdin the content, decides).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportInput {
    pub source: InputSource,
    pub format: Option<Format>,
}

impl ImportInput {
    /// A file whose name says its format.
    pub fn file(path: impl Into<PathBuf>) -> ImportInput {
        ImportInput {
            source: InputSource::File(path.into()),
            format: None,
        }
    }

    /// The name used in `file:line:field` messages.
    pub fn name(&self) -> String {
        match &self.source {
            InputSource::File(p) => p.display().to_string(),
            InputSource::Stdin => "<stdin>".into(),
        }
    }
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// The decompressed rows of `raw`.
fn decompressed<'a>(raw: impl BufRead + 'a, c: Compression) -> io::Result<Box<dyn BufRead + 'a>> {
    Ok(match c {
        Compression::None => Box::new(raw),
        Compression::Gzip => Box::new(BufReader::with_capacity(
            64 * 1024,
            flate2::bufread::MultiGzDecoder::new(raw),
        )),
        Compression::Zstd => Box::new(BufReader::with_capacity(
            64 * 1024,
            zstd::stream::read::Decoder::with_buffer(raw)?,
        )),
    })
}

/// Sniff the compression of buffered input by its magic bytes.
fn sniff_compression(r: &mut impl BufRead) -> io::Result<Compression> {
    let head = r.fill_buf()?;
    Ok(if head.starts_with(GZIP_MAGIC) {
        Compression::Gzip
    } else if head.starts_with(ZSTD_MAGIC) {
        Compression::Zstd
    } else {
        Compression::None
    })
}

/// Tell CSV from JSONL by the first non-blank bytes: `{` starts a JSONL
/// object; a header starting with a known column name starts CSV.
fn sniff_format(r: &mut impl BufRead) -> io::Result<Option<Format>> {
    let head = r.fill_buf()?;
    let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let start = head
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .map_or(&[][..], |i| &head[i..]);
    if start.starts_with(b"{") {
        return Ok(Some(Format::Jsonl));
    }
    let first = start
        .split(|&b| b == b',' || b == b'\n' || b == b'\r')
        .next()
        .unwrap_or_default();
    let first = std::str::from_utf8(first)
        .unwrap_or_default()
        .trim()
        .trim_matches('"');
    Ok(COLUMNS.contains(&first).then_some(Format::Csv))
}

/// Read one input into `input` as input number `i`.
fn read_one(
    input: &mut Input,
    i: usize,
    src: &ImportInput,
    progress: &dyn Progress,
) -> Result<(), String> {
    let (raw, compression, named): (Box<dyn BufRead + '_>, Compression, Option<Format>) =
        match &src.source {
            InputSource::File(path) => {
                let (compression, named) = format_of(path);
                let f = File::open(path).map_err(|e| format!("cannot be read: {e}"))?;
                let counted = CountingReader { inner: f, progress };
                (
                    Box::new(BufReader::with_capacity(64 * 1024, counted)),
                    compression,
                    named,
                )
            }
            InputSource::Stdin => {
                let counted = CountingReader {
                    inner: io::stdin().lock(),
                    progress,
                };
                let mut r = BufReader::with_capacity(64 * 1024, counted);
                let c = sniff_compression(&mut r).map_err(|e| format!("cannot be read: {e}"))?;
                (Box::new(r), c, None)
            }
        };
    let how = compression.name();
    let mut rows =
        decompressed(raw, compression).map_err(|e| format!("is not valid {how} data: {e}"))?;
    let format = match src.format.or(named) {
        Some(f) => f,
        None if src.source == InputSource::Stdin => sniff_format(&mut rows)
            .map_err(|e| format!("cannot be read ({how} data): {e}"))?
            .ok_or_else(|| {
                "cannot tell CSV from JSONL (neither a CSV header nor a JSON object starts it); \
                 pass --format csv or --format jsonl"
                    .to_string()
            })?,
        None => {
            return Err(
                "unknown file type; name import files *.csv, *.jsonl or *.ndjson (optionally \
                 .gz or .zst), or pass --format csv|jsonl"
                    .into(),
            );
        }
    };
    let result = match format {
        Format::Csv => read_csv(input, i, rows),
        Format::Jsonl => read_jsonl(input, i, rows),
    };
    result.map_err(|e| {
        if compression == Compression::None {
            format!("cannot be read: {e}")
        } else {
            format!("cannot be read ({how} data): {e}")
        }
    })
}

pub(super) fn read_inputs(inputs: &[ImportInput], progress: &dyn Progress) -> Input {
    let mut input = Input {
        names: inputs.iter().map(ImportInput::name).collect(),
        ..Input::default()
    };
    let total: Option<u64> = inputs
        .iter()
        .map(|i| match &i.source {
            InputSource::File(p) => std::fs::metadata(p).ok().map(|m| m.len()),
            InputSource::Stdin => None,
        })
        .sum();
    progress.start("reading", total, Unit::Bytes);
    for (i, src) in inputs.iter().enumerate() {
        if let Err(message) = read_one(&mut input, i, src, progress) {
            input.problem(i, None, "", message);
        }
    }
    progress.finish();
    input
}

/// Read one CSV or JSONL file from memory without a registry: the valid
/// declarations, the number of data rows and the problems — everything
/// [`import_files`] checks before it looks at the database. For
/// [`crate::fuzzing`].
#[cfg(feature = "fuzzing")]
pub(crate) fn read_bytes(
    name: &str,
    jsonl: bool,
    bytes: &[u8],
) -> (Vec<Declaration>, usize, Vec<Problem>) {
    let mut input = Input {
        names: vec![name.to_string()],
        ..Input::default()
    };
    let result = if jsonl {
        read_jsonl(&mut input, 0, bytes)
    } else {
        read_csv(&mut input, 0, bytes)
    };
    if let Err(e) = result {
        input.problem(0, None, "", format!("cannot be read: {e}"));
    }
    let decls = input.decls.into_iter().map(|(_, d)| d).collect();
    (decls, input.rows, input.problems.list)
}
