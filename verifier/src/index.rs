//! The local lookup index, `local/index/{manifest_hex}.idx`, and the prefix
//! table lookup structure.
//!
//! The index is a cache of verified data, never a source of trust: each block
//! holds the chunk hashes of one range and its canonical entry stream
//! ([`crate::state::entry_stream`]). On first use of a range its chunk hashes
//! are checked against the signed range leaf (one MTH, SPEC.md §6); on first
//! use of a chunk its bytes are checked against its chunk hash. Anything that
//! does not match means the index is corrupt: the caller deletes it and
//! rebuilds it from the verified shard and layer files.
//!
//! Format (all integers little-endian):
//!
//! ```text
//! magic            8 bytes  "CSTRYIDX"
//! format version   u32      5
//! manifest sha256  32 bytes SHA-256 of the manifest envelope this index belongs to
//! n_policies       u32
//!   n_policies × SHA-256 of each policy, strictly increasing (the policy's index
//!                is its place here)
//!   n_policies × u64 end of each policy's bytes in the blob (non-decreasing)
//!   blob             the policies' canonical CBOR, back to back
//!   (opening reads the hashes and ends only; a policy's bytes are read, checked
//!   against its hash and decoded when a verified chunk first names it)
//! n_prefixes       u32      must equal the manifest's prefix count
//!   n_prefixes × (prefix key u64, seq u64, len(id) u8, id, policy index u32):
//!                the prefix table in table order (SPEC.md §6), checked at open
//!                against the manifest's prefix_leaf, so a reader never decodes
//!                the prefix file
//! n_ranges         u32      must equal the manifest's range count
//!   n_ranges × (lo u64, hi u64, count u64, offset u64, len u64)
//! blocks           range i's block is `len` bytes at `offset`:
//!   n = ceil(count / 16) × (first key u64, chunk start u64, chunk hash 32 bytes)
//!   the RFC 6962 tree over the chunk hashes above its leaf level, bottom up:
//!                level k ≥ 1 holds ceil(n / 2^k) nodes of 32 bytes (an
//!                unpaired last node carried up unchanged), up to the root
//!   the entry stream: key u64 BE ‖ seq u64 BE ‖ len(id) u8 ‖ id ‖ policy SHA-256
//!   (chunk starts are byte offsets into the entry stream)
//! ```
//!
//! Blocks follow the header back to back in range order and end the file.
//! Opening reads only the header, with positioned reads; a lookup reads only
//! the chunk table of the key's range and the chunk(s) holding the key. The
//! first chunks loaded from a range are each proven by their audit path (the
//! siblings read from the stored tree, ~13 hashes) up to the signed range
//! leaf, so a first lookup never hashes a whole table; after
//! [`PATH_PROOFS_PER_TABLE`] of them the whole table is checked against the
//! leaf once (one MTH) and later chunks only against their row's hash. The
//! first keys in a chunk table are hints: a loaded chunk's first key must
//! equal its hint, and a lookup checks that its first chunk starts below the
//! key and its last chunk ends above it (or at the range's end).

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::rc::Rc;

use crate::cbor;
use crate::columns::Rows;
use crate::declaration::Record;
use crate::docs::Manifest;
use crate::envelope::sha256;
use crate::error::{Code, Rejection, reject};
use crate::isrc::{Isrc, Scope};
use crate::isrc::{REGISTRANT_SPAN, REGISTRANT_YEAR_SPAN};
use crate::limits::Limits;
use crate::model::Policy;
use crate::state::{
    CHUNK, ENTRY_FIXED, MerkleTree, State, chunk_bounds, chunk_count, chunk_hash, chunk_hashes,
    entry_stream, leaf_hash, merkle_root, policy_hash, prefix_key, prefix_leaf_of_root,
    prefix_scope, range_leaf_of_root,
};

/// File magic.
pub const MAGIC: &[u8; 8] = b"CSTRYIDX";
/// Format version written and accepted.
pub const FORMAT_VERSION: u32 = 5;
/// Verified chunks kept in memory by one reader before older ones are
/// dropped: a cap, not a reservation. A chunk costs ~1.2 KB (16 entries), so
/// this holds every chunk of a 10^7-entry registry — warm point lookups over
/// all of it never go back to the file — and memory stays flat however many
/// ISRCs one `check` answers. Sorted batches do not fill it (they read ahead).
pub const DEFAULT_CACHE_BYTES: usize = 1024 * 1024 * 1024;
/// Longest a chunk's bytes can be: 16 entries with 255-byte ids.
const MAX_CHUNK_BYTES: u64 = (CHUNK * (ENTRY_FIXED + 255)) as u64;
/// One read of a forward scan (a sorted batch, a full check): 64 chunks.
const READ_AHEAD_BYTES: u64 = 64 * 1024;
/// Bytes of one chunk-table row: first key, start, hash.
const CHUNK_ROW: u64 = 8 + 8 + 32;
/// Chunks of one range proven by audit path before its whole table is
/// checked at once: a path costs ~15 hashes, a whole 8192-chunk table
/// ~16 000, so point lookups stay cheap and scans pay one MTH per range.
pub const PATH_PROOFS_PER_TABLE: u32 = 64;

/// Nodes of the RFC 6962 tree over `n` leaves above its leaf level (each
/// level halves the one below, rounding up, up to the single root).
pub fn tree_nodes(n: u64) -> u64 {
    let (mut m, mut t) = (n, 0u64);
    // At most 64 halvings.
    while m > 1 {
        m = m.div_ceil(2);
        t += m;
    }
    t
}

