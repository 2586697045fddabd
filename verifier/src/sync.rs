//! Sync: the client workflow of SPEC.md §7, steps 0–10, from any [`Fetch`]
//! into a [`Store`].
//!
//! Nothing the source sends is used before it is verified, and nothing in the
//! store changes meaning before the end: roots are persisted as each one
//! verifies (they are trust, not data), data files are staged in
//! `local/staging-*` and moved into place only after the whole new state
//! matched the manifest's leaves, then the manifest, the new index and, last,
//! `head.cbor` are written. A failure or a kill at any point leaves the
//! previous head, manifest and index answering.

use std::path::{Path, PathBuf};

use crate::columns;
use crate::docs::{FileRef, Head, Manifest, Root, paths};
use crate::envelope::sha256;
use crate::error::{Code, Rejection, reject};
use crate::fetch::{Fetch, SiteFile, io_error};
use crate::fsio::write_atomic;
use crate::index::Index;
use crate::limits::Limits;
use crate::rebuild::{self, DataFiles};
use crate::state::State;
use crate::store::{Snapshot, Store, StoreFiles, StoredHead};
use crate::tlog;
use crate::verify::{self, Expiry};

/// Options of one sync or import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncOptions {
    /// The update start time (Unix seconds), fixed once for the whole run.
    pub now: i64,
    pub expiry: Expiry,
    /// Keep the data files of this many most recent manifests (at least the
    /// current one); `None` keeps everything.
    pub keep_history: Option<usize>,
}

/// How the new state was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// The source holds the snapshot the store already has.
    NothingNew,
    /// Local state + the one delta layer to the new version.
    Delta,
    /// Local state + several layers.
    Layers,
    /// Base shards (those not already held) + all layers.
    Full,
    /// Same snapshot; missing or damaged files were fetched again.
    Repair,
}

impl SyncMode {
    pub fn name(self) -> &'static str {
        match self {
            SyncMode::NothingNew => "nothing new",
            SyncMode::Delta => "delta",
            SyncMode::Layers => "layers",
            SyncMode::Full => "full",
            SyncMode::Repair => "repair",
        }
    }
}

/// What a sync did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// Snapshot version before (`None`: none was trusted).
    pub from: Option<u64>,
    pub to: u64,
    pub head_version: u64,
    pub mode: SyncMode,
    /// Root versions added to the trusted chain.
    pub roots_added: Vec<u64>,
    pub files_fetched: u64,
    pub bytes_fetched: u64,
    pub files_reused: u64,
    /// Base shards rebuilt locally after a compaction.
    pub files_derived: u64,
    pub layers_applied: u64,
    /// Files removed by `keep_history`.
    pub files_pruned: u64,
    pub manifest_sha256: String,
}

impl SyncReport {
    /// The report of a run that has verified its roots and head: nothing
    /// done yet.
    fn new(roots: &Roots, trusted: Option<&Trusted>, head: &Head) -> SyncReport {
        SyncReport {
            from: trusted.map(|t| t.head.manifest.version),
            to: head.manifest.version,
            head_version: head.version,
            mode: SyncMode::NothingNew,
            roots_added: roots.new.iter().map(|(v, _)| *v).collect(),
            files_fetched: 0,
            bytes_fetched: 0,
            files_reused: 0,
            files_derived: 0,
            layers_applied: 0,
            files_pruned: 0,
            manifest_sha256: hex::encode(head.manifest.sha256),
        }
    }
}

fn not_found(loc: &str, what: &str) -> Rejection {
    reject(loc, Code::NotFound, format!("the source has no {what}"))
}

/// Data files as the sync needs them: from the store when it already holds
/// them (re-hashed, never trusted: [`StoreFiles`]), else from the source into
/// the staging directory, checked the same way.
pub(crate) struct Files<'a> {
    store: &'a Store,
    local: StoreFiles<'a>,
    remote: &'a dyn Fetch,
    staging: PathBuf,
    /// Site names written to the staging directory.
    pub staged: Vec<String>,
    pub fetched: u64,
    pub fetched_bytes: u64,
}

impl<'a> Files<'a> {
    fn new(store: &'a Store, fetch: &'a dyn Fetch, staging: &Path) -> Files<'a> {
        Files {
            store,
            local: StoreFiles::new(store),
            remote: fetch,
            staging: staging.to_path_buf(),
            staged: Vec::new(),
            fetched: 0,
            fetched_bytes: 0,
        }
    }

    /// Write verified bytes into the staging directory.
    fn stage(&mut self, rel: &str, bytes: &[u8]) -> Result<(), Rejection> {
        crate::fsio::create_new(&self.staging.join(rel), bytes)?;
        self.staged.push(rel.to_string());
        Ok(())
    }

    fn staged_path(&self, rel: &str) -> Option<PathBuf> {
        self.staged
            .iter()
            .any(|s| s == rel)
            .then(|| self.staging.join(rel))
    }

    /// Make sure `rel` is held (stored or staged): a staged file, or a stored
    /// file with the signed length and SHA-256, is kept as it is (`None`);
    /// any other (missing, or altered in place) is fetched again and checked
    /// (step 7), and its payload and location returned for the caller to
    /// decode, so a damaged file never outlives a sync (SPEC.md §7 step 9).
    fn ensure(
        &mut self,
        rel: &str,
        fref: &FileRef,
    ) -> Result<Option<(Vec<u8>, String)>, Rejection> {
        if self.staged_path(rel).is_some() {
            return Ok(None);
        }
        if self.store.holds(rel, fref.length, &fref.sha256)? {
            return Ok(None);
        }
        self.open(rel, fref).map(Some)
    }
}

impl DataFiles for Files<'_> {
    /// A file staged earlier in this run, else the store's copy, else (when
    /// the store lacks it or its copy fails) the source's, staged.
    fn open(&mut self, rel: &str, fref: &FileRef) -> Result<(Vec<u8>, String), Rejection> {
        let limits = *self.store.limits();
        rebuild::check_declared_length(rel, fref, &limits)?;
        if let Some(p) = self.staged_path(rel) {
            let loc = p.display().to_string();
            let bytes = std::fs::read(&p).map_err(|e| io_error(&loc, &e))?;
            return Ok((columns::open_file(&loc, &bytes, fref, &limits)?, loc));
        }
        let err = match self.local.open(rel, fref) {
            Ok(opened) => return Ok(opened),
            Err(e) => e,
        };
        if err.code != Code::StoreIncomplete {
            self.store.reporter().warn(&format!(
                "{} is damaged ({}); fetching it again",
                err.file, err.detail
            ));
        }
        // Never read past the signed length, nor past the hard cap.
        let max = fref.length.min(limits.max_file_bytes);
        let loc = self.remote.location(rel);
        let bytes = self
            .remote
            .get(rel, max)?
            .ok_or_else(|| not_found(&loc, rel))?;
        let raw = columns::open_file(&loc, &bytes, fref, &limits)?;
        self.fetched += 1;
        self.fetched_bytes += bytes.len() as u64;
        self.store.reporter().advance(rel, bytes.len() as u64);
        self.stage(rel, &bytes)?;
        Ok((raw, loc))
    }
}

