"""consentry: verified, offline answers to AI-training consent questions per ISRC.

A thin wrapper over the Rust verifier (the extension module
``consentry._consentry``): every rule -- verification of the signed snapshot,
expiry, ISRC parsing, the lookup rule -- is the library's, the same code the
``consentry`` command line runs.

    >>> import consentry
    >>> store = consentry.Store.open("store")          # verifies, or raises
    >>> store.check("GB-NWR-25-00017").decision
    'allow'
    >>> store.is_allowed("GBNWR2500001", use="train-ai")
    False
    >>> batch = store.check_arrow(pyarrow.array(isrcs))  # isrc, decision, reason

Only the decision ``allow`` is allowed: unknown, invalid or missing ISRCs,
``disallow`` and ``constrained`` are not. Failures raise a subclass of
:class:`ConsentryError` whose ``code`` is the SPEC.md section 9 wire string
(``expired``, ``hash_mismatch``, ...); never a silent "allowed".
"""

from __future__ import annotations

import builtins as _builtins
import datetime as _dt
import json as _json
import os as _os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Optional, Sequence, Tuple, Union

from . import _consentry

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

__version__: str = _consentry.__version__

# One exception class per SPEC.md section 9 code, plus the base class, one
# class per family (VerificationError, TransportError, StoreError) and
# InvalidIsrcError, all built by the extension from the Rust `Code` enum.
_ERROR_CLASSES = _consentry.error_classes()
globals().update(_ERROR_CLASSES)
ERROR_CLASSES: "dict[str, type]" = dict(_ERROR_CLASSES)
#: code wire string -> (family, exception class name, hint for a store file, hint for a source file)
CODES: "dict[str, Tuple[str, str, Optional[str], Optional[str]]]" = {
    code: (family, cls, hint_store, hint_source)
    for code, family, cls, hint_store, hint_source in _consentry.codes()
}
USES, DECISIONS, REASONS = (tuple(v) for v in _consentry.vocabulary())

normalize_isrc = _consentry.normalize_isrc

TimeLike = Union[None, int, float, str, _dt.date, _dt.datetime]