/// Write the index of `state` (which must be verified against the manifest
/// whose hash is `manifest_sha256`) atomically to `path`.
pub fn write(path: &Path, manifest_sha256: &[u8; 32], state: &State) -> Result<(), Rejection> {
    // Only the policies some row uses go into the table.
    let mut used = vec![false; state.policies.list.len()];
    for (_, _, rows) in &state.ranges {
        for &p in &rows.pol {
            used[p as usize] = true;
        }
    }
    let hashes = state.policy_hashes();
    let mut pols: Vec<([u8; 32], Vec<u8>)> = state
        .policies
        .list
        .iter()
        .zip(&hashes)
        .zip(&used)
        .filter(|(_, u)| **u)
        .map(|((p, h), _)| (*h, cbor::to_vec(p)))
        .collect();
    let prefix_hashes: Vec<[u8; 32]> = state
        .prefixes
        .iter()
        .map(|r| policy_hash(&r.policy))
        .collect();
    pols.extend(
        state
            .prefixes
            .iter()
            .zip(&prefix_hashes)
            .map(|(r, h)| (*h, cbor::to_vec(&r.policy))),
    );
    pols.sort_unstable_by_key(|p| p.0);
    pols.dedup_by(|a, b| a.0 == b.0);
    let place = |h: &[u8; 32]| pols.binary_search_by_key(h, |p| p.0).unwrap_or(0) as u32;

    let mut header_len: u64 = 8 + 4 + 32 + 4 + 4 + 4 + 40 * state.ranges.len() as u64;
    header_len += pols.iter().map(|p| 40 + p.1.len() as u64).sum::<u64>();
    header_len += state
        .prefixes
        .iter()
        .map(|r| 21 + r.id.len() as u64)
        .sum::<u64>();
    let block_len = |rows: &Rows| -> u64 {
        let n = chunk_count(rows.len() as u64);
        n * CHUNK_ROW
            + tree_nodes(n) * 32
            + (0..rows.len())
                .map(|i| (ENTRY_FIXED + rows.id(i).len()) as u64)
                .sum::<u64>()
    };

    // Private (the index is not a site file), written whole or not at all.
    crate::fsio::write_atomic_with(path, None, |f| {
        let mut w = BufWriter::new(f);
        w.write_all(MAGIC)?;
        w.write_all(&FORMAT_VERSION.to_le_bytes())?;
        w.write_all(manifest_sha256)?;
        w.write_all(&(pols.len() as u32).to_le_bytes())?;
        for (h, _) in &pols {
            w.write_all(h)?;
        }
        let mut end = 0u64;
        for (_, b) in &pols {
            end += b.len() as u64;
            w.write_all(&end.to_le_bytes())?;
        }
        for (_, b) in &pols {
            w.write_all(b)?;
        }
        w.write_all(&(state.prefixes.len() as u32).to_le_bytes())?;
        for (r, h) in state.prefixes.iter().zip(&prefix_hashes) {
            w.write_all(&prefix_key(r.scope).to_le_bytes())?;
            w.write_all(&r.seq.to_le_bytes())?;
            w.write_all(&[r.id.len() as u8])?;
            w.write_all(r.id.as_bytes())?;
            w.write_all(&place(h).to_le_bytes())?;
        }
        w.write_all(&(state.ranges.len() as u32).to_le_bytes())?;
        let mut offset = header_len;
        for (lo, hi, rows) in &state.ranges {
            let len = block_len(rows);
            for v in [*lo, *hi, rows.len() as u64, offset, len] {
                w.write_all(&v.to_le_bytes())?;
            }
            offset += len;
        }
        for (_, _, rows) in &state.ranges {
            w.write_all(&block_of(rows, &hashes).0)?;
        }
        w.flush()
    })
}

/// Range block bytes exactly as [`write`] lays them out (chunk rows, the
/// tree above the chunk hashes, the entry stream) for `rows` whose policies
/// hash to `policy_hashes`, and the chunk hashes.
pub fn block_of(rows: &Rows, policy_hashes: &[[u8; 32]]) -> (Vec<u8>, Vec<[u8; 32]>) {
    let stream = entry_stream(rows, policy_hashes);
    let bounds = chunk_bounds(&stream).unwrap_or_default();
    let n = bounds.len().saturating_sub(1) as u64;
    let mut out = Vec::with_capacity((n * CHUNK_ROW + tree_nodes(n) * 32) as usize + stream.len());
    let mut hashes = Vec::with_capacity(n as usize);
    for win in bounds.windows(2) {
        let first = u64::from_be_bytes(stream[win[0]..win[0] + 8].try_into().unwrap_or_default());
        let h = chunk_hash(&stream[win[0]..win[1]]);
        out.extend_from_slice(&first.to_le_bytes());
        out.extend_from_slice(&(win[0] as u64).to_le_bytes());
        out.extend_from_slice(&h);
        hashes.push(h);
    }
    for level in MerkleTree::new(&hashes).levels().iter().skip(1) {
        for node in level {
            out.extend_from_slice(node);
        }
    }
    out.extend_from_slice(&stream);
    (out, hashes)
}

/// Sequential reads through `read_at`, so opening never depends on (or moves)
/// a shared file cursor.
struct PosReader<'a> {
    file: &'a File,
    pos: u64,
}

impl Read for PosReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// One range's place in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RangeEntry {
    lo: u64,
    hi: u64,
    count: u64,
    offset: u64,
    len: u64,
}

/// A verified, parsed chunk: its entry-stream bytes and where each entry starts.
#[derive(Debug)]
pub struct Chunk {
    bytes: Vec<u8>,
    /// Entries held (at most [`CHUNK`]); the arrays are inline so a chunk
    /// is one allocation besides its bytes.
    len: usize,
    keys: [u64; CHUNK],
    starts: [u16; CHUNK],
    pols: [u32; CHUNK],
}

impl Chunk {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn keys(&self) -> &[u64] {
        &self.keys[..self.len]
    }

    /// The chunk's entry-stream bytes (they hash to its chunk hash).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Key of entry `i`.
    pub fn key(&self, i: usize) -> u64 {
        self.keys[i]
    }

    fn entry(&self, i: usize) -> (u64, u64, &str, u32) {
        let s = usize::from(self.starts[i]);
        let b = &self.bytes;
        let seq = u64::from_be_bytes(b[s + 8..s + 16].try_into().unwrap_or_default());
        let n = usize::from(b[s + 16]);
        // Checked ASCII when the chunk was parsed.
        let id = std::str::from_utf8(&b[s + 17..s + 17 + n]).unwrap_or("");
        (self.keys[i], seq, id, self.pols[i])
    }

    /// `(seq, id, policy index)` of every entry with `key`.
    pub fn entries_of(&self, key: u64) -> impl Iterator<Item = (u64, &str, u32)> {
        let keys = self.keys();
        let a = keys.partition_point(|&k| k < key);
        let b = a + keys[a..].partition_point(|&k| k == key);
        (a..b).map(|i| {
            let (_, seq, id, p) = self.entry(i);
            (seq, id, p)
        })
    }

    fn weight(&self) -> usize {
        self.bytes.len() + std::mem::size_of::<Chunk>()
    }
}

/// A range's chunk table, checked against the signed range leaf.
#[derive(Debug)]
pub struct ChunkTable {
    first_keys: Vec<u64>,
    starts: Vec<u64>,
    /// The rows' chunk hashes: trusted only once `whole` is set, or for a
    /// chunk whose audit path was checked.
    hashes: Vec<[u8; 32]>,
    stream_len: u64,
    /// File offset of the stored tree (levels above the leaves).
    tree_offset: u64,
    /// File offset of the entry stream (chunk starts are relative to it).
    stream_offset: u64,
    /// MTH(hashes) was checked against the signed range leaf.
    whole: std::cell::Cell<bool>,
    /// Chunks proven by audit path so far.
    paths: std::cell::Cell<u32>,
}

impl ChunkTable {
    /// The chunk hashes, in order (their MTH is committed by the range leaf).
    pub fn hashes(&self) -> &[[u8; 32]] {
        &self.hashes
    }

    /// Number of chunks.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    fn weight(&self) -> usize {
        self.hashes.len() * 48
    }
}

/// A cache bounded by a byte budget that evicts in fill order (FIFO, not
/// LRU: a hit does not refresh an entry; point lookups over a catalogue show
/// no reuse that recency would catch, and a fill-order queue needs no write
/// on the read path).
#[derive(Debug)]
struct FifoCache<K, V> {
    map: HashMap<K, Rc<V>, FastHash>,
    order: VecDeque<K>,
    bytes: usize,
}

