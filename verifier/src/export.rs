//! `consentry export` (feature `export`): the verified current state of a
//! store, answered for one question (use, territory, day), as files for
//! DuckDB, Spark or pandas — Parquet (zstd), CSV or JSON lines.
//!
//! Two files, sorted, and nothing in them that the store did not verify:
//!
//! - `entries.<ext>`: one row per ISRC with an entry of its own (an exact
//!   scope), in ISRC (key) order, with the answer [`Reader::answer`] gives
//!   it — the scan is [`Reader::scan_range`], range by range, so memory
//!   stays flat at 10^8 entries;
//! - `prefixes.<ext>`: one row per prefix scope of the prefix table
//!   (registrant `CC-XXX`, registrant-year `CC-XXX-YY`), with the answer the
//!   lookup rule gives an ISRC of that scope that has no entry of its own:
//!   the rule ([`crate::lookup::lookup`]) over the scope's entries
//!   and, for a registrant-year, its registrant's.
//!
//! So an ISRC's answer is its `entries` row if it has one; else the
//! `prefixes` row of its registrant-year (its first 7 characters); else the
//! row of its registrant (its first 5); else `unknown`, `no_record` — which
//! is exactly what `consentry check` answers (SPEC.md §8.2: an ISRC's
//! covering entries are its own and those of its two prefixes).
//!
//! Every output is a function of the store's verified snapshot and the
//! question only: the same store and question give the same bytes.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, DictionaryArray, Int32Array, ListBuilder, StringArray,
    StringBuilder, StringDictionaryBuilder, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use serde::Serialize;

use crate::declaration::Record;
use crate::error::{Code, Rejection, reject};
use crate::isrc::{Isrc, Scope};
use crate::lookup::{Answer, Question};
use crate::model::{Entry, Use};
use crate::reader::Reader;
use crate::store::SnapshotInfo;
use crate::time::{Day, format_date, format_timestamp};

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Apache Parquet, zstd-compressed, dictionary-encoded categories.
    Parquet,
    /// CSV with a header row (RFC 4180 quoting).
    Csv,
    /// One JSON object per line.
    Jsonl,
}

impl Format {
    /// The file name extension (and the name on the command line).
    pub fn ext(self) -> &'static str {
        match self {
            Format::Parquet => "parquet",
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
        }
    }
}

/// The question every row answers: the `check` flags `--use`,
/// `--territory`, `--at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportQuestion {
    pub use_: Use,
    /// Upper-case ISO 3166-1 alpha-2, or `None` for any territory.
    pub territory: Option<String>,
    pub at: Day,
}

/// Where and how to write.
#[derive(Debug, Clone)]
pub struct Options {
    pub format: Format,
    /// The output directory (created if missing).
    pub out: PathBuf,
    /// Replace existing output files; without it they are refused.
    pub force: bool,
    /// Rows per Parquet row group.
    pub row_group_rows: usize,
}

/// Rows per Parquet row group: 1M rows is ~10–20 MB compressed per group,
/// large enough for scans, small enough for Spark tasks and to keep the
/// writer's memory (one group's pages) flat.
pub const ROW_GROUP_ROWS: usize = 1 << 20;

/// Rows per Arrow record batch handed to the Parquet writer.
const BATCH_ROWS: usize = 64 * 1024;

/// Entries between two calls of the progress callback.
pub const PROGRESS_EVERY: u64 = 1 << 22;

/// The file names for `format`: entries, prefixes.
pub fn file_names(format: Format) -> [String; 2] {
    [
        format!("entries.{}", format.ext()),
        format!("prefixes.{}", format.ext()),
    ]
}

/// One written file.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
}

/// What an export wrote, from which snapshot, for which question.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub format: &'static str,
    pub entries: FileReport,
    pub prefixes: FileReport,
    #[serde(rename = "use")]
    pub use_: &'static str,
    pub territory: Option<String>,
    pub at: String,
    pub snapshot: SnapshotReport,
}

/// The snapshot an export came from.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotReport {
    pub version: u64,
    pub manifest_sha256: String,
    pub expired: bool,
    /// The earliest expiry of the root, head and manifest (RFC 3339).
    pub expires: String,
}