/// The state of the trusted manifest, from the store's own data files
/// (each checked against its signed length and hash: see
/// [`rebuild::trusted_state`]) or, failing that, from its index (every
/// block verified). `None` when neither works.
fn local_state(store: &Store, m: &Manifest, sha: &[u8; 32]) -> Option<State> {
    let from_files = rebuild::trusted_state(&mut StoreFiles::new(store), m, store.limits());
    let files_error = match from_files {
        Ok(st) => return Some(st),
        Err(e) => e,
    };
    let path = store.index_path(sha);
    let from_index = match Index::open(&path, m, sha, store.limits()) {
        Ok(Some(ix)) => ix.load_state(),
        Ok(None) => Err(reject(
            path.display().to_string(),
            Code::NotFound,
            "is missing",
        )),
        Err(e) => Err(e),
    };
    match from_index {
        Ok(st) => Some(st),
        Err(e) => {
            store.reporter().warn(&format!(
                "the local snapshot cannot be read from its files ({files_error}) or its index ({e}); fetching the full snapshot"
            ));
            None
        }
    }
}

/// A fresh staging directory under `local/` (one a killed run left behind
/// is removed by the next writer, `Store::remove_leftovers`).
pub(crate) fn staging_dir(store: &Store) -> Result<tempfile::TempDir, Rejection> {
    std::fs::create_dir_all(store.local()).map_err(|e| io_error(&store.loc("local"), &e))?;
    tempfile::Builder::new()
        .prefix("staging-")
        .tempdir_in(store.local())
        .map_err(|e| io_error(&store.loc("local"), &e))
}

/// Sync `store` from `fetch` (SPEC.md §7).
pub fn sync(store: &Store, fetch: &dyn Fetch, opts: &SyncOptions) -> Result<SyncReport, Rejection> {
    let _lock = store.lock()?;
    store.remove_leftovers();
    let r = sync_locked(store, fetch, opts);
    store.reporter().finish();
    r
}

/// Whether the store holds everything `m` references, each file with its
/// signed length and SHA-256 (re-hashed on all cores: a file altered in place
/// is not "held"), and an index that opens.
fn complete(store: &Store, m: &Manifest, sha: &[u8; 32]) -> bool {
    let mut want: Vec<(String, u64, [u8; 32])> = m
        .ranges
        .iter()
        .map(|r| {
            (
                paths::shard(&r.shard.sha256),
                r.shard.length,
                r.shard.sha256,
            )
        })
        .collect();
    want.extend(
        m.layers
            .iter()
            .chain(m.delta.as_ref())
            .map(|l| (paths::layer(&l.sha256), l.length, l.sha256)),
    );
    want.push((
        paths::prefixes(&m.prefixes.sha256),
        m.prefixes.length,
        m.prefixes.sha256,
    ));
    let held = crate::par::map(
        want.len(),
        || (),
        |(), i| {
            let (rel, len, sha) = &want[i];
            store.holds(rel, *len, sha)
        },
        || reject("sync", Code::IoError, "a worker thread stopped early"),
    );
    held.is_ok_and(|h| h.iter().all(|x| *x))
        && matches!(
            Index::open(&store.index_path(sha), m, sha, store.limits()),
            Ok(Some(_))
        )
}

/// [`sync`] for a caller that already holds the store's lock: the steps of
/// SPEC.md §7 in order, each a function below. Nothing is written before
/// step 10 (or, when nothing is new, before step 6 decided so).
pub(crate) fn sync_locked(
    store: &Store,
    fetch: &dyn Fetch,
    opts: &SyncOptions,
) -> Result<SyncReport, Rejection> {
    let run = Run {
        store,
        fetch,
        opts,
        limits: *store.limits(),
    };
    let roots = run.step1_2_root_chain()?;
    let trusted = run.step2_trusted(&roots)?;
    let head = run.step3_head(&roots.root, trusted.as_ref())?;
    let mut report = SyncReport::new(&roots, trusted.as_ref(), &head.head);
    let named = run.step4_5_manifest(&roots.root, &head.head, trusted.as_ref())?;
    let m = &named.manifest;
    let sha = head.head.manifest.sha256;
    let log = run.step5_log(&roots.root, m, &sha)?;
    let plan = run.step6_plan(&named, &sha, trusted.as_ref());
    if let Plan::NothingNew = plan {
        run.write_log(log.as_ref())?;
        run.step10_head_only(&roots, &head)?;
        prune(store, opts, m, &sha, &mut report);
        return Ok(report);
    }

    let staging = staging_dir(store)?;
    let mut files = Files::new(store, fetch, staging.path());
    let rep = store.reporter();
    rep.start(
        "fetching",
        m.ranges.len() as u64 + m.layers.len() as u64 + 1,
    );
    let (state, via_layers) = run.step7_9_state(&mut files, plan, m, &mut report)?;
    let derived = if via_layers && m.base == m.version {
        run.step9_derive(&mut files, m, &state)?
    } else {
        Vec::new()
    };
    report.files_derived = derived.len() as u64;
    run.step7_complete(&mut files, m, &derived, via_layers)?;
    rep.finish();

    let accepted = Accepted {
        named: &named,
        head: &head,
        log: log.as_ref(),
    };
    run.step10_switch(&roots, &files, &derived, &accepted, &state)?;
    drop(staging);
    report.files_fetched = files.fetched;
    report.bytes_fetched = files.fetched_bytes;
    report.files_reused = files.local.opened;
    remove_other_indexes(store, &sha);
    prune(store, opts, m, &sha, &mut report);
    Ok(report)
}

/// One run's fixed inputs. Step 0: the time is fixed once (`opts.now`) and
/// checked against the clock floor — signed creation times verified along
/// the way ([`verify::check_clock_floor`]) — never against a time this
/// store recorded.
struct Run<'a> {
    store: &'a Store,
    fetch: &'a dyn Fetch,
    opts: &'a SyncOptions,
    limits: Limits,
}

/// The root chain after steps 1–2.
struct Roots {
    /// The last root of the store's own chain (step 1).
    start: Root,
    /// The last root verified (step 2): the one every later step uses.
    root: Root,
    /// Roots newly verified from the source, by version: written at the
    /// switch, so that a refused run leaves the store exactly as it was.
    new: Vec<(u64, Vec<u8>)>,
}

/// The trusted head and manifest from the store, under the final root.
struct Trusted {
    head: Head,
    manifest: Option<Manifest>,
}

/// The head of step 3.
struct NewHead {
    head: Head,
    bytes: Vec<u8>,
    /// Its version is above the trusted head's (or nothing was trusted).
    is_newer: bool,
}

/// The manifest the head names (steps 4–5).
struct Named {
    manifest: Manifest,
    /// Its bytes when fetched from the source; `None` when the head names
    /// the trusted manifest and the stored copy was used.
    bytes: Option<Vec<u8>>,
}

/// The log files verified by SPEC.md §15.3, stored at the switch.
struct LogFiles {
    note: Vec<u8>,
    leaves: Vec<u8>,
}

/// What the switch makes current: the manifest, its head and its log.
#[derive(Clone, Copy)]
struct Accepted<'a> {
    named: &'a Named,
    head: &'a NewHead,
    log: Option<&'a LogFiles>,
}

/// Step 6's decision.
enum Plan {
    /// The head names the trusted manifest and the store holds every file
    /// it names and its index: only a newer head to store.
    NothingNew,
    /// The head names the trusted manifest, but a file or the index is
    /// missing or damaged: the state is rebuilt from the base.
    Repair,
    /// From the local state of version `.0` through the delta or layers.
    Incremental(u64, State),
    /// From the base shards.
    Full,
}

