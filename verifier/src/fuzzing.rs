//! Fuzzing entry points: one function per `cargo fuzz` target in `fuzz/`,
//! shared with the stable replay of the committed corpus
//! (`tests/tests/e2e/fuzz_corpus.rs`), so CI runs every seed without nightly.
//!
//! Each function takes arbitrary bytes, calls the real decoding entry points
//! and returns; it must never panic. The assertions inside are invariants of
//! the format (a canonical encoding round-trips, an accepted file is the only
//! encoding of what it holds, nothing is written outside a bundle's staging
//! directory, …): a failing one is a finding, like a crash.
//!
//! Not a supported API: it exists for `fuzz/` and the corpus replay.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::sync::OnceLock;

use ed25519_dalek::{Signature, VerifyingKey};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cbor;
use crate::columns::{
    self, Columns, KeyColumns, LayerDoc, PolicySet, PrefixDoc, PrefixRow, RawRow, Rows, ShardDoc,
    columns_from_raw, key_columns_from_raw,
};
use crate::declaration::Record;
use crate::docs::{FileRef, Head, Manifest, ManifestRef, Range, Role, RoleKeys, Roles, Root};
use crate::envelope::{Envelope, HEAD_TYPE, ROOT_TYPE, key_id, load_key, pae, sha256};
use crate::error::{Code, VResult};
use crate::fetch::{SITE_DIRS, SiteFile};
use crate::index::Index;
use crate::isrc::{self, Isrc, KEY_SPACE, Scope};
use crate::limits::Limits;
use crate::model::{Declarant, Policy};
use crate::receipt;
use crate::state::{self, State};
use crate::verify::{self, Expiry};

/// File name in rejections.
const FILE: &str = "fuzz";

/// The limits every target decodes under: the defaults, except that a data
/// file may decompress to at most 8 MiB, so one input costs milliseconds, not
/// a second and a gigabyte (the default 1 GiB cap is a deliberate bound, not a
/// defect to rediscover on every run).
pub const LIMITS: Limits = Limits {
    max_raw_bytes: 8 << 20,
    ..Limits::DEFAULT
};

/// 2026-11-02T00:00:00Z: inside the validity of the example snapshot and the
/// test vectors (published 2026-11-01, head valid 72 h).
pub const NOW: i64 = 1_793_577_600;

/// Public keys of the INSECURE example keys (`keys/INSECURE-{role}-1.pub`),
/// which sign the example snapshot, the test vectors and the e2e fixtures.
pub const EXAMPLE_ROOT_KEY: &str =
    "f106465172b5c36c89b81f847ff399a0b3479c8fdbc5eb59b6a9376231100f50";
pub const EXAMPLE_MANIFEST_KEY: &str =
    "3ee519af92ac3c12caa512c2d7164fa29514be6909927d9cfe7f7857095d45ad";
pub const EXAMPLE_HEAD_KEY: &str =
    "203c9e311e10435f89add607112026c234990a2b85f83e1812d36db877072579";

fn key32(hex_text: &str) -> [u8; 32] {
    let mut k = [0u8; 32];
    // The constants above are valid hex; a bad one leaves zeros, which the
    // unit test below catches.
    let _ = hex::decode_to_slice(hex_text, &mut k);
    k
}

/// The root of the example snapshot: the three INSECURE keys, one per role,
/// threshold 1 each (its `expires` is left at the maximum: targets that care
/// about expiry pass [`NOW`]).
pub fn example_root() -> &'static Root {
    static ROOT: OnceLock<Root> = OnceLock::new();
    ROOT.get_or_init(|| {
        let (r, m, h) = (
            key32(EXAMPLE_ROOT_KEY),
            key32(EXAMPLE_MANIFEST_KEY),
            key32(EXAMPLE_HEAD_KEY),
        );
        let mut keys = vec![r, m, h];
        keys.sort_by_key(key_id);
        let role = |k: &[u8; 32]| RoleKeys {
            keyids: vec![key_id(k)],
            threshold: 1,
        };
        Root {
            keys,
            roles: Roles {
                head: role(&h),
                root: role(&r),
                manifest: role(&m),
            },
            expires: u64::MAX,
            version: 1,
            witnesses: None,
        }
    })
}

/// All three example keys, loaded, as an `allowed` list for [`Envelope::verify`].
fn example_keys() -> &'static [([u8; 32], VerifyingKey)] {
    static KEYS: OnceLock<Vec<([u8; 32], VerifyingKey)>> = OnceLock::new();
    KEYS.get_or_init(|| {
        example_root()
            .keys
            .iter()
            .filter_map(|k| load_key(k).ok().map(|vk| (key_id(k), vk)))
            .collect()
    })
}

fn code<T>(r: &VResult<T>) -> Option<Code> {
    r.as_ref().err().map(|e| e.code)
}

/// A decoded value re-encodes to a value that decodes to itself.
fn round_trips<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(v: &T) {
    let bytes = cbor::to_vec(v);
    let back: Result<T, String> = cbor::from_slice_canonical(&bytes);
    assert_eq!(back.as_ref().ok(), Some(v), "canonical CBOR round trip");
}

/// Decode `bytes` canonically; when it decodes, the bytes are exactly the
/// value's encoding.
fn decode<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
    bytes: &[u8],
) -> Option<T> {
    let v: T = cbor::from_slice_canonical(bytes).ok()?;
    assert_eq!(cbor::to_vec(&v), bytes, "accepted CBOR is canonical");
    round_trips(&v);
    Some(v)
}

// ---- signed documents ------------------------------------------------------

