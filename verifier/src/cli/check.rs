//! `consentry check`: questions in (arguments, plain lines, CSV, JSONL), answers out (text, CSV, JSONL), receipts.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use serde::Serialize;

use super::receipt::write_receipts;
use super::{Ctx, out_err, usage};
use crate::error::{Code, Rejection, reject};
use crate::lookup::{Answer, Question};
use crate::model::{Use, parse_territory};
use crate::store::{Reader, SnapshotInfo};
use crate::time::{Day, day_of, format_date, format_timestamp, parse_timestamp};

/// Answer consent questions for ISRCs
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// ISRCs to check (any spelling: hyphens, spaces, lower case, ISRC prefix)
    #[arg(value_name = "ISRC")]
    isrcs: Vec<String>,
    /// The use asked about: all, train-ai, train-genai, ai-use, search
    #[arg(long = "use", value_name = "USE", default_value = "train-ai")]
    use_: String,
    /// Territory (ISO 3166-1 alpha-2) [default: any]
    #[arg(long, value_name = "CC")]
    territory: Option<String>,
    /// When the use happens (YYYY-MM-DD or RFC 3339) [default: now]
    #[arg(long, value_name = "DATE|TIME")]
    at: Option<String>,
    /// JSON lines output
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    /// CSV output
    #[arg(long)]
    csv: bool,
    /// Read questions from FILE ("-" for stdin): one ISRC per line, CSV with
    /// an isrc column (optional use, territory, at columns), or JSON lines
    #[arg(long, value_name = "FILE|-")]
    input: Option<String>,
    /// Exit 1 unless every answer is this decision
    #[arg(long, value_enum, value_name = "DECISION")]
    require: Option<Require>,
    /// Write consent receipts (SPEC.md §13): into a directory, one file per
    /// answer ({n}-{ISRC}.receipt.cbor); to a file, one batch receipt
    #[arg(long, value_name = "DIR|FILE")]
    receipt: Option<PathBuf>,
    /// Answer from the kept snapshot that was current at this date
    /// (YYYY-MM-DD or RFC 3339; see sync --keep-history)
    #[arg(long, value_name = "DATE|TIME")]
    as_of: Option<String>,
}

pub(super) fn run(
    ctx: &Ctx<'_>,
    args: &CheckArgs,
    stdout: &mut dyn Write,
) -> Result<i32, Rejection> {
    let CheckArgs {
        isrcs,
        use_,
        territory,
        at,
        json,
        csv,
        input,
        require,
        receipt,
        as_of,
    } = args;
    let now = ctx.now;
    let expiry = ctx.expiry;
    let open = || ctx.open();

    if isrcs.is_empty() && input.is_none() {
        return Err(usage(
            "check",
            "give ISRCs as arguments or --input FILE (- for stdin)",
        ));
    }
    let defaults = Defaults {
        use_: Use::parse(crate::text::trim(use_)).map_err(|e| usage("--use", e))?,
        territory: territory
            .as_deref()
            .map(parse_territory)
            .transpose()
            .map_err(|e| usage("--territory", e))?,
        at: match at {
            Some(a) => day_of(parse_timestamp(crate::text::trim(a)).map_err(|e| usage("--at", e))?),
            None => day_of(now),
        },
    };
    let store = open()?;
    let reader = match as_of {
        Some(d) => {
            let d = crate::text::trim(d);
            let t = parse_timestamp(d).map_err(|e| usage("--as-of", e))?;
            // A date means the end of that day.
            let t = if d.len() == 10 { t + 86_399 } else { t };
            let r = store.reader_as_of(now, expiry, t)?;
            eprintln!(
                "note: answering as of {}: snapshot version {} (created {}, manifest {})",
                format_timestamp(t),
                r.snap().manifest.version,
                format_timestamp(r.snap().manifest.created as i64),
                r.snapshot().manifest_sha256
            );
            r
        }
        None => store.reader(now, expiry)?,
    };
    let mut builder = match receipt {
        Some(_) => Some(reader.receipt_builder()?),
        None => None,
    };
    if reader.snapshot().expired {
        eprintln!(
            "warning: answering from an EXPIRED snapshot (version {}); every answer is marked expired",
            reader.snapshot().version
        );
    }
    let format = if *json {
        Format::Json
    } else if *csv {
        Format::Csv
    } else {
        Format::Text
    };
    let mut out = Output::new(format, stdout)?;
    let mut all_allow = true;
    let mut ask = |row: Row, out: &mut Output| -> Result<(), Rejection> {
        let a = match builder.as_mut() {
            None => answer(&reader, &row)?,
            Some(b) => {
                let q = crate::lookup::parse_for_lookup(&row.input)
                    .ok()
                    .map(|isrc| Question {
                        isrc,
                        use_: row.use_,
                        territory: row.territory.clone(),
                        at: row.at,
                    });
                reader.answer_into(
                    b,
                    &row.input,
                    row.use_,
                    row.territory.as_deref(),
                    row.at,
                    q.as_ref(),
                )?
            }
        };
        all_allow &= a.decision == crate::model::Decision::Allow;
        out.write(&row, &a, reader.snapshot())
    };
    for i in isrcs {
        ask(
            Row {
                input: crate::text::trim(i).to_string(),
                use_: defaults.use_,
                territory: defaults.territory.clone(),
                at: defaults.at,
            },
            &mut out,
        )?;
    }
    if let Some(src) = input {
        let (name, r): (String, Box<dyn Read>) = if src == "-" {
            ("stdin".into(), Box::new(io::stdin().lock()))
        } else {
            let f = std::fs::File::open(src).map_err(|e| crate::fetch::io_error(src, &e))?;
            (src.clone(), Box::new(f))
        };
        read_rows(&name, BufReader::new(r), &defaults, &mut |row| {
            ask(row, &mut out)
        })?;
    }
    out.finish()?;
    if let (Some(path), Some(b)) = (receipt, builder.as_ref()) {
        write_receipts(path, b)?;
    }
    Ok(i32::from(require.is_some() && !all_allow))
}

