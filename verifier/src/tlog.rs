//! The witnessed manifest log (SPEC.md §15): checking a checkpoint and the
//! log's leaves against a root's keys and witness policy, against the
//! manifest being accepted, and against the checkpoint trusted before.
//! The steps are numbered as in §15.3; no I/O.

use crate::docs::{Role, Root, Witnesses};
use crate::error::{Code, Rejection, reject};
use crate::merkle::merkle_root;
use crate::note::{self, Checkpoint, Note};
use crate::verify::role_keys;

/// Most versions the log may hold (one an hour for a century fits).
pub const MAX_LOG_SIZE: u64 = 1 << 20;

/// The log's site files.
pub const CHECKPOINT_PATH: &str = "log/checkpoint";
pub const LEAVES_PATH: &str = "log/leaves";

/// A checkpoint that passed §15.3 steps 1–5 (and 6 when witnessing applies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub checkpoint: Checkpoint,
    /// The note as received (log signature and cosignatures).
    pub note: Vec<u8>,
    /// Witness names whose cosignatures verified, sorted, each once, with
    /// the time each cosigned.
    pub cosigners: Vec<(String, u64)>,
}

fn bad(file: &str, code: Code, msg: impl Into<String>) -> Rejection {
    reject(file, code, msg.into())
}

/// Steps 1–5: parse the note (1) and its checkpoint (2) with the origin of
/// `policy`, count the log signatures of `root`'s manifest keys (3), check
/// that `leaves` hash to the checkpoint's root (4) and extend `last`, the
/// checkpoint trusted before (5). What a witness checks before cosigning,
/// and the first half of what a verifier checks.
pub fn check_log(
    root: &Root,
    policy: &Witnesses,
    note_bytes: &[u8],
    leaves_bytes: &[u8],
    last: Option<&Checkpoint>,
) -> Result<(Note, Checkpoint, Vec<[u8; 32]>), Rejection> {
    let cfile = CHECKPOINT_PATH;
    // 1. The signed note.
    let n = Note::parse(note_bytes).map_err(|e| bad(cfile, Code::MalformedCheckpoint, e))?;
    // 2. Its checkpoint, for this log.
    let cp =
        Checkpoint::parse_text(&n.text).map_err(|e| bad(cfile, Code::MalformedCheckpoint, e))?;
    if cp.origin != policy.origin {
        return Err(bad(
            cfile,
            Code::MalformedCheckpoint,
            format!(
                "origin is {:?}, the root names {:?}",
                cp.origin, policy.origin
            ),
        ));
    }
    if cp.size == 0 || cp.size > MAX_LOG_SIZE {
        return Err(bad(
            cfile,
            Code::MalformedCheckpoint,
            format!("tree size {} is not between 1 and {MAX_LOG_SIZE}", cp.size),
        ));
    }
    // 3. A threshold of the root's manifest keys signed it, as the origin.
    let keys = role_keys(root, Role::Manifest);
    let signed = keys
        .iter()
        .filter(|(_, k)| {
            n.sigs
                .iter()
                .any(|l| note::log_signature_valid(l, &cp.origin, k, &n.text))
        })
        .count() as u64;
    if signed < root.roles.manifest.threshold {
        return Err(bad(
            cfile,
            Code::ThresholdNotMet,
            format!(
                "{signed} valid log signature(s) by the manifest keys, {} needed",
                root.roles.manifest.threshold
            ),
        ));
    }
    // 4. The leaves are the tree the checkpoint names.
    let lfile = LEAVES_PATH;
    // The file may already hold leaves of a newer tree (it is written
    // before the checkpoint): the first `size` are this tree's.
    if (leaves_bytes.len() as u64) < cp.size * 32 {
        return Err(bad(
            lfile,
            Code::CheckpointMismatch,
            format!(
                "{} bytes; a tree of {} leaves needs {}",
                leaves_bytes.len(),
                cp.size,
                cp.size * 32
            ),
        ));
    }
    let mut leaves =
        note::parse_leaves(leaves_bytes).map_err(|e| bad(lfile, Code::MalformedCheckpoint, e))?;
    leaves.truncate(cp.size as usize);
    if merkle_root(&leaves) != cp.root {
        return Err(bad(
            lfile,
            Code::CheckpointMismatch,
            "the leaves do not hash to the checkpoint's root",
        ));
    }
    // 5. Append-only: the tree trusted before (of this origin) is a prefix
    // of this one.
    if let Some(old) = last.filter(|o| o.origin == cp.origin) {
        if cp.size < old.size {
            return Err(bad(
                cfile,
                Code::Rollback,
                format!(
                    "tree size {} is smaller than the {} already trusted",
                    cp.size, old.size
                ),
            ));
        }
        let prefix = leaves.get(..old.size as usize).map(merkle_root);
        if prefix != Some(old.root) {
            return Err(bad(
                cfile,
                Code::LogFork,
                format!(
                    "the first {} leaves do not hash to the root trusted before ({}): this log forked from the one seen earlier",
                    old.size,
                    hex::encode(old.root)
                ),
            ));
        }
    }
    Ok((n, cp, leaves))
}

