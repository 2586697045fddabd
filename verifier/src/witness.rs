//! A witness of the registry's manifest log (SPEC.md §15.4): it keeps the
//! registry's root and the last checkpoint it cosigned, and cosigns a new
//! checkpoint only when the log's manifest keys signed it and the log
//! grew append-only from what it cosigned before. It never cosigns a fork.
//!
//! State directory: `root.cbor` (the newest root verified from the one
//! pinned at `init`) and `checkpoint` (the note it last cosigned).

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer, SigningKey};

use crate::docs::{Root, paths};
use crate::error::{Code, Rejection, reject};
use crate::fetch::{Fetch, io_error};
use crate::fsio::write_atomic;
use crate::limits::Limits;
use crate::note::{self, AddCheckpoint, Checkpoint, Note};
use crate::tlog;
use crate::verify;

/// A witness's signing key.
#[derive(Debug)]
pub struct WitnessKey {
    pub name: String,
    signing: SigningKey,
}

const PRIVATE_PREFIX: &str = "PRIVATE+KEY+";

impl WitnessKey {
    /// A fresh key named `name`, from 32 bytes of the OS's randomness.
    pub fn generate(name: &str) -> Result<WitnessKey, Rejection> {
        use std::io::Read;
        let mut seed = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut seed))
            .map_err(|e| io_error("/dev/urandom", &e))?;
        WitnessKey::from_seed(name, seed)
    }

    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<WitnessKey, Rejection> {
        // A name a note may carry (checked by building its vkey and parsing it).
        let k = WitnessKey {
            name: name.to_string(),
            signing: SigningKey::from_bytes(&seed),
        };
        note::parse_vkey(&k.vkey(), note::ALG_COSIGNATURE_V1)
            .map_err(|e| reject(name, Code::Usage, e))?;
        Ok(k)
    }

    pub fn public(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// The C2SP verifier key a registry lists in its root (`--witness`).
    pub fn vkey(&self) -> String {
        note::vkey(&self.name, note::ALG_COSIGNATURE_V1, &self.public())
    }

    /// The secret key file's text: `PRIVATE+KEY+NAME+HASH+BASE64(0x04 ‖ seed)`.
    pub fn secret_text(&self) -> String {
        let mut blob = vec![note::ALG_COSIGNATURE_V1];
        blob.extend_from_slice(&self.signing.to_bytes());
        format!(
            "{PRIVATE_PREFIX}{}+{}+{}\n",
            self.name,
            hex::encode(note::key_hash(
                &self.name,
                note::ALG_COSIGNATURE_V1,
                &self.public()
            )),
            B64.encode(blob)
        )
    }

    /// Read a secret key file written by [`WitnessKey::secret_text`].
    pub fn read(path: &Path) -> Result<WitnessKey, Rejection> {
        let loc = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| io_error(&loc, &e))?;
        let bad = |m: &str| reject(&loc, Code::Usage, format!("not a witness secret key: {m}"));
        let rest = text
            .trim()
            .strip_prefix(PRIVATE_PREFIX)
            .ok_or_else(|| bad("no PRIVATE+KEY+ prefix"))?;
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(hash), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected NAME+HASH+BASE64"));
        };
        let blob = B64.decode(b64).map_err(|_| bad("the key is not base64"))?;
        if blob.len() != 33 || blob[0] != note::ALG_COSIGNATURE_V1 {
            return Err(bad("not a cosignature/v1 ed25519 key"));
        }
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&blob[1..]);
        let k = WitnessKey::from_seed(name, seed)?;
        if hex::encode(note::key_hash(name, note::ALG_COSIGNATURE_V1, &k.public())) != hash {
            return Err(bad("the key hash does not match the key"));
        }
        Ok(k)
    }
}

/// Pin the registry's root (bytes obtained out of band) in a new witness
/// state directory.
pub fn init(state: &Path, root_bytes: &[u8], limits: &Limits) -> Result<Root, Rejection> {
    let rel = state.join("root.cbor");
    if rel.exists() {
        return Err(reject(
            rel.display().to_string(),
            Code::AlreadyInitialized,
            "this witness already follows a log; use another --state directory",
        ));
    }
    let root = verify::verify_pinned_root("root.cbor", root_bytes, limits)?;
    write_atomic(&rel, root_bytes)?;
    Ok(root)
}

/// What [`cosign`] did.
#[derive(Debug, Clone)]
pub struct Cosigned {
    pub checkpoint: Checkpoint,
    /// The cosignature line (`— NAME BASE64\n`), for `consentry-publish log cosign`.
    pub line: String,
    pub root_version: u64,
    /// The tree size cosigned before (0: none).
    pub previous_size: u64,
}