/// `envelope`: [`Envelope::parse`], then [`Envelope::verify`] against the
/// example keys for every threshold, cross-checked against a direct count of
/// distinct key ids with a strictly valid signature.
pub fn envelope(data: &[u8]) {
    let Ok(env) = Envelope::parse(FILE, data, &LIMITS) else {
        return;
    };
    assert_eq!(
        env.to_bytes(),
        data,
        "a parsed envelope is its canonical encoding"
    );
    assert!(env.signatures.len() <= LIMITS.max_signatures);
    let keys = example_keys();
    // The payload type is checked before any signature.
    let other = if env.payload_type == HEAD_TYPE {
        ROOT_TYPE
    } else {
        HEAD_TYPE
    };
    assert_eq!(
        code(&env.verify(FILE, other, keys, 0, "any")),
        Some(Code::WrongPayloadType)
    );
    let ty = env.payload_type.as_str();
    assert!(env.verify(FILE, ty, keys, 0, "any").is_ok());
    // The largest threshold met; thresholds are monotone.
    let mut met = 0u64;
    for t in 1..=4 {
        let r = env.verify(FILE, ty, keys, t, "any");
        if r.is_err() {
            assert_eq!(code(&r), Some(Code::ThresholdNotMet));
            break;
        }
        met = t;
    }
    let msg = pae(ty, &env.payload);
    let valid: BTreeSet<[u8; 32]> = env
        .signatures
        .iter()
        .filter(|s| {
            let Some((_, k)) = keys.iter().find(|(id, _)| *id == s.keyid) else {
                return false;
            };
            <[u8; 64]>::try_from(s.sig.as_slice())
                .is_ok_and(|b| k.verify_strict(&msg, &Signature::from_bytes(&b)).is_ok())
        })
        .map(|s| s.keyid)
        .collect();
    assert_eq!(
        valid.len() as u64,
        met,
        "the threshold counts distinct keys with a valid signature"
    );
}

/// `root`: the root payload alone (decode, [`Root::check`]), then
/// `parse_root`, `verify_pinned_root` and a rotation from the example root
/// (`verify_next_root`).
pub fn root(data: &[u8]) {
    if let Some(r) = decode::<Root>(data) {
        let _ = r.check(&LIMITS);
    }
    let parsed = verify::parse_root(FILE, data, &LIMITS);
    if let Ok((env, r)) = &parsed {
        assert_eq!(env.payload_type, ROOT_TYPE);
        assert_eq!(cbor::to_vec(r), env.payload);
        assert!(r.check(&LIMITS).is_ok());
        for role in [Role::Root, Role::Manifest, Role::Head] {
            // A checked root names only loadable keys it lists.
            assert_eq!(
                verify::role_keys(r, role).len(),
                r.role(role).keyids.len(),
                "every key id of a role names a loadable key"
            );
        }
        let _ = verify::check_root_expiry(r, FILE, NOW, Expiry::Enforce);
    }
    if verify::verify_pinned_root(FILE, data, &LIMITS).is_ok() {
        assert!(parsed.is_ok());
    }
    if let Ok(next) = verify::verify_next_root(example_root(), FILE, data, &LIMITS) {
        assert_eq!(next.version, 2, "a rotation from version 1 is version 2");
        assert!(parsed.is_ok());
    }
}

/// `head`: the head payload alone (decode, rollback checks against a fixed
/// trusted head) and inside an envelope, then `verify_head` under the
/// example root with and without expiry.
pub fn head(data: &[u8]) {
    let trusted = Head {
        expires: 1_793_836_800,
        version: 3,
        manifest: ManifestRef {
            length: 534,
            sha256: [7; 32],
            version: 2,
        },
    };
    let payload_level = |h: &Head| {
        let _ = verify::check_head_rollback(FILE, h, Some(&trusted));
        assert!(verify::check_head_rollback(FILE, h, Some(h)).is_ok());
        assert!(verify::check_head_rollback(FILE, h, None).is_ok());
    };
    if let Some(h) = decode::<Head>(data) {
        payload_level(&h);
    }
    if let Ok(env) = Envelope::parse(FILE, data, &LIMITS)
        && let Some(h) = decode::<Head>(&env.payload)
    {
        payload_level(&h);
    }
    for expiry in [Expiry::Enforce, Expiry::AllowExpired] {
        let Ok(h) = verify::verify_head(example_root(), FILE, data, NOW, expiry, &LIMITS) else {
            continue;
        };
        assert!(h.version >= 1 && h.manifest.version >= 1);
        if expiry == Expiry::Enforce {
            assert!(!verify::is_expired(h.expires, NOW));
        }
        if h.version < u64::MAX {
            let mut newer = h.clone();
            newer.version += 1;
            assert_eq!(
                code(&verify::check_head_rollback(FILE, &h, Some(&newer))),
                Some(Code::Rollback)
            );
        }
    }
}

/// Invariants of a manifest that passed [`Manifest::check`].
fn checked_manifest(m: &Manifest) {
    if m.check(&LIMITS).is_err() {
        return;
    }
    let n = m.ranges.len();
    for i in 0..n {
        let (lo, hi) = m.range_bounds(i);
        assert!(
            lo < hi && hi <= KEY_SPACE,
            "ranges are non-empty key ranges"
        );
        assert_eq!(m.range_of(lo), i);
        assert_eq!(m.range_of(hi - 1), i);
    }
    let leaves = state::leaves_of(m);
    assert_eq!(leaves.len(), n + 1);
    assert_eq!(state::merkle_root(&leaves), m.state_root);
    assert_eq!(m.layers.len() as u64, m.version - m.base);
}

