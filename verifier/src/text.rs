//! The one whitespace rule for text that a person or a file hands in
//! (SPEC.md §3.1): command-line arguments, lines of a plain question file,
//! CSV cells and JSON string values of both the verifier's `check` input and
//! the publisher's import all go through [`trim`] before anything else, so
//! the same string gives the same answer whichever way it arrives.

/// Whether `c` is ASCII whitespace as [`trim`] removes it: U+0009 tab,
/// U+000A line feed, U+000C form feed, U+000D carriage return, U+0020 space.
pub fn is_trimmed_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\u{0C}' | '\r' | ' ')
}

/// Remove leading and trailing ASCII whitespace ([`is_trimmed_space`]).
/// Nothing else is removed: a no-break space (U+00A0), an ideographic space
/// (U+3000) or any other non-ASCII character stays, and makes an ISRC,
/// scope, id or code invalid because those are ASCII.
pub fn trim(s: &str) -> &str {
    s.trim_matches(is_trimmed_space)
}

/// Whether `s` is empty after [`trim`]: a blank line or cell.
pub fn is_blank(s: &str) -> bool {
    trim(s).is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ascii_whitespace_is_trimmed() {
        assert_eq!(trim(" \t\r\n\u{0C}GB\u{0C}\n\r\t "), "GB");
        assert_eq!(trim("\u{a0}GB\u{3000}"), "\u{a0}GB\u{3000}");
        assert_eq!(trim("\u{0B}GB"), "\u{0B}GB", "vertical tab is not trimmed");
        assert_eq!(trim("G B"), "G B", "inner spaces stay");
        assert!(is_blank(" \r\n") && is_blank("") && !is_blank("\u{a0}"));
    }
}
