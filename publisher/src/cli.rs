//! Command-line interface of `consentry-publish`. Parsing and printing only;
//! every action is a library call.
//!
//! Output conventions (shared with `consentry`): stdout carries data only —
//! a human summary by default, exactly one JSON object with `--json`
//! (schemas: README.md, "Machine-readable output"), nothing with `-q`.
//! Warnings, errors (`error:` / `hint:`) and progress bars (only when stderr
//! is a terminal) go to stderr.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Result, anyhow};
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use consentry::docs::{Role, Root};
use consentry::time;
use serde_json::{Value, json};

use crate::build::{self, PublishOptions};
use crate::import::{self, Format, ImportInput, ImportOptions, InputSource};
use crate::keys;
use crate::progress::{Progress, Silent, Unit};
use crate::registry::{InitOutcome, Registry};
use crate::root::{self, Thresholds};
use crate::site::Site;

#[derive(Debug, Parser)]
#[command(
    name = "consentry-publish",
    version,
    propagate_version = true,
    about = "Publish an AI-training consent registry as signed, sharded snapshots",
    long_about = "Publish an AI-training consent registry as signed, zstd-compressed, sharded snapshot \
                  files that any web server or CDN can serve.\n\nA typical first run:\n  \
                  consentry-publish init --db registry.db\n  \
                  consentry-publish import --db registry.db declarations.csv\n  \
                  consentry-publish keygen --role root --out keys/root-1   (and manifest, head)\n  \
                  consentry-publish root init --keys keys --site site\n  \
                  consentry-publish publish --db registry.db --keys keys --site site\n\n\
                  Or see everything end to end: consentry-publish demo\n\n\
                  stdout carries data only (a summary, or one JSON object with --json); warnings, \
                  errors and progress bars (on a terminal only) go to stderr. Exit status: 0 \
                  success, 2 any error (with an `error:` line and a `hint:` line), 141 when \
                  stdout's reader went away."
)]
pub struct Cli {
    /// Print one JSON object on stdout instead of the summary (schemas:
    /// README.md, "Machine-readable output")
    #[arg(long, global = true)]
    pub json: bool,
    /// Print nothing on success (warnings and errors still go to stderr)
    #[arg(long, short, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Say more: every file written or removed, every input read
    #[arg(long, short, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// A key role, as `keygen --role` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// Signs root rotations only: keep it offline
    Root,
    /// Signs manifests (each published snapshot version)
    Manifest,
    /// Signs the short-lived head (publish and refresh)
    Head,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::Root => Role::Root,
            RoleArg::Manifest => Role::Manifest,
            RoleArg::Head => Role::Head,
        }
    }
}

/// An import input's format, as `import --format` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// One header row, then one declaration per row
    Csv,
    /// One JSON object per line (also .ndjson)
    Jsonl,
}

/// The registry database (`--db`, or `CONSENTRY_DB`).
#[derive(Debug, Args)]
pub struct DbArg {
    /// Registry database: a SQLite file, or a PostgreSQL URL
    /// (postgres://USER@HOST:PORT/DATABASE; the PG* environment variables
    /// fill in what it leaves out)
    #[arg(long, env = "CONSENTRY_DB", value_name = "FILE|URL")]
    pub db: PathBuf,
}

/// The published site (`--site`, or `CONSENTRY_SITE`).
#[derive(Debug, Args)]
pub struct SiteArg {
    /// Site directory: the static files a web server or CDN serves
    #[arg(long, env = "CONSENTRY_SITE", value_name = "DIR")]
    pub site: PathBuf,
}

/// The online signing keys (`--keys`, or `CONSENTRY_KEYS`).
#[derive(Debug, Args)]
pub struct KeysArg {
    /// Directory with the manifest and head secret keys (*.key) that sign
    #[arg(long, env = "CONSENTRY_KEYS", value_name = "DIR")]
    pub keys: PathBuf,
    /// An external signer (HSM or KMS wrapper, docs/external-signer.md) for
    /// the manifest and head keys whose .pub is in --keys without a .key:
    /// run as `PROGRAM sign ROLE KEYID`, message on stdin, hex signature on
    /// stdout
    #[arg(long, env = "CONSENTRY_SIGNER", value_name = "PROGRAM")]
    pub signer: Option<PathBuf>,
    /// How long one external signature may take, e.g. 30s
    #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "DURATION", requires = "signer")]
    pub signer_timeout: u64,
}

