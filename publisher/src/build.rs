//! Building and publishing a snapshot version: base shards or a delta layer,
//! the prefix table, the manifest and the head — then a self-check with the
//! verifier's own code before the head is switched.
//!
//! Order of writes (SPEC.md §2): immutable content-addressed files first, the
//! manifest next, `head.cbor` last by atomic rename. A failure or kill at any
//! point leaves the previous head, and so the previous snapshot, fully valid.

use std::collections::HashSet;

use anyhow::{Context, Result, anyhow, bail};
use consentry::columns::{self, PolicySet, Rows};
use consentry::declaration::Record;
use consentry::docs::{FileRef, Head, LayerRef, Manifest, ManifestRef, Range, Role, Root, paths};
use consentry::envelope::{HEAD_TYPE, MANIFEST_TYPE, sha256};
use consentry::isrc::{KEY_SPACE, Scope};
use consentry::rebuild;
use consentry::state::{self, HashedPolicies as Hashed, State};
use consentry::verify::{self, Expiry};
use consentry::{cbor, time};

use crate::guard::Guard;
use crate::keys::{KeyPair, sign_envelope, signers_for};
use crate::lock::SiteLock;
use crate::progress::{Progress, Silent, Unit};
use crate::site::{Current, Site, SiteFiles};
use crate::source::{Publication, Source};

/// When a publish folds the layers into a new base.
#[derive(Debug, Clone, Copy)]
pub struct CompactionPolicy {
    /// Compact when the manifest would list more layers than this.
    pub max_layers: u64,
    /// Compact when the layers' bytes exceed this fraction of the base's bytes.
    pub max_layer_fraction: f64,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        CompactionPolicy {
            max_layers: 14,
            max_layer_fraction: 0.25,
        }
    }
}

/// Options of one publish.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    /// The time the snapshot is made at (Unix seconds); `None` takes the
    /// registry's latest `recorded_at`, so the same database gives the same
    /// bytes. The binary passes the wall clock unless told `--now registry`.
    pub now: Option<i64>,
    /// Manifest lifetime in seconds.
    pub manifest_ttl: u64,
    /// Head lifetime in seconds (short: re-sign it with `refresh`).
    pub head_ttl: u64,
    /// Force a new base.
    pub compact: bool,
    pub policy: CompactionPolicy,
    /// Target entries per shard; a range splits when it holds twice as many.
    pub target_rows: usize,
    /// Test hook: fail on purpose at a named point (`after-data`,
    /// `after-manifest`, `before-head`) to prove the previous snapshot survives.
    pub failpoint: Option<String>,
    /// What may be signed: expiry margins, INSECURE keys.
    pub guard: Guard,
    /// Where to report progress (building ranges, writing files).
    pub progress: std::sync::Arc<dyn Progress>,
}

impl Default for PublishOptions {
    fn default() -> Self {
        PublishOptions {
            now: None,
            manifest_ttl: 30 * 86_400,
            head_ttl: 3 * 86_400,
            compact: false,
            policy: CompactionPolicy::default(),
            target_rows: 1 << 17,
            failpoint: None,
            guard: Guard::default(),
            progress: std::sync::Arc::new(Silent),
        }
    }
}

/// What kind of version a publish made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PublishMode {
    /// The site's first version: a base.
    #[default]
    FirstBase,
    /// The layers folded into a new base.
    Compaction,
    /// A delta layer over the previous version.
    Delta,
    /// Nothing changed: no new version.
    Unchanged,
}

impl PublishMode {
    /// The `--json` spelling: `first_base`, `compaction`, `delta`, `unchanged`.
    pub fn as_str(self) -> &'static str {
        match self {
            PublishMode::FirstBase => "first_base",
            PublishMode::Compaction => "compaction",
            PublishMode::Delta => "delta",
            PublishMode::Unchanged => "unchanged",
        }
    }
}

