//! Loading chunk tables and chunks and proving them against the signed range
//! leaves: audit paths for the first chunks, one whole-table check after.

#[allow(clippy::wildcard_imports)]
use super::*;
use std::sync::atomic::Ordering::Relaxed;

impl Index {
    /// The signed leaf block `i` must give for chunk root `root`: a
    /// range's leaf, or for the prefix block (`n_ranges`) the prefix leaf.
    fn leaf_of(&self, i: usize, root: &[u8; 32]) -> [u8; 32] {
        let e = self.ranges[i];
        if i == self.n_ranges {
            prefix_leaf_of_root(e.count, root)
        } else {
            range_leaf_of_root(e.lo, e.hi, e.count, root)
        }
    }

    /// Read range `i`'s chunk table (not yet checked against the leaf: see
    /// [`Index::check_whole`] and [`Index::check_path`]).
    pub(super) fn load_table(&self, i: usize) -> Result<ChunkTable, Rejection> {
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
            whole: std::sync::atomic::AtomicBool::new(false),
            paths: std::sync::atomic::AtomicU32::new(0),
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
    pub(super) fn check_whole(&self, i: usize, t: &ChunkTable) -> Result<(), Rejection> {
        if t.whole.load(Relaxed) {
            return Ok(());
        }
        if self.leaf_of(i, &merkle_root(&t.hashes)) != self.leaves[i] {
            return Err(corrupt(
                &self.path,
                format!("block {i}: its chunk hashes do not hash to the manifest's leaf"),
            ));
        }
        t.whole.store(true, Relaxed);
        Ok(())
    }

    /// Check that the stored tree of range `i` is the tree over its (whole,
    /// checked) chunk hashes: a wrong node would only fail a later audit
    /// path, and `verify` is meant to find it now.
    pub(super) fn check_tree(&self, i: usize, t: &ChunkTable) -> Result<(), Rejection> {
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
    pub(super) fn check_path(
        &self,
        i: usize,
        t: &ChunkTable,
        c: usize,
        h: &[u8; 32],
    ) -> Result<(), Rejection> {
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
        if self.leaf_of(i, &cur) != self.leaves[i] {
            return Err(bad(
                "its audit path does not lead to the manifest's leaf".into()
            ));
        }
        t.paths.fetch_add(1, Relaxed);
        Ok(())
    }

    /// Read chunk `c` of range `i`, check it against its chunk hash (and the
    /// hash against the signed leaf, by audit path or the whole table) and
    /// parse it.
    #[allow(clippy::many_single_char_names)]
    pub(super) fn load_chunk(
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
        if !t.whole.load(Relaxed) {
            if t.paths.load(Relaxed) < PATH_PROOFS_PER_TABLE {
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
                    let Some(p) = self.find_policy(&h)? else {
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

    #[allow(clippy::many_single_char_names)]
    pub(super) fn chunks_around(
        &self,
        i: usize,
        t: &ChunkTable,
        key: u64,
        load: impl Fn(usize) -> Result<Arc<Chunk>, Rejection>,
    ) -> Result<(usize, Vec<Arc<Chunk>>), Rejection> {
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
}
