//! The signed documents: root, head and manifest (SPEC.md §4). Each struct's
//! fields are declared in canonical CBOR key order.

use serde::{Deserialize, Serialize};

use crate::isrc::KEY_SPACE;
use crate::limits::Limits;

/// Keys and threshold of one role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleKeys {
    #[serde(with = "crate::cbor::vec_bytes32")]
    pub keyids: Vec<[u8; 32]>,
    pub threshold: u64,
}

/// The three roles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Roles {
    pub head: RoleKeys,
    pub root: RoleKeys,
    pub manifest: RoleKeys,
}

/// Role names, as used in messages and key files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Root,
    Manifest,
    Head,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Root => "root",
            Role::Manifest => "manifest",
            Role::Head => "head",
        }
    }

    pub fn parse(s: &str) -> Result<Role, String> {
        match s {
            "root" => Ok(Role::Root),
            "manifest" => Ok(Role::Manifest),
            "head" => Ok(Role::Head),
            _ => Err(format!(
                "unknown role {s:?}: expected root, manifest or head"
            )),
        }
    }
}

/// The root document: who may sign what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Root {
    /// Ed25519 public keys, sorted by key id, unique.
    #[serde(with = "crate::cbor::vec_bytes32")]
    pub keys: Vec<[u8; 32]>,
    pub roles: Roles,
    /// Unix seconds; the root is expired at and after this instant.
    pub expires: u64,
    pub version: u64,
    /// The witnesses whose cosignatures a verifier requires on the log's
    /// checkpoint (SPEC.md §15); absent: no witnessing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub witnesses: Option<Witnesses>,
}

/// One witness: its name (as in its cosignature lines) and ed25519 key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessKey {
    #[serde(with = "crate::cbor::bytes32")]
    pub key: [u8; 32],
    pub name: String,
}

/// The root's witness policy: the log's origin line, the witnesses and how
/// many of them must cosign a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Witnesses {
    pub keys: Vec<WitnessKey>,
    pub origin: String,
    pub threshold: u64,
}

/// Most witnesses one root lists.
pub const MAX_WITNESSES: usize = 32;

impl Witnesses {
    /// SPEC.md §4.1 rule 6: a valid origin; 1 to 32 witnesses, sorted by
    /// name and unique, each name valid and each key a strong ed25519 key;
    /// 1 ≤ threshold ≤ count.
    pub fn check(&self) -> Result<(), String> {
        let name_ok = |s: &str| {
            !s.is_empty() && s.len() <= 255 && s.bytes().all(|b| b.is_ascii_graphic() && b != b'+')
        };
        if !name_ok(&self.origin) {
            return Err("witnesses.origin must be 1 to 255 printable ASCII characters without spaces or '+'".into());
        }
        if self.keys.is_empty() || self.keys.len() > MAX_WITNESSES {
            return Err(format!("witnesses must list 1 to {MAX_WITNESSES} keys"));
        }
        for w in self.keys.windows(2) {
            if w[0].name >= w[1].name {
                return Err("witnesses.keys must be sorted by name, names unique".into());
            }
        }
        for k in &self.keys {
            if !name_ok(&k.name) {
                return Err(format!(
                    "witness name {:?} must be 1 to 255 printable ASCII characters without spaces or '+'",
                    k.name
                ));
            }
            crate::envelope::load_key(&k.key).map_err(|e| format!("witness {}: {e}", k.name))?;
        }
        if self.threshold == 0 || self.threshold > self.keys.len() as u64 {
            return Err(format!(
                "witnesses.threshold {} must be between 1 and its {} key(s)",
                self.threshold,
                self.keys.len()
            ));
        }
        Ok(())
    }
}

impl Root {
    pub fn role(&self, r: Role) -> &RoleKeys {
        match r {
            Role::Root => &self.roles.root,
            Role::Manifest => &self.roles.manifest,
            Role::Head => &self.roles.head,
        }
    }

