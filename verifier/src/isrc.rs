//! ISRC codes, their order-preserving `u64` packing, and prefix scopes as key ranges.
//!
//! An ISRC is `CC XXX YY NNNNN`: a country code (two letters), a registrant
//! (three letters or digits), a year (two digits) and a designation (five digits).
//! Packing maps the twelve characters to an integer whose numeric order equals the
//! string order, so a registrant's catalogue (`CC-XXX`) or one year of it
//! (`CC-XXX-YY`) is one contiguous key range.

use std::fmt;

/// Keys per registrant (`CC-XXX`): the distinct values of the trailing
/// `YYNNNNN` digits. A registrant's catalogue is the keys
/// `[p · REGISTRANT_SPAN, (p + 1) · REGISTRANT_SPAN)`.
pub const REGISTRANT_SPAN: u64 = 10_000_000;
/// Keys per registrant-year (`CC-XXX-YY`): the distinct `NNNNN` designations.
pub const REGISTRANT_YEAR_SPAN: u64 = 100_000;
/// Exclusive upper bound of every packed key: 26² · 36³ · 10⁷.
pub const KEY_SPACE: u64 = 26 * 26 * 36 * 36 * 36 * REGISTRANT_SPAN;

/// Why a string is not an ISRC (or not a scope). Positions are 1-based; they
/// count characters of the trimmed input for [`IsrcError::NotAscii`] and of
/// the normalized form (after case folding and removing separators and an
/// `ISRC` prefix) otherwise, which is what the message shows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IsrcError {
    #[error("empty ISRC")]
    Empty,
    #[error(
        "{input:?}: character {pos} ({ch:?}, U+{code:04X}) is not ASCII; an ISRC or scope is \
         written with ASCII letters, digits, hyphens and spaces only (retype it, or check the \
         file's encoding)"
    )]
    NotAscii {
        input: String,
        pos: usize,
        ch: char,
        code: u32,
    },
    #[error("{normalized:?} has {len} characters; an ISRC has 12 (CC-XXX-YY-NNNNN)")]
    Length { normalized: String, len: usize },
    #[error(
        "{normalized:?}: character {pos} ({ch:?}) must be {expected} (ISRC is CC-XXX-YY-NNNNN: \
         2 letters, 3 letters or digits, 7 digits)"
    )]
    Char {
        normalized: String,
        pos: usize,
        ch: char,
        expected: &'static str,
    },
    #[error(
        "{0:?} is not a scope: use a full ISRC, CC-XXX (a registrant's catalogue) or CC-XXX-YY (one year of it)"
    )]
    Scope(String),
}

/// A validated ISRC, stored packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Isrc(u64);

fn alnum_value(c: u8) -> Option<u64> {
    match c {
        b'0'..=b'9' => Some(u64::from(c - b'0')),
        b'A'..=b'Z' => Some(u64::from(c - b'A') + 10),
        _ => None,
    }
}

fn alnum_char(v: u64) -> char {
    if v < 10 {
        char::from(b'0' + v as u8)
    } else {
        char::from(b'A' + (v - 10) as u8)
    }
}

/// SPEC.md §3.1 normalization: trim ASCII whitespace at both ends
/// ([`crate::text::trim`]), drop every `-`, space and tab, upper-case ASCII
/// letters, and drop a leading `ISRC` (with an optional `:`) — the spellings
/// people actually paste. Non-ASCII characters are left in place (and
/// [`Isrc::parse`] / [`Scope::parse`] refuse them): no Unicode case mapping,
/// so `ſ`, `ı` or `ß` never become `S`, `I` or `SS`.
pub fn normalize(input: &str) -> String {
    let mut s: String = crate::text::trim(input)
        .chars()
        .filter(|c| *c != '-' && *c != ' ' && *c != '\t')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    // Only a string longer than an ISRC can carry the prefix: `ISRCX2500017` is
    // itself a valid Icelandic code and must stay as it is.
    if s.len() > 12
        && let Some(rest) = s.strip_prefix("ISRC")
    {
        s = rest.strip_prefix(':').unwrap_or(rest).to_string();
    }
    s
}

/// SPEC.md §3.1 step 2: an input holding any non-ASCII character is refused
/// outright, naming the first one.
fn check_ascii(input: &str) -> Result<(), IsrcError> {
    let t = crate::text::trim(input);
    match t.chars().enumerate().find(|(_, c)| !c.is_ascii()) {
        None => Ok(()),
        Some((i, ch)) => Err(IsrcError::NotAscii {
            input: t.to_string(),
            pos: i + 1,
            ch,
            code: u32::from(ch),
        }),
    }
}