impl Run<'_> {
    /// Steps 1 and 2: the store's trusted chain (the pinned root checked
    /// against `trust.json`, then every stored root after it), then newer
    /// roots from the source, each signed by the old and the new root keys,
    /// at most `max_root_rotations` per run; the final root must not be
    /// expired.
    fn step1_2_root_chain(&self) -> Result<Roots, Rejection> {
        let limits = &self.limits;
        let start = self.store.trusted_root_chain()?.root;
        let mut new = Vec::new();
        let walk = verify::walk_roots(
            start.clone(),
            limits.max_root_rotations,
            limits,
            |v| {
                let rel = paths::root(v);
                let bytes = self.fetch.get(&rel, limits.max_root_bytes)?;
                Ok(bytes.map(|b| (self.fetch.location(&rel), b)))
            },
            |r, bytes| new.push((r.version, bytes)),
        )?;
        if walk.steps == limits.max_root_rotations {
            self.store.reporter().warn(&format!(
                "stopped after {} root rotations in one run; run sync again to continue",
                walk.steps
            ));
        }
        let root = walk.root;
        let rel = paths::root(root.version);
        let rloc = if new.is_empty() {
            self.store.loc(&rel)
        } else {
            self.fetch.location(&rel)
        };
        verify::check_root_expiry(&root, &rloc, self.opts.now, self.opts.expiry)?;
        Ok(Roots { start, root, new })
    }

    /// Step 2 (end): the trusted head and manifest — the stored ones,
    /// re-verified under the final root with expiry ignored, or none when
    /// the walk changed the head or manifest keys (fast-forward recovery) or
    /// the stored head no longer verifies. Step 0: `now` must not be before
    /// the trusted manifest was made.
    fn step2_trusted(&self, roots: &Roots) -> Result<Option<Trusted>, Rejection> {
        let (store, now) = (self.store, self.opts.now);
        let (start, root) = (&roots.start, &roots.root);
        let rep = store.reporter();
        if start.roles.head != root.roles.head || start.roles.manifest != root.roles.manifest {
            rep.warn(&format!(
                "root version {} changed the head or manifest keys; the previously trusted head and manifest are forgotten (fast-forward recovery)",
                root.version
            ));
            return Ok(None);
        }
        let head = match store.stored_head(root, now, Expiry::AllowExpired)? {
            StoredHead::Missing => return Ok(None),
            StoredHead::NotTrusted(e) => {
                rep.warn(&format!(
                    "the stored head does not verify under root version {} ({}); syncing as if the store were empty",
                    root.version, e.detail
                ));
                return Ok(None);
            }
            StoredHead::Valid(h) => h,
        };
        let manifest = match store.stored_manifest(root, &head, now, Expiry::AllowExpired) {
            Ok(m) => m,
            Err(e) => {
                rep.warn(&format!("the stored manifest is not usable ({e})"));
                None
            }
        };
        if let Some(m) = &manifest {
            let rel = paths::manifest(m.version, &head.manifest.sha256);
            verify::check_clock_floor(&store.loc(&rel), now, m.created)?;
        }
        Ok(Some(Trusted { head, manifest }))
    }

    /// Step 3: the source's head under the final root's head keys, not
    /// expired, not older than or forking from the trusted head.
    fn step3_head(&self, root: &Root, trusted: Option<&Trusted>) -> Result<NewHead, Rejection> {
        let hloc = self.fetch.location(paths::HEAD);
        let bytes = self
            .fetch
            .get(paths::HEAD, self.limits.max_head_bytes)?
            .ok_or_else(|| not_found(&hloc, "head.cbor"))?;
        let (now, expiry) = (self.opts.now, self.opts.expiry);
        let head = verify::verify_head(root, &hloc, &bytes, now, expiry, &self.limits)?;
        verify::check_head_rollback(&hloc, &head, trusted.map(|t| &t.head))?;
        verify::check_manifest_fork(
            &hloc,
            head.manifest.version,
            &head.manifest.sha256,
            trusted_ref(trusted),
        )?;
        let is_newer = trusted.is_none_or(|t| head.version > t.head.version);
        Ok(NewHead {
            head,
            bytes,
            is_newer,
        })
    }

    /// Steps 4 and 5: the manifest the head names — the stored copy when it
    /// is the trusted one (re-verified, its expiry checked under this run's
    /// rules), else fetched and verified, chained to the trusted manifest,
    /// and (step 0) made no later than `now` allows.
    fn step4_5_manifest(
        &self,
        root: &Root,
        head: &Head,
        trusted: Option<&Trusted>,
    ) -> Result<Named, Rejection> {
        let (now, expiry) = (self.opts.now, self.opts.expiry);
        let same = trusted
            .filter(|t| t.head.manifest == head.manifest)
            .and_then(|t| t.manifest.clone());
        if let Some(m) = same {
            let m = self
                .store
                .stored_manifest(root, head, now, expiry)?
                .unwrap_or(m);
            return Ok(Named {
                manifest: m,
                bytes: None,
            });
        }
        let mrel = paths::manifest(head.manifest.version, &head.manifest.sha256);
        let mloc = self.fetch.location(&mrel);
        let max = head.manifest.length.min(self.limits.max_manifest_bytes);
        let bytes = self
            .fetch
            .get(&mrel, max)?
            .ok_or_else(|| not_found(&mloc, &mrel))?;
        let m = verify::verify_manifest(root, head, &mloc, &bytes, now, expiry, &self.limits)?;
        verify::check_manifest_chain(&mloc, &m, trusted_ref(trusted))?;
        // A snapshot signed as made after `now` (beyond the skew tolerance)
        // means one of the clocks is wrong; accepting it would raise the
        // floor above this machine's clock.
        verify::check_clock_floor(&mloc, now, m.created)?;
        Ok(Named {
            manifest: m,
            bytes: Some(bytes),
        })
    }

    /// SPEC.md §15.3, when the final root names witnesses: the source's
    /// checkpoint and leaves, checked against the root's manifest keys and
    /// witness threshold, against the manifest accepted (`manifest`, whose
    /// file hashes to `sha`), and against the checkpoint this store trusted before (a
    /// fork is `log_fork`). Returns the two files to store at the switch.
    fn step5_log(
        &self,
        root: &Root,
        manifest: &crate::docs::Manifest,
        sha: &[u8; 32],
    ) -> Result<Option<LogFiles>, Rejection> {
        let Some(policy) = &root.witnesses else {
            return Ok(None);
        };
        let get = |rel: &str, max: u64| {
            let loc = self.fetch.location(rel);
            self.fetch
                .get(rel, max)?
                .ok_or_else(|| not_found(&loc, rel))
        };
        let note = get(tlog::CHECKPOINT_PATH, crate::note::MAX_NOTE_BYTES as u64)?;
        let leaves = get(tlog::LEAVES_PATH, tlog::MAX_LOG_SIZE * 32)?;
        let last = self.store.trusted_checkpoint()?;
        let entry = tlog::LogEntry::of(manifest, sha);
        tlog::verify_checkpoint(root, policy, &note, &leaves, &entry, last.as_ref())?;
        Ok(Some(LogFiles { note, leaves }))
    }

    /// The verified log files, leaves first (a checkpoint never names more
    /// leaves than the stored file holds).
    fn write_log(&self, log: Option<&LogFiles>) -> Result<(), Rejection> {
        if let Some(l) = log {
            self.store.write(tlog::LEAVES_PATH, &l.leaves)?;
            self.store.write(tlog::CHECKPOINT_PATH, &l.note)?;
        }
        Ok(())
    }

    /// Step 6: what the run must do. The same manifest: nothing, unless the
    /// store lacks a file or its index (then repair). A newer one: from the
    /// trusted state when the delta (S = V − 1) or the layers (B ≤ S) reach
    /// it from there and that state can be read — from the index, or rebuilt
    /// from the store's verified files — else from the base.
    fn step6_plan(&self, named: &Named, sha: &[u8; 32], trusted: Option<&Trusted>) -> Plan {
        let m = &named.manifest;
        if named.bytes.is_none() {
            if complete(self.store, m, sha) {
                return Plan::NothingNew;
            }
            self.store.reporter().warn(
                "the store is missing files or its index for the current snapshot; repairing",
            );
            return Plan::Repair;
        }
        let v = m.version;
        trusted
            .and_then(|t| t.manifest.as_ref().map(|tm| (tm, t.head.manifest.sha256)))
            .filter(|(tm, _)| {
                let s = tm.version;
                s < v && ((s + 1 == v && m.delta.is_some()) || s >= m.base)
            })
            .and_then(|(tm, tsha)| {
                local_state(self.store, tm, &tsha).map(|st| Plan::Incremental(tm.version, st))
            })
            .unwrap_or(Plan::Full)
    }

    /// Steps 7–9: the new state, from the local state through the delta or
    /// the layers, or from the base — also when the source lacks a layer the
    /// incremental path needs (`not_found`); every file checked as it is
    /// opened, every leaf compared. Returns it and whether it came through
    /// layers.
    fn step7_9_state(
        &self,
        files: &mut Files<'_>,
        plan: Plan,
        m: &Manifest,
        report: &mut SyncReport,
    ) -> Result<(State, bool), Rejection> {
        report.mode = match plan {
            Plan::Incremental(l, local) => {
                match rebuild::incremental_state(files, local, l, m, &self.limits) {
                    Ok((st, n)) => {
                        report.mode = if n == 1 {
                            SyncMode::Delta
                        } else {
                            SyncMode::Layers
                        };
                        report.layers_applied = n;
                        return Ok((st, true));
                    }
                    Err(e) if e.code == Code::NotFound => {
                        self.store
                            .reporter()
                            .warn(&format!("{e}; fetching the full snapshot instead"));
                        SyncMode::Full
                    }
                    Err(e) => return Err(e),
                }
            }
            Plan::Repair => SyncMode::Repair,
            Plan::Full | Plan::NothingNew => SyncMode::Full,
        };
        report.layers_applied = m.layers.len() as u64;
        Ok((rebuild::full_state(files, m, &self.limits)?, false))
    }

    /// Step 9, after a compaction reached through layers (B = V): each new
    /// base shard the store does not hold is derived from the verified state
    /// when re-encoding it gives exactly the signed file; any other is
    /// fetched and checked (step 7, "Order of the files" item 2).
    fn step9_derive(
        &self,
        files: &mut Files<'_>,
        m: &Manifest,
        state: &State,
    ) -> Result<Vec<(String, Vec<u8>)>, Rejection> {
        let mut derived = Vec::new();
        for (i, r) in m.ranges.iter().enumerate() {
            let rel = paths::shard(&r.shard.sha256);
            if self.store.holds(&rel, r.shard.length, &r.shard.sha256)? {
                continue;
            }
            let (lo, hi, rows) = &state.ranges[i];
            let raw = columns::encode_shard(*lo, *hi, rows, &state.policies);
            if raw.len() as u64 == r.shard.raw_length {
                let bytes = columns::compress(&raw);
                if bytes.len() as u64 == r.shard.length && sha256(&bytes) == r.shard.sha256 {
                    derived.push((rel, bytes));
                    continue;
                }
            }
            rebuild::open_shard(files, m, i, &self.limits, &mut state.policies.clone())?;
        }
        Ok(derived)
    }

    /// Step 7, "Order of the files" items 3 and 4 (SPEC.md §7 step 9: a
    /// mirror holds everything its manifest names): base shards in range
    /// order, layers in version order — a held file with the signed length
    /// and SHA-256 is kept, any other fetched, checked and decoded — then a
    /// compacted base's delta, always opened when this run did not apply it.
    fn step7_complete(
        &self,
        files: &mut Files<'_>,
        m: &Manifest,
        derived: &[(String, Vec<u8>)],
        via_layers: bool,
    ) -> Result<(), Rejection> {
        let limits = &self.limits;
        for (i, r) in m.ranges.iter().enumerate() {
            let rel = paths::shard(&r.shard.sha256);
            if derived.iter().any(|(d, _)| *d == rel) {
                continue;
            }
            if let Some((raw, loc)) = files.ensure(&rel, &r.shard)? {
                let mut set = columns::PolicySet::default();
                rebuild::decode_shard_of(m, i, &loc, &raw, limits, &mut set)?;
            }
        }
        for l in &m.layers {
            let rel = paths::layer(&l.sha256);
            if let Some((raw, loc)) = files.ensure(&rel, &l.file())? {
                let mut set = columns::PolicySet::default();
                rebuild::decode_layer_at(&loc, &raw, l, l.version - 1, limits, &mut set)?;
            }
        }
        if !via_layers {
            rebuild::check_compacted_delta(files, m, limits)?;
        }
        Ok(())
    }

    /// Step 10 when nothing is new: the verified roots, then the head if it
    /// is newer than the stored one.
    fn step10_head_only(&self, roots: &Roots, head: &NewHead) -> Result<(), Rejection> {
        persist_roots(self.store, &roots.new)?;
        if head.is_newer {
            self.store.write(paths::HEAD, &head.bytes)?;
        }
        Ok(())
    }

    /// Step 10, the switch, in this order: the verified roots, the staged
    /// data files (renamed into the store), derived shards, the manifest,
    /// the new index, and `head.cbor` last — the head is the switch.
    fn step10_switch(
        &self,
        roots: &Roots,
        files: &Files<'_>,
        derived: &[(String, Vec<u8>)],
        accepted: &Accepted<'_>,
        state: &State,
    ) -> Result<(), Rejection> {
        let Accepted { named, head, log } = *accepted;
        let store = self.store;
        persist_roots(store, &roots.new)?;
        self.write_log(log)?;
        for rel in &files.staged {
            crate::fsio::rename_durably(&files.staging.join(rel), &store.dir().join(rel))?;
        }
        for (rel, bytes) in derived {
            write_atomic(&store.dir().join(rel), bytes)?;
        }
        let sha = &head.head.manifest.sha256;
        if let Some(mb) = &named.bytes {
            store.write(&paths::manifest(head.head.manifest.version, sha), mb)?;
        }
        crate::index::write(&store.index_path(sha), sha, state)?;
        if head.is_newer || named.bytes.is_some() {
            store.write(paths::HEAD, &head.bytes)?;
        }
        Ok(())
    }
}

