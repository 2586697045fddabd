//! `consentry check`: questions in (arguments, plain lines, CSV, JSONL), answers out (text, CSV, JSONL), receipts.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use serde::Serialize;

use super::receipt::write_receipts;
use super::{Ctx, out_err, usage};
use crate::error::{Code, Rejection, reject};
use crate::lookup::{Answer, Question};
use crate::model::{Decision, Use, parse_territory};
use crate::store::{Reader, SnapshotInfo};
use crate::time::{Day, day_of, format_date, format_timestamp, parse_timestamp};

/// Answer consent questions for ISRCs
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// ISRCs to check (any spelling: hyphens, spaces, lower case, ISRC
    /// prefix); "-" reads questions from stdin, as does a piped stdin with no
    /// ISRCs given
    #[arg(value_name = "ISRC")]
    isrcs: Vec<String>,
    /// The use asked about (ASCII case-insensitive): all, train-ai,
    /// train-genai, ai-use, search
    #[arg(long = "use", value_name = "USE", default_value = "train-ai")]
    use_: String,
    /// Territory (ISO 3166-1 alpha-2, ASCII case-insensitive) [default: any]
    #[arg(long, value_name = "CC")]
    territory: Option<String>,
    /// When the use happens (YYYY-MM-DD or RFC 3339) [default: now]
    #[arg(long, value_name = "DATE|TIME")]
    at: Option<String>,
    /// JSON lines output (one object per answer; fields as the CSV columns)
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    /// CSV output (a header, then one row per answer)
    #[arg(long)]
    csv: bool,
    /// Read questions from FILE ("-" for stdin): one ISRC per line, a CSV or
    /// TSV table with a header naming the ISRC column (optional use,
    /// territory, at columns; other columns are passed through to CSV/JSON
    /// output), or JSON lines
    #[arg(long, value_name = "FILE|-")]
    input: Option<String>,
    /// Name of the ISRC column (or JSON key) of table input, ASCII
    /// case-insensitive
    #[arg(long, value_name = "NAME", default_value = "isrc")]
    column: String,
    /// Field delimiter of table input: "," "\t" (or "tab") ";" "|" [default:
    /// the first of these whose split of the header names the ISRC column]
    #[arg(long, value_name = "CHAR")]
    delimiter: Option<String>,
    /// Write only the answers with these decisions (repeatable or
    /// comma-separated), e.g. --keep allow to filter a manifest
    #[arg(long, value_enum, value_name = "DECISION", value_delimiter = ',')]
    keep: Vec<Keep>,
    /// Stop at the first row that cannot be asked (a bad use, territory or
    /// time, a row of the wrong width); without it such a row is answered
    /// unknown / bad_input with the reason in the error field
    #[arg(long)]
    strict: bool,
    /// Exit 1 unless every answer is this decision (stderr says how many were
    /// not, and the first few)
    #[arg(long, value_enum, value_name = "DECISION")]
    require: Option<Require>,
    /// Write consent receipts (SPEC.md §13): into a directory, one file per
    /// answer named N-ISRC.receipt.cbor; to a file, one batch receipt
    #[arg(long, value_name = "DIR|FILE")]
    receipt: Option<PathBuf>,
    /// Replace an existing --receipt file or receipts in the directory
    #[arg(long, requires = "receipt")]
    force: bool,
    /// Receipt format: compact (SPEC.md §13.4: the witnessed log's cosigned
    /// checkpoint instead of the manifest, a few KB at any registry size;
    /// needs a root that names witnesses), full (§13.1: head and manifest),
    /// or auto (compact when the store has a witnessed log, else full)
    #[arg(
        long,
        value_enum,
        value_name = "FORMAT",
        default_value = "auto",
        requires = "receipt"
    )]
    receipt_format: ReceiptFormat,
    /// Answer from the kept snapshot that was current at this date
    /// (YYYY-MM-DD or RFC 3339; see sync --keep-history)
    #[arg(long, value_name = "DATE|TIME")]
    as_of: Option<String>,
}

/// How many refused rows and non-allowed answers stderr names.
const FIRST_FEW: usize = 5;
/// Most rows answered together (`Reader::answer_many`): big enough that a
/// block's keys share index chunks, small enough that memory stays flat
/// (~40 MB) however long the input.
const BLOCK_ROWS: usize = 1 << 17;
/// Rows in a block from which answering is shared among the cores.
const PARALLEL_ROWS: usize = 8192;
/// Most threads a batch answers on.
const MAX_THREADS: usize = 8;
/// Input read at a time: a block ends early when this much has been used
/// and nothing more is buffered.
const INPUT_BUFFER: usize = 1 << 20;