/// `manifest`: the manifest payload alone (decode, [`Manifest::check`] and
/// the invariants it promises) and inside an envelope, then
/// `verify_manifest_unreferenced` and `verify_manifest` under the example
/// root (with a head naming exactly these bytes).
pub fn manifest(data: &[u8]) {
    if let Some(m) = decode::<Manifest>(data) {
        checked_manifest(&m);
    }
    let mut version = 1;
    if let Ok(env) = Envelope::parse(FILE, data, &LIMITS)
        && let Some(m) = decode::<Manifest>(&env.payload)
    {
        version = m.version;
        checked_manifest(&m);
    }
    let sha = sha256(data);
    let head = Head {
        expires: u64::MAX,
        version: 1,
        manifest: ManifestRef {
            length: data.len() as u64,
            sha256: sha,
            version,
        },
    };
    let root = example_root();
    let full = verify::verify_manifest(root, &head, FILE, data, NOW, Expiry::AllowExpired, &LIMITS);
    let unref = verify::verify_manifest_unreferenced(root, FILE, data, &sha, &LIMITS);
    if let Ok(m) = &full {
        assert_eq!(unref.as_ref().ok(), Some(m));
        assert!(m.check(&LIMITS).is_ok());
        let _ = verify::verify_manifest(root, &head, FILE, data, NOW, Expiry::Enforce, &LIMITS);
    }
}

// ---- data files ------------------------------------------------------------

/// `data_file`: the first byte picks the signed `raw_length` (the frame's
/// own content size, one more, one less, or a small number), the rest is the
/// compressed file, whose length and SHA-256 are signed as they are.
/// [`columns::open_file`] must agree with libzstd on whatever it accepts;
/// what it accepts then goes through the shard, layer and prefix decoders.
pub fn data_file(data: &[u8]) {
    let Some((&mode, file)) = data.split_first() else {
        return;
    };
    let fcs = zstd::zstd_safe::get_frame_content_size(file).ok().flatten();
    let base = fcs.unwrap_or(0);
    let raw_length = match mode & 3 {
        0 => base,
        1 => base.wrapping_add(1),
        2 => base.wrapping_sub(1),
        _ => u64::from(mode >> 2),
    };
    let fref = FileRef {
        count: 0,
        length: file.len() as u64,
        sha256: sha256(file),
        raw_length,
    };
    let Ok(raw) = columns::open_file(FILE, file, &fref, &LIMITS) else {
        return;
    };
    assert_eq!(raw.len() as u64, raw_length);
    assert_eq!(
        fcs,
        Some(raw_length),
        "the frame header agrees with libzstd"
    );
    assert_eq!(
        zstd::stream::decode_all(file).ok().as_deref(),
        Some(raw.as_slice()),
        "the capped decoder agrees with libzstd"
    );
    shard(&raw);
    layer(&raw);
    prefixes(&raw);
}

/// Decoded rows are strictly sorted, inside `range`, with valid ids and seqs.
fn check_rows(rows: &Rows, range: (u64, u64)) {
    for i in 0..rows.len() {
        let (k, s) = (rows.keys[i], rows.seqs[i]);
        assert!(range.0 <= k && k < range.1, "key inside the range");
        assert!(s >= 1, "seq 0 is never accepted");
        if i > 0 {
            assert!((rows.keys[i - 1], rows.seqs[i - 1]) < (k, s), "rows sorted");
        }
        let id = rows.id_bytes(i);
        assert!(
            !id.is_empty()
                && id.len() <= columns::MAX_ID_LEN
                && id.iter().all(u8::is_ascii_graphic),
            "ids are 1-255 bytes of printable ASCII"
        );
    }
}

/// `(key, seq, id, policy)` of every row.
fn row_values<'a>(rows: &'a Rows, set: &'a PolicySet) -> Vec<(u64, u64, &'a str, &'a Policy)> {
    (0..rows.len())
        .map(|i| (rows.keys[i], rows.seqs[i], rows.id(i), set.get(rows.pol[i])))
        .collect()
}

/// Low bytes per row of a `key_low` blob (the decoder checked it divides).
fn low_of(key_low: &[u8], count: u64) -> usize {
    if count == 0 {
        0
    } else {
        key_low.len() / count as usize
    }
}

/// An accepted column set is the only encoding of its rows, given its
/// `id_prefix` and low-byte count (SPEC.md §5.3).
fn columns_are_unique(c: &Columns, rows: &Rows, set: &PolicySet) {
    let raw: Vec<RawRow> = (0..rows.len())
        .map(|i| RawRow {
            key: rows.keys[i],
            seq: rows.seqs[i],
            id: rows.id(i).to_string(),
            policy: c
                .policies
                .iter()
                .position(|p| p == set.get(rows.pol[i]))
                .map_or(u64::MAX, |p| p as u64),
        })
        .collect();
    let again = columns_from_raw(
        &raw,
        c.policies.clone(),
        &c.id_prefix,
        low_of(&c.key_low, c.count),
    );
    assert_eq!(
        &again, c,
        "an accepted column set is the only encoding of its rows"
    );
}

