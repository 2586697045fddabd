//! [`Reader`]: the query API over one verified snapshot of a store — one
//! question ([`Reader::answer`], with deciding ids, and with a receipt through
//! [`Reader::answer_into`]) or a whole catalogue ([`Reader::decide_batch`]).
//! It reads the local index (each block checked against its signed leaf on
//! first use) and the lookup rule; it never writes to the store.

use std::cell::{Cell, RefCell};

use crate::docs::paths;
use crate::error::{Code, Rejection, reject};
use crate::index::Index;
use crate::lookup::{Answer, Question};
use crate::model::Entry;

/// What [`Reader::scan_range`] hands each ISRC to: the ISRC and its answer.
pub type ScanFn<'f> = dyn FnMut(crate::isrc::Isrc, &Answer) -> Result<(), Rejection> + 'f;

/// Why a scan stopped: the index (a rebuild may help) or the caller.
enum Stop {
    Index(Rejection),
    Caller(Rejection),
}
use crate::store::{Snapshot, SnapshotInfo, Store};

/// The index chunks a batch holds: a run of range `range`'s chunks from
/// chunk `first`, of the range's `count`.
#[derive(Default)]
struct Held {
    range: Option<usize>,
    first: usize,
    chunks: Vec<std::sync::Arc<crate::index::Chunk>>,
    count: usize,
}

/// Answers questions from one verified snapshot. Index blocks are verified
/// against the signed range leaves on first use; a corrupt index is rebuilt
/// once from verified files (with a warning) and the question retried.
pub struct Reader {
    pub(crate) store: Store,
    pub(crate) snap: Snapshot,
    pub(crate) info: SnapshotInfo,
    pub(crate) index: RefCell<Index>,
    pub(crate) rebuilt: Cell<bool>,
}

// A reader moves between threads (a language binding answers on the
// caller's thread with its interpreter lock released): Send, checked here.
const _: fn() = || {
    fn send<T: Send>() {}
    send::<Reader>();
};

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("snapshot", &self.info)
            .finish_non_exhaustive()
    }
}

impl Reader {
    /// The snapshot every answer comes from.
    pub fn snapshot(&self) -> &SnapshotInfo {
        &self.info
    }

    /// The verified snapshot (root, head, manifest) answers come from.
    pub fn snap(&self) -> &Snapshot {
        &self.snap
    }

    /// A receipt builder holding this snapshot's documents: the root chain
    /// from the pinned root, the head, the manifest and the prefix table.
    pub fn receipt_builder(&self) -> Result<crate::receipt::Builder, Rejection> {
        let st = &self.store;
        let chain = st.trusted_root_chain()?;
        let mut roots = Vec::new();
        for v in chain.pinned..=self.snap.root.version {
            let rel = paths::root(v);
            roots.push(st.read(&rel, st.limits().max_root_bytes)?.ok_or_else(|| {
                reject(
                    st.loc(&rel),
                    Code::StoreIncomplete,
                    "a verified root is missing",
                )
            })?);
        }
        let head = st
            .read(paths::HEAD, st.limits().max_head_bytes)?
            .ok_or_else(|| {
                reject(
                    st.loc(paths::HEAD),
                    Code::StoreIncomplete,
                    "the head is missing",
                )
            })?;
        let m = &self.snap.manifest;
        let mrel = paths::manifest(m.version, &self.snap.manifest_sha256);
        let mbytes = st
            .read(&mrel, st.limits().max_manifest_bytes)?
            .ok_or_else(|| {
                reject(
                    st.loc(&mrel),
                    Code::StoreIncomplete,
                    "the manifest is missing",
                )
            })?;
        let b = crate::receipt::Builder::new(
            roots,
            head,
            mbytes,
            m.clone(),
            &self.index.borrow().prefix_records()?,
        );
        Ok(match self.log_proof()? {
            Some(log) => b.with_log(log),
            None => b,
        })
    }