impl KeysArg {
    /// The online keys: secret key files, and external keys with --signer.
    fn load(&self) -> Result<Vec<keys::KeyPair>> {
        let timeout = std::time::Duration::from_secs(self.signer_timeout);
        keys::load_online(&self.keys, self.signer.as_deref().map(|p| (p, timeout)))
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create an empty registry database (a SQLite file, or the schema in a
    /// PostgreSQL database), or migrate a PostgreSQL registry's schema.
    Init {
        #[command(flatten)]
        db: DbArg,
    },
    /// Import declarations from CSV or JSONL (files, gzip or zstd files, or
    /// stdin), all or nothing.
    Import {
        #[command(flatten)]
        db: DbArg,
        /// Files to import: .csv, .jsonl or .ndjson, optionally compressed
        /// (.gz, .zst); `-` reads stdin (gzip and zstd recognised by content)
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Read every input as this format, whatever its name; stdin needs
        /// it unless its first line tells (a CSV header or a JSON object)
        #[arg(long, value_enum)]
        format: Option<FormatArg>,
        /// Time to record the declarations at (RFC 3339 or YYYY-MM-DD);
        /// default: the clock
        #[arg(long, value_name = "TIME")]
        recorded_at: Option<String>,
    },
    /// Generate an ed25519 key pair: OUT.key (0600) and OUT.pub.
    Keygen {
        /// What the key signs
        #[arg(long, value_enum)]
        role: RoleArg,
        /// Path without extension, e.g. keys/head-1
        #[arg(long, value_name = "PATH")]
        out: PathBuf,
        /// Replace existing key files
        #[arg(long)]
        force: bool,
    },
    /// Create or rotate the trust root.
    #[command(subcommand)]
    Root(RootCommand),
    /// The witnessed manifest log (SPEC.md §15)
    #[command(subcommand)]
    Log(LogCommand),
    /// A file-backed external signer (docs/external-signer.md): signs stdin
    /// with the key KEYID of ROLE from --keys and prints the signature in
    /// hex. The reference for HSM/KMS wrappers, and a way to keep the
    /// online keys on another mount or machine (behind ssh).
    ExternalSigner {
        /// Directory with the secret keys (*.key) this signer holds
        #[arg(long, value_name = "DIR")]
        keys: PathBuf,
        /// The protocol's verb: `sign`
        #[arg(value_parser = ["sign"])]
        verb: String,
        /// manifest or head
        #[arg(value_enum)]
        role: RoleArg,
        /// The key id to sign with (64 hex digits)
        keyid: String,
    },
    /// Build, sign, self-check and publish the next snapshot version.
    Publish(PublishArgs),
    /// Re-sign the head with a new expiry, without rebuilding (run it from cron).
    Refresh {
        #[command(flatten)]
        keys: KeysArg,
        #[command(flatten)]
        site: SiteArg,
        /// Head lifetime, e.g. 72h (s, m, h, d or w; at most 100 years)
        #[arg(long, default_value = "72h", value_parser = parse_lifetime, value_name = "DURATION")]
        head_ttl: u64,
        /// Sign as of this time: RFC 3339 (2026-11-25T00:00:00Z) or a date
        /// (YYYY-MM-DD, midnight UTC); default: the clock
        #[arg(long, value_name = "TIME")]
        now: Option<String>,
        #[command(flatten)]
        sign: SignArgs,
        #[command(flatten)]
        lock: LockArgs,
    },
    /// Write a tar bundle of the current snapshot for offline transfer.
    Bundle {
        #[command(flatten)]
        site: SiteArg,
        /// The tar file to write
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        lock: LockArgs,
    },
    /// The whole job end to end on an embedded demo registry: import, keys,
    /// publish, serve on 127.0.0.1, sync, verify, check, a nightly delta.
    Demo {
        /// Directory to work in (created)
        #[arg(default_value = "consentry-demo")]
        dir: PathBuf,
        /// Replace an earlier demo directory
        #[arg(long)]
        force: bool,
        /// Synthetic per-ISRC declarations to add to the example registry
        #[arg(long, default_value_t = 20_000)]
        records: u64,
    },
    /// Fill a registry database with a deterministic synthetic registry (for
    /// demos and benchmarks), or apply nightly churn to one (--churn).
    Generate {
        #[command(flatten)]
        db: DbArg,
        /// Number of per-ISRC declarations to generate (at least 1)
        #[arg(long, required_unless_present = "churn", conflicts_with = "churn",
              value_parser = clap::value_parser!(u64).range(1..))]
        records: Option<u64>,
        /// Random seed: the same seed gives the same registry
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// How ISRCs are drawn: registrant/year runs, or uniformly at random
        #[arg(long, value_enum, default_value = "clustered")]
        keys: crate::generate::KeyMode,
        /// Instead of generating, apply this fraction (0 < F <= 1) of the
        /// live entries as changes (new releases, changed preferences,
        /// revocations), e.g. 0.001
        #[arg(long, value_name = "F", value_parser = parse_fraction)]
        churn: Option<f64>,
        /// Time to record the declarations at (RFC 3339 or YYYY-MM-DD);
        /// default: the clock
        #[arg(long, value_name = "TIME")]
        recorded_at: Option<String>,
    },
    /// Remove files that none of the newest N manifests references, and list
    /// them (--dry-run: list only).
    Gc {
        #[command(flatten)]
        site: SiteArg,
        /// How many of the newest manifest versions keep their files (at least 1)
        #[arg(long, default_value_t = 2, value_name = "N",
              value_parser = clap::value_parser!(u64).range(1..))]
        keep: u64,
        /// List what would be removed; remove nothing
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        lock: LockArgs,
    },
    /// Upload the site's current snapshot to S3-compatible object storage:
    /// data files the bucket lacks, then the manifest, the roots, and the
    /// head last (credentials and endpoint from the AWS environment).
    Push(PushArgs),
    /// Print a shell completion script on stdout, e.g.
    /// `consentry-publish completions bash > /etc/bash_completion.d/consentry-publish`.
    Completions {
        /// The shell to complete for
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write man pages: one per command (consentry-publish.1,
    /// consentry-publish-publish.1, …) into --out, or the main page on stdout.
    Man {
        /// Directory to write the pages into (created)
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
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
    /// lock, e.g. 30m (0s: do not wait)
    #[arg(long, default_value = "30m", value_parser = parse_duration, value_name = "DURATION")]
    pub lock_wait: u64,
}

impl LockArgs {
    fn take(&self, site: &Site, command: &str) -> Result<crate::lock::SiteLock> {
        site.lock(
            command,
            std::time::Duration::from_secs(self.lock_wait),
            &|m| {
                if notes() {
                    eprintln!("{m}");
                }
            },
        )
    }
}

#[derive(Debug, Subcommand)]
pub enum RootCommand {
    /// Create root version 1 from the .pub files in --keys.
    Init(RootInitArgs),
    /// Write root N+1 from the .pub files now in --keys, signed by the old and
    /// the new root keys.
    Rotate(RootRotateArgs),
    /// Add signatures to a root proposal (`root init|rotate --unsigned OUT`)
    /// with root secret keys, e.g. on an offline machine; the file is
    /// rewritten in place (or to --out)
    Sign(RootSignArgs),
    /// Check that a signed root proposal reaches its thresholds (and the
    /// current root's, for a rotation), then publish it as root/N.cbor
    Assemble(RootAssembleArgs),
}

#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Add witnesses' cosignature lines (`consentry witness cosign` output)
    /// to the site's checkpoint; lines that are not a valid cosignature of
    /// the served checkpoint by a witness the root lists are ignored
    Cosign {
        #[command(flatten)]
        site: SiteArg,
        /// Files holding cosignature lines
        #[arg(required_unless_present = "witness_url", value_name = "FILE")]
        files: Vec<PathBuf>,
        /// A witness service (C2SP tlog-witness, e.g. `consentry witness
        /// serve`) to ask for its cosignature over HTTP: its add-checkpoint
        /// URL or prefix; repeat for each
        #[arg(long, value_name = "URL")]
        witness_url: Vec<String>,
        #[command(flatten)]
        lock: LockArgs,
    },
    /// Write a C2SP tlog-witness add-checkpoint request for the served
    /// checkpoint: the consistency proof from tree size OLD (the size the
    /// witness cosigned last; 0 for a new witness), for `consentry witness
    /// cosign --request` or any tlog-witness
    Request {
        #[command(flatten)]
        site: SiteArg,
        /// The tree size the witness cosigned last (0: never)
        #[arg(long, value_name = "SIZE")]
        old: u64,
        /// Write the request here instead of stdout
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct RootSignArgs {
    /// The proposal to sign (written by `root init|rotate --unsigned`)
    #[arg(value_name = "PROPOSAL")]
    pub proposal: PathBuf,
    /// A secret key file (.key) to sign with; repeat for several
    #[arg(long, value_name = "FILE", required_unless_present = "keys")]
    pub key: Vec<PathBuf>,
    /// A directory of secret keys: every root key in it that may sign, signs
    #[arg(long, value_name = "DIR")]
    pub keys: Option<PathBuf>,
    /// The root this proposal replaces (root/N.cbor), so that its root keys
    /// may sign a rotation too
    #[arg(long, value_name = "FILE")]
    pub previous: Option<PathBuf>,
    /// Write the signed proposal here instead of over PROPOSAL
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RootAssembleArgs {
    /// The signed proposal
    #[arg(value_name = "PROPOSAL")]
    pub proposal: PathBuf,
    #[command(flatten)]
    pub site: SiteArg,
    /// The time the expiry margin counts from: RFC 3339 or a date; default:
    /// the clock
    #[arg(long, value_name = "TIME")]
    pub now: Option<String>,
    #[command(flatten)]
    pub sign: SignArgs,
    #[command(flatten)]
    pub lock: LockArgs,
}

/// What `root init` and `root rotate` share.
#[derive(Debug, Args)]
pub struct RootArgs {
    /// Directory with the .pub files of every key the root lists (and .key
    /// files to sign with)
    #[arg(long, env = "CONSENTRY_KEYS", value_name = "DIR")]
    pub keys: PathBuf,
    #[command(flatten)]
    pub site: SiteArg,
    /// More directories with secret keys to sign with (e.g. the offline root
    /// keys, or the old root keys when rotating)
    #[arg(long, value_name = "DIR")]
    pub sign_with: Vec<PathBuf>,
    /// Root lifetime from --now, e.g. 365d (s, m, h, d or w; at most 100 years)
    #[arg(long, default_value = "365d", value_parser = parse_lifetime, value_name = "DURATION")]
    pub expires_in: u64,
    /// Threshold per role: ROLE=N, ROLE one of root, manifest, head, N at
    /// least 1 (e.g. --threshold root=2; default 1 each)
    #[arg(long, value_parser = parse_threshold, value_name = "ROLE=N")]
    pub threshold: Vec<(Role, u64)>,
    /// Time to count the expiry from: RFC 3339 or a date (YYYY-MM-DD);
    /// default: the clock
    #[arg(long, value_name = "TIME")]
    pub now: Option<String>,
    /// A witness whose cosignature verifiers require on the log's
    /// checkpoint (SPEC.md §15): its C2SP verifier key NAME+HASH+BASE64
    /// (`consentry witness keygen` prints it), or a file holding it; repeat
    /// for each. A rotation without --witness keeps the current root's
    #[arg(long, value_name = "VKEY")]
    pub witness: Vec<String>,
    /// How many of the witnesses must cosign (default: all)
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..))]
    pub witness_threshold: Option<u64>,
    /// The log's origin line, naming this registry's log (e.g.
    /// registry.example.org/consentry); needed with --witness
    #[arg(long, value_name = "ORIGIN")]
    pub log_origin: Option<String>,
    /// Sign nothing: write the proposed root, unsigned, to FILE for key
    /// holders to sign (`root sign`) and then `root assemble` (no secret
    /// key needed here; the site is only read)
    #[arg(long, value_name = "FILE")]
    pub unsigned: Option<PathBuf>,
    #[command(flatten)]
    pub sign: SignArgs,
    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Debug, Args)]
