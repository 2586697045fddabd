//! The data model: uses and preferences, policies, declarations and the published
//! entries they resolve to.
//!
//! A *declaration* is what the registry recorded (with its id, sequence number and
//! what it supersedes). An *entry* is what a snapshot publishes: the live
//! declarations plus the revocations, with superseded and revoked declarations
//! already removed, so the lookup rule needs no history.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::isrc::Scope;
use crate::time::Day;

/// The uses a preference speaks to, in the order of [`Policy::uses`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Use {
    All,
    TrainAi,
    TrainGenai,
    AiUse,
    Search,
}

impl Use {
    pub const ALL: [Use; 5] = [
        Use::All,
        Use::TrainAi,
        Use::TrainGenai,
        Use::AiUse,
        Use::Search,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Use::All => "all",
            Use::TrainAi => "train-ai",
            Use::TrainGenai => "train-genai",
            Use::AiUse => "ai-use",
            Use::Search => "search",
        }
    }

    pub fn parse(s: &str) -> Result<Use, String> {
        Use::ALL.into_iter().find(|u| u.name() == s).ok_or_else(|| {
            format!("unknown use {s:?}: expected one of all, train-ai, train-genai, ai-use, search")
        })
    }

    /// The category a silent use inherits from (aipref: `train-genai` ⊂
    /// `train-ai` ⊂ `all`; `ai-use` and `search` ⊂ `all`).
    pub fn parent(self) -> Option<Use> {
        match self {
            Use::All => None,
            Use::TrainAi | Use::AiUse | Use::Search => Some(Use::All),
            Use::TrainGenai => Some(Use::TrainAi),
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Use {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a declaration says about one use. Encoded as 0–3 in [`Policy::uses`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pref {
    Silent = 0,
    Allow = 1,
    Disallow = 2,
    Constrained = 3,
}

impl Pref {
    pub fn from_code(v: u8) -> Option<Pref> {
        [Pref::Silent, Pref::Allow, Pref::Disallow, Pref::Constrained]
            .get(usize::from(v))
            .copied()
    }

    /// Parse the import letter: `y`, `n`, `c`, or empty for silent.
    pub fn from_letter(s: &str) -> Result<Pref, String> {
        match s {
            "" => Ok(Pref::Silent),
            "y" | "Y" => Ok(Pref::Allow),
            "n" | "N" => Ok(Pref::Disallow),
            "c" | "C" => Ok(Pref::Constrained),
            _ => Err(format!(
                "{s:?} is not a preference: use y (authorize), n (reserve), c (constrained) or leave empty"
            )),
        }
    }
}

/// The answer to a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    Allow,
    Disallow,
    Constrained,
    Unknown,
}

impl Decision {
    /// Every decision, in declaration order (`d as usize` is its position:
    /// the dictionary of an Arrow answer column).
    pub const ALL: [Decision; 4] = [
        Decision::Allow,
        Decision::Disallow,
        Decision::Constrained,
        Decision::Unknown,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Disallow => "disallow",
            Decision::Constrained => "constrained",
            Decision::Unknown => "unknown",
        }
    }

    /// Rank for conflicts: `disallow` > `constrained` > `allow`.
    pub fn restrictiveness(self) -> u8 {
        match self {
            Decision::Unknown => 0,
            Decision::Allow => 1,
            Decision::Constrained => 2,
            Decision::Disallow => 3,
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why the lookup answered what it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    Declared,
    Disputed,
    Conflict,
    SilentOnUse,
    NoRecord,
    TerritoryNotCovered,
    NotYetValid,
    Expired,
    Revoked,
    InvalidIsrc,
}

impl Reason {
    /// Every reason, in declaration order (`r as usize` is its position).
    pub const ALL: [Reason; 10] = [
        Reason::Declared,
        Reason::Disputed,
        Reason::Conflict,
        Reason::SilentOnUse,
        Reason::NoRecord,
        Reason::TerritoryNotCovered,
        Reason::NotYetValid,
        Reason::Expired,
        Reason::Revoked,
        Reason::InvalidIsrc,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Reason::Declared => "declared",
            Reason::Disputed => "disputed",
            Reason::Conflict => "conflict",
            Reason::SilentOnUse => "silent_on_use",
            Reason::NoRecord => "no_record",
            Reason::TerritoryNotCovered => "territory_not_covered",
            Reason::NotYetValid => "not_yet_valid",
            Reason::Expired => "expired",
            Reason::Revoked => "revoked",
            Reason::InvalidIsrc => "invalid_isrc",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Who declares, as the registry identifies them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Declarant {
    /// Typed party id: `ddex:…`, `isni:…` or `ipi:…`. Declarants are grouped by it.
    pub id: String,
    pub name: String,
    /// `rights_owner`, `label`, `artist`, `distributor` or `agent`.
    pub role: String,
}

/// The declarant roles the registry accepts.
pub const ROLES: [&str; 5] = ["agent", "artist", "distributor", "label", "rights_owner"];

/// The party id schemes the registry accepts, with their prefix.
pub const PARTY_ID_SCHEMES: [&str; 3] = ["ddex:", "ipi:", "isni:"];

/// The terms behind a `constrained` preference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Terms {
    pub url: String,
    /// SHA-256 of the terms document, when the declarant gave it.
    #[serde(with = "crate::cbor::opt_bytes32")]
    pub sha256: Option<[u8; 32]>,
}

/// Everything a published entry says besides its id, sequence number and scope.
/// Entries share policies: a label's ten thousand opt-outs are one policy.
///
/// Field order is the canonical CBOR key order (shorter keys first, then
/// bytewise), so serde's field order is already the deterministic encoding.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// First valid day (inclusive), if any.
    pub from: Option<Day>,
    /// One code per use in [`Use::ALL`] order: 0 silent, 1 allow, 2 disallow,
    /// 3 constrained.
    pub uses: [u8; 5],
    pub terms: Option<Terms>,
    /// Last valid day (inclusive), if any.
    pub until: Option<Day>,
    /// True for a revocation: it says nothing about any use and only marks that
    /// the declaration it ended covered this scope.
    pub revoke: bool,
    /// `active` or `disputed`.
    pub status: String,
    /// Territories excluded from `include` (sorted, unique ISO 3166-1 alpha-2).
    pub exclude: Vec<String>,
    /// Territories covered: `["WW"]` for worldwide, else sorted, unique codes.
    pub include: Vec<String>,
    pub declarant: Declarant,
}

impl Policy {
    /// The preference for `u`, inheriting from parent uses while silent.
    pub fn resolve(&self, u: Use) -> Pref {
        let mut cur = Some(u);
        while let Some(c) = cur {
            match Pref::from_code(self.uses[c.index()]) {
                Some(Pref::Silent) | None => cur = c.parent(),
                Some(p) => return p,
            }
        }
        Pref::Silent
    }

    pub fn is_disputed(&self) -> bool {
        self.status == "disputed"
    }

    /// Whether the policy's territories cover `t` (already validated).
    pub fn covers_territory(&self, t: &str) -> bool {
        let included = self.include.iter().any(|c| c == "WW" || c == t);
        included && !self.exclude.iter().any(|c| c == t)
    }

    /// Check the invariants the format requires of a policy (SPEC.md §3.2,
    /// in that order); the message names the field. The importer applies
    /// the same rules, so it never records what a verifier would refuse.
    pub fn validate(&self) -> Result<(), String> {
        if self.uses.iter().any(|&u| u > 3) {
            return Err("uses: a code is above 3".into());
        }
        if self.status != "active" && self.status != "disputed" {
            return Err(format!(
                "status: {:?} is not active or disputed",
                self.status
            ));
        }
        if !ROLES.contains(&self.declarant.role.as_str()) {
            return Err(format!(
                "declarant.role: {:?} is not a known role",
                self.declarant.role
            ));
        }
        check_name(&self.declarant.name).map_err(|e| format!("declarant.name: {e}"))?;
        check_party_id(&self.declarant.id).map_err(|e| format!("declarant.id: {e}"))?;
        for (what, d) in [("from", self.from), ("until", self.until)] {
            if let Some(d) = d {
                check_day(d).map_err(|e| format!("{what}: {e}"))?;
            }
        }
        if let Some(t) = &self.terms {
            check_terms_url(&t.url).map_err(|e| format!("terms.url: {e}"))?;
        }
        if let (Some(f), Some(u)) = (self.from, self.until)
            && f > u
        {
            return Err("from/until: the window ends before it starts".into());
        }
        check_territory_list(&self.exclude, false).map_err(|e| format!("exclude: {e}"))?;
        if self.revoke {
            if self.uses != [0; 5]
                || self.terms.is_some()
                || !self.include.is_empty()
                || !self.exclude.is_empty()
                || self.from.is_some()
                || self.until.is_some()
            {
                return Err(
                    "revoke: a revocation carries no uses, terms, territories or validity".into(),
                );
            }
        } else {
            check_territory_list(&self.include, true).map_err(|e| format!("include: {e}"))?;
            if self.include.is_empty() {
                return Err(
                    "include: a declaration covers at least one territory (WW for worldwide)"
                        .into(),
                );
            }
            if self.include.iter().any(|c| c == "WW") && self.include.len() != 1 {
                return Err("include: WW (worldwide) must stand alone".into());
            }
            if self.uses.contains(&(Pref::Constrained as u8)) && self.terms.is_none() {
                return Err("terms: a constrained use needs terms (a policy URL)".into());
            }
        }
        Ok(())
    }
}

fn check_territory_list(list: &[String], allow_ww: bool) -> Result<(), String> {
    for w in list.windows(2) {
        if w[0] >= w[1] {
            return Err("codes must be sorted and unique".into());
        }
    }
    for c in list {
        if !(is_territory(c) || allow_ww && c == "WW") {
            return Err(format!("{c:?} is not an ISO 3166-1 alpha-2 code"));
        }
    }
    Ok(())
}

/// Longest declarant name, party id, declaration id or id prefix, in bytes
/// (an id's length is one byte in the state encoding, SPEC.md §6).
pub const MAX_TEXT: usize = 255;
/// Longest terms URL, in bytes.
pub const MAX_URL: usize = 2048;
/// Last day a validity bound may name: 9999-12-31 (the first is day 0,
/// 1970-01-01), the range of a `YYYY-MM-DD` date.
pub const MAX_DAY: Day = 2_932_896;

/// Whether `s` is an id: 1–255 bytes, each printable ASCII 0x21–0x7E (no
/// space). Declaration ids, entry ids and party ids have this syntax.
pub fn is_id_text(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_TEXT && s.bytes().all(|b| b.is_ascii_graphic())
}

/// A declarant name: 1–255 bytes of UTF-8 without a control character
/// (Unicode category Cc: U+0000–U+001F, U+007F–U+009F).
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_TEXT {
        return Err(format!(
            "must be 1-{MAX_TEXT} bytes; it is {} bytes",
            name.len()
        ));
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(format!(
            "holds the control character U+{:04X}; remove it",
            u32::from(c)
        ));
    }
    Ok(())
}

/// A typed party id: `ddex:`, `ipi:` or `isni:` (case-sensitive) and at
/// least one more byte, 1–255 bytes of 0x21–0x7E in all.
pub fn check_party_id(id: &str) -> Result<(), String> {
    let typed = PARTY_ID_SCHEMES
        .iter()
        .any(|p| id.len() > p.len() && id.starts_with(p));
    if !typed || !is_id_text(id) {
        return Err(format!(
            "{id:?} must be a typed party id (ddex:…, ipi:… or isni:…) of 1-{MAX_TEXT} printable \
             ASCII characters without spaces"
        ));
    }
    Ok(())
}

/// A terms URL: starts with `https://` or `http://` (lower case), at most
/// 2048 bytes, every byte printable ASCII 0x21–0x7E (no space, no control
/// character, nothing non-ASCII: percent-encode it).
pub fn check_terms_url(url: &str) -> Result<(), String> {
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(format!(
            "{:?} must start with https:// or http://",
            short(url)
        ));
    }
    if url.len() > MAX_URL {
        return Err(format!(
            "is {} bytes; at most {MAX_URL} are allowed",
            url.len()
        ));
    }
    if !url.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "{:?} holds a space, a control or a non-ASCII character; percent-encode it",
            short(url)
        ));
    }
    Ok(())
}

