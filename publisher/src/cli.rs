//! Command-line interface of `consentry-publish`. Parsing and printing only;
//! every action is a library call.

use std::path::PathBuf;

use anyhow::{Result, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use consentry::docs::Role;
use consentry::time;

use crate::build::{self, PublishOptions};
use crate::db::Db;
use crate::import::{self, ImportOptions};
use crate::keys;
use crate::root::{self, Thresholds};
use crate::site::Site;

#[derive(Debug, Parser)]
#[command(
    name = "consentry-publish",
    version,
    about = "Publish an AI-training consent registry as signed, sharded snapshots",
    long_about = "Publish an AI-training consent registry as signed, zstd-compressed, sharded snapshot \
                  files that any web server or CDN can serve.\n\nA typical first run:\n  \
                  consentry-publish init --db registry.db\n  \
                  consentry-publish import --db registry.db declarations.csv\n  \
                  consentry-publish keygen --role root --out keys/root-1   (and manifest, head)\n  \
                  consentry-publish root init --keys keys --site site\n  \
                  consentry-publish publish --db registry.db --keys keys --site site\n\n\
                  Or see everything end to end: consentry-publish demo"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create an empty registry database (SQLite).
    Init {
        #[arg(long)]
        db: PathBuf,
    },
    /// Import declarations from CSV or JSONL files, all or nothing.
    Import {
        #[arg(long)]
        db: PathBuf,
        /// Files to import (.csv, .jsonl or .ndjson).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Time to record the declarations at (RFC 3339); default: the clock.
        #[arg(long)]
        recorded_at: Option<String>,
    },
    /// Generate an ed25519 key pair: OUT.key (0600) and OUT.pub.
    Keygen {
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Path without extension, e.g. keys/head-1.
        #[arg(long)]
        out: PathBuf,
        /// Replace existing key files.
        #[arg(long)]
        force: bool,
    },
    /// Create or rotate the trust root.
    #[command(subcommand)]
    Root(RootCommand),
    /// Build, sign, self-check and publish the next snapshot version.
    Publish(PublishArgs),
    /// Re-sign the head with a new expiry, without rebuilding (run it from cron).
    Refresh {
        #[arg(long)]
        keys: PathBuf,
        #[arg(long)]
        site: PathBuf,
        /// Head lifetime, e.g. 72h.
        #[arg(long, default_value = "72h", value_parser = parse_duration)]
        head_ttl: u64,
        /// Sign as of this time (RFC 3339) instead of the clock.
        #[arg(long)]
        now: Option<String>,
        #[command(flatten)]
        sign: SignArgs,
        #[command(flatten)]
        lock: LockArgs,
    },
    /// Write a tar bundle of the current snapshot for offline transfer.
    Bundle {
        #[arg(long)]
        site: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        lock: LockArgs,
    },
    /// The whole job end to end on an embedded demo registry: import, keys,
    /// publish, serve on 127.0.0.1, sync, verify, check, a nightly delta.
    Demo {
        /// Directory to work in (created; default ./consentry-demo).
        #[arg(default_value = "consentry-demo")]
        dir: PathBuf,
        /// Replace an earlier demo directory.
        #[arg(long)]
        force: bool,
        /// Synthetic per-ISRC declarations to add to the example registry.
        #[arg(long, default_value_t = 20_000)]
        records: u64,
    },
    /// Fill a registry database with a deterministic synthetic registry (for
    /// demos and benchmarks), or apply nightly churn to one (--churn).
    Generate {
        #[arg(long)]
        db: PathBuf,
        /// Number of per-ISRC declarations to generate.
        #[arg(long, required_unless_present = "churn", conflicts_with = "churn")]
        records: Option<u64>,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// How ISRCs are drawn: registrant/year runs, or uniformly at random.
        #[arg(long, value_enum, default_value = "clustered")]
        keys: crate::generate::KeyMode,
        /// Instead of generating, apply this fraction of the live entries as
        /// changes (new releases, changed preferences, revocations), e.g. 0.001.
        #[arg(long)]
        churn: Option<f64>,
        /// Time to record the declarations at (RFC 3339); default: the clock.
        #[arg(long)]
        recorded_at: Option<String>,
    },
    /// Remove files that none of the newest N manifests references.
    Gc {
        #[arg(long)]
        site: PathBuf,
        #[arg(long, default_value_t = 2)]
        keep: u64,
        #[command(flatten)]
        lock: LockArgs,
    },
}

