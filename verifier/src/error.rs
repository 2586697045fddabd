//! Errors. A verification failure carries a stable [`Code`] (named in SPEC.md
//! next to the step that raises it), the file it concerns, and advice, so that
//! people, scripts and tests can all tell exactly which defect was found.
//!
//! The code is an enum, not a string, so that a misspelt code is a compile
//! error and every place that branches on one (`not_found` switching sync to
//! the full path, `limit_exceeded` meaning "not held") is checked by the
//! compiler; its wire form ([`Code::as_str`]) is what the CLI prints and
//! SPEC.md §9 lists, and a test keeps the two lists equal.

use std::fmt;

/// Declares [`Code`] from one list, so the variants, their wire strings and
/// [`Code::ALL`] cannot drift apart.
macro_rules! codes {
    ($( $(#[$doc:meta])* $variant:ident = $wire:literal, )*) => {
        /// The stable code of a [`Rejection`] (SPEC.md §9). New codes may be
        /// added, hence `non_exhaustive`; the wire strings never change.
        #[non_exhaustive]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code {
            $( $(#[$doc])* $variant, )*
        }

        impl Code {
            /// Every code, in declaration order.
            pub const ALL: &'static [Code] = &[$(Code::$variant),*];

            /// The wire form: printed as `error: CODE: …`, listed in SPEC.md §9,
            /// matched by scripts. Never changes for an existing code.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $wire,)*
                }
            }
        }
    };
}

codes! {
    // ---- SPEC.md §9, verification (§7 steps 1–9) ----
    /// A hard bound was crossed (file size, count, window, deletions).
    LimitExceeded = "limit_exceeded",
    /// An envelope is not canonical CBOR of the envelope schema.
    MalformedEnvelope = "malformed_envelope",
    /// More than 32 signatures in a canonical envelope.
    TooManySignatures = "too_many_signatures",
    /// `payload_type` is not the expected type.
    WrongPayloadType = "wrong_payload_type",
    /// Fewer distinct valid signatures of the role than its threshold.
    ThresholdNotMet = "threshold_not_met",
    /// A payload is not canonical CBOR of its schema, or breaks a structural rule.
    MalformedDocument = "malformed_document",
    /// `root/{N+1}.cbor` does not carry version N+1.
    RootVersion = "root_version",
    /// `expires` ≤ now.
    Expired = "expired",
    /// A head or manifest older than the trusted one.
    Rollback = "rollback",
    /// Two different documents for the same version.
    SplitView = "split_view",
    /// A length differs from the signed one.
    LengthMismatch = "length_mismatch",
    /// A SHA-256 differs from the signed one.
    HashMismatch = "hash_mismatch",
    /// The manifest's version is not the one the head names.
    VersionMismatch = "version_mismatch",
    /// Manifest TV+1 does not name the trusted manifest as `previous`.
    ChainBroken = "chain_broken",
    /// A data file is not well-formed (zstd, §5.3–§5.5, §3.2).
    MalformedData = "malformed_data",
    /// A key outside its range or outside `KEY_SPACE`.
    KeyOutOfRange = "key_out_of_range",
    /// Rows not strictly increasing.
    UnsortedKeys = "unsorted_keys",
    /// A shard's `lo`/`hi` differ from the manifest's range.
    RangeMismatch = "range_mismatch",
    /// An entry count differs from the manifest's.
    CountMismatch = "count_mismatch",
    /// A layer does not span one version, does not follow the state, or
    /// deletes an absent row.
    LayerMismatch = "layer_mismatch",
    /// After applying layers, a range's count or leaf (or the prefix leaf)
    /// differs from the manifest's.
    StateMismatch = "state_mismatch",
    // ---- SPEC.md §15, the witnessed log ----
    /// The log's checkpoint or leaves file is not well-formed (§15.2).
    MalformedCheckpoint = "malformed_checkpoint",
    /// Fewer distinct valid witness cosignatures than the root's threshold.
    WitnessThresholdNotMet = "witness_threshold_not_met",
    /// The checkpoint does not commit to the manifest being accepted.
    CheckpointMismatch = "checkpoint_mismatch",
    /// The log does not extend the checkpoint already trusted: a fork.
    LogFork = "log_fork",

    // ---- transport (`fetch.rs`) ----
    /// A name that is not a site name (SPEC.md §2).
    BadPath = "bad_path",
    /// An unusable source URL or directory.
    BadSource = "bad_source",
    /// A local read or write failed.
    IoError = "io_error",
    /// A mirror directory entry is a symlink.
    SymlinkRefused = "symlink_refused",
    /// A mirror directory entry is not a regular file.
    NotAFile = "not_a_file",
    /// HTTP error, timeout or deadline.
    FetchFailed = "fetch_failed",
    /// The source lacks a file the run needs.
    NotFound = "not_found",

    // ---- store, CLI, bundles and receipts ----
    /// `now` is more than 300 s before a verified manifest's `created`.
    ClockBackwards = "clock_backwards",
    /// The stored pinned root is not the pinned one.
    TrustMismatch = "trust_mismatch",
    /// No trust pin yet.
    NotInitialized = "not_initialized",
    /// `init` on a store that already has a pin.
    AlreadyInitialized = "already_initialized",
    /// The store holds no head yet.
    NoSnapshot = "no_snapshot",
    /// The stored head does not verify under the current root.
    HeadNotTrusted = "head_not_trusted",
    /// A file the verified metadata names is missing from the store.
    StoreIncomplete = "store_incomplete",
    /// A store-internal file is unreadable or inconsistent.
    StoreCorrupt = "store_corrupt",
    /// Another process holds the store's write lock.
    StoreBusy = "store_busy",
    /// The local index does not match the signed state.
    IndexCorrupt = "index_corrupt",
    /// A tar bundle entry is not a site file, or a bundle cap was exceeded.
    BadBundle = "bad_bundle",
    /// A `check` input row is unusable.
    BadInput = "bad_input",
    /// A receipt is not canonical or is inconsistent.
    ReceiptInvalid = "receipt_invalid",
    /// A receipt's proof does not hash up to the signed manifest.
    ProofMismatch = "proof_mismatch",
    /// A receipt's recorded answer differs from the lookup rule's.
    AnswerMismatch = "answer_mismatch",
    /// Command-line arguments are inconsistent.
    Usage = "usage",
    /// stdout's reader went away; never printed (the CLI exits with 141).
    BrokenPipe = "broken_pipe",
}

/// The table of SPEC.md §9 a code is listed in: what kind of failure it is,
/// for callers that branch on the kind (the language bindings' exception
/// classes) rather than on the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// §7 steps 1–9: a document or data file failed verification.
    Verification,
    /// The fetcher: a source could not be read.
    Transport,
    /// The store, CLI, bundles and receipts.
    Store,
}