/// The payload level of [`shard`].
fn shard_payload(data: &[u8]) {
    let doc: Option<ShardDoc> = cbor::from_slice_canonical(data).ok();
    let count = doc.as_ref().map_or(0, |d| d.rows.count);
    let mut set = PolicySet::default();
    let _ = columns::decode_shard(FILE, data, 0, KEY_SPACE, count, &LIMITS, &mut set);
    let Some(doc) = doc else {
        return;
    };
    let mut set = PolicySet::default();
    let Ok(rows) = columns::decode_shard(FILE, data, doc.lo, doc.hi, count, &LIMITS, &mut set)
    else {
        return;
    };
    assert_eq!(rows.len() as u64, count);
    check_rows(&rows, (doc.lo, doc.hi));
    columns_are_unique(&doc.rows, &rows, &set);
    let again = columns::encode_shard(doc.lo, doc.hi, &rows, &set);
    let mut set2 = PolicySet::default();
    let back = columns::decode_shard(FILE, &again, doc.lo, doc.hi, count, &LIMITS, &mut set2);
    assert!(
        back.is_ok(),
        "the publisher's encoding decodes: {:?}",
        back.err()
    );
    if let Ok(back) = back {
        assert_eq!(row_values(&back, &set2), row_values(&rows, &set));
    }
}

/// The payload level of [`layer`].
fn layer_payload(data: &[u8]) {
    let doc: Option<LayerDoc> = cbor::from_slice_canonical(data).ok();
    let count = doc
        .as_ref()
        .and_then(|d| d.dels.count.checked_add(d.puts.count))
        .unwrap_or(0);
    let mut set = PolicySet::default();
    let Ok(l) = columns::decode_layer(FILE, data, count, &LIMITS, &mut set) else {
        return;
    };
    assert!(doc.is_some(), "decode_layer accepted what LayerDoc refuses");
    let Some(doc) = doc else {
        return;
    };
    assert_eq!(l.from.checked_add(1), Some(l.to));
    assert_eq!((l.dels.len() + l.puts.len()) as u64, count);
    for (i, &(k, s)) in l.dels.iter().enumerate() {
        assert!(k < KEY_SPACE && s >= 1);
        if i > 0 {
            assert!(l.dels[i - 1] < (k, s), "deletions sorted");
        }
    }
    check_rows(&l.puts, (0, KEY_SPACE));
    let dels: HashSet<(u64, u64)> = l.dels.iter().copied().collect();
    assert!(
        (0..l.puts.len()).all(|i| !dels.contains(&(l.puts.keys[i], l.puts.seqs[i]))),
        "no row is both deleted and put"
    );
    assert_eq!(
        key_columns_from_raw(&l.dels, low_of(&doc.dels.key_low, doc.dels.count)),
        doc.dels,
        "an accepted deletion column is the only encoding of its rows"
    );
    columns_are_unique(&doc.puts, &l.puts, &set);

    let again = columns::encode_layer(l.from, l.to, &l.dels, &l.puts, &set);
    let mut set2 = PolicySet::default();
    let back = columns::decode_layer(FILE, &again, count, &LIMITS, &mut set2);
    assert!(
        back.is_ok(),
        "the publisher's encoding decodes: {:?}",
        back.as_ref().err()
    );
    if let Ok(back) = back {
        assert_eq!(back.dels, l.dels);
        assert_eq!(row_values(&back.puts, &set2), row_values(&l.puts, &set));
    }

    // Applying: the deleted rows go, the puts come.
    let mut base = Rows::default();
    for &(k, s) in &l.dels {
        base.push(k, s, "x", 0);
    }
    let applied = base.apply(&l.dels, &l.puts, FILE);
    assert_eq!(
        applied.as_ref().ok(),
        Some(&l.puts),
        "apply removes exactly the deleted rows"
    );
    let onto_empty = Rows::default().apply(&l.dels, &l.puts, FILE);
    assert_eq!(
        onto_empty.is_ok(),
        l.dels.is_empty(),
        "deleting an absent row is refused"
    );
}

/// The payload level of [`prefixes`].
fn prefixes_payload(data: &[u8]) {
    let doc: Option<PrefixDoc> = cbor::from_slice_canonical(data).ok();
    let count = doc.as_ref().map_or(0, |d| d.rows.len() as u64);
    let Ok(recs) = columns::decode_prefixes(FILE, data, count, &LIMITS) else {
        return;
    };
    assert_eq!(
        columns::encode_prefixes(&recs),
        data,
        "an accepted prefix table is the only encoding of its entries"
    );
}

// ---- structured inputs for the data-file decoders --------------------------

/// Reads a structured input: bytes, little-endian integers and
/// length-prefixed blobs, zeros past the end.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn byte(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        b
    }

    fn u64(&mut self) -> u64 {
        let mut w = [0u8; 8];
        for b in &mut w {
            *b = self.byte();
        }
        u64::from_le_bytes(w)
    }

    /// A blob of up to 255 bytes (one length byte).
    fn blob(&mut self) -> Vec<u8> {
        let n = usize::from(self.byte()).min(self.0.len());
        let (b, rest) = self.0.split_at(n);
        self.0 = rest;
        b.to_vec()
    }
}

/// Three valid policies, sorted by their canonical encoding.
fn fuzz_policies() -> &'static [Policy] {
    static P: OnceLock<Vec<Policy>> = OnceLock::new();
    P.get_or_init(|| {
        let mut v = vec![
            fixture_policy(1, "label"),
            fixture_policy(2, "artist"),
            fixture_policy(3, "rights_owner"),
        ];
        v.sort_by_key(cbor::to_vec);
        v
    })
}

/// Columns with fuzzed blobs, count and low bytes, a choice of policy table
/// (0-3 of the fixed policies, or two out of order) and of `id_prefix`.
fn fuzz_columns(c: &mut Cursor) -> Columns {
    let count = u64::from(c.byte());
    let pols = fuzz_policies();
    let policies = match c.byte() % 5 {
        4 => vec![pols[1].clone(), pols[0].clone()],
        n => pols[..usize::from(n)].to_vec(),
    };
    let id_prefix = match c.byte() % 5 {
        0 => String::new(),
        1 => "D".into(),
        2 => "CR-".into(),
        3 => "X".repeat(250),
        _ => "not printable".into(),
    };
    Columns {
        ids: c.blob(),
        keys: c.blob(),
        seqs: c.blob(),
        count,
        policy: c.blob(),
        key_low: c.blob(),
        policies,
        id_prefix,
    }
}