/// The column names of `entries.<ext>`, in order.
pub const ENTRY_COLUMNS: [&str; 12] = [
    "isrc",
    "decision",
    "reason",
    "decided_by",
    "terms_url",
    "terms_sha256",
    "use",
    "territory",
    "at",
    "snapshot_version",
    "manifest_sha256",
    "expired",
];

/// The column names of `prefixes.<ext>`, in order.
pub const PREFIX_COLUMNS: [&str; 14] = [
    "prefix",
    "scope",
    "scope_kind",
    "decision",
    "reason",
    "decided_by",
    "terms_url",
    "terms_sha256",
    "use",
    "territory",
    "at",
    "snapshot_version",
    "manifest_sha256",
    "expired",
];

/// The key columns of a row: `[isrc]` or `[prefix, scope, scope_kind]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Entries,
    Prefixes,
}

impl Kind {
    fn columns(self) -> &'static [&'static str] {
        match self {
            Kind::Entries => &ENTRY_COLUMNS,
            Kind::Prefixes => &PREFIX_COLUMNS,
        }
    }

    /// Columns before the answer's.
    fn head_len(self) -> usize {
        match self {
            Kind::Entries => 1,
            Kind::Prefixes => 3,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Entries => "entries",
            Kind::Prefixes => "prefixes",
        }
    }
}

/// One row: its key columns and its answer.
struct Row<'a> {
    head: [&'a str; 3],
    answer: &'a Answer,
    terms: Terms,
}

/// The terms behind a `constrained` answer: those of the deciders whose
/// own decision is `constrained` (SPEC.md §3.2: `terms` are what a
/// constrained use refers to), distinct, in `decided_by` order (seq, id). One terms (the
/// usual case) gives its URL and digest; several are joined by a space in
/// both columns (URLs hold no space, SPEC.md §3.2 rule 7), `-` standing for
/// a missing digest among them. `None` for any other decision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Terms {
    url: Option<String>,
    sha256: Option<String>,
}

