//! The witnessed manifest log (SPEC.md §15): checking a checkpoint and the
//! log's leaves against a root's keys and witness policy, against the
//! manifest being accepted, and against the checkpoint trusted before.
//! The steps are numbered as in §15.3; no I/O.

use sha2::{Digest, Sha256};

use crate::docs::{Manifest, Role, Root, Witnesses};
use crate::error::{Code, Rejection, reject};
use crate::merkle::merkle_root;
use crate::note::{self, Checkpoint, Note};
use crate::verify::role_keys;

/// Most versions the log may hold (one an hour for a century fits).
pub const MAX_LOG_SIZE: u64 = 1 << 20;

/// The log's site files.
pub const CHECKPOINT_PATH: &str = "log/checkpoint";
pub const LEAVES_PATH: &str = "log/leaves";

/// Domain tag of a log entry's hash (§15.1; the tag includes the NUL).
pub const ENTRY_TAG: &[u8] = b"consentry-log-entry-v1\0";

/// What leaf `version − 1` of the log commits to (§15.1): the manifest's
/// file hash, and the fields a compact receipt (§13.4) needs without the
/// manifest — its version, `created`, state root and number of state
/// leaves (ranges + 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogEntry {
    /// Number of leaves under `state_root`: the manifest's ranges + 1.
    pub leaves: u64,
    /// Unix seconds, the manifest's `created`.
    pub created: u64,
    pub version: u64,
    /// SHA-256 of the manifest's file bytes (the hash a head names).
    #[serde(with = "crate::cbor::bytes32")]
    pub manifest: [u8; 32],
    #[serde(with = "crate::cbor::bytes32")]
    pub state_root: [u8; 32],
}

impl LogEntry {
    /// The entry of manifest `m` whose file bytes hash to `sha`.
    pub fn of(m: &Manifest, sha: &[u8; 32]) -> LogEntry {
        LogEntry {
            leaves: m.ranges.len() as u64 + 1,
            created: m.created,
            version: m.version,
            manifest: *sha,
            state_root: m.state_root,
        }
    }

    /// The 32-byte leaf data: SHA-256(tag ‖ u64be(version) ‖ u64be(created)
    /// ‖ manifest ‖ state_root ‖ u64be(leaves)).
    pub fn hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(ENTRY_TAG);
        h.update(self.version.to_be_bytes());
        h.update(self.created.to_be_bytes());
        h.update(self.manifest);
        h.update(self.state_root);
        h.update(self.leaves.to_be_bytes());
        h.finalize().into()
    }
}

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

