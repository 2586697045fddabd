//! Document verification, step by step as SPEC.md §7 numbers it. Pure: bytes in,
//! verified documents or a [`Rejection`](crate::error::Rejection) out; the caller fetches and stores.

use ed25519_dalek::VerifyingKey;

use crate::cbor;
use crate::docs::{Head, Manifest, Role, Root};
use crate::envelope::{Envelope, HEAD_TYPE, MANIFEST_TYPE, ROOT_TYPE, key_id, load_key, sha256};
use crate::error::{Code, VResult, reject};
use crate::limits::Limits;

/// How expiry is treated. `AllowExpired` is the explicit, loud override for
/// frozen clocks; answers made under it are marked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    Enforce,
    AllowExpired,
}

/// The keys of `role` in `root`, loaded.
pub fn role_keys(root: &Root, role: Role) -> Vec<([u8; 32], VerifyingKey)> {
    let ids = &root.role(role).keyids;
    root.keys
        .iter()
        .filter_map(|k| {
            let id = key_id(k);
            if !ids.contains(&id) {
                return None;
            }
            load_key(k).ok().map(|vk| (id, vk))
        })
        .collect()
}

fn check_len(file: &str, bytes: &[u8], max: u64) -> VResult<()> {
    if bytes.len() as u64 > max {
        return Err(reject(
            file,
            Code::LimitExceeded,
            format!("is {} bytes; at most {max} are accepted", bytes.len()),
        ));
    }
    Ok(())
}

/// Parse a root envelope and its payload (no signature check).
pub fn parse_root(file: &str, bytes: &[u8], limits: &Limits) -> VResult<(Envelope, Root)> {
    check_len(file, bytes, limits.max_root_bytes)?;
    let env = Envelope::parse(file, bytes, limits)?;
    if env.payload_type != ROOT_TYPE {
        return Err(reject(
            file,
            Code::WrongPayloadType,
            format!(
                "payload type is {:?}, expected {ROOT_TYPE:?}",
                env.payload_type
            ),
        ));
    }
    let root: Root = cbor::from_slice_canonical(&env.payload).map_err(|e| {
        reject(
            file,
            Code::MalformedDocument,
            format!("root payload is {e}"),
        )
    })?;
    root.check(limits)
        .map_err(|e| reject(file, Code::MalformedDocument, format!("root: {e}")))?;
    Ok((env, root))
}

/// Step 1 (pinning): a root given out of band must be signed by a threshold of
/// its own root keys.
pub fn verify_pinned_root(file: &str, bytes: &[u8], limits: &Limits) -> VResult<Root> {
    let (env, root) = parse_root(file, bytes, limits)?;
    env.verify(
        file,
        ROOT_TYPE,
        &role_keys(&root, Role::Root),
        root.roles.root.threshold,
        "root",
    )?;
    Ok(root)
}

/// Step 2 (root rotation): root N+1 must be version N+1 and signed by a
/// threshold of root N's root keys *and* of its own.
pub fn verify_next_root(
    trusted: &Root,
    file: &str,
    bytes: &[u8],
    limits: &Limits,
) -> VResult<Root> {
    let (env, new) = parse_root(file, bytes, limits)?;
    env.verify(
        file,
        ROOT_TYPE,
        &role_keys(trusted, Role::Root),
        trusted.roles.root.threshold,
        "previous root's root",
    )?;
    env.verify(
        file,
        ROOT_TYPE,
        &role_keys(&new, Role::Root),
        new.roles.root.threshold,
        "new root's root",
    )?;
    if trusted.version.checked_add(1) != Some(new.version) {
        return Err(reject(
            file,
            Code::RootVersion,
            format!(
                "root version {} does not follow trusted version {}",
                new.version, trusted.version
            ),
        ));
    }
    Ok(new)
}

/// Where [`walk_roots`] stopped.
#[derive(Debug, Clone)]
pub struct RootWalk {
    /// The last root verified: the start root when nothing followed it.
    pub root: Root,
    /// How many roots were verified after the start root.
    pub steps: u64,
}