/// The signing guard's overrides (see `guard.rs`).
#[derive(Debug, Args)]
pub struct SignArgs {
    /// Sign even what expires in the past or within an hour of the clock
    /// (tests and deliberately dated fixtures only)
    #[arg(long)]
    pub allow_short_expiry: bool,
    /// Allow a root that trusts the public INSECURE test keys (tests only)
    #[arg(long)]
    pub insecure_test_keys: bool,
}

impl SignArgs {
    fn guard(&self) -> crate::guard::Guard {
        if self.allow_short_expiry {
            eprintln!("warning: --allow-short-expiry: signing without the expiry margin");
        }
        if self.insecure_test_keys {
            eprintln!(
                "warning: --insecure-test-keys: the root may trust public test keys; never publish this"
            );
        }
        crate::guard::Guard {
            wall_clock: Some(wall_clock()),
            allow_short_expiry: self.allow_short_expiry,
            allow_insecure_keys: self.insecure_test_keys,
        }
    }
}

/// How long to wait for another command's lock on the site.
#[derive(Debug, Args)]
pub struct LockArgs {
    /// How long to wait for another consentry-publish holding the site's
    /// lock, e.g. 30m
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    pub lock_wait: u64,
}

impl LockArgs {
    fn take(&self, site: &Site, command: &str) -> Result<crate::lock::SiteLock> {
        site.lock(
            command,
            std::time::Duration::from_secs(self.lock_wait),
            &|m| eprintln!("{m}"),
        )
    }
}

#[derive(Debug, Subcommand)]
pub enum RootCommand {
    /// Create root version 1 from the .pub files in --keys.
    Init(RootArgs),
    /// Write root N+1 from the .pub files now in --keys, signed by the old and
    /// the new root keys.
    Rotate(RootArgs),
}

#[derive(Debug, Args)]
pub struct RootArgs {
    /// Directory with the .pub files of the new root (and .key files to sign).
    #[arg(long)]
    pub keys: PathBuf,
    #[arg(long)]
    pub site: PathBuf,
    /// More directories with secret keys to sign with (e.g. the old root keys).
    #[arg(long)]
    pub sign_with: Vec<PathBuf>,
    /// Root lifetime from now, e.g. 365d.
    #[arg(long, default_value = "365d", value_parser = parse_duration)]
    pub expires_in: u64,
    /// Threshold per role, e.g. --threshold root=2 (default 1 each).
    #[arg(long, value_parser = parse_threshold)]
    pub threshold: Vec<(Role, u64)>,
    /// Time to count the expiry from (RFC 3339); default: the clock.
    #[arg(long)]
    pub now: Option<String>,
    /// Replace an existing root/1.cbor (init only).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub sign: SignArgs,
    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    #[arg(long)]
    pub db: PathBuf,
    #[arg(long)]
    pub keys: PathBuf,
    #[arg(long)]
    pub site: PathBuf,
    /// Snapshot time: RFC 3339, `clock` (the default), or `registry` (the
    /// registry's latest recorded_at: the same database gives byte-identical
    /// files)
    #[arg(long)]
    pub now: Option<String>,
    /// Fold all layers into a new base now.
    #[arg(long)]
    pub compact: bool,
    #[arg(long, default_value = "30d", value_parser = parse_duration)]
    pub manifest_ttl: u64,
    #[arg(long, default_value = "72h", value_parser = parse_duration)]
    pub head_ttl: u64,
    /// Target entries per shard.
    #[arg(long, default_value_t = 1 << 17)]
    pub shard_rows: usize,
    #[command(flatten)]
    pub sign: SignArgs,
    #[command(flatten)]
    pub lock: LockArgs,
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s)
}

/// Parse `30d`, `72h`, `15m`, `3600s` or `2w` into seconds. The unit is
/// required: a bare `72` has been read as 72 seconds by people who meant hours.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 72h, 30d or 3600s"))?;
    let mul = match unit {
        "" => {
            return Err(format!(
                "{s:?} has no unit: write {n}s, {n}m, {n}h, {n}d or {n}w"
            ));
        }
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(format!("{s:?}: unknown unit {unit:?}; use s, m, h, d or w")),
    };
    n.checked_mul(mul)
        .ok_or_else(|| format!("{s:?} is too long"))
}