/// Steps 1–3: parse the note (1) and its checkpoint (2) with the origin of
/// `policy`, and count the log signatures of `root`'s manifest keys (3).
/// What a compact receipt's checkpoint passes before its cosignatures are
/// counted.
pub fn check_note(
    root: &Root,
    policy: &Witnesses,
    note_bytes: &[u8],
) -> Result<(Note, Checkpoint), Rejection> {
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
    Ok((n, cp))
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
    let (n, cp) = check_note(root, policy, note_bytes)?;
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

/// Step 6: at least `policy.threshold` of the root's witnesses cosigned
/// `n` (each counted once); returns who, with when.
pub fn witnessed(
    policy: &Witnesses,
    n: &Note,
    cp: &Checkpoint,
    file: &str,
) -> Result<Vec<(String, u64)>, Rejection> {
    let cos = cosigners(policy, n);
    if (cos.len() as u64) < policy.threshold {
        return Err(bad(
            file,
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
    Ok(cos)
}

/// §15.3 in full, for a verifier accepting the manifest whose log entry is
/// `entry` under `root` (whose policy is `policy`): steps 1–5, then 6 (a
/// threshold of witnesses cosigned) and 7 (leaf `version − 1` is that
/// manifest's entry).
pub fn verify_checkpoint(
    root: &Root,
    policy: &Witnesses,
    note_bytes: &[u8],
    leaves_bytes: &[u8],
    entry: &LogEntry,
    last: Option<&Checkpoint>,
) -> Result<Verified, Rejection> {
    let (n, cp, leaves) = check_log(root, policy, note_bytes, leaves_bytes, last)?;
    // 6. Witnesses.
    let cos = witnessed(policy, &n, &cp, CHECKPOINT_PATH)?;
    // 7. The checkpoint covers the manifest accepted: leaf `version − 1`
    // is its entry.
    let version = entry.version;
    let leaf = version
        .checked_sub(1)
        .and_then(|i| leaves.get(usize::try_from(i).ok()?));
    if leaf != Some(&entry.hash()) {
        return Err(bad(
            CHECKPOINT_PATH,
            Code::CheckpointMismatch,
            format!(
                "the checkpoint's tree (size {}) does not hold manifest version {version} ({}) as leaf {}",
                cp.size,
                hex::encode(entry.manifest),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docs::{RoleKeys, Roles, WitnessKey};
    use crate::note::{cosignature_line, cosigned_message, log_signature_line};
    use ed25519_dalek::{Signer, SigningKey};

    const ORIGIN: &str = "example.org/log";

    struct Log {
        root: Root,
        policy: Witnesses,
        signer: SigningKey,
        witnesses: Vec<SigningKey>,
    }

    fn log() -> Log {
        let signer = SigningKey::from_bytes(&[1u8; 32]);
        let witnesses: Vec<SigningKey> = (2u8..=4)
            .map(|b| SigningKey::from_bytes(&[b; 32]))
            .collect();
        let pk = signer.verifying_key().to_bytes();
        let id = crate::envelope::key_id(&pk);
        let rk = RoleKeys {
            keyids: vec![id],
            threshold: 1,
        };
        let policy = Witnesses {
            keys: witnesses
                .iter()
                .enumerate()
                .map(|(i, k)| WitnessKey {
                    key: k.verifying_key().to_bytes(),
                    name: format!("w{i}"),
                })
                .collect(),
            origin: ORIGIN.into(),
            threshold: 2,
        };
        let root = Root {
            keys: vec![pk],
            roles: Roles {
                head: rk.clone(),
                root: rk.clone(),
                manifest: rk,
            },
            expires: u64::MAX,
            version: 1,
            witnesses: Some(policy.clone()),
        };
        Log {
            root,
            policy,
            signer,
            witnesses,
        }
    }

    /// The log entry of a made-up manifest version `i`.
    fn entry(i: u8) -> LogEntry {
        LogEntry {
            leaves: 2,
            created: u64::from(i),
            version: u64::from(i),
            manifest: [i; 32],
            state_root: [i; 32],
        }
    }

    fn leaves(n: u8) -> Vec<[u8; 32]> {
        (1..=n).map(|i| entry(i).hash()).collect()
    }

    /// A note over `leaves`, signed by the log and cosigned by witnesses `w`.
    fn note(l: &Log, leaves: &[[u8; 32]], w: &[usize]) -> Vec<u8> {
        let cp = Checkpoint {
            origin: ORIGIN.into(),
            size: leaves.len() as u64,
            root: merkle_root(leaves),
        };
        let text = cp.text();
        let mut sigs = vec![log_signature_line(
            ORIGIN,
            &l.signer.verifying_key().to_bytes(),
            &l.signer.sign(text.as_bytes()).to_bytes(),
        )];
        for &i in w {
            let k = &l.witnesses[i];
            sigs.push(cosignature_line(
                &format!("w{i}"),
                &k.verifying_key().to_bytes(),
                7,
                &k.sign(&cosigned_message(&text, 7)).to_bytes(),
            ));
        }
        Note { text, sigs }.to_bytes()
    }

    fn flat(leaves: &[[u8; 32]]) -> Vec<u8> {
        leaves.iter().flatten().copied().collect()
    }

    fn code(r: Result<Verified, Rejection>) -> Option<Code> {
        r.err().map(|e| e.code)
    }

    #[test]
    fn a_cosigned_checkpoint_covering_the_manifest_verifies() {
        let l = log();
        let lv = leaves(5);
        let n = note(&l, &lv, &[0, 2]);
        let v = verify_checkpoint(&l.root, &l.policy, &n, &flat(&lv), &entry(3), None).unwrap();
        assert_eq!(v.cosigners.len(), 2);
        // Extra leaves beyond the checkpoint (written before it) are ignored.
        let mut more = flat(&lv);
        more.extend_from_slice(&[9; 32]);
        assert!(verify_checkpoint(&l.root, &l.policy, &n, &more, &entry(5), None).is_ok());
    }

    #[test]
    fn too_few_or_repeated_cosignatures_do_not_meet_the_threshold() {
        let l = log();
        let lv = leaves(2);
        for w in [&[][..], &[1], &[1, 1]] {
            let n = note(&l, &lv, w);
            assert_eq!(
                code(verify_checkpoint(
                    &l.root,
                    &l.policy,
                    &n,
                    &flat(&lv),
                    &entry(2),
                    None
                )),
                Some(Code::WitnessThresholdNotMet),
                "{w:?}"
            );
        }
    }

    #[test]
    fn a_fork_a_rollback_and_a_foreign_manifest_are_refused() {
        let l = log();
        let lv = leaves(4);
        let n = note(&l, &lv, &[0, 1]);
        let seen = |k: u8| Checkpoint {
            origin: ORIGIN.into(),
            size: u64::from(k),
            root: merkle_root(&leaves(k)),
        };
        // The same history seen before: fine.
        assert!(
            verify_checkpoint(
                &l.root,
                &l.policy,
                &n,
                &flat(&lv),
                &entry(4),
                Some(&seen(3))
            )
            .is_ok()
        );
        // A different history of size 3 seen before: a fork.
        let mut other = leaves(3);
        other[0] = [0xee; 32];
        let forked = Checkpoint {
            origin: ORIGIN.into(),
            size: 3,
            root: merkle_root(&other),
        };
        assert_eq!(
            code(verify_checkpoint(
                &l.root,
                &l.policy,
                &n,
                &flat(&lv),
                &entry(4),
                Some(&forked)
            )),
            Some(Code::LogFork)
        );
        // A larger tree seen before: a rollback.
        let mut five = leaves(4);
        five.push(entry(5).hash());
        let bigger = Checkpoint {
            origin: ORIGIN.into(),
            size: 5,
            root: merkle_root(&five),
        };
        assert_eq!(
            code(verify_checkpoint(
                &l.root,
                &l.policy,
                &n,
                &flat(&lv),
                &entry(4),
                Some(&bigger)
            )),
            Some(Code::Rollback)
        );
        // A manifest the tree does not hold at its version: another
        // manifest at version 4, another state root, or a version past the
        // tree.
        let mut foreign = entry(4);
        foreign.manifest = [7; 32];
        let mut other_state = entry(4);
        other_state.state_root = [7; 32];
        let mut past = entry(4);
        past.version = 6;
        for e in [foreign, other_state, past] {
            assert_eq!(
                code(verify_checkpoint(
                    &l.root,
                    &l.policy,
                    &n,
                    &flat(&lv),
                    &e,
                    None
                )),
                Some(Code::CheckpointMismatch),
                "{e:?}"
            );
        }
    }

    #[test]
    fn leaves_that_do_not_match_and_unsigned_checkpoints_are_refused() {
        let l = log();
        let lv = leaves(3);
        let n = note(&l, &lv, &[0, 1]);
        let mut bad = flat(&lv);
        bad[40] ^= 1;
        assert_eq!(
            code(verify_checkpoint(
                &l.root,
                &l.policy,
                &n,
                &bad,
                &entry(3),
                None
            )),
            Some(Code::CheckpointMismatch)
        );
        assert_eq!(
            code(verify_checkpoint(
                &l.root,
                &l.policy,
                &n,
                &flat(&lv)[..64],
                &entry(3),
                None
            )),
            Some(Code::CheckpointMismatch)
        );
        let mut ragged = flat(&lv);
        ragged.push(0);
        assert_eq!(
            code(verify_checkpoint(
                &l.root,
                &l.policy,
                &n,
                &ragged,
                &entry(3),
                None
            )),
            Some(Code::MalformedCheckpoint)
        );
        // Cosigned but signed by no manifest key (a witness line only).
        let text = String::from_utf8(n.clone()).unwrap();
        let mut without_log = String::new();
        for line in text.lines() {
            if !line.starts_with("\u{2014} example.org/log ") {
                without_log.push_str(line);
                without_log.push('\n');
            }
        }
        assert_eq!(
            code(verify_checkpoint(
                &l.root,
                &l.policy,
                without_log.as_bytes(),
                &flat(&lv),
                &entry(3),
                None
            )),
            Some(Code::ThresholdNotMet)
        );
    }

    #[test]
    fn consistency_between_two_checkpoints() {
        let cp = |lv: &[[u8; 32]]| Checkpoint {
            origin: ORIGIN.into(),
            size: lv.len() as u64,
            root: merkle_root(lv),
        };
        let (a, b) = (leaves(3), leaves(6));
        assert!(consistent(&cp(&a), &cp(&b), Some(&b)).is_ok());
        assert!(consistent(&cp(&b), &cp(&a), Some(&b)).is_ok());
        let mut fork = leaves(6);
        fork[1] = [0xaa; 32];
        assert!(consistent(&cp(&a), &cp(&fork), Some(&fork)).is_err());
        assert!(
            consistent(&cp(&b), &cp(&fork), None).is_err(),
            "same size, two roots"
        );
    }
}

#[cfg(test)]
mod spec_examples {
    use super::*;
    use crate::merkle::{consistency_proof, verify_consistency};

    fn h(s: &str) -> [u8; 32] {
        Sha256::digest(s.as_bytes()).into()
    }

    /// The worked values of SPEC.md §15.1 and §15.6.
    #[test]
    fn spec_example_log_entry_and_consistency_proof_are_reproduced() {
        let e = LogEntry {
            leaves: 2,
            created: 1_767_225_600,
            version: 1,
            manifest: h("manifest 1"),
            state_root: [0x11; 32],
        };
        let leaves: Vec<[u8; 32]> = (1..=3u8)
            .map(|v| {
                LogEntry {
                    version: u64::from(v),
                    manifest: h(&format!("manifest {v}")),
                    ..e
                }
                .hash()
            })
            .collect();
        assert_eq!(leaves[0], e.hash());
        let p = consistency_proof(&leaves, 1);
        let got = (
            hex::encode(e.hash()),
            hex::encode(merkle_root(&leaves[..1])),
            hex::encode(merkle_root(&leaves)),
            p.iter().map(hex::encode).collect::<Vec<_>>(),
        );
        assert!(verify_consistency(
            1,
            3,
            &merkle_root(&leaves[..1]),
            &merkle_root(&leaves),
            &p
        ));
        // SPEC.md states these values.
        let spec = include_str!("../../SPEC.md");
        for v in [&got.0, &got.1, &got.2, &got.3[0], &got.3[1]] {
            assert!(spec.contains(v.as_str()), "SPEC.md §15.1/§15.6 lacks {v}");
        }
        assert_eq!(
            got,
            (
                "79e45b3949323051cfee9a4f02a4f69dcd254b768258450a7aa76ee59349bd7b".to_string(),
                "359608339c01522986772a1259370aa9130752cc1d21779a01f3462c9412e480".to_string(),
                "d2bf6a96f1008338bf539ee809cfb4fc1204933509d259ab1216869b3f7f2147".to_string(),
                vec![
                    "00d681520a6d5941db4848e33c47cbbd587f943c8bfaaa5784d27fe23e48d27b".to_string(),
                    "888dbc23d90f5e9dd3055b361eff7b49d7dd554dff87a7251b71a2a144cec085".to_string(),
                ]
            )
        );
    }
}