/// Check the normalized characters `chars` against the ISRC pattern from `from`
/// (0-based) on; returns the packed prefix value.
fn pack_chars(normalized: &str, bytes: &[u8]) -> Result<u64, IsrcError> {
    let mut v: u64 = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let bad = |expected| IsrcError::Char {
            normalized: normalized.to_string(),
            pos: i + 1,
            ch: char::from(b),
            expected,
        };
        v = match i {
            0 | 1 => {
                if !b.is_ascii_uppercase() {
                    return Err(bad("a letter A-Z"));
                }
                v * 26 + u64::from(b - b'A')
            }
            2..=4 => v * 36 + alnum_value(b).ok_or_else(|| bad("a letter or digit"))?,
            _ => {
                if !b.is_ascii_digit() {
                    return Err(bad("a digit 0-9"));
                }
                v * 10 + u64::from(b - b'0')
            }
        };
    }
    Ok(v)
}

/// The packed value of an ISRC already in compact form (`CCXXXYYNNNNN`,
/// upper case), or `None` for anything else (which [`Isrc::parse`] then
/// normalizes or refuses with a reason): one branch-light pass, the batch
/// path's hot loop. Equal to [`pack_chars`] on every input it accepts
/// (a unit test compares them).
fn pack_compact(b: &[u8; 12]) -> Option<u64> {
    let letter = |c: u8| c.is_ascii_uppercase().then(|| u64::from(c - b'A'));
    let digit = |c: u8| c.is_ascii_digit().then(|| u64::from(c - b'0'));
    let mut v = letter(b[0])? * 26 + letter(b[1])?;
    for &c in &b[2..5] {
        v = v * 36 + alnum_value(c)?;
    }
    for &c in &b[5..] {
        v = v * 10 + digit(c)?;
    }
    Some(v)
}

impl Isrc {
    /// Parse any accepted spelling: case-insensitive, hyphens and spaces anywhere,
    /// an optional `ISRC` prefix.
    pub fn parse(input: &str) -> Result<Self, IsrcError> {
        // Already compact (12 upper-case letters and digits): `normalize`
        // would return it unchanged, so skip its allocation (batch lookups
        // parse millions of these).
        if let Ok(b) = <&[u8; 12]>::try_from(input.as_bytes())
            && let Some(v) = pack_compact(b)
        {
            return Ok(Isrc(v));
        }
        check_ascii(input)?;
        let n = normalize(input);
        if n.is_empty() {
            return Err(IsrcError::Empty);
        }
        if n.len() != 12 {
            return Err(IsrcError::Length {
                len: n.chars().count(),
                normalized: n,
            });
        }
        Ok(Isrc(pack_chars(&n, n.as_bytes())?))
    }

    /// The packed key. Numeric order equals string order.
    pub fn key(self) -> u64 {
        self.0
    }

    /// Rebuild from a packed key; `None` when the key is outside the ISRC space.
    pub fn from_key(key: u64) -> Option<Self> {
        (key < KEY_SPACE).then_some(Isrc(key))
    }

    /// The 12-character normalized form, e.g. `GBNWR2500017`.
    pub fn compact(self) -> String {
        let mut out = [' '; 12];
        let mut v = self.0;
        let mut digits = v % REGISTRANT_SPAN;
        v /= REGISTRANT_SPAN;
        for slot in out[5..].iter_mut().rev() {
            *slot = char::from(b'0' + (digits % 10) as u8);
            digits /= 10;
        }
        for slot in out[2..5].iter_mut().rev() {
            *slot = alnum_char(v % 36);
            v /= 36;
        }
        for slot in out[..2].iter_mut().rev() {
            *slot = char::from(b'A' + (v % 26) as u8);
            v /= 26;
        }
        out.iter().collect()
    }

    /// The hyphenated display form, e.g. `GB-NWR-25-00017`.
    pub fn hyphenated(self) -> String {
        let c = self.compact();
        format!("{}-{}-{}-{}", &c[..2], &c[2..5], &c[5..7], &c[7..])
    }
}

impl fmt::Display for Isrc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.compact())
    }
}

/// What a declaration covers: one recording, one registrant-year, or a whole
/// registrant catalogue. Variants are ordered from least to most specific.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// `CC-XXX`: every ISRC of one registrant.
    Registrant(u64),
    /// `CC-XXX-YY`: one registrant, one year.
    RegistrantYear(u64),
    /// One ISRC.
    Exact(Isrc),
}