    /// The store's witnessed log as a compact receipt needs it: the
    /// checkpoint sync verified, this snapshot's log entry and its
    /// inclusion proof. `None` when the root names no witnesses or the
    /// stored log does not hold this snapshot's entry (an older store).
    fn log_proof(&self) -> Result<Option<crate::receipt::LogProof>, Rejection> {
        let st = &self.store;
        if self.snap.root.witnesses.is_none() {
            return Ok(None);
        }
        let note = st.read(
            crate::tlog::CHECKPOINT_PATH,
            crate::note::MAX_NOTE_BYTES as u64,
        )?;
        let leaves = st.read(crate::tlog::LEAVES_PATH, crate::tlog::MAX_LOG_SIZE * 32)?;
        let (Some(note), Some(leaves)) = (note, leaves) else {
            return Ok(None);
        };
        // The note just read (sync verified it), not a second read.
        let cp = crate::note::Note::parse(&note)
            .and_then(|n| crate::note::Checkpoint::parse_text(&n.text))
            .map_err(|e| reject(st.loc(crate::tlog::CHECKPOINT_PATH), Code::StoreCorrupt, e))?;
        let leaves = crate::note::parse_leaves(&leaves)
            .map_err(|e| reject(st.loc(crate::tlog::LEAVES_PATH), Code::StoreCorrupt, e))?;
        let Some(tree) = leaves.get(..usize::try_from(cp.size).unwrap_or(usize::MAX)) else {
            return Ok(None);
        };
        let entry = crate::tlog::LogEntry::of(&self.snap.manifest, &self.snap.manifest_sha256);
        let Some(i) = entry
            .version
            .checked_sub(1)
            .and_then(|i| usize::try_from(i).ok())
            .filter(|&i| tree.get(i) == Some(&entry.hash()))
        else {
            return Ok(None);
        };
        Ok(Some(crate::receipt::LogProof {
            checkpoint: note,
            entry,
            inclusion: crate::merkle::audit_path(tree, i),
        }))
    }

    /// Answer one question and record it, with its proof, in `b`. `q` is
    /// `None` for input that is not an ISRC.
    pub fn answer_into(
        &self,
        b: &mut crate::receipt::Builder,
        input: &str,
        use_: crate::model::Use,
        territory: Option<&str>,
        at: crate::time::Day,
        q: Option<&Question>,
    ) -> Result<Answer, Rejection> {
        let Some(q) = q else {
            let a = Answer::invalid_isrc();
            b.add(input, use_, territory, at, None, &a, None);
            return Ok(a);
        };
        let a = self.answer(q)?;
        let key = q.isrc.key();
        let range = self.snap.manifest.range_of(key);
        let ix = self.index.borrow();
        let table = ix.verified_table(range)?;
        let (first, chunks) = ix.chunks_for(range, key)?;
        let pols: Vec<&crate::model::Policy> = chunks
            .iter()
            .flat_map(|c| c.entries_of(key))
            .map(|(_, _, p)| ix.policy(p))
            .collect::<Result<_, _>>()?;
        b.add(
            input,
            use_,
            territory,
            at,
            Some(q),
            &a,
            Some(crate::receipt::RangeHit {
                index: range,
                hashes: table.hashes(),
                first,
                chunks: chunks.iter().map(|c| c.bytes()).collect(),
                policies: pols,
            }),
        );
        Ok(a)
    }