fn terms_of(a: &Answer) -> Terms {
    // The lookup rule gathers them (SPEC.md §8.1): only for `constrained`.
    let seen: Vec<&crate::model::Terms> = a.terms.iter().collect();
    if seen.is_empty() {
        return Terms::default();
    }
    let url = seen
        .iter()
        .map(|t| t.url.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let sha256 = if seen.iter().all(|t| t.sha256.is_none()) {
        None
    } else {
        Some(
            seen.iter()
                .map(|t| t.sha256.map_or_else(|| "-".to_string(), hex::encode))
                .collect::<Vec<_>>()
                .join(" "),
        )
    };
    Terms {
        url: Some(url),
        sha256,
    }
}

/// The columns every row of one export shares.
#[derive(Debug, Clone)]
struct Common {
    use_: &'static str,
    territory: Option<String>,
    at: Day,
    at_text: String,
    version: u64,
    manifest_sha256: String,
    expired: bool,
    expires: String,
}

/// Where rows go: one writer per format.
trait Sink {
    fn row(&mut self, r: &Row<'_>) -> Result<(), Rejection>;
    /// Flush everything into the file.
    fn finish(self: Box<Self>) -> Result<(), Rejection>;
}

/// Write the verified current state `reader` answers from, for question
/// `q`, into `opts.out`: `entries.<ext>` and `prefixes.<ext>`, each through
/// a temporary file renamed into place once whole (so a reader of the
/// directory never sees a half-written file, and a failed export leaves the
/// previous files as they were). Existing files are refused without
/// `opts.force`. `progress` is called with the number of entry rows written
/// every [`PROGRESS_EVERY`] rows.
pub fn export(
    reader: &Reader,
    q: &ExportQuestion,
    opts: &Options,
    progress: &mut dyn FnMut(u64),
) -> Result<Report, Rejection> {
    let names = file_names(opts.format);
    let paths = names.clone().map(|n| opts.out.join(n));
    if !opts.force {
        for p in &paths {
            if std::fs::symlink_metadata(p).is_ok() {
                return Err(reject(
                    p.display().to_string(),
                    Code::Usage,
                    "already exists; pass --force to replace it, or choose another --out directory",
                ));
            }
        }
    }
    std::fs::create_dir_all(&opts.out)
        .map_err(|e| crate::fetch::io_error(&opts.out.display().to_string(), &e))?;
    let snap = reader.snap();
    let info: &SnapshotInfo = reader.snapshot();
    let expires = snap
        .root
        .expires
        .min(snap.head.expires)
        .min(snap.manifest.expires);
    let common = Common {
        use_: q.use_.name(),
        territory: q.territory.clone(),
        at: q.at,
        at_text: format_date(q.at),
        version: info.version,
        manifest_sha256: info.manifest_sha256.clone(),
        expired: info.expired,
        expires: format_timestamp(i64::try_from(expires).unwrap_or(i64::MAX)),
    };

    // Entries: the whole state, range by range, in key order.
    let entries_tmp = temp_in(&opts.out)?;
    let mut n_entries = 0u64;
    {
        let sink = open_sink(opts, Kind::Entries, &common, entries_tmp.as_file())?;
        let mut sink = sink;
        let mut write = |isrc: Isrc, a: &Answer| {
            let text = isrc.compact();
            sink.row(&Row {
                head: [&text, "", ""],
                answer: a,
                terms: terms_of(a),
            })?;
            n_entries += 1;
            if n_entries.is_multiple_of(PROGRESS_EVERY) {
                progress(n_entries);
            }
            Ok(())
        };
        for i in 0..reader.range_count() {
            reader.scan_range(i, q.use_, q.territory.as_deref(), q.at, &mut write)?;
        }
        sink.finish()?;
    }

    // Prefixes: one row per scope, in table order.
    let prefix_tmp = temp_in(&opts.out)?;
    let records = reader.prefix_records()?;
    let mut n_prefixes = 0u64;
    {
        let mut sink = open_sink(opts, Kind::Prefixes, &common, prefix_tmp.as_file())?;
        for (scope, a) in prefix_answers(&records, q) {
            let compact = compact_scope(scope);
            let canonical = scope.canonical();
            let kind = if matches!(scope, Scope::Registrant(_)) {
                "registrant"
            } else {
                "registrant-year"
            };
            sink.row(&Row {
                head: [&compact, &canonical, kind],
                answer: &a,
                terms: terms_of(&a),
            })?;
            n_prefixes += 1;
        }
        sink.finish()?;
    }

    // Both files are whole: put them in place.
    let mut reports = Vec::new();
    for (tmp, path) in [(entries_tmp, &paths[0]), (prefix_tmp, &paths[1])] {
        let loc = path.display().to_string();
        tmp.as_file()
            .sync_all()
            .map_err(|e| crate::fetch::io_error(&loc, &e))?;
        set_readable(tmp.as_file(), &loc)?;
        tmp.persist(path)
            .map_err(|e| crate::fetch::io_error(&loc, &e.error))?;
        let bytes = std::fs::metadata(path)
            .map_err(|e| crate::fetch::io_error(&loc, &e))?
            .len();
        reports.push((loc, bytes));
    }
    crate::fsio::sync_dir(&opts.out)?;
    let (pe, pp) = (reports.remove(0), reports.remove(0));
    Ok(Report {
        format: opts.format.ext(),
        entries: FileReport {
            path: pe.0,
            rows: n_entries,
            bytes: pe.1,
        },
        prefixes: FileReport {
            path: pp.0,
            rows: n_prefixes,
            bytes: pp.1,
        },
        use_: common.use_,
        territory: common.territory,
        at: common.at_text,
        snapshot: SnapshotReport {
            version: common.version,
            manifest_sha256: common.manifest_sha256,
            expired: common.expired,
            expires: common.expires,
        },
    })
}

/// A prefix scope and its answer.
type PrefixAnswer = (Scope, Answer);

/// The answer for an ISRC of each prefix scope that has no entry of its
/// own, in prefix-table order (SPEC.md §6: registrants before
/// registrant-years, each by value): the lookup rule over the scope's
/// entries and, for a registrant-year, its registrant's — the prefix
/// entries covering any ISRC of that registrant-year. (A registrant's row
/// is the answer for its ISRCs whose registrant-year has no prefix entry.)
fn prefix_answers(records: &[Record], q: &ExportQuestion) -> Vec<PrefixAnswer> {
    // The prefix table holds prefix scopes only (SPEC.md §5.5).
    let mut scopes: Vec<Scope> = records
        .iter()
        .map(|r| r.scope)
        .filter(|s| !matches!(s, Scope::Exact(_)))
        .collect();
    scopes.sort_by_key(|s| crate::state::prefix_key(*s));
    scopes.dedup();
    let mut out = Vec::with_capacity(scopes.len());
    for scope in scopes {
        let lo = scope.key_range().0;
        // The scope's first ISRC stands for all of them: only the entries
        // chosen below are passed, and they cover every ISRC of the scope.
        let Some(isrc) = Isrc::from_key(lo) else {
            continue;
        };
        let question = Question {
            isrc,
            use_: q.use_,
            territory: q.territory.clone(),
            at: q.at,
        };
        let entries = records
            .iter()
            .filter(|r| match scope {
                Scope::Registrant(_) => r.scope == scope,
                _ => r.scope == scope || r.scope == Scope::registrant_of(lo),
            })
            .map(|r| Entry {
                scope: r.scope,
                seq: r.seq,
                id: &r.id,
                policy: &r.policy,
            });
        out.push((scope, crate::lookup::lookup(&question, entries)));
    }
    out
}

/// A prefix scope without hyphens: the first 5 (registrant) or 7
/// (registrant-year) characters of the ISRCs it covers.
fn compact_scope(scope: Scope) -> String {
    scope.canonical().replace('-', "")
}

fn temp_in(dir: &Path) -> Result<tempfile::NamedTempFile, Rejection> {
    tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(|e| crate::fetch::io_error(&dir.display().to_string(), &e))
}

fn set_readable(f: &File, loc: &str) -> Result<(), Rejection> {
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(|e| crate::fetch::io_error(loc, &e))
}

fn open_sink<'f>(
    opts: &Options,
    kind: Kind,
    common: &Common,
    file: &'f File,
) -> Result<Box<dyn Sink + 'f>, Rejection> {
    let loc = opts
        .out
        .join(format!("{}.{}", kind.name(), opts.format.ext()))
        .display()
        .to_string();
    let w = BufWriter::with_capacity(1 << 20, file);
    Ok(match opts.format {
        Format::Csv => Box::new(CsvSink::new(w, kind, common.clone(), loc)?),
        Format::Jsonl => Box::new(JsonSink {
            w,
            kind,
            common: common.clone(),
            loc,
            line: Vec::new(),
        }),
        Format::Parquet => Box::new(ParquetSink::new(
            w,
            kind,
            common.clone(),
            loc,
            opts.row_group_rows,
        )?),
    })
}

