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
    #[arg(long)]
    json: bool,
}

pub(super) fn run(
    ctx: &Ctx<'_>,
    args: &StatusArgs,
    stdout: &mut dyn Write,
) -> Result<i32, Rejection> {
    let StatusArgs { json } = args;
    let now = ctx.now;
    let open = || ctx.open();

    let store = open()?;
    let st = store.status(now)?;
    if *json {
        let mut s = serde_json::to_string_pretty(&st).unwrap_or_default();
        s.push('\n');
        w(stdout, &s)?;
    } else {
        w(stdout, &status_text(&st))?;
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
    if let Some(c) = &st.clock_problem {
        let _ = writeln!(
            s,
            "clock        WRONG: the snapshot {c}; lookups are refused until the clock is right (or pass --now)"
        );
    }
    let _ = writeln!(s, "store size   {} bytes", st.store_bytes);
    s
}
