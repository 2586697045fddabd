//! `consentry receipt verify|show`: consent receipts checked from a pinned root alone.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::{Ctx, w};
use crate::error::{Code, Rejection, reject};
use crate::store::Store;
use crate::time::format_timestamp;

/// Consent receipts
#[derive(Debug, Args)]
pub struct ReceiptArgs {
    #[command(subcommand)]
    command: ReceiptCommand,
}

pub(super) fn run(
    ctx: &Ctx<'_>,
    args: &ReceiptArgs,
    stdout: &mut dyn Write,
) -> Result<i32, Rejection> {
    let ReceiptArgs { command } = args;
    let dir = &ctx.dir;
    let open = || ctx.open();

    match command {
        ReceiptCommand::Show { file } => {
            let loc = file.display().to_string();
            let bytes = read_capped(file, crate::receipt::MAX_RECEIPT_BYTES)?;
            let r = crate::receipt::AnyReceipt::from_bytes(&loc, &bytes)?;
            let mut s = serde_json::to_string_pretty(&r.to_json()).unwrap_or_default();
            s.push('\n');
            w(stdout, &s)?;
            Ok(0)
        }
        ReceiptCommand::Verify { files, root, json } => {
            let pinned = match root {
                Some(f) => read_capped(
                    f,
                    Store::open(dir).map_or(crate::limits::Limits::DEFAULT.max_root_bytes, |s| {
                        s.limits().max_root_bytes
                    }),
                )?,
                None => open()?.pinned_root_bytes().map_err(|e| {
                    reject(
                        e.file,
                        e.code,
                        format!("{} (give --root FILE to verify without a store)", e.detail),
                    )
                })?,
            };
            let limits = crate::limits::Limits::DEFAULT;
            for f in files {
                let loc = f.display().to_string();
                let bytes = read_capped(f, crate::receipt::MAX_RECEIPT_BYTES)?;
                let v = crate::receipt::verify(&loc, &bytes, &pinned, &limits)?;
                let mut s = String::new();
                if *json {
                    for a in &v.answers {
                        let j = serde_json::json!({
                            "receipt": loc, "valid": true,
                            "input": a.input, "isrc": a.isrc, "use": a.use_,
                            "territory": a.territory, "at": a.at,
                            "decision": a.answer.decision.name(),
                            "reason": a.answer.reason.name(),
                            "decided_by": a.answer.decided_by,
                            "snapshot": {"version": v.manifest_version,
                                "manifest_sha256": hex::encode(v.manifest_sha256),
                                "created": format_timestamp(v.created as i64)},
                            "root_version": v.root_version,
                            "checkpoint": v.checkpoint.as_ref().map(|(size, w)| serde_json::json!({
                                "size": size, "cosigned_by": w,
                            })),
                        });
                        let _ = writeln!(s, "{j}");
                    }
                } else {
                    let _ = writeln!(
                        s,
                        "{loc}: valid: {} answer(s) from snapshot version {} (manifest {}, created {}), signed under root version {}",
                        v.answers.len(),
                        v.manifest_version,
                        hex::encode(v.manifest_sha256),
                        format_timestamp(v.created as i64),
                        v.root_version
                    );
                    if let Some((size, w)) = &v.checkpoint {
                        let _ = writeln!(
                            s,
                            "  in the witnessed log (tree size {size}), cosigned by {}",
                            w.join(", ")
                        );
                    }
                    for a in &v.answers {
                        let by = if a.answer.decided_by.is_empty() {
                            "-".to_string()
                        } else {
                            a.answer.decided_by.join(" ")
                        };
                        let _ = writeln!(
                            s,
                            "  {}\t{}\t{}\t{}\t{}\t{}\t{}",
                            a.input,
                            a.use_,
                            a.territory.as_deref().unwrap_or("-"),
                            a.at,
                            a.answer.decision.name(),
                            a.answer.reason.name(),
                            by
                        );
                    }
                }
                w(stdout, &s)?;
            }
            Ok(0)
        }
    }
}

/// `consentry receipt …`
#[derive(Debug, Subcommand)]
pub enum ReceiptCommand {
    /// Verify receipts with nothing but a pinned root
    Verify {
        /// Receipt files
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// The pinned root file [default: the store's pinned root]
        #[arg(long, value_name = "FILE")]
        root: Option<PathBuf>,
        /// JSON lines output (one line per verified answer)
        #[arg(long)]
        json: bool,
    },
    /// Print a receipt's JSON rendering
    Show {
        /// The receipt file (.receipt.cbor)
        file: PathBuf,
    },
}

/// Read a whole file of at most `max` bytes.
pub(super) fn read_capped(path: &Path, max: u64) -> Result<Vec<u8>, Rejection> {
    let loc = path.display().to_string();
    let f = std::fs::File::open(path).map_err(|e| crate::fetch::io_error(&loc, &e))?;
    let mut buf = Vec::new();
    f.take(max + 1)
        .read_to_end(&mut buf)
        .map_err(|e| crate::fetch::io_error(&loc, &e))?;
    if buf.len() as u64 > max {
        return Err(reject(
            loc,
            Code::LimitExceeded,
            format!("is larger than {max} bytes"),
        ));
    }
    Ok(buf)
}

/// Write a batch receipt to a file, or one receipt per answer into a directory.
pub(super) fn write_receipts(
    path: &Path,
    b: &crate::receipt::Builder,
    format: super::check::ReceiptFormat,
    force: bool,
) -> Result<(), Rejection> {
    use super::check::ReceiptFormat;
    let loc = path.display().to_string();
    let as_dir = path.is_dir() || loc.ends_with('/');
    let compact = match format {
        ReceiptFormat::Auto => b.can_compact(),
        ReceiptFormat::Compact => true,
        ReceiptFormat::Full => false,
    };
    let Some(receipts) = b.build(compact, as_dir) else {
        return Err(super::usage(
            "--receipt-format",
            "compact receipts need the store's witnessed log (a root that names witnesses, synced); use --receipt-format full",
        ));
    };
    let path = &std::path::absolute(path).map_err(|e| crate::fetch::io_error(&loc, &e))?;
    if as_dir {
        std::fs::create_dir_all(path).map_err(|e| crate::fetch::io_error(&loc, &e))?;
        let files: Vec<(std::path::PathBuf, Vec<u8>)> = receipts
            .iter()
            .enumerate()
            .map(|(n, r)| {
                let name = r
                    .answers()
                    .first()
                    .and_then(|a| a.question.isrc.as_deref())
                    .and_then(|i| crate::isrc::Isrc::parse(i).ok())
                    .map_or_else(|| "invalid".to_string(), crate::isrc::Isrc::compact);
                (
                    path.join(format!("{}-{name}.receipt.cbor", n + 1)),
                    r.to_bytes(),
                )
            })
            .collect();
        // Refuse before writing any, so a refusal leaves the directory as it was.
        if let Some((f, _)) = files.iter().find(|(f, _)| f.exists() && !force) {
            return Err(super::usage(
                "--receipt",
                format!(
                    "{} exists; pass --force to replace receipts, or choose an empty directory",
                    f.display()
                ),
            ));
        }
        for (f, bytes) in &files {
            crate::fsio::write_atomic(f, bytes)?;
        }
    } else {
        for r in &receipts {
            crate::fsio::write_atomic(path, &r.to_bytes())?;
        }
    }
    Ok(())
}