/// `shard`: a decompressed shard payload (a CBOR map of three, first byte
/// 0xa3), or — any other first byte — a structured input: a range choice
/// and fuzzed column blobs, encoded as a canonical shard payload, so the
/// column rules are explored without rediscovering canonical CBOR. Then
/// [`columns::decode_shard`] over the key space and over the payload's own
/// range; an accepted shard is checked row by row, must be the only encoding
/// of its rows, and re-encoded by the publisher must decode to the same rows.
pub fn shard(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first().filter(|(m, _)| **m != 0xa3) else {
        shard_payload(data);
        return;
    };
    let mut c = Cursor(rest);
    let (lo, hi) = match mode & 3 {
        0 => (0, KEY_SPACE),
        1 => (c.u64() % KEY_SPACE, KEY_SPACE),
        2 => (0, c.u64() % (KEY_SPACE + 1)),
        _ => (c.u64(), c.u64()),
    };
    let rows = fuzz_columns(&mut c);
    shard_payload(&cbor::to_vec(&ShardDoc { hi, lo, rows }));
}

/// `layer`: a decompressed layer payload (first byte 0xa4), or a structured
/// input (versions, fuzzed deletion and put columns) encoded as one. Then
/// [`columns::decode_layer`] with the change count it names; an accepted
/// layer spans one version, its deletions and puts are sorted, in the key
/// space and disjoint, both columns are the only encoding of their rows, the
/// publisher's re-encoding decodes to the same layer, and applying it to a
/// state holding exactly its deleted rows gives its puts.
pub fn layer(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first().filter(|(m, _)| **m != 0xa4) else {
        layer_payload(data);
        return;
    };
    let mut c = Cursor(rest);
    let from = u64::from(c.byte());
    let to = if mode & 1 == 0 { from + 1 } else { c.u64() };
    let dels = KeyColumns {
        keys: c.blob(),
        seqs: c.blob(),
        count: u64::from(c.byte()),
        key_low: c.blob(),
    };
    let puts = fuzz_columns(&mut c);
    layer_payload(&cbor::to_vec(&LayerDoc {
        to,
        dels,
        from,
        puts,
    }));
}

/// `prefixes`: a decompressed prefix table (first byte 0xa1), or a
/// structured input (up to 7 rows of fuzzed id, seq and scope text, one of
/// the fixed policies each) encoded as one. Then
/// [`columns::decode_prefixes`] with the entry count it holds; an accepted
/// table is the only encoding of its entries (`encode_prefixes` gives back
/// the same bytes), and the lookup structure built from it finds exactly the
/// covering entries.
pub fn prefixes(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first().filter(|(m, _)| **m != 0xa1) else {
        prefixes_payload(data);
        return;
    };
    let mut c = Cursor(rest);
    let rows = (0..mode % 8)
        .map(|_| PrefixRow {
            id: String::from_utf8_lossy(&c.blob()).into_owned(),
            seq: u64::from(c.byte()),
            scope: String::from_utf8_lossy(&c.blob()).into_owned(),
            policy: fuzz_policies()[usize::from(c.byte() % 3)].clone(),
        })
        .collect();
    prefixes_payload(&cbor::to_vec(&PrefixDoc { rows }));
}

// ---- ISRCs -----------------------------------------------------------------

fn isrc_text(s: &str) -> Option<Isrc> {
    let n = isrc::normalize(s);
    let parsed = Isrc::parse(s);
    let scope = Scope::parse(s);
    match parsed {
        Ok(i) => {
            assert!(i.key() < KEY_SPACE);
            assert_eq!(Isrc::from_key(i.key()), Some(i));
            assert_eq!(
                n,
                i.compact(),
                "an accepted ISRC normalizes to its compact form"
            );
            assert_eq!(i.to_string(), i.compact());
            assert_eq!(Isrc::parse(&i.compact()).ok(), Some(i));
            assert_eq!(Isrc::parse(&i.hyphenated()).ok(), Some(i));
            assert_eq!(scope.as_ref().ok(), Some(&Scope::Exact(i)));
        }
        Err(_) => assert!(!matches!(scope, Ok(Scope::Exact(_)))),
    }
    if let Ok(sc) = scope {
        assert_eq!(
            Scope::parse(&sc.canonical()).ok(),
            Some(sc),
            "scope round trip"
        );
        let (lo, hi) = sc.key_range();
        assert!(lo < hi && hi <= KEY_SPACE);
        for k in [lo, hi - 1] {
            let i = Isrc::from_key(k);
            assert!(i.is_some_and(|i| sc.covers(i)));
        }
        if let Some(i) = Isrc::from_key(hi) {
            assert!(!sc.covers(i));
        }
        if let Some(i) = lo.checked_sub(1).and_then(Isrc::from_key) {
            assert!(!sc.covers(i));
        }
        let spec = match sc {
            Scope::Registrant(_) => 1,
            Scope::RegistrantYear(_) => 2,
            Scope::Exact(_) => 3,
        };
        assert_eq!(sc.specificity(), spec);
    }
    parsed.ok()
}