impl std::fmt::Display for PublishMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PublishMode::FirstBase => "first base",
            PublishMode::Compaction => "compaction: new base",
            PublishMode::Delta => "delta layer",
            PublishMode::Unchanged => {
                "unchanged: nothing to publish (use `refresh` to extend the head's expiry)"
            }
        })
    }
}

/// What a publish did.
#[derive(Debug, Clone, Default)]
pub struct PublishReport {
    /// The log checkpoint after this publish (roots that name witnesses).
    pub log: Option<crate::log::LogReport>,
    pub version: u64,
    pub previous_version: Option<u64>,
    pub mode: PublishMode,
    pub entries: u64,
    pub ranges: usize,
    pub puts: u64,
    pub dels: u64,
    pub files_written: u64,
    pub files_reused: u64,
    pub bytes_written: u64,
    pub manifest_sha256: [u8; 32],
    pub state_root: [u8; 32],
    /// Site-relative names of the files written, with their sizes, in the
    /// order written (`head.cbor` last).
    pub written: Vec<(String, u64)>,
    /// The manifest's expiry and the head's (Unix seconds).
    pub manifest_expires: u64,
    pub head_expires: u64,
}

impl std::fmt::Display for PublishReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "published version {} ({}; previous {})",
            self.version,
            self.mode,
            self.previous_version
                .map_or_else(|| "none".into(), |v| v.to_string())
        )?;
        writeln!(
            f,
            "  entries      {} in {} range(s)",
            self.entries, self.ranges
        )?;
        writeln!(
            f,
            "  changes      {} upserts, {} deletions",
            self.puts, self.dels
        )?;
        writeln!(
            f,
            "  files        {} written, {} reused, {} bytes written",
            self.files_written, self.files_reused, self.bytes_written
        )?;
        writeln!(f, "  manifest     {}", hex::encode(self.manifest_sha256))?;
        write!(f, "  state root   {}", hex::encode(self.state_root))
    }
}

/// Convert records into rows with an interned policy table.
pub fn rows_of(records: &[Record], set: &mut PolicySet) -> Result<Rows> {
    let mut rows = Rows::default();
    for r in records {
        let Scope::Exact(isrc) = r.scope else {
            bail!("entry {} is not exact-scoped", r.id);
        };
        rows.push(isrc.key(), r.seq, &r.id, set.intern(&r.policy));
    }
    Ok(rows)
}

