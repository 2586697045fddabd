//! What the publisher refuses to sign, whatever it is asked: a document that
//! is already expired (or expires within [`MIN_LIFETIME_SECS`] of the wall
//! clock), and a root that trusts one of the well-known INSECURE test keys.
//! Both refusals have an explicit, logged override for tests and demos.

use anyhow::Result;
use consentry::docs::{Role, Root};
use consentry::envelope::key_id;
use consentry::time::format_timestamp;

/// The shortest lifetime, counted from the wall clock, of anything the
/// publisher signs (root, manifest, head): a document that a verifier with a
/// correct clock would refuse within the hour is a mistake, not a publication.
pub const MIN_LIFETIME_SECS: u64 = 3600;

/// The signing rules of one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guard {
    /// The wall clock (Unix seconds), read once by the binary; `None` checks
    /// lifetimes against the signing time itself.
    pub wall_clock: Option<i64>,
    /// `--allow-short-expiry`: sign even what expires in the past or soon.
    pub allow_short_expiry: bool,
    /// `--insecure-test-keys`: allow roots that trust the public test keys.
    pub allow_insecure_keys: bool,
}

impl Default for Guard {
    /// Both checks on; lifetimes counted from the signing time.
    fn default() -> Self {
        Guard {
            wall_clock: None,
            allow_short_expiry: false,
            allow_insecure_keys: false,
        }
    }
}

impl Guard {
    /// Tests and demos: the INSECURE keys and any expiry are accepted.
    pub const TESTING: Guard = Guard {
        wall_clock: None,
        allow_short_expiry: true,
        allow_insecure_keys: true,
    };

    /// Refuse to sign `what` (e.g. "head version 4") expiring at `expires`
    /// when that is less than [`MIN_LIFETIME_SECS`] after the wall clock (or
    /// after `signing_time` when no wall clock was given).
    pub fn check_expiry(&self, what: &str, expires: u64, signing_time: i64) -> Result<()> {
        self.check_expiry_or(
            what,
            expires,
            signing_time,
            "sign at the present time (drop --now), or give a longer lifetime; to sign it anyway (tests only), pass --allow-short-expiry",
        )
    }

    /// [`Guard::check_expiry`] with another hint.
    pub fn check_expiry_or(
        &self,
        what: &str,
        expires: u64,
        signing_time: i64,
        hint: &str,
    ) -> Result<()> {
        if self.allow_short_expiry {
            return Ok(());
        }
        let from = self.wall_clock.unwrap_or(signing_time).max(0) as u64;
        if expires < from.saturating_add(MIN_LIFETIME_SECS) {
            let when = if expires <= from {
                "expired"
            } else {
                "expires"
            };
            return Err(crate::advise!(
                "refusing to sign {}: it {} at {}, less than {} h after the clock ({}); verifiers would refuse it",
                "{}",
                what,
                when,
                format_timestamp(expires as i64),
                MIN_LIFETIME_SECS / 3600,
                format_timestamp(from as i64),
                hint,
            ));
        }
        Ok(())
    }

    /// Refuse a root that lists one of the INSECURE test keys, unless allowed.
    pub fn check_root_keys(&self, root: &Root) -> Result<()> {
        if self.allow_insecure_keys {
            return Ok(());
        }
        let known = insecure_key_ids();
        for role in [Role::Root, Role::Manifest, Role::Head] {
            if let Some(id) = root.role(role).keyids.iter().find(|id| known.contains(id)) {
                return Err(crate::advise!(
                    "root version {} would trust the INSECURE test {} key {} (its secret is public: anyone could sign for this registry)",
                    "generate real keys with `consentry-publish keygen` in a directory without INSECURE-* files; tests and demos pass --insecure-test-keys",
                    root.version,
                    role.name(),
                    hex::encode(id)
                ));
            }
        }
        Ok(())
    }
}

/// Key ids of every well-known INSECURE key: the committed `keys/INSECURE-*`
/// and the demo's (seeds from [`crate::keys::insecure_seed`], n = 1..=8 per
/// role) and the SPEC.md and test-vector keys (seeds of 32 equal bytes 1..=16).
pub fn insecure_key_ids() -> Vec<[u8; 32]> {
    let mut seeds: Vec<[u8; 32]> = [Role::Root, Role::Manifest, Role::Head]
        .into_iter()
        .flat_map(|r| (1..=8).map(move |n| crate::keys::insecure_seed(r, n)))
        .collect();
    seeds.extend((1u8..=16).map(|b| [b; 32]));
    let mut ids: Vec<[u8; 32]> = seeds
        .iter()
        .map(|s| {
            key_id(
                &ed25519_dalek::SigningKey::from_bytes(s)
                    .verifying_key()
                    .to_bytes(),
            )
        })
        .collect();
    ids.sort_unstable();
    ids
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_insecure_keys_are_known() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../keys");
        let known = insecure_key_ids();
        let publics = crate::keys::load_publics(&dir).unwrap();
        assert_eq!(publics.len(), 3);
        for p in publics {
            assert!(known.contains(&key_id(&p.public)), "{}", p.path.display());
        }
    }

    #[test]
    fn expiry_is_checked_against_the_wall_clock_with_a_margin() {
        let g = Guard {
            wall_clock: Some(1_000_000),
            ..Guard::default()
        };
        assert!(g.check_expiry("head", 999_999, 0).is_err());
        assert!(
            g.check_expiry("head", 1_000_000 + MIN_LIFETIME_SECS - 1, 0)
                .is_err()
        );
        assert!(
            g.check_expiry("head", 1_000_000 + MIN_LIFETIME_SECS, 0)
                .is_ok()
        );
        // Without a wall clock: against the signing time.
        let g = Guard::default();
        assert!(g.check_expiry("head", 100, 100).is_err());
        assert!(g.check_expiry("head", 100 + MIN_LIFETIME_SECS, 100).is_ok());
        assert!(Guard::TESTING.check_expiry("head", 0, 100).is_ok());
    }
}