fn parse_threshold(s: &str) -> Result<(Role, u64), String> {
    let (r, n) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected ROLE=N, e.g. root=2"))?;
    Ok((
        Role::parse(r)?,
        n.parse()
            .map_err(|_| format!("{s:?}: N must be a number"))?,
    ))
}

fn thresholds(list: &[(Role, u64)]) -> Thresholds {
    let mut t = Thresholds::default();
    for (r, n) in list {
        match r {
            Role::Root => t.root = *n,
            Role::Manifest => t.manifest = *n,
            Role::Head => t.head = *n,
        }
    }
    t
}

fn parse_now(s: Option<&str>) -> Result<i64> {
    match s {
        None | Some("clock") => Ok(wall_clock()),
        Some(t) => time::parse_timestamp(t).map_err(|e| anyhow!("--now: {e}")),
    }
}

fn root_cmd(a: &RootArgs, rotate: bool) -> Result<()> {
    let site = Site::new(&a.site);
    let lock = a
        .lock
        .take(&site, if rotate { "root rotate" } else { "root init" })?;
    let mut dirs = vec![a.keys.clone()];
    dirs.extend(a.sign_with.iter().cloned());
    let secrets = keys::load_secrets(&dirs)?;
    let now = parse_now(a.now.as_deref())?;
    let o = root::RootOptions {
        thresholds: thresholds(&a.threshold),
        expires: (now.max(0) as u64).saturating_add(a.expires_in),
        now,
        guard: a.sign.guard(),
    };
    let (r, _) = if rotate {
        root::rotate(&site, &lock, &a.keys, &secrets, o)?
    } else {
        root::init(&site, &lock, &a.keys, &secrets, o, a.force)?
    };
    out!(
        "root version {} written to {}",
        r.version,
        site.path(&consentry::docs::paths::root(r.version))
            .display()
    );
    out!("  expires   {}", time::format_timestamp(r.expires as i64));
    for role in [Role::Root, Role::Manifest, Role::Head] {
        let rk = r.role(role);
        for id in &rk.keyids {
            out!(
                "  {:<9} {} (threshold {})",
                role.name(),
                hex::encode(id),
                rk.threshold
            );
        }
    }
    Ok(())
}