def _epoch(value: TimeLike) -> Optional[int]:
    """Unix seconds from a time given as int/float seconds, an RFC 3339 or
    YYYY-MM-DD string (parsed as ``--now`` parses it), a date (midnight UTC)
    or a datetime (naive = UTC)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError("a time must be seconds, a string, a date or a datetime")
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, str):
        return _consentry.parse_time(value)
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.timezone.utc)
        return int(value.timestamp())
    if isinstance(value, _dt.date):
        return int(_dt.datetime(value.year, value.month, value.day, tzinfo=_dt.timezone.utc).timestamp())
    raise TypeError(f"a time must be seconds, a string, a date or a datetime, not {type(value).__name__}")


def _at_text(value: TimeLike) -> Optional[str]:
    """`at` as the text ``--at`` takes (the library parses it)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, _dt.date) and not isinstance(value, _dt.datetime):
        return value.isoformat()
    secs = _epoch(value)
    assert secs is not None
    return _dt.datetime.fromtimestamp(secs, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Snapshot:
    """The verified snapshot answers come from. Times are UTC, as RFC 3339
    strings and Unix seconds; ``expires`` is the earliest of the root, head
    and manifest expiry (answers are refused from then on unless the store
    was opened with ``allow_expired=True``)."""

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
    """One answer, with the fields of ``consentry check --json``."""

    input: str
    isrc: Optional[str]
    use: str
    territory: Optional[str]
    at: str
    decision: str
    reason: str
    decided_by: Tuple[str, ...]
    snapshot: Snapshot
    #: For a ``constrained`` answer: the terms URLs of its constrained
    #: deciders, in ``decided_by`` order (empty otherwise).
    terms_url: Tuple[str, ...] = ()
    #: The SHA-256 (hex) of each terms document, None where not given.
    terms_sha256: Tuple[Optional[str], ...] = ()

    @property
    def allowed(self) -> bool:
        """True only for the decision ``allow``."""
        return self.decision == "allow"

    def to_dict(self) -> "dict[str, Any]":
        """The JSON object ``consentry check --json`` prints for this answer
        (the same field names as its CSV columns)."""
        return {
            "input": self.input,
            "isrc": self.isrc,
            "use": self.use,
            "territory": self.territory,
            "at": self.at,
            "decision": self.decision,
            "reason": self.reason,
            "decided_by": list(self.decided_by),
            "terms_url": list(self.terms_url),
            "terms_sha256": list(self.terms_sha256),
            "snapshot_version": self.snapshot.version,
            "manifest_sha256": self.snapshot.manifest_sha256,
            "expired": self.snapshot.expired,
            "error": None,
        }


@dataclass(frozen=True)
class SyncReport:
    """What :meth:`Store.sync` did (``consentry sync``'s summary)."""

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
    """What :meth:`Store.verify` found (``consentry verify``). ``ok`` is False
    when the local index is missing or damaged (``consentry verify`` exits 1
    then; ``repair=True`` rebuilds it)."""

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


def _reopen(path: str, allow_expired: bool, now: Optional[int]) -> "Store":
    return Store.open(path, allow_expired, now=now)


_ARROW_SCHEMA_FIELDS = ("isrc", "decision", "reason")


def _to_arrow(values: Any) -> "Union[pa.Array, pa.ChunkedArray]":
    """An Arrow string array (or chunked array) from pyarrow, numpy, pandas,
    polars or any object exporting the Arrow C data or stream interface;
    dictionary-encoded strings are decoded."""
    import pyarrow as pa

    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        arr = values
    elif hasattr(values, "__arrow_c_stream__") and not hasattr(values, "__arrow_c_array__"):
        arr = pa.chunked_array(values)
    elif hasattr(values, "to_arrow") and not hasattr(values, "__array__"):
        arr = values.to_arrow()  # polars Series without the C interfaces
    else:
        try:
            arr = pa.array(values, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
            # A list mixing strings and other objects: only strings are ISRCs.
            arr = pa.array([v if isinstance(v, str) else None for v in values], type=pa.string())
    if isinstance(arr, pa.ChunkedArray):
        if pa.types.is_dictionary(arr.type):
            arr = pa.chunked_array([c.dictionary_decode() for c in arr.chunks], type=arr.type.value_type)
    elif pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    return arr


class Store:
    """A verified consentry store (a directory made by ``consentry init`` and
    ``consentry sync``). Open it with :meth:`Store.open`.

    Every call answers from the snapshot verified at open; when that snapshot
    expires, the next call verifies the store again (and raises
    :class:`ExpiredError` unless opened with ``allow_expired=True``).
    Calls release the GIL; a store may be shared by threads (its calls run
    one at a time). A store pickles as its path and options and is opened,
    and verified, again where it is unpickled (e.g. on a Spark executor).
    """

    __slots__ = ("_engine",)

    def __init__(self, engine: Any) -> None:
        self._engine = engine

    # ---- opening -------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: "Union[str, _os.PathLike[str]]",
        allow_expired: bool = False,
        *,
        now: TimeLike = None,
    ) -> "Store":
        """Open and verify the store at ``path`` as ``consentry check`` does:
        pinned root, root chain, head and manifest signatures, expiry and the
        clock floor. Raises a :class:`ConsentryError` subclass (e.g.
        :class:`ExpiredError`, :class:`NoSnapshotError`,
        :class:`NotInitializedError`, :class:`HashMismatchError`) if the store
        cannot be trusted. ``now`` replaces the system clock (``--now``);
        ``allow_expired`` accepts an expired snapshot (``--allow-expired``:
        every answer's snapshot is then marked ``expired``)."""
        return cls(_consentry._Engine.open(_os.fspath(path), _epoch(now), bool(allow_expired), True))

    @classmethod
    def init(
        cls,
        path: "Union[str, _os.PathLike[str]]",
        root_file: "Union[str, _os.PathLike[str]]",
        *,
        force: bool = False,
        now: TimeLike = None,
        allow_expired: bool = False,
    ) -> "Store":
        """``consentry init --root ROOT_FILE``: pin the registry's root (got
        out of band: compare its SHA-256 first) in a new store and return it,
        not yet synced (call :meth:`sync`)."""
        with _builtins.open(root_file, "rb") as f:
            root = f.read()
        return cls(_consentry._Engine.init(_os.fspath(path), root, bool(force), _epoch(now), bool(allow_expired)))

    def __reduce__(self) -> Any:
        return (_reopen, (str(self.path), self.allow_expired, self._engine.pinned_now))

    def __repr__(self) -> str:
        return f"consentry.Store({str(self.path)!r})"

    @property
    def path(self) -> str:
        """The store directory."""
        return str(self._engine.path)

    @property
    def allow_expired(self) -> bool:
        return bool(self._engine.allow_expired)

    @property
    def snapshot(self) -> Snapshot:
        """The verified snapshot answers come from."""
        return Snapshot(**self._engine.snapshot())

    # ---- lookups -------------------------------------------------------

    def check(
        self,
        isrc: str,
        use: str = "train-ai",
        territory: Optional[str] = None,
        at: TimeLike = None,
    ) -> Answer:
        """Answer one question (``consentry check ISRC --json``). ``isrc`` in
        any spelling; input that is not an ISRC is answered ``unknown`` /
        ``invalid_isrc``. ``use``: all, train-ai, train-genai, ai-use,
        search. ``territory``: ISO 3166-1 alpha-2 or None (any). ``at``: when
        the use happens (default: today)."""
        if not isinstance(isrc, str):
            raise TypeError(f"isrc must be a str, not {type(isrc).__name__}")
        d = self._engine.check(isrc, use, territory, _at_text(at))
        d["decided_by"] = tuple(d["decided_by"])
        d["terms_url"] = tuple(d["terms_url"])
        d["terms_sha256"] = tuple(d["terms_sha256"])
        d["snapshot"] = Snapshot(**d["snapshot"])
        return Answer(**d)

    def is_allowed(
        self,
        isrc: Optional[str],
        use: str = "train-ai",
        territory: Optional[str] = None,
        at: TimeLike = None,
    ) -> bool:
        """True only if the answer is ``allow``; None or a non-ISRC is False."""
        if not isinstance(isrc, str):
            return False
        # The batch path for one input (equal to `check` by a library test),
        # without building an Answer.
        return self._engine.decide_many([isrc], use, territory, _at_text(at))[0][0] == "allow"

    def decide(
        self,
        isrcs: Iterable[Optional[str]],
        use: str = "train-ai",
        territory: Optional[str] = None,
        at: TimeLike = None,
    ) -> "list[Tuple[str, str]]":
        """(decision, reason) for each input, in order, through the batch path
        (``Reader::decide_inputs``). None and non-strings are invalid."""
        items = [v if isinstance(v, str) else None for v in isrcs]
        return self._engine.decide_many(items, use, territory, _at_text(at))

    def allowed_list(
        self,
        isrcs: Iterable[Optional[str]],
        use: str = "train-ai",
        territory: Optional[str] = None,
        at: TimeLike = None,
    ) -> "list[bool]":
        """One bool per input: True only where the decision is ``allow``
        (e.g. the mask of a batched ``datasets`` filter)."""
        return [d == "allow" for d, _ in self.decide(isrcs, use, territory, at)]

    def filter_allowed(
        self,
        isrcs: Iterable[Optional[str]],
        use: str = "train-ai",
        territory: Optional[str] = None,
        at: TimeLike = None,
        *,
        batch_size: int = 65536,
    ) -> Iterator[str]:
        """Yield the inputs whose answer is ``allow``, in order, deciding
        ``batch_size`` at a time (works on endless iterables)."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        at_text = _at_text(at)
        chunk: "list[Optional[str]]" = []

        def flush(items: "list[Optional[str]]") -> Iterator[str]:
            decided = self._engine.decide_many(
                [v if isinstance(v, str) else None for v in items], use, territory, at_text
            )
            for v, (d, _) in zip(items, decided):
                if d == "allow" and isinstance(v, str):
                    yield v

        for v in isrcs:
            chunk.append(v)
            if len(chunk) >= batch_size:
                yield from flush(chunk)
                chunk = []
        if chunk:
            yield from flush(chunk)

    def check_arrow(
        self,
        values: Any,
        use: str = "train-ai",
        territory: Optional[str] = None,
        at: TimeLike = None,
        *,
        decided_by: bool = False,
    ) -> "Union[pa.RecordBatch, pa.Table]":
        """Answer a whole column: a ``pyarrow.RecordBatch`` with columns
        ``isrc`` (the input array itself), ``decision`` and ``reason`` for an
        Array, a ``pyarrow.Table`` (one batch per chunk) for a ChunkedArray.
        ``decision`` and ``reason`` are dictionary-encoded strings
        (``dictionary<int8, string>``, the same dictionary in every batch:
        pandas reads a category, polars a Categorical, DuckDB and
        ``datasets`` strings; ``.cast(pyarrow.string())`` for plain ones).
        Accepts pyarrow string / large_string / string_view (read in place
        through the Arrow C Data Interface), dictionary-encoded strings, and
        numpy, pandas, polars or lists (converted with ``pyarrow.array``).
        Nulls are answered ``unknown`` / ``invalid_isrc``. ``decided_by=True``
        adds a ``decided_by`` column (list of declaration ids), answering row
        by row (the one-question path: slower than the default batch)."""
        import pyarrow as pa

        arr = _to_arrow(values)
        chunked = isinstance(arr, pa.ChunkedArray)
        chunks = list(arr.chunks) if chunked else [arr]
        batches, _snap = self._engine.decide_arrow(chunks, use, territory, _at_text(at), decided_by)
        if not chunked:
            return batches[0]
        if batches:
            return pa.Table.from_batches(batches)
        fields = [
            pa.field("isrc", arr.type, True),
            pa.field("decision", pa.dictionary(pa.int8(), pa.string()), False),
            pa.field("reason", pa.dictionary(pa.int8(), pa.string()), False),
        ]
        if decided_by:
            fields.append(pa.field("decided_by", pa.list_(pa.string()), False))
        return pa.Table.from_batches([], schema=pa.schema(fields))

    def allowed_mask(
        self,
        values: Any,
        use: str = "train-ai",
        territory: Optional[str] = None,
        at: TimeLike = None,
    ) -> "Union[pa.BooleanArray, pa.ChunkedArray]":
        """A boolean Arrow mask, True only where the decision is ``allow``:
        ``table.filter(store.allowed_mask(table["isrc"]))``. The batch of
        ``check_arrow`` without its answer columns (the fastest path)."""
        import pyarrow as pa

        arr = _to_arrow(values)
        chunked = isinstance(arr, pa.ChunkedArray)
        chunks = list(arr.chunks) if chunked else [arr]
        masks = self._engine.allowed_arrow(chunks, use, territory, _at_text(at))
        if not chunked:
            return masks[0]
        return pa.chunked_array(masks, type=pa.bool_())

    # ---- the store -----------------------------------------------------

    def sync(self, source: "Union[str, _os.PathLike[str]]", *, timeout: Optional[float] = None, keep_history: Optional[int] = None) -> SyncReport:
        """``consentry sync SOURCE``: fetch and verify the current snapshot
        from an http(s) URL or a directory laid out like a site; later
        answers come from it."""
        d = self._engine.sync(_os.fspath(source) if not isinstance(source, str) else source, timeout, keep_history)
        d["roots_added"] = tuple(d["roots_added"])
        return SyncReport(**d)

    def verify(self, *, repair: bool = False) -> VerifyReport:
        """``consentry verify``: re-check every file from the pinned root and
        rebuild the state against every signed leaf. Writes nothing unless
        ``repair=True`` (``verify --repair``: rebuild a damaged index)."""
        return VerifyReport(**self._engine.verify(repair))

    def status(self) -> "dict[str, Any]":
        """``consentry status --json``."""
        return _json.loads(self._engine.status_json())

    def reload(self) -> Snapshot:
        """Verify the store again and answer from its current snapshot (after
        another process synced it)."""
        return Snapshot(**self._engine.reload())


def open(path: "Union[str, _os.PathLike[str]]", allow_expired: bool = False, *, now: TimeLike = None) -> Store:  # noqa: A001
    """Shorthand for :meth:`Store.open`."""
    return Store.open(path, allow_expired, now=now)


__all__ = [
    "Answer",
    "CODES",
    "DECISIONS",
    "ERROR_CLASSES",
    "REASONS",
    "Snapshot",
    "Store",
    "SyncReport",
    "USES",
    "VerifyReport",
    "normalize_isrc",
    "open",
    *sorted(_ERROR_CLASSES),
]