pub(super) fn run(
    ctx: &Ctx<'_>,
    args: &CheckArgs,
    stdout: &mut dyn Write,
) -> Result<i32, Rejection> {
    use std::io::IsTerminal;
    let now = ctx.now;
    let expiry = ctx.expiry;
    let dash = args.isrcs.iter().any(|i| i == "-");
    let isrcs: Vec<&String> = args.isrcs.iter().filter(|i| *i != "-").collect();
    let input: Option<String> = match (&args.input, dash) {
        (Some(_), true) => {
            return Err(usage(
                "check",
                "\"-\" and --input both name an input; give one",
            ));
        }
        (Some(i), false) => Some(i.clone()),
        (None, true) => Some("-".into()),
        // A pipe into `consentry check` with nothing else asked is the input.
        (None, false) if isrcs.is_empty() && !io::stdin().is_terminal() => Some("-".into()),
        (None, false) => None,
    };
    if isrcs.is_empty() && input.is_none() {
        return Err(usage(
            "check",
            "give ISRCs as arguments, --input FILE, or pipe questions in (- for stdin)",
        ));
    }
    if let (Some(path), false) = (&args.receipt, args.force)
        && path.is_file()
    {
        return Err(usage(
            "--receipt",
            format!(
                "{} exists; pass --force to replace it, or choose another name",
                path.display()
            ),
        ));
    }
    let table = TableOptions {
        column: crate::text::trim(&args.column).to_ascii_lowercase(),
        delimiter: args
            .delimiter
            .as_deref()
            .map(parse_delimiter)
            .transpose()
            .map_err(|e| usage("--delimiter", e))?,
    };
    if table.column.is_empty() {
        return Err(usage("--column", "name the ISRC column"));
    }
    let defaults = Defaults {
        use_: parse_use(&args.use_).map_err(|e| usage("--use", e))?,
        territory: args
            .territory
            .as_deref()
            .map(parse_territory)
            .transpose()
            .map_err(|e| usage("--territory", e))?,
        at: match &args.at {
            Some(a) => day_of(parse_timestamp(crate::text::trim(a)).map_err(|e| usage("--at", e))?),
            None => day_of(now),
        },
    };
    let store = ctx.open()?;
    let reader = match &args.as_of {
        Some(d) => {
            let d = crate::text::trim(d);
            let t = parse_timestamp(d).map_err(|e| usage("--as-of", e))?;
            // A date means the end of that day.
            let t = if d.len() == 10 { t + 86_399 } else { t };
            let r = store.reader_as_of(now, expiry, t)?;
            ctx.reporter.info(&format!(
                "answering as of {}: snapshot version {} (created {}, manifest {})",
                format_timestamp(t),
                r.snap().manifest.version,
                format_timestamp(r.snap().manifest.created as i64),
                r.snapshot().manifest_sha256
            ));
            r
        }
        None => store.reader(now, expiry)?,
    };
    let mut builder = match &args.receipt {
        Some(_) => Some(reader.receipt_builder()?),
        None => None,
    };
    if reader.snapshot().expired {
        ctx.reporter.warn(&format!(
            "answering from an EXPIRED snapshot (version {}); every answer is marked expired",
            reader.snapshot().version
        ));
    }
    let format = if args.json {
        Format::Json
    } else if args.csv {
        Format::Csv
    } else {
        Format::Text
    };
    let mut out = Output::new(format, stdout);
    let mut tally = Tally::default();
    let progress = Progress::new(ctx, input.is_some());
    // One answered row out: the tally, --keep, the output line.
    let mut emit = |row: &Row, reply: &Reply, out: &mut Output| -> Result<(), Rejection> {
        let decision = reply.decision();
        tally.total += 1;
        if decision != Decision::Allow {
            tally.not_allow += 1;
            if tally.first_not_allow.len() < FIRST_FEW {
                tally.first_not_allow.push(format!(
                    "{} ({}/{})",
                    escape(&row.input),
                    decision.name(),
                    reply.reason()
                ));
            }
        }
        if args.keep.is_empty() || args.keep.iter().any(|k| k.decision() == decision) {
            out.write(row, reply, reader.snapshot())?;
        }
        Ok(())
    };
    // Rows read but not yet answered: answered together
    // (`Reader::answer_many`: in key order, each index chunk read and
    // verified once per block), written in input order. A block ends when
    // it is full or when the input has nothing more buffered, so a program
    // that writes one question and waits gets its answer at once.
    let mut pending: Vec<Asked> = Vec::new();
    // Readers for the other cores, opened when a block is big enough to
    // share (a one-ISRC check never opens them).
    let mut helpers: Vec<Reader> = Vec::new();
    let mut answer_pending =
        |pending: &mut Vec<Asked>, out: &mut Output| -> Result<(), Rejection> {
            let questions: Vec<Option<Question>> = pending
                .iter()
                .map(|asked| match asked {
                    Asked::Row(row) if builder.is_none() => question_of(row),
                    _ => None,
                })
                .collect();
            if helpers.is_empty() && questions.len() >= PARALLEL_ROWS {
                let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
                for _ in 1..cores.min(MAX_THREADS) {
                    helpers.push(reader.fork()?);
                }
            }
            let answers = reader.answer_many_with(&mut helpers, &questions)?;
            // One answer per pending row (unused for refused rows and when
            // receipts are written: those are answered row by row).
            for (asked, a) in pending.drain(..).zip(answers) {
                progress.tick();
                let (row, reply) = match asked {
                    Asked::Bad(bad) => {
                        if args.strict {
                            return Err(reject(bad.at, Code::BadInput, bad.error));
                        }
                        tally.bad += 1;
                        if tally.first_bad.len() < FIRST_FEW {
                            tally.first_bad.push(format!("{}: {}", bad.at, bad.error));
                        }
                        (bad.row, Reply::Refused(bad.error))
                    }
                    Asked::Row(row) => {
                        let a = match builder.as_mut() {
                            Some(b) => reader.answer_into(
                                b,
                                &row.input,
                                row.use_,
                                row.territory.as_deref(),
                                row.at,
                                question_of(&row).as_ref(),
                            )?,
                            None => a,
                        };
                        (row, Reply::Answered(a))
                    }
                };
                emit(&row, &reply, out)?;
            }
            Ok(())
        };
    for i in isrcs {
        pending.push(Asked::Row(Row::plain(crate::text::trim(i), &defaults)));
    }
    answer_pending(&mut pending, &mut out)?;
    if let Some(src) = &input {
        let (name, r): (String, Box<dyn Read>) = if src == "-" {
            ("stdin".into(), Box::new(io::stdin().lock()))
        } else {
            let f = std::fs::File::open(src).map_err(|e| crate::fetch::io_error(src, &e))?;
            (src.clone(), Box::new(f))
        };
        read_rows(
            &name,
            BufReader::with_capacity(INPUT_BUFFER, r),
            &defaults,
            &table,
            &mut out,
            &mut |asked, out| {
                if let Some(a) = asked {
                    // A row that cannot be asked is answered at once, so
                    // --strict stops where it used to, before reading on.
                    let now = matches!(a, Asked::Bad(_));
                    pending.push(a);
                    if now || pending.len() >= BLOCK_ROWS {
                        answer_pending(&mut pending, out)?;
                    }
                } else {
                    // Nothing more buffered: answer, and let the answers
                    // out before waiting for more input.
                    answer_pending(&mut pending, out)?;
                    out.flush()?;
                }
                Ok(())
            },
        )?;
        answer_pending(&mut pending, &mut out)?;
    }
    progress.done();
    out.finish()?;
    if tally.bad > 0 {
        ctx.reporter.warn(&format!(
            "{} of {} rows could not be asked and were answered unknown/bad_input (--strict stops at the first); first: {}",
            tally.bad,
            tally.total,
            tally.first_bad.join("; ")
        ));
    }
    if let (Some(path), Some(b)) = (&args.receipt, builder.as_ref()) {
        write_receipts(path, b, args.receipt_format, args.force)?;
    }
    if args.require.is_some() && tally.not_allow > 0 {
        eprintln!(
            "{} of {} answers are not allow (--require allow); first: {}",
            tally.not_allow,
            tally.total,
            tally.first_not_allow.join(", ")
        );
        return Ok(1);
    }
    Ok(0)
}

