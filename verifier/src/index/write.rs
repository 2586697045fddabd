//! Writing an index: the header, each range's block (chunk rows, the tree
//! above the chunk hashes, the entry stream).

#[allow(clippy::wildcard_imports)]
use super::*;

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

    // The bucket directory: where each bucket's hashes start, then n.
    let mut buckets = vec![0u32; BUCKETS + 1];
    for (h, _) in &pols {
        buckets[bucket_of(h) + 1] += 1;
    }
    for b in 1..buckets.len() {
        buckets[b] += buckets[b - 1];
    }
    // The prefix table as a block: its rows keyed by prefix key, each
    // naming its own policy hash.
    let mut prefix_rows = Rows::with_capacity(state.prefixes.len(), 0);
    for (k, r) in state.prefixes.iter().enumerate() {
        prefix_rows.push(prefix_key(r.scope), r.seq, &r.id, k as u32);
    }
    let prefix_block = block_of(&prefix_rows, &prefix_hashes).0;

    let mut header_len: u64 =
        8 + 4 + 32 + 4 + 4 * (BUCKETS as u64 + 1) + 4 + 16 + 4 + 40 * state.ranges.len() as u64;
    header_len += pols.iter().map(|p| 40 + p.1.len() as u64).sum::<u64>();
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
        for b in &buckets {
            w.write_all(&b.to_le_bytes())?;
        }
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
        w.write_all(&header_len.to_le_bytes())?;
        w.write_all(&(prefix_block.len() as u64).to_le_bytes())?;
        w.write_all(&(state.ranges.len() as u32).to_le_bytes())?;
        let mut offset = header_len + prefix_block.len() as u64;
        for (lo, hi, rows) in &state.ranges {
            let len = block_len(rows);
            for v in [*lo, *hi, rows.len() as u64, offset, len] {
                w.write_all(&v.to_le_bytes())?;
            }
            offset += len;
        }
        w.write_all(&prefix_block)?;
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