/// Step 2 (the walk): from the trusted root N, ask `next(N + 1)` for the
/// location and bytes of `root/{N+1}.cbor`; while it yields one, verify it
/// against the root before it ([`verify_next_root`]), hand it to
/// `verified` with its bytes and continue from it. Ends when `next` yields
/// `None` (the source has no such root), after `max_steps` rotations, or at a
/// root of version `u64::MAX` (which has no successor).
///
/// The one walk for every chain of roots: sync's (from the source, bounded by
/// [`Limits::max_root_rotations`] per run), the store's (its stored roots, all
/// verified by earlier runs) and a receipt's (the roots it carries).
pub fn walk_roots<B: AsRef<[u8]>>(
    start: Root,
    max_steps: u64,
    limits: &Limits,
    mut next: impl FnMut(u64) -> VResult<Option<(String, B)>>,
    mut verified: impl FnMut(&Root, B),
) -> VResult<RootWalk> {
    let mut root = start;
    let mut steps = 0;
    while steps < max_steps {
        let Some(version) = root.version.checked_add(1) else {
            break;
        };
        let Some((file, bytes)) = next(version)? else {
            break;
        };
        root = verify_next_root(&root, &file, bytes.as_ref(), limits)?;
        verified(&root, bytes);
        steps += 1;
    }
    Ok(RootWalk { root, steps })
}

/// Whether a document expiring at `expires` is expired at `now`: at or after
/// its expiry instant.
pub fn is_expired(expires: u64, now: i64) -> bool {
    // A time before 1970 is no time at all: fail closed.
    now < 0 || expires <= now as u64
}

/// How far this machine's clock may run behind the publisher's before a
/// signed creation time counts as "in the future" (SPEC.md §7 step 0).
/// Clocks of machines on NTP differ by milliseconds, unsynchronised ones by
/// seconds to a few minutes; five minutes is Kerberos' default tolerance.
pub const CLOCK_SKEW_SECS: i64 = 300;

/// Step 0 (the clock floor): `now` must not be earlier than a signed creation
/// time the run has verified, less [`CLOCK_SKEW_SECS`]. The floor comes only
/// from signed documents (a manifest's `created`), never from a clock or an
/// earlier `--now`, so a mistaken time never locks a store out.
pub fn check_clock_floor(file: &str, now: i64, created: u64) -> VResult<()> {
    let floor = i64::try_from(created)
        .unwrap_or(i64::MAX)
        .saturating_sub(CLOCK_SKEW_SECS);
    if now < floor {
        return Err(reject(
            file,
            Code::ClockBackwards,
            format!(
                "was signed as created at {}, but the time in use is {}: this machine's clock is more than {} s behind the registry's",
                crate::time::format_timestamp(created as i64),
                crate::time::format_timestamp(now),
                CLOCK_SKEW_SECS
            ),
        ));
    }
    Ok(())
}

/// Step 2 end: the final root must not be expired.
pub fn check_root_expiry(root: &Root, file: &str, now: i64, expiry: Expiry) -> VResult<()> {
    if expiry == Expiry::Enforce && is_expired(root.expires, now) {
        return Err(reject(
            file,
            Code::Expired,
            format!(
                "root version {} expired at {}",
                root.version,
                crate::time::format_timestamp(root.expires as i64)
            ),
        ));
    }
    Ok(())
}

/// Step 3 (head): size cap, head keys threshold, expiry.
pub fn verify_head(
    root: &Root,
    file: &str,
    bytes: &[u8],
    now: i64,
    expiry: Expiry,
    limits: &Limits,
) -> VResult<Head> {
    check_len(file, bytes, limits.max_head_bytes)?;
    let env = Envelope::parse(file, bytes, limits)?;
    env.verify(
        file,
        HEAD_TYPE,
        &role_keys(root, Role::Head),
        root.roles.head.threshold,
        "head",
    )?;
    let head: Head = cbor::from_slice_canonical(&env.payload).map_err(|e| {
        reject(
            file,
            Code::MalformedDocument,
            format!("head payload is {e}"),
        )
    })?;
    if head.version == 0 || head.manifest.version == 0 {
        return Err(reject(file, Code::MalformedDocument, "versions start at 1"));
    }
    if expiry == Expiry::Enforce && is_expired(head.expires, now) {
        return Err(reject(
            file,
            Code::Expired,
            format!(
                "head version {} expired at {}; the mirror may be frozen (use --allow-expired only if you accept stale answers)",
                head.version,
                crate::time::format_timestamp(head.expires as i64)
            ),
        ));
    }
    Ok(head)
}

