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

    /// Check the invariants the format requires of a policy; the message names
    /// the field.
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
        let d = &self.declarant;
        if d.name.is_empty() || d.name.len() > 255 || d.name.chars().any(char::is_control) {
            return Err("declarant.name: must be 1-255 bytes without control characters".into());
        }
        if d.id.len() > 255
            || !d.id.bytes().all(|b| b.is_ascii_graphic())
            || !PARTY_ID_SCHEMES
                .iter()
                .any(|p| d.id.len() > p.len() && d.id.starts_with(p))
        {
            return Err(format!(
                "declarant.id: {:?} must be a typed party id (ddex:, ipi:, isni:) of printable ASCII",
                d.id
            ));
        }
        if self.from.is_some_and(|f| f < 0) || self.until.is_some_and(|u| u < 0) {
            return Err("from/until: days before 1970-01-01 are not allowed".into());
        }
        if let Some(t) = &self.terms
            && (!(t.url.starts_with("https://") || t.url.starts_with("http://"))
                || t.url.len() > 2048
                || t.url.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(
                "terms.url: must be an http(s) URL of at most 2048 bytes without spaces".into(),
            );
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
    let up = s.trim().to_ascii_uppercase();
    if is_territory(&up) {
        Ok(up)
    } else {
        Err(format!(
            "{s:?} is not an ISO 3166-1 alpha-2 territory code (e.g. FR, US, GB)"
        ))
    }
}