impl Scope {
    /// Parse `CC-XXX`, `CC-XXX-YY` or a full ISRC (hyphens optional throughout;
    /// a five- or seven-character form without hyphens is read as a prefix).
    pub fn parse(input: &str) -> Result<Self, IsrcError> {
        check_ascii(input)?;
        let n = normalize(input);
        match n.len() {
            12 => Ok(Scope::Exact(Isrc::parse(input)?)),
            5 => Ok(Scope::Registrant(pack_chars(&n, n.as_bytes())?)),
            7 => Ok(Scope::RegistrantYear(pack_chars(&n, n.as_bytes())?)),
            _ => Err(IsrcError::Scope(input.to_string())),
        }
    }

    /// Specificity rank used by the lookup rule: exact 3, registrant-year 2,
    /// registrant 1.
    pub fn specificity(self) -> u8 {
        match self {
            Scope::Registrant(_) => 1,
            Scope::RegistrantYear(_) => 2,
            Scope::Exact(_) => 3,
        }
    }

    /// The registrant scope (`CC-XXX`) holding packed key `key`.
    pub fn registrant_of(key: u64) -> Scope {
        Scope::Registrant(key / REGISTRANT_SPAN)
    }

    /// The registrant-year scope (`CC-XXX-YY`) holding packed key `key`.
    pub fn registrant_year_of(key: u64) -> Scope {
        Scope::RegistrantYear(key / REGISTRANT_YEAR_SPAN)
    }

    /// The half-open key range `[lo, hi)` this scope covers.
    pub fn key_range(self) -> (u64, u64) {
        match self {
            Scope::Exact(i) => (i.key(), i.key() + 1),
            Scope::RegistrantYear(p) => (p * REGISTRANT_YEAR_SPAN, (p + 1) * REGISTRANT_YEAR_SPAN),
            Scope::Registrant(p) => (p * REGISTRANT_SPAN, (p + 1) * REGISTRANT_SPAN),
        }
    }

    /// Whether this scope covers the ISRC.
    pub fn covers(self, isrc: Isrc) -> bool {
        let (lo, hi) = self.key_range();
        (lo..hi).contains(&isrc.key())
    }

    /// Canonical text: `GBNWR2500017`, `GB-NWR-25` or `GB-NWR`.
    pub fn canonical(self) -> String {
        match self {
            Scope::Exact(i) => i.compact(),
            Scope::RegistrantYear(p) => {
                let c = Isrc(p * REGISTRANT_YEAR_SPAN).compact();
                format!("{}-{}-{}", &c[..2], &c[2..5], &c[5..7])
            }
            Scope::Registrant(p) => {
                let c = Isrc(p * REGISTRANT_SPAN).compact();
                format!("{}-{}", &c[..2], &c[2..5])
            }
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The compact fast path and the general check agree on every
        /// 12-byte input drawn from the characters that matter (and a few
        /// that do not): same value where both accept, and the fast path
        /// never accepts what the general one refuses.
        #[test]
        fn compact_fast_path_agrees_with_the_general_check(
            b in proptest::array::uniform12(prop_oneof![
                b'A'..=b'Z', b'0'..=b'9', Just(b'a'), Just(b'-'), Just(b'@'), Just(b'['), Just(b'/'), Just(b':')
            ])
        ) {
            let text = String::from_utf8(b.to_vec()).unwrap();
            let general = if b.iter().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()) {
                pack_chars(&text, &b).ok()
            } else {
                None
            };
            prop_assert_eq!(pack_compact(&b), general);
        }
    }

    #[test]
    fn accepts_the_spellings_people_paste() {
        for s in [
            "GBNWR2500017",
            "gbnwr2500017",
            "GB-NWR-25-00017",
            "gb nwr 25 00017",
            "ISRC GBNWR2500017",
            "isrc:GB-NWR-25-00017",
        ] {
            assert_eq!(Isrc::parse(s).unwrap().compact(), "GBNWR2500017", "{s}");
        }
        assert_eq!(
            Isrc::parse("ISRCX2500017").unwrap().compact(),
            "ISRCX2500017"
        );
        assert_eq!(
            Isrc::parse("GBNWR2500017").unwrap().hyphenated(),
            "GB-NWR-25-00017"
        );
    }

    #[test]
    fn bad_isrcs_name_the_position() {
        let e = Isrc::parse("G1NWR2500017").unwrap_err();
        assert!(e.to_string().contains("character 2"), "{e}");
        let e = Isrc::parse("GBNWR25000X7").unwrap_err();
        assert!(e.to_string().contains("character 11"), "{e}");
        assert!(matches!(
            Isrc::parse("USQZ9240012"),
            Err(IsrcError::Length { len: 11, .. })
        ));
        assert!(matches!(
            Isrc::parse("NOTANISRC"),
            Err(IsrcError::Length { .. })
        ));
        assert!(matches!(Isrc::parse(""), Err(IsrcError::Empty)));
        assert!(matches!(
            Isrc::parse("GBNWR25ÖÖ017"),
            Err(IsrcError::NotAscii { pos: 8, .. })
        ));
        assert!(Isrc::parse("GB_NWR2500017").is_err());
    }