    /// Decisions and reasons for a batch of ISRCs asked with one use,
    /// territory and day: the library call behind `is_allowed` /
    /// `filter_allowed`-style filters over whole catalogues. Each result is
    /// `answer(q).decision` and `.reason` (a test checks), without the
    /// deciding ids.
    ///
    /// Sorted input runs at memory speed: consecutive keys reuse the index
    /// chunks already in hand, and the lookup rule runs once per set of
    /// covering prefix entries for ISRCs without an entry of their own, and
    /// once per (that set, policy) for ISRCs with exactly one — the rule's
    /// decision and reason depend on nothing else then: an ISRC's own entry is
    /// its only exact-scope candidate, more specific than every prefix entry,
    /// so its seq and id never decide. ISRCs with several entries go through
    /// [`Reader::answer`]. Input not in key order is put in order first (a
    /// stable radix sort of positions, repeats answered once) and the
    /// results given back in input order.
    pub fn decide_batch(
        &self,
        isrcs: &[crate::isrc::Isrc],
        use_: crate::model::Use,
        territory: Option<&str>,
        at: crate::time::Day,
    ) -> Result<Vec<(crate::model::Decision, crate::model::Reason)>, Rejection> {
        if isrcs.windows(2).all(|w| w[0].key() <= w[1].key()) {
            return self.decide_sorted(isrcs, use_, territory, at);
        }
        let mut order: Vec<(u64, usize)> = isrcs
            .iter()
            .enumerate()
            .map(|(i, isrc)| (isrc.key(), i))
            .collect();
        radsort::sort_by_key(&mut order, |(k, _)| *k);
        let mut unique: Vec<crate::isrc::Isrc> = order.iter().map(|&(_, i)| isrcs[i]).collect();
        unique.dedup_by_key(|isrc| isrc.key());
        let decided = self.decide_sorted(&unique, use_, territory, at)?;
        // Every position is in `order` once: each slot is written below.
        let placeholder = Answer::invalid_isrc();
        let mut out = vec![(placeholder.decision, placeholder.reason); isrcs.len()];
        let mut u = 0usize;
        for (k, &(key, i)) in order.iter().enumerate() {
            if k > 0 && order[k - 1].0 != key {
                u += 1;
            }
            if let (Some(slot), Some(d)) = (out.get_mut(i), decided.get(u)) {
                *slot = *d;
            }
        }
        Ok(out)
    }

    /// [`Reader::decide_batch`] over keys in order.
    fn decide_sorted(
        &self,
        isrcs: &[crate::isrc::Isrc],
        use_: crate::model::Use,
        territory: Option<&str>,
        at: crate::time::Day,
    ) -> Result<Vec<(crate::model::Decision, crate::model::Reason)>, Rejection> {
        type Outcome = (crate::model::Decision, crate::model::Reason);
        let question = |isrc| Question {
            isrc,
            use_,
            territory: territory.map(str::to_string),
            at,
        };
        let mut out = Vec::with_capacity(isrcs.len());
        let mut memo: std::collections::HashMap<
            (u64, u64, u32),
            Outcome,
            rustc_hash::FxBuildHasher,
        > = std::collections::HashMap::default();
        let mut last: Option<((u64, u64, u32), Outcome)> = None;
        // The covering prefix groups of the last registrant-year seen.
        let mut cover: Option<(u64, (u64, u64))> = None;
        let mut held = Held::default();
        for &isrc in isrcs {
            let key = isrc.key();
            if !self.hold(&mut held, key, true) {
                // Let the one-question path repair the index.
                let a = self.answer(&question(isrc))?;
                out.push((a.decision, a.reason));
                continue;
            }
            let (mut n, mut pol) = (0u32, u32::MAX);
            for c in &held.chunks {
                for (_, _, p) in c.entries_of(key) {
                    n += 1;
                    pol = p;
                }
            }
            if n > 1 {
                let a = self.answer(&question(isrc))?;
                out.push((a.decision, a.reason));
                continue;
            }
            let ry = key / crate::isrc::REGISTRANT_YEAR_SPAN;
            let (reg, year) = match cover {
                Some((r, c)) if r == ry => c,
                _ => {
                    let c = self.index.borrow().cover_key(isrc)?;
                    cover = Some((ry, c));
                    c
                }
            };
            let m = (reg, year, pol);
            let outcome = match last {
                Some((k, o)) if k == m => o,
                _ => {
                    let o = if let Some(&o) = memo.get(&m) {
                        o
                    } else {
                        let a = self.answer(&question(isrc))?;
                        memo.insert(m, (a.decision, a.reason));
                        (a.decision, a.reason)
                    };
                    last = Some((m, o));
                    o
                }
            };
            out.push(outcome);
        }
        Ok(out)
    }