/// `isrc`: [`Isrc::parse`], [`Scope::parse`] and [`isrc::normalize`] on the
/// first two lines of the input (lossy UTF-8): accepted codes round-trip
/// through their compact and hyphenated forms, scopes through their
/// canonical text, and the key order of two codes is their string order; the
/// first 16 bytes, read as two keys, round-trip through `from_key` the same
/// way.
pub fn isrc(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.splitn(3, '\n');
    let first = lines.next().and_then(isrc_text);
    let second = lines.next().and_then(isrc_text);
    if let (Some(p), Some(q)) = (first, second) {
        assert_eq!(
            p.cmp(&q),
            p.compact().cmp(&q.compact()),
            "key order is string order"
        );
    }
    if data.len() >= 16 {
        let key = |b: &[u8]| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[..8]);
            Isrc::from_key(u64::from_le_bytes(w) % KEY_SPACE)
        };
        if let (Some(p), Some(q)) = (key(&data[..8]), key(&data[8..16])) {
            for i in [p, q] {
                assert_eq!(isrc_text(&i.compact()), Some(i));
                assert_eq!(isrc_text(&i.hyphenated()), Some(i));
            }
            assert_eq!(
                p.cmp(&q),
                p.compact().cmp(&q.compact()),
                "key order is string order"
            );
        }
    }
}

// ---- the witnessed log ------------------------------------------------------

/// `checkpoint`: the log's text formats (SPEC.md §15.2, §15.6) — a signed
/// note, the checkpoint in it, and an add-checkpoint request: each accepted
/// input is the only encoding of what it holds (it re-encodes to the same
/// bytes), and a request's proof goes through the consistency verifier.
pub fn checkpoint(data: &[u8]) {
    if let Ok(n) = crate::note::Note::parse(data) {
        assert_eq!(n.to_bytes(), data, "a parsed note is its encoding");
        if let Ok(cp) = crate::note::Checkpoint::parse_text(&n.text) {
            assert_eq!(cp.text(), n.text, "a parsed checkpoint is its text");
        }
    }
    if let Ok(r) = crate::note::AddCheckpoint::parse(data) {
        assert_eq!(r.to_bytes(), data, "a parsed request is its encoding");
        let h = sha256(&r.note);
        let _ = crate::merkle::verify_consistency(r.old, r.old.saturating_add(3), &h, &h, &r.proof);
    }
}

// ---- receipts --------------------------------------------------------------

/// `receipt`: [`receipt::AnyReceipt::from_bytes`] (canonical, round-trips,
/// renders as JSON), then [`receipt::verify`] pinned to the receipt's own
/// first root — verification needs no disk.
pub fn receipt(data: &[u8]) {
    let Ok(any) = receipt::AnyReceipt::from_bytes(FILE, data) else {
        return;
    };
    assert_eq!(
        any.to_bytes(),
        data,
        "a parsed receipt is its canonical encoding"
    );
    let _ = any.to_json();
    let (roots, ranges, prefixes, answers, manifest_sha) = match &any {
        receipt::AnyReceipt::Full(r) => (
            &r.roots,
            &r.ranges,
            &r.prefixes,
            &r.answers,
            sha256(&r.manifest),
        ),
        receipt::AnyReceipt::Compact(r) => (
            &r.roots,
            &r.ranges,
            &r.prefixes,
            &r.answers,
            r.entry.manifest,
        ),
    };
    let compact = matches!(any, receipt::AnyReceipt::Compact(_));
    for c in ranges
        .iter()
        .flat_map(|rp| &rp.chunks)
        .chain(&prefixes.chunks)
    {
        if compact {
            // A decoded compact chunk re-encodes to exactly its bytes.
            if let Some(b) = receipt::chunk::decode(&c.bytes) {
                assert_eq!(receipt::chunk::encode(&b).as_deref(), Some(&c.bytes[..]));
            }
        } else {
            let _ = receipt::parse_chunk(&c.bytes);
        }
    }
    let Some(pinned) = roots.first() else {
        return;
    };
    if let Ok(v) = receipt::verify(FILE, data, pinned, &LIMITS) {
        assert_eq!(v.answers.len(), answers.len());
        assert_eq!(v.manifest_sha256, manifest_sha);
        for (va, ra) in v.answers.iter().zip(answers) {
            assert_eq!(va.answer.decision.name(), ra.answer.decision);
            assert_eq!(va.answer.reason.name(), ra.answer.reason);
        }
    }
}

// ---- the local index -------------------------------------------------------

/// A small fixed state and a manifest committing to it, for `index`.
#[derive(Debug)]
struct IndexFixture {
    state: State,
    manifest: Manifest,
    sha: [u8; 32],
}

fn fixture_policy(n: u8, role: &str) -> Policy {
    Policy {
        from: None,
        uses: [0, n % 3, 0, 0, 0],
        terms: None,
        until: None,
        revoke: false,
        status: "active".into(),
        exclude: Vec::new(),
        include: vec!["WW".into()],
        declarant: Declarant {
            id: format!("ddex:PADPIDA20140212{n:02}U"),
            name: format!("Label {n}"),
            role: role.into(),
        },
    }
}