impl<K, V> Default for FifoCache<K, V> {
    fn default() -> Self {
        FifoCache {
            map: HashMap::default(),
            order: VecDeque::new(),
            bytes: 0,
        }
    }
}

impl<K: std::hash::Hash + Eq + Copy, V> FifoCache<K, V> {
    fn get(&self, k: &K) -> Option<Rc<V>> {
        self.map.get(k).cloned()
    }

    fn put(&mut self, k: K, v: Rc<V>, size: usize, budget: usize, weight: fn(&V) -> usize) {
        // Each pass removes one entry: bounded by the number held.
        while self.bytes + size > budget {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(ov) = self.map.remove(&old) {
                self.bytes -= weight(&ov);
            }
        }
        if self.map.insert(k, v).is_none() {
            self.order.push_back(k);
            self.bytes += size;
        }
    }
}

#[derive(Debug, Default)]
struct Cache {
    tables: FifoCache<usize, ChunkTable>,
    chunks: FifoCache<(usize, usize), Chunk>,
}

/// The index's policy table: sorted hashes and where each policy's bytes
/// lie. A policy is read, checked against its hash and decoded (canonical
/// check and validation) the first time a verified chunk names it: a
/// registry has tens of thousands of policies, a single lookup needs one or
/// two, and reading and decoding them all made up most of the time to the
/// first answer.
#[derive(Debug)]
struct PolicyTable {
    hashes: Vec<[u8; 32]>,
    /// `ends[i]`: end of policy i's bytes in the blob (its start is `ends[i-1]`).
    ends: Vec<u64>,
    blob_offset: u64,
    /// Boxed: a cell is 8 bytes until its policy is decoded (tens of
    /// thousands of cells, one or two decoded per lookup).
    decoded: Vec<std::cell::OnceCell<Box<Policy>>>,
    /// `buckets[b]..buckets[b + 1]`: the hashes whose first
    /// [`BUCKET_BITS`] bits are `b` — a chunk's entries find their policy
    /// among a handful, not by a binary search over the whole table for
    /// every entry.
    buckets: Vec<u32>,
}

impl PolicyTable {
    fn find(&self, h: &[u8; 32]) -> Option<u32> {
        let b = bucket_of(h);
        let (lo, hi) = (self.buckets[b] as usize, self.buckets[b + 1] as usize);
        self.hashes[lo..hi]
            .iter()
            .position(|x| x == h)
            .map(|i| (lo + i) as u32)
    }
}

/// Bits of a policy hash that pick its bucket: 4096 buckets hold a few
/// policies each even at 10^5 policies, and the table (16 KB) costs nothing
/// to build at open.
const BUCKET_BITS: u32 = 12;

fn bucket_of(h: &[u8; 32]) -> usize {
    usize::from(u16::from_be_bytes([h[0], h[1]]) >> (16 - BUCKET_BITS))
}

/// An open index whose header matched the manifest.
#[derive(Debug)]
pub struct Index {
    file: File,
    path: String,
    ranges: Vec<RangeEntry>,
    leaves: Vec<[u8; 32]>,
    policies: PolicyTable,
    prefixes: PrefixTable,
    cache: RefCell<Cache>,
    cache_budget: usize,
    /// The last read-ahead: range, stream offset, bytes.
    ahead: RefCell<Option<(usize, u64, Vec<u8>)>>,
}

fn corrupt(path: &str, detail: impl Into<String>) -> Rejection {
    reject(path, Code::IndexCorrupt, detail)
}

