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
//! format version   u32      6
//! manifest sha256  32 bytes SHA-256 of the manifest envelope this index belongs to
//! n_policies       u32
//!   4097 × u32     bucket directory: bucket b's hashes (first 12 bits = b)
//!                  are places dir[b]..dir[b+1]; dir[0] = 0, dir[4096] = n_policies
//!   n_policies × SHA-256 of each policy, strictly increasing (the policy's index
//!                is its place here)
//!   n_policies × u64 end of each policy's bytes in the blob (non-decreasing)
//!   blob             the policies' canonical CBOR, back to back
//!   (opening reads the directory only; a hash is found by reading its
//!   bucket, and a policy's bytes are read, checked against its hash and
//!   decoded when a verified chunk first names it)
//! n_prefixes       u32      must equal the manifest's prefix count
//!   offset u64, len u64: the prefix block, laid out like a range block over
//!                the prefix table in table order (SPEC.md §6: keys are prefix
//!                keys), proven against the manifest's prefix_leaf
//! n_ranges         u32      must equal the manifest's range count
//!   n_ranges × (lo u64, hi u64, count u64, offset u64, len u64)
//! blocks           the prefix block, then range i's block, `len` bytes at `offset`:
//!   n = ceil(count / 16) × (first key u64, chunk start u64, chunk hash 32 bytes)
//!   the RFC 6962 tree over the chunk hashes above its leaf level, bottom up:
//!                level k ≥ 1 holds ceil(n / 2^k) nodes of 32 bytes (an
//!                unpaired last node carried up unchanged), up to the root
//!   the entry stream: key u64 BE ‖ seq u64 BE ‖ len(id) u8 ‖ id ‖ policy SHA-256
//!   (chunk starts are byte offsets into the entry stream)
//! ```
//!
//! Opening reads a fixed-size header part (the directory) and the range
//! list: its cost does not grow with the policies or the prefix table.
//! Blocks follow the header back to back (the prefix block first) and end the file.
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
//!
//! Split by concern: `write` lays the file out, `chunk` holds parsed chunks
//! and chunk tables, `proof` checks them against the signed leaves, `cache`
//! keeps verified chunks and the policy table, `prefix` is the prefix-table
//! lookup structure; this module opens an index and answers from it.

mod cache;
mod chunk;
mod prefix;
mod proof;
mod write;

#[allow(clippy::wildcard_imports)]
use cache::*;
#[allow(clippy::wildcard_imports)]
use chunk::*;
pub use chunk::{Chunk, ChunkTable};
pub use prefix::{PrefixHit, PrefixRow};
pub use write::{block_of, tree_nodes, write};

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

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
    CHUNK, ENTRY_FIXED, MerkleTree, State, chunk_bounds, chunk_count, chunk_hash, entry_stream,
    leaf_hash, merkle_root, policy_hash, prefix_key, prefix_leaf_of_root, prefix_scope,
    range_leaf_of_root,
};

/// File magic.
pub const MAGIC: &[u8; 8] = b"CSTRYIDX";
/// Format version written and accepted.
pub const FORMAT_VERSION: u32 = 6;
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