/// The first 80 characters of `s`, for messages.
fn short(s: &str) -> String {
    match s.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// A validity bound: a day from 1970-01-01 (day 0) to 9999-12-31.
pub fn check_day(d: Day) -> Result<(), String> {
    if !(0..=MAX_DAY).contains(&d) {
        return Err(format!(
            "day {d} is outside 1970-01-01 (day 0) to 9999-12-31 (day {MAX_DAY})"
        ));
    }
    Ok(())
}

/// A published entry: one live declaration or revocation at one scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    pub scope: Scope,
    pub seq: u64,
    pub id: &'a str,
    pub policy: &'a Policy,
}

/// ISO 3166-1 alpha-2 codes (officially assigned), sorted.
pub const TERRITORIES: [&str; 249] = [
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ",
    "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS",
    "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN",
    "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE",
    "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF",
    "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM",
    "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM",
    "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC",
    "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK",
    "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA",
    "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG",
    "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW",
    "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS",
    "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO",
    "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI",
    "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
];

/// Whether `c` is an assigned ISO 3166-1 alpha-2 code (upper case).
pub fn is_territory(c: &str) -> bool {
    TERRITORIES.binary_search(&c).is_ok()
}

/// Parse a territory asked about in a lookup (case-insensitive).
pub fn parse_territory(s: &str) -> Result<String, String> {
    let up = crate::text::trim(s).to_ascii_uppercase();
    if is_territory(&up) {
        Ok(up)
    } else {
        Err(format!(
            "{s:?} is not an ISO 3166-1 alpha-2 territory code (e.g. FR, US, GB)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_decision_and_reason_is_listed_at_its_own_position() {
        for (i, d) in Decision::ALL.iter().enumerate() {
            assert_eq!(*d as usize, i, "{d}");
        }
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{r}");
        }
        // A new variant changes the count: these two must follow it.
        let last_d = match Decision::Unknown {
            Decision::Allow | Decision::Disallow | Decision::Constrained | Decision::Unknown => 3,
        };
        assert_eq!(Decision::ALL.len(), last_d + 1);
        let last_r = match Reason::InvalidIsrc {
            Reason::Declared
            | Reason::Disputed
            | Reason::Conflict
            | Reason::SilentOnUse
            | Reason::NoRecord
            | Reason::TerritoryNotCovered
            | Reason::NotYetValid
            | Reason::Expired
            | Reason::Revoked
            | Reason::InvalidIsrc => 9,
        };
        assert_eq!(Reason::ALL.len(), last_r + 1);
    }

    fn good() -> Policy {
        Policy {
            from: Some(0),
            uses: [0, 3, 0, 0, 0],
            terms: Some(Terms {
                url: "https://t.example/terms".into(),
                sha256: None,
            }),
            until: Some(MAX_DAY),
            revoke: false,
            status: "active".into(),
            exclude: vec!["FR".into()],
            include: vec!["WW".into()],
            declarant: Declarant {
                id: "ddex:PADPIDA1".into(),
                name: "Klang".into(),
                role: "label".into(),
            },
        }
    }

    /// The field a changed policy is refused for ("" when accepted).
    fn field(change: impl FnOnce(&mut Policy)) -> String {
        let mut p = good();
        change(&mut p);
        p.validate()
            .err()
            .map(|e| e.split(':').next().unwrap_or("").to_string())
            .unwrap_or_default()
    }

    #[test]
    fn policy_validation_tests_both_sides_of_every_bound() {
        assert_eq!(field(|_| {}), "");
        // Names: 1-255 bytes, no Cc.
        assert_eq!(field(|p| p.declarant.name = "n".repeat(255)), "");
        assert_eq!(
            field(|p| p.declarant.name = "n".repeat(256)),
            "declarant.name"
        );
        assert_eq!(field(|p| p.declarant.name.clear()), "declarant.name");
        assert_eq!(
            field(|p| p.declarant.name = "a\u{9f}b".into()),
            "declarant.name"
        );
        assert_eq!(field(|p| p.declarant.name = "a\u{a0}b".into()), "");
        // Party ids: scheme, printable ASCII, 1-255 bytes.
        assert_eq!(
            field(|p| p.declarant.id = format!("ipi:{}", "1".repeat(251))),
            ""
        );
        assert_eq!(
            field(|p| p.declarant.id = format!("ipi:{}", "1".repeat(252))),
            "declarant.id"
        );
        for bad in ["", "ipi:", "IPI:1", "x:1", "ipi:1 2", "ipi:1\u{e9}"] {
            assert_eq!(
                field(|p| p.declarant.id = bad.into()),
                "declarant.id",
                "{bad:?}"
            );
        }
        // Days: 1970-01-01 .. 9999-12-31.
        assert_eq!(field(|p| p.from = Some(-1)), "from");
        assert_eq!(field(|p| p.until = Some(MAX_DAY + 1)), "until");
        assert_eq!(
            crate::time::parse_date("9999-12-31").unwrap(),
            MAX_DAY,
            "MAX_DAY is 9999-12-31"
        );
        // Terms URL: http(s), <= 2048 bytes, printable ASCII.
        let url = |u: String| move |p: &mut Policy| p.terms.as_mut().unwrap().url = u;
        let long = format!("https://t.example/{}", "a".repeat(2048 - 18));
        assert_eq!(field(url(long.clone())), "");
        assert_eq!(field(url(format!("{long}a"))), "terms.url");
        for bad in [
            "",
            "ftp://t.example/",
            "https://t.example/a b",
            "https://t.é/",
        ] {
            assert_eq!(field(url(bad.to_string())), "terms.url", "{bad:?}");
        }
        // An empty include on a declaration covers nothing: refused.
        assert_eq!(field(|p| p.include.clear()), "include");
        assert_eq!(
            field(|p| {
                p.include = vec![];
                p.exclude = vec![];
                p.uses = [0; 5];
                p.terms = None;
                p.from = None;
                p.until = None;
                p.revoke = true;
            }),
            "",
            "a revocation has an empty include"
        );
    }
}