/// Range starts for `rows`: the previous boundaries where given (so unchanged
/// ranges keep their shard files), splitting any range that grew past twice the
/// target; otherwise a cut every `target` entries. Cuts fall between keys.
pub fn boundaries(rows: &Rows, prev: Option<&[u64]>, target: usize) -> Vec<u64> {
    let target = target.max(1);
    let cut_every = |a: usize, b: usize, out: &mut Vec<u64>| {
        let mut i = a + target;
        while i < b {
            // Never split one key's entries across ranges.
            while i < b && rows.keys[i] == rows.keys[i - 1] {
                i += 1;
            }
            if i < b {
                out.push(rows.keys[i]);
            }
            i += target;
        }
    };
    let mut out = vec![0];
    match prev {
        Some(prev) if !prev.is_empty() => {
            for (n, &lo) in prev.iter().enumerate() {
                if n > 0 {
                    out.push(lo);
                }
                let hi = prev.get(n + 1).copied().unwrap_or(KEY_SPACE);
                let (a, b) = (rows.lower_bound(lo), rows.lower_bound(hi));
                if b - a > 2 * target {
                    cut_every(a, b, &mut out);
                }
            }
        }
        _ => cut_every(0, rows.len(), &mut out),
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// One encoded data file ready to write.
struct DataFile {
    rel: String,
    bytes: Vec<u8>,
    fref: FileRef,
}

fn data_file(raw: &[u8], count: u64, name: fn(&[u8; 32]) -> String) -> DataFile {
    let bytes = columns::compress(raw);
    let h = sha256(&bytes);
    DataFile {
        rel: name(&h),
        fref: FileRef {
            count,
            length: bytes.len() as u64,
            sha256: h,
            raw_length: raw.len() as u64,
        },
        bytes,
    }
}

/// Deletions `(key, seq)` and upserts of one delta layer.
type LayerChanges = (Vec<(u64, u64)>, Rows);

/// The layer from the previous publication to now, or `None` when the registry
/// cannot tell (no matching publication record).
fn layer_since(
    source: &dyn Source,
    prev: &Current,
    upto: u64,
    set: &mut PolicySet,
) -> Result<Option<LayerChanges>> {
    let Some(p) = source.publication(prev.manifest.version)? else {
        return Ok(None);
    };
    if p.manifest_sha256 != prev.manifest_sha256 {
        return Ok(None);
    }
    let changes = source.exact_changes(p.change_id, upto)?;
    let mut dels = Vec::new();
    let mut wanted = Vec::new();
    for c in &changes {
        let Scope::Exact(isrc) = c.scope else {
            continue;
        };
        if c.exists_after {
            wanted.push((c.scope, c.seq));
        } else if c.existed_before {
            dels.push((isrc.key(), c.seq));
        }
    }
    let puts = source.records(&wanted, set)?;
    if puts.len() != wanted.len() {
        bail!(
            "the change log names {} live entries but the registry returned {}; the database is inconsistent",
            wanted.len(),
            puts.len()
        );
    }
    dels.sort_unstable();
    Ok(Some((dels, puts)))
}

/// Publish the next version of `source` into `site`, reading the registry in
/// one consistent snapshot.
pub fn publish(
    source: &mut dyn Source,
    keys: &[KeyPair],
    site: &Site,
    lock: &SiteLock,
    opts: &PublishOptions,
) -> Result<PublishReport> {
    site.check_lock(lock)?;
    source.begin_snapshot()?;
    let result = publish_in_snapshot(source, keys, site, opts);
    source.end_snapshot(result.is_ok())?;
    let mut report = result?;
    // The witnessed log (SPEC.md §15), after the head: a crash in between
    // leaves the log one version behind, and the next publish appends it.
    let root = site.root()?;
    let signers = signers_for(keys, &root.roles.manifest.keyids);
    report.log = crate::log::update(site, lock, &root, &signers)?;
    Ok(report)
}

fn publish_in_snapshot(
    source: &mut dyn Source,
    keys: &[KeyPair],
    site: &Site,
    opts: &PublishOptions,
) -> Result<PublishReport> {
    let roots = site.roots()?;
    let root = roots
        .last()
        .map(|(r, _)| r.clone())
        .ok_or_else(|| anyhow!("no root"))?;
    let now = match opts.now {
        Some(t) => t,
        None => source.registry_time()?,
    };
    opts.guard.check_root_keys(&root)?;
    if verify::is_expired(root.expires, now) {
        return Err(crate::advise!(
            "root version {} expired at {}",
            "rotate the root with a later expiry: consentry-publish root rotate",
            root.version,
            time::format_timestamp(root.expires as i64)
        ));
    }
    let manifest_signers = signers_for(keys, &root.roles.manifest.keyids);
    let head_signers = signers_for(keys, &root.roles.head.keyids);
    check_threshold(&root, Role::Manifest, manifest_signers.len())?;
    check_threshold(&root, Role::Head, head_signers.len())?;

    let prev = site.current(&root)?;
    let upto = source.last_change()?;
    let mut set = PolicySet::default();
    let prefixes = source.live_prefixes()?;
    let version = prev.as_ref().map_or(1, |p| p.manifest.version + 1);

    let layer = match &prev {
        Some(p) => layer_since(source, p, upto, &mut set)?,
        None => None,
    };
    let prev_bytes_of = |p: &Current| -> (u64, u64) {
        let base: u64 = p.manifest.ranges.iter().map(|r| r.shard.length).sum();
        let layers: u64 = p.manifest.layers.iter().map(|l| l.length).sum();
        (base, layers)
    };
    let compact = match (&prev, &layer) {
        (None, _) | (_, None) => true,
        (Some(p), Some(_)) => {
            let (base, layers) = prev_bytes_of(p);
            opts.compact
                || p.manifest.layers.len() as u64 + 1 > opts.policy.max_layers
                || (layers as f64) > opts.policy.max_layer_fraction * base.max(1) as f64
        }
    };

    let mut files: Vec<DataFile> = Vec::new();
    let mut report = PublishReport {
        version,
        previous_version: prev.as_ref().map(|p| p.manifest.version),
        ..PublishReport::default()
    };

    // The delta layer, when there is a previous version to diff against.
    let layer_ref = layer.as_ref().map(|(dels, puts)| {
        report.puts = puts.len() as u64;
        report.dels = dels.len() as u64;
        let raw = columns::encode_layer(version - 1, version, dels, puts, &set);
        let f = data_file(&raw, (dels.len() + puts.len()) as u64, paths::layer);
        let r = LayerRef {
            count: f.fref.count,
            length: f.fref.length,
            sha256: f.fref.sha256,
            version,
            raw_length: f.fref.raw_length,
        };
        files.push(f);
        r
    });

    let prefix_file = data_file(
        &columns::encode_prefixes(&prefixes),
        prefixes.len() as u64,
        paths::prefixes,
    );
    let prefix_ref = prefix_file.fref.clone();
    files.push(prefix_file);

    // Nothing changed: no new version (versions mean changes), unless the
    // current manifest is past half its lifetime and needs re-issuing.
    if let (Some(p), Some((dels, puts))) = (&prev, &layer)
        && dels.is_empty()
        && puts.is_empty()
        && p.manifest.prefixes.sha256 == prefix_ref.sha256
        && !opts.compact
        && (now.max(0) as u64).saturating_add(opts.manifest_ttl / 2) < p.manifest.expires
    {
        source.record_publication(&Publication {
            version: p.manifest.version,
            change_id: upto,
            manifest_sha256: p.manifest_sha256,
        })?;
        return Ok(PublishReport {
            version: p.manifest.version,
            previous_version: Some(p.manifest.version),
            mode: PublishMode::Unchanged,
            manifest_expires: p.manifest.expires,
            head_expires: p.head.expires,
            entries: p.manifest.entries,
            ranges: p.manifest.ranges.len(),
            manifest_sha256: p.manifest_sha256,
            state_root: p.manifest.state_root,
            ..PublishReport::default()
        });
    }

    let (base, layers, ranges) = if compact {
        report.mode = if prev.is_none() {
            PublishMode::FirstBase
        } else {
            PublishMode::Compaction
        };
        let all = source.live_exact(&mut set)?;
        let prev_los: Option<Vec<u64>> = prev
            .as_ref()
            .map(|p| p.manifest.ranges.iter().map(|r| r.lo).collect());
        let los = boundaries(&all, prev_los.as_deref(), opts.target_rows);
        opts.progress
            .start("building shards", Some(all.len() as u64), Unit::Items);
        let built = build_base(&all, &los, &set, opts.progress.as_ref());
        opts.progress.finish();
        let (shards, ranges) = built?;
        files.extend(shards);
        (version, Vec::new(), ranges)
    } else {
        report.mode = PublishMode::Delta;
        let p = prev
            .as_ref()
            .map(|p| &p.manifest)
            .ok_or_else(|| anyhow!("delta without a previous version"))?;
        let new_layer = files
            .first()
            .filter(|_| layer_ref.is_some())
            .ok_or_else(|| anyhow!("delta without a layer"))?;
        let ranges = delta_ranges(site, p, new_layer, &mut set)?;
        let mut layers = p.layers.clone();
        layers.extend(layer_ref.clone());
        (p.base, layers, ranges)
    };

    let entries = ranges.iter().map(|r| r.count).sum::<u64>() + prefix_ref.count;
    let mut manifest = Manifest {
        base,
        delta: layer_ref,
        layers,
        ranges,
        created: now.max(0) as u64,
        entries,
        expires: (now.max(0) as u64).saturating_add(opts.manifest_ttl),
        version,
        prefixes: prefix_ref,
        previous: prev.as_ref().map(|p| p.manifest_sha256),
        state_root: [0; 32],
        prefix_leaf: state::prefix_leaf(&prefixes),
    };
    manifest.state_root = state::merkle_root(&state::leaves_of(&manifest));
    opts.guard.check_expiry(
        &format!("manifest version {version}"),
        manifest.expires,
        now,
    )?;
    let manifest_bytes =
        sign_envelope(MANIFEST_TYPE, cbor::to_vec(&manifest), &manifest_signers)?.to_bytes();
    let manifest_sha256 = sha256(&manifest_bytes);
    let head = Head {
        expires: (now.max(0) as u64).saturating_add(opts.head_ttl),
        version: prev.as_ref().map_or(1, |p| p.head.version + 1),
        manifest: ManifestRef {
            length: manifest_bytes.len() as u64,
            sha256: manifest_sha256,
            version,
        },
    };
    opts.guard
        .check_expiry(&format!("head version {}", head.version), head.expires, now)?;
    let head_bytes = sign_envelope(HEAD_TYPE, cbor::to_vec(&head), &head_signers)?.to_bytes();

    // Immutable files first.
    let mut seen = HashSet::new();
    opts.progress.start(
        "writing files",
        Some(files.iter().map(|f| f.bytes.len() as u64).sum()),
        Unit::Bytes,
    );
    for f in &files {
        if !seen.insert(f.rel.clone()) {
            continue;
        }
        if site.write_immutable(&f.rel, &f.bytes)? {
            report.files_written += 1;
            report.bytes_written += f.bytes.len() as u64;
            report.written.push((f.rel.clone(), f.bytes.len() as u64));
        } else {
            report.files_reused += 1;
        }
        opts.progress.inc(f.bytes.len() as u64);
    }
    opts.progress.finish();
    failpoint(opts, "after-data")?;
    let mrel = paths::manifest(version, &manifest_sha256);
    site.write_immutable(&mrel, &manifest_bytes)?;
    report.files_written += 1;
    report.bytes_written += manifest_bytes.len() as u64;
    report
        .written
        .push((mrel.clone(), manifest_bytes.len() as u64));
    failpoint(opts, "after-manifest")?;

    // Self-check: read back from disk and verify as a verifier would —
    // everything after a compaction; after a delta, the new layer and the
    // manifest (the new leaves were derived from the previous published state
    // and that same layer's bytes, as a delta-syncing verifier derives them).
    let scope = if compact {
        Check::Everything
    } else {
        Check::NewLayer
    };
    opts.progress.start("self-check", None, Unit::Items);
    let checked = self_check(site, &root, &head_bytes, now, prev.as_ref(), scope);
    opts.progress.finish();
    checked
        .context("self-check of the new snapshot failed; the previous head is still in place")?;
    failpoint(opts, "before-head")?;

    site.write_atomic(paths::HEAD, &head_bytes)?;
    report.files_written += 1;
    report.bytes_written += head_bytes.len() as u64;
    report
        .written
        .push((paths::HEAD.to_string(), head_bytes.len() as u64));
    report.manifest_expires = manifest.expires;
    report.head_expires = head.expires;
    source.record_publication(&Publication {
        version,
        change_id: upto,
        manifest_sha256,
    })?;

    report.entries = entries;
    report.ranges = manifest.ranges.len();
    report.manifest_sha256 = manifest_sha256;
    report.state_root = manifest.state_root;
    Ok(report)
}

fn failpoint(opts: &PublishOptions, name: &str) -> Result<()> {
    if opts.failpoint.as_deref() == Some(name) {
        bail!("failpoint {name} reached (test hook): stopping before the head is switched");
    }
    Ok(())
}

fn check_threshold(root: &Root, role: Role, have: usize) -> Result<()> {
    let need = root.role(role).threshold;
    if (have as u64) < need {
        return Err(crate::advise!(
            "only {} of the {} {} key(s) the root requires were found",
            "pass --keys with the directory holding the {} role's .key files",
            have,
            need,
            role.name(),
            role.name()
        ));
    }
    Ok(())
}

/// How much of a new snapshot [`self_check`] reads back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Every file and every leaf.
    Everything,
    /// Documents, the chain link, and the manifest's newest layer (its leaves
    /// were derived from the previous state and that layer).
    NewLayer,
}

/// Verify a site's would-be head and what is under it, from disk, with the
/// verifier's code: manifest signature and structure, the chain link to the
/// previous manifest, and per `scope` every data file's hash and decoding
/// with the layers applied onto the base and every range leaf compared (in
/// parallel, one range at a time), or only the newest layer.
pub fn self_check(
    site: &Site,
    root: &Root,
    head_bytes: &[u8],
    now: i64,
    prev: Option<&Current>,
    scope: Check,
) -> Result<Manifest> {
    let limits = &site.limits;
    let head = verify::verify_head(
        root,
        paths::HEAD,
        head_bytes,
        now,
        Expiry::AllowExpired,
        limits,
    )?;
    let mrel = paths::manifest(head.manifest.version, &head.manifest.sha256);
    let mbytes = site.read(&mrel)?;
    let m = verify::verify_manifest(
        root,
        &head,
        &mrel,
        &mbytes,
        now,
        Expiry::AllowExpired,
        limits,
    )?;
    if let Some(p) = prev {
        verify::check_manifest_chain(&mrel, &m, Some((p.manifest.version, p.manifest_sha256)))?;
    }
    match (scope, m.layers.last()) {
        (Check::NewLayer, Some(l)) => {
            // The newest layer, going from the version before it, and the
            // prefix table with its leaf; the ranges' leaves were derived
            // from the previous state and this layer.
            let files = &mut SiteFiles::new(site);
            rebuild::open_layer(files, l, l.version - 1, limits, &mut PolicySet::default())?;
            let prefixes = rebuild::open_prefixes(files, &m, limits)?;
            state::check_prefix_leaf(&m, &prefixes, "manifest")?;
        }
        _ => check_everything(site, &m)?,
    }
    Ok(m)
}

/// `f(state, i)` for every `i` in `0..n` on all cores, each worker with its
/// own `init()` state; results in index order, the first error stops all.
fn par_map<S, T: Send>(
    n: usize,
    init: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, usize) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    consentry::par::map(n, init, f, || anyhow!("a publish worker thread panicked"))
}

