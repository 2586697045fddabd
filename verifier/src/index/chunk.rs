//! Parsed chunks and chunk tables, read with positioned reads.

#[allow(clippy::wildcard_imports)]
use super::*;

/// Sequential reads through `read_at`, so opening never depends on (or moves)
/// a shared file cursor.
pub(super) struct PosReader<'a> {
    pub(super) file: &'a File,
    pub(super) pos: u64,
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
pub(super) struct RangeEntry {
    pub(super) lo: u64,
    pub(super) hi: u64,
    pub(super) count: u64,
    pub(super) offset: u64,
    pub(super) len: u64,
}

/// A verified, parsed chunk: its entry-stream bytes and where each entry starts.
#[derive(Debug)]
pub struct Chunk {
    pub(super) bytes: Vec<u8>,
    /// Entries held (at most [`CHUNK`]); the arrays are inline so a chunk
    /// is one allocation besides its bytes.
    pub(super) len: usize,
    pub(super) keys: [u64; CHUNK],
    pub(super) starts: [u16; CHUNK],
    pub(super) pols: [u32; CHUNK],
}

impl Chunk {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(super) fn keys(&self) -> &[u64] {
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

    pub(super) fn entry(&self, i: usize) -> (u64, u64, &str, u32) {
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

    pub(super) fn weight(&self) -> usize {
        self.bytes.len() + std::mem::size_of::<Chunk>()
    }
}

/// A range's chunk table, checked against the signed range leaf.
#[derive(Debug)]
pub struct ChunkTable {
    pub(super) first_keys: Vec<u64>,
    pub(super) starts: Vec<u64>,
    /// The rows' chunk hashes: trusted only once `whole` is set, or for a
    /// chunk whose audit path was checked.
    pub(super) hashes: Vec<[u8; 32]>,
    pub(super) stream_len: u64,
    /// File offset of the stored tree (levels above the leaves).
    pub(super) tree_offset: u64,
    /// File offset of the entry stream (chunk starts are relative to it).
    pub(super) stream_offset: u64,
    /// MTH(hashes) was checked against the signed range leaf.
    pub(super) whole: std::sync::atomic::AtomicBool,
    /// Chunks proven by audit path so far.
    pub(super) paths: std::sync::atomic::AtomicU32,
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

    pub(super) fn weight(&self) -> usize {
        self.hashes.len() * 48
    }
}
