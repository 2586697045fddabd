//! `consentry sync`: fetch and verify the current snapshot from a URL or a mirror directory.

use std::fmt::Write as _;
use std::io::Write;

use clap::Args;

use super::{Ctx, usage, w};
use crate::error::{Code, Rejection};
use crate::fetch::{Fetch, Timeouts};
use crate::sync::{SyncOptions, SyncReport};

/// Fetch and verify the current snapshot from a URL or a mirror directory
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// http(s) URL of the published site, or a directory laid out like one
    /// [default: the source of the store's last sync]
    source: Option<String>,
    /// Print the report as one JSON object
    #[arg(long)]
    json: bool,
    /// Overall time limit per HTTP request, in seconds [default: 120]
    #[arg(long, value_name = "SECS")]
    timeout: Option<u64>,
    /// Keep the files of the N most recent manifests, remove older ones
    #[arg(long, value_name = "N")]
    keep_history: Option<usize>,
}

pub(super) fn run(
    ctx: &Ctx<'_>,
    args: &SyncArgs,
    stdout: &mut dyn Write,
) -> Result<i32, Rejection> {
    let SyncArgs {
        source,
        json,
        timeout,
        keep_history,
    } = args;
    let now = ctx.now;
    let expiry = ctx.expiry;

    let store = ctx.open()?;
    let source = match source {
        Some(s) => s.clone(),
        None => store.sync_record().map(|r| r.source).ok_or_else(|| {
            usage(
                "sync",
                "no SOURCE given and this store has not synced before: give the site's URL or a mirror directory once; later runs reuse it",
            )
        })?,
    };
    let fetch: Box<dyn Fetch> = source_of(&source, *timeout)?;
    ctx.reporter.info(&format!("syncing from {source}"));
    let opts = SyncOptions {
        now,
        expiry,
        keep_history: *keep_history,
    };
    let rep = crate::sync::sync(&store, &*fetch, &opts)?;
    // Where to sync from next time; a directory is remembered absolute.
    let remembered = if source.contains("://") {
        source.clone()
    } else {
        std::fs::canonicalize(&source).map_or(source.clone(), |p| p.display().to_string())
    };
    let record = crate::store::SyncRecord {
        source: remembered,
        at: now,
        version: rep.to,
    };
    match store.record_sync(&record) {
        Ok(()) => {}
        // Another writer holds the store: the snapshot is synced and
        // verified; only "where from, when" is not remembered this time.
        Err(e) if e.code == Code::StoreBusy => ctx.reporter.warn(&format!(
            "synced, but the source was not recorded: {}",
            e.detail
        )),
        Err(e) => return Err(e),
    }
    if *json {
        w(stdout, &format!("{}\n", sync_json(&rep, &source)))?;
    } else if !ctx.cli.quiet {
        w(stdout, &sync_summary(&rep, "synced"))?;
    }
    Ok(0)
}

/// The report of a sync or import as one JSON object (README, "Machine-readable output").
pub(super) fn sync_json(r: &SyncReport, source: &str) -> serde_json::Value {
    serde_json::json!({
        "source": source,
        "from_version": r.from,
        "version": r.to,
        "head_version": r.head_version,
        "mode": r.mode.name(),
        "roots_added": r.roots_added,
        "files_fetched": r.files_fetched,
        "bytes_fetched": r.bytes_fetched,
        "files_reused": r.files_reused,
        "files_derived": r.files_derived,
        "layers_applied": r.layers_applied,
        "files_pruned": r.files_pruned,
        "manifest_sha256": r.manifest_sha256,
    })
}

pub(super) fn source_of(source: &str, timeout: Option<u64>) -> Result<Box<dyn Fetch>, Rejection> {
    let mut t = Timeouts::default();
    if let Some(s) = timeout {
        // Only an HTTP source has a timeout to refuse (a directory ignores it).
        let lower = source.to_ascii_lowercase();
        if s == 0 && (lower.starts_with("http://") || lower.starts_with("https://")) {
            return Err(usage("--timeout", "must be at least 1 second"));
        }
        t.overall = std::time::Duration::from_secs(s);
    }
    crate::http::open_source(source, t)
}

pub(super) fn sync_summary(r: &SyncReport, verb: &str) -> String {
    let from = r
        .from
        .map_or_else(|| "nothing".to_string(), |v| format!("version {v}"));
    let mut s = format!(
        "{verb}: {from} -> version {} ({}); head version {}\n",
        r.to,
        r.mode.name(),
        r.head_version
    );
    if !r.roots_added.is_empty() {
        let v: Vec<String> = r.roots_added.iter().map(u64::to_string).collect();
        let _ = writeln!(s, "  root rotated to version {}", v.join(", "));
    }
    let _ = writeln!(
        s,
        "  fetched {} files ({} bytes), reused {}, derived {}, layers applied {}",
        r.files_fetched, r.bytes_fetched, r.files_reused, r.files_derived, r.layers_applied
    );
    if r.files_pruned > 0 {
        let _ = writeln!(s, "  pruned {} old files", r.files_pruned);
    }
    let _ = writeln!(s, "  manifest {}", r.manifest_sha256);
    s
}