/// The shards and ranges of a new base over `all`, cut at `los`; each range
/// is encoded, compressed and hashed on its own worker.
fn build_base(
    all: &Rows,
    los: &[u64],
    set: &PolicySet,
    progress: &dyn Progress,
) -> Result<(Vec<DataFile>, Vec<Range>)> {
    let hashes: Vec<[u8; 32]> = set.list.iter().map(state::policy_hash).collect();
    let built = par_map(
        los.len(),
        || (),
        |(), i| {
            let lo = los[i];
            let hi = los.get(i + 1).copied().unwrap_or(KEY_SPACE);
            let rows = all.slice(all.lower_bound(lo), all.lower_bound(hi));
            let f = data_file(
                &columns::encode_shard(lo, hi, &rows, set),
                rows.len() as u64,
                paths::shard,
            );
            let range = Range {
                lo,
                leaf: state::range_leaf(lo, hi, &rows, &hashes),
                count: rows.len() as u64,
                shard: f.fref.clone(),
            };
            progress.inc(rows.len() as u64);
            Ok((f, range))
        },
    )?;
    Ok(built.into_iter().unzip())
}

/// The ranges of the next version after `prev` plus the layer in `new_layer`
/// (decoded from the very bytes that will be written): untouched ranges keep
/// their leaf and count; the others are rebuilt from the previous state (base
/// shard and previous layers, read back from `site`) and the layer, one range
/// per worker, and hashed again.
fn delta_ranges(
    site: &Site,
    prev: &Manifest,
    new_layer: &DataFile,
    set: &mut PolicySet,
) -> Result<Vec<Range>> {
    let mut layers = rebuild::open_layers(&mut SiteFiles::new(site), prev, &site.limits, set)?;
    let raw = columns::open_file(
        &new_layer.rel,
        &new_layer.bytes,
        &new_layer.fref,
        &site.limits,
    )?;
    let layer = columns::decode_layer(
        &new_layer.rel,
        &raw,
        new_layer.fref.count,
        &site.limits,
        set,
    )?;
    layers.push((new_layer.rel.clone(), layer));
    let Some((_, newest)) = layers.last() else {
        unreachable!("a layer was just pushed")
    };
    let base = Hashed::new(set);
    par_map(
        prev.ranges.len(),
        || (base.clone(), SiteFiles::new(site)),
        |(h, files), i| {
            let (lo, hi) = prev.range_bounds(i);
            let mut r = prev.ranges[i].clone();
            if newest.part(lo, hi).is_none() {
                return Ok(r);
            }
            let rows = rebuild::range_rows(files, prev, i, &layers, &site.limits, &mut h.set)?;
            r.count = rows.len() as u64;
            r.leaf = state::range_leaf(lo, hi, &rows, h.hashes());
            Ok(r)
        },
    )
}