impl Family {
    /// Every family, in SPEC.md §9's order.
    pub const ALL: [Family; 3] = [Family::Verification, Family::Transport, Family::Store];

    /// Lower-case name: `verification`, `transport`, `store`.
    pub const fn name(self) -> &'static str {
        match self {
            Family::Verification => "verification",
            Family::Transport => "transport",
            Family::Store => "store",
        }
    }
}

impl Code {
    /// The code whose wire form is `s`, if any.
    pub fn parse(s: &str) -> Option<Code> {
        Code::ALL.iter().copied().find(|c| c.as_str() == s)
    }

    /// The SPEC.md §9 table that lists this code (a test compares).
    pub const fn family(self) -> Family {
        match self {
            Code::LimitExceeded
            | Code::MalformedEnvelope
            | Code::TooManySignatures
            | Code::WrongPayloadType
            | Code::ThresholdNotMet
            | Code::MalformedDocument
            | Code::RootVersion
            | Code::Expired
            | Code::Rollback
            | Code::SplitView
            | Code::LengthMismatch
            | Code::HashMismatch
            | Code::VersionMismatch
            | Code::ChainBroken
            | Code::MalformedData
            | Code::KeyOutOfRange
            | Code::UnsortedKeys
            | Code::RangeMismatch
            | Code::CountMismatch
            | Code::LayerMismatch
            | Code::StateMismatch
            | Code::MalformedCheckpoint
            | Code::WitnessThresholdNotMet
            | Code::CheckpointMismatch
            | Code::LogFork => Family::Verification,
            Code::BadPath
            | Code::BadSource
            | Code::IoError
            | Code::SymlinkRefused
            | Code::NotAFile
            | Code::FetchFailed
            | Code::NotFound => Family::Transport,
            Code::ClockBackwards
            | Code::TrustMismatch
            | Code::NotInitialized
            | Code::AlreadyInitialized
            | Code::NoSnapshot
            | Code::HeadNotTrusted
            | Code::StoreIncomplete
            | Code::StoreCorrupt
            | Code::StoreBusy
            | Code::IndexCorrupt
            | Code::BadBundle
            | Code::BadInput
            | Code::ReceiptInvalid
            | Code::ProofMismatch
            | Code::AnswerMismatch
            | Code::Usage
            | Code::BrokenPipe => Family::Store,
        }
    }