pub struct RootInitArgs {
    #[command(flatten)]
    pub common: RootArgs,
    /// Replace an existing root/1.cbor (verifiers pinned to it must re-pin)
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct RootRotateArgs {
    #[command(flatten)]
    pub common: RootArgs,
    /// Write the new root even when it lists the same keys and thresholds as
    /// the current one (to re-issue it with a later expiry)
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    #[command(flatten)]
    pub db: DbArg,
    #[command(flatten)]
    pub keys: KeysArg,
    #[command(flatten)]
    pub site: SiteArg,
    /// Snapshot time: an RFC 3339 time (2026-11-25T00:00:00Z), a date
    /// (YYYY-MM-DD, midnight UTC), `clock` (the default), or `registry` (the
    /// registry's latest recorded_at: the same database gives byte-identical
    /// files)
    #[arg(long, value_name = "TIME")]
    pub now: Option<String>,
    /// Fold all layers into a new base now
    #[arg(long)]
    pub compact: bool,
    /// Manifest lifetime, e.g. 30d (s, m, h, d or w; at most 100 years)
    #[arg(long, default_value = "30d", value_parser = parse_lifetime, value_name = "DURATION")]
    pub manifest_ttl: u64,
    /// Head lifetime, e.g. 72h; re-sign it with `refresh` (at most 100 years)
    #[arg(long, default_value = "72h", value_parser = parse_lifetime, value_name = "DURATION")]
    pub head_ttl: u64,
    /// Target entries per shard (at least 1)
    #[arg(long, default_value_t = 1 << 17, value_name = "N",
          value_parser = parse_shard_rows)]
    pub shard_rows: usize,
    #[command(flatten)]
    pub sign: SignArgs,
    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    #[command(flatten)]
    pub site: SiteArg,
    /// Where to: s3://BUCKET or s3://BUCKET/PREFIX
    #[arg(long, value_name = "S3URL")]
    pub to: String,
    /// S3 endpoint for S3-compatible storage (MinIO, Ceph, R2, …), addressed
    /// path-style; default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else AWS
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// Region to sign for; default: AWS_REGION, AWS_DEFAULT_REGION, else us-east-1
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// Cache-Control max-age of head.cbor (content-addressed files, manifests
    /// and roots get a year, immutable)
    #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
    pub head_max_age: u64,
    /// After the head: delete manifests and data files that none of the
    /// newest --keep manifests in the bucket names (roots and head never)
    #[arg(long)]
    pub prune: bool,
    /// With --prune: how many of the newest manifest versions keep their files
    #[arg(long, default_value_t = 2, value_name = "N", requires = "prune",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub keep: u64,
    /// Create the bucket first when it does not exist
    #[arg(long)]
    pub create_bucket: bool,
    /// Upload every object with the canned ACL public-read, for a bucket
    /// that verifiers read directly (not behind a CDN with origin access)
    #[arg(long)]
    pub public_read: bool,
    /// Timeout of one request (connecting: 10 s), e.g. 10m; each request is
    /// tried at most 4 times
    #[arg(long, default_value = "10m", value_parser = parse_lifetime, value_name = "DURATION")]
    pub request_timeout: u64,
    #[command(flatten)]
    pub lock: LockArgs,
}