/// An open index whose header matched the manifest.
#[derive(Debug)]
pub struct Index {
    file: File,
    path: String,
    /// The ranges' blocks, then the prefix block (at `n_ranges`).
    ranges: Vec<RangeEntry>,
    n_ranges: usize,
    /// The signed leaf of each block: the ranges', then `prefix_leaf`.
    leaves: Vec<[u8; 32]>,
    policies: PolicyTable,
    cache: RefCell<Cache>,
    cache_budget: usize,
    /// The last read-ahead: range, stream offset, bytes.
    ahead: RefCell<Option<(usize, u64, Vec<u8>)>>,
    /// Verified chunks of the prefix block, kept apart from the budgeted
    /// cache: every lookup probes the prefix table twice, and the whole
    /// table is small (70 000 entries at 10^8 records).
    prefix_chunks: RefCell<HashMap<usize, Arc<Chunk>, FastHash>>,
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
        let v = u32::from_le_bytes(b4);
        if v != FORMAT_VERSION {
            return Err(bad(&format!(
                "it has format version {v}, and this consentry reads version {FORMAT_VERSION} (an index written by another release)"
            )));
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
        // The bucket directory is all that is read of the policy table:
        // its hashes are searched on disk, one bucket at a time.
        let dir_len = (BUCKETS + 1) as u64 * 4;
        if n_pol.saturating_mul(40).saturating_add(dir_len) > file_len.saturating_sub(pos) {
            return Err(bad("the policy table runs past the end of the file"));
        }
        let mut raw = vec![0u8; (BUCKETS + 1) * 4];
        file.read_exact_at(&mut raw, pos).map_err(trunc)?;
        pos += dir_len;
        let buckets: Vec<u32> = raw
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap_or_default()))
            .collect();
        if buckets.first() != Some(&0)
            || buckets.last().map(|&b| b as usize) != Some(n)
            || buckets.windows(2).any(|w| w[0] > w[1])
        {
            return Err(bad("the policy bucket directory is not in order"));
        }
        let hashes_offset = pos;
        let ends_offset = pos + 32 * n_pol;
        pos += 40 * n_pol;
        let blob = if n == 0 {
            0
        } else {
            file.read_exact_at(&mut b8, ends_offset + 8 * (n_pol - 1))
                .map_err(trunc)?;
            u64::from_le_bytes(b8)
        };
        if blob > file_len.saturating_sub(pos) {
            return Err(bad("a policy runs past the end of the file"));
        }
        let policies = PolicyTable {
            n,
            buckets,
            hashes_offset,
            ends_offset,
            blob_offset: pos,
            blob_len: blob,
            decoded: (0..n).map(|_| std::cell::OnceCell::new()).collect(),
            found: RefCell::new(HashMap::default()),
        };
        pos += blob;
        let mut r = BufReader::with_capacity(1 << 12, PosReader { file: &file, pos });
        r.read_exact(&mut b4).map_err(trunc)?;
        pos += 4;
        let n_pre = u64::from(u32::from_le_bytes(b4));
        if n_pre != manifest.prefixes.count {
            return Err(bad("its prefix count differs from the manifest's"));
        }
        let mut prefix = RangeEntry {
            lo: 0,
            hi: u64::MAX,
            count: n_pre,
            offset: 0,
            len: 0,
        };
        for x in [&mut prefix.offset, &mut prefix.len] {
            r.read_exact(&mut b8).map_err(trunc)?;
            *x = u64::from_le_bytes(b8);
        }
        pos += 16;
        r.read_exact(&mut b4).map_err(trunc)?;
        pos += 4;
        let n_ranges = u32::from_le_bytes(b4) as usize;
        if n_ranges != manifest.ranges.len() {
            return Err(bad("its range count differs from the manifest's"));
        }
        let mut raw = Vec::with_capacity(n_ranges + 1);
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
        // The prefix table is block n_ranges, laid out like a range's and
        // stored first: its chunks are proven like a range's, against the
        // manifest's prefix_leaf, when a lookup first needs them.
        let min_len = |count: u64| {
            chunk_count(count).saturating_mul(CHUNK_ROW)
                + tree_nodes(chunk_count(count)).saturating_mul(32)
                + count.saturating_mul((ENTRY_FIXED + 1) as u64)
        };
        if prefix.offset != pos || prefix.len < min_len(n_pre) {
            return Err(bad("the prefix block has a bad offset or length"));
        }
        let mut expect = pos.saturating_add(prefix.len);
        for (i, e) in raw.iter().enumerate() {
            if (e.lo, e.hi) != manifest.range_bounds(i) || e.count != manifest.ranges[i].count {
                return Err(corrupt(
                    &loc,
                    format!("range {i} differs from the manifest's bounds or count"),
                ));
            }
            if e.offset != expect
                || e.count > limits.max_records_per_file
                || e.len < min_len(e.count)
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
        raw.push(prefix);
        let mut leaves: Vec<[u8; 32]> = manifest.ranges.iter().map(|r| r.leaf).collect();
        leaves.push(manifest.prefix_leaf);
        Ok(Some(Index {
            file,
            path: loc,
            ranges: raw,
            n_ranges,
            leaves,
            policies,
            cache: RefCell::new(Cache::default()),
            cache_budget: DEFAULT_CACHE_BYTES,
            ahead: RefCell::new(None),
            prefix_chunks: RefCell::new(HashMap::default()),
        }))
    }

    /// A second handle on the same index file (its descriptor duplicated,
    /// so an unlinked scratch index works too) with the header already
    /// checked and empty caches: one per thread of a parallel batch.
    pub fn fork(&self) -> Result<Index, Rejection> {
        let file = self
            .file
            .try_clone()
            .map_err(|e| corrupt(&self.path, format!("cannot be opened again: {e}")))?;
        let t = &self.policies;
        Ok(Index {
            file,
            path: self.path.clone(),
            ranges: self.ranges.clone(),
            n_ranges: self.n_ranges,
            leaves: self.leaves.clone(),
            policies: PolicyTable {
                n: t.n,
                buckets: t.buckets.clone(),
                hashes_offset: t.hashes_offset,
                ends_offset: t.ends_offset,
                blob_offset: t.blob_offset,
                blob_len: t.blob_len,
                decoded: (0..t.n).map(|_| std::cell::OnceCell::new()).collect(),
                found: RefCell::new(HashMap::default()),
            },
            cache: RefCell::new(Cache::default()),
            cache_budget: self.cache_budget,
            ahead: RefCell::new(None),
            prefix_chunks: RefCell::new(HashMap::default()),
        })
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
        let read = |buf: &mut [u8], at: u64| {
            self.file
                .read_exact_at(buf, at)
                .map_err(|e| corrupt(&self.path, format!("policy {i} cannot be read: {e}")))
        };
        let mut ends = [0u8; 16];
        let (start, end) = if i == 0 {
            read(&mut ends[8..], t.ends_offset)?;
            (
                0,
                u64::from_le_bytes(ends[8..].try_into().unwrap_or_default()),
            )
        } else {
            read(&mut ends, t.ends_offset + 8 * (i as u64 - 1))?;
            (
                u64::from_le_bytes(ends[..8].try_into().unwrap_or_default()),
                u64::from_le_bytes(ends[8..].try_into().unwrap_or_default()),
            )
        };
        if start > end || end > t.blob_len {
            return Err(corrupt(
                &self.path,
                format!("policy {i}'s bytes are out of place"),
            ));
        }
        let mut bytes = vec![0u8; (end - start) as usize];
        read(&mut bytes, t.blob_offset + start)?;
        if sha256(&bytes) != self.policy_hash_at(i)? {
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

    /// The listed hash of policy `i`.
    fn policy_hash_at(&self, i: usize) -> Result<[u8; 32], Rejection> {
        let mut h = [0u8; 32];
        self.file
            .read_exact_at(&mut h, self.policies.hashes_offset + 32 * i as u64)
            .map_err(|e| corrupt(&self.path, format!("policy {i} cannot be read: {e}")))?;
        Ok(h)
    }

    /// The place of the policy whose hash is `h`, searched in its bucket on
    /// disk (the bucket's hashes must be strictly increasing and belong to
    /// it); `None` when the table does not list it.
    pub(super) fn find_policy(&self, h: &[u8; 32]) -> Result<Option<u32>, Rejection> {
        let t = &self.policies;
        if let Some(&p) = t.found.borrow().get(h) {
            return Ok(Some(p));
        }
        let b = bucket_of(h);
        let (lo, hi) = (t.buckets[b] as usize, t.buckets[b + 1] as usize);
        let mut raw = vec![0u8; (hi - lo) * 32];
        self.file
            .read_exact_at(&mut raw, t.hashes_offset + 32 * lo as u64)
            .map_err(|e| corrupt(&self.path, format!("policy bucket {b} cannot be read: {e}")))?;
        let hashes: Vec<[u8; 32]> = raw
            .chunks_exact(32)
            .map(|c| c.try_into().unwrap_or_default())
            .collect();
        if hashes.windows(2).any(|w| w[0] >= w[1]) || hashes.iter().any(|x| bucket_of(x) != b) {
            return Err(corrupt(
                &self.path,
                format!("policy bucket {b} is out of order"),
            ));
        }
        let found = hashes.binary_search(h).ok().map(|k| (lo + k) as u32);
        if let Some(p) = found {
            t.found.borrow_mut().insert(*h, p);
        }
        Ok(found)
    }

    /// Check the whole policy table: every bucket in order, the ends in
    /// order, every policy's bytes against its hash and decodable (what
    /// opening no longer reads).
    fn check_policy_table(&self) -> Result<(), Rejection> {
        let t = &self.policies;
        let mut raw = vec![0u8; t.n * 40];
        self.file
            .read_exact_at(&mut raw, t.hashes_offset)
            .map_err(|e| corrupt(&self.path, format!("the policy table cannot be read: {e}")))?;
        let (hashes, ends) = raw.split_at(t.n * 32);
        let hashes: Vec<&[u8]> = hashes.chunks_exact(32).collect();
        let in_buckets = (0..BUCKETS).all(|b| {
            let (lo, hi) = (t.buckets[b] as usize, t.buckets[b + 1] as usize);
            hashes[lo..hi]
                .iter()
                .all(|h| bucket_of(&<[u8; 32]>::try_from(*h).unwrap_or_default()) == b)
        });
        let ends: Vec<u64> = ends
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
            .collect();
        if !in_buckets
            || hashes.windows(2).any(|w| w[0] >= w[1])
            || ends.windows(2).any(|w| w[0] > w[1])
        {
            return Err(corrupt(&self.path, "the policy table is out of order"));
        }
        for i in 0..t.n as u32 {
            self.policy(i)?;
        }
        Ok(())
    }

    /// Number of policies in the table.
    pub fn policy_count(&self) -> usize {
        self.policies.n
    }

    /// Range `i`'s `(lo, hi, count)`.
    pub fn range(&self, i: usize) -> (u64, u64, u64) {
        let e = self.ranges[i];
        (e.lo, e.hi, e.count)
    }

    /// Range `i`'s chunk table (cached), whole or not yet checked against
    /// the leaf: its length is the signed count's, its hashes are to be
    /// trusted only through [`Index::verified_table`].
    pub fn table(&self, i: usize) -> Result<Arc<ChunkTable>, Rejection> {
        if let Some(t) = self.cache.borrow().tables.get(&i) {
            return Ok(t);
        }
        let t = Arc::new(self.load_table(i)?);
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
    pub fn verified_table(&self, i: usize) -> Result<Arc<ChunkTable>, Rejection> {
        let t = self.table(i)?;
        self.check_whole(i, &t)?;
        Ok(t)
    }

    /// The verified chunk `c` of range `i` (cached).
    pub fn chunk(&self, i: usize, c: usize) -> Result<Arc<Chunk>, Rejection> {
        if let Some(ch) = self.cache.borrow().chunks.get(&(i, c)) {
            return Ok(ch);
        }
        let t = self.table(i)?;
        if c >= t.len() {
            return Err(corrupt(&self.path, format!("block {i} has no chunk {c}")));
        }
        let ch = Arc::new(self.load_chunk(i, &t, c, false)?);
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
    pub fn chunks_for(&self, i: usize, key: u64) -> Result<(usize, Vec<Arc<Chunk>>), Rejection> {
        let t = self.table(i)?;
        self.chunks_around(i, &t, key, |c| self.chunk(i, c))
    }

    /// [`Index::chunks_for`] for a forward scan (a sorted batch): chunks not
    /// already cached are read ahead in large reads, and cached only while
    /// the budget has room (a scan must not push out the point lookups'
    /// working set, but the next batch of a long-lived process should not
    /// hash the same chunks again).
    pub fn chunks_for_scan(
        &self,
        i: usize,
        key: u64,
    ) -> Result<(usize, Vec<Arc<Chunk>>), Rejection> {
        self.chunks_for_batch(i, key, true)
    }

    /// [`Index::chunks_for`] for batches: cached chunks as they are; others
    /// read ahead and kept while there is room (`scan`: a forward scan), or
    /// read alone and not kept (a sparse sorted batch, such as a block of
    /// `check --input`: the batch holds each chunk as long as its keys need
    /// it, and a one-shot process gains nothing from filling memory).
    pub fn chunks_for_batch(
        &self,
        i: usize,
        key: u64,
        scan: bool,
    ) -> Result<(usize, Vec<Arc<Chunk>>), Rejection> {
        let t = self.table(i)?;
        self.chunks_around(i, &t, key, |c| {
            if let Some(ch) = self.cache.borrow().chunks.get(&(i, c)) {
                return Ok(ch);
            }
            if c >= t.len() {
                return Err(corrupt(&self.path, format!("block {i} has no chunk {c}")));
            }
            let ch = Arc::new(self.load_chunk(i, &t, c, scan)?);
            if scan {
                let size = ch.weight();
                self.cache.borrow_mut().chunks.put_if_room(
                    (i, c),
                    ch.clone(),
                    size,
                    self.cache_budget,
                );
            }
            Ok(ch)
        })
    }

    /// Where range `i`'s block lies in the file: `(offset, len)`.
    pub fn extent(&self, i: usize) -> (u64, u64) {
        (self.ranges[i].offset, self.ranges[i].len)
    }

    /// The index file (for workers that compare blocks in parallel).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Check what opening does not read and the range blocks do not hold:
    /// the whole policy table (order, every policy against its hash) and
    /// the prefix block (tree, every chunk against the prefix_leaf).
    pub fn check_shared(&self) -> Result<(), Rejection> {
        self.check_policy_table()?;
        let i = self.n_ranges;
        let t = self.load_table(i)?;
        self.check_whole(i, &t)?;
        self.check_tree(i, &t)?;
        self.prefix_rows()?;
        Ok(())
    }

    /// Check every chunk table and chunk (without keeping them).
    pub fn verify_all(&self) -> Result<(), Rejection> {
        self.check_policy_table()?;
        // The ranges, then the prefix block.
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
        for i in 0..self.n_ranges {
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
            assert_eq!(
                t.paths.load(std::sync::atomic::Ordering::Relaxed),
                paths,
                "chunk {c}"
            );
            assert_eq!(
                t.whole.load(std::sync::atomic::Ordering::Relaxed),
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
            let bytes = |v: &[Arc<Chunk>]| v.iter().map(|c| c.bytes().to_vec()).collect::<Vec<_>>();
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
        let (state, m, sha, dir) = state_and_manifest();
        let recs: Vec<Record> = state.prefixes.clone();
        assert!(!recs.is_empty());
        let path = dir.path().join("x.idx");
        write(&path, &sha, &state).unwrap();
        let ix = Index::open(&path, &m, &sha, &Limits::DEFAULT)
            .unwrap()
            .unwrap();
        assert_eq!(ix.prefix_records().unwrap(), recs);
        let mut probes: Vec<Isrc> = [
            "GBNWR2500001",
            "GBNWR2400001",
            "USQZ92400123",
            "FRAB10012345",
            "ZZZZZ9999999",
        ]
        .iter()
        .map(|s| Isrc::parse(s).unwrap())
        .collect();
        for r in &recs {
            let (lo, hi) = r.scope.key_range();
            probes.extend([lo, hi - 1, hi].into_iter().filter_map(Isrc::from_key));
        }
        for i in probes {
            let mut want: Vec<(&str, u64)> = recs
                .iter()
                .filter(|r| r.scope.covers(i))
                .map(|r| (r.id.as_str(), r.seq))
                .collect();
            let hits = ix.covering(i).unwrap();
            let mut got: Vec<(&str, u64)> = hits.iter().map(|h| (h.id(), h.seq())).collect();
            want.sort_unstable();
            got.sort_unstable();
            assert_eq!(got, want, "{}", i.compact());
            for h in &hits {
                assert!(h.scope().covers(i));
                assert_eq!(
                    ix.policy(h.policy()).unwrap(),
                    &recs.iter().find(|r| r.id == h.id()).unwrap().policy
                );
            }
        }
    }
}
