//! The lookup rule (SPEC.md §8) as a pure function over the entries that cover
//! one ISRC. No I/O, no clock: the caller passes the time.

use crate::isrc::{Isrc, IsrcError};
use crate::model::{Decision, Entry, Pref, Reason, Terms, Use};
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
/// ordered by sequence number (then id), each id once; for a `constrained`
/// decision, the terms that make it actionable (SPEC.md §8.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub decision: Decision,
    pub reason: Reason,
    pub decided_by: Vec<String>,
    /// Only when `decision` is `constrained`: the terms of the deciders whose
    /// preference is constrained, in `decided_by` order, each once.
    pub terms: Vec<Terms>,
}

impl Answer {
    /// SPEC.md §8.1: ids sorted by (seq, id) and unique — an id that two
    /// entries share (a snapshot does not forbid it) is listed once, at its
    /// first place.
    fn new(decision: Decision, reason: Reason, mut by: Vec<(u64, &str)>) -> Answer {
        by.sort_unstable();
        let mut decided_by: Vec<String> = Vec::with_capacity(by.len());
        for (_, id) in by {
            if !decided_by.iter().any(|d| d == id) {
                decided_by.push(id.to_string());
            }
        }
        Answer {
            decision,
            reason,
            decided_by,
            terms: Vec::new(),
        }
    }

