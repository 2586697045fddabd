//! The local store: verified snapshot files laid out exactly like a published
//! site (SPEC.md §2), so any web server pointed at it is a mirror, plus the
//! verifier's own state under `local/`:
//!
//! ```text
//! root/{N}.cbor  head.cbor  manifest/{V}.{hex}.cbor  shard/ layer/ prefix/{hex}.zst
//! local/trust.json     {"pinned_version":N,"pinned_sha256":hex}   written by `init`
//! local/index/{manifest_hex}.idx                                   lookup index (see `index`)
//! local/lock                                                       held while sync/import write
//! local/staging-*/                                                 temp dirs, removed after use
//! ```
//!
//! Only `init`, `sync`, `import` and `verify --repair` write. Lookups,
//! `status`, `verify` and receipts read: a store on a read-only mount or a
//! full disk answers (SPEC.md §7 step 0 keeps no local clock file; a missing
//! or damaged index is rebuilt in a private temporary file, not in the store).
//!
//! Nothing in the store is trusted because it is in the store: every command
//! re-verifies the pinned root against `trust.json`, walks the stored root
//! chain, and verifies the head and manifest under the final root's keys
//! (SPEC.md §7 steps 1–4). Data files are content-addressed and re-hashed when
//! used; the index is checked block by block against the signed range leaves.
//!
//! Writes go to a temporary file in the same directory, are fsynced and
//! renamed into place; `head.cbor` is written last, so it is the atomic switch
//! from one snapshot to the next.

use std::cell::{Cell, RefCell};
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::docs::{FileRef, Head, Manifest, Role, Root, paths};
use crate::envelope::sha256;
use crate::error::{Code, Rejection, reject};
use crate::fetch::{DirFetch, Fetch, io_error};
use crate::fsio::write_atomic;
use crate::index::Index;
use crate::limits::Limits;
use crate::lookup::{Answer, Question};
use crate::rebuild;
use crate::state::State;

pub use crate::reader::Reader;
use crate::verify::{self, Expiry};

/// Where the CLI and library report progress and warnings. The library never
/// prints; the binary decides what reaches stderr.
pub trait Reporter: Send + Sync {
    /// Something the user may want to know (suppressed by `--quiet`).
    fn info(&self, _msg: &str) {}
    /// Something the user must know (a repaired index, a skipped step).
    fn warn(&self, _msg: &str) {}
    /// A batch of `files` downloads starts.
    fn start(&self, _what: &str, _files: u64) {}
    /// One file of the batch arrived.
    fn advance(&self, _file: &str, _bytes: u64) {}
    /// The batch is over.
    fn finish(&self) {}
}

/// A reporter that drops everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Reporter for Silent {}

/// `local/trust.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustFile {
    pub pinned_version: u64,
    pub pinned_sha256: String,
}

/// The trusted root chain as read from the store.
#[derive(Debug, Clone)]
pub struct RootChain {
    /// The version pinned by `init`.
    pub pinned: u64,
    /// The last root the chain reaches.
    pub root: Root,
}

/// The verified current snapshot of a store.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub root: Root,
    pub head: Head,
    pub manifest: Manifest,
    pub manifest_sha256: [u8; 32],
    /// True only under [`Expiry::AllowExpired`] when the root, head or
    /// manifest is expired at the time used.
    pub expired: bool,
}

/// What every answer names: the snapshot it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub version: u64,
    /// Lower-case hex SHA-256 of the manifest envelope.
    pub manifest_sha256: String,
    pub expired: bool,
}

impl Snapshot {
    pub fn info(&self) -> SnapshotInfo {
        SnapshotInfo {
            version: self.manifest.version,
            manifest_sha256: hex::encode(self.manifest_sha256),
            expired: self.expired,
        }
    }
}

/// The stored head as seen under a given root.
#[derive(Debug, Clone)]
pub enum StoredHead {
    /// Nothing synced yet.
    Missing,
    /// A head is stored but does not verify under the current root's head keys
    /// (the keys rotated since, or the file was altered).
    NotTrusted(Rejection),
    /// A head that verifies.
    Valid(Head),
}

/// Result of [`Store::check`].
#[derive(Debug, Clone)]
pub struct CheckResult {
    pub snapshot: SnapshotInfo,
    pub answers: Vec<Answer>,
}

/// Where and when the store last synced (`local/sync.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SyncRecord {
    /// The source as given to `sync`: an http(s) URL or a directory.
    pub source: String,
    /// When the sync finished (Unix seconds, the run's time).
    pub at: i64,
    /// The snapshot version it left.
    pub version: u64,
}

/// What `status` shows.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub store: String,
    /// The source the store syncs from (remembered at its last sync).
    pub source: Option<String>,
    /// When the last sync finished (RFC 3339), if one was recorded.
    pub last_sync: Option<String>,
    /// The earliest expiry of root, head and manifest (RFC 3339): after it,
    /// lookups are refused until a sync.
    pub expires: Option<String>,
    /// Seconds from the run's time to `expires` (negative once expired).
    pub expires_in_s: Option<i64>,
    /// The root, head or manifest is expired.
    pub expired: bool,
    pub pinned_root_version: u64,
    pub root_version: u64,
    pub root_expires: String,
    pub root_expired: bool,
    /// Role name → (threshold, hex key ids).
    pub roles: Vec<RoleStatus>,
    pub snapshot: Option<SnapshotStatus>,
    /// Why there is no snapshot (never synced, or the head is not trusted).
    pub snapshot_problem: Option<String>,
    /// Set when the time in use is earlier than the snapshot's signed
    /// creation time (beyond the skew tolerance): lookups would be refused
    /// with `clock_backwards` until the clock is right.
    pub clock_problem: Option<String>,
    /// The manifest log's checkpoint the store holds (SPEC.md §15), when
    /// the root names witnesses and a sync verified one: what two stores
    /// compare to detect a split view.
    pub log: Option<LogStatus>,
    pub store_bytes: u64,
}

