//! Every size bound in one place. A reader checks a bound *before* reading past
//! it: a declared length larger than its limit is refused without a byte read.

/// Hard bounds enforced while fetching, decompressing and decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest root envelope (TUF clients use 512 KB).
    pub max_root_bytes: u64,
    /// Largest head envelope (the one file whose length nobody signed for us).
    pub max_head_bytes: u64,
    /// Largest manifest envelope.
    pub max_manifest_bytes: u64,
    /// Largest compressed shard, layer or prefix-table file.
    pub max_file_bytes: u64,
    /// Largest decompressed shard, layer or prefix table.
    pub max_raw_bytes: u64,
    /// Most entries in one shard, layer or prefix table.
    pub max_records_per_file: u64,
    /// Most ranges (shards) in one manifest.
    pub max_ranges: u64,
    /// Most delta layers listed in one manifest.
    pub max_layers: u64,
    /// Most signatures on one envelope.
    pub max_signatures: usize,
    /// Most keys in one root.
    pub max_root_keys: usize,
    /// Most root versions walked in one run (TUF suggests 2^10).
    pub max_root_rotations: u64,
    /// Most distinct policies in one file.
    pub max_policies: u64,
    /// Most entries in a tar bundle.
    pub max_bundle_entries: u64,
    /// Most bytes of file data in a tar bundle (all entries together).
    pub max_bundle_bytes: u64,
}

impl Limits {
    /// Defaults sized for 10^9 records in ranges of 2^17 records (about 7,600
    /// ranges); 32,768 ranges of ~150 bytes stay well under the manifest cap.
    pub const DEFAULT: Limits = Limits {
        max_root_bytes: 512 * 1024,
        max_head_bytes: 16 * 1024,
        max_manifest_bytes: 8 * 1024 * 1024,
        max_file_bytes: 256 * 1024 * 1024,
        max_raw_bytes: 1024 * 1024 * 1024,
        max_records_per_file: 16 * 1024 * 1024,
        max_ranges: 32_768,
        max_layers: 64,
        max_signatures: 32,
        max_root_keys: 64,
        max_root_rotations: 1024,
        max_policies: 1_048_576,
        max_bundle_entries: 200_000,
        max_bundle_bytes: 64 * 1024 * 1024 * 1024,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}