/// Decisions `--require` can demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Require {
    Allow,
}

// ---- check: questions in, answers out ------------------------------------

/// Flag values that rows may override.
#[derive(Debug, Clone)]
struct Defaults {
    use_: Use,
    territory: Option<String>,
    at: Day,
}

/// One question as asked.
#[derive(Debug, Clone)]
struct Row {
    input: String,
    use_: Use,
    territory: Option<String>,
    at: Day,
}

fn answer(reader: &Reader<'_>, row: &Row) -> Result<Answer, Rejection> {
    reader.answer_input(&row.input, row.use_, row.territory.as_deref(), row.at)
}

/// Apply a row's optional overrides; errors name `where_`. Every value is
/// trimmed with [`crate::text::trim`] (SPEC.md §3.1), the one whitespace rule
/// of every entry point; an empty override means the command's default.
fn row_of(
    where_: &str,
    input: &str,
    use_: Option<&str>,
    territory: Option<&str>,
    at: Option<&str>,
    d: &Defaults,
) -> Result<Row, Rejection> {
    fn given(v: Option<&str>) -> Option<&str> {
        v.map(crate::text::trim).filter(|s| !s.is_empty())
    }
    let bad = |e: String| reject(where_, Code::BadInput, e);
    let use_ = match given(use_) {
        Some(u) => Use::parse(u).map_err(bad)?,
        None => d.use_,
    };
    let territory = match given(territory) {
        Some(t) => Some(parse_territory(t).map_err(bad)?),
        None => d.territory.clone(),
    };
    let at = match given(at) {
        Some(a) => day_of(parse_timestamp(a).map_err(bad)?),
        None => d.at,
    };
    Ok(Row {
        input: crate::text::trim(input).to_string(),
        use_,
        territory,
        at,
    })
}

/// The question columns of a CSV input header (SPEC.md §8.1).
const INPUT_COLUMNS: [&str; 4] = ["isrc", "use", "territory", "at"];

