//! Creating and rotating the trust root. Every root version stays in the site
//! (`root/{N}.cbor`) so verifiers pinned to any older root can walk the chain.

use std::path::Path;

use anyhow::{Result, anyhow, bail};
use consentry::cbor;
use consentry::docs::{Role, RoleKeys, Roles, Root, paths};
use consentry::envelope::{Envelope, ROOT_TYPE, key_id};
use consentry::verify;

use crate::guard::Guard;
use crate::keys::{KeyPair, PublicKey, load_publics, sign_envelope, signers_for};
use crate::lock::SiteLock;
use crate::site::Site;

/// Thresholds per role.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    pub root: u64,
    pub manifest: u64,
    pub head: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            root: 1,
            manifest: 1,
            head: 1,
        }
    }
}

/// Build a root document from the public keys in `keys_dir` (each `.pub`
/// names its role).
pub fn root_from_publics(
    publics: &[PublicKey],
    th: Thresholds,
    version: u64,
    expires: u64,
) -> Result<Root> {
    let mut keys: Vec<[u8; 32]> = publics.iter().map(|p| p.public).collect();
    keys.sort_by_key(key_id);
    keys.dedup();
    let role = |r: Role, threshold: u64| -> Result<RoleKeys> {
        let mut keyids: Vec<[u8; 32]> = publics
            .iter()
            .filter(|p| p.role == r)
            .map(|p| key_id(&p.public))
            .collect();
        keyids.sort_unstable();
        keyids.dedup();
        if keyids.is_empty() {
            return Err(crate::advise!(
                "no {} public key found",
                "consentry-publish keygen --role {} --out KEYS/{}-1",
                r.name(),
                r.name(),
                r.name()
            ));
        }
        if threshold == 0 || threshold > keyids.len() as u64 {
            bail!(
                "threshold {threshold} for role {} must be between 1 and its {} key(s)",
                r.name(),
                keyids.len()
            );
        }
        Ok(RoleKeys { keyids, threshold })
    };
    Ok(Root {
        keys,
        roles: Roles {
            head: role(Role::Head, th.head)?,
            root: role(Role::Root, th.root)?,
            manifest: role(Role::Manifest, th.manifest)?,
        },
        expires,
        version,
        witnesses: None,
    })
}

fn sign_root(root: &Root, signers: &[&KeyPair]) -> Result<Vec<u8>> {
    Ok(sign_envelope(ROOT_TYPE, cbor::to_vec(root), signers)?.to_bytes())
}

/// What root init and rotate sign, and under which rules.
#[derive(Debug, Clone)]
pub struct RootOptions {
    /// The witness policy of the new root (SPEC.md §15); `None` keeps the
    /// current root's when rotating (none for a first root).
    pub witnesses: Option<consentry::docs::Witnesses>,
    pub thresholds: Thresholds,
    /// Unix seconds.
    pub expires: u64,
    /// The time the lifetime counts from (for the guard's margin).
    pub now: i64,
    pub guard: Guard,
}

/// The root `init` (version 1) or `rotate` (current + 1) would write from
/// the public keys in `keys_dir`, checked (structure, signing guard,
/// expiry margin), with the current root when rotating. The one builder of
/// a new root: `init`, `rotate` and `propose` differ only in who signs.
fn next_root(
    site: &Site,
    keys_dir: &Path,
    o: &RootOptions,
    rotate: bool,
    force: bool,
) -> Result<(Option<Root>, Root)> {
    let old = if rotate {
        Some(site.root()?)
    } else {
        let rel = paths::root(1);
        if site.path(&rel).exists() && !force {
            return Err(crate::advise!(
                "{} already exists; a trust root is created once",
                "use `consentry-publish root rotate` to change keys",
                site.path(&rel).display()
            ));
        }
        None
    };
    let version = old.as_ref().map_or(1, |r| r.version + 1);
    let mut new = root_from_publics(&load_publics(keys_dir)?, o.thresholds, version, o.expires)?;
    new.witnesses = o
        .witnesses
        .clone()
        .or_else(|| old.as_ref().and_then(|r| r.witnesses.clone()));
    if let Some(old) = &old
        && !force
        && same_trust(old, &new)
    {
        return Err(crate::advise!(
            "nothing to rotate: the keys in {} are the ones root version {} already lists, with the same thresholds",
            "put the new keys' .pub files in --keys (and remove the retired ones); to re-issue the same keys with a later expiry, pass --force",
            keys_dir.display(),
            old.version
        ));
    }
    new.check(&site.limits).map_err(|e| anyhow!("root: {e}"))?;
    o.guard.check_root_keys(&new)?;
    o.guard
        .check_expiry(&format!("root version {}", new.version), new.expires, o.now)?;
    Ok((old, new))
}

