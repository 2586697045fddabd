"""Type stubs of the consentry package (the wrapper in __init__.py over the
extension module consentry._consentry)."""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass
from typing import Any, ClassVar, Dict, Iterable, Iterator, Optional, Tuple, Union

import pyarrow as pa

__version__: str

TimeLike = Union[None, int, float, str, _dt.date, _dt.datetime]
PathLike = Union[str, "os.PathLike[str]"]

ERROR_CLASSES: Dict[str, type]
CODES: Dict[str, Tuple[str, str, Optional[str], Optional[str]]]
USES: Tuple[str, ...]
DECISIONS: Tuple[str, ...]
REASONS: Tuple[str, ...]

def normalize_isrc(s: str) -> str: ...

@dataclass(frozen=True)
class Snapshot:
    version: int
    manifest_sha256: str
    expired: bool
    root_version: int
    head_version: int
    created: str
    created_unix: int
    expires: str
    expires_unix: int
    root_expires: str
    head_expires: str
    manifest_expires: str
    entries: int

@dataclass(frozen=True)
class Answer:
    input: str
    isrc: Optional[str]
    use: str
    territory: Optional[str]
    at: str
    decision: str
    reason: str
    decided_by: Tuple[str, ...]
    snapshot: Snapshot
    terms_url: Tuple[str, ...]
    terms_sha256: Tuple[Optional[str], ...]
    @property
    def allowed(self) -> bool: ...
    def to_dict(self) -> Dict[str, Any]: ...

@dataclass(frozen=True)
class SyncReport:
    from_version: Optional[int]
    to_version: int
    head_version: int
    mode: str
    roots_added: Tuple[int, ...]
    files_fetched: int
    bytes_fetched: int
    files_reused: int
    files_derived: int
    layers_applied: int
    files_pruned: int
    manifest_sha256: str

@dataclass(frozen=True)
class VerifyReport:
    root_version: int
    version: int
    manifest_sha256: str
    files_checked: int
    bytes_checked: int
    entries: int
    index: str
    index_problem: Optional[str]
    expired: bool
    ok: bool

class Store:
    @classmethod
    def open(cls, path: PathLike, allow_expired: bool = ..., *, now: TimeLike = ...) -> Store: ...
    @classmethod
    def init(
        cls,
        path: PathLike,
        root_file: PathLike,
        *,
        force: bool = ...,
        now: TimeLike = ...,
        allow_expired: bool = ...,
    ) -> Store: ...
    @property
    def path(self) -> str: ...
    @property
    def allow_expired(self) -> bool: ...
    @property
    def snapshot(self) -> Snapshot: ...
    def check(
        self, isrc: str, use: str = ..., territory: Optional[str] = ..., at: TimeLike = ...
    ) -> Answer: ...
    def is_allowed(
        self, isrc: Optional[str], use: str = ..., territory: Optional[str] = ..., at: TimeLike = ...
    ) -> bool: ...
    def decide(
        self,
        isrcs: Iterable[Optional[str]],
        use: str = ...,
        territory: Optional[str] = ...,
        at: TimeLike = ...,
    ) -> list[Tuple[str, str]]: ...
    def allowed_list(
        self,
        isrcs: Iterable[Optional[str]],
        use: str = ...,
        territory: Optional[str] = ...,
        at: TimeLike = ...,
    ) -> list[bool]: ...
    def filter_allowed(
        self,
        isrcs: Iterable[Optional[str]],
        use: str = ...,
        territory: Optional[str] = ...,
        at: TimeLike = ...,
        *,
        batch_size: int = ...,
    ) -> Iterator[str]: ...
    def check_arrow(
        self,
        values: Any,
        use: str = ...,
        territory: Optional[str] = ...,
        at: TimeLike = ...,
        *,
        decided_by: bool = ...,
    ) -> Union[pa.RecordBatch, pa.Table]: ...
    def allowed_mask(
        self, values: Any, use: str = ..., territory: Optional[str] = ..., at: TimeLike = ...
    ) -> Union[pa.BooleanArray, pa.ChunkedArray]: ...
    def sync(
        self, source: PathLike, *, timeout: Optional[float] = ..., keep_history: Optional[int] = ...
    ) -> SyncReport: ...
    def verify(self, *, repair: bool = ...) -> VerifyReport: ...
    def status(self) -> Dict[str, Any]: ...
    def reload(self) -> Snapshot: ...

def open(path: PathLike, allow_expired: bool = ..., *, now: TimeLike = ...) -> Store: ...

# ---- exceptions (generated at import from the Rust `Code` enum) ----------

class ConsentryError(Exception):
    code: Optional[str]
    family: Optional[str]
    hint: Optional[str]
    file: Optional[str]
    detail: Optional[str]

class VerificationError(ConsentryError): ...
class TransportError(ConsentryError): ...
class StoreError(ConsentryError): ...

