//! `consentry serve`: the store as a read-only mirror of its site files.

use std::io::Write;

use clap::Args;

use super::{Ctx, out_err, w};
use crate::error::Rejection;

/// Serve the store as a read-only mirror over HTTP: only published site
/// files, never local/ (for the rest of a cluster to `sync` from)
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free one; the URL is printed)
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR:PORT")]
    listen: String,
}

pub(super) fn run(
    ctx: &Ctx<'_>,
    args: &ServeArgs,
    stdout: &mut dyn Write,
) -> Result<i32, Rejection> {
    let ServeArgs { listen } = args;
    let cli = ctx.cli;
    let now = ctx.now;
    let expiry = ctx.expiry;
    let open = || ctx.open();

    let store = open()?;
    // Refuse to mirror a store that does not verify.
    let snap = store.current(now, expiry)?;
    let m = crate::serve::Mirror::start(store.dir(), listen, store.limits())?;
    w(stdout, &format!("{}\n", m.url))?;
    stdout.flush().map_err(|e| out_err(&e))?;
    if !cli.quiet {
        eprintln!(
            "note: serving snapshot version {} of {} at {} (site files only; local/ is never served); stop with Ctrl-C",
            snap.manifest.version,
            store.dir().display(),
            m.url
        );
    }
    m.wait();
    Ok(0)
}