/// Step 3 (rollback): compare a new head with the trusted one.
pub fn check_head_rollback(file: &str, new: &Head, trusted: Option<&Head>) -> VResult<()> {
    let Some(t) = trusted else { return Ok(()) };
    if new.version < t.version {
        return Err(reject(
            file,
            Code::Rollback,
            format!(
                "head version {} is older than the trusted version {}",
                new.version, t.version
            ),
        ));
    }
    if new.manifest.version < t.manifest.version {
        return Err(reject(
            file,
            Code::Rollback,
            format!(
                "head names manifest version {}, older than the trusted version {}",
                new.manifest.version, t.manifest.version
            ),
        ));
    }
    if new.manifest.version == t.manifest.version && new.manifest.sha256 != t.manifest.sha256 {
        return Err(reject(
            file,
            Code::SplitView,
            format!(
                "head names a different manifest for the trusted version {}",
                t.manifest.version
            ),
        ));
    }
    if new.version == t.version && new != t {
        return Err(reject(
            file,
            Code::SplitView,
            format!("two different heads carry version {}", t.version),
        ));
    }
    Ok(())
}

/// Step 4 (manifest): exact length and hash from the head, manifest keys
/// threshold, version as named, expiry, structure.
pub fn verify_manifest(
    root: &Root,
    head: &Head,
    file: &str,
    bytes: &[u8],
    now: i64,
    expiry: Expiry,
    limits: &Limits,
) -> VResult<Manifest> {
    check_len(file, bytes, limits.max_manifest_bytes)?;
    if bytes.len() as u64 != head.manifest.length {
        return Err(reject(
            file,
            Code::LengthMismatch,
            format!(
                "is {} bytes; the head says {}",
                bytes.len(),
                head.manifest.length
            ),
        ));
    }
    if sha256(bytes) != head.manifest.sha256 {
        return Err(reject(
            file,
            Code::HashMismatch,
            "SHA-256 differs from the one the head names",
        ));
    }
    let m = signed_manifest(root, file, bytes, limits)?;
    if m.version != head.manifest.version {
        return Err(reject(
            file,
            Code::VersionMismatch,
            format!(
                "manifest version {} differs from the head's {}",
                m.version, head.manifest.version
            ),
        ));
    }
    m.check(limits)
        .map_err(|e| reject(file, Code::MalformedDocument, format!("manifest: {e}")))?;
    if expiry == Expiry::Enforce && is_expired(m.expires, now) {
        return Err(reject(
            file,
            Code::Expired,
            format!(
                "manifest version {} expired at {}",
                m.version,
                crate::time::format_timestamp(m.expires as i64)
            ),
        ));
    }
    Ok(m)
}

/// The manifest inside `bytes`: its envelope, signed by the manifest role of
/// `root` (threshold), its payload canonical CBOR. Structure is the caller's
/// next step (after any check SPEC.md §7 orders before it).
fn signed_manifest(root: &Root, file: &str, bytes: &[u8], limits: &Limits) -> VResult<Manifest> {
    let env = Envelope::parse(file, bytes, limits)?;
    env.verify(
        file,
        MANIFEST_TYPE,
        &role_keys(root, Role::Manifest),
        root.roles.manifest.threshold,
        "manifest",
    )?;
    cbor::from_slice_canonical(&env.payload).map_err(|e| {
        reject(
            file,
            Code::MalformedDocument,
            format!("manifest payload is {e}"),
        )
    })
}

/// A manifest reached through a `previous` hash (history, receipts): exact
/// SHA-256, manifest keys of `root`, structure. Expiry is not checked.
pub fn verify_manifest_unreferenced(
    root: &Root,
    file: &str,
    bytes: &[u8],
    sha: &[u8; 32],
    limits: &Limits,
) -> VResult<Manifest> {
    check_len(file, bytes, limits.max_manifest_bytes)?;
    if &sha256(bytes) != sha {
        return Err(reject(
            file,
            Code::HashMismatch,
            "SHA-256 differs from the `previous` hash that names it",
        ));
    }
    let m = signed_manifest(root, file, bytes, limits)?;
    m.check(limits)
        .map_err(|e| reject(file, Code::MalformedDocument, format!("manifest: {e}")))?;
    Ok(m)
}