    /// `self` with the terms of the constrained deciders among `decided`,
    /// when the decision is `constrained`.
    fn with_terms(mut self, decided: &[(Decision, &Entry<'_>)]) -> Answer {
        if self.decision != Decision::Constrained {
            return self;
        }
        let mut by: Vec<(u64, &str, &Terms)> = decided
            .iter()
            .filter(|(d, _)| *d == Decision::Constrained)
            .filter_map(|(_, e)| e.policy.terms.as_ref().map(|t| (e.seq, e.id, t)))
            .collect();
        by.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        for (_, _, t) in by {
            if !self.terms.contains(t) {
                self.terms.push(t.clone());
            }
        }
        self
    }

    /// The answer for input that is not an ISRC.
    pub fn invalid_isrc() -> Answer {
        Answer {
            decision: Decision::Unknown,
            reason: Reason::InvalidIsrc,
            decided_by: Vec::new(),
            terms: Vec::new(),
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
        let a = if revocations.is_empty() {
            Answer::new(Decision::Unknown, Reason::NoRecord, Vec::new())
        } else {
            Answer::new(Decision::Unknown, Reason::Revoked, revocations)
        };
        return a;
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
        let a = match dropped {
            Some((_, seq, reason, id)) => Answer::new(Decision::Unknown, reason, vec![(seq, id)]),
            None => Answer::new(Decision::Unknown, Reason::NoRecord, Vec::new()),
        };
        return a;
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
        Answer::new(first, reason, ids).with_terms(&decided)
    } else {
        let worst = decided
            .iter()
            .map(|(d, _)| *d)
            .max_by_key(|d| d.restrictiveness())
            .unwrap_or(Decision::Unknown);
        Answer::new(worst, Reason::Conflict, ids).with_terms(&decided)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isrc::Scope;
    use crate::model::{Declarant, Policy};

    fn policy(who: &str, uses: [u8; 5]) -> Policy {
        Policy {
            from: None,
            uses,
            terms: None,
            until: None,
            revoke: uses == [0; 5],
            status: "active".into(),
            exclude: vec![],
            include: if uses == [0; 5] {
                vec![]
            } else {
                vec!["WW".into()]
            },
            declarant: Declarant {
                id: format!("ddex:{who}"),
                name: who.into(),
                role: "label".into(),
            },
        }
    }

    fn ask(entries: &[(&str, u64, &str, &Policy)], use_: Use) -> Answer {
        let q = Question {
            isrc: Isrc::parse("GBNWR2500017").unwrap(),
            use_,
            territory: None,
            at: 20_000,
        };
        lookup(
            &q,
            entries.iter().map(|(scope, seq, id, policy)| Entry {
                scope: Scope::parse(scope).unwrap(),
                seq: *seq,
                id,
                policy,
            }),
        )
    }

    #[test]
    fn constrained_answers_carry_the_terms_of_their_constrained_deciders() {
        let terms = |u: &str| Terms {
            url: u.into(),
            sha256: Some([7; 32]),
        };
        let mut a = policy("A", [3, 0, 0, 0, 0]);
        a.terms = Some(terms("https://a.example/terms"));
        let mut b = policy("B", [3, 0, 0, 0, 0]);
        b.terms = Some(terms("https://b.example/terms"));
        let mut allow = policy("C", [1, 0, 0, 0, 0]);
        allow.terms = Some(terms("https://c.example/unused"));
        // Agreement: both terms, in decided_by (seq) order.
        let ans = ask(
            &[("GB-NWR", 9, "B1", &b), ("GBNWR2500017", 4, "A1", &a)],
            Use::TrainAi,
        );
        assert_eq!(ans.decision, Decision::Constrained);
        assert_eq!(ans.decided_by, ["A1", "B1"]);
        assert_eq!(
            ans.terms,
            [
                terms("https://a.example/terms"),
                terms("https://b.example/terms")
            ]
        );
        // Conflict resolved to constrained: only the constrained decider's terms.
        let ans = ask(
            &[("GB-NWR", 9, "C1", &allow), ("GBNWR2500017", 4, "A1", &a)],
            Use::TrainAi,
        );
        assert_eq!(
            (ans.decision, ans.reason),
            (Decision::Constrained, Reason::Conflict)
        );
        assert_eq!(ans.terms, [terms("https://a.example/terms")]);
        // Any other decision carries none.
        let d = policy("D", [2, 0, 0, 0, 0]);
        let ans = ask(
            &[("GB-NWR", 9, "D1", &d), ("GBNWR2500017", 4, "A1", &a)],
            Use::TrainAi,
        );
        assert_eq!(ans.decision, Decision::Disallow);
        assert!(ans.terms.is_empty());
    }

    #[test]
    fn deciding_ids_shared_by_two_entries_are_listed_once() {
        let (a, b) = (policy("A", [2, 0, 0, 0, 0]), policy("B", [1, 0, 0, 0, 0]));
        // Two declarants disagree; both deciders carry the id X.
        let ans = ask(
            &[("GB-NWR", 9, "X", &a), ("GBNWR2500017", 4, "X", &b)],
            Use::TrainAi,
        );
        assert_eq!(
            (ans.decision, ans.reason),
            (Decision::Disallow, Reason::Conflict)
        );
        assert_eq!(ans.decided_by, ["X"]);
        // Sorted by seq, then id; the duplicate keeps its first place.
        let c = policy("C", [2, 0, 0, 0, 0]);
        let ans = ask(
            &[
                ("GB-NWR", 9, "X", &a),
                ("GBNWR2500017", 4, "X", &b),
                ("GB-NWR-25", 6, "Y", &c),
            ],
            Use::TrainAi,
        );
        assert_eq!(ans.decided_by, ["X", "Y"]);
        // Silent entries and revocations are deduplicated the same way.
        let silent = policy("S", [0, 0, 0, 0, 1]);
        let ans = ask(
            &[
                ("GB-NWR", 2, "Z", &silent),
                ("GBNWR2500017", 1, "Z", &silent),
            ],
            Use::TrainAi,
        );
        assert_eq!(
            (ans.reason, ans.decided_by.clone()),
            (Reason::SilentOnUse, vec!["Z".to_string()])
        );
        let rev = policy("R", [0; 5]);
        let ans = ask(
            &[("GB-NWR", 2, "R1", &rev), ("GBNWR2500017", 3, "R1", &rev)],
            Use::TrainAi,
        );
        assert_eq!(
            (ans.reason, ans.decided_by),
            (Reason::Revoked, vec!["R1".to_string()])
        );
    }
}