/// Counts kept for the summary lines on stderr.
#[derive(Debug, Default)]
struct Tally {
    total: u64,
    bad: u64,
    not_allow: u64,
    first_bad: Vec<String>,
    first_not_allow: Vec<String>,
}

/// A row count on stderr while a batch is read, only on a terminal.
struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    fn new(ctx: &Ctx<'_>, batch: bool) -> Progress {
        use std::io::IsTerminal;
        if !batch
            || ctx.cli.quiet
            || !io::stderr().is_terminal()
            || std::env::var_os("TERM").is_some_and(|t| t == "dumb")
        {
            return Progress(None);
        }
        let b =
            indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} checked {human_pos} rows ({per_sec})",
        ) {
            b.set_style(style);
        }
        b.enable_steady_tick(std::time::Duration::from_millis(200));
        b.tick();
        Progress(Some(b))
    }

    fn tick(&self) {
        if let Some(b) = &self.0 {
            b.inc(1);
        }
    }

    fn done(&self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

/// What one question became: an answer, or a row that could not be asked
/// (answered `unknown` / `bad_input`, the message in `error`).
#[derive(Debug)]
enum Reply {
    Answered(Answer),
    Refused(String),
}

impl Reply {
    fn decision(&self) -> Decision {
        match self {
            Reply::Answered(a) => a.decision,
            Reply::Refused(_) => Decision::Unknown,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Reply::Answered(a) => a.reason.name(),
            Reply::Refused(_) => BAD_INPUT_REASON,
        }
    }
}

/// The reason of a row that could not be asked (not a lookup reason: the
/// rule never ran).
const BAD_INPUT_REASON: &str = "bad_input";

/// `--use` and a row's use: one of the five names, ASCII case-insensitive.
fn parse_use(s: &str) -> Result<Use, String> {
    Use::parse(&crate::text::trim(s).to_ascii_lowercase())
}

/// `--delimiter`: one ASCII character, or the word `tab`.
fn parse_delimiter(s: &str) -> Result<u8, String> {
    match s {
        "tab" | "\\t" | "\t" => Ok(b'\t'),
        _ if s.len() == 1 && s.is_ascii() && s != "\"" && s != "\n" && s != "\r" => {
            Ok(s.as_bytes()[0])
        }
        _ => Err(format!(
            "{s:?} is not one ASCII character; use , tab ; or |"
        )),
    }
}

/// Escape what text output echoes from input, so one answer stays one line
/// of tab-separated fields.
fn escape(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(|c| c.is_control() || c == '\\') {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut o = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\t' => o.push_str("\\t"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\\' => o.push_str("\\\\"),
            c if c.is_control() => {
                use std::fmt::Write as _;
                let _ = write!(o, "\\u{{{:x}}}", c as u32);
            }
            c => o.push(c),
        }
    }
    std::borrow::Cow::Owned(o)
}