/// Create `root/1.cbor`, signed by the root keys available in `secrets`.
pub fn init(
    site: &Site,
    lock: &SiteLock,
    keys_dir: &Path,
    secrets: &[KeyPair],
    o: &RootOptions,
    force: bool,
) -> Result<(Root, Vec<u8>)> {
    site.check_lock(lock)?;
    let (_, root) = next_root(site, keys_dir, o, false, force)?;
    let rel = paths::root(1);
    let bytes = sign_root(&root, &signers_for(secrets, &root.roles.root.keyids))?;
    verify::verify_pinned_root(&rel, &bytes, &site.limits).map_err(|e| anyhow!("self-check of the new root failed (are the root role's secret keys in the keys directory?): {e}"))?;
    site.write_atomic(&rel, &bytes)?;
    Ok((root, bytes))
}

/// Write root N+1 from the public keys now in `keys_dir`, signed by a threshold
/// of the current root's keys and of the new root's keys. A root listing the
/// same keys and thresholds as the current one is refused unless `force`
/// (re-issuing the same keys with a later expiry): a re-run of a rotation
/// must not silently add root versions.
pub fn rotate(
    site: &Site,
    lock: &SiteLock,
    keys_dir: &Path,
    secrets: &[KeyPair],
    o: &RootOptions,
    force: bool,
) -> Result<(Root, Vec<u8>)> {
    site.check_lock(lock)?;
    let (Some(old), new) = next_root(site, keys_dir, o, true, force)? else {
        bail!("rotating needs the current root");
    };
    let mut ids = old.roles.root.keyids.clone();
    ids.extend(new.roles.root.keyids.iter().copied());
    let bytes = sign_root(&new, &signers_for(secrets, &ids))?;
    let rel = paths::root(new.version);
    check_next(&old, &rel, &bytes, &site.limits)?;
    site.write_atomic(&rel, &bytes)?;
    Ok((new, bytes))
}

/// The self-check of a root N+1 against root N.
fn check_next(old: &Root, rel: &str, bytes: &[u8], limits: &consentry::Limits) -> Result<Root> {
    verify::verify_next_root(old, rel, bytes, limits).map_err(|e| {
        crate::advise!(
            "root {} does not verify against root {}: {}",
            "a threshold of the old root's root keys and of the new root's root keys must both sign (`root sign`, or --sign-with DIR)",
            old.version + 1,
            old.version,
            e
        )
    })
}

// ---- offline ceremonies: propose, sign, assemble --------------------------

/// `root init|rotate --unsigned`: the root `init`/`rotate` would write, in an
/// envelope with no signatures, for key holders to sign one by one on their
/// own (air-gapped) machines (`sign_proposal`) before `assemble` checks the
/// thresholds and publishes it. No secret key is needed, and the site is
/// only read.
pub fn propose(
    site: &Site,
    keys_dir: &Path,
    o: &RootOptions,
    rotate: bool,
    force: bool,
) -> Result<(Root, Vec<u8>)> {
    let (_, root) = next_root(site, keys_dir, o, rotate, force)?;
    let env = Envelope {
        payload: cbor::to_vec(&root),
        signatures: Vec::new(),
        payload_type: ROOT_TYPE.to_string(),
    };
    Ok((root, env.to_bytes()))
}

/// A root proposal read back: the envelope as received and its root.
#[derive(Debug, Clone)]
pub struct Proposal {
    pub envelope: Envelope,
    pub root: Root,
}

impl Proposal {
    /// Parse a proposal (or a signed root file) strictly, as a verifier
    /// parses a root: canonical envelope, root payload type, canonical root
    /// that passes SPEC.md §4.1's structural rules.
    pub fn read(file: &Path, limits: &consentry::Limits) -> Result<Proposal> {
        let bytes =
            std::fs::read(file).map_err(|e| anyhow!("cannot read {}: {e}", file.display()))?;
        let (envelope, root) = verify::parse_root(&file.display().to_string(), &bytes, limits)
            .map_err(|e| anyhow!("{e}"))?;
        Ok(Proposal { envelope, root })
    }

