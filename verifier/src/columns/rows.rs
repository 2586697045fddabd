//! Rows in memory: exact-scope entries column-wise, with a shared table of
//! distinct policies.

#[allow(clippy::wildcard_imports)]
use super::*;

/// A table of distinct policies shared by many rows.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    pub list: Vec<Policy>,
    map: HashMap<Policy, u32>,
}

impl PolicySet {
    pub fn intern(&mut self, p: &Policy) -> u32 {
        if let Some(&i) = self.map.get(p) {
            return i;
        }
        let i = self.list.len() as u32;
        self.list.push(p.clone());
        self.map.insert(p.clone(), i);
        i
    }

    pub fn get(&self, i: u32) -> &Policy {
        &self.list[i as usize]
    }
}

/// Exact-scope entries sorted by `(key, seq)`, column-wise in memory. `pol`
/// indexes a [`PolicySet`] held by the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rows {
    pub keys: Vec<u64>,
    pub seqs: Vec<u64>,
    id_buf: Vec<u8>,
    id_end: Vec<usize>,
    pub pol: Vec<u32>,
}

impl Rows {
    /// Empty rows with room for `rows` rows and `id_bytes` bytes of ids.
    pub fn with_capacity(rows: usize, id_bytes: usize) -> Rows {
        Rows {
            keys: Vec::with_capacity(rows),
            seqs: Vec::with_capacity(rows),
            id_buf: Vec::with_capacity(id_bytes),
            id_end: Vec::with_capacity(rows),
            pol: Vec::with_capacity(rows),
        }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn id(&self, i: usize) -> &str {
        // Ids are checked to be ASCII when they enter a Rows.
        std::str::from_utf8(self.id_bytes(i)).unwrap_or("")
    }

    /// The bytes of row `i`'s id.
    pub fn id_bytes(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.id_end[i - 1] };
        &self.id_buf[start..self.id_end[i]]
    }

    pub fn push(&mut self, key: u64, seq: u64, id: &str, pol: u32) {
        self.keys.push(key);
        self.seqs.push(seq);
        self.id_buf.extend_from_slice(id.as_bytes());
        self.id_end.push(self.id_buf.len());
        self.pol.push(pol);
    }

    /// Push a row whose id is `a` ‖ `b` (printable ASCII, checked by the caller).
    pub(super) fn push_parts(&mut self, key: u64, seq: u64, a: &[u8], b: &[u8], pol: u32) {
        self.keys.push(key);
        self.seqs.push(seq);
        self.id_buf.extend_from_slice(a);
        self.id_buf.extend_from_slice(b);
        self.id_end.push(self.id_buf.len());
        self.pol.push(pol);
    }

    /// Append all of `other`'s rows (which must sort after ours).
    pub fn append(&mut self, other: &Rows) {
        let base = self.id_buf.len();
        self.keys.extend_from_slice(&other.keys);
        self.seqs.extend_from_slice(&other.seqs);
        self.id_buf.extend_from_slice(&other.id_buf);
        self.id_end.extend(other.id_end.iter().map(|e| e + base));
        self.pol.extend_from_slice(&other.pol);
    }

    fn push_from(&mut self, other: &Rows, i: usize) {
        self.keys.push(other.keys[i]);
        self.seqs.push(other.seqs[i]);
        self.id_buf.extend_from_slice(other.id_bytes(i));
        self.id_end.push(self.id_buf.len());
        self.pol.push(other.pol[i]);
    }

    /// Rows `[a, b)` as a new `Rows`.
    #[must_use]
    pub fn slice(&self, a: usize, b: usize) -> Rows {
        let base = if a == 0 { 0 } else { self.id_end[a - 1] };
        let end = if b == 0 { 0 } else { self.id_end[b - 1] };
        Rows {
            keys: self.keys[a..b].to_vec(),
            seqs: self.seqs[a..b].to_vec(),
            id_buf: self.id_buf[base..end.max(base)].to_vec(),
            id_end: self.id_end[a..b].iter().map(|e| e - base).collect(),
            pol: self.pol[a..b].to_vec(),
        }
    }

    /// First row index whose key is ≥ `key`.
    pub fn lower_bound(&self, key: u64) -> usize {
        self.keys.partition_point(|&k| k < key)
    }

    /// Apply sorted deletions and upserts (SPEC.md §7 step 8). A deletion of a
    /// row that does not exist is refused: a layer must describe exactly the
    /// change between two states.
    pub fn apply(&self, dels: &[(u64, u64)], puts: &Rows, file: &str) -> VResult<Rows> {
        let mut out = Rows::with_capacity(
            self.len() + puts.len(),
            self.id_buf.len() + puts.id_buf.len(),
        );
        let (mut i, mut d, mut p) = (0, 0, 0);
        loop {
            let cur = (i < self.len()).then(|| (self.keys[i], self.seqs[i]));
            let del = dels.get(d).copied();
            let put = (p < puts.len()).then(|| (puts.keys[p], puts.seqs[p]));
            let Some(next) = [cur, del, put].into_iter().flatten().min() else {
                break;
            };
            let has_cur = cur == Some(next);
            if del == Some(next) {
                if !has_cur {
                    return Err(reject(
                        file,
                        Code::LayerMismatch,
                        format!(
                            "deletes ({}, seq {}), which the previous state does not hold",
                            crate::isrc::Isrc::from_key(next.0)
                                .map_or_else(|| next.0.to_string(), crate::isrc::Isrc::compact),
                            next.1
                        ),
                    ));
                }
                d += 1;
                i += 1;
                continue;
            }
            if put == Some(next) {
                out.push_from(puts, p);
                p += 1;
                if has_cur {
                    i += 1;
                }
                continue;
            }
            out.push_from(self, i);
            i += 1;
        }
        Ok(out)
    }
}
