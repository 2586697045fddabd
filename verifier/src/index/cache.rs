//! What a reader keeps: verified chunks under a byte budget, and the policy
//! table whose policies are decoded on first use.

#[allow(clippy::wildcard_imports)]
use super::*;

/// A cache bounded by a byte budget that evicts in fill order (FIFO, not
/// LRU: a hit does not refresh an entry; point lookups over a catalogue show
/// no reuse that recency would catch, and a fill-order queue needs no write
/// on the read path).
#[derive(Debug)]
pub(super) struct FifoCache<K, V> {
    pub(super) map: HashMap<K, Arc<V>, FastHash>,
    pub(super) order: VecDeque<K>,
    pub(super) bytes: usize,
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
    pub(super) fn get(&self, k: &K) -> Option<Arc<V>> {
        self.map.get(k).cloned()
    }

    /// Keep `v` only if it fits the budget without evicting anything: what
    /// a scan reads stays for the next batch while there is room (a process
    /// deciding batch after batch hashes each chunk once), but never pushes
    /// out what point lookups hold.
    pub(super) fn put_if_room(&mut self, k: K, v: Arc<V>, size: usize, budget: usize) {
        if self.bytes + size <= budget && self.map.insert(k, v).is_none() {
            self.order.push_back(k);
            self.bytes += size;
        }
    }

    pub(super) fn put(
        &mut self,
        k: K,
        v: Arc<V>,
        size: usize,
        budget: usize,
        weight: fn(&V) -> usize,
    ) {
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
pub(super) struct Cache {
    pub(super) tables: FifoCache<usize, ChunkTable>,
    pub(super) chunks: FifoCache<(usize, usize), Chunk>,
}

/// The index's policy table: sorted hashes and where each policy's bytes
/// lie. A policy is read, checked against its hash and decoded (canonical
/// check and validation) the first time a verified chunk names it: a
/// registry has tens of thousands of policies, a single lookup needs one or
/// two, and reading and decoding them all made up most of the time to the
/// first answer.
#[derive(Debug)]
pub(super) struct PolicyTable {
    pub(super) hashes: Vec<[u8; 32]>,
    /// `ends[i]`: end of policy i's bytes in the blob (its start is `ends[i-1]`).
    pub(super) ends: Vec<u64>,
    pub(super) blob_offset: u64,
    /// Boxed: a cell is 8 bytes until its policy is decoded (tens of
    /// thousands of cells, one or two decoded per lookup).
    pub(super) decoded: Vec<std::cell::OnceCell<Box<Policy>>>,
    /// `buckets[b]..buckets[b + 1]`: the hashes whose first
    /// [`BUCKET_BITS`] bits are `b` — a chunk's entries find their policy
    /// among a handful, not by a binary search over the whole table for
    /// every entry.
    pub(super) buckets: Vec<u32>,
}

impl PolicyTable {
    pub(super) fn find(&self, h: &[u8; 32]) -> Option<u32> {
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
pub(super) const BUCKET_BITS: u32 = 12;

pub(super) fn bucket_of(h: &[u8; 32]) -> usize {
    usize::from(u16::from_be_bytes([h[0], h[1]]) >> (16 - BUCKET_BITS))
}