/// The longest duration any flag takes: 100 years of 365.25 days. Longer is
/// a typo (and would overflow a timestamp sooner or later).
pub const MAX_DURATION_SECS: u64 = 36_525 * 86_400;

/// Parse `30d`, `72h`, `15m`, `3600s` or `2w` into seconds, at most
/// [`MAX_DURATION_SECS`]. The unit is required: a bare `72` has been read as
/// 72 seconds by people who meant hours.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 72h, 30d or 3600s"))?;
    let mul = match unit {
        "" => {
            return Err(format!(
                "`{s}` has no unit: write {n}s, {n}m, {n}h, {n}d or {n}w"
            ));
        }
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(format!("`{s}`: unknown unit `{unit}`; use s, m, h, d or w")),
    };
    n.checked_mul(mul)
        .filter(|&secs| secs <= MAX_DURATION_SECS)
        .ok_or_else(|| {
            format!(
                "`{s}` is longer than 100 years ({}d), the longest duration accepted",
                MAX_DURATION_SECS / 86_400
            )
        })
}

/// A lifetime: a [`parse_duration`] that is not zero.
pub fn parse_lifetime(s: &str) -> Result<u64, String> {
    match parse_duration(s)? {
        0 => Err(format!(
            "`{s}` is no lifetime at all: give one like 72h or 30d"
        )),
        n => Ok(n),
    }
}