/// The witness's view before it checks anything: the newest root (followed
/// from its state's root through `fetch`, when given), the root's witness
/// policy, and the checkpoint it cosigned last.
struct View {
    root: Root,
    policy: crate::docs::Witnesses,
    /// Root bytes to remember, when the walk found a newer one.
    newest: Option<Vec<u8>>,
    last: Option<Checkpoint>,
}

fn view(state: &Path, fetch: Option<&dyn Fetch>, limits: &Limits) -> Result<View, Rejection> {
    let rloc = state.join("root.cbor").display().to_string();
    let rbytes = std::fs::read(state.join("root.cbor")).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            reject(
                &rloc,
                Code::NotInitialized,
                "no root pinned: run `consentry witness init --state DIR --root ROOT.cbor` first",
            )
        } else {
            io_error(&rloc, &e)
        }
    })?;
    let (_, start) = verify::parse_root(&rloc, &rbytes, limits)?;
    let mut newest: Option<Vec<u8>> = None;
    let root = match fetch {
        Some(fetch) => {
            verify::walk_roots(
                start,
                limits.max_root_rotations,
                limits,
                |v| {
                    let rel = paths::root(v);
                    Ok(fetch
                        .get(&rel, limits.max_root_bytes)?
                        .map(|b| (fetch.location(&rel), b)))
                },
                |_, b| newest = Some(b),
            )?
            .root
        }
        None => start,
    };
    let Some(policy) = root.witnesses.clone() else {
        return Err(reject(
            &rloc,
            Code::MalformedCheckpoint,
            format!(
                "root version {} names no witnesses: this registry runs no witnessed log",
                root.version
            ),
        ));
    };
    let cloc = state.join("checkpoint").display().to_string();
    let last = match std::fs::read(state.join("checkpoint")) {
        Ok(b) => Some(
            Note::parse(&b)
                .and_then(|n| Checkpoint::parse_text(&n.text))
                .map_err(|e| reject(&cloc, Code::StoreCorrupt, e))?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_error(&cloc, &e)),
    };
    Ok(View {
        root,
        policy,
        newest,
        last,
    })
}

/// Cosign `n` (checked by the caller) at `now` and remember it: the newest
/// root, then what was cosigned (a crash between the two only makes the
/// next run walk one root again).
fn sign_and_remember(
    state: &Path,
    key: &WitnessKey,
    v: View,
    n: &Note,
    cp: Checkpoint,
    now: i64,
) -> Result<Cosigned, Rejection> {
    let time =
        u64::try_from(now).map_err(|_| reject("--now", Code::Usage, "a time before 1970"))?;
    let sig = key
        .signing
        .sign(&note::cosigned_message(&n.text, time))
        .to_bytes();
    let cosig = note::cosignature_line(&key.name, &key.public(), time, &sig);
    let line = cosig.line();
    if let Some(b) = v.newest {
        write_atomic(&state.join("root.cbor"), &b)?;
    }
    let mine = Note {
        text: n.text.clone(),
        sigs: vec![cosig],
    };
    write_atomic(&state.join("checkpoint"), &mine.to_bytes())?;
    Ok(Cosigned {
        checkpoint: cp,
        line,
        root_version: v.root.version,
        previous_size: v.last.map_or(0, |c| c.size),
    })
}

/// §15.4: follow the root chain from the state's root through the source,
/// check the source's checkpoint and leaves ([`tlog::check_log`]: log
/// signatures by the manifest keys, leaves hashing to the root, extending
/// the checkpoint cosigned before), then cosign it at `now` and remember
/// it. A fork or a smaller tree is refused and nothing is signed.
pub fn cosign(
    state: &Path,
    key: &WitnessKey,
    fetch: &dyn Fetch,
    now: i64,
    limits: &Limits,
) -> Result<Cosigned, Rejection> {
    let v = view(state, Some(fetch), limits)?;
    let get = |rel: &str, max: u64| {
        fetch.get(rel, max)?.ok_or_else(|| {
            reject(
                fetch.location(rel),
                Code::NotFound,
                "the source has no such file",
            )
        })
    };
    let note_bytes = get(tlog::CHECKPOINT_PATH, note::MAX_NOTE_BYTES as u64)?;
    let leaves = get(tlog::LEAVES_PATH, tlog::MAX_LOG_SIZE * 32)?;
    let (n, cp, _) = tlog::check_log(&v.root, &v.policy, &note_bytes, &leaves, v.last.as_ref())?;
    sign_and_remember(state, key, v, &n, cp, now)
}