/// Run one command.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Init { db } => {
            Db::create(&db)?;
            out!("created registry database {}", db.display());
        }
        Command::Import {
            db,
            files,
            recorded_at,
        } => {
            let mut d = Db::open(&db)?;
            let recorded_at = recorded_at_or_now(recorded_at.as_deref())?;
            let report = import::import_files(&mut d, &files, &ImportOptions { recorded_at })?;
            out!("{report}");
        }
        Command::Keygen { role, out, force } => {
            let kp = keys::generate(&out, role, force)?;
            out!("{}", hex::encode(kp.id()));
            eprintln!(
                "wrote {} (secret, mode 0600) and {}",
                out.with_extension("key").display(),
                out.with_extension("pub").display()
            );
        }
        Command::Root(RootCommand::Init(a)) => root_cmd(&a, false)?,
        Command::Root(RootCommand::Rotate(a)) => root_cmd(&a, true)?,
        Command::Publish(a) => {
            let site = Site::new(&a.site);
            let lock = a.lock.take(&site, "publish")?;
            let mut d = Db::open(&a.db)?;
            let secrets = keys::load_secrets(std::slice::from_ref(&a.keys))?;
            let now = match a.now.as_deref() {
                Some("registry") => None,
                t => Some(parse_now(t)?),
            };
            let opts = PublishOptions {
                now,
                manifest_ttl: a.manifest_ttl,
                head_ttl: a.head_ttl,
                compact: a.compact,
                target_rows: a.shard_rows.max(1),
                failpoint: std::env::var("CONSENTRY_PUBLISH_FAILPOINT")
                    .ok()
                    .filter(|s| !s.is_empty()),
                guard: a.sign.guard(),
                ..PublishOptions::default()
            };
            let report = build::publish(&mut d, &secrets, &site, &lock, &opts)?;
            out!("{report}");
        }
        Command::Refresh {
            keys: kdir,
            site,
            head_ttl,
            now,
            sign,
            lock,
        } => {
            let site = Site::new(&site);
            let held = lock.take(&site, "refresh")?;
            let secrets = keys::load_secrets(std::slice::from_ref(&kdir))?;
            let head = build::refresh(
                &site,
                &held,
                &secrets,
                parse_now(now.as_deref())?,
                head_ttl,
                sign.guard(),
            )?;
            out!(
                "head version {} (manifest {}) now expires {}",
                head.version,
                head.manifest.version,
                time::format_timestamp(head.expires as i64)
            );
        }
        Command::Bundle { site, out, lock } => {
            let site = Site::new(&site);
            let held = lock.take(&site, "bundle")?;
            let r = crate::bundle::write_bundle(&site, &held, &out)?;
            out!(
                "wrote {} ({} files, {} bytes of snapshot version {})",
                out.display(),
                r.entries,
                r.bytes,
                r.version
            );
        }
        Command::Demo {
            dir,
            force,
            records,
        } => {
            crate::demo::run(&crate::demo::DemoOptions {
                now: wall_clock(),
                dir,
                force,
                records,
            })?;
        }
        Command::Generate {
            db,
            records,
            seed,
            keys,
            churn,
            recorded_at,
        } => {
            let mut d = Db::open(&db)?;
            let recorded_at = recorded_at_or_now(recorded_at.as_deref())?;
            if let Some(fraction) = churn {
                let r = crate::generate::churn(
                    &mut d,
                    &crate::generate::ChurnOptions {
                        fraction,
                        seed,
                        id_prefix: crate::generate::ID_PREFIX.into(),
                    },
                    recorded_at,
                )?;
                out!("{r}");
            } else {
                let s = crate::generate::generate_into(
                    &mut d,
                    &crate::generate::GenOptions {
                        records: records.unwrap_or_default(),
                        seed,
                        keys,
                        ..crate::generate::GenOptions::default()
                    },
                    recorded_at,
                )?;
                out!(
                    "generated {} declarations ({} prefix-scope, {} superseding or revoking, {} by artists); seq {}..{}",
                    s.declarations,
                    s.prefixes,
                    s.supersessions,
                    s.artists,
                    s.next_seq - s.declarations,
                    s.next_seq - 1
                );
            }
        }
        Command::Gc { site, keep, lock } => {
            if keep == 0 {
                bail!("--keep must be at least 1: the current snapshot is never removed");
            }
            let site = Site::new(&site);
            let held = lock.take(&site, "gc")?;
            let r = crate::gc::gc(&site, &held, keep)?;
            out!(
                "kept {} manifest(s); removed {} file(s), {} bytes",
                r.kept_manifests,
                r.removed_files,
                r.removed_bytes
            );
        }
    }
    Ok(())
}

/// The system clock in Unix seconds: read here, at the edge, and passed to
/// the library, which never reads a clock itself.
pub fn wall_clock() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// stdout's reader went away: not an error to report, a reason to stop.
#[derive(Debug)]
pub struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stdout was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// Exit status when stdout's reader went away: quiet, and the status a shell
/// reports for a process ended by SIGPIPE (128 + 13), as `consentry` does.
pub const EXIT_BROKEN_PIPE: i32 = 141;

/// One line on stdout, flushed; a closed stdout is [`StdoutClosed`].
pub fn print_line(args: std::fmt::Arguments<'_>) -> Result<()> {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    match writeln!(o, "{args}").and_then(|()| o.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        Err(e) => Err(anyhow::Error::new(e).context("writing to stdout")),
    }
}

/// Print an error chain as an `error:` line (with its context), then the
/// `hint:` of the first [`crate::advice::Advice`] in the chain, if any.
pub fn report_error(e: &anyhow::Error) {
    let text = format!("{e:#}");
    let mut lines = text.lines();
    if let Some(first) = lines.next() {
        eprintln!("error: {first}");
    }
    for line in lines {
        eprintln!("  {line}");
    }
    if let Some(a) = e
        .chain()
        .find_map(|c| c.downcast_ref::<crate::advice::Advice>())
        .filter(|a| !a.hint.is_empty())
    {
        eprintln!("hint: {}", a.hint);
    }
}

/// `--recorded-at`, or the wall clock: when the registry recorded an import.
fn recorded_at_or_now(flag: Option<&str>) -> anyhow::Result<i64> {
    match flag {
        Some(t) => time::parse_timestamp(t).map_err(|e| anyhow!("--recorded-at: {e}")),
        None => Ok(wall_clock()),
    }
}