fn index_fixture() -> &'static IndexFixture {
    static FX: OnceLock<IndexFixture> = OnceLock::new();
    FX.get_or_init(|| {
        let mut st = State::default();
        let pols = [
            st.policies.intern(&fixture_policy(1, "label")),
            st.policies.intern(&fixture_policy(2, "artist")),
            st.policies.intern(&fixture_policy(3, "rights_owner")),
        ];
        // Range 0: 65 rows (two chunks); range 1: empty; range 2: three rows,
        // two of them on one key.
        let bounds = [0, 1_000_000_000_000, 50_000_000_000_000, KEY_SPACE];
        let mut r0 = Rows::default();
        for i in 0..65u64 {
            r0.push(
                10_000_000 * (i + 1) + i % 3,
                i + 1,
                &format!("R-{}", i + 1),
                pols[(i % 3) as usize],
            );
        }
        // Prefix entries: a registrant, one year of it, another registrant.
        for (scope, seq, id) in [
            ("GB-NWR", 200, "P-200"),
            ("GB-NWR-25", 201, "P-201"),
            ("US-QZ9", 202, "P-202"),
            ("GB-NWR", 203, "P-203"),
        ] {
            if let Ok(scope) = Scope::parse(scope) {
                st.prefixes.push(Record {
                    scope,
                    seq,
                    id: id.into(),
                    policy: fixture_policy((seq % 3) as u8 + 1, "label"),
                });
            }
        }
        st.prefixes
            .sort_by_key(|r| (state::prefix_key(r.scope), r.seq));
        let mut r2 = Rows::default();
        r2.push(60_000_000_000_000, 100, "CR-100", pols[0]);
        r2.push(60_000_000_000_000, 101, "other", pols[1]);
        r2.push(KEY_SPACE - 1, 7, "D7", pols[2]);
        for (i, rows) in [r0, Rows::default(), r2].into_iter().enumerate() {
            st.ranges.push((bounds[i], bounds[i + 1], rows));
        }
        let hashes = st.policy_hashes();
        let ranges: Vec<Range> = st
            .ranges
            .iter()
            .map(|(lo, hi, rows)| Range {
                lo: *lo,
                leaf: state::range_leaf(*lo, *hi, rows, &hashes),
                count: rows.len() as u64,
                shard: FileRef {
                    count: rows.len() as u64,
                    length: 0,
                    sha256: [0; 32],
                    raw_length: 0,
                },
            })
            .collect();
        let n_prefixes = st.prefixes.len() as u64;
        let entries = ranges.iter().map(|r| r.count).sum::<u64>() + n_prefixes;
        let mut manifest = Manifest {
            base: 1,
            delta: None,
            layers: Vec::new(),
            ranges,
            created: 0,
            entries,
            expires: u64::MAX,
            version: 1,
            prefixes: FileRef {
                count: n_prefixes,
                length: 0,
                sha256: [1; 32],
                raw_length: 0,
            },
            previous: None,
            state_root: [0; 32],
            prefix_leaf: state::prefix_leaf(&st.prefixes),
        };
        manifest.state_root = state::merkle_root(&state::leaves_of(&manifest));
        IndexFixture {
            state: st,
            manifest,
            sha: [0x5a; 32],
        }
    })
}

/// The index file of the `index` target's fixed state: its seed.
pub fn index_seed() -> Vec<u8> {
    let fx = index_fixture();
    let Ok(dir) = tempfile::tempdir() else {
        return Vec::new();
    };
    let path = dir.path().join("seed.idx");
    if crate::index::write(&path, &fx.sha, &fx.state).is_err() {
        return Vec::new();
    }
    std::fs::read(&path).unwrap_or_default()
}

/// `index`: the input is the local index file of a small fixed state (seed:
/// [`index_seed`]); [`Index::open`] it against the manifest of that state,
/// look keys up through `chunks_for`, and load everything. An index whose
/// every chunk and table verified must hold exactly the fixed state, and
/// every lookup must see exactly that key's entries.
pub fn index(data: &[u8]) {
    let fx = index_fixture();
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let path = dir.path().join("fuzz.idx");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let Ok(Some(ix)) = Index::open(&path, &fx.manifest, &fx.sha, &LIMITS) else {
        return;
    };
    let probes: Vec<(usize, u64)> = fx
        .state
        .ranges
        .iter()
        .enumerate()
        .flat_map(|(i, (lo, hi, rows))| {
            let mut ks = vec![*lo, hi - 1];
            ks.extend(rows.keys.iter().flat_map(|&k| [k, k + 1]));
            ks.into_iter().map(move |k| (i, k))
        })
        .collect();
    for &(i, k) in &probes {
        let _ = ix.chunks_for(i, k);
    }
    // `verify_all` reads everything `load_state` reads and the stored trees
    // (which only audit paths use): whenever it passes, so must the load.
    let loaded = ix.load_state();
    if ix.verify_all().is_err() {
        return;
    }
    assert!(
        loaded.is_ok(),
        "verify_all passed but load_state refused the index"
    );
    let Ok(st) = loaded else {
        return;
    };
    assert_eq!(st.ranges.len(), fx.state.ranges.len());
    for ((lo, hi, rows), (flo, fhi, frows)) in st.ranges.iter().zip(&fx.state.ranges) {
        assert_eq!((lo, hi), (flo, fhi));
        assert_eq!(
            row_values(rows, &st.policies),
            row_values(frows, &fx.state.policies),
            "a verified index holds exactly the state it commits to"
        );
    }
    assert_eq!(
        ix.prefix_records().ok().as_ref(),
        Some(&fx.state.prefixes),
        "a verified index holds exactly the prefix table it commits to"
    );
    for r in &fx.state.prefixes {
        let (lo, hi) = r.scope.key_range();
        for isrc in [lo, hi - 1, hi].into_iter().filter_map(Isrc::from_key) {
            let mut want: Vec<(&str, u64)> = fx
                .state
                .prefixes
                .iter()
                .filter(|x| x.scope.covers(isrc))
                .map(|x| (x.id.as_str(), x.seq))
                .collect();
            let hits = ix.covering(isrc);
            assert!(hits.is_ok(), "a verified index finds every prefix scope");
            let hits = hits.unwrap_or_default();
            let mut got: Vec<(&str, u64)> = hits.iter().map(|h| (h.id(), h.seq())).collect();
            want.sort_unstable();
            got.sort_unstable();
            assert_eq!(
                got, want,
                "the index finds exactly the covering prefix entries"
            );
        }
    }
    for &(i, k) in &probes {
        let got = ix.chunks_for(i, k);
        assert!(got.is_ok(), "a verified index answers every lookup");
        let Ok((_, chunks)) = got else { continue };
        let mut seen: Vec<(u64, String)> = chunks
            .iter()
            .flat_map(|c| c.entries_of(k).map(|(s, id, _)| (s, id.to_string())))
            .collect();
        seen.sort();
        let rows = &fx.state.ranges[i].2;
        let want: Vec<(u64, String)> = (0..rows.len())
            .filter(|&j| rows.keys[j] == k)
            .map(|j| (rows.seqs[j], rows.id(j).to_string()))
            .collect();
        assert_eq!(seen, want, "a lookup sees exactly the key's entries");
    }
}

