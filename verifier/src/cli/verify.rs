//! `consentry verify`: re-check the whole store; `--repair` rebuilds the index.

use std::io::Write;

use clap::Args;

use super::{Ctx, w};
use crate::error::Rejection;
use crate::store::IndexCheck;

/// Re-check the whole store from the pinned root; writes nothing (exit 1
/// if the local index is missing or damaged)
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Rebuild a missing or damaged local index from the verified files
    /// and remove leftovers of killed runs (the one write verify makes)
    #[arg(long)]
    repair: bool,
    /// Print the report as one JSON object
    #[arg(long)]
    json: bool,
}

pub(super) fn run(
    ctx: &Ctx<'_>,
    args: &VerifyArgs,
    stdout: &mut dyn Write,
) -> Result<i32, Rejection> {
    let VerifyArgs { repair, json } = args;
    let now = ctx.now;
    let expiry = ctx.expiry;
    let open = || ctx.open();

    let store = open()?;
    let v = if *repair {
        store.verify_and_repair(now, expiry)?
    } else {
        store.verify(now, expiry)?
    };
    let index = match &v.index {
        IndexCheck::Intact => "index intact".to_string(),
        IndexCheck::Missing => {
            "index MISSING: lookups build a temporary one each run; `consentry verify --repair` rebuilds it".to_string()
        }
        IndexCheck::Corrupt(why) => format!(
            "index DAMAGED ({why}): lookups build a temporary one each run; `consentry verify --repair` rebuilds it"
        ),
        IndexCheck::Built => "index was missing: built".to_string(),
        IndexCheck::Rebuilt(why) => format!("index was corrupt ({why}): rebuilt"),
    };
    let code = i32::from(v.index != IndexCheck::Intact);
    if *json {
        let (state, detail) = match &v.index {
            IndexCheck::Intact => ("intact", None),
            IndexCheck::Missing => ("missing", None),
            IndexCheck::Corrupt(why) => ("damaged", Some(why.as_str())),
            IndexCheck::Built => ("built", None),
            IndexCheck::Rebuilt(why) => ("rebuilt", Some(why.as_str())),
        };
        let j = serde_json::json!({
            "version": v.version,
            "manifest_sha256": v.manifest_sha256,
            "expired": v.expired,
            "root_version": v.root_version,
            "files_checked": v.files_checked,
            "bytes_checked": v.bytes_checked,
            "entries": v.entries,
            "index": state,
            "index_problem": detail,
        });
        w(stdout, &format!("{j}\n"))?;
        return Ok(code);
    }
    if ctx.cli.quiet && code == 0 {
        return Ok(0);
    }
    w(
        stdout,
        &format!(
            "verified snapshot version {} (manifest {}){}\n  root chain to version {}\n  {} files ({} bytes) re-hashed and decoded\n  state rebuilt from base and layers matches every signed leaf ({} entries)\n  {index}\n",
            v.version,
            v.manifest_sha256,
            if v.expired { " [EXPIRED]" } else { "" },
            v.root_version,
            v.files_checked,
            v.bytes_checked,
            v.entries
        ),
    )?;
    Ok(code)
}
