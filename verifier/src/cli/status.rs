//! `consentry status`: what the store holds (never fails on a clock or expiry problem: it reports).

use std::fmt::Write as _;
use std::io::Write;

use clap::Args;

use super::{Ctx, w};
use crate::error::Rejection;

/// Show the snapshot, its expiry, the keys and the store's size
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// JSON output
    #[arg(long, conflicts_with = "prometheus")]
    json: bool,
    /// Prometheus text format (for node_exporter's textfile collector)
    #[arg(long)]
    prometheus: bool,
    /// Exit with a monitoring status: 0 ok, 1 the snapshot expires within
    /// --warn-within (or the clock is behind it), 2 expired, never synced or
    /// not trusted (Nagios plugin convention); a one-line verdict goes to
    /// stderr
    #[arg(long)]
    check: bool,
    /// With --check: how close to expiry is a warning (e.g. 72h, 2d)
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "24h",
        requires = "check"
    )]
    warn_within: String,
}

/// The monitoring verdict of [`StatusArgs::check`].
fn verdict(st: &crate::store::Status, warn_within: u64) -> (i32, String) {
    let left = st.expires_in_s.unwrap_or(0);
    if st.expired {
        return (
            2,
            format!(
                "CRITICAL: expired at {}",
                st.expires.as_deref().unwrap_or("?")
            ),
        );
    }
    if let Some(p) = &st.snapshot_problem {
        return (2, format!("CRITICAL: {p}"));
    }
    if let Some(p) = &st.clock_problem {
        return (1, format!("WARNING: {p}"));
    }
    if left <= warn_within as i64 {
        return (
            1,
            format!(
                "WARNING: expires in {}s at {}",
                left,
                st.expires.as_deref().unwrap_or("?")
            ),
        );
    }
    (
        0,
        format!(
            "OK: snapshot version {}, expires in {}s",
            st.snapshot.as_ref().map_or(0, |n| n.version),
            left
        ),
    )
}

/// Metrics in the Prometheus text exposition format.
fn prometheus_text(st: &crate::store::Status, code: i32) -> String {
    let mut s = String::new();
    let mut metric = |name: &str, help: &str, v: i64| {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
    };
    metric(
        "consentry_status",
        "0 ok, 1 expires soon or clock behind, 2 expired, never synced or not trusted",
        i64::from(code),
    );
    if let Some(n) = &st.snapshot {
        metric(
            "consentry_snapshot_version",
            "the verified snapshot version",
            n.version as i64,
        );
        metric(
            "consentry_entries",
            "entries in the verified snapshot",
            n.entries as i64,
        );
    }
    if let Some(e) = st.expires_in_s {
        metric(
            "consentry_expires_in_seconds",
            "seconds until the root, head or manifest expires",
            e,
        );
    }
    if let Some(t) = st
        .last_sync
        .as_deref()
        .and_then(|t| crate::time::parse_timestamp(t).ok())
    {
        metric(
            "consentry_last_sync_timestamp_seconds",
            "when the last sync finished (Unix time)",
            t,
        );
    }
    metric(
        "consentry_store_bytes",
        "bytes under the store directory",
        st.store_bytes as i64,
    );
    s
}

pub(super) fn run(
    ctx: &Ctx<'_>,
    args: &StatusArgs,
    stdout: &mut dyn Write,
) -> Result<i32, Rejection> {
    let StatusArgs {
        json,
        prometheus,
        check,
        warn_within,
    } = args;
    let warn_within =
        crate::time::parse_duration(warn_within).map_err(|e| super::usage("--warn-within", e))?;
    let store = ctx.open()?;
    let st = store.status(ctx.now)?;
    let (code, line) = verdict(&st, warn_within);
    if *json {
        let mut s = serde_json::to_string_pretty(&st).unwrap_or_default();
        s.push('\n');
        w(stdout, &s)?;
    } else if *prometheus {
        w(stdout, &prometheus_text(&st, code))?;
    } else if !(*check && ctx.cli.quiet) {
        w(stdout, &status_text(&st))?;
    }
    if *check {
        eprintln!("{line}");
        return Ok(code);
    }
    Ok(0)
}

fn status_text(st: &crate::store::Status) -> String {
    let mut s = format!("store        {}\n", st.store);
    let _ = writeln!(
        s,
        "root         version {} (pinned {}), expires {}{}",
        st.root_version,
        st.pinned_root_version,
        st.root_expires,
        if st.root_expired { " [EXPIRED]" } else { "" }
    );
    for r in &st.roles {
        let _ = writeln!(
            s,
            "  {:<10} threshold {} of {}: {}",
            r.role,
            r.threshold,
            r.keyids.len(),
            r.keyids.join(" ")
        );
    }
    match &st.snapshot {
        Some(n) => {
            let exp = |b: bool| if b { " [EXPIRED]" } else { "" };
            let _ = writeln!(
                s,
                "snapshot     version {}, created {}\n  manifest   {} expires {}{}\n  head       version {} expires {}{}\n  entries    {} in {} ranges (base {}, {} layers)",
                n.version,
                n.created,
                n.manifest_sha256,
                n.manifest_expires,
                exp(n.manifest_expired),
                n.head_version,
                n.head_expires,
                exp(n.head_expired),
                n.entries,
                n.ranges,
                n.base,
                n.layers
            );
        }
        None => {
            let _ = writeln!(
                s,
                "snapshot     none ({})",
                st.snapshot_problem.as_deref().unwrap_or("not synced")
            );
        }
    }
    if let (Some(_), Some(p)) = (&st.snapshot, &st.snapshot_problem) {
        let _ = writeln!(s, "problem      {p}");
    }
    if let (Some(e), Some(left)) = (&st.expires, st.expires_in_s) {
        let _ = writeln!(
            s,
            "expires      {e} (in {left} s){}",
            if st.expired { " [EXPIRED]" } else { "" }
        );
    }
    let _ = writeln!(
        s,
        "source       {} (last sync {})",
        st.source.as_deref().unwrap_or("none recorded"),
        st.last_sync.as_deref().unwrap_or("never")
    );
    if let Some(c) = &st.clock_problem {
        let _ = writeln!(
            s,
            "clock        WRONG: the snapshot {c}; lookups are refused until the clock is right (or pass --now)"
        );
    }
    if let Some(l) = &st.log {
        let names: Vec<&str> = l.cosigners.iter().map(|(n, _)| n.as_str()).collect();
        let _ = writeln!(
            s,
            "log          {} size {} root {}\n  cosigned   by {} of {} needed: {}",
            l.origin,
            l.size,
            l.root_hash,
            l.cosigners.len(),
            l.witness_threshold,
            names.join(", ")
        );
    }
    let _ = writeln!(s, "store size   {} bytes", st.store_bytes);
    s
}