impl Index {
    /// Open the index at `path` for `manifest`. `Ok(None)` when there is no
    /// file; `index_corrupt` when its header does not match the manifest.
    pub fn open(
        path: &Path,
        manifest: &Manifest,
        manifest_sha256: &[u8; 32],
        limits: &Limits,
    ) -> Result<Option<Index>, Rejection> {
        let loc = path.display().to_string();
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(corrupt(&loc, format!("cannot be opened: {e}"))),
        };
        let file_len = file
            .metadata()
            .map_err(|e| corrupt(&loc, format!("cannot be read: {e}")))?
            .len();
        let bad = |d: &str| corrupt(&loc, d.to_string());
        let trunc = |_: io::Error| bad("the header is truncated");
        let mut r = BufReader::new(PosReader {
            file: &file,
            pos: 0,
        });
        let mut b8 = [0u8; 8];
        let mut b4 = [0u8; 4];
        let mut b32 = [0u8; 32];
        r.read_exact(&mut b8).map_err(trunc)?;
        if &b8 != MAGIC {
            return Err(bad("it does not start with CSTRYIDX"));
        }
        r.read_exact(&mut b4).map_err(trunc)?;
        if u32::from_le_bytes(b4) != FORMAT_VERSION {
            return Err(bad("unknown format version"));
        }
        r.read_exact(&mut b32).map_err(trunc)?;
        if &b32 != manifest_sha256 {
            return Err(bad("it belongs to another manifest"));
        }
        let mut pos: u64 = 8 + 4 + 32;
        r.read_exact(&mut b4).map_err(trunc)?;
        pos += 4;
        let n_pol = u64::from(u32::from_le_bytes(b4));
        if n_pol > limits.max_policies {
            return Err(bad("too many policies"));
        }
        let n = n_pol as usize;
        if n_pol.saturating_mul(40) > file_len.saturating_sub(pos) {
            return Err(bad("the policy table runs past the end of the file"));
        }
        // One positioned read for both arrays (not through the small buffer).
        let mut raw = vec![0u8; n * 40];
        file.read_exact_at(&mut raw, pos).map_err(trunc)?;
        let (raw_hashes, raw_ends) = raw.split_at(n * 32);
        pos += 40 * n_pol;
        let hashes: Vec<[u8; 32]> = raw_hashes
            .chunks_exact(32)
            .map(|c| c.try_into().unwrap_or_default())
            .collect();
        if hashes.windows(2).any(|w| w[0] >= w[1]) {
            return Err(bad("the policy hashes are not strictly increasing"));
        }
        let ends: Vec<u64> = raw_ends
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
            .collect();
        if ends.windows(2).any(|w| w[0] > w[1]) {
            return Err(bad("the policy ends are not in order"));
        }
        let blob = ends.last().copied().unwrap_or(0);
        if blob > file_len.saturating_sub(pos) {
            return Err(bad("a policy runs past the end of the file"));
        }
        let blob_offset = pos;
        pos += blob;
        // Skip the blob: the next reads start after it.
        let mut r = BufReader::with_capacity(1 << 16, PosReader { file: &file, pos });
        let mut b4 = [0u8; 4];
        let mut buckets = vec![0u32; (1 << BUCKET_BITS) + 1];
        for h in &hashes {
            buckets[bucket_of(h) + 1] += 1;
        }
        for b in 1..buckets.len() {
            buckets[b] += buckets[b - 1];
        }
        let policies = PolicyTable {
            decoded: (0..n).map(|_| std::cell::OnceCell::new()).collect(),
            buckets,
            hashes,
            ends,
            blob_offset,
        };
        r.read_exact(&mut b4).map_err(trunc)?;
        pos += 4;
        let n_pre = u64::from(u32::from_le_bytes(b4));
        if n_pre != manifest.prefixes.count {
            return Err(bad("its prefix count differs from the manifest's"));
        }
        let mut rows = Rows::default();
        for _ in 0..n_pre {
            let mut head = [0u8; 17];
            r.read_exact(&mut head).map_err(trunc)?;
            let mut id = vec![0u8; usize::from(head[16])];
            r.read_exact(&mut id).map_err(trunc)?;
            r.read_exact(&mut b4).map_err(trunc)?;
            pos += 21 + id.len() as u64;
            let key = u64::from_le_bytes(head[..8].try_into().unwrap_or_default());
            let seq = u64::from_le_bytes(head[8..16].try_into().unwrap_or_default());
            let pol = u32::from_le_bytes(b4);
            if pol as usize >= n || id.is_empty() || !id.iter().all(u8::is_ascii_graphic) {
                return Err(bad("a prefix entry is malformed"));
            }
            rows.push(key, seq, std::str::from_utf8(&id).unwrap_or(""), pol);
        }
        // The prefix entries must be exactly the signed prefix table.
        let leaf = prefix_leaf_of_root(n_pre, &merkle_root(&chunk_hashes(&rows, &policies.hashes)));
        if leaf != manifest.prefix_leaf {
            return Err(bad(
                "its prefix entries do not hash to the manifest's prefix_leaf",
            ));
        }
        let prefixes = PrefixTable::from_rows(&rows)
            .ok_or_else(|| bad("a prefix entry has no prefix scope"))?;
        r.read_exact(&mut b4).map_err(trunc)?;
        pos += 4;
        let n_ranges = u32::from_le_bytes(b4) as usize;
        if n_ranges != manifest.ranges.len() {
            return Err(bad("its range count differs from the manifest's"));
        }
        let mut raw = Vec::with_capacity(n_ranges);
        for _ in 0..n_ranges {
            let mut v = [0u64; 5];
            for x in &mut v {
                r.read_exact(&mut b8).map_err(trunc)?;
                *x = u64::from_le_bytes(b8);
            }
            pos += 40;
            raw.push(RangeEntry {
                lo: v[0],
                hi: v[1],
                count: v[2],
                offset: v[3],
                len: v[4],
            });
        }
        let mut expect = pos;
        for (i, e) in raw.iter().enumerate() {
            if (e.lo, e.hi) != manifest.range_bounds(i) || e.count != manifest.ranges[i].count {
                return Err(corrupt(
                    &loc,
                    format!("range {i} differs from the manifest's bounds or count"),
                ));
            }
            if e.offset != expect
                || e.count > limits.max_records_per_file
                || e.len
                    < chunk_count(e.count).saturating_mul(CHUNK_ROW)
                        + tree_nodes(chunk_count(e.count)).saturating_mul(32)
                        + e.count.saturating_mul((ENTRY_FIXED + 1) as u64)
            {
                return Err(corrupt(
                    &loc,
                    format!("range {i} has a bad offset or length"),
                ));
            }
            expect = expect.saturating_add(e.len);
        }
        if expect != file_len {
            return Err(bad("the blocks do not end where the file ends"));
        }
        Ok(Some(Index {
            file,
            path: loc,
            ranges: raw,
            leaves: manifest.ranges.iter().map(|r| r.leaf).collect(),
            policies,
            prefixes,
            cache: RefCell::new(Cache::default()),
            cache_budget: DEFAULT_CACHE_BYTES,
            ahead: RefCell::new(None),
        }))
    }

    /// Keep at most this many bytes of verified blocks in memory.
    pub fn set_cache_budget(&mut self, bytes: usize) {
        self.cache_budget = bytes;
    }

    /// The policy with index `i` in the table, decoded on first use; a
    /// policy whose bytes are not a canonical, valid Policy is
    /// `index_corrupt`.
    pub fn policy(&self, i: u32) -> Result<&Policy, Rejection> {
        let t = &self.policies;
        let i = i as usize;
        let Some(cell) = t.decoded.get(i) else {
            return Err(corrupt(
                &self.path,
                format!("policy {i} is not in the table"),
            ));
        };
        if let Some(p) = cell.get() {
            return Ok(p);
        }
        let start = if i == 0 { 0 } else { t.ends[i - 1] };
        let mut bytes = vec![0u8; (t.ends[i] - start) as usize];
        self.file
            .read_exact_at(&mut bytes, t.blob_offset + start)
            .map_err(|e| corrupt(&self.path, format!("policy {i} cannot be read: {e}")))?;
        if sha256(&bytes) != t.hashes[i] {
            return Err(corrupt(
                &self.path,
                format!("policy {i} does not hash to its listed hash"),
            ));
        }
        let p: Policy = cbor::from_slice_canonical(&bytes)
            .map_err(|e| corrupt(&self.path, format!("policy {i} is {e}")))?;
        p.validate()
            .map_err(|e| corrupt(&self.path, format!("policy {i} is invalid: {e}")))?;
        Ok(cell.get_or_init(|| Box::new(p)))
    }

    /// The prefix table (verified against the manifest at open).
    pub fn prefixes(&self) -> &PrefixTable {
        &self.prefixes
    }

    /// The prefix table as records, every policy decoded.
    pub fn prefix_records(&self) -> Result<Vec<Record>, Rejection> {
        self.prefixes
            .rows
            .iter()
            .map(|r| {
                Ok(Record {
                    scope: r.scope,
                    seq: r.seq,
                    id: r.id.clone(),
                    policy: self.policy(r.policy)?.clone(),
                })
            })
            .collect()
    }

    /// Number of policies in the table.
    pub fn policy_count(&self) -> usize {
        self.policies.hashes.len()
    }

    /// Range `i`'s `(lo, hi, count)`.
    pub fn range(&self, i: usize) -> (u64, u64, u64) {
        let e = self.ranges[i];
        (e.lo, e.hi, e.count)
    }

    /// Read range `i`'s chunk table (not yet checked against the leaf: see
    /// [`Index::check_whole`] and [`Index::check_path`]).
    fn load_table(&self, i: usize) -> Result<ChunkTable, Rejection> {
        let e = self.ranges[i];
        let n = chunk_count(e.count);
        let table_len = n * CHUNK_ROW;
        let mut bytes = vec![0u8; table_len as usize];
        self.file
            .read_exact_at(&mut bytes, e.offset)
            .map_err(|er| corrupt(&self.path, format!("block {i} cannot be read: {er}")))?;
        let stream_len = e.len - table_len - tree_nodes(n) * 32;
        let mut t = ChunkTable {
            first_keys: Vec::with_capacity(n as usize),
            starts: Vec::with_capacity(n as usize),
            hashes: Vec::with_capacity(n as usize),
            stream_len,
            tree_offset: e.offset + table_len,
            stream_offset: e.offset + table_len + tree_nodes(n) * 32,
            whole: std::cell::Cell::new(false),
            paths: std::cell::Cell::new(0),
        };
        for row in bytes.chunks_exact(CHUNK_ROW as usize) {
            t.first_keys
                .push(u64::from_le_bytes(row[..8].try_into().unwrap_or_default()));
            t.starts.push(u64::from_le_bytes(
                row[8..16].try_into().unwrap_or_default(),
            ));
            t.hashes.push(row[16..48].try_into().unwrap_or_default());
        }
        let starts_ok = t.starts.first().is_none_or(|&s| s == 0)
            && t.starts.windows(2).all(|w| w[0] < w[1])
            && t.starts.last().is_none_or(|&s| s < stream_len);
        if !starts_ok {
            return Err(corrupt(
                &self.path,
                format!("block {i}: chunk starts are out of order"),
            ));
        }
        Ok(t)
    }

    /// Check MTH of range `i`'s whole chunk table against the signed leaf
    /// (once per loaded table).
    fn check_whole(&self, i: usize, t: &ChunkTable) -> Result<(), Rejection> {
        if t.whole.get() {
            return Ok(());
        }
        let e = self.ranges[i];
        if range_leaf_of_root(e.lo, e.hi, e.count, &merkle_root(&t.hashes)) != self.leaves[i] {
            return Err(corrupt(
                &self.path,
                format!("block {i}: its chunk hashes do not hash to the manifest's leaf"),
            ));
        }
        t.whole.set(true);
        Ok(())
    }

    /// Check that the stored tree of range `i` is the tree over its (whole,
    /// checked) chunk hashes: a wrong node would only fail a later audit
    /// path, and `verify` is meant to find it now.
    fn check_tree(&self, i: usize, t: &ChunkTable) -> Result<(), Rejection> {
        let n = t.hashes.len() as u64;
        let mut stored = vec![0u8; (tree_nodes(n) * 32) as usize];
        self.file
            .read_exact_at(&mut stored, t.tree_offset)
            .map_err(|er| {
                corrupt(
                    &self.path,
                    format!("block {i}: its tree cannot be read: {er}"),
                )
            })?;
        let want: Vec<u8> = MerkleTree::new(&t.hashes).levels()[1..]
            .iter()
            .flatten()
            .flatten()
            .copied()
            .collect();
        if stored != want {
            return Err(corrupt(
                &self.path,
                format!("block {i}: its stored tree differs from the tree over its chunk hashes"),
            ));
        }
        Ok(())
    }

    /// Check that chunk `c` of range `i`, whose bytes hash to `h`, is the
    /// signed range's chunk `c`: RFC 6962 inclusion of `h` at index `c`, the
    /// siblings read from the stored tree (level 0's from the table rows),
    /// up to the root the range leaf commits to. Unverified siblings are
    /// harmless: any wrong one gives another root.
    #[allow(clippy::many_single_char_names)]
    fn check_path(
        &self,
        i: usize,
        t: &ChunkTable,
        c: usize,
        h: &[u8; 32],
    ) -> Result<(), Rejection> {
        let e = self.ranges[i];
        let bad = |d: String| corrupt(&self.path, format!("block {i} chunk {c}: {d}"));
        // The stored tree is kept level by level (a lone last node moves up
        // unchanged), which gives the RFC 6962 tree; its audit path is the
        // sibling present at each level, checked by the one verifier in
        // `state`.
        let n = t.hashes.len() as u64;
        let (mut idx, mut size) = (c as u64, n);
        let mut level_at = t.tree_offset;
        let mut level = 0;
        let mut path = Vec::new();
        // One pass per tree level: at most 64.
        while size > 1 {
            let sib = idx ^ 1;
            if sib < size {
                path.push(if level == 0 {
                    leaf_hash(&t.hashes[sib as usize])
                } else {
                    let mut b = [0u8; 32];
                    self.file
                        .read_exact_at(&mut b, level_at + sib * 32)
                        .map_err(|er| bad(format!("its audit path cannot be read: {er}")))?;
                    b
                });
            }
            if level > 0 {
                level_at += size * 32;
            }
            idx >>= 1;
            size = size.div_ceil(2);
            level += 1;
        }
        let cur = crate::state::root_from_path(h, c as u64, n, &path)
            .ok_or_else(|| bad("its audit path has the wrong length".into()))?;
        if range_leaf_of_root(e.lo, e.hi, e.count, &cur) != self.leaves[i] {
            return Err(bad(
                "its audit path does not lead to the manifest's leaf".into()
            ));
        }
        t.paths.set(t.paths.get() + 1);
        Ok(())
    }

    /// Range `i`'s chunk table (cached), whole or not yet checked against
    /// the leaf: its length is the signed count's, its hashes are to be
    /// trusted only through [`Index::verified_table`].
    pub fn table(&self, i: usize) -> Result<Rc<ChunkTable>, Rejection> {
        if let Some(t) = self.cache.borrow().tables.get(&i) {
            return Ok(t);
        }
        let t = Rc::new(self.load_table(i)?);
        let size = t.weight();
        self.cache.borrow_mut().tables.put(
            i,
            t.clone(),
            size,
            self.cache_budget / 4,
            ChunkTable::weight,
        );
        Ok(t)
    }

    /// Range `i`'s chunk table with every hash checked against the signed
    /// leaf (what a receipt copies).
    pub fn verified_table(&self, i: usize) -> Result<Rc<ChunkTable>, Rejection> {
        let t = self.table(i)?;
        self.check_whole(i, &t)?;
        Ok(t)
    }

    /// Read chunk `c` of range `i`, check it against its chunk hash (and the
    /// hash against the signed leaf, by audit path or the whole table) and
    /// parse it.
    #[allow(clippy::many_single_char_names)]
    fn load_chunk(
        &self,
        i: usize,
        t: &ChunkTable,
        c: usize,
        ahead: bool,
    ) -> Result<Chunk, Rejection> {
        let e = self.ranges[i];
        let start = t.starts[c];
        let end = t.starts.get(c + 1).copied().unwrap_or(t.stream_len);
        let stream_at = t.stream_offset;
        let read_err = |er: io::Error| {
            corrupt(
                &self.path,
                format!("block {i} chunk {c} cannot be read: {er}"),
            )
        };
        if end - start > MAX_CHUNK_BYTES {
            return Err(corrupt(
                &self.path,
                format!("block {i} chunk {c} is longer than 16 entries can be"),
            ));
        }
        let mut bytes = vec![0u8; (end - start) as usize];
        if ahead {
            // A forward scan: serve the chunk from one large read of the
            // stream instead of a read per chunk.
            let mut ra = self.ahead.borrow_mut();
            let hit = ra.as_ref().is_some_and(|(r, at, buf)| {
                *r == i && *at <= start && end <= *at + buf.len() as u64
            });
            if !hit {
                let len = (t.stream_len - start)
                    .min(READ_AHEAD_BYTES)
                    .max(end - start);
                let mut buf = ra.take().map(|x| x.2).unwrap_or_default();
                buf.resize(len as usize, 0);
                self.file
                    .read_exact_at(&mut buf, stream_at + start)
                    .map_err(read_err)?;
                *ra = Some((i, start, buf));
            }
            if let Some((_, at, buf)) = ra.as_ref() {
                let (a, len) = ((start - at) as usize, bytes.len());
                bytes.copy_from_slice(&buf[a..a + len]);
            }
        } else {
            self.file
                .read_exact_at(&mut bytes, stream_at + start)
                .map_err(read_err)?;
        }
        let h = chunk_hash(&bytes);
        if h != t.hashes[c] {
            return Err(corrupt(
                &self.path,
                format!("block {i} chunk {c} does not hash to its chunk hash"),
            ));
        }
        if !t.whole.get() {
            if t.paths.get() < PATH_PROOFS_PER_TABLE {
                self.check_path(i, t, c, &h)?;
            } else {
                self.check_whole(i, t)?;
            }
        }
        let bad = |d: &str| corrupt(&self.path, format!("block {i} chunk {c}: {d}"));
        let want = if c + 1 < t.hashes.len() {
            CHUNK
        } else {
            (e.count - (c as u64) * CHUNK as u64) as usize
        };
        let mut ch = Chunk {
            bytes: Vec::new(),
            len: 0,
            keys: [0; CHUNK],
            starts: [0; CHUNK],
            pols: [0; CHUNK],
        };
        let mut s = 0usize;
        let mut prev: Option<(u64, u64)> = None;
        // Neighbouring entries mostly share a policy: one table probe each
        // time it changes.
        let mut last: Option<([u8; 32], u32)> = None;
        // Each iteration consumes at least ENTRY_FIXED bytes.
        while s < bytes.len() {
            if bytes.len() - s < ENTRY_FIXED {
                return Err(bad("an entry is truncated"));
            }
            let key = u64::from_be_bytes(bytes[s..s + 8].try_into().unwrap_or_default());
            let seq = u64::from_be_bytes(bytes[s + 8..s + 16].try_into().unwrap_or_default());
            let n = usize::from(bytes[s + 16]);
            let end = s + ENTRY_FIXED + n;
            if end > bytes.len() {
                return Err(bad("an entry is truncated"));
            }
            let id = &bytes[s + 17..s + 17 + n];
            if id.is_empty() || !id.iter().all(u8::is_ascii_graphic) {
                return Err(bad("an id is not printable ASCII"));
            }
            let h: [u8; 32] = bytes[s + 17 + n..end].try_into().unwrap_or_default();
            let p = match last {
                Some((lh, lp)) if lh == h => lp,
                _ => {
                    let Some(p) = self.policies.find(&h) else {
                        return Err(bad("an entry names a policy the index does not hold"));
                    };
                    self.policy(p)?;
                    last = Some((h, p));
                    p
                }
            };
            if key < e.lo || key >= e.hi || prev.is_some_and(|pk| pk >= (key, seq)) {
                return Err(bad("entries are out of order or out of range"));
            }
            if ch.len == CHUNK {
                return Err(bad("entry count differs from the manifest's"));
            }
            prev = Some((key, seq));
            ch.keys[ch.len] = key;
            ch.starts[ch.len] = s as u16;
            ch.pols[ch.len] = p;
            ch.len += 1;
            s = end;
        }
        if ch.len != want {
            return Err(bad("entry count differs from the manifest's"));
        }
        if ch.keys().first() != Some(&t.first_keys[c]) {
            return Err(bad("its first key differs from the chunk table"));
        }
        ch.bytes = bytes;
        Ok(ch)
    }

    /// The verified chunk `c` of range `i` (cached).
    pub fn chunk(&self, i: usize, c: usize) -> Result<Rc<Chunk>, Rejection> {
        if let Some(ch) = self.cache.borrow().chunks.get(&(i, c)) {
            return Ok(ch);
        }
        let t = self.table(i)?;
        if c >= t.len() {
            return Err(corrupt(&self.path, format!("block {i} has no chunk {c}")));
        }
        let ch = Rc::new(self.load_chunk(i, &t, c, false)?);
        let size = ch.weight();
        self.cache.borrow_mut().chunks.put(
            (i, c),
            ch.clone(),
            size,
            self.cache_budget,
            Chunk::weight,
        );
        Ok(ch)
    }

    /// The chunks `[s, e)` of range `i` that together hold every entry of
    /// `key` and its neighbours: chunk `s` starts below `key` (or is the first),
    /// chunk `e − 1` ends above it (or is the last). Empty for an empty range.
    pub fn chunks_for(&self, i: usize, key: u64) -> Result<(usize, Vec<Rc<Chunk>>), Rejection> {
        let t = self.table(i)?;
        self.chunks_around(i, &t, key, |c| self.chunk(i, c))
    }

    /// [`Index::chunks_for`] for a forward scan (a sorted batch): chunks not
    /// already cached are read ahead in large reads and not cached (a scan
    /// touches each chunk once, and would only push out the point lookups'
    /// working set).
    pub fn chunks_for_scan(
        &self,
        i: usize,
        key: u64,
    ) -> Result<(usize, Vec<Rc<Chunk>>), Rejection> {
        let t = self.table(i)?;
        self.chunks_around(i, &t, key, |c| {
            if let Some(ch) = self.cache.borrow().chunks.get(&(i, c)) {
                return Ok(ch);
            }
            if c >= t.len() {
                return Err(corrupt(&self.path, format!("block {i} has no chunk {c}")));
            }
            Ok(Rc::new(self.load_chunk(i, &t, c, true)?))
        })
    }

    #[allow(clippy::many_single_char_names)]
    fn chunks_around(
        &self,
        i: usize,
        t: &ChunkTable,
        key: u64,
        load: impl Fn(usize) -> Result<Rc<Chunk>, Rejection>,
    ) -> Result<(usize, Vec<Rc<Chunk>>), Rejection> {
        if t.is_empty() {
            return Ok((0, Vec::new()));
        }
        let s = t.first_keys.partition_point(|&k| k < key).saturating_sub(1);
        let mut out = vec![load(s)?];
        if s > 0 && out[0].keys().first().is_none_or(|&k| k >= key) {
            return Err(corrupt(
                &self.path,
                format!("block {i}: the chunk table's first keys are wrong"),
            ));
        }
        // At most the range's chunk count.
        while out
            .last()
            .is_some_and(|c| c.keys().last().is_some_and(|&k| k <= key))
            && s + out.len() < t.len()
        {
            out.push(load(s + out.len())?);
        }
        Ok((s, out))
    }

    /// Where range `i`'s block lies in the file: `(offset, len)`.
    pub fn extent(&self, i: usize) -> (u64, u64) {
        (self.ranges[i].offset, self.ranges[i].len)
    }

    /// The index file (for workers that compare blocks in parallel).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Decode every policy of the table (each checked against its hash).
    pub fn check_policies(&self) -> Result<(), Rejection> {
        for i in 0..self.policy_count() as u32 {
            self.policy(i)?;
        }
        Ok(())
    }

    /// Check every chunk table and chunk (without keeping them).
    pub fn verify_all(&self) -> Result<(), Rejection> {
        for i in 0..self.policy_count() as u32 {
            self.policy(i)?;
        }
        for i in 0..self.ranges.len() {
            let t = self.load_table(i)?;
            self.check_whole(i, &t)?;
            self.check_tree(i, &t)?;
            for c in 0..t.len() {
                self.load_chunk(i, &t, c, true)?;
            }
        }
        Ok(())
    }

    /// The exact-scope state the index holds, every chunk verified. The
    /// prefix entries are not in the index: `prefixes` is left empty.
    pub fn load_state(&self) -> Result<State, Rejection> {
        let mut st = State::default();
        let ids: Vec<u32> = (0..self.policy_count() as u32)
            .map(|i| Ok(st.policies.intern(self.policy(i)?)))
            .collect::<Result<_, Rejection>>()?;
        for i in 0..self.ranges.len() {
            let t = self.load_table(i)?;
            self.check_whole(i, &t)?;
            let mut rows = Rows::default();
            for c in 0..t.len() {
                let b = self.load_chunk(i, &t, c, true)?;
                for j in 0..b.len() {
                    let (key, seq, id, p) = b.entry(j);
                    rows.push(key, seq, id, ids[p as usize]);
                }
            }
            st.ranges.push((self.ranges[i].lo, self.ranges[i].hi, rows));
        }
        Ok(st)
    }
}

