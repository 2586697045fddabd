//! `consentry witness` (keygen, init, cosign) and `consentry
//! compare-checkpoints`: the log's witnesses and split-view checks
//! (SPEC.md §15). The logic is `crate::witness`.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{Ctx, w};
use crate::error::{Code, Rejection, reject};
use crate::store::Store;
use crate::witness::{self, WitnessKey};

/// Witness a registry's manifest log: cosign its checkpoints, never a fork
#[derive(Debug, Args)]
pub struct WitnessArgs {
    #[command(subcommand)]
    command: WitnessCommand,
}

#[derive(Debug, Subcommand)]
enum WitnessCommand {
    /// Make a witness key: OUT.key (secret, 0600) and OUT.vkey; prints the
    /// verifier key a registry lists with `root rotate --witness VKEY`
    Keygen {
        /// The witness's name in its cosignatures (e.g. witness.example.org)
        #[arg(long)]
        name: String,
        /// Path without extension
        #[arg(long, value_name = "PATH")]
        out: PathBuf,
        /// Replace existing key files
        #[arg(long)]
        force: bool,
    },
    /// Pin the registry's root (obtained out of band) in a new state directory
    Init {
        /// The witness's state directory (created; one per log witnessed)
        #[arg(long, value_name = "DIR")]
        state: PathBuf,
        /// The registry's root file (root/N.cbor, obtained out of band)
        #[arg(long, value_name = "FILE")]
        root: PathBuf,
    },
    /// Check the source's checkpoint (signed by the log, append-only from the
    /// one cosigned before) and print a cosignature line for
    /// `consentry-publish log cosign`
    Cosign {
        /// The witness's state directory (from `witness init`)
        #[arg(long, value_name = "DIR")]
        state: PathBuf,
        /// The witness's secret key (from `witness keygen`)
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The registry's site: an http(s) URL or a directory (its root chain
        /// is followed; without --request, its log leaves are checked)
        #[arg(required_unless_present = "request")]
        source: Option<String>,
        /// A C2SP tlog-witness add-checkpoint request (from `consentry-publish
        /// log request`): checked by its consistency proof from the size this
        /// witness cosigned last, with no leaves and no network needed
        #[arg(long, value_name = "FILE")]
        request: Option<PathBuf>,
        /// Write the cosignature line here instead of stdout
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Answer C2SP tlog-witness add-checkpoint requests over HTTP
    /// (POST /add-checkpoint): 200 and a cosignature line, 409 and the size
    /// cosigned last, 422 for a proof that fails (never cosigns a fork)
    Serve(ServeArgs),
}

/// `consentry witness serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The witness's state directory (from `witness init`)
    #[arg(long, value_name = "DIR")]
    state: PathBuf,
    /// The witness's secret key (from `witness keygen`)
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// Address to listen on (127.0.0.1:0 picks a free port; the URL is printed)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    listen: String,
    /// The registry's site (URL or directory), to follow root rotations
    source: Option<String>,
}

/// Compare the log checkpoints two stores hold: prove or disprove a split
/// view offline (exit 0: one log; exit 1: a split view)
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// A store directory
    a: PathBuf,
    /// Another store directory (another machine's, a mirror's)
    b: PathBuf,
}

pub(super) fn run(
    ctx: &Ctx<'_>,
    args: &WitnessArgs,
    stdout: &mut dyn Write,
) -> Result<i32, Rejection> {
    let limits = crate::limits::Limits::default();
    match &args.command {
        WitnessCommand::Keygen { name, out, force } => {
            let k = WitnessKey::generate(name)?;
            let (secret, public) = (out.with_extension("key"), out.with_extension("vkey"));
            for p in [&secret, &public] {
                if p.exists() && !force {
                    return Err(reject(
                        p.display().to_string(),
                        Code::Usage,
                        "already exists; refusing to overwrite a key (pass --force to replace it)",
                    ));
                }
            }
            crate::fsio::write_atomic_with(&secret, Some(0o600), |mut f| {
                f.write_all(k.secret_text().as_bytes())
            })?;
            crate::fsio::write_atomic(&public, format!("{}\n", k.vkey()).as_bytes())?;
            w(stdout, &format!("{}\n", k.vkey()))?;
            if !ctx.cli.quiet {
                eprintln!(
                    "note: wrote {} (secret, mode 0600) and {}",
                    secret.display(),
                    public.display()
                );
            }
            Ok(0)
        }
        WitnessCommand::Init { state, root } => {
            let bytes = std::fs::read(root)
                .map_err(|e| crate::fetch::io_error(&root.display().to_string(), &e))?;
            let r = witness::init(state, &bytes, &limits)?;
            w(
                stdout,
                &format!("pinned root version {} in {}\n", r.version, state.display()),
            )?;
            Ok(0)
        }
        WitnessCommand::Serve(ServeArgs {
            state,
            key,
            listen,
            source,
        }) => {
            let k = WitnessKey::read(key)?;
            let name = k.name.clone();
            let svc =
                crate::serve::WitnessService::start(listen, state, k, source.clone(), &limits)?;
            w(stdout, &format!("{}add-checkpoint\n", svc.url))?;
            stdout
                .flush()
                .map_err(|e| reject("stdout", Code::IoError, e.to_string()))?;
            if !ctx.cli.quiet {
                eprintln!(
                    "note: witness {name} answers POST {}add-checkpoint; stop with Ctrl-C",
                    svc.url
                );
            }
            svc.wait();
            Ok(0)
        }
        WitnessCommand::Cosign {
            state,
            key,
            source,
            request,
            out,
        } => {
            let k = WitnessKey::read(key)?;
            let fetch = source
                .as_deref()
                .map(|s| crate::http::open_source(s, crate::fetch::Timeouts::default()))
                .transpose()?;
            let c = match (request, fetch) {
                (Some(req), fetch) => {
                    let bytes = super::receipt::read_capped(req, 64 * 1024)?;
                    witness::add_checkpoint(state, &k, fetch.as_deref(), &bytes, ctx.now, &limits)?
                }
                (None, Some(fetch)) => witness::cosign(state, &k, &*fetch, ctx.now, &limits)?,
                (None, None) => {
                    return Err(super::usage(
                        "witness cosign",
                        "give the registry's site (SOURCE) or an add-checkpoint --request FILE",
                    ));
                }
            };
            match out {
                Some(p) => crate::fsio::write_atomic(p, c.line.as_bytes())?,
                None => w(stdout, &c.line)?,
            }
            if !ctx.cli.quiet {
                eprintln!(
                    "note: {} cosigned {} tree size {} (root {}; previously cosigned size {})",
                    k.name,
                    c.checkpoint.origin,
                    c.checkpoint.size,
                    hex::encode(c.checkpoint.root),
                    c.previous_size
                );
            }
            Ok(0)
        }
    }
}

pub(super) fn compare(
    _ctx: &Ctx<'_>,
    args: &CompareArgs,
    stdout: &mut dyn Write,
) -> Result<i32, Rejection> {
    let a = Store::open(&args.a)?;
    let b = Store::open(&args.b)?;
    match witness::compare_stores(&a, &b)? {
        None => {
            w(
                stdout,
                "consistent: both stores hold checkpoints of one append-only log\n",
            )?;
            Ok(0)
        }
        Some(why) => {
            w(stdout, &format!("split view: {why}\n"))?;
            Ok(1)
        }
    }
}
