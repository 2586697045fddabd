//! Test-only: signed sites built the way a publisher builds them (roots, heads,
//! manifests, base shards, delta layers, compaction), with INSECURE fixed keys
//! `SigningKey::from_bytes(&[n; 32])`.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer, SigningKey};

use crate::columns::{self, PolicySet, Rows};
use crate::declaration::{Declaration, Record, resolve};
use crate::docs::{
    FileRef, Head, LayerRef, Manifest, ManifestRef, Range, RoleKeys, Roles, Root, paths,
};
use crate::envelope::{Envelope, HEAD_TYPE, MANIFEST_TYPE, ROOT_TYPE, Sig, key_id, pae, sha256};
use crate::isrc::{Isrc, KEY_SPACE, Scope};
use crate::model::{Declarant, Policy};
use crate::state::{self, State};

/// 2026-11-25T00:00:00Z, the day the example lookups are asked on.
pub const NOW: i64 = 1_795_564_800;
pub const DAY: i64 = 86_400;

pub fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

pub fn sign(payload_type: &str, payload: Vec<u8>, keys: &[&SigningKey]) -> Vec<u8> {
    let msg = pae(payload_type, &payload);
    let signatures = keys
        .iter()
        .map(|k| Sig {
            sig: k.sign(&msg).to_bytes().to_vec(),
            keyid: key_id(&k.verifying_key().to_bytes()),
        })
        .collect();
    Envelope {
        payload,
        signatures,
        payload_type: payload_type.to_string(),
    }
    .to_bytes()
}

/// A root with one key per role.
pub fn make_root(
    version: u64,
    expires: i64,
    root_k: &SigningKey,
    man_k: &SigningKey,
    head_k: &SigningKey,
) -> Root {
    let pubs = |k: &SigningKey| k.verifying_key().to_bytes();
    let mut keys: Vec<[u8; 32]> = vec![pubs(root_k), pubs(man_k), pubs(head_k)];
    keys.sort_by_key(key_id);
    keys.dedup();
    let role = |k: &SigningKey| RoleKeys {
        keyids: vec![key_id(&pubs(k))],
        threshold: 1,
    };
    Root {
        keys,
        roles: Roles {
            head: role(head_k),
            root: role(root_k),
            manifest: role(man_k),
        },
        expires: expires as u64,
        version,
        witnesses: None,
    }
}

/// The example registry of tests/data, resolved into published entries.
pub fn example_records() -> Vec<Record> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/data/declarations.csv"
    );
    let mut r = csv::Reader::from_path(path).unwrap();
    let headers = r.headers().unwrap().clone();
    let decls: Vec<Declaration> = r
        .records()
        .map(|rec| {
            let rec = rec.unwrap();
            let row: BTreeMap<String, String> = headers
                .iter()
                .zip(rec.iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect();
            Declaration::from_row(&row).unwrap()
        })
        .collect();
    resolve(&decls)
}

/// A simple disallow-everything policy by declarant `who`.
pub fn policy(who: &str, allow: bool) -> Policy {
    Policy {
        from: None,
        uses: [if allow { 1 } else { 2 }, 0, 0, 0, 0],
        terms: None,
        until: None,
        revoke: false,
        status: "active".into(),
        exclude: Vec::new(),
        include: vec!["WW".into()],
        declarant: Declarant {
            id: format!("ddex:{}", who.replace(' ', "-")),
            name: who.into(),
            role: "label".into(),
        },
    }
}

/// An exact-scope record.
pub fn record(isrc: &str, seq: u64, id: &str, p: Policy) -> Record {
    Record {
        scope: Scope::Exact(Isrc::parse(isrc).unwrap()),
        seq,
        id: id.into(),
        policy: p,
    }
}

/// Options of one test publish.
#[derive(Debug, Clone)]
pub struct Opts {
    pub now: i64,
    pub head_ttl: i64,
    pub manifest_ttl: i64,
    /// Fold the layers into a new base.
    pub compact: bool,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            now: NOW,
            head_ttl: 3 * DAY,
            manifest_ttl: 30 * DAY,
            compact: false,
        }
    }
}

/// One published version.
#[derive(Debug, Clone)]
pub struct Published {
    pub rows: Rows,
    pub state: State,
    pub manifest: Manifest,
    pub manifest_bytes: Vec<u8>,
    pub manifest_sha256: [u8; 32],
    pub head: Head,
    pub head_bytes: Vec<u8>,
}

/// A site directory and the keys that sign it.
#[derive(Debug)]
pub struct TestSite {
    pub dir: PathBuf,
    pub root: Root,
    pub root_key: SigningKey,
    pub manifest_key: SigningKey,
    pub head_key: SigningKey,
    pub roots: Vec<Vec<u8>>,
    pub history: Vec<Published>,
    pub head_version: u64,
}

