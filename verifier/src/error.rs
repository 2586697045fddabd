//! Errors. A verification failure carries a stable `code` (named in SPEC.md
//! next to the step that raises it), the file it concerns, and advice, so that
//! people, scripts and tests can all tell exactly which defect was found.

use std::fmt;

/// A refused file or document. `code` is stable and listed in SPEC.md §9.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub file: String,
    pub code: &'static str,
    pub detail: String,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} [{}]", self.file, self.detail, self.code)
    }
}

impl std::error::Error for Rejection {}

/// Shorthand for building a [`Rejection`].
pub fn reject(file: impl Into<String>, code: &'static str, detail: impl Into<String>) -> Rejection {
    Rejection {
        file: file.into(),
        code,
        detail: detail.into(),
    }
}

/// Result of verification steps.
pub type VResult<T> = Result<T, Rejection>;
