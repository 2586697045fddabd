//! Creating and rotating the trust root. Every root version stays in the site
//! (`root/{N}.cbor`) so verifiers pinned to any older root can walk the chain.

use std::path::Path;

use anyhow::{Result, anyhow, bail};
use consentry::cbor;
use consentry::docs::{Role, RoleKeys, Roles, Root, paths};
use consentry::envelope::{ROOT_TYPE, key_id};
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
    })
}

fn sign_root(root: &Root, signers: &[&KeyPair]) -> Vec<u8> {
    sign_envelope(ROOT_TYPE, cbor::to_vec(root), signers).to_bytes()
}

/// What root init and rotate sign, and under which rules.
#[derive(Debug, Clone, Copy)]
pub struct RootOptions {
    pub thresholds: Thresholds,
    /// Unix seconds.
    pub expires: u64,
    /// The time the lifetime counts from (for the guard's margin).
    pub now: i64,
    pub guard: Guard,
}

/// Create `root/1.cbor`, signed by the root keys available in `secrets`.
pub fn init(
    site: &Site,
    lock: &SiteLock,
    keys_dir: &Path,
    secrets: &[KeyPair],
    o: RootOptions,
    force: bool,
) -> Result<(Root, Vec<u8>)> {
    site.check_lock(lock)?;
    let (th, expires) = (o.thresholds, o.expires);
    let rel = paths::root(1);
    if site.path(&rel).exists() && !force {
        return Err(crate::advise!(
            "{} already exists; a trust root is created once",
            "use `consentry-publish root rotate` to change keys",
            site.path(&rel).display()
        ));
    }
    let root = root_from_publics(&load_publics(keys_dir)?, th, 1, expires)?;
    root.check(&site.limits).map_err(|e| anyhow!("root: {e}"))?;
    o.guard.check_root_keys(&root)?;
    o.guard
        .check_expiry("root version 1", root.expires, o.now)?;
    let bytes = sign_root(&root, &signers_for(secrets, &root.roles.root.keyids));
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
    o: RootOptions,
    force: bool,
) -> Result<(Root, Vec<u8>)> {
    site.check_lock(lock)?;
    let old = site.root()?;
    let new = root_from_publics(
        &load_publics(keys_dir)?,
        o.thresholds,
        old.version + 1,
        o.expires,
    )?;
    if !force && same_trust(&old, &new) {
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
    let mut ids = old.roles.root.keyids.clone();
    ids.extend(new.roles.root.keyids.iter().copied());
    let bytes = sign_root(&new, &signers_for(secrets, &ids));
    let rel = paths::root(new.version);
    verify::verify_next_root(&old, &rel, &bytes, &site.limits).map_err(|e| {
        crate::advise!(
            "self-check of root {} failed: {}",
            "the old root's keys (--sign-with DIR) and the new root keys must both reach their thresholds",
            new.version,
            e
        )
    })?;
    site.write_atomic(&rel, &bytes)?;
    Ok((new, bytes))
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