/// `--receipt-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReceiptFormat {
    Auto,
    Compact,
    Full,
}

/// Decisions `--require` can demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Require {
    Allow,
}

/// Decisions `--keep` can select.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Keep {
    Allow,
    Disallow,
    Constrained,
    Unknown,
}

impl Keep {
    fn decision(self) -> Decision {
        match self {
            Keep::Allow => Decision::Allow,
            Keep::Disallow => Decision::Disallow,
            Keep::Constrained => Decision::Constrained,
            Keep::Unknown => Decision::Unknown,
        }
    }
}

// ---- check: questions in, answers out ------------------------------------

/// Flag values that rows may override.
#[derive(Debug, Clone)]
struct Defaults {
    use_: Use,
    territory: Option<String>,
    at: Day,
}

/// How table input is read: `--column`, `--delimiter`.
#[derive(Debug, Clone)]
struct TableOptions {
    /// The ISRC column, ASCII-lower-cased.
    column: String,
    delimiter: Option<u8>,
}

/// One question as asked, with the input's other columns (passed through
/// to CSV and JSON output).
#[derive(Debug, Clone)]
struct Row {
    input: String,
    use_: Use,
    territory: Option<String>,
    at: Day,
    extra: Extra,
}

/// The input's other columns of one row.
#[derive(Debug, Clone, Default)]
enum Extra {
    #[default]
    None,
    /// Table cells, in the order of [`Output::extra_names`].
    Cells(Vec<String>),
    /// A JSON line's other keys (JSON output only).
    Json(serde_json::Map<String, serde_json::Value>),
}

impl Row {
    fn plain(input: &str, d: &Defaults) -> Row {
        Row {
            input: input.to_string(),
            use_: d.use_,
            territory: d.territory.clone(),
            at: d.at,
            extra: Extra::None,
        }
    }
}

/// A row read from input: a question, or one that cannot be asked.
#[derive(Debug)]
enum Asked {
    Row(Row),
    Bad(BadRow),
}

/// A row that cannot be asked: where, why, and the row as far as it was read.
#[derive(Debug)]
struct BadRow {
    at: String,
    error: String,
    row: Row,
}

/// The question a row asks; `None` when its input is not an ISRC.
fn question_of(row: &Row) -> Option<Question> {
    crate::lookup::parse_for_lookup(&row.input)
        .ok()
        .map(|isrc| Question {
            isrc,
            use_: row.use_,
            territory: row.territory.clone(),
            at: row.at,
        })
}