/// Read questions from `r`, streaming each to `f` in input order (SPEC.md
/// §8.1, "Batch input"). A UTF-8 byte order mark at the very start is
/// removed; blank lines (empty or ASCII whitespace only) are skipped; the
/// first other line picks the format: JSON lines if it starts with `{`, CSV
/// if one of its comma-separated names is `isrc`, else one ISRC per line.
fn read_rows(
    name: &str,
    mut r: impl BufRead,
    d: &Defaults,
    f: &mut dyn FnMut(Row) -> Result<(), Rejection>,
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
                f(json_row(&at_line(lineno), &line, d)?)?;
            }
            line.clear();
            if r.read_line(&mut line).map_err(|e| io(&e))? == 0 {
                return Ok(());
            }
        }
    }
    let header_name =
        |h: &str| crate::text::trim(crate::text::trim(h).trim_matches('"')).to_ascii_lowercase();
    let fields: Vec<String> = head.split(',').map(header_name).collect();
    if fields.iter().any(|h| h == "isrc") {
        let chained = io::Cursor::new(first).chain(r);
        let mut c = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .from_reader(chained);
        let headers: Vec<String> = c
            .headers()
            .map_err(|e| reject(at_line(skipped + 1), Code::BadInput, e.to_string()))?
            .iter()
            .map(|h| crate::text::trim(h).to_ascii_lowercase())
            .collect();
        for q in INPUT_COLUMNS {
            if headers.iter().filter(|h| *h == q).count() > 1 {
                return Err(reject(
                    at_line(skipped + 1),
                    Code::BadInput,
                    format!("the header names the column {q:?} twice; keep one"),
                ));
            }
        }
        let col = |n: &str| headers.iter().position(|h| h == n);
        let (ci, cu, ct, ca) = (col("isrc"), col("use"), col("territory"), col("at"));
        let Some(ci) = ci else {
            return Err(reject(
                at_line(skipped + 1),
                Code::BadInput,
                "the CSV header has no isrc column",
            ));
        };
        for rec in c.records() {
            let rec = rec.map_err(|e| {
                let line = e.position().map_or(0, csv::Position::line) as usize + skipped;
                reject(at_line(line), Code::BadInput, e.to_string())
            })?;
            let line = rec.position().map_or(0, csv::Position::line) as usize + skipped;
            // A blank line is one blank field: skipped, as in the other formats.
            if rec.len() == 1 && crate::text::is_blank(&rec[0]) {
                continue;
            }
            if rec.len() != headers.len() {
                return Err(reject(
                    at_line(line),
                    Code::BadInput,
                    format!(
                        "has {} fields; the header has {} columns",
                        rec.len(),
                        headers.len()
                    ),
                ));
            }
            let get = |i: Option<usize>| i.and_then(|i| rec.get(i));
            f(row_of(
                &at_line(line),
                rec.get(ci).unwrap_or(""),
                get(cu),
                get(ct),
                get(ca),
                d,
            )?)?;
        }
        return Ok(());
    }
    if fields.len() > 1 {
        return Err(reject(
            at_line(skipped + 1),
            Code::BadInput,
            "looks like CSV but has no isrc column in its header",
        ));
    }
    let mut lineno = skipped;
    let mut line = first;
    loop {
        lineno += 1;
        if !crate::text::is_blank(&line) {
            f(row_of(&at_line(lineno), &line, None, None, None, d)?)?;
        }
        line.clear();
        if r.read_line(&mut line).map_err(|e| io(&e))? == 0 {
            return Ok(());
        }
    }
}