    #[test]
    fn non_ascii_input_is_refused_not_case_mapped() {
        // Unicode upper-casing would turn these into valid ISRCs (ſ→S, ı→I,
        // ß→SS, ﬀ→FF); SPEC.md §3.1 refuses any non-ASCII character instead.
        for (s, pos) in [
            ("ſEABC2200001", 1),
            ("ıTUZ82061826", 1),
            ("BRß71940766", 3),
            ("ﬀAAA2500001", 1),
            ("USKLH2201198\u{a0}", 13),
            ("\u{3000}USKLH2201198", 1),
            ("GB\u{2010}NWR2500017", 3),
        ] {
            match Isrc::parse(s) {
                Err(IsrcError::NotAscii { pos: p, .. }) => assert_eq!(p, pos, "{s}"),
                other => panic!("{s:?}: {other:?}"),
            }
            assert!(Scope::parse(s).is_err(), "{s}");
        }
        for s in ["ſE-ABC", "ıT-UZ8-20", "GB-NWR\u{a0}"] {
            assert!(
                matches!(Scope::parse(s), Err(IsrcError::NotAscii { .. })),
                "{s}"
            );
        }
        let e = Isrc::parse("BRß71940766").unwrap_err().to_string();
        assert!(e.contains("U+00DF") && e.contains("not ASCII"), "{e}");
    }

    #[test]
    fn ascii_whitespace_is_trimmed_at_both_ends_only() {
        for s in [
            " USKLH2201198 ",
            "\tUSKLH2201198\r\n",
            "\u{0C}USKLH2201198",
            "US-KLH 22\t01198",
        ] {
            assert_eq!(Isrc::parse(s).unwrap().compact(), "USKLH2201198", "{s:?}");
        }
        // A line break inside is not a separator.
        assert!(Isrc::parse("USKLH\n2201198").is_err());
        assert!(Isrc::parse("USKLH\r2201198").is_err());
        assert!(matches!(Isrc::parse(" \r\n"), Err(IsrcError::Empty)));
        assert_eq!(Scope::parse(" gb-nwr\r\n").unwrap().canonical(), "GB-NWR");
    }

    #[test]
    fn scopes_are_key_ranges() {
        let r = Scope::parse("GB-NWR").unwrap();
        let ry = Scope::parse("gb-nwr-25").unwrap();
        let ex = Scope::parse("GBNWR2500017").unwrap();
        let i = Isrc::parse("GBNWR2500017").unwrap();
        assert!(r.covers(i) && ry.covers(i) && ex.covers(i));
        assert!(!Scope::parse("GB-NWR-24").unwrap().covers(i));
        assert!(!Scope::parse("GB-NWS").unwrap().covers(i));
        assert_eq!(r.canonical(), "GB-NWR");
        assert_eq!(ry.canonical(), "GB-NWR-25");
        assert_eq!(Scope::parse("GBNWR").unwrap(), r);
        assert!(Scope::parse("GB-NW").is_err());
        assert!(Scope::parse("GB-NWR-2").is_err());
        assert_eq!(
            (r.specificity(), ry.specificity(), ex.specificity()),
            (1, 2, 3)
        );
    }

    fn isrc_string() -> impl Strategy<Value = String> {
        "[A-Z]{2}[A-Z0-9]{3}[0-9]{7}"
    }

    proptest! {
        #[test]
        fn pack_round_trips(s in isrc_string()) {
            let i = Isrc::parse(&s).unwrap();
            prop_assert_eq!(i.compact(), s.clone());
            prop_assert_eq!(Isrc::from_key(i.key()), Some(i));
            prop_assert!(i.key() < KEY_SPACE);
        }

        #[test]
        fn packing_preserves_string_order(a in isrc_string(), b in isrc_string()) {
            let (ia, ib) = (Isrc::parse(&a).unwrap(), Isrc::parse(&b).unwrap());
            prop_assert_eq!(a.cmp(&b), ia.key().cmp(&ib.key()));
        }

        #[test]
        fn prefix_scope_contains_exactly_its_codes(a in isrc_string(), b in isrc_string()) {
            let scope = Scope::parse(&a[..7]).unwrap();
            let ib = Isrc::parse(&b).unwrap();
            prop_assert_eq!(scope.covers(ib), b.starts_with(&a[..7]));
            let scope = Scope::parse(&a[..5]).unwrap();
            prop_assert_eq!(scope.covers(ib), b.starts_with(&a[..5]));
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,40}") {
            let _ = Isrc::parse(&s);
            let _ = Scope::parse(&s);
        }
    }
}