/// Apply a row's optional overrides; a bad one makes a [`BadRow`] at
/// `where_`. Every value is trimmed with [`crate::text::trim`] (SPEC.md
/// §3.1), the one whitespace rule of every entry point; an empty override
/// means the command's default.
fn row_of(where_: &str, input: &str, over: [Option<&str>; 3], d: &Defaults, extra: Extra) -> Asked {
    fn given(v: Option<&str>) -> Option<&str> {
        v.map(crate::text::trim).filter(|s| !s.is_empty())
    }
    let [use_, territory, at] = over;
    let mut row = Row {
        input: crate::text::trim(input).to_string(),
        use_: d.use_,
        territory: d.territory.clone(),
        at: d.at,
        extra,
    };
    let parsed = (|| -> Result<(), String> {
        if let Some(u) = given(use_) {
            row.use_ = parse_use(u).map_err(|e| format!("use: {e}"))?;
        }
        if let Some(t) = given(territory) {
            row.territory = Some(parse_territory(t).map_err(|e| format!("territory: {e}"))?);
        }
        if let Some(a) = given(at) {
            row.at = day_of(parse_timestamp(a).map_err(|e| format!("at: {e}"))?);
        }
        Ok(())
    })();
    match parsed {
        Ok(()) => Asked::Row(row),
        Err(error) => Asked::Bad(BadRow {
            at: where_.to_string(),
            error,
            row,
        }),
    }
}

/// The question columns of table input besides the ISRC column (SPEC.md §8.1).
const QUESTION_COLUMNS: [&str; 3] = ["use", "territory", "at"];

/// Delimiters tried, in order, when `--delimiter` is not given.
const DELIMITERS: [u8; 4] = [b',', b'\t', b';', b'|'];

/// A header name as compared: trimmed, any `"` at either end removed,
/// trimmed again, ASCII-lower-cased.
fn header_name(h: &str) -> String {
    crate::text::trim(crate::text::trim(h).trim_matches('"')).to_ascii_lowercase()
}

/// Where [`read_rows`] sends each row, and `None` when the input has
/// nothing more buffered (the next read may wait).
type RowSink<'a> = dyn FnMut(Option<Asked>, &mut Output<'_>) -> Result<(), Rejection> + 'a;

