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

/// The index's policy table, searched on disk: only the bucket directory
/// is read at open (16 KB whatever the registry's size); a hash is found by
/// reading its bucket's few hashes, and a policy is read, checked against
/// its hash and decoded (canonical check and validation) the first time a
/// verified chunk names it. A registry has 10^5 policies, a single lookup
/// needs one or two: reading them all made opening grow with the registry.
#[derive(Debug)]
pub(super) struct PolicyTable {
    pub(super) n: usize,
    /// `buckets[b]..buckets[b + 1]`: the places of the hashes whose first
    /// [`BUCKET_BITS`] bits are `b` (non-decreasing, from 0 to `n`).
    pub(super) buckets: Vec<u32>,
    /// File offsets of the sorted hashes (32 bytes each) and of the ends of
    /// the policies' bytes in the blob (u64 each).
    pub(super) hashes_offset: u64,
    pub(super) ends_offset: u64,
    pub(super) blob_offset: u64,
    pub(super) blob_len: u64,
    /// Boxed: a cell is 8 bytes until its policy is decoded.
    pub(super) decoded: Vec<std::cell::OnceCell<Box<Policy>>>,
    /// Hashes found so far, and their places.
    pub(super) found: RefCell<HashMap<[u8; 32], u32, FastHash>>,
}

/// Bits of a policy hash that pick its bucket: 4096 buckets hold a few
/// policies each even at 10^5 policies (one small read per bucket), and the
/// directory is 16 KB.
pub(super) const BUCKET_BITS: u32 = 12;
/// Number of buckets.
pub(super) const BUCKETS: usize = 1 << BUCKET_BITS;

pub(super) fn bucket_of(h: &[u8; 32]) -> usize {
    usize::from(u16::from_be_bytes([h[0], h[1]]) >> (16 - BUCKET_BITS))
}