/// The witnesses of `policy` whose cosignatures on `n` verify: each name
/// once (the first valid line), sorted by name, with its time.
pub fn cosigners(policy: &Witnesses, n: &Note) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for w in &policy.keys {
        let Ok(k) = crate::envelope::load_key(&w.key) else {
            continue;
        };
        if let Some(t) = n
            .sigs
            .iter()
            .find_map(|l| note::cosignature_valid(l, &w.name, &k, &n.text))
        {
            out.push((w.name.clone(), t));
        }
    }
    out
}

/// §15.3 in full, for a verifier accepting manifest `version` with hash
/// `manifest_sha256` under `root` (whose policy is `policy`): steps 1–5,
/// then 6 (a threshold of witnesses cosigned) and 7 (the checkpoint's last
/// leaf is that manifest).
pub fn verify_checkpoint(
    root: &Root,
    policy: &Witnesses,
    note_bytes: &[u8],
    leaves_bytes: &[u8],
    version: u64,
    manifest_sha256: &[u8; 32],
    last: Option<&Checkpoint>,
) -> Result<Verified, Rejection> {
    let (n, cp, leaves) = check_log(root, policy, note_bytes, leaves_bytes, last)?;
    // 6. Witnesses.
    let cos = cosigners(policy, &n);
    if (cos.len() as u64) < policy.threshold {
        return Err(bad(
            CHECKPOINT_PATH,
            Code::WitnessThresholdNotMet,
            format!(
                "{} of the root's witnesses cosigned tree size {} ({}), {} needed",
                cos.len(),
                cp.size,
                cos.iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                policy.threshold
            ),
        ));
    }
    // 7. The checkpoint covers the manifest accepted: leaf `version − 1`
    // is its hash.
    let leaf = version
        .checked_sub(1)
        .and_then(|i| leaves.get(usize::try_from(i).ok()?));
    if leaf != Some(manifest_sha256) {
        return Err(bad(
            CHECKPOINT_PATH,
            Code::CheckpointMismatch,
            format!(
                "the checkpoint's tree (size {}) does not hold manifest version {version} ({}) as leaf {}",
                cp.size,
                hex::encode(manifest_sha256),
                version.saturating_sub(1)
            ),
        ));
    }
    Ok(Verified {
        checkpoint: cp,
        note: note_bytes.to_vec(),
        cosigners: cos,
    })
}

/// Whether two checkpoints of one origin can both be true of one
/// append-only log, given the leaves of the larger (or either, when equal):
/// `Ok(())` when consistent, the reason otherwise (a proof of a split view
/// when both are validly signed).
pub fn consistent(
    a: &Checkpoint,
    b: &Checkpoint,
    larger_leaves: Option<&[[u8; 32]]>,
) -> Result<(), String> {
    if a.origin != b.origin {
        return Err(format!("different logs: {:?} and {:?}", a.origin, b.origin));
    }
    let (small, large) = if a.size <= b.size { (a, b) } else { (b, a) };
    if small.size == large.size {
        return if small.root == large.root {
            Ok(())
        } else {
            Err(format!(
                "two different trees of size {} signed by the log: a split view",
                small.size
            ))
        };
    }
    let Some(leaves) = larger_leaves else {
        return Err("different sizes: the larger tree's leaves are needed to compare".into());
    };
    if leaves.len() as u64 != large.size || merkle_root(leaves) != large.root {
        return Err("the leaves given are not the larger tree's".into());
    }
    if merkle_root(&leaves[..small.size as usize]) == small.root {
        Ok(())
    } else {
        Err(format!(
            "tree size {} is not a prefix of tree size {}: the log forked (a split view)",
            small.size, large.size
        ))
    }
}