/// Read questions from `r`, streaming each to `f` in input order (SPEC.md
/// §8.1, "Batch input"). A UTF-8 byte order mark at the very start is
/// removed; blank lines (empty or ASCII whitespace only) are skipped; the
/// first other line picks the format: JSON lines if it starts with `{`; a
/// table if, split at the delimiter (given, or the first of `, TAB ; |` that
/// works), one of its names is the ISRC column; an error if it holds one of
/// those delimiters but names no ISRC column; else one ISRC per line.
#[allow(clippy::many_single_char_names)]
fn read_rows<R: Read>(
    name: &str,
    mut r: BufReader<R>,
    d: &Defaults,
    t: &TableOptions,
    out: &mut Output<'_>,
    f: &mut RowSink<'_>,
) -> Result<(), Rejection> {
    let io = |e: &io::Error| crate::fetch::io_error(name, e);
    let at_line = |n: usize| format!("{name}:{n}");
    let mut first = String::new();
    // Skip leading blank lines, keeping count for line numbers.
    let mut skipped = 0usize;
    loop {
        first.clear();
        if r.read_line(&mut first).map_err(|e| io(&e))? == 0 {
            return Ok(());
        }
        if skipped == 0
            && let Some(rest) = first.strip_prefix('\u{feff}')
        {
            first = rest.to_string();
        }
        if !crate::text::is_blank(&first) {
            break;
        }
        skipped += 1;
    }
    let head = crate::text::trim(&first).to_string();
    if head.starts_with('{') {
        let mut lineno = skipped;
        let mut line = first;
        loop {
            lineno += 1;
            if !crate::text::is_blank(&line) {
                f(Some(json_row(&at_line(lineno), &line, d, &t.column)?), out)?;
            }
            if r.buffer().is_empty() {
                f(None, out)?;
            }
            line.clear();
            if r.read_line(&mut line).map_err(|e| io(&e))? == 0 {
                return Ok(());
            }
        }
    }
    let names_column = |delim: u8| {
        head.split(delim as char)
            .map(header_name)
            .any(|h| h == t.column)
    };
    let delimiter = match t.delimiter {
        Some(dl) => Some(dl).filter(|dl| names_column(*dl)),
        None => DELIMITERS.into_iter().find(|dl| names_column(*dl)),
    };
    let Some(delimiter) = delimiter else {
        let held = t
            .delimiter
            .into_iter()
            .chain(DELIMITERS)
            .find(|dl| head.as_bytes().contains(dl));
        if let Some(dl) = held {
            return Err(reject(
                at_line(skipped + 1),
                Code::BadInput,
                format!(
                    "looks like a table ({} in the first line) but no header names the ISRC column {:?}; name it with --column NAME (and --delimiter if needed)",
                    match dl {
                        b'\t' => "a tab".to_string(),
                        c => format!("{:?}", c as char),
                    },
                    t.column
                ),
            ));
        }
        if t.column != "isrc" || t.delimiter.is_some() {
            return Err(reject(
                at_line(skipped + 1),
                Code::BadInput,
                format!(
                    "--column/--delimiter were given but the first line is not a header naming {:?}",
                    t.column
                ),
            ));
        }
        let mut line = first;
        loop {
            if !crate::text::is_blank(&line) {
                // No overrides: a plain line is always a question.
                f(
                    Some(Asked::Row(Row::plain(crate::text::trim(&line), d))),
                    out,
                )?;
            }
            if r.buffer().is_empty() {
                f(None, out)?;
            }
            line.clear();
            if r.read_line(&mut line).map_err(|e| io(&e))? == 0 {
                return Ok(());
            }
        }
    };
    let chained = io::Cursor::new(first).chain(r);
    let mut c = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(chained);
    let headers: Vec<String> = c
        .headers()
        .map_err(|e| reject(at_line(skipped + 1), Code::BadInput, e.to_string()))?
        .iter()
        .map(header_name)
        .collect();
    for q in std::iter::once(t.column.as_str()).chain(QUESTION_COLUMNS) {
        if headers.iter().filter(|h| *h == q).count() > 1 {
            return Err(reject(
                at_line(skipped + 1),
                Code::BadInput,
                format!("the header names the column {q:?} twice; keep one"),
            ));
        }
    }
    let col = |n: &str| headers.iter().position(|h| h == n);
    let Some(ci) = col(&t.column) else {
        return Err(reject(
            at_line(skipped + 1),
            Code::BadInput,
            format!("the header has no {:?} column", t.column),
        ));
    };
    let (cu, ct, ca) = (col("use"), col("territory"), col("at"));
    let question = [Some(ci), cu, ct, ca];
    let extra_idx: Vec<usize> = (0..headers.len())
        .filter(|i| !question.contains(&Some(*i)))
        .collect();
    let raw_headers: Vec<String> = c
        .headers()
        .map(|h| h.iter().map(|s| crate::text::trim(s).to_string()).collect())
        .unwrap_or_default();
    out.set_extra_names(
        &at_line(skipped + 1),
        extra_idx.iter().map(|&i| raw_headers[i].clone()).collect(),
    )?;
    for rec in c.records() {
        let rec = match rec {
            Ok(rec) => rec,
            Err(e) => {
                let line = e.position().map_or(0, csv::Position::line) as usize + skipped;
                return Err(reject(at_line(line), Code::BadInput, e.to_string()));
            }
        };
        let line = rec.position().map_or(0, csv::Position::line) as usize + skipped;
        // A blank line is one blank field: skipped, as in the other formats.
        if rec.len() == 1 && crate::text::is_blank(&rec[0]) {
            continue;
        }
        let get = |i: Option<usize>| i.and_then(|i| rec.get(i));
        let extra = Extra::Cells(
            extra_idx
                .iter()
                .map(|&i| rec.get(i).unwrap_or("").to_string())
                .collect(),
        );
        let asked = if rec.len() == headers.len() {
            row_of(
                &at_line(line),
                get(Some(ci)).unwrap_or(""),
                [get(cu), get(ct), get(ca)],
                d,
                extra,
            )
        } else {
            Asked::Bad(BadRow {
                at: at_line(line),
                error: format!(
                    "has {} fields; the header has {} columns",
                    rec.len(),
                    headers.len()
                ),
                row: Row {
                    extra,
                    ..Row::plain(crate::text::trim(get(Some(ci)).unwrap_or("")), d)
                },
            })
        };
        f(Some(asked), out)?;
    }
    Ok(())
}

/// One JSON line: an object whose ISRC key (`--column`, default `isrc`) is a
/// string; `use`, `territory` and `at` are strings or null; other keys are
/// passed through to JSON output. A line that is not such an object cannot
/// be read further and is an error.
#[allow(clippy::many_single_char_names)]
fn json_row(where_: &str, line: &str, d: &Defaults, column: &str) -> Result<Asked, Rejection> {
    let bad = |e: String| reject(where_, Code::BadInput, e);
    let v: serde_json::Value =
        serde_json::from_str(line).map_err(|e| bad(format!("not JSON: {e}")))?;
    let serde_json::Value::Object(mut obj) = v else {
        return Err(bad("each line must be a JSON object".into()));
    };
    let mut take = |k: &str| -> Result<Option<String>, String> {
        match obj.remove(k) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(format!("{k} must be a string")),
        }
    };
    let isrc = take(column);
    let (u, t, a) = (take("use"), take("territory"), take("at"));
    let isrc = match isrc {
        Ok(Some(i)) => i,
        Ok(None) => return Err(bad(format!("the object has no {column} string"))),
        Err(e) => return Err(bad(e)),
    };
    let extra = Extra::Json(obj);
    match (u, t, a) {
        (Ok(u), Ok(t), Ok(a)) => Ok(row_of(
            where_,
            &isrc,
            [u.as_deref(), t.as_deref(), a.as_deref()],
            d,
            extra,
        )),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => Ok(Asked::Bad(BadRow {
            at: where_.to_string(),
            error: e,
            row: Row {
                extra,
                ..Row::plain(crate::text::trim(&isrc), d)
            },
        })),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Text,
    Json,
    Csv,
}

