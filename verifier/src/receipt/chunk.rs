//! The compact chunk encoding of compact receipts (SPEC.md §13.4): a chunk's
//! entries without the repetition of the canonical entry stream (§6) —
//! keys as LEB128 deltas, seqs as LEB128, each distinct policy hash once,
//! and an id that is the chunk's id prefix followed by the entry's seq in
//! decimal (the publisher's own id scheme, §5.3) as one byte.
//! A verifier decodes it back to the canonical stream and hashes that, so
//! the encoding changes no commitment; only the canonical encoding of a
//! chunk is accepted (decode, re-encode, compare).

use crate::columns::{VarintReader, put_varint};
use crate::state::ENTRY_FIXED;

use super::check::parse_chunk;

/// The compact encoding of canonical chunk bytes; `None` when `bytes` is
/// not a whole number of entries.
pub fn encode(bytes: &[u8]) -> Option<Vec<u8>> {
    let entries = parse_chunk(bytes)?;
    // The id prefix: the first id that ends in its entry's seq, without it.
    let prefix = entries
        .iter()
        .find_map(|e| e.id.strip_suffix(&e.seq.to_string()))
        .unwrap_or_default();
    let mut table: Vec<[u8; 32]> = Vec::new();
    let mut body = Vec::with_capacity(bytes.len() / 2);
    let mut prev = 0u64;
    for e in &entries {
        let delta = e.key.checked_sub(prev)?;
        prev = e.key;
        put_varint(&mut body, delta);
        put_varint(&mut body, e.seq);
        if e.id.strip_suffix(&e.seq.to_string()) == Some(prefix) {
            body.push(0);
        } else {
            body.push(u8::try_from(e.id.len()).ok()?);
            body.extend_from_slice(e.id.as_bytes());
        }
        let i = table
            .iter()
            .position(|h| *h == e.policy)
            .unwrap_or_else(|| {
                table.push(e.policy);
                table.len() - 1
            });
        body.push(u8::try_from(i).ok()?);
    }
    let mut out = Vec::with_capacity(2 + prefix.len() + 32 * table.len() + body.len());
    out.push(u8::try_from(prefix.len()).ok()?);
    out.extend_from_slice(prefix.as_bytes());
    out.push(u8::try_from(table.len()).ok()?);
    for h in &table {
        out.extend_from_slice(h);
    }
    out.extend_from_slice(&body);
    Some(out)
}

/// The canonical chunk bytes a compact encoding stands for; `None` unless
/// `compact` is exactly the encoding [`encode`] gives for them.
pub fn decode(compact: &[u8]) -> Option<Vec<u8>> {
    let (&plen, rest) = compact.split_first()?;
    let prefix = rest.get(..usize::from(plen))?;
    let (&d, rest) = rest.get(usize::from(plen)..)?.split_first()?;
    let d = usize::from(d);
    let table_len = d.checked_mul(32)?;
    let table: Vec<&[u8]> = rest.get(..table_len)?.chunks(32).collect();
    let body = rest.get(table_len..)?;
    let mut r = VarintReader::new(body);
    let mut out = Vec::with_capacity(body.len() * 2);
    let mut key = 0u64;
    // Every entry takes at least 4 bytes of the body: bounded by its length.
    while r.pos < body.len() {
        key = key.checked_add(r.next()?)?;
        let seq = r.next()?;
        let n = usize::from(*body.get(r.pos)?);
        let derived;
        let id = if n == 0 {
            derived = [prefix, seq.to_string().as_bytes()].concat();
            &derived[..]
        } else {
            body.get(r.pos + 1..r.pos + 1 + n)?
        };
        let p = usize::from(*body.get(r.pos + 1 + n)?);
        r.pos += n + 2;
        out.extend_from_slice(&key.to_be_bytes());
        out.extend_from_slice(&seq.to_be_bytes());
        out.push(u8::try_from(id.len()).ok()?);
        out.extend_from_slice(id);
        out.extend_from_slice(table.get(p)?);
    }
    // A chunk holds at least one entry.
    if out.len() < ENTRY_FIXED {
        return None;
    }
    // Canonical: the table in order of first use, each hash used, minimal
    // varints — exactly what encoding the result gives.
    (encode(&out)? == compact).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: u64, seq: u64, id: &str, policy: u8) -> Vec<u8> {
        let mut b = key.to_be_bytes().to_vec();
        b.extend_from_slice(&seq.to_be_bytes());
        b.push(id.len() as u8);
        b.extend_from_slice(id.as_bytes());
        b.extend_from_slice(&[policy; 32]);
        b
    }

    #[test]
    fn a_chunk_round_trips_in_less_than_half_the_bytes_and_no_second_encoding_is_accepted() {
        let chunk: Vec<u8> = (0..16u64)
            // Ids as the publisher makes them (prefix ‖ seq), and two not.
            .flat_map(|i| {
                let seq = 1000 + i;
                let id = if i % 7 == 3 {
                    format!("X{i}")
                } else {
                    format!("CR-{seq}")
                };
                entry(38_697_852_300_001 + i * 3, seq, &id, (i % 3) as u8)
            })
            .collect();
        let c = encode(&chunk).unwrap();
        assert!(c.len() * 2 < chunk.len(), "{} vs {}", c.len(), chunk.len());
        assert_eq!(decode(&c).unwrap(), chunk);
        // Every single flipped byte is refused or decodes to other entries
        // (which then fail the chunk hash); none decodes to the same chunk.
        for i in 0..c.len() {
            let mut bad = c.clone();
            bad[i] ^= 0x01;
            assert_ne!(decode(&bad).as_deref(), Some(chunk.as_slice()), "byte {i}");
        }
        // An unused table hash, a padded varint, trailing bytes: refused.
        let h = 1 + usize::from(c[0]);
        assert_eq!(&c[1..h], b"CR-");
        let t = h + 1 + 32 * usize::from(c[h]);
        let mut padded = c[..t].to_vec();
        padded.extend_from_slice(&[c[t] | 0x80, 0x80, 0x00]);
        padded.extend_from_slice(&c[t + 1..]);
        assert_eq!(decode(&padded), None);
        let mut unused = c[..h].to_vec();
        unused.push(c[h] + 1);
        unused.extend_from_slice(&c[h + 1..t]);
        unused.extend_from_slice(&[9; 32]);
        unused.extend_from_slice(&c[t..]);
        assert_eq!(decode(&unused), None);
        // An id spelled out that the prefix would give: not canonical.
        let mut spelled = c[..t].to_vec();
        let mut rr = VarintReader::new(&c[t..]);
        rr.next().unwrap();
        rr.next().unwrap();
        assert_eq!(c[t + rr.pos], 0, "the first id is derived");
        spelled.extend_from_slice(&c[t..t + rr.pos]);
        spelled.push(7);
        spelled.extend_from_slice(b"CR-1000");
        spelled.extend_from_slice(&c[t + rr.pos + 1..]);
        assert_eq!(decode(&spelled), None);
        assert_eq!(decode(&unused), None);
        let mut trailing = c.clone();
        trailing.push(0);
        assert_eq!(decode(&trailing), None);
        assert_eq!(decode(&[]), None);
        assert_eq!(decode(&[0, 0]), None, "no entries");
    }
}