/// The trusted manifest's version and hash, as the checks take them.
fn trusted_ref(trusted: Option<&Trusted>) -> Option<(u64, [u8; 32])> {
    trusted.map(|t| (t.head.manifest.version, t.head.manifest.sha256))
}

fn persist_roots(store: &Store, roots: &[(u64, Vec<u8>)]) -> Result<(), Rejection> {
    for (v, bytes) in roots {
        store.write(&paths::root(*v), bytes)?;
    }
    Ok(())
}

fn remove_other_indexes(store: &Store, keep: &[u8; 32]) {
    let keep = format!("{}.idx", hex::encode(keep));
    let Ok(rd) = std::fs::read_dir(store.index_dir()) else {
        return;
    };
    for e in rd.flatten() {
        if e.file_name().to_string_lossy() != keep {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Site names a manifest references (data files only).
fn referenced(m: &Manifest) -> Vec<String> {
    let mut out: Vec<String> = m
        .ranges
        .iter()
        .map(|r| paths::shard(&r.shard.sha256))
        .collect();
    out.extend(
        m.layers
            .iter()
            .chain(m.delta.as_ref())
            .map(|l| paths::layer(&l.sha256)),
    );
    out.push(paths::prefixes(&m.prefixes.sha256));
    out
}

/// Parse a stored manifest envelope without checking signatures: used only to
/// decide which files to keep.
fn peek_manifest(bytes: &[u8], limits: &Limits) -> Option<Manifest> {
    let env = crate::envelope::Envelope::parse("manifest", bytes, limits).ok()?;
    crate::cbor::from_slice_canonical(&env.payload).ok()
}

/// `--keep-history N`: keep the N most recent manifests (always the current
/// one) and the data files they name; remove other manifests and data files.
fn prune(
    store: &Store,
    opts: &SyncOptions,
    current: &Manifest,
    sha: &[u8; 32],
    report: &mut SyncReport,
) {
    let Some(keep) = opts.keep_history else {
        return;
    };
    let keep = keep.max(1);
    let mdir = store.dir().join("manifest");
    let mut manifests: Vec<(u64, [u8; 32], PathBuf)> = std::fs::read_dir(&mdir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = format!("manifest/{}", e.file_name().to_string_lossy());
            match SiteFile::parse(&name) {
                Some(SiteFile::Manifest(v, h)) => Some((v, h, e.path())),
                _ => None,
            }
        })
        .collect();
    manifests.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut wanted: std::collections::HashSet<String> = referenced(current).into_iter().collect();
    let mut kept = 1;
    let mut drop_manifests = Vec::new();
    for (v, h, p) in &manifests {
        if h == sha {
            continue;
        }
        if kept < keep && *v <= current.version {
            let Some(m) = std::fs::read(p)
                .ok()
                .and_then(|b| peek_manifest(&b, store.limits()))
            else {
                store
                    .reporter()
                    .warn(&format!("{} cannot be read; nothing pruned", p.display()));
                return;
            };
            wanted.extend(referenced(&m));
            kept += 1;
        } else {
            drop_manifests.push(p.clone());
        }
    }
    for p in drop_manifests {
        if std::fs::remove_file(&p).is_ok() {
            report.files_pruned += 1;
        }
    }
    for dir in ["shard", "layer", "prefix"] {
        let Ok(rd) = std::fs::read_dir(store.dir().join(dir)) else {
            continue;
        };
        for e in rd.flatten() {
            let name = format!("{dir}/{}", e.file_name().to_string_lossy());
            if SiteFile::parse(&name).is_some()
                && !wanted.contains(&name)
                && std::fs::remove_file(e.path()).is_ok()
            {
                report.files_pruned += 1;
            }
        }
    }
}

/// A snapshot's data files, for callers that list them.
pub fn data_files(snap: &Snapshot) -> Vec<String> {
    referenced(&snap.manifest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fetch::DirFetch;
    use crate::isrc::Isrc;
    use crate::lookup::{Answer, Question};
    use crate::model::{Decision, Use};
    use crate::testsite::{self, DAY, NOW, Opts, TestSite, policy, record};
    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    struct Capture(Mutex<Vec<String>>);

    impl crate::store::Reporter for Capture {
        fn warn(&self, msg: &str) {
            self.0.lock().unwrap().push(msg.to_string());
        }
        fn info(&self, msg: &str) {
            self.0.lock().unwrap().push(msg.to_string());
        }
    }

    struct Env {
        _tmp: tempfile::TempDir,
        site: TestSite,
        store: Store,
        log: Arc<Capture>,
    }

    impl Env {
        fn new() -> Env {
            let tmp = tempfile::tempdir().unwrap();
            let mut site = TestSite::new(tmp.path().join("site"));
            site.publish(&testsite::example_records(), &Opts::default());
            let (store, _) =
                Store::init(tmp.path().join("store"), site.root_bytes(1), false).unwrap();
            let log = Arc::new(Capture::default());
            let store = store.with_reporter(log.clone());
            Env {
                _tmp: tmp,
                site,
                store,
                log,
            }
        }

        fn sync_at(&self, now: i64, expiry: Expiry) -> Result<SyncReport, Rejection> {
            sync(
                &self.store,
                &DirFetch::new(&self.site.dir),
                &SyncOptions {
                    now,
                    expiry,
                    keep_history: None,
                },
            )
        }

        fn sync(&self) -> Result<SyncReport, Rejection> {
            self.sync_at(NOW, Expiry::Enforce)
        }

        fn ask(&self, isrc: &str) -> Answer {
            self.ask_at(isrc, NOW, Expiry::Enforce)
                .unwrap()
                .answers
                .remove(0)
        }

        fn ask_at(
            &self,
            isrc: &str,
            now: i64,
            expiry: Expiry,
        ) -> Result<crate::store::CheckResult, Rejection> {
            let q = Question {
                isrc: Isrc::parse(isrc).unwrap(),
                use_: Use::TrainAi,
                territory: None,
                at: crate::time::day_of(NOW),
            };
            self.store.check(&[q], now, expiry)
        }

        fn version(&self) -> u64 {
            self.ask_at("GBNWR2500001", NOW + 1, Expiry::AllowExpired)
                .unwrap()
                .snapshot
                .version
        }

        fn warnings(&self) -> Vec<String> {
            self.log.0.lock().unwrap().clone()
        }
    }

    fn more(extra: &[(&str, u64, &str, bool)]) -> Vec<crate::declaration::Record> {
        let mut r = testsite::example_records();
        for (isrc, seq, id, allow) in extra {
            r.push(record(isrc, *seq, id, policy("Extra Label", *allow)));
        }
        r
    }

    #[test]
    fn first_sync_answers_every_golden_lookup() {
        let env = Env::new();
        let rep = env.sync().unwrap();
        assert_eq!(rep.mode, SyncMode::Full);
        assert_eq!((rep.from, rep.to), (None, 1));
        // 3 shards + 1 prefix table.
        assert_eq!(rep.files_fetched, 4);

        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/lookups.csv");
        let mut r = csv::Reader::from_path(path).unwrap();
        let mut n = 0;
        for rec in r.records() {
            let rec = rec.unwrap();
            let (isrc, use_, terr, at) = (&rec[0], &rec[1], &rec[2], &rec[3]);
            let want = (&rec[4], &rec[5], &rec[6]);
            let got = match Isrc::parse(isrc) {
                Err(_) => Answer::invalid_isrc(),
                Ok(i) => {
                    let q = Question {
                        isrc: i,
                        use_: Use::parse(use_).unwrap(),
                        territory: (!terr.is_empty())
                            .then(|| crate::model::parse_territory(terr).unwrap()),
                        at: crate::time::parse_date(at).unwrap(),
                    };
                    env.store
                        .check(&[q], NOW, Expiry::Enforce)
                        .unwrap()
                        .answers
                        .remove(0)
                }
            };
            assert_eq!(
                (
                    got.decision.name(),
                    got.reason.name(),
                    got.decided_by.join(" ").as_str()
                ),
                want,
                "{isrc} {use_} {terr} {at}"
            );
            n += 1;
        }
        assert!(n > 20);

        // The store is a mirror: every file the site has, byte for byte.
        for f in env.site.files() {
            assert_eq!(
                std::fs::read(env.store.dir().join(&f)).unwrap(),
                std::fs::read(env.site.path(&f)).unwrap(),
                "{f}"
            );
        }

        let again = env.sync().unwrap();
        assert_eq!(again.mode, SyncMode::NothingNew);
        assert_eq!(again.files_fetched, 0);
    }

    #[test]
    fn a_delta_sync_fetches_only_the_layer() {
        let env = Env::new();
        env.sync().unwrap();
        assert_eq!(env.ask("GBZZZ2600001").reason.name(), "no_record");
        let mut site = env.site;
        site.publish(
            &more(&[("GBZZZ2600001", 1000, "X1", false)]),
            &Opts::default(),
        );
        let env = Env { site, ..env };
        let rep = env.sync().unwrap();
        assert_eq!(rep.mode, SyncMode::Delta);
        assert_eq!((rep.from, rep.to), (Some(1), 2));
        assert_eq!(rep.files_fetched, 1, "{rep:?}");
        assert_eq!(rep.layers_applied, 1);
        assert_eq!(env.ask("GBZZZ2600001").decision, Decision::Disallow);
        assert_eq!(env.version(), 2);
        // Only the current index is kept.
        assert_eq!(std::fs::read_dir(env.store.index_dir()).unwrap().count(), 1);
    }

    /// A delta sync starts from the store's own files, each checked against
    /// the trusted manifest; a local shard that no longer matches its
    /// signed hash is not trusted: the index (verified block by block)
    /// gives the local state instead, and the answers are still right.
    #[test]
    fn a_delta_sync_from_a_tampered_local_shard_starts_from_the_index() {
        let env = Env::new();
        env.sync().unwrap();
        let shards = env.store.dir().join("shard");
        let mut tampered = 0;
        for e in std::fs::read_dir(&shards).unwrap() {
            tampered += 1;
            let p = e.unwrap().path();
            let mut b = std::fs::read(&p).unwrap();
            let last = b.len() - 1;
            b[last] ^= 1;
            std::fs::write(&p, b).unwrap();
        }
        let mut site = env.site;
        site.publish(
            &more(&[("GBZZZ2600001", 1000, "X1", false)]),
            &Opts::default(),
        );
        let env = Env { site, ..env };
        let rep = env.sync().unwrap();
        assert_eq!(rep.mode, SyncMode::Delta);
        // The layer, and each tampered shard fetched again (a mirror holds
        // what its manifest names).
        assert_eq!(rep.files_fetched, 1 + tampered, "{rep:?}");
        assert_eq!(env.ask("GBZZZ2600001").decision, Decision::Disallow);
        env.store.verify(NOW, Expiry::Enforce).unwrap();
    }

    /// Without an index, a delta sync still fetches only the layer: the
    /// local state comes from the store's files.
    #[test]
    fn a_delta_sync_without_an_index_fetches_only_the_layer() {
        let env = Env::new();
        env.sync().unwrap();
        std::fs::remove_dir_all(env.store.index_dir()).unwrap();
        let mut site = env.site;
        site.publish(
            &more(&[("GBZZZ2600001", 1000, "X1", false)]),
            &Opts::default(),
        );
        let env = Env { site, ..env };
        let rep = env.sync().unwrap();
        assert_eq!(rep.mode, SyncMode::Delta);
        assert_eq!(rep.files_fetched, 1, "{rep:?}");
        assert_eq!(env.ask("GBZZZ2600001").decision, Decision::Disallow);
    }

    #[test]
    fn several_layers_then_a_compaction_derived_locally() {
        let env = Env::new();
        env.sync().unwrap();
        let mut site = env.site;
        site.publish(
            &more(&[("GBZZZ2600001", 1000, "X1", false)]),
            &Opts::default(),
        );
        site.publish(
            &more(&[
                ("GBZZZ2600001", 1000, "X1", false),
                ("USZZZ2600002", 1001, "X2", true),
            ]),
            &Opts::default(),
        );
        let env = Env { site, ..env };
        let rep = env.sync().unwrap();
        assert_eq!(rep.mode, SyncMode::Layers);
        assert_eq!(rep.layers_applied, 2);
        assert_eq!(rep.files_fetched, 2, "{rep:?}");
        assert_eq!(env.ask("USZZZ2600002").decision, Decision::Allow);

        // Compaction: the new base shards are rebuilt from the local state.
        let mut site = env.site;
        let p = site.publish(
            &more(&[
                ("USZZZ2600002", 1001, "X2", true),
                ("FRZZZ2600003", 1002, "X3", false),
            ]),
            &Opts {
                compact: true,
                ..Opts::default()
            },
        );
        assert_eq!(p.manifest.base, 4);
        let env = Env { site, ..env };
        let rep = env.sync().unwrap();
        assert_eq!(rep.mode, SyncMode::Delta);
        assert_eq!(rep.files_fetched, 1, "{rep:?}");
        assert!(rep.files_derived >= 2, "{rep:?}");
        assert_eq!(env.ask("GBZZZ2600001").reason.name(), "no_record");
        assert_eq!(env.ask("FRZZZ2600003").decision, Decision::Disallow);
        for r in &p.manifest.ranges {
            let rel = paths::shard(&r.shard.sha256);
            assert!(
                env.store
                    .holds(&rel, r.shard.length, &r.shard.sha256)
                    .unwrap()
            );
        }
        let v = env.store.verify(NOW, Expiry::Enforce).unwrap();
        assert_eq!(v.index, crate::store::IndexCheck::Intact);
    }

    #[test]
    fn far_behind_fetches_the_new_base() {
        let env = Env::new();
        env.sync().unwrap();
        let mut site = env.site;
        site.publish(
            &more(&[("GBZZZ2600001", 1000, "X1", false)]),
            &Opts::default(),
        );
        site.publish(
            &more(&[("USZZZ2600002", 1001, "X2", true)]),
            &Opts {
                compact: true,
                ..Opts::default()
            },
        );
        let env = Env { site, ..env };
        let rep = env.sync().unwrap();
        assert_eq!(rep.mode, SyncMode::Full);
        // Only the changed ranges' shards travel; the unchanged one is reused.
        assert!(rep.files_fetched >= 2 && rep.files_reused >= 1, "{rep:?}");
        assert_eq!(env.ask("USZZZ2600002").decision, Decision::Allow);
    }

    #[test]
    fn a_tampered_file_is_refused_and_the_previous_snapshot_answers() {
        let env = Env::new();
        env.sync().unwrap();
        let before = env.ask("GBNWR2500001");
        let mut site = env.site;
        let p = site.publish(
            &more(&[("GBNWR2500001", 1000, "X1", true)]),
            &Opts::default(),
        );
        let layer = site.path(&paths::layer(&p.manifest.delta.as_ref().unwrap().sha256));
        let mut b = std::fs::read(&layer).unwrap();
        let last = b.len() - 1;
        b[last] ^= 1;
        std::fs::write(&layer, &b).unwrap();
        let env = Env { site, ..env };
        let e = env.sync().unwrap_err();
        assert_eq!(e.code, Code::HashMismatch, "{e}");
        assert_eq!(env.ask("GBNWR2500001"), before);
        assert_eq!(env.version(), 1);
        // Nothing was staged into the store.
        assert!(
            !env.store
                .dir()
                .join(paths::layer(&p.manifest.delta.unwrap().sha256))
                .exists()
        );
        assert!(
            std::fs::read_dir(env.store.local())
                .unwrap()
                .flatten()
                .all(|e| !e.file_name().to_string_lossy().starts_with("staging-"))
        );
    }

    #[test]
    fn a_tampered_shard_is_refused_and_the_previous_snapshot_answers() {
        let env = Env::new();
        env.sync().unwrap();
        let before = env.ask("GBNWR2500017");
        let mut site = env.site;
        site.publish(
            &more(&[("GBZZZ2600001", 1000, "X1", false)]),
            &Opts::default(),
        );
        let p = site.publish(
            &more(&[("GBNWR2500017", 1001, "X2", false)]),
            &Opts {
                compact: true,
                ..Opts::default()
            },
        );
        // Far behind (store at 1, base 3): the new base shards must travel.
        for r in &p.manifest.ranges {
            let f = site.path(&paths::shard(&r.shard.sha256));
            let mut b = std::fs::read(&f).unwrap();
            let n = b.len() / 2;
            b[n] ^= 0x40;
            std::fs::write(&f, &b).unwrap();
        }
        let env = Env { site, ..env };
        let e = env.sync().unwrap_err();
        assert_eq!(e.code, Code::HashMismatch, "{e}");
        assert!(e.file.contains("/shard/"), "{e}");
        assert_eq!(env.ask("GBNWR2500017"), before);
        assert_eq!(env.version(), 1);
        env.store.verify(NOW + 1, Expiry::Enforce).unwrap();
    }

    #[test]
    fn a_tampered_shard_on_first_sync_leaves_no_snapshot() {
        let env = Env::new();
        let r = &env.site.history[0].manifest.ranges[0].shard;
        let p = env.site.path(&paths::shard(&r.sha256));
        let mut b = std::fs::read(&p).unwrap();
        b[0] ^= 0xff;
        std::fs::write(&p, b).unwrap();
        assert_eq!(env.sync().unwrap_err().code, Code::HashMismatch);
        assert_eq!(
            env.ask_at("GBNWR2500001", NOW, Expiry::Enforce)
                .unwrap_err()
                .code,
            Code::NoSnapshot
        );
    }

    #[test]
    fn a_replayed_older_head_is_a_rollback() {
        let env = Env::new();
        let old_head = env.site.history[0].head_bytes.clone();
        let mut site = env.site;
        site.publish(
            &more(&[("GBZZZ2600001", 1000, "X1", false)]),
            &Opts::default(),
        );
        let env = Env { site, ..env };
        env.sync().unwrap();
        env.site.write(paths::HEAD, &old_head);
        let e = env.sync().unwrap_err();
        assert_eq!(e.code, Code::Rollback, "{e}");
        assert_eq!(env.version(), 2);
    }

    #[test]
    fn a_refreshed_head_is_stored_and_nothing_else_moves() {
        let env = Env::new();
        env.sync().unwrap();
        let mut site = env.site;
        let fresh = site.write_head(NOW + DAY, 3 * DAY);
        let env = Env { site, ..env };
        let rep = env.sync_at(NOW + DAY, Expiry::Enforce).unwrap();
        assert_eq!(rep.mode, SyncMode::NothingNew);
        assert_eq!(rep.head_version, 2);
        assert_eq!(
            std::fs::read(env.store.dir().join(paths::HEAD)).unwrap(),
            fresh
        );
    }

    #[test]
    fn an_expired_head_is_refused_unless_allowed_and_then_marked() {
        let env = Env::new();
        env.sync().unwrap();
        let later = NOW + 4 * DAY;
        let e = env.sync_at(later, Expiry::Enforce).unwrap_err();
        assert_eq!(e.code, Code::Expired);
        assert_eq!(
            env.ask_at("GBNWR2500001", later, Expiry::Enforce)
                .unwrap_err()
                .code,
            Code::Expired
        );
        let ok = env
            .ask_at("GBNWR2500001", later, Expiry::AllowExpired)
            .unwrap();
        assert!(ok.snapshot.expired);
        assert_eq!(ok.answers[0].decision, Decision::Disallow);
        let rep = env.sync_at(later, Expiry::AllowExpired).unwrap();
        assert_eq!(rep.mode, SyncMode::NothingNew);
        // Running at `later` left no trace: the right time answers again.
        let fresh = env
            .ask_at("GBNWR2500001", NOW + DAY, Expiry::Enforce)
            .unwrap();
        assert!(!fresh.snapshot.expired);
    }

    #[test]
    fn clock_behind_the_signed_creation_time_is_refused_and_no_time_is_remembered() {
        use crate::verify::CLOCK_SKEW_SECS;
        // The testsite signs `created` = NOW. A machine whose clock runs
        // behind it by more than the tolerance cannot sync it...
        let env = Env::new();
        let behind = NOW - CLOCK_SKEW_SECS - 1;
        let e = env.sync_at(behind, Expiry::Enforce).unwrap_err();
        assert_eq!(e.code, Code::ClockBackwards, "{e}");
        // ...one within the tolerance can.
        env.sync_at(NOW - CLOCK_SKEW_SECS, Expiry::Enforce).unwrap();
        assert_eq!(
            env.ask_at("GBNWR2500001", behind, Expiry::Enforce)
                .unwrap_err()
                .code,
            Code::ClockBackwards
        );
        // The expiry override is not a clock override.
        assert_eq!(
            env.ask_at("GBNWR2500001", behind, Expiry::AllowExpired)
                .unwrap_err()
                .code,
            Code::ClockBackwards
        );
        assert_eq!(
            env.sync_at(behind, Expiry::Enforce).unwrap_err().code,
            Code::ClockBackwards
        );
        // A far-future time (refused: expired) and then a slightly earlier
        // but correct one: the store remembers no time of its own.
        let far = NOW + 100 * DAY;
        assert_eq!(
            env.ask_at("GBNWR2500001", far, Expiry::Enforce)
                .unwrap_err()
                .code,
            Code::Expired
        );
        assert!(
            env.ask_at("GBNWR2500001", NOW + 10, Expiry::AllowExpired)
                .is_ok()
        );
        assert!(
            env.ask_at("GBNWR2500001", NOW - 10, Expiry::Enforce)
                .is_ok()
        );
        assert!(!env.store.dir().join("local/clock.json").exists());
    }

    #[test]
    fn a_corrupt_index_is_detected_and_rebuilt() {
        let env = Env::new();
        env.sync().unwrap();
        let want = env.ask("GBNWR2500017");
        let sha = env.site.history[0].manifest_sha256;
        let idx = env.store.index_path(&sha);
        let mut b = std::fs::read(&idx).unwrap();
        // The seq of the key's entry, in its block.
        let key = Isrc::parse("GBNWR2500017").unwrap().key().to_be_bytes();
        let at = b.windows(8).position(|w| w == key).unwrap() + 15;
        b[at] ^= 0x01;
        std::fs::write(&idx, &b).unwrap();
        assert_eq!(env.ask("GBNWR2500017"), want);
        assert!(
            env.warnings()
                .iter()
                .any(|w| w.contains("is corrupt") && w.contains("temporary index")),
            "{:?}",
            env.warnings()
        );
        // A lookup never writes: the damaged index is still there.
        assert_eq!(std::fs::read(&idx).unwrap(), b);
        let v = env.store.verify(NOW, Expiry::Enforce).unwrap();
        assert!(
            matches!(v.index, crate::store::IndexCheck::Corrupt(_)),
            "{v:?}"
        );
        assert_eq!(std::fs::read(&idx).unwrap(), b, "verify writes nothing");
        let v = env.store.verify_and_repair(NOW, Expiry::Enforce).unwrap();
        assert!(
            matches!(v.index, crate::store::IndexCheck::Rebuilt(_)),
            "{v:?}"
        );
        assert_ne!(std::fs::read(&idx).unwrap(), b);

        // `verify` finds a corrupt header too; `--repair` rebuilds.
        let mut b = std::fs::read(&idx).unwrap();
        b[45] ^= 0x01;
        std::fs::write(&idx, &b).unwrap();
        let v = env.store.verify_and_repair(NOW, Expiry::Enforce).unwrap();
        assert!(
            matches!(v.index, crate::store::IndexCheck::Rebuilt(_)),
            "{v:?}"
        );
        assert_eq!(
            env.store.verify(NOW, Expiry::Enforce).unwrap().index,
            crate::store::IndexCheck::Intact
        );
    }

    #[test]
    fn verify_names_a_tampered_store_file_and_sync_repairs_a_missing_one() {
        let env = Env::new();
        env.sync().unwrap();
        let r = env.site.history[0].manifest.ranges[1].shard.clone();
        let rel = paths::shard(&r.sha256);
        let p = env.store.dir().join(&rel);
        let mut b = std::fs::read(&p).unwrap();
        b[3] ^= 0x10;
        std::fs::write(&p, &b).unwrap();
        let e = env.store.verify(NOW, Expiry::Enforce).unwrap_err();
        assert_eq!(e.code, Code::HashMismatch);
        assert!(e.file.ends_with(&rel), "{e}");
        std::fs::remove_file(&p).unwrap();
        let rep = env.sync().unwrap();
        assert_eq!(rep.mode, SyncMode::Repair);
        assert_eq!(rep.files_fetched, 1);
        env.store.verify(NOW, Expiry::Enforce).unwrap();
    }

    #[test]
    fn a_key_rotation_forgets_the_trusted_head() {
        let env = Env::new();
        env.sync().unwrap();
        let mut site = env.site;
        site.rotate(11, 12, 13);
        // New keys sign a new head for the same manifest... and a new version.
        site.publish(
            &more(&[("GBZZZ2600001", 1000, "X1", false)]),
            &Opts::default(),
        );
        let env = Env { site, ..env };
        let rep = env.sync().unwrap();
        assert_eq!(rep.roots_added, vec![2]);
        assert_eq!(rep.to, 2);
        assert!(env.warnings().iter().any(|w| w.contains("fast-forward")));
        assert_eq!(env.ask("GBZZZ2600001").decision, Decision::Disallow);
        assert_eq!(env.store.trusted_root_chain().unwrap().root.version, 2);
    }

    #[test]
    fn a_refused_run_writes_nothing_not_even_verified_roots() {
        let env = Env::new();
        env.sync().unwrap();
        let before = env.ask("GBNWR2500001");
        let mut site = env.site;
        site.rotate_expiring(11, 12, 13, NOW - DAY);
        let env = Env { site, ..env };
        assert_eq!(env.sync().unwrap_err().code, Code::Expired);
        assert!(!env.store.dir().join("root/2.cbor").exists());
        assert_eq!(env.ask("GBNWR2500001"), before);

        // A valid rotation whose head fails: the roots are not kept either.
        let mut site = env.site;
        site.rotate(21, 22, 23);
        site.write(paths::HEAD, b"garbage");
        let env = Env { site, ..env };
        assert_eq!(env.sync().unwrap_err().code, Code::MalformedEnvelope);
        assert!(!env.store.dir().join("root/2.cbor").exists());
        assert_eq!(env.ask("GBNWR2500001"), before);
    }

    #[test]
    fn a_root_not_signed_by_the_old_keys_is_refused() {
        let env = Env::new();
        let mut site = env.site;
        site.root_key = testsite::key(99); // forget the real root key
        site.rotate(11, 12, 13);
        let env = Env { site, ..env };
        assert_eq!(env.sync().unwrap_err().code, Code::ThresholdNotMet);
        assert!(!env.store.dir().join("root/2.cbor").exists());
    }

    #[test]
    fn keep_history_prunes_old_files_but_never_the_current() {
        let env = Env::new();
        env.sync().unwrap();
        let mut site = env.site;
        site.publish(
            &more(&[("GBZZZ2600001", 1000, "X1", false)]),
            &Opts::default(),
        );
        site.publish(
            &more(&[("USZZZ2600002", 1001, "X2", true)]),
            &Opts {
                compact: true,
                ..Opts::default()
            },
        );
        let env = Env { site, ..env };
        let rep = sync(
            &env.store,
            &DirFetch::new(&env.site.dir),
            &SyncOptions {
                now: NOW,
                expiry: Expiry::Enforce,
                keep_history: Some(1),
            },
        )
        .unwrap();
        assert!(rep.files_pruned > 0, "{rep:?}");
        let v1 = &env.site.history[0];
        assert!(
            !env.store
                .dir()
                .join(paths::manifest(1, &v1.manifest_sha256))
                .exists()
        );
        env.store.verify(NOW, Expiry::Enforce).unwrap();
        assert_eq!(env.ask("USZZZ2600002").decision, Decision::Allow);
    }

    #[test]
    fn a_pinned_root_at_the_last_version_ends_the_walk_without_overflow() {
        let tmp = tempfile::tempdir().unwrap();
        let mut site = TestSite::new(tmp.path().join("site"));
        site.publish(&testsite::example_records(), &Opts::default());
        let (k1, k2, k3) = (testsite::key(1), testsite::key(2), testsite::key(3));
        let root = testsite::make_root(u64::MAX, NOW + 3650 * DAY, &k1, &k2, &k3);
        let bytes = testsite::sign(
            crate::envelope::ROOT_TYPE,
            crate::cbor::to_vec(&root),
            &[&k1],
        );
        let (store, _) = Store::init(tmp.path().join("store"), &bytes, false).unwrap();
        let opts = SyncOptions {
            now: NOW,
            expiry: Expiry::Enforce,
            keep_history: None,
        };
        let r = sync(&store, &DirFetch::new(&site.dir), &opts).unwrap();
        assert!(r.roots_added.is_empty());
        // The store's own chain walk ends there too.
        assert_eq!(store.trusted_root_chain().unwrap().root.version, u64::MAX);
    }

    #[test]
    fn a_source_without_a_head_is_not_found() {
        let env = Env::new();
        std::fs::remove_file(env.site.path(paths::HEAD)).unwrap();
        assert_eq!(env.sync().unwrap_err().code, Code::NotFound);
    }

    #[test]
    fn init_refuses_a_second_pin_without_force() {
        let mut env = Env::new();
        env.sync().unwrap();
        // The same root again is a no-op that keeps the synced snapshot.
        Store::init(env.store.dir(), env.site.root_bytes(1), false).unwrap();
        assert!(env.store.current(NOW, Expiry::Enforce).is_ok());
        // Another root is refused without --force.
        env.site.rotate(9, 9, 9);
        let e = Store::init(env.store.dir(), env.site.root_bytes(2), false).unwrap_err();
        assert_eq!(e.code, Code::AlreadyInitialized);
        Store::init(env.store.dir(), env.site.root_bytes(1), true).unwrap();
        let mut bad = env.site.root_bytes(1).to_vec();
        bad[10] ^= 1;
        assert!(Store::init(env.store.dir(), &bad, true).is_err());
        // trust.json pins the hash: a swapped root file is refused.
        let mut other = TestSite::new(env.store.dir().join("other"));
        other.rotate(5, 6, 7);
        std::fs::write(env.store.dir().join("root/1.cbor"), other.root_bytes(2)).unwrap();
        assert_eq!(
            env.store.trusted_root_chain().unwrap_err().code,
            Code::TrustMismatch
        );
    }
}
