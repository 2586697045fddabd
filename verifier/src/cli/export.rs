//! `consentry export`: the verified current state, answered for one question,
//! as Parquet, CSV or JSON lines files for DuckDB, Spark or pandas.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::{Ctx, usage, w};
use crate::error::Rejection;
use crate::export::{ExportQuestion, Options, ROW_GROUP_ROWS};
use crate::model::{Use, parse_territory};
use crate::time::{day_of, parse_timestamp};

/// Write the verified state, answered for one question, as files for
/// DuckDB, Spark or pandas
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Output format
    #[arg(long, value_enum, value_name = "FORMAT")]
    format: FormatArg,
    /// Output directory (created if missing): entries.EXT and prefixes.EXT
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// The use asked about: all, train-ai, train-genai, ai-use, search
    #[arg(long = "use", value_name = "USE", default_value = "train-ai")]
    use_: String,
    /// Territory (ISO 3166-1 alpha-2) [default: any]
    #[arg(long, value_name = "CC")]
    territory: Option<String>,
    /// When the use happens (YYYY-MM-DD or RFC 3339) [default: now]
    #[arg(long, value_name = "DATE|TIME")]
    at: Option<String>,
    /// Replace existing output files
    #[arg(long)]
    force: bool,
    /// Print a JSON summary on stdout
    #[arg(long)]
    json: bool,
}

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FormatArg {
    Parquet,
    Csv,
    Jsonl,
}

pub(super) fn run(
    ctx: &Ctx<'_>,
    args: &ExportArgs,
    stdout: &mut dyn Write,
) -> Result<i32, Rejection> {
    let ExportArgs {
        format,
        out,
        use_,
        territory,
        at,
        force,
        json,
    } = args;
    let q = ExportQuestion {
        use_: Use::parse(crate::text::trim(use_)).map_err(|e| usage("--use", e))?,
        territory: territory
            .as_deref()
            .map(parse_territory)
            .transpose()
            .map_err(|e| usage("--territory", e))?,
        at: match at {
            Some(a) => day_of(parse_timestamp(crate::text::trim(a)).map_err(|e| usage("--at", e))?),
            None => day_of(ctx.now),
        },
    };
    let opts = Options {
        format: match format {
            FormatArg::Parquet => crate::export::Format::Parquet,
            FormatArg::Csv => crate::export::Format::Csv,
            FormatArg::Jsonl => crate::export::Format::Jsonl,
        },
        out: out.clone(),
        force: *force,
        row_group_rows: ROW_GROUP_ROWS,
    };
    // The trust path of `check`: the pinned root, the head, the manifest,
    // their expiry under the same options; then the verified index.
    let store = ctx.open()?;
    let reader = store.reader(ctx.now, ctx.expiry)?;
    if reader.snapshot().expired {
        eprintln!(
            "warning: exporting from an EXPIRED snapshot (version {}); every row is marked expired",
            reader.snapshot().version
        );
    }
    let quiet = ctx.cli.quiet;
    let started = std::time::Instant::now();
    let total: u64 = (0..reader.range_count())
        .map(|i| reader.range_entries(i))
        .sum();
    let report = crate::export::export(&reader, &q, &opts, &mut |n| {
        if !quiet {
            eprintln!("note: exported {n} of at most {total} entries");
        }
    })?;
    let secs = started.elapsed().as_secs_f64();
    if !quiet {
        eprintln!(
            "note: exported snapshot version {} for --use {} --territory {} --at {} in {secs:.1} s ({:.0} rows/s)",
            report.snapshot.version,
            report.use_,
            report.territory.as_deref().unwrap_or("any"),
            report.at,
            report.entries.rows as f64 / secs.max(1e-9),
        );
    }
    if *json {
        let mut s = serde_json::to_string(&report).unwrap_or_default();
        s.push('\n');
        w(stdout, &s)?;
    } else {
        for f in [&report.entries, &report.prefixes] {
            w(
                stdout,
                &format!("{}\t{} rows\t{} bytes\n", f.path, f.rows, f.bytes),
            )?;
        }
    }
    Ok(0)
}