// ---- bundles ---------------------------------------------------------------

/// Walk `dest` (a bundle's staging directory): only the five site
/// directories, as real directories, and regular files with exact site
/// names. Returns the file count and byte total.
fn staged(dest: &Path) -> (u64, u64) {
    let (mut files, mut bytes) = (0u64, 0u64);
    let Ok(top) = std::fs::read_dir(dest) else {
        return (0, 0);
    };
    for e in top.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(meta) = std::fs::symlink_metadata(e.path()) else {
            continue;
        };
        if meta.is_dir() {
            assert!(
                SITE_DIRS.contains(&name.as_str()),
                "only site directories: {name:?}"
            );
            let Ok(sub) = std::fs::read_dir(e.path()) else {
                continue;
            };
            for f in sub.flatten() {
                let rel = format!("{name}/{}", f.file_name().to_string_lossy());
                let m = std::fs::symlink_metadata(f.path());
                assert!(
                    m.as_ref().is_ok_and(std::fs::Metadata::is_file),
                    "{rel:?} is a regular file"
                );
                assert_eq!(SiteFile::parse(&rel).map(SiteFile::name), Some(rel.clone()));
                files += 1;
                bytes += m.map_or(0, |m| m.len());
            }
        } else {
            assert!(meta.is_file(), "{name:?} is a regular file");
            assert_eq!(SiteFile::parse(&name), Some(SiteFile::Head));
            files += 1;
            bytes += meta.len();
        }
    }
    (files, bytes)
}

/// `bundle`: the input is a tar file; [`crate::bundle::unpack`] it into an
/// empty staging directory inside a fresh temporary directory. Whatever it
/// decides, nothing may appear outside the staging directory (the parent
/// holds exactly the tar file and the staging directory, the tar file is
/// unchanged), and the staging directory holds only site directories and
/// regular files with site names; when accepted, exactly the files and bytes
/// it reports.
pub fn bundle(data: &[u8]) {
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let tar = dir.path().join("in.tar");
    let dest = dir.path().join("dest");
    if std::fs::write(&tar, data).is_err() || std::fs::create_dir(&dest).is_err() {
        return;
    }
    let r = crate::bundle::unpack(&tar, &dest, &LIMITS);
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    assert_eq!(
        names,
        ["dest", "in.tar"],
        "nothing is written outside the staging directory"
    );
    assert!(
        std::fs::symlink_metadata(&dest).is_ok_and(|m| m.is_dir()),
        "the staging directory stays a directory"
    );
    assert_eq!(
        std::fs::read(&tar).ok().as_deref(),
        Some(data),
        "the bundle itself is not modified"
    );
    let (files, bytes) = staged(&dest);
    if let Ok(u) = r {
        assert_eq!(
            (u.files, u.bytes),
            (files, bytes),
            "the report matches what was staged"
        );
    }
}

/// A fuzz target's entry point.
pub type Target = fn(&[u8]);

/// Every target with its function, by `cargo fuzz` target name (the
/// publisher's `import_rows` lives in `consentry_publish::fuzzing`).
pub const TARGETS: &[(&str, Target)] = &[
    ("envelope", envelope),
    ("root", root),
    ("head", head),
    ("manifest", manifest),
    ("data_file", data_file),
    ("shard", shard),
    ("layer", layer),
    ("prefixes", prefixes),
    ("bundle", bundle),
    ("isrc", isrc),
    ("receipt", receipt),
    ("checkpoint", checkpoint),
    ("index", index),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_keys_are_the_example_snapshots_root() {
        let bytes = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../snapshots/example/root/1.cbor"
        ))
        .unwrap();
        let (_, root) = verify::parse_root("root/1.cbor", &bytes, &Limits::DEFAULT).unwrap();
        let mine = example_root();
        assert_eq!(root.keys, mine.keys);
        assert_eq!(root.roles, mine.roles);
        assert_eq!(example_keys().len(), 3);
    }

    #[test]
    fn index_seed_opens_and_holds_the_fixed_state() {
        let seed = index_seed();
        assert!(!seed.is_empty());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.idx");
        std::fs::write(&path, &seed).unwrap();
        let fx = index_fixture();
        let ix = Index::open(&path, &fx.manifest, &fx.sha, &LIMITS)
            .unwrap()
            .unwrap();
        ix.verify_all().unwrap();
        fx.manifest.check(&LIMITS).unwrap();
        index(&seed);
    }

    #[test]
    fn targets_accept_empty_and_tiny_inputs() {
        for (_, f) in TARGETS {
            for input in [&b""[..], b"\0", b"\xff\xff", b"\xa0"] {
                f(input);
            }
        }
    }
}