/// One JSON line: an object whose `isrc` is a string; `use`, `territory`
/// and `at` are strings or null; other keys are ignored.
fn json_row(where_: &str, line: &str, d: &Defaults) -> Result<Row, Rejection> {
    let bad = |e: String| reject(where_, Code::BadInput, e);
    let v: serde_json::Value =
        serde_json::from_str(line).map_err(|e| bad(format!("not JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| bad("each line must be a JSON object".into()))?;
    let text = |k: &str| -> Result<Option<&str>, Rejection> {
        match obj.get(k) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(bad(format!("{k} must be a string"))),
        }
    };
    let isrc = text("isrc")?.ok_or_else(|| bad("the object has no isrc string".into()))?;
    row_of(
        where_,
        isrc,
        text("use")?,
        text("territory")?,
        text("at")?,
        d,
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Text,
    Json,
    Csv,
}

#[derive(Serialize)]
struct JsonSnapshot<'a> {
    version: u64,
    manifest_sha256: &'a str,
    expired: bool,
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
    snapshot: JsonSnapshot<'a>,
}

/// CSV output header.
pub const CSV_HEADER: [&str; 11] = [
    "input",
    "isrc",
    "use",
    "territory",
    "at",
    "decision",
    "reason",
    "decided_by",
    "snapshot_version",
    "manifest_sha256",
    "expired",
];

struct Output<'w> {
    format: Format,
    out: Option<&'w mut dyn Write>,
    csv: Option<csv::Writer<&'w mut dyn Write>>,
}

impl<'w> Output<'w> {
    fn new(format: Format, out: &'w mut dyn Write) -> Result<Output<'w>, Rejection> {
        if format == Format::Csv {
            let mut o = Output {
                format,
                out: None,
                csv: Some(csv::Writer::from_writer(out)),
            };
            o.csv_row(&CSV_HEADER.map(str::to_string))?;
            return Ok(o);
        }
        Ok(Output {
            format,
            out: Some(out),
            csv: None,
        })
    }

    fn csv_row(&mut self, fields: &[String]) -> Result<(), Rejection> {
        let Some(w) = self.csv.as_mut() else {
            return Ok(());
        };
        w.write_record(fields).map_err(|e| match e.into_kind() {
            csv::ErrorKind::Io(io) => out_err(&io),
            other => reject("stdout", Code::IoError, format!("{other:?}")),
        })
    }

    fn text(&mut self, s: &str) -> Result<(), Rejection> {
        match self.out.as_mut() {
            Some(o) => o.write_all(s.as_bytes()).map_err(|e| out_err(&e)),
            None => Ok(()),
        }
    }

    fn write(&mut self, row: &Row, a: &Answer, snap: &SnapshotInfo) -> Result<(), Rejection> {
        let isrc = crate::isrc::Isrc::parse(&row.input)
            .ok()
            .map(crate::isrc::Isrc::compact);
        match self.format {
            Format::Text => {
                let by = if a.decided_by.is_empty() {
                    "-".to_string()
                } else {
                    a.decided_by.join(" ")
                };
                let mark = if snap.expired {
                    "\tEXPIRED-SNAPSHOT"
                } else {
                    ""
                };
                // Every answer names its snapshot: version and the manifest
                // hash's first 12 hex digits (the full hash is in --json/--csv).
                self.text(&format!(
                    "{}\t{}\t{}\t{}\tv{}:{}{}\n",
                    row.input,
                    a.decision.name(),
                    a.reason.name(),
                    by,
                    snap.version,
                    &snap.manifest_sha256[..snap.manifest_sha256.len().min(12)],
                    mark
                ))
            }
            Format::Json => {
                let j = JsonAnswer {
                    input: &row.input,
                    isrc,
                    use_: row.use_.name(),
                    territory: row.territory.as_deref(),
                    at: format_date(row.at),
                    decision: a.decision.name(),
                    reason: a.reason.name(),
                    decided_by: &a.decided_by,
                    snapshot: JsonSnapshot {
                        version: snap.version,
                        manifest_sha256: &snap.manifest_sha256,
                        expired: snap.expired,
                    },
                };
                let mut s = serde_json::to_string(&j).unwrap_or_default();
                s.push('\n');
                self.text(&s)
            }
            Format::Csv => self.csv_row(&[
                row.input.clone(),
                isrc.unwrap_or_default(),
                row.use_.name().to_string(),
                row.territory.clone().unwrap_or_default(),
                format_date(row.at),
                a.decision.name().to_string(),
                a.reason.name().to_string(),
                a.decided_by.join(" "),
                snap.version.to_string(),
                snap.manifest_sha256.clone(),
                snap.expired.to_string(),
            ]),
        }
    }

    fn finish(&mut self) -> Result<(), Rejection> {
        if let Some(w) = self.csv.as_mut() {
            w.flush().map_err(|e| out_err(&e))?;
        }
        match self.out.as_mut() {
            Some(o) => o.flush().map_err(|e| out_err(&e)),
            None => Ok(()),
        }
    }
}