/// Output fields, in CSV column order; JSON objects use the same names
/// (`decided_by`, `terms_url` and `terms_sha256` as arrays, `snapshot_version`
/// as a number, `expired` as a boolean, absent values as null).
pub const CSV_HEADER: [&str; 14] = [
    "input",
    "isrc",
    "use",
    "territory",
    "at",
    "decision",
    "reason",
    "decided_by",
    "terms_url",
    "terms_sha256",
    "snapshot_version",
    "manifest_sha256",
    "expired",
    "error",
];

fn is_answer_field(name: &str) -> bool {
    CSV_HEADER.contains(&name.to_ascii_lowercase().as_str())
}

/// The output name of an input column passed through: its own, or
/// `input_NAME` when NAME is an answer field.
fn passed_name(name: &str) -> String {
    if is_answer_field(name) {
        format!("input_{name}")
    } else {
        name.to_string()
    }
}

#[derive(Serialize)]
struct JsonAnswer<'a> {
    input: &'a str,
    isrc: Option<String>,
    #[serde(rename = "use")]
    use_: &'a str,
    territory: Option<&'a str>,
    at: String,
    decision: &'a str,
    reason: &'a str,
    decided_by: &'a [String],
    terms_url: Vec<&'a str>,
    terms_sha256: Vec<Option<String>>,
    snapshot_version: u64,
    manifest_sha256: &'a str,
    expired: bool,
    error: Option<&'a str>,
}

struct Output<'w> {
    format: Format,
    out: &'w mut dyn Write,
    /// Names of the input's other table columns, appended to CSV output.
    extra_names: Vec<String>,
    header_written: bool,
    line: Vec<u8>,
}

impl<'w> Output<'w> {
    fn new(format: Format, out: &'w mut dyn Write) -> Output<'w> {
        Output {
            format,
            out,
            extra_names: Vec::new(),
            header_written: false,
            line: Vec::new(),
        }
    }

    /// The input table's other columns: passed through after the answer
    /// fields. A name that is already an answer field (compared ASCII
    /// case-insensitively) is prefixed `input_` — the golden lookups file's
    /// expected `decision` becomes `input_decision` beside the answer's.
    fn set_extra_names(&mut self, at: &str, names: Vec<String>) -> Result<(), Rejection> {
        let names: Vec<String> = names.into_iter().map(|n| passed_name(&n)).collect();
        let mut seen = std::collections::HashSet::new();
        if let Some(n) = names
            .iter()
            .find(|n| !seen.insert(n.to_ascii_lowercase()) || is_answer_field(n))
        {
            return Err(reject(
                at,
                Code::BadInput,
                format!(
                    "the header names the column {n:?} twice (after renaming answer fields to input_NAME); keep one"
                ),
            ));
        }
        self.extra_names = names;
        Ok(())
    }

    fn csv_record<'a>(
        &mut self,
        fields: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), Rejection> {
        self.line.clear();
        {
            let mut w = csv::WriterBuilder::new().from_writer(&mut self.line);
            w.write_record(fields)
                .map_err(|e| reject("stdout", Code::IoError, format!("CSV output: {e}")))?;
            w.flush().map_err(|e| out_err(&e))?;
        }
        self.out.write_all(&self.line).map_err(|e| out_err(&e))
    }

    fn text(&mut self, s: &str) -> Result<(), Rejection> {
        self.out.write_all(s.as_bytes()).map_err(|e| out_err(&e))
    }

    /// The CSV header (answer fields, then the input's columns), once.
    fn csv_header(&mut self) -> Result<(), Rejection> {
        if self.header_written {
            return Ok(());
        }
        self.header_written = true;
        let names: Vec<String> = CSV_HEADER
            .iter()
            .map(|s| (*s).to_string())
            .chain(self.extra_names.iter().cloned())
            .collect();
        self.csv_record(names.iter().map(String::as_str))
    }