    /// Structural rules of SPEC.md §4.1: keys sorted by id and not weak, every
    /// role's key ids sorted, unique and present, 1 ≤ threshold ≤ key count.
    pub fn check(&self, limits: &Limits) -> Result<(), String> {
        if self.version == 0 {
            return Err("version must be 1 or more".into());
        }
        if self.keys.is_empty() || self.keys.len() > limits.max_root_keys {
            return Err(format!("must list 1 to {} keys", limits.max_root_keys));
        }
        let ids: Vec<[u8; 32]> = self.keys.iter().map(crate::envelope::key_id).collect();
        for w in ids.windows(2) {
            if w[0] >= w[1] {
                return Err("keys must be sorted by key id and unique".into());
            }
        }
        for k in &self.keys {
            crate::envelope::load_key(k)?;
        }
        for r in [Role::Root, Role::Manifest, Role::Head] {
            let rk = self.role(r);
            for w in rk.keyids.windows(2) {
                if w[0] >= w[1] {
                    return Err(format!(
                        "roles.{}.keyids must be sorted and unique",
                        r.name()
                    ));
                }
            }
            if rk.keyids.iter().any(|id| !ids.contains(id)) {
                return Err(format!(
                    "roles.{} names a key id that is not in keys",
                    r.name()
                ));
            }
            if rk.threshold == 0 || rk.threshold > rk.keyids.len() as u64 {
                return Err(format!(
                    "roles.{}.threshold {} must be between 1 and its {} key(s)",
                    r.name(),
                    rk.threshold,
                    rk.keyids.len()
                ));
            }
        }
        if let Some(w) = &self.witnesses {
            w.check()?;
        }
        Ok(())
    }
}

/// Reference from the head to the current manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestRef {
    pub length: u64,
    #[serde(with = "crate::cbor::bytes32")]
    pub sha256: [u8; 32],
    pub version: u64,
}

/// The head: the one mutable file, re-signed often with a short expiry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Head {
    pub expires: u64,
    pub version: u64,
    pub manifest: ManifestRef,
}

/// A content-addressed data file (shard or prefix table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRef {
    /// Entries in the file.
    pub count: u64,
    /// Compressed length in bytes.
    pub length: u64,
    /// SHA-256 of the compressed bytes; also the file name.
    #[serde(with = "crate::cbor::bytes32")]
    pub sha256: [u8; 32],
    /// Decompressed length in bytes.
    pub raw_length: u64,
}

/// A delta layer: the changes from `version - 1` to `version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerRef {
    /// Changes (upserts + deletions) in the layer.
    pub count: u64,
    pub length: u64,
    #[serde(with = "crate::cbor::bytes32")]
    pub sha256: [u8; 32],
    pub version: u64,
    pub raw_length: u64,
}

impl LayerRef {
    pub fn file(&self) -> FileRef {
        FileRef {
            count: self.count,
            length: self.length,
            sha256: self.sha256,
            raw_length: self.raw_length,
        }
    }
}

/// One key range `[lo, next range's lo)` of the state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Range {
    pub lo: u64,
    /// Leaf hash of the range's entries at this version (SPEC.md §6).
    #[serde(with = "crate::cbor::bytes32")]
    pub leaf: [u8; 32],
    /// Entries in the range at this version.
    pub count: u64,
    /// The base shard holding the range's entries at the base version.
    pub shard: FileRef,
}

/// The manifest: an immutable, versioned description of one state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Version whose state the base shards hold.
    pub base: u64,
    /// The layer from `version - 1` to `version`, when the publisher had one.
    pub delta: Option<LayerRef>,
    /// Layers `base + 1 ..= version`, in order.
    pub layers: Vec<LayerRef>,
    pub ranges: Vec<Range>,
    /// Unix seconds, from the registry database (never the clock).
    pub created: u64,
    /// Total entries: range counts plus prefix entries.
    pub entries: u64,
    pub expires: u64,
    pub version: u64,
    pub prefixes: FileRef,
    /// SHA-256 of the previous manifest's envelope bytes; `null` at version 1.
    #[serde(with = "crate::cbor::opt_bytes32")]
    pub previous: Option<[u8; 32]>,
    /// RFC 6962 Merkle tree head over [prefix leaf, range leaves…].
    #[serde(with = "crate::cbor::bytes32")]
    pub state_root: [u8; 32],
    /// Leaf 0: the prefix table's entries (SPEC.md §6), so a receipt proves
    /// the few prefix entries covering an ISRC without carrying the table.
    #[serde(with = "crate::cbor::bytes32")]
    pub prefix_leaf: [u8; 32],
}

impl Manifest {
    /// The leaves the manifest commits to (SPEC.md §6): the prefix leaf, then
    /// each range's leaf in order.
    pub fn leaves(&self) -> Vec<[u8; 32]> {
        std::iter::once(self.prefix_leaf)
            .chain(self.ranges.iter().map(|r| r.leaf))
            .collect()
    }