/// The log origin this witness follows (its newest root's
/// `witnesses.origin`, roots followed through `fetch` when given) and the
/// tree size it cosigned last (0: none) — what an HTTP witness needs to
/// answer "unknown log" (404) and "conflict" (409) as tlog-witness says.
pub fn status(
    state: &Path,
    fetch: Option<&dyn Fetch>,
    limits: &Limits,
) -> Result<(String, u64), Rejection> {
    let v = view(state, fetch, limits)?;
    Ok((v.policy.origin, v.last.map_or(0, |c| c.size)))
}

/// §15.6: the C2SP `tlog-witness` add-checkpoint check, offline. The note
/// must be signed by the log (steps 1–3 of §15.3 against the witness's
/// root, followed through `fetch` when given); `old` must be the size this
/// witness cosigned last (0 for none: `checkpoint_mismatch` otherwise, the
/// message naming that size); a smaller tree is `rollback`; the proof must
/// show the tree cosigned before is a prefix of the new one (`log_fork`
/// when it does not, or when an equal size has another root). Only then is
/// the checkpoint cosigned and remembered.
pub fn add_checkpoint(
    state: &Path,
    key: &WitnessKey,
    fetch: Option<&dyn Fetch>,
    request: &[u8],
    now: i64,
    limits: &Limits,
) -> Result<Cosigned, Rejection> {
    let v = view(state, fetch, limits)?;
    let loc = "add-checkpoint request";
    let req =
        AddCheckpoint::parse(request).map_err(|e| reject(loc, Code::MalformedCheckpoint, e))?;
    let (n, cp) = tlog::check_note(&v.root, &v.policy, &req.note)?;
    let last_size = v.last.as_ref().map_or(0, |c| c.size);
    if cp.size < last_size {
        return Err(reject(
            loc,
            Code::Rollback,
            format!(
                "tree size {} is smaller than the {last_size} this witness cosigned",
                cp.size
            ),
        ));
    }
    if req.old > cp.size {
        return Err(reject(
            loc,
            Code::MalformedCheckpoint,
            format!(
                "old size {} is larger than the checkpoint's {}",
                req.old, cp.size
            ),
        ));
    }
    if req.old != last_size {
        return Err(reject(
            loc,
            Code::CheckpointMismatch,
            format!(
                "this witness last cosigned tree size {last_size}, not {}: send a consistency proof from {last_size}",
                req.old
            ),
        ));
    }
    if let Some(old) = &v.last
        && !crate::merkle::verify_consistency(old.size, cp.size, &old.root, &cp.root, &req.proof)
    {
        return Err(reject(
            loc,
            Code::LogFork,
            format!(
                "the consistency proof does not show tree size {} (root {}) to extend the size {} this witness cosigned (root {}): refusing to cosign a fork",
                cp.size,
                hex::encode(cp.root),
                old.size,
                hex::encode(old.root)
            ),
        ));
    }
    sign_and_remember(state, key, v, &n, cp, now)
}

/// Two stores' view of the log, compared offline (SPEC.md §15.5): each
/// store's checkpoint is checked against its own root (log signatures,
/// leaves); then the two must be one append-only log. `Ok(None)` when they
/// agree; `Ok(Some(reason))` when they prove a split view.
pub fn compare_stores(
    a: &crate::store::Store,
    b: &crate::store::Store,
) -> Result<Option<String>, Rejection> {
    let view = |s: &crate::store::Store| -> Result<(Checkpoint, Vec<[u8; 32]>), Rejection> {
        let root = s.trusted_root_chain()?.root;
        let Some(policy) = &root.witnesses else {
            return Err(reject(
                s.dir().display().to_string(),
                Code::MalformedCheckpoint,
                "the store's root names no witnesses: no log to compare",
            ));
        };
        let loc = s.loc(tlog::CHECKPOINT_PATH);
        let note_bytes = s
            .read(tlog::CHECKPOINT_PATH, note::MAX_NOTE_BYTES as u64)?
            .ok_or_else(|| {
                reject(
                    &loc,
                    Code::NotFound,
                    "the store holds no checkpoint: sync it first",
                )
            })?;
        let leaves = s
            .read(tlog::LEAVES_PATH, tlog::MAX_LOG_SIZE * 32)?
            .ok_or_else(|| {
                reject(
                    s.loc(tlog::LEAVES_PATH),
                    Code::NotFound,
                    "the store holds no log leaves",
                )
            })?;
        let (_, cp, leaves) = tlog::check_log(&root, policy, &note_bytes, &leaves, None)?;
        Ok((cp, leaves))
    };
    let (ca, la) = view(a)?;
    let (cb, lb) = view(b)?;
    let larger = if ca.size >= cb.size { &la } else { &lb };
    Ok(tlog::consistent(&ca, &cb, Some(larger)).err())
}
