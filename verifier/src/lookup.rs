//! The lookup rule (SPEC.md §8) as a pure function over the entries that cover
//! one ISRC. No I/O, no clock: the caller passes the time.

use crate::isrc::{Isrc, IsrcError};
use crate::model::{Decision, Entry, Pref, Reason, Use};
use crate::time::Day;

/// A consent question. `territory` is an upper-case ISO 3166-1 alpha-2 code, or
/// `None` for "any territory".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    pub isrc: Isrc,
    pub use_: Use,
    pub territory: Option<String>,
    pub at: Day,
}

/// The answer: decision, reason and the ids of the entries that decided it,
/// ordered by sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub decision: Decision,
    pub reason: Reason,
    pub decided_by: Vec<String>,
}

impl Answer {
    fn new(decision: Decision, reason: Reason, mut by: Vec<(u64, &str)>) -> Answer {
        by.sort_unstable();
        by.dedup();
        Answer {
            decision,
            reason,
            decided_by: by.into_iter().map(|(_, id)| id.to_string()).collect(),
        }
    }

    /// The answer for input that is not an ISRC.
    pub fn invalid_isrc() -> Answer {
        Answer {
            decision: Decision::Unknown,
            reason: Reason::InvalidIsrc,
            decided_by: Vec::new(),
        }
    }
}

/// Parse an ISRC for a lookup; a bad one is an answer, not an error.
pub fn parse_for_lookup(s: &str) -> Result<Isrc, IsrcError> {
    Isrc::parse(s)
}

fn decision_of(p: Pref) -> Decision {
    match p {
        Pref::Allow => Decision::Allow,
        Pref::Disallow => Decision::Disallow,
        Pref::Constrained => Decision::Constrained,
        Pref::Silent => Decision::Unknown,
    }
}

/// Answer `q` from `entries`. Entries that do not cover the ISRC are ignored, so
/// the caller may pass a superset (e.g. the whole prefix table).
pub fn lookup<'a>(q: &Question, entries: impl IntoIterator<Item = Entry<'a>>) -> Answer {
    // Step 2: candidates are the covering declarations; revocations only matter
    // when nothing else is left.
    let mut live: Vec<Entry<'a>> = Vec::new();
    let mut revocations: Vec<(u64, &str)> = Vec::new();
    for e in entries {
        if !e.scope.covers(q.isrc) {
            continue;
        }
        if e.policy.revoke {
            revocations.push((e.seq, e.id));
        } else {
            live.push(e);
        }
    }
    if live.is_empty() {
        return if revocations.is_empty() {
            Answer::new(Decision::Unknown, Reason::NoRecord, Vec::new())
        } else {
            Answer::new(Decision::Unknown, Reason::Revoked, revocations)
        };
    }

    // Step 3: validity window (days, inclusive), then territory.
    let mut kept: Vec<&Entry<'a>> = Vec::new();
    let mut dropped: Option<(u8, u64, Reason, &str)> = None;
    for e in &live {
        let p = e.policy;
        let why = if p.from.is_some_and(|f| q.at < f) {
            Some(Reason::NotYetValid)
        } else if p.until.is_some_and(|u| q.at > u) {
            Some(Reason::Expired)
        } else if q
            .territory
            .as_deref()
            .is_some_and(|t| !p.covers_territory(t))
        {
            Some(Reason::TerritoryNotCovered)
        } else {
            None
        };
        match why {
            None => kept.push(e),
            Some(r) => {
                let rank = (e.scope.specificity(), e.seq);
                if dropped.is_none_or(|(s, q, _, _)| rank > (s, q)) {
                    dropped = Some((rank.0, rank.1, r, e.id));
                }
            }
        }
    }
    if kept.is_empty() {
        // `live` was non-empty, so something was dropped.
        return match dropped {
            Some((_, seq, reason, id)) => Answer::new(Decision::Unknown, reason, vec![(seq, id)]),
            None => Answer::new(Decision::Unknown, Reason::NoRecord, Vec::new()),
        };
    }

    // Step 4: per declarant, its most specific candidate that speaks to the use
    // (higher seq first within one specificity).
    // Grouped by declarant id (in id order), each group most specific and
    // then highest seq first: one sort instead of a map of vectors.
    kept.sort_unstable_by(|a, b| {
        a.policy
            .declarant
            .id
            .cmp(&b.policy.declarant.id)
            .then((b.scope.specificity(), b.seq).cmp(&(a.scope.specificity(), a.seq)))
    });
    let mut decided: Vec<(Decision, &Entry<'a>)> = Vec::new();
    for group in kept.chunk_by(|a, b| a.policy.declarant.id == b.policy.declarant.id) {
        if let Some((p, e)) = group
            .iter()
            .map(|e| (e.policy.resolve(q.use_), *e))
            .find(|(p, _)| *p != Pref::Silent)
        {
            decided.push((decision_of(p), e));
        }
    }

    // Step 5: nobody spoke to this use.
    if decided.is_empty() {
        let ids = kept.iter().map(|e| (e.seq, e.id)).collect();
        return Answer::new(Decision::Unknown, Reason::SilentOnUse, ids);
    }

    // Step 6: agreement, or the most restrictive decision flagged as conflict.
    let ids: Vec<(u64, &str)> = decided.iter().map(|(_, e)| (e.seq, e.id)).collect();
    let first = decided[0].0;
    if decided.iter().all(|(d, _)| *d == first) {
        let reason = if decided.iter().any(|(_, e)| e.policy.is_disputed()) {
            Reason::Disputed
        } else {
            Reason::Declared
        };
        Answer::new(first, reason, ids)
    } else {
        let worst = decided
            .iter()
            .map(|(d, _)| *d)
            .max_by_key(|d| d.restrictiveness())
            .unwrap_or(Decision::Unknown);
        Answer::new(worst, Reason::Conflict, ids)
    }
}