    /// Key ids whose signatures over this proposal verify (any key the
    /// proposal or `previous` lists; a signature by another key is not
    /// counted here, as a verifier would not count it).
    pub fn valid_signers(&self, previous: Option<&Root>) -> Vec<[u8; 32]> {
        let mut keys = verify::role_keys(&self.root, Role::Root);
        if let Some(p) = previous {
            keys.extend(verify::role_keys(p, Role::Root));
        }
        let msg = consentry::envelope::pae(&self.envelope.payload_type, &self.envelope.payload);
        let mut ids: Vec<[u8; 32]> = self
            .envelope
            .signatures
            .iter()
            .filter(|s| {
                let Some((_, k)) = keys.iter().find(|(id, _)| *id == s.keyid) else {
                    return false;
                };
                <[u8; 64]>::try_from(s.sig.as_slice()).is_ok_and(|b| {
                    k.verify_strict(&msg, &ed25519_dalek::Signature::from_bytes(&b))
                        .is_ok()
                })
            })
            .map(|s| s.keyid)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

/// `root sign`: add a signature by each key of `secrets` that may sign this
/// root — a root key of the proposal, or of `previous` (the current root,
/// for a rotation) — over the payload bytes exactly as received. Keys that
/// already signed are skipped; signatures are kept sorted by key id.
/// Returns the new file's bytes and the key ids that signed now.
pub fn sign_proposal(
    p: &Proposal,
    secrets: &[KeyPair],
    previous: Option<&Root>,
) -> Result<(Vec<u8>, Vec<[u8; 32]>)> {
    if let Some(prev) = previous
        && prev.version + 1 != p.root.version
    {
        bail!(
            "the proposal is root version {}, but --previous is root version {}: pass the root it replaces (version {})",
            p.root.version,
            prev.version,
            p.root.version.saturating_sub(1)
        );
    }
    let mut allowed = p.root.roles.root.keyids.clone();
    if let Some(prev) = previous {
        allowed.extend(prev.roles.root.keyids.iter().copied());
    }
    let already = p.valid_signers(previous);
    let signers: Vec<&KeyPair> = signers_for(secrets, &allowed)
        .into_iter()
        .filter(|k| !already.contains(&k.id()))
        .collect();
    if signers.is_empty() {
        let have: Vec<String> = secrets.iter().map(|k| hex::encode(k.id())).collect();
        if secrets.iter().any(|k| already.contains(&k.id())) {
            bail!("every key given has already signed this proposal: nothing to add");
        }
        return Err(crate::advise!(
            "none of the keys given ({}) may sign root version {}: it needs root keys {}",
            "sign with a root key the proposal lists{}",
            if have.is_empty() {
                "none".to_string()
            } else {
                have.join(", ")
            },
            p.root.version,
            allowed
                .iter()
                .map(hex::encode)
                .collect::<Vec<_>>()
                .join(", "),
            if previous.is_none() && p.root.version > 1 {
                " (a key of the root it replaces counts too: pass that root with --previous FILE)"
            } else {
                ""
            }
        ));
    }
    let msg = consentry::envelope::pae(&p.envelope.payload_type, &p.envelope.payload);
    let mut env = p.envelope.clone();
    for k in &signers {
        env.signatures.push(consentry::envelope::Sig {
            sig: k.sign(&msg)?.to_vec(),
            keyid: k.id(),
        });
    }
    env.signatures.sort_by_key(|s| s.keyid);
    Ok((env.to_bytes(), signers.iter().map(|k| k.id()).collect()))
}

/// `root assemble`: check a signed proposal as a verifier will (version 1:
/// its own root threshold; version N+1: the current root's and its own)
/// and the signing guard, then write it as `root/{N}.cbor` under the site
/// lock. The bytes written are the bytes received.
pub fn assemble(
    site: &Site,
    lock: &SiteLock,
    file: &Path,
    guard: Guard,
    now: i64,
) -> Result<(Root, Vec<u8>)> {
    site.check_lock(lock)?;
    let bytes = std::fs::read(file).map_err(|e| anyhow!("cannot read {}: {e}", file.display()))?;
    let p = Proposal::read(file, &site.limits)?;
    let v = p.root.version;
    let rel = paths::root(v);
    let root = if v == 1 {
        if site.path(&rel).exists() {
            return Err(crate::advise!(
                "{} already exists; a trust root is created once",
                "assemble a rotation (root version N+1) instead",
                site.path(&rel).display()
            ));
        }
        verify::verify_pinned_root(&rel, &bytes, &site.limits).map_err(|e| {
            crate::advise!(
                "root version 1 does not reach its root threshold: {}",
                "collect more signatures with `consentry-publish root sign --key KEY {}`",
                e,
                file.display()
            )
        })?
    } else {
        let old = site.root()?;
        if old.version + 1 != v {
            bail!(
                "the proposal is root version {v}, but the site's current root is version {}: propose version {} (`root rotate --unsigned`)",
                old.version,
                old.version + 1
            );
        }
        check_next(&old, &rel, &bytes, &site.limits)?
    };
    guard.check_root_keys(&root)?;
    guard.check_expiry(&format!("root version {v}"), root.expires, now)?;
    site.write_atomic(&rel, &bytes)?;
    Ok((root, bytes))
}

/// Whether two roots trust the same keys for every role, with the same
/// thresholds (their versions and expiries aside).
fn same_trust(a: &Root, b: &Root) -> bool {
    let mut ka = a.keys.clone();
    let mut kb = b.keys.clone();
    ka.sort_unstable();
    kb.sort_unstable();
    ka == kb
        && [Role::Root, Role::Manifest, Role::Head]
            .into_iter()
            .all(|r| {
                let (x, y) = (a.role(r), b.role(r));
                let (mut ix, mut iy) = (x.keyids.clone(), y.keyids.clone());
                ix.sort_unstable();
                iy.sort_unstable();
                ix == iy && x.threshold == y.threshold
            })
}