fn parse_shard_rows(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("a shard holds at least 1 entry; e.g. 131072 (the default)".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{s}` is not a whole number of entries")),
    }
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if f > 0.0 && f <= 1.0 => Ok(f),
        _ => Err(format!(
            "`{s}` is not a fraction in (0, 1]; e.g. 0.001 for 0.1 % of the entries"
        )),
    }
}

fn parse_threshold(s: &str) -> Result<(Role, u64), String> {
    let (r, n) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: expected ROLE=N, e.g. root=2"))?;
    let role = RoleArg::from_str(r, true)
        .map_err(|_| format!("`{r}` is not a role; use root, manifest or head"))?;
    match n.parse::<u64>() {
        Ok(0) => Err(format!("`{s}`: a threshold is at least 1")),
        Ok(n) => Ok((role.into(), n)),
        Err(_) => Err(format!("`{s}`: N must be a whole number, e.g. {r}=2")),
    }
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
        Some(t) => time::parse_timestamp(t).map_err(|e| {
            crate::advise!(
                "--now: {}",
                "give an RFC 3339 time (2026-11-25T00:00:00Z), a date (2026-11-25) or `clock`",
                e
            )
        }),
    }
}

// ---------------------------------------------------------------------------
// Output

/// Human lines on stdout (off with `-q` or `--json`): [`print_line`] and the
/// `out!` macro obey it.
static HUMAN: AtomicBool = AtomicBool::new(true);
/// Notes on stderr (off with `-q`); warnings and errors always appear.
static NOTES: AtomicBool = AtomicBool::new(true);

fn notes() -> bool {
    NOTES.load(Ordering::Relaxed)
}

/// Print the one JSON object of `--json`, on one line.
fn print_json(v: &Value) -> Result<()> {
    print_raw(&format!("{v}\n"))
}

/// How this run prints.
#[derive(Debug, Clone, Copy)]
struct Out {
    json: bool,
    quiet: bool,
    verbose: bool,
}

impl Out {
    /// Human detail for `-v`.
    fn detail(self) -> bool {
        self.verbose && !self.json && !self.quiet
    }

    /// Progress bars: only on a terminal, never with `-q`.
    fn progress(self) -> Arc<dyn Progress> {
        let tty =
            std::io::stderr().is_terminal() && std::env::var_os("TERM").is_none_or(|t| t != "dumb");
        if self.quiet || !tty {
            Arc::new(Silent)
        } else {
            Arc::new(Bars::default())
        }
    }
}

/// indicatif bars on stderr, one per phase.
#[derive(Debug, Default)]
struct Bars {
    bar: Mutex<Option<indicatif::ProgressBar>>,
}

impl Progress for Bars {
    fn start(&self, what: &str, total: Option<u64>, unit: Unit) {
        self.finish();
        let template = match (total, unit) {
            (Some(_), Unit::Items) => {
                "{msg:24} [{bar:30}] {human_pos}/{human_len} ({percent}%, ETA {eta})"
            }
            (Some(_), Unit::Bytes) => {
                "{msg:24} [{bar:30}] {bytes}/{total_bytes} ({percent}%, ETA {eta})"
            }
            (None, Unit::Items) => "{spinner} {msg} {human_pos} ({elapsed})",
            (None, Unit::Bytes) => "{spinner} {msg} {bytes} ({bytes_per_sec})",
        };
        let b = indicatif::ProgressBar::with_draw_target(
            total,
            indicatif::ProgressDrawTarget::stderr(),
        );
        if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
            b.set_style(style.progress_chars("=> "));
        }
        b.set_message(what.to_string());
        b.enable_steady_tick(std::time::Duration::from_millis(200));
        if let Ok(mut g) = self.bar.lock() {
            *g = Some(b);
        }
    }

    fn inc(&self, n: u64) {
        if let Some(b) = self.bar.lock().ok().and_then(|b| b.clone()) {
            b.inc(n);
            // A total that was an estimate grows rather than overflowing.
            if let Some(len) = b.length()
                && b.position() > len
            {
                b.set_length(b.position());
            }
        }
    }

    fn finish(&self) {
        if let Some(b) = self.bar.lock().ok().and_then(|mut b| b.take()) {
            b.finish();
        }
    }
}

fn hex_keyids(root: &Root, role: Role) -> Vec<String> {
    root.role(role).keyids.iter().map(hex::encode).collect()
}

fn root_cmd(a: &RootArgs, force: bool, rotate: bool, o: Out) -> Result<()> {
    let now = parse_now(a.now.as_deref())?;
    let site = Site::new(&a.site.site);
    if let Some(out) = &a.unsigned {
        let opts = root::RootOptions {
            witnesses: crate::log::policy(
                a.log_origin.as_deref(),
                &a.witness,
                a.witness_threshold,
            )?,
            thresholds: thresholds(&a.threshold),
            expires: (now.max(0) as u64).saturating_add(a.expires_in),
            now,
            guard: a.sign.guard(),
        };
        let (r, bytes) = root::propose(&site, &a.keys, &opts, rotate, force)?;
        write_file_new(out, &bytes, force)?;
        let hint = format!(
            "sign it on each root key holder's machine: consentry-publish root sign --key KEY.key {}{}; then: consentry-publish root assemble {} --site {}",
            out.display(),
            if rotate {
                format!(" --previous root/{}.cbor", r.version - 1)
            } else {
                String::new()
            },
            out.display(),
            a.site.site.display()
        );
        return report_root(&r, &bytes, out, "proposal", 0, &hint, o);
    }
    let lock = a
        .lock
        .take(&site, if rotate { "root rotate" } else { "root init" })?;
    let mut dirs = vec![a.keys.clone()];
    dirs.extend(a.sign_with.iter().cloned());
    let secrets = keys::load_secrets(&dirs)?;
    let opts = root::RootOptions {
        witnesses: crate::log::policy(a.log_origin.as_deref(), &a.witness, a.witness_threshold)?,
        thresholds: thresholds(&a.threshold),
        expires: (now.max(0) as u64).saturating_add(a.expires_in),
        now,
        guard: a.sign.guard(),
    };
    let (r, bytes) = if rotate {
        root::rotate(&site, &lock, &a.keys, &secrets, &opts, force)?
    } else {
        root::init(&site, &lock, &a.keys, &secrets, &opts, force)?
    };
    let path = site.path(&consentry::docs::paths::root(r.version));
    let n = signature_count(&bytes);
    report_root(&r, &bytes, &path, "root", n, "", o)
}

fn signature_count(bytes: &[u8]) -> usize {
    consentry::envelope::Envelope::parse("root", bytes, &consentry::Limits::default())
        .map_or(0, |e| e.signatures.len())
}

/// Write `bytes` to `path` atomically, refusing to replace an existing file
/// unless `force` (a proposal is someone's work in progress).
fn write_file_new(path: &Path, bytes: &[u8], force: bool) -> Result<()> {
    if path.exists() && !force {
        return Err(crate::advise!(
            "{} already exists; refusing to overwrite it",
            "choose another file, or pass --force to replace it",
            path.display()
        ));
    }
    consentry::fsio::write_atomic(path, bytes)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

fn root_sign_cmd(a: &RootSignArgs, o: Out) -> Result<()> {
    let limits = consentry::Limits::default();
    let p = root::Proposal::read(&a.proposal, &limits)?;
    let previous = match &a.previous {
        Some(f) => Some(root::Proposal::read(f, &limits)?.root),
        None => None,
    };
    let mut secrets = Vec::new();
    for k in &a.key {
        secrets.push(keys::load_secret(k)?);
    }
    if let Some(dir) = &a.keys {
        secrets.extend(keys::load_secrets(std::slice::from_ref(dir))?);
    }
    let (bytes, signed) = root::sign_proposal(&p, &secrets, previous.as_ref())?;
    let out = a.out.as_deref().unwrap_or(&a.proposal);
    consentry::fsio::write_atomic(out, &bytes)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", out.display()))?;
    let signed_now = root::Proposal::read(out, &limits)?;
    let valid = signed_now.valid_signers(previous.as_ref()).len();
    if notes() {
        for id in &signed {
            eprintln!("signed with root key {}", hex::encode(id));
        }
    }
    let hint = format!(
        "when enough key holders have signed: consentry-publish root assemble {} --site SITE",
        out.display()
    );
    report_root(&p.root, &bytes, out, "proposal", valid, &hint, o)
}

fn root_assemble_cmd(a: &RootAssembleArgs, o: Out) -> Result<()> {
    let now = parse_now(a.now.as_deref())?;
    let site = Site::new(&a.site.site);
    let lock = a.lock.take(&site, "root assemble")?;
    let (r, bytes) = root::assemble(&site, &lock, &a.proposal, a.sign.guard(), now)?;
    let path = site.path(&consentry::docs::paths::root(r.version));
    report_root(&r, &bytes, &path, "root", signature_count(&bytes), "", o)
}

/// What `root init|rotate|sign|assemble` print: the root's version, file,
/// hash, expiry and role keys (`kind` names the file: a published `root` or
/// an unsigned or partly signed `proposal`), then `hint` on stderr.
fn report_root(
    r: &Root,
    bytes: &[u8],
    path: &Path,
    kind: &str,
    signatures: usize,
    hint: &str,
    o: Out,
) -> Result<()> {
    let roles = [Role::Root, Role::Manifest, Role::Head];
    if o.json {
        return print_json(&json!({
            "kind": kind,
            "version": r.version,
            "path": path.display().to_string(),
            "sha256": hex::encode(consentry::envelope::sha256(bytes)),
            "expires": time::format_timestamp(r.expires as i64),
            "signatures": signatures,
            "roles": roles.iter().map(|&role| json!({
                "role": role.name(),
                "threshold": r.role(role).threshold,
                "keyids": hex_keyids(r, role),
            })).collect::<Vec<_>>(),
        }));
    }
    if kind == "root" {
        out!("root version {} written to {}", r.version, path.display());
    } else {
        out!(
            "root version {} proposal ({} valid signature{}) written to {}",
            r.version,
            signatures,
            if signatures == 1 { "" } else { "s" },
            path.display()
        );
    }
    out!("  expires   {}", time::format_timestamp(r.expires as i64));
    if !hint.is_empty() && notes() {
        eprintln!("hint: {hint}");
    }
    for role in roles {
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

/// The inputs of `import`: `-` is stdin (once).
fn import_inputs(files: &[PathBuf], format: Option<FormatArg>) -> Result<Vec<ImportInput>> {
    let format = format.map(|f| match f {
        FormatArg::Csv => Format::Csv,
        FormatArg::Jsonl => Format::Jsonl,
    });
    let stdin = files.iter().filter(|f| f.as_os_str() == "-").count();
    if stdin > 1 {
        return Err(crate::advise!(
            "`-` (stdin) is named {} times; stdin can be read once",
            "name `-` once, or save the extra input to a file",
            stdin
        ));
    }
    Ok(files
        .iter()
        .map(|f| ImportInput {
            source: if f.as_os_str() == "-" {
                InputSource::Stdin
            } else {
                InputSource::File(f.clone())
            },
            format,
        })
        .collect())
}

fn publish_cmd(a: &PublishArgs, o: Out) -> Result<()> {
    let now = match a.now.as_deref() {
        Some("registry") => None,
        t => Some(parse_now(t)?),
    };
    let site = Site::new(&a.site.site);
    let lock = a.lock.take(&site, "publish")?;
    let mut reg = Registry::open(&a.db.db)?;
    let secrets = a.keys.load()?;
    let opts = PublishOptions {
        now,
        manifest_ttl: a.manifest_ttl,
        head_ttl: a.head_ttl,
        compact: a.compact,
        target_rows: a.shard_rows,
        failpoint: std::env::var("CONSENTRY_PUBLISH_FAILPOINT")
            .ok()
            .filter(|s| !s.is_empty()),
        guard: a.sign.guard(),
        progress: o.progress(),
        ..PublishOptions::default()
    };
    let r = build::publish(reg.backend(), &secrets, &site, &lock, &opts)?;
    if let Some(l) = r.log.as_ref().filter(|l| l.written)
        && notes()
        && !o.json
    {
        eprintln!(
            "note: log checkpoint {} size {} written; verifiers need the witnesses' cosignatures: consentry witness cosign, then consentry-publish log cosign",
            l.checkpoint.origin, l.checkpoint.size
        );
    }
    if o.json {
        return print_json(&json!({
            "version": r.version,
            "previous_version": r.previous_version,
            "mode": r.mode.as_str(),
            "entries": r.entries,
            "ranges": r.ranges,
            "upserts": r.puts,
            "deletions": r.dels,
            "files_written": r.files_written,
            "files_reused": r.files_reused,
            "bytes_written": r.bytes_written,
            "manifest_sha256": hex::encode(r.manifest_sha256),
            "state_root": hex::encode(r.state_root),
            "expires": time::format_timestamp(r.manifest_expires as i64),
            "head_expires": time::format_timestamp(r.head_expires as i64),
            "written": r.written.iter().map(|(p, n)| json!({"path": p, "bytes": n})).collect::<Vec<_>>(),
        }));
    }
    out!("{r}");
    if o.detail() {
        for (rel, n) in &r.written {
            out!("  wrote        {rel} ({n} bytes)");
        }
    }
    Ok(())
}

fn push_cmd(a: &PushArgs, o: Out) -> Result<()> {
    let site = Site::new(&a.site.site);
    let held = a.lock.take(&site, "push")?;
    let hook = |name: &str| -> Result<Option<u64>> {
        match std::env::var(name) {
            Ok(v) if !v.is_empty() => {
                Ok(Some(v.parse::<u64>().map_err(|_| {
                    anyhow!("{name} `{v}` is not a whole number")
                })?))
            }
            _ => Ok(None),
        }
    };
    let stop_after = hook("CONSENTRY_PUSH_STOP_AFTER")?;
    let pause_after = hook("CONSENTRY_PUSH_PAUSE_AFTER")?;
    let opts = crate::push::PushOptions {
        to: a.to.clone(),
        endpoint_url: a.endpoint_url.clone(),
        region: a.region.clone(),
        head_max_age: a.head_max_age,
        prune: a.prune,
        keep: a.keep,
        create_bucket: a.create_bucket,
        public_read: a.public_read,
        request_timeout: std::time::Duration::from_secs(a.request_timeout),
        stop_after,
        pause_after,
        ..crate::push::PushOptions::default()
    };
    let progress = o.progress();
    let r = crate::push::push(&site, &held, &opts, progress.as_ref())?;
    if o.json {
        return print_json(&json!({
            "to": a.to,
            "version": r.version,
            "head_version": r.head_version,
            "uploaded_files": r.uploaded.len(),
            "uploaded_bytes": r.bytes_uploaded,
            "skipped_files": r.skipped,
            "head_uploaded": r.head_uploaded,
            "uploaded": r.uploaded.iter().map(|(p, n)| json!({"path": p, "bytes": n})).collect::<Vec<_>>(),
            "pruned": a.prune,
            "kept_manifests": r.kept_manifests,
            "deleted": r.deleted.iter().map(|(p, n)| json!({"path": p, "bytes": n})).collect::<Vec<_>>(),
        }));
    }
    if o.detail() {
        for (rel, n) in &r.uploaded {
            out!("  uploaded     {rel} ({n} bytes)");
        }
        for (rel, n) in &r.deleted {
            out!("  deleted      {rel} ({n} bytes)");
        }
    }
    out!(
        "pushed version {} (head {}) to {}: {} file(s) uploaded ({} bytes), {} already there; head {}",
        r.version,
        r.head_version,
        a.to,
        r.uploaded.len(),
        r.bytes_uploaded,
        r.skipped,
        if r.head_uploaded {
            "uploaded last"
        } else {
            "unchanged"
        }
    );
    if a.prune {
        out!(
            "pruned: kept the files of {} manifest(s); deleted {} object(s)",
            r.kept_manifests,
            r.deleted.len()
        );
    }
    Ok(())
}

fn gc_cmd(site: &SiteArg, keep: u64, dry_run: bool, lock: &LockArgs, o: Out) -> Result<()> {
    let site = Site::new(&site.site);
    let held = lock.take(&site, "gc")?;
    let r = crate::gc::gc(&site, &held, keep, dry_run)?;
    if o.json {
        return print_json(&json!({
            "dry_run": r.dry_run,
            "keep": keep,
            "kept_manifests": r.kept_manifests,
            "removed_files": r.removed_files,
            "removed_bytes": r.removed_bytes,
            "removed": r.removed.iter().map(|(p, n)| json!({"path": p, "bytes": n})).collect::<Vec<_>>(),
        }));
    }
    let verb = if dry_run { "would remove" } else { "removed" };
    for (rel, n) in &r.removed {
        out!("{verb} {rel} ({n} bytes)");
    }
    out!(
        "kept {} manifest(s); {verb} {} file(s), {} bytes{}",
        r.kept_manifests,
        r.removed_files,
        r.removed_bytes,
        if dry_run {
            " (dry run: nothing was removed)"
        } else {
            ""
        }
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn generate_cmd(
    db: &Path,
    records: Option<u64>,
    seed: u64,
    keys: crate::generate::KeyMode,
    churn: Option<f64>,
    recorded_at: Option<&str>,
    o: Out,
) -> Result<()> {
    let mut reg = Registry::open(db)?;
    let d = reg.backend();
    let recorded_at = recorded_at_or_now(recorded_at)?;
    if let Some(fraction) = churn {
        let r = crate::generate::churn(
            d,
            &crate::generate::ChurnOptions {
                fraction,
                seed,
                id_prefix: crate::generate::ID_PREFIX.into(),
            },
            recorded_at,
        )?;
        if o.json {
            return print_json(&json!({
                "churn": fraction,
                "releases": r.releases,
                "changes": r.changes,
                "revocations": r.revocations,
            }));
        }
        out!("{r}");
        return Ok(());
    }
    let Some(records) = records else {
        return Err(crate::advise!(
            "nothing to generate",
            "pass --records N, or --churn F to change an existing registry"
        ));
    };
    let progress = o.progress();
    let s = crate::generate::generate_into_with(
        d,
        &crate::generate::GenOptions {
            records,
            seed,
            keys,
            ..crate::generate::GenOptions::default()
        },
        recorded_at,
        progress.as_ref(),
    )?;
    let (first, last) = (s.next_seq - s.declarations, s.next_seq - 1);
    if o.json {
        return print_json(&json!({
            "declarations": s.declarations,
            "prefixes": s.prefixes,
            "supersessions": s.supersessions,
            "artists": s.artists,
            "first_seq": first,
            "last_seq": last,
        }));
    }
    out!(
        "generated {} declarations ({} prefix-scope, {} superseding or revoking, {} by artists); seq {first}..{last}",
        s.declarations,
        s.prefixes,
        s.supersessions,
        s.artists,
    );
    Ok(())
}

/// Write the man page of `cmd` and of each of its subcommands into `dir`.
fn write_man_pages(cmd: &clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> Result<()> {
    let page = clap_mangen::Man::new(cmd.clone());
    written.push(
        page.generate_to(dir)
            .map_err(|e| anyhow!("writing a man page into {}: {e}", dir.display()))?,
    );
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_man_pages(sub, dir, written)?;
    }
    Ok(())
}

/// Every command, parent first, with its full name (`consentry-publish-root-init`).
fn man_pages(dir: Option<&Path>, o: Out) -> Result<()> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let Some(dir) = dir else {
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut page)?;
        return print_raw(&String::from_utf8_lossy(&page));
    };
    std::fs::create_dir_all(dir).map_err(|e| {
        crate::advise!(
            "cannot create {}: {}",
            "pass --out a directory you can write",
            dir.display(),
            e
        )
    })?;
    let mut written = Vec::new();
    write_man_pages(&cmd, dir, &mut written)?;
    if o.json {
        return print_json(&json!({
            "dir": dir.display().to_string(),
            "pages": written.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        }));
    }
    if o.detail() {
        for p in &written {
            out!("wrote {}", p.display());
        }
    }
    out!("wrote {} man pages into {}", written.len(), dir.display());
    Ok(())
}

/// Run one command.
pub fn run(cli: Cli) -> Result<()> {
    let o = Out {
        json: cli.json,
        quiet: cli.quiet,
        verbose: cli.verbose,
    };
    HUMAN.store(!o.json && !o.quiet, Ordering::Relaxed);
    NOTES.store(!o.quiet, Ordering::Relaxed);
    match cli.command {
        Command::Init { db } => {
            let (reg, outcome) = Registry::init(&db.db)?;
            let shown = crate::pg::redact(&db.db.display().to_string());
            if o.json {
                return print_json(&json!({
                    "db": shown,
                    "backend": reg.kind(),
                    "schema_version": crate::db::SCHEMA_VERSION,
                    "outcome": match outcome {
                        InitOutcome::Created => "created",
                        InitOutcome::Migrated { .. } => "migrated",
                        InitOutcome::Current => "current",
                    },
                }));
            }
            match outcome {
                InitOutcome::Created => out!("created registry database {shown}"),
                InitOutcome::Migrated { from } => out!(
                    "migrated registry database {shown} from schema version {from} to {}",
                    crate::db::SCHEMA_VERSION
                ),
                InitOutcome::Current => out!(
                    "registry database {shown} is already at schema version {}; nothing to do",
                    crate::db::SCHEMA_VERSION
                ),
            }
        }
        Command::Import {
            db,
            files,
            format,
            recorded_at,
        } => {
            let inputs = import_inputs(&files, format)?;
            let mut reg = Registry::open(&db.db)?;
            let recorded_at = recorded_at_or_now(recorded_at.as_deref())?;
            let progress = o.progress();
            let r = import::import_inputs(
                reg.backend(),
                &inputs,
                &ImportOptions { recorded_at },
                progress.as_ref(),
            )?;
            if o.json {
                return print_json(&json!({
                    "added": r.added,
                    "unchanged": r.unchanged,
                    "updated": r.updated,
                    "files": r.files,
                    "rows": r.rows,
                    "inputs": inputs.iter().map(ImportInput::name).collect::<Vec<_>>(),
                    "recorded_at": time::format_timestamp(recorded_at),
                }));
            }
            out!("{r}");
            if o.detail() {
                for i in &inputs {
                    out!("  read {}", i.name());
                }
            }
        }
        Command::Keygen { role, out, force } => {
            let kp = keys::generate(&out, role.into(), force)?;
            let (secret, public) = (out.with_extension("key"), out.with_extension("pub"));
            if o.json {
                return print_json(&json!({
                    "role": Role::from(role).name(),
                    "keyid": hex::encode(kp.id()),
                    "secret_key": secret.display().to_string(),
                    "public_key": public.display().to_string(),
                }));
            }
            out!("{}", hex::encode(kp.id()));
            if notes() {
                eprintln!(
                    "wrote {} (secret, mode 0600) and {}",
                    secret.display(),
                    public.display()
                );
            }
        }
        Command::Root(RootCommand::Init(a)) => root_cmd(&a.common, a.force, false, o)?,
        Command::Root(RootCommand::Rotate(a)) => root_cmd(&a.common, a.force, true, o)?,
        Command::Root(RootCommand::Sign(a)) => root_sign_cmd(&a, o)?,
        Command::Root(RootCommand::Assemble(a)) => root_assemble_cmd(&a, o)?,
        Command::Publish(a) => publish_cmd(&a, o)?,
        Command::Log(LogCommand::Cosign {
            site,
            files,
            witness_url,
            lock,
        }) => {
            let site = Site::new(&site.site);
            let held = lock.take(&site, "log cosign")?;
            let root = site.root()?;
            let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
            let mut texts = crate::log::read_texts(&paths)?;
            texts.extend(crate::log::ask_witnesses(&site, &witness_url)?);
            let r = crate::log::cosign_lines(&site, &held, &root, &texts)?;
            if o.json {
                return print_json(&json!({
                    "origin": r.checkpoint.origin,
                    "size": r.checkpoint.size,
                    "root_hash": hex::encode(r.checkpoint.root),
                    "added": r.added,
                    "cosigners": r.cosigners,
                    "threshold": r.threshold,
                    "ignored": r.ignored,
                }));
            }
            out!(
                "checkpoint {} size {}: {} of {} needed cosignatures ({})",
                r.checkpoint.origin,
                r.checkpoint.size,
                r.cosigners.len(),
                r.threshold,
                r.cosigners.join(", ")
            );
            if r.ignored > 0 && notes() {
                eprintln!(
                    "warning: {} line(s) ignored: not a cosignature of this checkpoint by a witness root version {} lists",
                    r.ignored, root.version
                );
            }
        }
        Command::Log(LogCommand::Request { site, old, out }) => {
            let site = Site::new(&site.site);
            let body = crate::log::request(&site, old)?;
            if let Some(p) = out {
                crate::site::write_atomic(&p, &body)?;
            } else {
                use std::io::Write as _;
                std::io::stdout()
                    .write_all(&body)
                    .map_err(|e| anyhow::anyhow!("cannot write the request: {e}"))?;
            }
        }
        Command::ExternalSigner {
            keys: dir,
            verb: _,
            role,
            keyid,
        } => {
            let sig = keys::sign_stdin(&dir, role.into(), &keyid)?;
            out!("{}", hex::encode(sig));
        }
        Command::Refresh {
            keys: kdir,
            site,
            head_ttl,
            now,
            sign,
            lock,
        } => {
            let now = parse_now(now.as_deref())?;
            let site = Site::new(&site.site);
            let held = lock.take(&site, "refresh")?;
            let secrets = kdir.load()?;
            let head = build::refresh(&site, &held, &secrets, now, head_ttl, sign.guard())?;
            if o.json {
                return print_json(&json!({
                    "version": head.manifest.version,
                    "manifest_sha256": hex::encode(head.manifest.sha256),
                    "head_version": head.version,
                    "expires": time::format_timestamp(head.expires as i64),
                }));
            }
            out!(
                "head version {} (manifest {}) now expires {}",
                head.version,
                head.manifest.version,
                time::format_timestamp(head.expires as i64)
            );
        }
        Command::Bundle { site, out, lock } => {
            let site = Site::new(&site.site);
            let held = lock.take(&site, "bundle")?;
            let r = crate::bundle::write_bundle(&site, &held, &out)?;
            if o.json {
                return print_json(&json!({
                    "path": out.display().to_string(),
                    "files": r.entries,
                    "bytes": r.bytes,
                    "version": r.version,
                }));
            }
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
            if o.json {
                return Err(crate::advise!(
                    "demo has no --json output: it is a walkthrough for people",
                    "run the commands it shows with --json instead"
                ));
            }
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
        } => generate_cmd(
            &db.db,
            records,
            seed,
            keys,
            churn,
            recorded_at.as_deref(),
            o,
        )?,
        Command::Gc {
            site,
            keep,
            dry_run,
            lock,
        } => gc_cmd(&site, keep, dry_run, &lock, o)?,
        Command::Push(a) => push_cmd(&a, o)?,
        Command::Completions { shell } => {
            if o.json {
                return Err(crate::advise!(
                    "completions prints a shell script, not JSON",
                    "drop --json"
                ));
            }
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "consentry-publish", &mut script);
            print_raw(&String::from_utf8_lossy(&script))?;
        }
        Command::Man { out } => man_pages(out.as_deref(), o)?,
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

/// One human line on stdout, flushed (nothing with `-q` or `--json`); a
/// closed stdout is [`StdoutClosed`].
pub fn print_line(args: std::fmt::Arguments<'_>) -> Result<()> {
    if !HUMAN.load(Ordering::Relaxed) {
        return Ok(());
    }
    print_raw(&format!("{args}\n"))
}

/// Data on stdout whatever the mode (JSON, a completion script, a man page),
/// flushed; a closed stdout is [`StdoutClosed`].
pub fn print_raw(text: &str) -> Result<()> {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    match o.write_all(text.as_bytes()).and_then(|()| o.flush()) {
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