/// Step 5 (fork): a manifest with the trusted version must be the trusted
/// manifest, byte for byte — two different manifests with one version are a
/// split view.
pub fn check_manifest_fork(
    file: &str,
    version: u64,
    sha256: &[u8; 32],
    trusted: Option<(u64, [u8; 32])>,
) -> VResult<()> {
    if let Some((tv, th)) = trusted
        && tv == version
        && th != *sha256
    {
        return Err(reject(
            file,
            Code::SplitView,
            format!("a different manifest carries the trusted version {tv}"),
        ));
    }
    Ok(())
}

/// Step 5 (chain): a manifest one version after the trusted one must name the
/// trusted manifest's hash as `previous`; any newer manifest must not be older.
pub fn check_manifest_chain(
    file: &str,
    m: &Manifest,
    trusted: Option<(u64, [u8; 32])>,
) -> VResult<()> {
    let Some((tv, th)) = trusted else {
        return Ok(());
    };
    if m.version < tv {
        return Err(reject(
            file,
            Code::Rollback,
            format!(
                "manifest version {} is older than the trusted version {tv}",
                m.version
            ),
        ));
    }
    if tv.checked_add(1) == Some(m.version) && m.previous != Some(th) {
        return Err(reject(
            file,
            Code::ChainBroken,
            format!(
                "manifest {} does not name the trusted manifest {tv} as its previous",
                m.version
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
#[cfg(feature = "store")]
mod tests {
    use super::*;
    use crate::error::Code;
    use crate::testsite::{DAY, NOW, key, make_root, sign};

    /// Roots 1..=n, each signed by its own root key and its predecessor's
    /// (root key `k` for version `k`).
    fn chain(n: u8) -> Vec<Vec<u8>> {
        (1..=n)
            .map(|v| {
                let root = make_root(u64::from(v), NOW + DAY, &key(v), &key(100), &key(101));
                let prev = key(v.saturating_sub(1).max(1));
                sign(ROOT_TYPE, cbor::to_vec(&root), &[&prev, &key(v)])
            })
            .collect()
    }

    fn walk(roots: &[Vec<u8>], max: u64) -> VResult<(RootWalk, Vec<u64>)> {
        let limits = Limits::DEFAULT;
        let start = verify_pinned_root("root/1", &roots[0], &limits)?;
        let mut seen = Vec::new();
        let w = walk_roots(
            start,
            max,
            &limits,
            |v| Ok(roots.get(v as usize - 1).map(|b| (format!("root/{v}"), b))),
            |r, b| {
                assert_eq!(b, &roots[r.version as usize - 1]);
                seen.push(r.version);
            },
        )?;
        Ok((w, seen))
    }

    #[test]
    fn the_walk_ends_where_the_roots_end_or_at_its_bound() {
        let roots = chain(5);
        let (w, seen) = walk(&roots, 1024).unwrap();
        assert_eq!((w.root.version, w.steps), (5, 4));
        assert_eq!(seen, [2, 3, 4, 5]);
        let (w, seen) = walk(&roots, 2).unwrap();
        assert_eq!((w.root.version, w.steps), (3, 2));
        assert_eq!(seen, [2, 3]);
        let (w, _) = walk(&roots, 0).unwrap();
        assert_eq!(w.root.version, 1);
    }

    #[test]
    fn a_root_not_signed_by_its_predecessor_stops_the_walk_with_its_code() {
        let mut roots = chain(3);
        let root = make_root(3, NOW + DAY, &key(3), &key(100), &key(101));
        roots[2] = sign(ROOT_TYPE, cbor::to_vec(&root), &[&key(3)]);
        assert_eq!(walk(&roots, 1024).unwrap_err().code, Code::ThresholdNotMet);
    }

    #[test]
    fn a_root_at_the_last_version_has_no_successor() {
        let root = make_root(u64::MAX, NOW + DAY, &key(1), &key(2), &key(3));
        let w = walk_roots(
            root,
            1024,
            &Limits::DEFAULT,
            |_| -> VResult<Option<(String, Vec<u8>)>> {
                unreachable!("no version follows u64::MAX")
            },
            |_, _| {},
        )
        .unwrap();
        assert_eq!((w.root.version, w.steps), (u64::MAX, 0));
    }
}