    /// Whether this code says a data file (shard, layer, prefix table) is
    /// damaged: then where the file was read decides the advice.
    pub fn is_data_defect(self) -> bool {
        matches!(
            self,
            Code::HashMismatch
                | Code::LengthMismatch
                | Code::MalformedData
                | Code::StateMismatch
                | Code::LayerMismatch
                | Code::CountMismatch
                | Code::RangeMismatch
                | Code::KeyOutOfRange
                | Code::UnsortedKeys
        )
    }

    /// What the user can do about a rejection with this code: one line for
    /// the CLI's `hint:`. `in_store` says whether the rejected file is in the
    /// local store (then a damaged data file is the store's, and `sync`
    /// repairs it) rather than at the source (then the source is at fault and
    /// the store did not change).
    pub fn hint(self, in_store: bool) -> Option<&'static str> {
        Some(match self {
            Code::NotInitialized => {
                "run `consentry init --root ROOT.cbor` with the root your registry published (compare its SHA-256 out of band)"
            }
            Code::AlreadyInitialized => {
                "pass --force to replace the pinned root (only with a root you trust)"
            }
            Code::NoSnapshot => {
                "run `consentry sync SOURCE` or `consentry import BUNDLE.tar` first"
            }
            Code::HeadNotTrusted => {
                "the registry's keys changed: run `consentry sync SOURCE` to fetch the new root and head"
            }
            Code::StoreIncomplete => "run `consentry sync SOURCE` to fetch the missing files",
            Code::Expired => {
                "sync from an up-to-date source; if this machine's clock is wrong pass --now; to accept stale answers knowingly pass --allow-expired"
            }
            Code::ClockBackwards => {
                "this machine's clock is behind the registry's signed time: fix the clock (NTP) or pass --now with the correct time"
            }
            c if c.is_data_defect() && in_store => {
                "the stored file was altered: run `consentry sync SOURCE`, which fetches every damaged file again"
            }
            c if c.is_data_defect() => {
                "the source served a damaged or altered file; nothing in the store changed: try another mirror or tell the registry"
            }
            Code::LogFork => {
                "the registry's log shown here does not extend the one this store saw: a split view (two histories) or a hostile mirror; nothing changed: keep both checkpoints (`consentry status --json`) and compare them with another store's (`consentry compare-checkpoints`)"
            }
            Code::WitnessThresholdNotMet => {
                "the snapshot is not cosigned by enough of the root's witnesses: wait for the witnesses to cosign (the registry collects them), or sync from a source that serves the cosigned checkpoint"
            }
            Code::MalformedCheckpoint | Code::CheckpointMismatch => {
                "the source's log files (log/checkpoint, log/leaves) do not match the signed snapshot; nothing changed: try another mirror or tell the registry"
            }
            Code::Rollback | Code::SplitView | Code::ChainBroken | Code::VersionMismatch => {
                "the source served an older or conflicting snapshot than one already trusted; nothing changed: the mirror is stale or hostile, try another"
            }
            Code::ThresholdNotMet
            | Code::WrongPayloadType
            | Code::MalformedEnvelope
            | Code::MalformedDocument
            | Code::RootVersion
            | Code::TooManySignatures => {
                "the file is not validly signed by the registry's keys; nothing changed: check the source"
            }
            Code::TrustMismatch | Code::StoreCorrupt => {
                "the store's trust files were altered: re-initialize with `consentry init --root FILE --force` from a root you trust"
            }
            Code::LimitExceeded => {
                "the file is larger than any valid one; the source may be hostile"
            }
            Code::FetchFailed => "check the URL and the network, then retry",
            Code::NotFound => "check that SOURCE is the published site's top directory or URL",
            Code::BadSource => "SOURCE must be an http:// or https:// URL or an existing directory",
            Code::BadBundle => {
                "a bundle holds only site files; make it with `consentry-publish bundle`"
            }
            Code::StoreBusy => "wait for the other sync or import to finish",
            Code::IndexCorrupt => "run `consentry verify --repair` to rebuild the index",
            Code::SymlinkRefused | Code::NotAFile => "a mirror must hold regular files only",
            Code::BadInput => "fix the named line, or see `consentry check --help`",
            Code::Usage => "see `consentry --help`",
            Code::IoError => "check the path and its permissions",
            _ => return None,
        })
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused file or document. `code` is stable and listed in SPEC.md §9.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub file: String,
    pub code: Code,
    pub detail: String,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} [{}]", self.file, self.detail, self.code)
    }
}