/// The log part of [`Status`].
#[derive(Debug, Clone, Serialize)]
pub struct LogStatus {
    pub origin: String,
    pub size: u64,
    /// The tree head, hex.
    pub root_hash: String,
    pub witness_threshold: u64,
    /// Witnesses of the current root whose cosignature on the stored
    /// checkpoint verifies, by name, with the Unix time each cosigned.
    pub cosigners: Vec<(String, u64)>,
    /// The checkpoint note as stored (log signature and cosignatures).
    pub note: String,
}

/// One role's keys in [`Status`].
#[derive(Debug, Clone, Serialize)]
pub struct RoleStatus {
    pub role: &'static str,
    pub threshold: u64,
    pub keyids: Vec<String>,
}

/// The snapshot part of [`Status`].
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotStatus {
    pub version: u64,
    pub manifest_sha256: String,
    pub created: String,
    pub head_version: u64,
    pub head_expires: String,
    pub head_expired: bool,
    pub manifest_expires: String,
    pub manifest_expired: bool,
    pub entries: u64,
    pub ranges: usize,
    pub base: u64,
    pub layers: usize,
}

/// What [`Store::verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub root_version: u64,
    pub version: u64,
    pub manifest_sha256: String,
    pub files_checked: u64,
    pub bytes_checked: u64,
    pub entries: u64,
    pub index: IndexCheck,
    pub expired: bool,
}

/// The state of the lookup index found by `verify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexCheck {
    /// Every block matched the signed leaves.
    Intact,
    /// There was none (`verify` writes nothing; `--repair` builds it).
    Missing,
    /// It was corrupt (the reason); left as it was.
    Corrupt(String),
    /// There was none; `--repair` built it.
    Built,
    /// It was corrupt (the reason); `--repair` rebuilt it from verified files.
    Rebuilt(String),
}

/// Key ids and threshold per role, for `init` and `status`.
pub fn role_summary(root: &Root) -> Vec<RoleStatus> {
    [Role::Root, Role::Manifest, Role::Head]
        .into_iter()
        .map(|r| RoleStatus {
            role: r.name(),
            threshold: root.role(r).threshold,
            keyids: root.role(r).keyids.iter().map(hex::encode).collect(),
        })
        .collect()
}

/// How long a writer waits for another writer's lock.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A store directory.
#[derive(Clone)]
pub struct Store {
    dir: PathBuf,
    limits: Limits,
    reporter: Arc<dyn Reporter>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

fn json_error(file: &Path, e: &serde_json::Error) -> Rejection {
    reject(
        file.display().to_string(),
        Code::StoreCorrupt,
        format!("is not valid: {e}"),
    )
}

impl Store {
    /// Open an initialized store.
    pub fn open(dir: impl AsRef<Path>) -> Result<Store, Rejection> {
        let store = Store {
            dir: dir.as_ref().to_path_buf(),
            limits: Limits::DEFAULT,
            reporter: Arc::new(Silent),
        };
        if !store.trust_path().exists() {
            return Err(reject(
                store.dir.display().to_string(),
                Code::NotInitialized,
                "is not an initialized consentry store (no local/trust.json)",
            ));
        }
        Ok(store)
    }

    /// Pin `root_bytes` (a root signed by a threshold of its own root keys) as
    /// the store's trust anchor. An initialized store is refused unless `force`;
    /// with `force` the stored root chain is replaced (a stored head that no
    /// longer verifies is ignored until the next sync).
    pub fn init(
        dir: impl AsRef<Path>,
        root_bytes: &[u8],
        force: bool,
    ) -> Result<(Store, Root), Rejection> {
        Store::init_with(dir, root_bytes, force, Limits::DEFAULT)
    }

    /// [`Store::init`] with explicit limits.
    pub fn init_with(
        dir: impl AsRef<Path>,
        root_bytes: &[u8],
        force: bool,
        limits: Limits,
    ) -> Result<(Store, Root), Rejection> {
        let store = Store {
            dir: dir.as_ref().to_path_buf(),
            limits,
            reporter: Arc::new(Silent),
        };
        let root = verify::verify_pinned_root("root", root_bytes, &limits)?;
        if !force
            && let Ok(trust) = store.trust_file()
            && trust.pinned_version == root.version
            && trust.pinned_sha256 == hex::encode(sha256(root_bytes))
        {
            // The same root again (a provisioning script run twice): nothing
            // to change, and the store's chain and snapshot stay.
            return Ok((store, root));
        }
        if store.trust_path().exists() && !force {
            return Err(reject(
                store.dir.display().to_string(),
                Code::AlreadyInitialized,
                "is already initialized with another pinned root",
            ));
        }
        std::fs::create_dir_all(store.local()).map_err(|e| io_error(&store.loc("local"), &e))?;
        let _lock = store.lock()?;
        if force {
            // The old chain may not follow from the new pin: drop it; sync
            // fetches the roots after the new pin again.
            let rdir = store.dir.join("root");
            if let Ok(rd) = std::fs::read_dir(&rdir) {
                for e in rd.flatten() {
                    let p = e.path();
                    if p.extension().is_some_and(|x| x == "cbor") {
                        std::fs::remove_file(&p)
                            .map_err(|er| io_error(&p.display().to_string(), &er))?;
                    }
                }
            }
        }
        write_atomic(&store.dir.join(paths::root(root.version)), root_bytes)?;
        let trust = TrustFile {
            pinned_version: root.version,
            pinned_sha256: hex::encode(sha256(root_bytes)),
        };
        let json = serde_json::to_vec(&trust).unwrap_or_default();
        write_atomic(&store.trust_path(), &json)?;
        Ok((store, root))
    }