    /// Make `held` hold every chunk that can contain `key`'s entries,
    /// keeping what it holds when that already does (consecutive sorted
    /// keys mostly fall in the same chunks). `false` when the index cannot
    /// give them: the caller asks [`Reader::answer`], which repairs it.
    fn hold(&self, held: &mut Held, key: u64, scan: bool) -> bool {
        let range = self.snap.manifest.range_of(key);
        let chunks = &held.chunks;
        let covered = held.range == Some(range)
            && (held.first == 0 || chunks.first().is_some_and(|c| c.key(0) < key))
            && (held.first + chunks.len() == held.count
                || chunks.last().is_some_and(|c| c.key(c.len() - 1) > key));
        if covered {
            return true;
        }
        let ix = self.index.borrow();
        let found = ix
            .chunks_for_batch(range, key, scan)
            .and_then(|(s, chunks)| Ok((s, chunks, ix.table(range)?.len())));
        if let Ok((first, chunks, count)) = found {
            *held = Held {
                range: Some(range),
                first,
                chunks,
                count,
            };
            true
        } else {
            *held = Held::default();
            false
        }
    }

    /// Answers to many questions, in the order given, each equal to
    /// [`Reader::answer`]'s (deciding ids and terms included; a test
    /// checks); `None` is an input that is not an ISRC, answered `unknown` /
    /// `invalid_isrc`. The questions are taken in key order, so consecutive
    /// keys share the index chunks already in hand and each chunk is read
    /// and verified once per call: the batch path of `consentry check
    /// --input`, whose questions may each carry their own use, territory
    /// and day.
    pub fn answer_many(&self, qs: &[Option<Question>]) -> Result<Vec<Answer>, Rejection> {
        self.answer_many_with(&mut [], qs)
    }

    /// Another reader of the same verified snapshot, on its own handle of
    /// the same index with empty caches (nothing is verified again but the
    /// chunks it reads): a helper for [`Reader::answer_many_with`].
    pub fn fork(&self) -> Result<Reader, Rejection> {
        Ok(Reader {
            store: self.store.clone(),
            snap: self.snap.clone(),
            info: self.info.clone(),
            index: RefCell::new(self.index.borrow().fork()?),
            rebuilt: Cell::new(self.rebuilt.get()),
        })
    }

    /// [`Reader::answer_many`] on this thread and one thread per helper
    /// (see [`Reader::fork`]): the questions in key order are cut into
    /// contiguous runs, one per reader, so each reads its own part of the
    /// index. The answers are the same whatever the number of helpers (a
    /// test checks).
    pub fn answer_many_with(
        &self,
        helpers: &mut [Reader],
        qs: &[Option<Question>],
    ) -> Result<Vec<Answer>, Rejection> {
        let mut order: Vec<(u64, usize)> = qs
            .iter()
            .enumerate()
            .filter_map(|(i, q)| q.as_ref().map(|q| (q.isrc.key(), i)))
            .collect();
        radsort::sort_by_key(&mut order, |(k, _)| *k);
        let mut out: Vec<Option<Answer>> = (0..qs.len()).map(|_| None).collect();
        let per = order.len().div_ceil(helpers.len() + 1).max(1);
        let mut parts = order.chunks(per);
        let mine = parts.next().unwrap_or_default();
        let answered = std::thread::scope(|s| {
            let running: Vec<_> = helpers
                .iter_mut()
                .zip(parts)
                .map(|(r, part)| s.spawn(move || r.answer_sorted(qs, part)))
                .collect();
            let mut all = vec![self.answer_sorted(qs, mine)];
            for t in running {
                all.push(t.join().unwrap_or_else(|_| {
                    Err(reject(
                        self.index_loc(),
                        Code::IoError,
                        "a batch worker stopped unexpectedly",
                    ))
                }));
            }
            all
        });
        for part in answered {
            for (i, a) in part? {
                out[i] = Some(a);
            }
        }
        Ok(out
            .into_iter()
            .map(|a| a.unwrap_or_else(Answer::invalid_isrc))
            .collect())
    }

    /// The answers to `qs[i]` for each `(key, i)` of `order` (in key order).
    fn answer_sorted(
        &self,
        qs: &[Option<Question>],
        order: &[(u64, usize)],
    ) -> Result<Vec<(usize, Answer)>, Rejection> {
        let mut out = Vec::with_capacity(order.len());
        let mut held = Held::default();
        for &(key, i) in order {
            let Some(Some(q)) = qs.get(i) else { continue };
            let a = if self.hold(&mut held, key, false) {
                Self::explain(&self.index.borrow(), q, &held.chunks)?
            } else {
                self.answer(q)?
            };
            out.push((i, a));
        }
        Ok(out)
    }