fn write_err(loc: &str, e: &io::Error) -> Rejection {
    crate::fetch::io_error(loc, e)
}

// ---- CSV ----------------------------------------------------------------

struct CsvSink<W: Write> {
    w: csv::Writer<W>,
    kind: Kind,
    common: Common,
    loc: String,
    snapshot_version: String,
}

impl<W: Write> CsvSink<W> {
    fn new(w: W, kind: Kind, common: Common, loc: String) -> Result<Self, Rejection> {
        let mut s = CsvSink {
            w: csv::Writer::from_writer(w),
            kind,
            snapshot_version: common.version.to_string(),
            common,
            loc,
        };
        s.w.write_record(kind.columns())
            .map_err(|e| csv_err(&s.loc, e))?;
        Ok(s)
    }
}

fn csv_err(loc: &str, e: csv::Error) -> Rejection {
    match e.into_kind() {
        csv::ErrorKind::Io(io) => write_err(loc, &io),
        other => reject(loc, Code::IoError, format!("{other:?}")),
    }
}

impl<W: Write> Sink for CsvSink<W> {
    fn row(&mut self, r: &Row<'_>) -> Result<(), Rejection> {
        let c = &self.common;
        let by = r.answer.decided_by.join(" ");
        let mut rec: Vec<&str> = r.head[..self.kind.head_len()].to_vec();
        rec.extend([
            r.answer.decision.name(),
            r.answer.reason.name(),
            &by,
            r.terms.url.as_deref().unwrap_or(""),
            r.terms.sha256.as_deref().unwrap_or(""),
            c.use_,
            c.territory.as_deref().unwrap_or(""),
            &c.at_text,
            &self.snapshot_version,
            &c.manifest_sha256,
            if c.expired { "true" } else { "false" },
        ]);
        self.w.write_record(&rec).map_err(|e| csv_err(&self.loc, e))
    }

    fn finish(mut self: Box<Self>) -> Result<(), Rejection> {
        self.w.flush().map_err(|e| write_err(&self.loc, &e))
    }
}