/// Everything a verifier checks of `m` from the site's files
/// ([`rebuild::open_overlay`]: the layers, the compacted base's delta, the
/// prefix table and its leaf; then [`rebuild::check_ranges`]: every range
/// rebuilt from its shard and the layers and compared with its signed count
/// and leaf, one range at a time per worker, so memory stays at a range per
/// core).
fn check_everything(site: &Site, m: &Manifest) -> Result<()> {
    let overlay = rebuild::open_overlay(&mut SiteFiles::new(site), m, &site.limits)?;
    rebuild::check_ranges(
        m,
        &overlay,
        &site.limits,
        || SiteFiles::new(site),
        |_, rows, hashes| (state::chunk_hashes(rows, hashes), ()),
    )?;
    Ok(())
}

/// Rebuild the state a manifest describes from the site's base shards and
/// layers, checking every file and every leaf, exactly as a verifier's sync
/// from the base does ([`rebuild::full_state`]).
pub fn load_state(site: &Site, m: &Manifest) -> Result<State> {
    Ok(rebuild::full_state(
        &mut SiteFiles::new(site),
        m,
        &site.limits,
    )?)
}

/// Re-sign the head with a new expiry, without rebuilding anything. The head
/// version is the current one + 1, read under the site lock, so it never goes
/// backwards whatever runs beside it.
pub fn refresh(
    site: &Site,
    lock: &SiteLock,
    keys: &[KeyPair],
    now: i64,
    head_ttl: u64,
    guard: Guard,
) -> Result<Head> {
    site.check_lock(lock)?;
    let root = site.root()?;
    guard.check_root_keys(&root)?;
    let signers = signers_for(keys, &root.roles.head.keyids);
    check_threshold(&root, Role::Head, signers.len())?;
    let cur = site
        .current(&root)?
        .ok_or_else(|| crate::advise!("{} has no head yet", "publish first", site.dir.display()))?;
    let head = Head {
        expires: (now.max(0) as u64).saturating_add(head_ttl),
        version: cur.head.version + 1,
        manifest: cur.head.manifest.clone(),
    };
    guard.check_expiry(&format!("head version {}", head.version), head.expires, now)?;
    // A fresh head over an expired manifest is refused by every verifier.
    guard.check_expiry_or(
        &format!(
            "head version {} (it names manifest version {}, which is what expires)",
            head.version, cur.manifest.version
        ),
        cur.manifest.expires,
        now,
        "run `consentry-publish publish`: it re-issues a manifest past half its lifetime",
    )?;
    let bytes = sign_envelope(HEAD_TYPE, cbor::to_vec(&head), &signers)?.to_bytes();
    verify::verify_head(
        &root,
        paths::HEAD,
        &bytes,
        now,
        Expiry::Enforce,
        &site.limits,
    )
    .context("self-check of the refreshed head failed")?;
    site.write_atomic(paths::HEAD, &bytes)?;
    Ok(head)
}