/// The hasher of every in-memory map keyed by packed keys and indexes:
/// rustc-hash's Fx (lookups run once per checked ISRC, where SipHash costs
/// more than the rest of the probe). Keys are not attacker-chosen: they come
/// from verified files and from the caller's own input.
pub type FastHash = rustc_hash::FxBuildHasher;

/// The prefix table, indexed by (specificity, scope start) so each lookup is
/// two hash probes: the ISRC's registrant and its registrant-year.
#[derive(Debug, Default)]
pub struct PrefixTable {
    rows: Vec<PrefixRow>,
    /// (specificity, scope start) → the run `start..end` of its entries in `rows`.
    by_scope: HashMap<(u8, u64), (u32, u32), FastHash>,
}

/// One prefix entry; `policy` indexes the index's policy table.
#[derive(Debug, Clone)]
pub struct PrefixRow {
    pub scope: Scope,
    pub seq: u64,
    pub id: String,
    pub policy: u32,
}

impl PrefixTable {
    /// The table over `rows`, put in table order (by [`prefix_key`], stably)
    /// so each scope's entries are one run.
    pub fn new(mut rows: Vec<PrefixRow>) -> PrefixTable {
        rows.sort_by_key(|r| prefix_key(r.scope));
        let mut by_scope: HashMap<(u8, u64), (u32, u32), FastHash> =
            HashMap::with_capacity_and_hasher(rows.len(), FastHash::default());
        let mut start = 0;
        // Each pass ends one run: at most rows.len() passes.
        while start < rows.len() {
            let scope = rows[start].scope;
            let end = start + rows[start..].partition_point(|r| r.scope == scope);
            by_scope.insert(
                (scope.specificity(), scope.key_range().0),
                (start as u32, end as u32),
            );
            start = end;
        }
        PrefixTable { rows, by_scope }
    }

