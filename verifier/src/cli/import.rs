//! `consentry import`: a tar bundle, with no network.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::sync::{sync_json, sync_summary};
use super::{Ctx, w};
use crate::error::Rejection;
use crate::sync::SyncOptions;

/// Import a tar bundle (no network)
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The bundle (.tar)
    file: PathBuf,
    /// Keep the files of the N most recent manifests, remove older ones
    #[arg(long, value_name = "N")]
    keep_history: Option<usize>,
    /// Print the report as one JSON object
    #[arg(long)]
    json: bool,
}

pub(super) fn run(
    ctx: &Ctx<'_>,
    args: &ImportArgs,
    stdout: &mut dyn Write,
) -> Result<i32, Rejection> {
    let ImportArgs {
        file,
        keep_history,
        json,
    } = args;
    let now = ctx.now;
    let expiry = ctx.expiry;
    let open = || ctx.open();

    let store = open()?;
    let opts = SyncOptions {
        now,
        expiry,
        keep_history: *keep_history,
    };
    let rep = crate::bundle::import(&store, file, &opts)?;
    if *json {
        w(
            stdout,
            &format!("{}\n", sync_json(&rep, &file.display().to_string())),
        )?;
    } else if !ctx.cli.quiet {
        w(stdout, &sync_summary(&rep, "imported"))?;
    }
    Ok(0)
}