    fn write(&mut self, row: &Row, reply: &Reply, snap: &SnapshotInfo) -> Result<(), Rejection> {
        let isrc = || {
            crate::isrc::Isrc::parse(&row.input)
                .ok()
                .map(crate::isrc::Isrc::compact)
        };
        let (by, terms, error): (&[String], &[crate::model::Terms], Option<&str>) = match reply {
            Reply::Answered(a) => (&a.decided_by, &a.terms, None),
            Reply::Refused(e) => (&[], &[], Some(e.as_str())),
        };
        let decision = reply.decision().name();
        let reason = reply.reason();
        let terms_url: Vec<&str> = terms.iter().map(|t| t.url.as_str()).collect();
        let terms_sha: Vec<Option<String>> =
            terms.iter().map(|t| t.sha256.map(hex::encode)).collect();
        match self.format {
            Format::Text => {
                // Built in place: this is the line a million-row batch
                // writes a million times.
                let l = &mut self.line;
                l.clear();
                for field in [escape(&row.input).as_ref(), decision, reason] {
                    l.extend_from_slice(field.as_bytes());
                    l.push(b'\t');
                }
                if by.is_empty() {
                    l.push(b'-');
                }
                for (k, id) in by.iter().enumerate() {
                    if k > 0 {
                        l.push(b' ');
                    }
                    l.extend_from_slice(id.as_bytes());
                }
                // Every answer names its snapshot: version and the manifest
                // hash's first 12 hex digits (the full hash is in --json/--csv).
                l.extend_from_slice(b"\tv");
                l.extend_from_slice(snap.version.to_string().as_bytes());
                l.push(b':');
                l.extend_from_slice(
                    snap.manifest_sha256.as_bytes()[..snap.manifest_sha256.len().min(12)].as_ref(),
                );
                if !terms_url.is_empty() {
                    l.extend_from_slice(b"\tterms ");
                    l.extend_from_slice(terms_url.join(" ").as_bytes());
                }
                if snap.expired {
                    l.extend_from_slice(b"\tEXPIRED-SNAPSHOT");
                }
                if let Some(e) = error {
                    l.extend_from_slice(b"\terror: ");
                    l.extend_from_slice(escape(e).as_bytes());
                }
                l.push(b'\n');
                self.out.write_all(l).map_err(|e| out_err(&e))
            }
            Format::Json => {
                let j = JsonAnswer {
                    input: &row.input,
                    isrc: isrc(),
                    use_: row.use_.name(),
                    territory: row.territory.as_deref(),
                    at: format_date(row.at),
                    decision,
                    reason,
                    decided_by: by,
                    terms_url,
                    terms_sha256: terms_sha,
                    snapshot_version: snap.version,
                    manifest_sha256: &snap.manifest_sha256,
                    expired: snap.expired,
                    error,
                };
                let mut v = serde_json::to_value(&j).unwrap_or_default();
                if let Some(obj) = v.as_object_mut() {
                    match &row.extra {
                        Extra::None => {}
                        Extra::Cells(cells) => {
                            for (n, c) in self.extra_names.iter().zip(cells) {
                                obj.insert(n.clone(), serde_json::Value::String(c.clone()));
                            }
                        }
                        Extra::Json(m) => {
                            for (k, val) in m {
                                obj.entry(passed_name(k)).or_insert_with(|| val.clone());
                            }
                        }
                    }
                }
                let mut s = serde_json::to_string(&v).unwrap_or_default();
                s.push('\n');
                self.text(&s)
            }
            Format::Csv => {
                self.csv_header()?;
                let sha_cells: Vec<String> = terms_sha
                    .iter()
                    .map(|s| s.clone().unwrap_or_else(|| "-".into()))
                    .collect();
                let version = snap.version.to_string();
                let fixed = [
                    row.input.clone(),
                    isrc().unwrap_or_default(),
                    row.use_.name().to_string(),
                    row.territory.clone().unwrap_or_default(),
                    format_date(row.at),
                    decision.to_string(),
                    reason.to_string(),
                    by.join(" "),
                    terms_url.join(" "),
                    sha_cells.join(" "),
                    version,
                    snap.manifest_sha256.clone(),
                    snap.expired.to_string(),
                    error.unwrap_or("").to_string(),
                ];
                let cells: Vec<String> = match &row.extra {
                    Extra::Cells(c) => c.clone(),
                    _ => vec![String::new(); self.extra_names.len()],
                };
                let all: Vec<&str> = fixed
                    .iter()
                    .map(String::as_str)
                    .chain(cells.iter().map(String::as_str))
                    .collect();
                self.csv_record(all)
            }
        }
    }

    fn flush(&mut self) -> Result<(), Rejection> {
        self.out.flush().map_err(|e| out_err(&e))
    }

    fn finish(&mut self) -> Result<(), Rejection> {
        if self.format == Format::Csv {
            // No answers (all filtered out, or no input): still a header.
            self.csv_header()?;
        }
        self.out.flush().map_err(|e| out_err(&e))
    }
}