    /// Every data file the manifest names, each once, in SPEC.md §7 step 7's
    /// order: shards by range, layers by version, the prefix table, then a
    /// delta carried beside a compacted base (site name, signed reference).
    pub fn data_files(&self) -> Vec<(String, FileRef)> {
        let mut out: Vec<(String, FileRef)> = self
            .ranges
            .iter()
            .map(|r| (paths::shard(&r.shard.sha256), r.shard.clone()))
            .collect();
        out.extend(
            self.layers
                .iter()
                .map(|l| (paths::layer(&l.sha256), l.file())),
        );
        out.push((
            paths::prefixes(&self.prefixes.sha256),
            self.prefixes.clone(),
        ));
        if let Some(d) = self.delta.as_ref().filter(|d| !self.layers.contains(d)) {
            out.push((paths::layer(&d.sha256), d.file()));
        }
        let mut seen = std::collections::HashSet::new();
        out.retain(|(rel, _)| seen.insert(rel.clone()));
        out
    }

    /// `[lo, hi)` of range `i`.
    pub fn range_bounds(&self, i: usize) -> (u64, u64) {
        let hi = self.ranges.get(i + 1).map_or(KEY_SPACE, |r| r.lo);
        (self.ranges[i].lo, hi)
    }

    /// Index of the range holding `key`.
    pub fn range_of(&self, key: u64) -> usize {
        self.ranges
            .partition_point(|r| r.lo <= key)
            .saturating_sub(1)
    }

    /// Structural rules of SPEC.md §4.3 (everything that needs no data file).
    pub fn check(&self, limits: &Limits) -> Result<(), String> {
        if self.version == 0 {
            return Err("version must be 1 or more".into());
        }
        if (self.version == 1) != self.previous.is_none() {
            return Err("previous must be null exactly at version 1".into());
        }
        if self.ranges.is_empty() || self.ranges.len() as u64 > limits.max_ranges {
            return Err(format!("must have 1 to {} ranges", limits.max_ranges));
        }
        if self.ranges[0].lo != 0 {
            return Err("the first range must start at key 0".into());
        }
        for w in self.ranges.windows(2) {
            if w[0].lo >= w[1].lo {
                return Err("range starts must increase strictly".into());
            }
        }
        if self.ranges.last().is_some_and(|r| r.lo >= KEY_SPACE) {
            return Err("a range starts outside the ISRC key space".into());
        }
        if self.base == 0 || self.base > self.version {
            return Err("base must be between 1 and version".into());
        }
        if self.base == self.version && self.ranges.iter().any(|r| r.count != r.shard.count) {
            return Err("with no layers, every range count must equal its shard's count".into());
        }
        if self.layers.len() as u64 != self.version - self.base {
            return Err(format!(
                "lists {} layers; base {} to version {} needs {}",
                self.layers.len(),
                self.base,
                self.version,
                self.version - self.base
            ));
        }
        if self.layers.len() as u64 > limits.max_layers {
            return Err(format!("more than {} layers", limits.max_layers));
        }
        for (i, l) in self.layers.iter().enumerate() {
            if l.version != self.base + 1 + i as u64 {
                return Err(format!(
                    "layer {i} has version {}, expected {}",
                    l.version,
                    self.base + 1 + i as u64
                ));
            }
        }
        if let Some(d) = &self.delta {
            if d.version != self.version || self.version == 1 {
                return Err("delta must be the layer to this version".into());
            }
            if self.layers.last().is_some_and(|l| l != d) {
                return Err("delta differs from the last layer".into());
            }
        } else if !self.layers.is_empty() {
            return Err("delta must equal the last layer when layers are listed".into());
        }
        let total = self
            .ranges
            .iter()
            .try_fold(self.prefixes.count, |acc, r| acc.checked_add(r.count));
        if total != Some(self.entries) {
            return Err("entries is not the sum of the range counts and the prefix count".into());
        }
        if crate::merkle::merkle_root(&self.leaves()) != self.state_root {
            return Err("state_root is not the Merkle root of the listed leaves".into());
        }
        Ok(())
    }
}

/// Flat file names in a site (SPEC.md §2).
pub mod paths {
    pub const HEAD: &str = "head.cbor";

    pub fn root(version: u64) -> String {
        format!("root/{version}.cbor")
    }

    pub fn manifest(version: u64, sha256: &[u8; 32]) -> String {
        format!("manifest/{version}.{}.cbor", hex::encode(sha256))
    }

    pub fn shard(sha256: &[u8; 32]) -> String {
        format!("shard/{}.zst", hex::encode(sha256))
    }

    pub fn layer(sha256: &[u8; 32]) -> String {
        format!("layer/{}.zst", hex::encode(sha256))
    }

    pub fn prefixes(sha256: &[u8; 32]) -> String {
        format!("prefix/{}.zst", hex::encode(sha256))
    }
}