class LimitExceededError(VerificationError):
    code: ClassVar[str]  # "limit_exceeded"

class MalformedEnvelopeError(VerificationError):
    code: ClassVar[str]  # "malformed_envelope"

class TooManySignaturesError(VerificationError):
    code: ClassVar[str]  # "too_many_signatures"

class WrongPayloadTypeError(VerificationError):
    code: ClassVar[str]  # "wrong_payload_type"

class ThresholdNotMetError(VerificationError):
    code: ClassVar[str]  # "threshold_not_met"

class MalformedDocumentError(VerificationError):
    code: ClassVar[str]  # "malformed_document"

class RootVersionError(VerificationError):
    code: ClassVar[str]  # "root_version"

class ExpiredError(VerificationError):
    code: ClassVar[str]  # "expired"

class RollbackError(VerificationError):
    code: ClassVar[str]  # "rollback"

class SplitViewError(VerificationError):
    code: ClassVar[str]  # "split_view"

class LengthMismatchError(VerificationError):
    code: ClassVar[str]  # "length_mismatch"

class HashMismatchError(VerificationError):
    code: ClassVar[str]  # "hash_mismatch"

class VersionMismatchError(VerificationError):
    code: ClassVar[str]  # "version_mismatch"

class ChainBrokenError(VerificationError):
    code: ClassVar[str]  # "chain_broken"

class MalformedDataError(VerificationError):
    code: ClassVar[str]  # "malformed_data"

class KeyOutOfRangeError(VerificationError):
    code: ClassVar[str]  # "key_out_of_range"

class UnsortedKeysError(VerificationError):
    code: ClassVar[str]  # "unsorted_keys"

class RangeMismatchError(VerificationError):
    code: ClassVar[str]  # "range_mismatch"

class CountMismatchError(VerificationError):
    code: ClassVar[str]  # "count_mismatch"

class LayerMismatchError(VerificationError):
    code: ClassVar[str]  # "layer_mismatch"

class StateMismatchError(VerificationError):
    code: ClassVar[str]  # "state_mismatch"

class MalformedCheckpointError(VerificationError):
    code: ClassVar[str]  # "malformed_checkpoint"

class WitnessThresholdNotMetError(VerificationError):
    code: ClassVar[str]  # "witness_threshold_not_met"

class CheckpointMismatchError(VerificationError):
    code: ClassVar[str]  # "checkpoint_mismatch"

class LogForkError(VerificationError):
    code: ClassVar[str]  # "log_fork"

class BadPathError(TransportError):
    code: ClassVar[str]  # "bad_path"

class BadSourceError(TransportError):
    code: ClassVar[str]  # "bad_source"

class IoError(TransportError):
    code: ClassVar[str]  # "io_error"

class SymlinkRefusedError(TransportError):
    code: ClassVar[str]  # "symlink_refused"

class NotAFileError(TransportError):
    code: ClassVar[str]  # "not_a_file"

class FetchFailedError(TransportError):
    code: ClassVar[str]  # "fetch_failed"

class NotFoundError(TransportError):
    code: ClassVar[str]  # "not_found"

class ClockBackwardsError(StoreError):
    code: ClassVar[str]  # "clock_backwards"

class TrustMismatchError(StoreError):
    code: ClassVar[str]  # "trust_mismatch"

class NotInitializedError(StoreError):
    code: ClassVar[str]  # "not_initialized"

class AlreadyInitializedError(StoreError):
    code: ClassVar[str]  # "already_initialized"

class NoSnapshotError(StoreError):
    code: ClassVar[str]  # "no_snapshot"

class HeadNotTrustedError(StoreError):
    code: ClassVar[str]  # "head_not_trusted"

class StoreIncompleteError(StoreError):
    code: ClassVar[str]  # "store_incomplete"

class StoreCorruptError(StoreError):
    code: ClassVar[str]  # "store_corrupt"

class StoreBusyError(StoreError):
    code: ClassVar[str]  # "store_busy"

class IndexCorruptError(StoreError):
    code: ClassVar[str]  # "index_corrupt"

class BadBundleError(StoreError):
    code: ClassVar[str]  # "bad_bundle"

class BadInputError(StoreError, ValueError):
    code: ClassVar[str]  # "bad_input"

class ReceiptInvalidError(StoreError):
    code: ClassVar[str]  # "receipt_invalid"

class ProofMismatchError(StoreError):
    code: ClassVar[str]  # "proof_mismatch"

class AnswerMismatchError(StoreError):
    code: ClassVar[str]  # "answer_mismatch"

class UsageError(StoreError, ValueError):
    code: ClassVar[str]  # "usage"

class ConsentryBrokenPipeError(StoreError):
    code: ClassVar[str]  # "broken_pipe"

class InvalidIsrcError(BadInputError): ...