    /// From rows keyed by prefix key (SPEC.md §6); `None` if a key is not
    /// `4 · lo + specificity` of a registrant or registrant-year scope.
    fn from_rows(rows: &Rows) -> Option<PrefixTable> {
        let mut out = Vec::with_capacity(rows.len());
        for i in 0..rows.len() {
            let scope = prefix_scope(rows.keys[i])?;
            out.push(PrefixRow {
                scope,
                seq: rows.seqs[i],
                id: rows.id(i).to_string(),
                policy: rows.pol[i],
            });
        }
        Some(PrefixTable::new(out))
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Which prefix entries cover `isrc`, as an opaque pair (the groups of its
    /// registrant and of its registrant-year; `u32::MAX` for none): two ISRCs
    /// with equal pairs are covered by exactly the same prefix entries.
    pub fn cover_key(&self, isrc: Isrc) -> (u32, u32) {
        let k = isrc.key();
        let group = |p: (u8, u64)| self.by_scope.get(&p).map_or(u32::MAX, |r| r.0);
        (
            group((1, k - k % REGISTRANT_SPAN)),
            group((2, k - k % REGISTRANT_YEAR_SPAN)),
        )
    }

    /// The prefix entries whose scope covers `isrc`.
    pub fn covering(&self, isrc: Isrc) -> impl Iterator<Item = &PrefixRow> {
        let k = isrc.key();
        let probes = [
            (1u8, k - k % REGISTRANT_SPAN),
            (2u8, k - k % REGISTRANT_YEAR_SPAN),
        ];
        probes
            .into_iter()
            .filter_map(|p| self.by_scope.get(&p))
            .flat_map(|&(a, b)| &self.rows[a as usize..b as usize])
            .filter(move |r| !matches!(r.scope, Scope::Exact(_)) && r.scope.covers(isrc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testsite::{self, TestSite};

    fn state_and_manifest() -> (State, Manifest, [u8; 32], tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let mut site = TestSite::new(dir.path().join("site"));
        let pub1 = site.publish(&testsite::example_records(), &testsite::Opts::default());
        (pub1.state, pub1.manifest, pub1.manifest_sha256, dir)
    }

    #[test]
    fn index_round_trips_and_detects_every_corruption() {
        let (state, m, sha, dir) = state_and_manifest();
        let path = dir.path().join("x.idx");
        let limits = Limits::DEFAULT;
        write(&path, &sha, &state).unwrap();
        let ix = Index::open(&path, &m, &sha, &limits).unwrap().unwrap();
        ix.verify_all().unwrap();
        let back = ix.load_state().unwrap();
        let mut back = back;
        back.prefixes = state.prefixes.clone();
        back.check_against(&m, "index").unwrap();

        // Another manifest's hash: refused at open.
        assert_eq!(
            Index::open(&path, &m, &[9; 32], &limits).unwrap_err().code,
            Code::IndexCorrupt
        );
        // Flip one byte anywhere — header, policy hashes, ends and bytes,
        // chunk tables, entry streams: the open or the full check refuses it.
        let good = std::fs::read(&path).unwrap();
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x01;
            std::fs::write(&path, &bad).unwrap();
            let r = Index::open(&path, &m, &sha, &limits)
                .and_then(|ix| ix.map_or(Ok(()), |ix| ix.verify_all()));
            assert_eq!(r.unwrap_err().code, Code::IndexCorrupt, "byte {at}");
        }
        // Truncated and extended files.
        std::fs::write(&path, &good[..good.len() - 1]).unwrap();
        assert!(Index::open(&path, &m, &sha, &limits).is_err());
        let mut longer = good.clone();
        longer.push(0);
        std::fs::write(&path, &longer).unwrap();
        assert!(Index::open(&path, &m, &sha, &limits).is_err());
        std::fs::remove_file(&path).unwrap();
        assert!(Index::open(&path, &m, &sha, &limits).unwrap().is_none());
    }

    /// A site whose ranges hold many chunks, so the index stores trees.
    fn many_chunks() -> (State, Manifest, [u8; 32], tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let mut site = TestSite::new(dir.path().join("site"));
        let recs: Vec<Record> = (0..2000u64)
            .map(|n| {
                let isrc = format!("GBNWR25{:05}", n * 7);
                let p = testsite::policy(if n % 3 == 0 { "a" } else { "b" }, n % 5 == 0);
                testsite::record(&isrc, n + 1, &format!("D{n}"), p)
            })
            .collect();
        let pub1 = site.publish(&recs, &testsite::Opts::default());
        (pub1.state, pub1.manifest, pub1.manifest_sha256, dir)
    }

    /// The range holding the most entries, and its rows.
    fn largest_range(state: &State) -> (usize, &Rows) {
        let (i, (_, _, rows)) = state
            .ranges
            .iter()
            .enumerate()
            .max_by_key(|(_, r)| r.2.len())
            .unwrap();
        (i, rows)
    }

    #[test]
    #[allow(clippy::many_single_char_names)]
    fn audit_paths_prove_first_chunks_then_the_whole_table_is_checked() {
        let (state, m, sha, dir) = many_chunks();
        let path = dir.path().join("x.idx");
        write(&path, &sha, &state).unwrap();
        let ix = Index::open(&path, &m, &sha, &Limits::DEFAULT)
            .unwrap()
            .unwrap();
        let (i, rows) = largest_range(&state);
        let n = chunk_count(rows.len() as u64) as usize;
        assert!(n > PATH_PROOFS_PER_TABLE as usize + 2, "{n} chunks");
        // Every key found, in chunk order: the first loads are path proofs,
        // then one whole-table check.
        for c in 0..n {
            let key = rows.keys[c * CHUNK];
            let (s, chunks) = ix.chunks_for(i, key).unwrap();
            assert!(
                chunks.iter().any(|ch| ch.entries_of(key).count() > 0),
                "{c} {s}"
            );
            let t = ix.table(i).unwrap();
            let paths = PATH_PROOFS_PER_TABLE.min(c as u32 + 1);
            assert_eq!(t.paths.get(), paths, "chunk {c}");
            assert_eq!(
                t.whole.get(),
                c as u32 >= PATH_PROOFS_PER_TABLE,
                "chunk {c}"
            );
        }
    }

    /// Scans read the stream ahead in 64 KB pieces that end mid-chunk: every
    /// chunk a scan serves, and the whole loaded state, must be exactly what
    /// point lookups read.
    #[test]
    fn read_ahead_scans_see_exactly_what_point_lookups_see() {
        let (state, m, sha, dir) = many_chunks();
        let path = dir.path().join("x.idx");
        write(&path, &sha, &state).unwrap();
        let (i, rows) = largest_range(&state);
        let stream = entry_stream(rows, &state.policy_hashes());
        assert!(stream.len() as u64 > READ_AHEAD_BYTES, "{}", stream.len());
        let scan = Index::open(&path, &m, &sha, &Limits::DEFAULT)
            .unwrap()
            .unwrap();
        let point = Index::open(&path, &m, &sha, &Limits::DEFAULT)
            .unwrap()
            .unwrap();
        for &key in &rows.keys {
            let (s1, a) = scan.chunks_for_scan(i, key).unwrap();
            let (s2, b) = point.chunks_for(i, key).unwrap();
            assert_eq!(s1, s2);
            let bytes = |v: &[Rc<Chunk>]| v.iter().map(|c| c.bytes().to_vec()).collect::<Vec<_>>();
            assert_eq!(bytes(&a), bytes(&b), "key {key}");
        }
        let mut back = scan.load_state().unwrap();
        back.prefixes.clone_from(&state.prefixes);
        back.check_against(&m, "index").unwrap();
    }

    #[test]
    #[allow(clippy::many_single_char_names)]
    fn flipped_tree_node_fails_the_audit_path_and_verify() {
        let (state, m, sha, dir) = many_chunks();
        let path = dir.path().join("x.idx");
        write(&path, &sha, &state).unwrap();
        let (i, rows) = largest_range(&state);
        let ix = Index::open(&path, &m, &sha, &Limits::DEFAULT)
            .unwrap()
            .unwrap();
        let t = ix.load_table(i).unwrap();
        let good = std::fs::read(&path).unwrap();
        // Node 0 of level 1 is chunk 0's sibling pair's parent: chunk 2's
        // audit path reads it.
        let mut bad = good.clone();
        bad[t.tree_offset as usize] ^= 0x40;
        std::fs::write(&path, &bad).unwrap();
        let ix = Index::open(&path, &m, &sha, &Limits::DEFAULT)
            .unwrap()
            .unwrap();
        let e = ix.chunks_for(i, rows.keys[2 * CHUNK]).unwrap_err();
        assert_eq!(e.code, Code::IndexCorrupt);
        assert!(e.detail.contains("audit path"), "{e}");
        let e = ix.verify_all().unwrap_err();
        assert!(e.detail.contains("stored tree"), "{e}");
        // A flipped chunk-table hash of a chunk never loaded still fails
        // the path of its neighbour (its leaf is the neighbour's sibling).
        let mut bad = good.clone();
        bad[(t.tree_offset - CHUNK_ROW * (t.len() as u64) + CHUNK_ROW + 16) as usize] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        let ix = Index::open(&path, &m, &sha, &Limits::DEFAULT)
            .unwrap()
            .unwrap();
        assert_eq!(
            ix.chunks_for(i, rows.keys[0]).unwrap_err().code,
            Code::IndexCorrupt
        );
    }

    #[test]
    fn prefix_probes_find_exactly_the_covering_scopes() {
        let recs: Vec<Record> = testsite::example_records()
            .into_iter()
            .filter(|r| !matches!(r.scope, Scope::Exact(_)))
            .collect();
        assert!(!recs.is_empty());
        let t = PrefixTable::new(
            recs.iter()
                .map(|r| PrefixRow {
                    scope: r.scope,
                    seq: r.seq,
                    id: r.id.clone(),
                    policy: 0,
                })
                .collect(),
        );
        for s in [
            "GBNWR2500001",
            "GBNWR2400001",
            "USQZ92400123",
            "FRAB10012345",
            "ZZZZZ9999999",
        ] {
            let i = Isrc::parse(s).unwrap();
            let mut want: Vec<&str> = recs
                .iter()
                .filter(|r| r.scope.covers(i))
                .map(|r| r.id.as_str())
                .collect();
            let mut got: Vec<&str> = t.covering(i).map(|r| r.id.as_str()).collect();
            want.sort_unstable();
            got.sort_unstable();
            assert_eq!(got, want, "{s}");
        }
    }
}