    /// Use other limits than [`Limits::DEFAULT`].
    #[must_use]
    pub fn with_limits(mut self, limits: Limits) -> Store {
        self.limits = limits;
        self
    }

    /// Send progress and warnings to `r`.
    #[must_use]
    pub fn with_reporter(mut self, r: Arc<dyn Reporter>) -> Store {
        self.reporter = r;
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn reporter(&self) -> &dyn Reporter {
        &*self.reporter
    }

    pub(crate) fn local(&self) -> PathBuf {
        self.dir.join("local")
    }

    fn trust_path(&self) -> PathBuf {
        self.dir.join("local/trust.json")
    }

    fn sync_record_path(&self) -> PathBuf {
        self.dir.join("local/sync.json")
    }

    /// Remember where the store was last synced from, and when (written by
    /// the syncing command after a successful sync; never trusted for
    /// anything but "where to sync from next" and monitoring).
    /// Under the store lock, like every other write: two syncs finishing
    /// together must not race on the file.
    pub fn record_sync(&self, rec: &SyncRecord) -> Result<(), Rejection> {
        let json = serde_json::to_vec_pretty(rec).unwrap_or_default();
        let _lock = self.lock()?;
        write_atomic(&self.sync_record_path(), &json)
    }

    /// The last [`SyncRecord`], if any sync recorded one and it reads.
    pub fn sync_record(&self) -> Option<SyncRecord> {
        let b = std::fs::read(self.sync_record_path()).ok()?;
        serde_json::from_slice(&b).ok()
    }

    pub(crate) fn index_dir(&self) -> PathBuf {
        self.dir.join("local/index")
    }

    /// Path of the index for a manifest.
    pub fn index_path(&self, manifest_sha256: &[u8; 32]) -> PathBuf {
        self.index_dir()
            .join(format!("{}.idx", hex::encode(manifest_sha256)))
    }

    /// Display form of a site file in the store.
    pub fn loc(&self, rel: &str) -> String {
        self.dir.join(rel).display().to_string()
    }

    /// The store read as a site (symlinks refused, reads bounded).
    pub fn files(&self) -> DirFetch {
        DirFetch::new(&self.dir)
    }

    /// Read a site file from the store, `None` when absent.
    pub fn read(&self, rel: &str, max_len: u64) -> Result<Option<Vec<u8>>, Rejection> {
        self.files().get(rel, max_len)
    }

    /// The log checkpoint this store verified last (SPEC.md §15), if any:
    /// what the next sync's checkpoint must extend. A stored note that does
    /// not parse is `store_corrupt` (it was verified when written).
    pub fn trusted_checkpoint(&self) -> Result<Option<crate::note::Checkpoint>, Rejection> {
        let Some(bytes) = self.read(
            crate::tlog::CHECKPOINT_PATH,
            crate::note::MAX_NOTE_BYTES as u64,
        )?
        else {
            return Ok(None);
        };
        crate::note::Note::parse(&bytes)
            .and_then(|n| crate::note::Checkpoint::parse_text(&n.text))
            .map(Some)
            .map_err(|e| {
                reject(
                    self.loc(crate::tlog::CHECKPOINT_PATH),
                    Code::StoreCorrupt,
                    e,
                )
            })
    }

    /// Write a site file into the store atomically.
    pub fn write(&self, rel: &str, bytes: &[u8]) -> Result<(), Rejection> {
        write_atomic(&self.dir.join(rel), bytes)
    }

    /// Store a content-addressed file: kept when the file there already hashes
    /// to `sha`, replaced otherwise. Returns whether it was written.
    pub fn put_content(&self, rel: &str, bytes: &[u8], sha: &[u8; 32]) -> Result<bool, Rejection> {
        if self.holds(rel, bytes.len() as u64, sha)? {
            return Ok(false);
        }
        self.write(rel, bytes)?;
        Ok(true)
    }

    /// Whether the store holds `rel` with exactly this length and hash.
    pub fn holds(&self, rel: &str, len: u64, sha: &[u8; 32]) -> Result<bool, Rejection> {
        match self.read(rel, len) {
            Ok(Some(b)) => Ok(sha256(&b) == *sha),
            Ok(None) => Ok(false),
            Err(e) if e.code == Code::LimitExceeded => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Take the store's writer lock (released when the file is dropped).
    pub fn lock(&self) -> Result<File, Rejection> {
        let p = self.local().join("lock");
        std::fs::create_dir_all(self.local()).map_err(|e| io_error(&self.loc("local"), &e))?;
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(|e| io_error(&p.display().to_string(), &e))?;
        // Wait a little for another writer (or a forked child briefly holding
        // an inherited descriptor) before giving up.
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        loop {
            match f.try_lock() {
                Ok(()) => return Ok(f),
                Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(reject(
                        p.display().to_string(),
                        Code::StoreBusy,
                        "another consentry process is writing to this store",
                    ));
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(io_error(&p.display().to_string(), &e));
                }
            }
        }
    }

    /// Remove what killed runs left behind: staging directories under
    /// `local/`, `.tmp*` files from atomic writes, and the `local/clock.json`
    /// of stores written before the clock floor came from signed times.
    /// Called by writers only, under the store's lock.
    pub(crate) fn remove_leftovers(&self) {
        if let Ok(rd) = std::fs::read_dir(self.local()) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with("staging-") {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let _ = std::fs::remove_file(self.local().join("clock.json"));
        crate::leftovers::remove_tmp_files(&self.dir, &["local", "local/index"]);
    }

    // ---- trust ----------------------------------------------------------

    /// `local/trust.json`: which root `init` pinned, and its hash.
    fn trust_file(&self) -> Result<TrustFile, Rejection> {
        let tp = self.trust_path();
        match std::fs::read(&tp) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| json_error(&tp, &e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(reject(
                self.dir.display().to_string(),
                Code::NotInitialized,
                "is not an initialized consentry store (no local/trust.json)",
            )),
            Err(e) => Err(io_error(&tp.display().to_string(), &e)),
        }
    }

    /// SPEC.md §7 step 1: the pinned root (checked against `trust.json`'s hash
    /// and its own signatures), then every stored `root/{N+1}.cbor` in turn.
    pub fn trusted_root_chain(&self) -> Result<RootChain, Rejection> {
        let trust = self.trust_file()?;
        let rel = paths::root(trust.pinned_version);
        let loc = self.loc(&rel);
        let bytes = self
            .read(&rel, self.limits.max_root_bytes)?
            .ok_or_else(|| {
                reject(
                    &loc,
                    Code::StoreCorrupt,
                    "the pinned root is missing from the store",
                )
            })?;
        if hex::encode(sha256(&bytes)) != trust.pinned_sha256 {
            return Err(reject(
                &loc,
                Code::TrustMismatch,
                "differs from the root pinned by `init` (its SHA-256 is not the one in local/trust.json)",
            ));
        }
        let root = verify::verify_pinned_root(&loc, &bytes, &self.limits)?;
        if root.version != trust.pinned_version {
            return Err(reject(
                &loc,
                Code::TrustMismatch,
                format!(
                    "holds root version {}, trust.json pins {}",
                    root.version, trust.pinned_version
                ),
            ));
        }
        // Not bounded by `max_root_rotations`: that bounds one run's walk at
        // the source (step 2); the store holds every root earlier runs
        // verified, and its current head is signed under the last of them.
        let walk = verify::walk_roots(
            root,
            u64::MAX,
            &self.limits,
            |v| {
                let rel = paths::root(v);
                let bytes = self.read(&rel, self.limits.max_root_bytes)?;
                Ok(bytes.map(|b| (self.loc(&rel), b)))
            },
            |_, _| {},
        )?;
        Ok(RootChain {
            pinned: trust.pinned_version,
            root: walk.root,
        })
    }

    /// The bytes of the pinned root file, checked against `trust.json`.
    pub fn pinned_root_bytes(&self) -> Result<Vec<u8>, Rejection> {
        let trust = self.trust_file()?;
        let rel = paths::root(trust.pinned_version);
        let bytes = self
            .read(&rel, self.limits.max_root_bytes)?
            .ok_or_else(|| {
                reject(
                    self.loc(&rel),
                    Code::StoreCorrupt,
                    "the pinned root is missing",
                )
            })?;
        if hex::encode(sha256(&bytes)) != trust.pinned_sha256 {
            return Err(reject(
                self.loc(&rel),
                Code::TrustMismatch,
                "differs from the root pinned by `init`",
            ));
        }
        Ok(bytes)
    }

    /// The stored head as seen under `root`'s head keys. Expiry is enforced
    /// per `expiry`; a signature failure means "not trusted", not an error.
    pub fn stored_head(
        &self,
        root: &Root,
        now: i64,
        expiry: Expiry,
    ) -> Result<StoredHead, Rejection> {
        let loc = self.loc(paths::HEAD);
        let Some(bytes) = self.read(paths::HEAD, self.limits.max_head_bytes)? else {
            return Ok(StoredHead::Missing);
        };
        match verify::verify_head(root, &loc, &bytes, now, expiry, &self.limits) {
            Ok(h) => Ok(StoredHead::Valid(h)),
            Err(e) if e.code == Code::Expired => Err(e),
            Err(e) => Ok(StoredHead::NotTrusted(e)),
        }
    }

    /// The stored manifest a head names, verified.
    pub fn stored_manifest(
        &self,
        root: &Root,
        head: &Head,
        now: i64,
        expiry: Expiry,
    ) -> Result<Option<Manifest>, Rejection> {
        let rel = paths::manifest(head.manifest.version, &head.manifest.sha256);
        let max = head.manifest.length.min(self.limits.max_manifest_bytes);
        let Some(bytes) = self.read(&rel, max)? else {
            return Ok(None);
        };
        verify::verify_manifest(
            root,
            head,
            &self.loc(&rel),
            &bytes,
            now,
            expiry,
            &self.limits,
        )
        .map(Some)
    }

    /// The verified current snapshot: root chain, final root unexpired, head
    /// under its head keys, manifest as the head names it (expiry per `expiry`).
    pub fn current(&self, now: i64, expiry: Expiry) -> Result<Snapshot, Rejection> {
        let chain = self.trusted_root_chain()?;
        let root = chain.root;
        let rloc = self.loc(&paths::root(root.version));
        verify::check_root_expiry(&root, &rloc, now, expiry)?;
        let head = match self.stored_head(&root, now, expiry)? {
            StoredHead::Valid(h) => h,
            StoredHead::Missing => {
                return Err(reject(
                    self.dir.display().to_string(),
                    Code::NoSnapshot,
                    "holds no snapshot yet",
                ));
            }
            StoredHead::NotTrusted(e) => {
                return Err(reject(
                    e.file,
                    Code::HeadNotTrusted,
                    format!(
                        "does not verify under root version {} ({}); the keys may have rotated",
                        root.version, e.detail
                    ),
                ));
            }
        };
        let manifest = self
            .stored_manifest(&root, &head, now, expiry)?
            .ok_or_else(|| {
                reject(
                    self.loc(&paths::manifest(
                        head.manifest.version,
                        &head.manifest.sha256,
                    )),
                    Code::StoreIncomplete,
                    "the manifest the head names is missing",
                )
            })?;
        // Step 0: the clock floor is the signed creation time of the
        // snapshot this store verified; `--allow-expired` does not lift it.
        verify::check_clock_floor(
            &self.loc(&paths::manifest(manifest.version, &head.manifest.sha256)),
            now,
            manifest.created,
        )?;
        let expired = expiry == Expiry::AllowExpired
            && (verify::is_expired(root.expires, now)
                || verify::is_expired(head.expires, now)
                || verify::is_expired(manifest.expires, now));
        Ok(Snapshot {
            root,
            manifest_sha256: head.manifest.sha256,
            head,
            manifest,
            expired,
        })
    }

    // ---- lookups --------------------------------------------------------

    /// A reader answering questions from the current snapshot. Writes
    /// nothing to the store.
    pub fn reader(&self, now: i64, expiry: Expiry) -> Result<Reader, Rejection> {
        let snap = self.current(now, expiry)?;
        self.reader_for(snap)
    }

    /// A reader answering from the kept manifest that was current at `at`
    /// (Unix seconds): the newest manifest with `created` ≤ `at` reached from
    /// the current one through the `previous` hash chain, each signed by the
    /// current root's manifest keys. Its data files must still be in the
    /// store (`sync --keep-history N`).
    pub fn reader_as_of(&self, now: i64, expiry: Expiry, at: i64) -> Result<Reader, Rejection> {
        let snap = self.current(now, expiry)?;
        let snap = self.snapshot_as_of(snap, at)?;
        self.reader_for(snap)
    }

    /// Walk `previous` back from `snap` to the manifest current at `at`.
    pub fn snapshot_as_of(&self, mut snap: Snapshot, at: i64) -> Result<Snapshot, Rejection> {
        let at = u64::try_from(at).unwrap_or(0);
        // One step per older version: bounded by the current version.
        while snap.manifest.created > at {
            let Some(prev) = snap.manifest.previous else {
                return Err(reject(
                    self.dir.display().to_string(),
                    Code::NoSnapshot,
                    format!(
                        "version 1 was created at {}, after the date asked",
                        crate::time::format_timestamp(snap.manifest.created as i64)
                    ),
                ));
            };
            let v = snap.manifest.version - 1;
            let rel = paths::manifest(v, &prev);
            let loc = self.loc(&rel);
            let Some(bytes) = self.read(&rel, self.limits.max_manifest_bytes)? else {
                return Err(reject(
                    loc,
                    Code::NoSnapshot,
                    format!(
                        "manifest version {v} is not kept in the store (the oldest kept is version {}, created {}): sync with --keep-history to keep more",
                        snap.manifest.version,
                        crate::time::format_timestamp(snap.manifest.created as i64)
                    ),
                ));
            };
            let m = verify::verify_manifest_unreferenced(
                &snap.root,
                &loc,
                &bytes,
                &prev,
                &self.limits,
            )?;
            if m.version != v {
                return Err(reject(
                    loc,
                    Code::ChainBroken,
                    format!("holds version {}, the chain expects {v}", m.version),
                ));
            }
            snap.manifest = m;
            snap.manifest_sha256 = prev;
        }
        Ok(snap)
    }

    fn reader_for(&self, snap: Snapshot) -> Result<Reader, Rejection> {
        let index = self.open_index_for_reading(&snap)?;
        Ok(Reader {
            store: self.clone(),
            info: snap.info(),
            snap,
            index: RefCell::new(index),
            rebuilt: Cell::new(false),
        })
    }

    /// Answer every question from the current snapshot.
    pub fn check(
        &self,
        questions: &[Question],
        now: i64,
        expiry: Expiry,
    ) -> Result<CheckResult, Rejection> {
        let r = self.reader(now, expiry)?;
        let answers = questions
            .iter()
            .map(|q| r.answer(q))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CheckResult {
            snapshot: r.info.clone(),
            answers,
        })
    }

    /// Open the index of `snap` for answering. A missing or corrupt index is
    /// never repaired here (lookups do not write to the store, which may be
    /// read-only or full): a private copy is built from the store's verified
    /// files in the temporary directory instead, with a warning saying how
    /// to repair the store.
    fn open_index_for_reading(&self, snap: &Snapshot) -> Result<Index, Rejection> {
        let path = self.index_path(&snap.manifest_sha256);
        let why = match Index::open(&path, &snap.manifest, &snap.manifest_sha256, &self.limits) {
            Ok(Some(ix)) => return Ok(ix),
            Ok(None) => "is missing".to_string(),
            Err(e) => format!("is corrupt ({})", e.detail),
        };
        self.reporter.warn(&format!(
            "index {} {why}; answering from a temporary index built from verified files (run `consentry verify --repair` or `consentry sync` to rebuild it in the store)",
            path.display()
        ));
        self.scratch_index(snap)
    }

    /// Build the index of `snap` from the store's verified files into an
    /// unlinked temporary file (the open descriptor keeps it readable).
    pub(crate) fn scratch_index(&self, snap: &Snapshot) -> Result<Index, Rejection> {
        let tmp_dir = std::env::temp_dir();
        let tmp = tempfile::Builder::new()
            .prefix("consentry-index-")
            .tempdir_in(&tmp_dir)
            .map_err(|e| io_error(&tmp_dir.display().to_string(), &e))?;
        let path = tmp.path().join("scratch.idx");
        let st = rebuild::full_state(&mut StoreFiles::new(self), &snap.manifest, &self.limits)?;
        crate::index::write(&path, &snap.manifest_sha256, &st)?;
        let ix = Index::open(&path, &snap.manifest, &snap.manifest_sha256, &self.limits)?;
        // `tmp` is removed here; the open file stays readable until dropped.
        ix.ok_or_else(|| {
            reject(
                path.display().to_string(),
                Code::IoError,
                "vanished right after it was written",
            )
        })
    }

    /// Delete and rebuild the index of `snap` from `state` or from the store's
    /// verified shard, layer and prefix files.
    pub(crate) fn rebuild_index(
        &self,
        snap: &Snapshot,
        state: Option<&State>,
    ) -> Result<Index, Rejection> {
        let path = self.index_path(&snap.manifest_sha256);
        let _ = std::fs::remove_file(&path);
        let built;
        let st = if let Some(s) = state {
            s
        } else {
            built = rebuild::full_state(&mut StoreFiles::new(self), &snap.manifest, &self.limits)?;
            &built
        };
        crate::index::write(&path, &snap.manifest_sha256, st)?;
        Index::open(&path, &snap.manifest, &snap.manifest_sha256, &self.limits)?.ok_or_else(|| {
            reject(
                path.display().to_string(),
                Code::IoError,
                "vanished right after it was written",
            )
        })
    }

    // ---- verify and status ----------------------------------------------

    /// Re-check the whole store from the pinned root: chain, head, manifest,
    /// every file the manifest names (shards, layers, the delta, the prefix
    /// table: hash and decoding), the state rebuilt from base and layers
    /// against every leaf, and the index. Writes nothing: a damaged index is
    /// reported, not repaired (see [`Store::verify_and_repair`]).
    pub fn verify(&self, now: i64, expiry: Expiry) -> Result<VerifyReport, Rejection> {
        self.verify_inner(now, expiry, false)
    }

    /// [`Store::verify`], then, under the store's writer lock, rebuild a
    /// missing or damaged index from the verified files and remove leftovers
    /// of killed runs. A damaged data file is an error here as in `verify`:
    /// only `sync` (which has a source) fetches it again.
    pub fn verify_and_repair(&self, now: i64, expiry: Expiry) -> Result<VerifyReport, Rejection> {
        let _lock = self.lock()?;
        self.remove_leftovers();
        self.verify_inner(now, expiry, true)
    }

    fn verify_inner(
        &self,
        now: i64,
        expiry: Expiry,
        repair: bool,
    ) -> Result<VerifyReport, Rejection> {
        use std::os::unix::fs::FileExt;
        let snap = self.current(now, expiry)?;
        let m = &snap.manifest;
        let limits = self.limits;
        // The layers (SPEC.md §7 step 8), the compacted base's delta and the
        // prefix table with its leaf, once.
        let mut files = StoreFiles::new(self);
        let overlay = rebuild::open_overlay(&mut files, m, &limits)?;
        let path = self.index_path(&snap.manifest_sha256);
        let ix = Index::open(&path, m, &snap.manifest_sha256, &self.limits);
        let ix_check = match &ix {
            Ok(Some(ix)) => ix.check_shared().err().map(|e| e.detail),
            Ok(None) => None,
            Err(e) => Some(e.detail.clone()),
        };
        let ix_file = match &ix {
            Ok(Some(ix)) if ix_check.is_none() => Some((
                ix.file(),
                (0..m.ranges.len())
                    .map(|i| ix.extent(i))
                    .collect::<Vec<_>>(),
            )),
            _ => None,
        };
        // Every range on its own worker (steps 7 and 9), and its index block
        // compared byte for byte with the block its verified entries give
        // (built in the same pass as the chunk hashes: no second hashing).
        let checked = rebuild::check_ranges(
            m,
            &overlay,
            &limits,
            || StoreFiles::new(self),
            |i, rows, hashes| {
                let (block, chunks) = crate::index::block_of(rows, hashes);
                let same = ix_file.as_ref().is_some_and(|(file, extents)| {
                    let (offset, len) = extents[i];
                    let mut have = vec![0u8; block.len()];
                    len == block.len() as u64
                        && file.read_exact_at(&mut have, offset).is_ok()
                        && have == block
                });
                (chunks, same)
            },
        )?;
        let mut index = match (&ix, ix_check) {
            (Ok(None), _) => IndexCheck::Missing,
            (_, Some(why)) => IndexCheck::Corrupt(why),
            _ => match checked.iter().position(|same| !same) {
                None => IndexCheck::Intact,
                Some(i) => IndexCheck::Corrupt(format!(
                    "block {i} differs from the verified entries of range {i}"
                )),
            },
        };
        drop(ix);
        if repair && index != IndexCheck::Intact {
            self.rebuild_index(&snap, None)?.verify_all()?;
            index = match index {
                IndexCheck::Corrupt(why) => {
                    self.reporter.warn(&format!(
                        "index {} was corrupt ({why}); rebuilt from verified files",
                        path.display()
                    ));
                    IndexCheck::Rebuilt(why)
                }
                _ => IndexCheck::Built,
            };
        }
        // Every shard opened matched its signed length exactly.
        let shard_bytes: u64 = m.ranges.iter().map(|r| r.shard.length).sum();
        Ok(VerifyReport {
            root_version: snap.root.version,
            version: snap.manifest.version,
            manifest_sha256: hex::encode(snap.manifest_sha256),
            files_checked: files.opened + checked.len() as u64,
            bytes_checked: files.bytes + shard_bytes,
            entries: snap.manifest.entries,
            index,
            expired: snap.expired,
        })
    }

    /// What the store holds. Expired documents are reported, not refused.
    pub fn status(&self, now: i64) -> Result<Status, Rejection> {
        let chain = self.trusted_root_chain()?;
        let root = &chain.root;
        let mut snapshot = None;
        let mut problem = None;
        let mut clock_problem = None;
        let mut earliest: Option<u64> = None;
        match self.stored_head(root, now, Expiry::AllowExpired)? {
            StoredHead::Missing => problem = Some("no snapshot yet: run `consentry sync`".into()),
            StoredHead::NotTrusted(e) => {
                problem = Some(format!(
                    "the stored head does not verify under root version {} ({}): run `consentry sync`",
                    root.version, e.detail
                ));
            }
            StoredHead::Valid(head) => {
                match self.stored_manifest(root, &head, now, Expiry::AllowExpired) {
                    Ok(Some(m)) => {
                        clock_problem = verify::check_clock_floor("manifest", now, m.created)
                            .err()
                            .map(|e| e.detail);
                        let ts = |t: u64| crate::time::format_timestamp(t as i64);
                        if verify::is_expired(head.expires, now) {
                            problem = Some(format!(
                                "the head expired at {}: run `consentry sync`",
                                ts(head.expires)
                            ));
                        } else if verify::is_expired(m.expires, now) {
                            problem = Some(format!(
                                "the manifest expired at {}: run `consentry sync`",
                                ts(m.expires)
                            ));
                        }
                        earliest = Some(root.expires.min(head.expires).min(m.expires));
                        let ts = |t: u64| crate::time::format_timestamp(t as i64);
                        snapshot = Some(SnapshotStatus {
                            version: m.version,
                            manifest_sha256: hex::encode(head.manifest.sha256),
                            created: ts(m.created),
                            head_version: head.version,
                            head_expires: ts(head.expires),
                            head_expired: verify::is_expired(head.expires, now),
                            manifest_expires: ts(m.expires),
                            manifest_expired: verify::is_expired(m.expires, now),
                            entries: m.entries,
                            ranges: m.ranges.len(),
                            base: m.base,
                            layers: m.layers.len(),
                        });
                    }
                    Ok(None) => problem = Some("the manifest the head names is missing".into()),
                    Err(e) => problem = Some(e.to_string()),
                }
            }
        }
        let record = self.sync_record();
        let expires_in_s = earliest.map(|e| (e as i64).saturating_sub(now));
        let log = match &root.witnesses {
            None => None,
            Some(policy) => self
                .read(
                    crate::tlog::CHECKPOINT_PATH,
                    crate::note::MAX_NOTE_BYTES as u64,
                )?
                .and_then(|b| {
                    let n = crate::note::Note::parse(&b).ok()?;
                    let cp = crate::note::Checkpoint::parse_text(&n.text).ok()?;
                    Some(LogStatus {
                        origin: cp.origin,
                        size: cp.size,
                        root_hash: hex::encode(cp.root),
                        witness_threshold: policy.threshold,
                        cosigners: crate::tlog::cosigners(policy, &n),
                        note: String::from_utf8_lossy(&b).into_owned(),
                    })
                }),
        };
        Ok(Status {
            store: self.dir.display().to_string(),
            source: record.as_ref().map(|r| r.source.clone()),
            last_sync: record.map(|r| crate::time::format_timestamp(r.at)),
            expires: earliest.map(|e| crate::time::format_timestamp(e as i64)),
            expires_in_s,
            expired: verify::is_expired(earliest.unwrap_or(root.expires).min(root.expires), now),
            pinned_root_version: chain.pinned,
            root_version: root.version,
            root_expires: crate::time::format_timestamp(root.expires as i64),
            root_expired: verify::is_expired(root.expires, now),
            roles: role_summary(root),
            snapshot,
            snapshot_problem: problem,
            clock_problem,
            log,
            store_bytes: dir_size(&self.dir),
        })
    }
}

/// The store's data files for [`rebuild`]: read from the store only (a
/// store has no source to fetch a damaged file from again), never past the
/// signed length, each checked against its signed reference before use.
pub struct StoreFiles<'a> {
    store: &'a Store,
    /// Files opened and checked so far, and their bytes.
    pub opened: u64,
    pub bytes: u64,
}

impl<'a> StoreFiles<'a> {
    pub fn new(store: &'a Store) -> StoreFiles<'a> {
        StoreFiles {
            store,
            opened: 0,
            bytes: 0,
        }
    }
}

impl std::fmt::Debug for StoreFiles<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreFiles")
            .field("store", &self.store.dir)
            .field("opened", &self.opened)
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl rebuild::DataFiles for StoreFiles<'_> {
    fn open(&mut self, rel: &str, fref: &FileRef) -> Result<(Vec<u8>, String), Rejection> {
        let limits = &self.store.limits;
        let loc = self.store.loc(rel);
        rebuild::check_declared_length(&loc, fref, limits)?;
        let bytes = self
            .store
            .read(rel, fref.length.min(limits.max_file_bytes))?
            .ok_or_else(|| reject(&loc, Code::StoreIncomplete, "is missing from the store"))?;
        let raw = crate::columns::open_file(&loc, &bytes, fref, limits)?;
        self.opened += 1;
        self.bytes += bytes.len() as u64;
        Ok((raw, loc))
    }
}

/// Total size of the regular files under `dir` (symlinks not followed).
fn dir_size(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isrc::Isrc;
    use crate::model::Use;
    use crate::testsite::{self, NOW, Opts, TestSite, policy, record};

    /// The batch path gives exactly the one-question path's decision and
    /// reason, sorted or not, for ISRCs with no, one and several entries of
    /// their own, under prefix declarations and without.
    #[test]
    fn decide_batch_equals_answer() {
        let tmp = tempfile::tempdir().unwrap();
        let mut site = TestSite::new(tmp.path().join("site"));
        let mut recs = testsite::example_records();
        let mut seq = 100;
        for (n, reg) in ["GBNWR25", "GBNWR24", "USQZ924", "DEXY123", "FRAB100"]
            .iter()
            .enumerate()
        {
            for d in (0..400u64).step_by(7) {
                seq += 1;
                let isrc = format!("{reg}{:05}", d * 3);
                let who = ["Northwind Records", "Other Label", "An Artist"][(d % 3) as usize];
                recs.push(record(
                    &isrc,
                    seq,
                    &format!("G{seq}"),
                    policy(who, (d + n as u64).is_multiple_of(4)),
                ));
                if d % 5 == 0 {
                    seq += 1;
                    recs.push(record(
                        &isrc,
                        seq,
                        &format!("G{seq}"),
                        policy("Second Voice", d % 2 == 0),
                    ));
                }
            }
        }
        site.publish(&recs, &Opts::default());
        let store = testsite::synced_store(&site, &tmp.path().join("store"));
        let reader = store.reader(NOW, Expiry::Enforce).unwrap();
        let mut isrcs: Vec<Isrc> = Vec::new();
        for reg in [
            "GBNWR25", "GBNWR24", "USQZ924", "DEXY123", "FRAB100", "JPAB025", "ZZZZZ99",
        ] {
            for d in 0..1300u64 {
                isrcs.push(Isrc::parse(&format!("{reg}{d:05}")).unwrap());
            }
        }
        for r in &recs {
            if let crate::isrc::Scope::Exact(i) = r.scope {
                isrcs.push(i);
            }
        }
        let mut shuffled = isrcs.clone();
        shuffled.reverse();
        shuffled.rotate_left(isrcs.len() / 3);
        isrcs.sort_unstable();
        let mut seen = std::collections::HashSet::new();
        for (use_, territory, at) in [
            (Use::TrainAi, None, crate::time::day_of(NOW)),
            (Use::TrainGenai, Some("FR"), crate::time::day_of(NOW)),
            (Use::Search, Some("US"), 19_000),
            (Use::All, None, 30_000),
        ] {
            for list in [&isrcs, &shuffled] {
                let got = reader.decide_batch(list, use_, territory, at).unwrap();
                assert_eq!(got.len(), list.len());
                for (isrc, g) in list.iter().zip(&got) {
                    let a = reader
                        .answer(&Question {
                            isrc: *isrc,
                            use_,
                            territory: territory.map(str::to_string),
                            at,
                        })
                        .unwrap();
                    assert_eq!(*g, (a.decision, a.reason), "{}", isrc.compact());
                    seen.insert(*g);
                }
            }
        }
        // Allow, disallow, conflict, no record, silent, territory, expiry…
        assert!(seen.len() >= 6, "{seen:?}");

        // Whole answers (deciding ids, terms) for questions that each carry
        // their own use, territory and day, in any order, with repeats and
        // inputs that are not ISRCs: each equals the one-question path.
        let asks = [
            (Use::TrainAi, None, crate::time::day_of(NOW)),
            (Use::TrainGenai, Some("FR"), crate::time::day_of(NOW)),
            (Use::Search, Some("US"), 19_000),
            (Use::All, None, 30_000),
        ];
        let mut questions: Vec<Option<Question>> = Vec::new();
        for (n, isrc) in shuffled.iter().chain(&isrcs).enumerate() {
            let (use_, territory, at) = asks[n % asks.len()];
            questions.push(Some(Question {
                isrc: *isrc,
                use_,
                territory: territory.map(str::to_string),
                at,
            }));
            if n % 11 == 0 {
                questions.push(None);
            }
        }
        let got = reader.answer_many(&questions).unwrap();
        assert_eq!(got.len(), questions.len());
        let mut decided_by_some = 0;
        for (q, g) in questions.iter().zip(&got) {
            let want = match q {
                None => crate::lookup::Answer::invalid_isrc(),
                Some(q) => reader.answer(q).unwrap(),
            };
            assert_eq!(*g, want, "{q:?}");
            decided_by_some += usize::from(!g.decided_by.is_empty());
        }
        assert!(decided_by_some > questions.len() / 4, "{decided_by_some}");
        // The same answers on several threads, each with its own reader.
        let mut helpers = vec![reader.fork().unwrap(), reader.fork().unwrap()];
        assert_eq!(
            reader.answer_many_with(&mut helpers, &questions).unwrap(),
            got
        );
        assert_eq!(
            reader
                .answer_many_with(&mut helpers[..1], &questions[..7])
                .unwrap(),
            got[..7]
        );

        // Inputs as given (spellings, repeats, bad strings, missing values),
        // through the parse-sort-dedupe batch: each equals the one-question
        // path, and nothing that is not an ISRC is ever allowed.
        let mut inputs: Vec<Option<String>> = Vec::new();
        for (n, i) in shuffled.iter().enumerate().step_by(5) {
            inputs.push(Some(match n % 3 {
                0 => i.compact(),
                1 => i.hyphenated().to_lowercase(),
                _ => format!(" ISRC {} ", i.compact()),
            }));
            if n % 7 == 0 {
                inputs.push(None);
                inputs.push(Some("GB-NWR-25".into()));
                inputs.push(Some(i.compact()));
                inputs.push(Some(format!("{}\u{a0}", i.compact())));
            }
        }
        let day = crate::time::day_of(NOW);
        let got = reader
            .decide_inputs(inputs.iter().map(Option::as_deref), Use::TrainAi, None, day)
            .unwrap();
        assert_eq!(got.len(), inputs.len());
        let mut allowed = 0;
        for (input, g) in inputs.iter().zip(&got) {
            let want = match input {
                None => crate::lookup::Answer::invalid_isrc(),
                Some(s) => reader.answer_input(s, Use::TrainAi, None, day).unwrap(),
            };
            assert_eq!(*g, (want.decision, want.reason), "{input:?}");
            if input.is_none() || input.as_deref().is_some_and(|s| Isrc::parse(s).is_err()) {
                assert_eq!(g.1, crate::model::Reason::InvalidIsrc, "{input:?}");
            }
            allowed += usize::from(g.0 == crate::model::Decision::Allow);
        }
        assert!(allowed > 0 && allowed < inputs.len(), "{allowed}");
    }
}