// ---- JSON lines ---------------------------------------------------------

struct JsonSink<W: Write> {
    w: W,
    kind: Kind,
    common: Common,
    loc: String,
    line: Vec<u8>,
}

/// One JSON line; key order is the column order.
#[derive(Serialize)]
struct JsonRow<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    isrc: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prefix: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope_kind: Option<&'a str>,
    decision: &'a str,
    reason: &'a str,
    decided_by: &'a [String],
    terms_url: Option<&'a str>,
    terms_sha256: Option<&'a str>,
    #[serde(rename = "use")]
    use_: &'a str,
    territory: Option<&'a str>,
    at: &'a str,
    snapshot_version: u64,
    manifest_sha256: &'a str,
    expired: bool,
}

impl<W: Write> Sink for JsonSink<W> {
    fn row(&mut self, r: &Row<'_>) -> Result<(), Rejection> {
        let c = &self.common;
        let (isrc, prefix, scope, scope_kind) = match self.kind {
            Kind::Entries => (Some(r.head[0]), None, None, None),
            Kind::Prefixes => (None, Some(r.head[0]), Some(r.head[1]), Some(r.head[2])),
        };
        let j = JsonRow {
            isrc,
            prefix,
            scope,
            scope_kind,
            decision: r.answer.decision.name(),
            reason: r.answer.reason.name(),
            decided_by: &r.answer.decided_by,
            terms_url: r.terms.url.as_deref(),
            terms_sha256: r.terms.sha256.as_deref(),
            use_: c.use_,
            territory: c.territory.as_deref(),
            at: &c.at_text,
            snapshot_version: c.version,
            manifest_sha256: &c.manifest_sha256,
            expired: c.expired,
        };
        self.line.clear();
        serde_json::to_writer(&mut self.line, &j)
            .map_err(|e| reject(&self.loc, Code::IoError, e.to_string()))?;
        self.line.push(b'\n');
        self.w
            .write_all(&self.line)
            .map_err(|e| write_err(&self.loc, &e))
    }

    fn finish(mut self: Box<Self>) -> Result<(), Rejection> {
        self.w.flush().map_err(|e| write_err(&self.loc, &e))
    }
}

// ---- Parquet ------------------------------------------------------------

/// The `created_by` of every Parquet file: fixed, so the bytes are too.
pub fn created_by() -> String {
    format!("consentry {}", env!("CARGO_PKG_VERSION"))
}

fn dict_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

/// The Arrow schema of `kind`'s Parquet file.
fn schema(kind: Kind) -> SchemaRef {
    let mut fields = match kind {
        Kind::Entries => vec![Field::new("isrc", DataType::Utf8, false)],
        Kind::Prefixes => vec![
            Field::new("prefix", DataType::Utf8, false),
            Field::new("scope", DataType::Utf8, false),
            Field::new("scope_kind", dict_type(), false),
        ],
    };
    fields.extend([
        Field::new("decision", dict_type(), false),
        Field::new("reason", dict_type(), false),
        Field::new(
            "decided_by",
            DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
            false,
        ),
        Field::new("terms_url", DataType::Utf8, true),
        Field::new("terms_sha256", DataType::Utf8, true),
        Field::new("use", dict_type(), false),
        Field::new("territory", dict_type(), true),
        Field::new("at", DataType::Date32, false),
        Field::new("snapshot_version", DataType::UInt64, false),
        Field::new("manifest_sha256", dict_type(), false),
        Field::new("expired", DataType::Boolean, false),
    ]);
    Arc::new(Schema::new(fields))
}