    /// Answer a question as a person or a file asked it: `input` in any
    /// spelling (SPEC.md §3.1); input that is not an ISRC is answered
    /// `unknown` / `invalid_isrc`, never refused. The one-question path of
    /// `consentry check` and of the language bindings.
    pub fn answer_input(
        &self,
        input: &str,
        use_: crate::model::Use,
        territory: Option<&str>,
        at: crate::time::Day,
    ) -> Result<Answer, Rejection> {
        match crate::lookup::parse_for_lookup(input) {
            Err(_) => Ok(Answer::invalid_isrc()),
            Ok(isrc) => self.answer(&Question {
                isrc,
                use_,
                territory: territory.map(str::to_string),
                at,
            }),
        }
    }

    /// [`Reader::decide_batch`] over inputs as given (any spelling, in any
    /// order, repeated or not): each is parsed as [`Reader::answer_input`]
    /// parses it, the valid ISRCs are sorted and deduplicated so that the
    /// batch runs at memory speed, and the results come back in input order.
    /// `None` (a missing value, e.g. an Arrow null) and input that is not an
    /// ISRC are `unknown` / `invalid_isrc` — never `allow`. The batch path of
    /// the language bindings; a test checks it equals `answer_input` row by
    /// row.
    pub fn decide_inputs<'a>(
        &self,
        inputs: impl IntoIterator<Item = Option<&'a str>>,
        use_: crate::model::Use,
        territory: Option<&str>,
        at: crate::time::Day,
    ) -> Result<Vec<(crate::model::Decision, crate::model::Reason)>, Rejection> {
        let invalid = Answer::invalid_isrc();
        let invalid = (invalid.decision, invalid.reason);
        // The valid ISRCs and where each answer goes back to; decide_batch
        // puts them in key order and answers repeats once.
        let mut n = 0usize;
        let (mut isrcs, mut at_pos) = (Vec::new(), Vec::new());
        for (i, input) in inputs.into_iter().enumerate() {
            n = i + 1;
            if let Some(isrc) = input.and_then(|s| crate::lookup::parse_for_lookup(s).ok()) {
                isrcs.push(isrc);
                at_pos.push(i);
            }
        }
        let decided = self.decide_batch(&isrcs, use_, territory, at)?;
        let mut out = vec![invalid; n];
        for (i, d) in at_pos.into_iter().zip(decided) {
            if let Some(slot) = out.get_mut(i) {
                *slot = d;
            }
        }
        Ok(out)
    }

    /// Answer one question.
    pub fn answer(&self, q: &Question) -> Result<Answer, Rejection> {
        let key = q.isrc.key();
        let range = self.snap.manifest.range_of(key);
        let found = {
            let ix = self.index.borrow();
            ix.chunks_for(range, key)
        };
        let (_, chunks) = match found {
            Ok(b) => b,
            Err(e) if !self.rebuilt.get() => {
                self.rebuild_index(&e)?;
                self.index.borrow().chunks_for(range, key)?
            }
            Err(e) => return Err(e),
        };
        let ix = self.index.borrow();
        Self::explain(&ix, q, &chunks)
    }

    /// The lookup rule over the exact entries of `q`'s key held in `chunks`
    /// (which must hold all of them) and the covering prefix entries: the
    /// one place a reader gathers an ISRC's entries.
    fn explain<'i>(
        ix: &'i Index,
        q: &Question,
        chunks: &'i [std::sync::Arc<crate::index::Chunk>],
    ) -> Result<Answer, Rejection> {
        let key = q.isrc.key();
        let prefixes = ix.covering(q.isrc)?;
        let mut entries = Vec::new();
        for (seq, id, pol) in chunks.iter().flat_map(|c| c.entries_of(key)) {
            entries.push(Entry {
                scope: crate::isrc::Scope::Exact(q.isrc),
                seq,
                id,
                policy: ix.policy(pol)?,
            });
        }
        for h in &prefixes {
            entries.push(Entry {
                scope: h.scope(),
                seq: h.seq(),
                id: h.id(),
                policy: ix.policy(h.policy())?,
            });
        }
        Ok(crate::lookup::lookup(q, entries))
    }

    /// Replace a corrupt index (the error `e` says how) by a private one
    /// built from the store's verified files, once per reader, with a
    /// warning saying how to repair the store's own.
    fn rebuild_index(&self, e: &Rejection) -> Result<(), Rejection> {
        let path = self.store.index_path(&self.snap.manifest_sha256);
        self.store.reporter().warn(&format!(
            "index {} is corrupt ({}); answering from a temporary index built from verified files (run `consentry verify --repair` to rebuild it in the store)",
            path.display(),
            e.detail
        ));
        self.rebuilt.set(true);
        let fresh = self.store.scratch_index(&self.snap)?;
        *self.index.borrow_mut() = fresh;
        Ok(())
    }

    fn index_loc(&self) -> String {
        self.store
            .index_path(&self.snap.manifest_sha256)
            .display()
            .to_string()
    }

    /// The prefix table (checked against the manifest's prefix leaf when
    /// the index was opened), every policy decoded.
    pub fn prefix_records(&self) -> Result<Vec<crate::declaration::Record>, Rejection> {
        self.index.borrow().prefix_records()
    }

    /// Number of ranges of the snapshot (SPEC.md §6): [`Reader::scan_range`]
    /// takes `0..range_count()`.
    pub fn range_count(&self) -> usize {
        self.snap.manifest.ranges.len()
    }

    /// The signed entry count of range `i` (an upper bound on its ISRCs).
    pub fn range_entries(&self, i: usize) -> u64 {
        self.snap.manifest.ranges.get(i).map_or(0, |r| r.count)
    }

    /// Every ISRC with an entry of its own (an exact scope) in range `i`, in
    /// key order, each with the answer [`Reader::answer`] gives it for (use,
    /// territory, at), handed to `f` one at a time:
    /// the whole state, range by range, without holding more than a few
    /// chunks. The range's chunk table is checked against its signed leaf
    /// once, every chunk against its hash; a corrupt index is replaced as
    /// for [`Reader::answer`] and the scan goes on where it was. An error
    /// from `f` ends the scan.
    pub fn scan_range(
        &self,
        i: usize,
        use_: crate::model::Use,
        territory: Option<&str>,
        at: crate::time::Day,
        f: &mut ScanFn<'_>,
    ) -> Result<(), Rejection> {
        let Some(r) = self.snap.manifest.ranges.get(i) else {
            return Ok(());
        };
        if r.count == 0 {
            return Ok(());
        }
        // `next`: the lowest key not yet answered.
        let mut next = r.lo;
        // Each pass answers at least one key (or ends): at most `count`
        // passes, plus one retry after an index rebuild.
        loop {
            match self.scan_from(i, next, use_, territory, at, f) {
                Ok(None) => return Ok(()),
                Ok(Some(k)) => next = k,
                Err(Stop::Index(e)) if !self.rebuilt.get() => self.rebuild_index(&e)?,
                Err(Stop::Caller(e) | Stop::Index(e)) => return Err(e),
            }
        }
    }

    /// One step of [`Reader::scan_range`]: the chunks around `from` (read
    /// ahead, verified), every key ≥ `from` whose entries they hold whole
    /// answered. `Some(next key)` to go on, `None` at the range's end.
    #[allow(clippy::many_single_char_names)]
    fn scan_from(
        &self,
        i: usize,
        from: u64,
        use_: crate::model::Use,
        territory: Option<&str>,
        at: crate::time::Day,
        f: &mut ScanFn<'_>,
    ) -> Result<Option<u64>, Stop> {
        let ix = self.index.borrow();
        let table = ix.verified_table(i).map_err(Stop::Index)?;
        let (s, chunks) = ix.chunks_for_scan(i, from).map_err(Stop::Index)?;
        let Some(last) = chunks.last().filter(|c| !c.is_empty()) else {
            return Ok(None);
        };
        let at_end = s + chunks.len() == table.len();
        let top = last.key(last.len() - 1);
        let mut keys: Vec<u64> = chunks
            .iter()
            .flat_map(|c| (0..c.len()).map(|j| c.key(j)))
            .filter(|&k| k >= from)
            .collect();
        keys.dedup();
        let mut q = Question {
            isrc: crate::isrc::Isrc::from_key(from).ok_or_else(|| {
                Stop::Index(reject(
                    self.index_loc(),
                    Code::IndexCorrupt,
                    "a range starts outside the key space",
                ))
            })?,
            use_,
            territory: territory.map(str::to_string),
            at,
        };
        for k in keys {
            // The top key's entries may go on in the next chunk, unless
            // this is the range's last one: answered on the next pass.
            if k == top && !at_end {
                return Ok(Some(k));
            }
            q.isrc = crate::isrc::Isrc::from_key(k).ok_or_else(|| {
                Stop::Index(reject(
                    self.index_loc(),
                    Code::IndexCorrupt,
                    "an entry's key is outside the key space",
                ))
            })?;
            let a = Self::explain(&ix, &q, &chunks).map_err(Stop::Index)?;
            f(q.isrc, &a).map_err(Stop::Caller)?;
        }
        if at_end {
            return Ok(None);
        }
        // Every key of these chunks was below the top: go on past it.
        Ok(Some(top))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isrc::{Isrc, Scope};
    use crate::model::Use;
    use crate::testsite::{self, NOW, Opts, TestSite, policy, record};
    use crate::verify::Expiry;

    /// Every (key, answer, deciding ids) a full scan gives.
    fn scan_all(r: &Reader, use_: Use, t: Option<&str>, at: i32) -> Vec<(Isrc, Answer)> {
        let mut out = Vec::new();
        for i in 0..r.range_count() {
            r.scan_range(i, use_, t, at, &mut |isrc, a| {
                out.push((isrc, a.clone()));
                Ok(())
            })
            .unwrap();
        }
        out
    }

    /// A scan answers every ISRC with an entry of its own exactly once, in
    /// key order, as [`Reader::answer`] does — keys whose entries straddle
    /// chunk boundaries included — and goes on over a corrupt index.
    #[test]
    fn scan_range_answers_every_exact_isrc_once_as_answer_does() {
        let tmp = tempfile::tempdir().unwrap();
        let mut site = TestSite::new(tmp.path().join("site"));
        let mut recs = testsite::example_records();
        let mut seq = 100;
        for d in 0..3000u64 {
            // 1 to 3 entries per ISRC: keys straddle 16-entry chunks.
            for k in 0..=(d % 3) {
                seq += 1;
                let who = ["Northwind Records", "Other Label", "An Artist"][k as usize];
                recs.push(record(
                    &format!("GBNWR25{:05}", d * 11),
                    seq,
                    &format!("G{seq}"),
                    policy(who, (d + k).is_multiple_of(3)),
                ));
            }
        }
        site.publish(&recs, &Opts::default());
        let store = testsite::synced_store(&site, &tmp.path().join("store"));
        let mut want: Vec<Isrc> = recs
            .iter()
            .filter_map(|r| match r.scope {
                Scope::Exact(i) => Some(i),
                _ => None,
            })
            .collect();
        want.sort_unstable();
        want.dedup();
        let day = crate::time::day_of(NOW);
        let reader = store.reader(NOW, Expiry::Enforce).unwrap();
        let got = scan_all(&reader, Use::TrainAi, None, day);
        assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), want);
        for (isrc, a) in &got {
            let q = Question {
                isrc: *isrc,
                use_: Use::TrainAi,
                territory: None,
                at: day,
            };
            assert_eq!(reader.answer(&q).unwrap(), *a, "{}", isrc.compact());
        }
        assert!(got.iter().any(|g| g.1.decided_by.len() > 1));

        // Damage the last bytes of the index: the scan rebuilds it from
        // verified files, once, and gives the same rows.
        let idx = store.index_path(&reader.snap().manifest_sha256);
        drop(reader);
        let mut b = std::fs::read(&idx).unwrap();
        let n = b.len() - 40;
        b[n] ^= 0x10;
        std::fs::write(&idx, &b).unwrap();
        let reader = store.reader(NOW, Expiry::Enforce).unwrap();
        assert_eq!(scan_all(&reader, Use::TrainAi, None, day), got);
        assert!(reader.rebuilt.get());
    }
}