/// Range starts used by every test site: three ranges.
pub fn bounds() -> Vec<u64> {
    vec![
        0,
        Isrc::parse("FR0000000000").unwrap().key(),
        Isrc::parse("US0000000000").unwrap().key(),
    ]
}

impl TestSite {
    /// A site with root version 1: root key 1, manifest key 2, head key 3.
    pub fn new(dir: impl Into<PathBuf>) -> TestSite {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).unwrap();
        let (rk, mk, hk) = (key(1), key(2), key(3));
        let root = make_root(1, NOW + 365 * DAY, &rk, &mk, &hk);
        let bytes = sign(ROOT_TYPE, crate::cbor::to_vec(&root), &[&rk]);
        let s = TestSite {
            dir,
            root,
            root_key: rk,
            manifest_key: mk,
            head_key: hk,
            roots: vec![bytes.clone()],
            history: Vec::new(),
            head_version: 0,
        };
        s.write(&paths::root(1), &bytes);
        s
    }

    pub fn write(&self, rel: &str, bytes: &[u8]) {
        let p = self.dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    pub fn root_bytes(&self, version: u64) -> &[u8] {
        &self.roots[(version - 1) as usize]
    }

    /// Rotate to a new root signed by the old and new root keys.
    pub fn rotate(&mut self, root_k: u8, man_k: u8, head_k: u8) {
        self.rotate_expiring(root_k, man_k, head_k, NOW + 365 * DAY);
    }

    /// [`TestSite::rotate`] to a root expiring at `expires`.
    pub fn rotate_expiring(&mut self, root_k: u8, man_k: u8, head_k: u8, expires: i64) {
        let (rk, mk, hk) = (key(root_k), key(man_k), key(head_k));
        let root = make_root(self.root.version + 1, expires, &rk, &mk, &hk);
        let bytes = sign(
            ROOT_TYPE,
            crate::cbor::to_vec(&root),
            &[&self.root_key, &rk],
        );
        self.write(&paths::root(root.version), &bytes);
        self.roots.push(bytes);
        self.root = root;
        self.root_key = rk;
        self.manifest_key = mk;
        self.head_key = hk;
    }

    /// Sign a head naming the latest manifest and write it.
    pub fn write_head(&mut self, now: i64, ttl: i64) -> Vec<u8> {
        let p = self.history.last().unwrap();
        self.head_version += 1;
        let head = Head {
            expires: (now + ttl) as u64,
            version: self.head_version,
            manifest: ManifestRef {
                length: p.manifest_bytes.len() as u64,
                sha256: p.manifest_sha256,
                version: p.manifest.version,
            },
        };
        let bytes = sign(HEAD_TYPE, crate::cbor::to_vec(&head), &[&self.head_key]);
        self.write(paths::HEAD, &bytes);
        let last = self.history.last_mut().unwrap();
        last.head = head;
        last.head_bytes.clone_from(&bytes);
        bytes
    }

    fn data_file(&self, raw: &[u8], count: u64, name: fn(&[u8; 32]) -> String) -> FileRef {
        let bytes = columns::compress(raw);
        let h = sha256(&bytes);
        self.write(&name(&h), &bytes);
        FileRef {
            count,
            length: bytes.len() as u64,
            sha256: h,
            raw_length: raw.len() as u64,
        }
    }

    /// Publish the next version holding exactly `records`.
    pub fn publish(&mut self, records: &[Record], o: &Opts) -> Published {
        let mut set = PolicySet::default();
        let mut exact: Vec<&Record> = records
            .iter()
            .filter(|r| matches!(r.scope, Scope::Exact(_)))
            .collect();
        exact.sort_by_key(|r| (r.scope.key_range().0, r.seq));
        let prefixes: Vec<Record> = records
            .iter()
            .filter(|r| !matches!(r.scope, Scope::Exact(_)))
            .cloned()
            .collect();
        let mut rows = Rows::default();
        for r in &exact {
            rows.push(r.scope.key_range().0, r.seq, &r.id, set.intern(&r.policy));
        }
        let prev = self.history.last().cloned();
        let version = prev.as_ref().map_or(1, |p| p.manifest.version + 1);

        let layer_ref = prev.as_ref().map(|p| {
            // Re-intern the previous rows' policies into this version's set.
            let mut old: BTreeMap<(u64, u64), (String, Policy)> = BTreeMap::new();
            for i in 0..p.rows.len() {
                old.insert(
                    (p.rows.keys[i], p.rows.seqs[i]),
                    (
                        p.rows.id(i).to_string(),
                        p.state.policies.get(p.rows.pol[i]).clone(),
                    ),
                );
            }
            let mut new: BTreeMap<(u64, u64), (String, Policy)> = BTreeMap::new();
            for i in 0..rows.len() {
                new.insert(
                    (rows.keys[i], rows.seqs[i]),
                    (rows.id(i).to_string(), set.get(rows.pol[i]).clone()),
                );
            }
            let dels: Vec<(u64, u64)> = old
                .keys()
                .filter(|k| !new.contains_key(k))
                .copied()
                .collect();
            let mut puts = Rows::default();
            for (k, v) in &new {
                if old.get(k) != Some(v) {
                    puts.push(k.0, k.1, &v.0, set.intern(&v.1));
                }
            }
            let raw = columns::encode_layer(version - 1, version, &dels, &puts, &set);
            let f = self.data_file(&raw, (dels.len() + puts.len()) as u64, paths::layer);
            LayerRef {
                count: f.count,
                length: f.length,
                sha256: f.sha256,
                version,
                raw_length: f.raw_length,
            }
        });

        let hashes: Vec<[u8; 32]> = set.list.iter().map(state::policy_hash).collect();
        let los = bounds();
        let compact = prev.is_none() || o.compact;
        let mut ranges = Vec::new();
        for (i, &lo) in los.iter().enumerate() {
            let hi = los.get(i + 1).copied().unwrap_or(KEY_SPACE);
            let slice = rows.slice(rows.lower_bound(lo), rows.lower_bound(hi));
            let shard = if compact {
                self.data_file(
                    &columns::encode_shard(lo, hi, &slice, &set),
                    slice.len() as u64,
                    paths::shard,
                )
            } else {
                prev.as_ref().unwrap().manifest.ranges[i].shard.clone()
            };
            ranges.push(Range {
                lo,
                leaf: state::range_leaf(lo, hi, &slice, &hashes),
                count: slice.len() as u64,
                shard,
            });
        }
        let (base, layers) = if compact {
            (version, Vec::new())
        } else {
            let p = prev.as_ref().unwrap();
            let mut l = p.manifest.layers.clone();
            l.extend(layer_ref.clone());
            (p.manifest.base, l)
        };
        let prefix_ref = self.data_file(
            &columns::encode_prefixes(&prefixes),
            prefixes.len() as u64,
            paths::prefixes,
        );
        let mut m = Manifest {
            base,
            delta: layer_ref,
            layers,
            ranges,
            created: o.now as u64,
            entries: rows.len() as u64 + prefixes.len() as u64,
            expires: (o.now + o.manifest_ttl) as u64,
            version,
            prefixes: prefix_ref,
            previous: prev.as_ref().map(|p| p.manifest_sha256),
            state_root: [0; 32],
            prefix_leaf: state::prefix_leaf(&prefixes),
        };
        m.state_root = state::merkle_root(&state::leaves_of(&m));
        let mbytes = sign(
            MANIFEST_TYPE,
            crate::cbor::to_vec(&m),
            &[&self.manifest_key],
        );
        let msha = sha256(&mbytes);
        self.write(&paths::manifest(version, &msha), &mbytes);
        let st = State {
            ranges: State::split(&rows, &m),
            policies: set,
            prefixes,
        };
        self.history.push(Published {
            rows,
            state: st,
            manifest: m,
            manifest_bytes: mbytes,
            manifest_sha256: msha,
            head: Head {
                expires: 0,
                version: 0,
                manifest: ManifestRef {
                    length: 0,
                    sha256: [0; 32],
                    version: 0,
                },
            },
            head_bytes: Vec::new(),
        });
        self.write_head(o.now, o.head_ttl);
        self.history.last().unwrap().clone()
    }

    /// Every file name in the site, relative.
    pub fn files(&self) -> Vec<String> {
        let mut out = Vec::new();
        list(&self.dir, &self.dir, &mut out);
        out.sort();
        out
    }
}

fn list(base: &Path, dir: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            list(base, &p, out);
        } else {
            out.push(p.strip_prefix(base).unwrap().display().to_string());
        }
    }
}

/// A store in `dir` pinned to `site`'s root version 1 and synced from it at
/// [`NOW`].
pub fn synced_store(site: &TestSite, dir: &Path) -> crate::store::Store {
    let (store, _) = crate::store::Store::init(dir, site.root_bytes(1), false).unwrap();
    crate::sync::sync(
        &store,
        &crate::fetch::DirFetch::new(&site.dir),
        &crate::sync::SyncOptions {
            now: NOW,
            expiry: crate::verify::Expiry::Enforce,
            keep_history: None,
        },
    )
    .unwrap();
    store
}