/// The key-value metadata of every Parquet file of one export.
fn key_value_metadata(kind: Kind, c: &Common) -> Vec<KeyValue> {
    [
        ("consentry.export.file", kind.name().to_string()),
        ("consentry.snapshot.version", c.version.to_string()),
        ("consentry.manifest.sha256", c.manifest_sha256.clone()),
        ("consentry.question.use", c.use_.to_string()),
        (
            "consentry.question.territory",
            c.territory.clone().unwrap_or_default(),
        ),
        ("consentry.question.at", c.at_text.clone()),
        ("consentry.expires", c.expires.clone()),
        ("consentry.expired", c.expired.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| KeyValue::new(k.to_string(), v))
    .collect()
}

struct ParquetSink<W: Write + Send> {
    writer: ArrowWriter<W>,
    kind: Kind,
    common: Common,
    loc: String,
    schema: SchemaRef,
    head: [StringBuilder; 2],
    scope_kind: StringDictionaryBuilder<Int32Type>,
    decision: StringDictionaryBuilder<Int32Type>,
    reason: StringDictionaryBuilder<Int32Type>,
    decided_by: ListBuilder<StringBuilder>,
    terms_url: StringBuilder,
    terms_sha256: StringBuilder,
    rows: usize,
}

fn pq_err(loc: &str, e: &parquet::errors::ParquetError) -> Rejection {
    reject(
        loc,
        Code::IoError,
        format!("cannot be written as Parquet: {e}"),
    )
}

impl<W: Write + Send> ParquetSink<W> {
    fn new(
        w: W,
        kind: Kind,
        common: Common,
        loc: String,
        row_group_rows: usize,
    ) -> Result<Self, Rejection> {
        let schema = schema(kind);
        let zstd = ZstdLevel::try_new(3).map_err(|e| pq_err(&loc, &e))?;
        let mut props = WriterProperties::builder()
            .set_created_by(created_by())
            .set_compression(Compression::ZSTD(zstd))
            .set_max_row_group_row_count(Some(row_group_rows.max(1)))
            .set_key_value_metadata(Some(key_value_metadata(kind, &common)))
            .set_sorting_columns(Some(vec![SortingColumn {
                column_idx: 0,
                descending: false,
                nulls_first: false,
            }]));
        // Unique keys gain nothing from a dictionary.
        props = match kind {
            Kind::Entries => props.set_column_dictionary_enabled(ColumnPath::from("isrc"), false),
            Kind::Prefixes => props,
        };
        let writer = ArrowWriter::try_new(w, schema.clone(), Some(props.build()))
            .map_err(|e| pq_err(&loc, &e))?;
        Ok(ParquetSink {
            writer,
            kind,
            common,
            loc,
            schema,
            head: [StringBuilder::new(), StringBuilder::new()],
            scope_kind: StringDictionaryBuilder::new(),
            decision: StringDictionaryBuilder::new(),
            reason: StringDictionaryBuilder::new(),
            decided_by: ListBuilder::new(StringBuilder::new()),
            terms_url: StringBuilder::new(),
            terms_sha256: StringBuilder::new(),
            rows: 0,
        })
    }

    /// Hand the rows built so far to the writer as one record batch.
    fn flush_batch(&mut self) -> Result<(), Rejection> {
        let n = self.rows;
        if n == 0 {
            return Ok(());
        }
        let c = &self.common;
        let constant_dict = |v: Option<&str>| -> ArrayRef {
            let keys = Int32Array::from(vec![v.map(|_| 0); n]);
            let values = StringArray::from(vec![v.unwrap_or("")]);
            Arc::new(DictionaryArray::<Int32Type>::new(keys, Arc::new(values)))
        };
        let mut cols: Vec<ArrayRef> = vec![Arc::new(self.head[0].finish())];
        if self.kind == Kind::Prefixes {
            cols.push(Arc::new(self.head[1].finish()));
            cols.push(Arc::new(self.scope_kind.finish()));
        }
        cols.extend([
            Arc::new(self.decision.finish()) as ArrayRef,
            Arc::new(self.reason.finish()),
            Arc::new(self.decided_by.finish()),
            Arc::new(self.terms_url.finish()),
            Arc::new(self.terms_sha256.finish()),
            constant_dict(Some(c.use_)),
            constant_dict(c.territory.as_deref()),
            Arc::new(Date32Array::from(vec![c.at; n])),
            Arc::new(UInt64Array::from(vec![c.version; n])),
            constant_dict(Some(&c.manifest_sha256)),
            Arc::new(BooleanArray::from(vec![c.expired; n])),
        ]);
        let batch = RecordBatch::try_new(self.schema.clone(), cols).map_err(|e| {
            reject(
                &self.loc,
                Code::IoError,
                format!("cannot be written as Parquet: {e}"),
            )
        })?;
        self.writer
            .write(&batch)
            .map_err(|e| pq_err(&self.loc, &e))?;
        self.rows = 0;
        Ok(())
    }
}

impl<W: Write + Send> Sink for ParquetSink<W> {
    fn row(&mut self, r: &Row<'_>) -> Result<(), Rejection> {
        self.head[0].append_value(r.head[0]);
        if self.kind == Kind::Prefixes {
            self.head[1].append_value(r.head[1]);
            self.scope_kind.append_value(r.head[2]);
        }
        self.decision.append_value(r.answer.decision.name());
        self.reason.append_value(r.answer.reason.name());
        for id in &r.answer.decided_by {
            self.decided_by.values().append_value(id);
        }
        self.decided_by.append(true);
        self.terms_url.append_option(r.terms.url.as_deref());
        self.terms_sha256.append_option(r.terms.sha256.as_deref());
        self.rows += 1;
        if self.rows >= BATCH_ROWS {
            self.flush_batch()?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<(), Rejection> {
        self.flush_batch()?;
        let loc = self.loc.clone();
        let mut w = self.writer.into_inner().map_err(|e| pq_err(&loc, &e))?;
        w.flush().map_err(|e| write_err(&loc, &e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Declarant, Policy};

    fn policy(who: &str, uses: [u8; 5], url: Option<&str>) -> Policy {
        Policy {
            from: None,
            uses,
            terms: url.map(|u| crate::model::Terms {
                url: u.into(),
                sha256: None,
            }),
            until: None,
            revoke: false,
            status: "active".into(),
            exclude: vec![],
            include: vec!["WW".into()],
            declarant: Declarant {
                id: format!("ddex:{who}"),
                name: who.into(),
                role: "label".into(),
            },
        }
    }

    fn rec(scope: &str, seq: u64, id: &str, p: &Policy) -> Record {
        Record {
            scope: Scope::parse(scope).unwrap(),
            seq,
            id: id.into(),
            policy: p.clone(),
        }
    }

    #[test]
    #[allow(clippy::many_single_char_names)]
    fn prefix_rows_answer_an_isrc_of_the_scope_without_an_entry_of_its_own() {
        let a = policy("A", [2, 0, 0, 0, 0], None);
        let b = policy("B", [0, 3, 0, 0, 0], Some("https://b.example/t"));
        let c = policy("C", [0, 3, 0, 0, 0], Some("https://c.example/t"));
        let records = vec![
            rec("GB-NWR", 1, "R", &a),
            rec("GB-NWR-25", 2, "Y", &b),
            rec("US-QZ9-24", 3, "U1", &b),
            rec("US-QZ9-24", 4, "U2", &c),
        ];
        let q = ExportQuestion {
            use_: Use::TrainAi,
            territory: None,
            at: 20_000,
        };
        let got = prefix_answers(&records, &q);
        let scopes: Vec<String> = got.iter().map(|g| g.0.canonical()).collect();
        assert_eq!(scopes, ["GB-NWR", "GB-NWR-25", "US-QZ9-24"]);
        // Each row equals the rule over every prefix entry covering an
        // ISRC of the scope that has no entry of its own.
        for (scope, isrc) in [
            ("GB-NWR", "GBNWR2400001"),
            ("GB-NWR-25", "GBNWR2500001"),
            ("US-QZ9-24", "USQZ92400001"),
        ] {
            let row = got.iter().find(|g| g.0.canonical() == scope).unwrap();
            let question = Question {
                isrc: Isrc::parse(isrc).unwrap(),
                use_: q.use_,
                territory: None,
                at: q.at,
            };
            let want = crate::lookup::lookup(
                &question,
                records.iter().map(|r| Entry {
                    scope: r.scope,
                    seq: r.seq,
                    id: &r.id,
                    policy: &r.policy,
                }),
            );
            assert_eq!(row.1, want, "{scope}");
        }
        // GB-NWR-25: A disallows, B is constrained → conflict, no terms.
        let y = &got[1];
        assert_eq!(y.1.reason, crate::model::Reason::Conflict);
        assert_eq!(terms_of(&y.1), Terms::default());
        // Two constrained deciders with different terms: both, in order.
        let u = &got[2];
        assert_eq!(u.1.decision, crate::model::Decision::Constrained);
        assert_eq!(
            terms_of(&u.1).url.as_deref(),
            Some("https://b.example/t https://c.example/t")
        );
        assert_eq!(terms_of(&u.1).sha256, None);
    }
}