impl std::error::Error for Rejection {}

/// Shorthand for building a [`Rejection`].
pub fn reject(file: impl Into<String>, code: Code, detail: impl Into<String>) -> Rejection {
    Rejection {
        file: file.into(),
        code,
        detail: detail.into(),
    }
}

/// Result of verification steps.
pub type VResult<T> = Result<T, Rejection>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_strings_are_unique_and_parse_back() {
        let mut seen = std::collections::HashSet::new();
        for c in Code::ALL {
            assert!(seen.insert(c.as_str()), "{c:?} repeats {}", c.as_str());
            assert_eq!(Code::parse(c.as_str()), Some(*c));
            assert_eq!(c.to_string(), c.as_str());
        }
        assert_eq!(Code::parse("no_such_code"), None);
    }

    #[test]
    fn data_defects_are_advised_by_where_the_file_was_read() {
        assert_ne!(
            Code::HashMismatch.hint(true),
            Code::HashMismatch.hint(false)
        );
        assert!(Code::HashMismatch.hint(true).unwrap().contains("sync"));
        assert!(Code::HashMismatch.hint(false).unwrap().contains("mirror"));
        // Other codes do not depend on it.
        assert_eq!(Code::Expired.hint(true), Code::Expired.hint(false));
        assert_eq!(Code::ProofMismatch.hint(true), None);
    }

    /// SPEC.md §9 lists every code exactly once, and no code that the
    /// implementation does not have: its tables' first columns (every
    /// backticked name there) equal [`Code::ALL`].
    #[test]
    fn spec_section_9_lists_exactly_the_codes() {
        let spec = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../SPEC.md"))
            .expect("SPEC.md beside the crate");
        let start = spec.find("\n## 9. Error codes").expect("SPEC.md has §9");
        let rest = &spec[start + 1..];
        let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
        let section = &rest[..end];
        let mut listed: Vec<String> = Vec::new();
        // The n-th table lists the codes of the n-th family.
        let mut table = 0usize;
        let mut in_table = false;
        for line in section.lines() {
            let Some(row) = line.strip_prefix('|') else {
                if in_table {
                    table += 1;
                }
                in_table = false;
                continue;
            };
            in_table = true;
            let first = row.split('|').next().unwrap_or("").trim();
            // Header and separator rows name no code.
            for name in first.split('`').skip(1).step_by(2) {
                let code = Code::parse(name);
                assert_eq!(
                    code.map(Code::family),
                    Family::ALL.get(table).copied(),
                    "`{name}` is listed in table {} of SPEC.md §9",
                    table + 1
                );
                listed.push(name.to_string());
            }
        }
        assert_eq!(
            table,
            Family::ALL.len(),
            "SPEC.md §9 has one table per family"
        );
        let mut sorted = listed.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            listed.len(),
            "a code is listed twice: {listed:?}"
        );
        let mut want: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
        want.sort_unstable();
        let have: Vec<&str> = sorted.iter().map(String::as_str).collect();
        assert_eq!(have, want, "SPEC.md §9 tables vs Code::ALL");
    }
}
