"""The golden questions (tests/data/lookups.csv) and a catalogue, answered
identically by Python's `Store.check`, `check_arrow`, `decide` and the CLI
(`consentry check --json`, one-question and batch input)."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import pickle
import threading
from pathlib import Path
from typing import Dict, List, Optional

import pytest

import consentry
from conftest import DATA, Demo, catalogue


def cli_answers(demo: Demo, inputs: List[str], *flags: str) -> List[dict]:
    """`consentry check --input FILE --json` over JSON lines (any string
    survives the trip; `--input` answers in input order)."""
    f = demo.dir / f"questions-{abs(hash((tuple(inputs), flags)))}.jsonl"
    f.write_text("".join(json.dumps({"isrc": s}) + "\n" for s in inputs))
    return demo.cli_json("check", "--input", str(f), "--json", *flags)


def test_golden_lookups_through_check_equal_the_file_and_the_cli(store, demo: Demo, golden):
    cli = demo.cli_json("check", "--input", str(DATA / "lookups.csv"), "--json")
    assert len(cli) == len(golden)
    for row, c in zip(golden, cli):
        a = store.check(row["isrc"], use=row["use"], territory=row["territory"] or None, at=row["at"])
        assert (a.decision, a.reason, " ".join(a.decided_by)) == (row["decision"], row["reason"], row["decided_by"]), row
        # Field for field what the CLI prints for the same question (the
        # file's own columns, passed through as input_NAME, aside).
        assert a.to_dict() == {k: v for k, v in c.items() if not k.startswith("input_")}, row
        assert a.allowed == (row["decision"] == "allow")
        assert store.is_allowed(row["isrc"], use=row["use"], territory=row["territory"] or None, at=row["at"]) == (
            row["decision"] == "allow"
        )


def test_golden_lookups_through_check_arrow_and_decide(store, golden):
    pa = pytest.importorskip("pyarrow")
    key = lambda r: (r["use"], r["territory"], r["at"])  # noqa: E731
    groups = itertools.groupby(sorted(golden, key=key), key=key)
    n = 0
    for (use, territory, at), rows in groups:
        rows = list(rows)
        isrcs = [r["isrc"] for r in rows]
        for typ in (pa.string(), pa.large_string(), pa.string_view()):
            arr = pa.array(isrcs, type=typ)
            out = store.check_arrow(arr, use=use, territory=territory or None, at=at)
            assert isinstance(out, pa.RecordBatch)
            assert out.schema.names == ["isrc", "decision", "reason"]
            assert out.column("isrc").equals(arr), "the isrc column is the input array"
            got = list(zip(out.column("decision").to_pylist(), out.column("reason").to_pylist()))
            assert got == [(r["decision"], r["reason"]) for r in rows], (use, territory, at)
            full = store.check_arrow(arr, use=use, territory=territory or None, at=at, decided_by=True)
            assert full.schema.names == ["isrc", "decision", "reason", "decided_by"]
            assert [" ".join(ids) for ids in full["decided_by"].to_pylist()] == [r["decided_by"] for r in rows]
            assert list(zip(full["decision"].to_pylist(), full["reason"].to_pylist())) == got
        assert store.decide(isrcs, use=use, territory=territory or None, at=at) == got
        n += len(rows)
    assert n == len(golden)


def test_a_catalogue_is_decided_alike_by_every_path_and_the_cli(store, demo: Demo, golden):
    pa = pytest.importorskip("pyarrow")
    items = catalogue(golden)
    strings = [s for s in items if isinstance(s, str) and s.strip()]
    cli = {}
    for c in cli_answers(demo, strings):
        cli.setdefault(c["input"], (c["decision"], c["reason"]))
    trimmed = lambda s: s.strip(" \t\r\n\x0c")  # noqa: E731  (SPEC.md §3.1 trim)
    want = [cli[trimmed(s)] if isinstance(s, str) and s.strip() else ("unknown", "invalid_isrc") for s in items]
    assert store.decide(items) == want
    batch = store.check_arrow(pa.array(items, type=pa.string()))
    assert list(zip(batch["decision"].to_pylist(), batch["reason"].to_pylist())) == want
    # The answer columns are dictionary-encoded, every batch with the same
    # dictionary (all values, in a fixed order).
    enum = pa.dictionary(pa.int8(), pa.string())
    assert batch.schema.field("decision").type == enum and batch.schema.field("reason").type == enum
    assert batch["decision"].dictionary.to_pylist() == ["allow", "disallow", "constrained", "unknown"]
    # Chunked input: a Table, one batch per chunk, the same answers.
    chunked = pa.chunked_array([items[:7], items[7:7], items[7:]], type=pa.string())
    table = store.check_arrow(chunked)
    assert isinstance(table, pa.Table) and table.num_rows == len(items)
    assert list(zip(table["decision"].to_pylist(), table["reason"].to_pylist())) == want
    full = store.check_arrow(chunked, decided_by=True)
    assert list(zip(full["decision"].to_pylist(), full["reason"].to_pylist())) == want
    empty = store.check_arrow(pa.chunked_array([], type=pa.string()), decided_by=True)
    assert empty.num_rows == 0 and empty.schema.names[-1] == "decided_by"
    # One at a time.
    for s, w in zip(items, want):
        if isinstance(s, str):
            a = store.check(s)
            assert (a.decision, a.reason) == w, s
    allowed = [s for s, w in zip(items, want) if w[0] == "allow"]
    assert allowed, "the catalogue holds allowed ISRCs"
    assert len(allowed) < len(items)
    assert list(store.filter_allowed(items)) == allowed
    assert list(store.filter_allowed(iter(items), batch_size=3)) == allowed
    assert store.allowed_list(items) == [w[0] == "allow" for w in want]
    mask = store.allowed_mask(pa.array(items, type=pa.large_string()))
    assert mask.to_pylist() == [w[0] == "allow" for w in want]
    # The mask of a chunked column: chunk for chunk, the same bits.
    cmask = store.allowed_mask(chunked)
    assert isinstance(cmask, pa.ChunkedArray) and [len(c) for c in cmask.chunks] == [7, 0, len(items) - 7]
    assert cmask.to_pylist() == [w[0] == "allow" for w in want]
    assert store.allowed_mask(pa.chunked_array([], type=pa.string())).to_pylist() == []


def test_numpy_pandas_polars_and_dictionary_inputs(store, golden):
    pa = pytest.importorskip("pyarrow")
    np = pytest.importorskip("numpy")
    pd = pytest.importorskip("pandas")
    items = catalogue(golden)
    want = store.decide(items)
    decisions = [d for d, _ in want]
    assert store.check_arrow(pd.Series(items, dtype=object))["decision"].to_pylist() == decisions
    assert store.check_arrow(pd.Series(items, dtype="string"))["decision"].to_pylist() == decisions
    cat = pd.Series(items, dtype="category")
    assert store.check_arrow(cat)["decision"].to_pylist() == decisions
    strs = [s for s in items if s is not None]
    assert store.check_arrow(np.array(strs))["decision"].to_pylist() == [d for d, _ in store.decide(strs)]
    dict_arr = pa.array(items, type=pa.string()).dictionary_encode()
    assert store.check_arrow(dict_arr)["decision"].to_pylist() == decisions
    try:
        import polars as pl
    except ImportError:
        pl = None
    if pl is not None:
        out = store.check_arrow(pl.Series("isrc", items, dtype=pl.Utf8))
        assert out["decision"].to_pylist() == decisions
    # A column of nulls only, and an empty column.
    assert store.check_arrow(pa.array([None, None]))["reason"].to_pylist() == ["invalid_isrc"] * 2
    assert store.check_arrow(pa.array([], type=pa.string())).num_rows == 0
    with pytest.raises(TypeError):
        store.check_arrow(pa.array([1, 2, 3]))


def test_nulls_and_invalid_isrcs_are_never_allowed(store):
    pa = pytest.importorskip("pyarrow")
    bad = [None, "", "GB-NWR-25", "GBNWR250001", "GBNWR25000177", "GBNWR2500017\u00a0", "ＧＢNWR2500017", "x" * 1000]
    out = store.check_arrow(pa.array(bad, type=pa.string()))
    assert out["decision"].to_pylist() == ["unknown"] * len(bad)
    assert out["reason"].to_pylist() == ["invalid_isrc"] * len(bad)
    for s in bad:
        assert not store.is_allowed(s)
        if s is not None:
            a = store.check(s)
            assert (a.decision, a.reason, a.isrc) == ("unknown", "invalid_isrc", None)
    assert list(store.filter_allowed(bad)) == []
    # The same ISRC, well spelled, is allowed: the refusals above are the input's.
    assert store.is_allowed("GBNWR2500017")
    with pytest.raises(consentry.InvalidIsrcError) as e:
        consentry.normalize_isrc("GB-NWR-25")
    assert e.value.code == "bad_input" and isinstance(e.value, ValueError)
    assert consentry.normalize_isrc(" isrc gb-nwr-25-00017 ") == "GBNWR2500017"


def test_bad_parameters_raise_usage_errors(store):
    for kwargs in ({"use": "train"}, {"territory": "XX1"}, {"at": "yesterday"}):
        with pytest.raises(consentry.UsageError) as e:
            store.check("GBNWR2500017", **kwargs)
        assert e.value.code == "usage" and isinstance(e.value, ValueError)
        assert isinstance(e.value, consentry.StoreError) and isinstance(e.value, consentry.ConsentryError)


def test_snapshot_sync_verify_status_and_pickle(store, demo: Demo, tmp_path):
    snap = store.snapshot
    st = json.loads(demo.cli("status", "--json").ok().stdout)
    assert snap.version == 1 == st["snapshot"]["version"]
    assert snap.manifest_sha256 == st["snapshot"]["manifest_sha256"] and len(snap.manifest_sha256) == 64
    assert snap.created == st["snapshot"]["created"]
    assert snap.expires <= st["snapshot"]["head_expires"] and not snap.expired
    assert store.status()["snapshot"] == st["snapshot"]
    rep = store.verify()
    assert rep.ok and rep.index == "intact" and rep.version == 1 and rep.entries == snap.entries
    assert "verified snapshot version 1" in demo.cli("verify").ok().stdout
    clone = pickle.loads(pickle.dumps(store))
    assert clone.snapshot == snap and clone.check("GBNWR2500017").decision == "allow"

    # init + sync from a directory and over HTTP, like the CLI.
    fresh = consentry.Store.init(tmp_path / "s", demo.site / "root" / "1.cbor")
    with pytest.raises(consentry.NoSnapshotError) as e:
        fresh.check("GBNWR2500017")
    assert e.value.code == "no_snapshot" and "sync" in e.value.hint
    with pytest.raises(consentry.NoSnapshotError):
        consentry.Store.open(tmp_path / "s")
    r = fresh.sync(demo.site)
    assert (r.from_version, r.to_version, r.mode) == (None, 1, "full")
    assert r.manifest_sha256 == snap.manifest_sha256
    assert fresh.check("GBNWR2500017").to_dict() == store.check("GBNWR2500017").to_dict()
    assert fresh.sync(str(demo.site)).mode == "nothing new"
    # The same root again is a no-op (a provisioning script re-run); another
    # root is refused.
    consentry.Store.init(tmp_path / "s", demo.site / "root" / "1.cbor")
    assert fresh.check("GBNWR2500017").to_dict() == store.check("GBNWR2500017").to_dict()
    other = bytearray((demo.site / "root" / "1.cbor").read_bytes())
    other[-1] ^= 1
    (tmp_path / "other-root.cbor").write_bytes(bytes(other))
    with pytest.raises(consentry.ConsentryError):
        consentry.Store.init(tmp_path / "s", tmp_path / "other-root.cbor")

    import functools
    import http.server

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(demo.site))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        over_http = consentry.Store.init(tmp_path / "h", demo.site / "root" / "1.cbor")
        r = over_http.sync(f"http://127.0.0.1:{server.server_address[1]}/", timeout=30)
        assert r.to_version == 1 and r.files_fetched > 0
        assert over_http.snapshot == consentry.Store.open(tmp_path / "h").snapshot
    finally:
        server.shutdown()
    with pytest.raises(consentry.BadSourceError):
        fresh.sync("ftp://example.invalid/")
    with pytest.raises(consentry.BadSourceError):
        fresh.sync(tmp_path / "no-such-dir")


def test_threads_share_a_store(store, golden):
    pa = pytest.importorskip("pyarrow")
    items = catalogue(golden) * 50
    want = store.check_arrow(pa.array(items, type=pa.string()))["decision"].to_pylist()
    results: Dict[int, Optional[list]] = {}

    def work(i: int) -> None:
        results[i] = store.check_arrow(pa.array(items, type=pa.string()))["decision"].to_pylist()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(results[i] == want for i in range(4))


def test_stubs_name_every_error_class_and_code():
    stub = (Path(consentry.__file__).parent / "__init__.pyi").read_text()
    for name in consentry.ERROR_CLASSES:
        assert f"class {name}(" in stub, name
        assert getattr(consentry, name) is consentry.ERROR_CLASSES[name]
    for code, (family, cls, _, _) in consentry.CODES.items():
        c = consentry.ERROR_CLASSES[cls]
        assert c.code == code and c.family == family
        assert issubclass(c, consentry.ConsentryError)
    assert consentry.ExpiredError.code == "expired"
    assert issubclass(consentry.ExpiredError, consentry.VerificationError)
    assert issubclass(consentry.HashMismatchError, consentry.VerificationError)
    assert issubclass(consentry.FetchFailedError, consentry.TransportError)
    assert (Path(consentry.__file__).parent / "py.typed").exists()


def test_the_gil_is_released_while_rust_decides(store, golden):
    """Another Python thread keeps running during check_arrow's Rust work."""
    pa = pytest.importorskip("pyarrow")
    import sys
    import time

    arr = pa.array([s for s in catalogue(golden) if s] * 6000, type=pa.string())
    count = [0]
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            count[0] += 1

    old = sys.getswitchinterval()
    sys.setswitchinterval(0.001)
    t = threading.Thread(target=spin)
    t.start()
    try:
        time.sleep(0.05)
        c0, t0 = count[0], time.perf_counter()
        time.sleep(0.2)
        rate = (count[0] - c0) / (time.perf_counter() - t0)
        # The whole call is Rust: params, then the job on the worker thread
        # with the GIL released.
        c0, t0 = count[0], time.perf_counter()
        store._engine.decide_arrow([arr], "train-ai", None, None)
        took = time.perf_counter() - t0
        ran = count[0] - c0
    finally:
        stop.set()
        t.join()
        sys.setswitchinterval(old)
    assert took > 0.05, f"too fast to tell ({took:.3f} s): make the input larger"
    # Measured: ~0.9 of the spinner's own rate with the GIL released, ~0.02
    # while a C call of the same length holds it (a list.sort()).
    assert ran > 0.3 * rate * took, (ran, rate, took)


def test_reload_and_delta_sync_follow_a_new_version(demo: Demo, tmp_path):
    """A store opened in Python keeps answering from the snapshot it verified
    while the CLI syncs a new version into it; reload() moves to the new one.
    A Python sync of a second store takes the same delta."""
    import shutil

    from conftest import KEYS, rfc3339, run

    d = tmp_path / "reg"
    shutil.copytree(demo.dir, d, ignore=shutil.ignore_patterns("*.jsonl"), symlinks=True)
    other = consentry.Store.init(tmp_path / "other", d / "site" / "root" / "1.cbor")
    assert other.sync(d / "site").to_version == 1
    store = consentry.Store.open(d / "store")
    before = store.check("GBNWR2600017")
    assert (before.decision, before.decided_by) == ("disallow", ("D1",))  # GB-NWR: all=n
    header = (DATA / "declarations.csv").read_text().splitlines()[0]
    at = rfc3339(demo.signed_at + dt.timedelta(minutes=10))
    (d / "change.csv").write_text(
        header
        + "\nD17,17,declare,,GBNWR2600017,Northwind Records,ddex:PADPIDA2014021201U,label,,y,,,,,,WW,,,,"
        + at
        + ",active\n"
    )
    run("consentry-publish", ["import", "--db", "reg.db", "change.csv", "--recorded-at", at], d).ok()
    run(
        "consentry-publish",
        ["publish", "--db", "reg.db", "--keys", str(KEYS), "--site", "site", "--now", "registry",
         "--allow-short-expiry", "--insecure-test-keys"],
        d,
    ).ok()
    run("consentry", ["--store", "store", "sync", "site"], d).ok()
    # Still the snapshot verified at open, and its answers.
    assert store.snapshot.version == 1
    assert store.check("GBNWR2600017") == before
    assert store.reload().version == 2
    a = store.check("GBNWR2600017")
    assert (a.decision, a.decided_by, a.snapshot.version) == ("allow", ("D17",), 2)
    r = other.sync(d / "site")
    assert (r.from_version, r.to_version, r.mode) == (1, 2, "delta")
    assert other.check("GBNWR2600017").to_dict() == a.to_dict()


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork()")
def test_a_store_used_across_fork_raises_instead_of_hanging(store):
    import os

    pid = os.fork()
    if pid == 0:  # the child: no worker thread here
        code = 1
        try:
            store.check("GBNWR2500017")
        except RuntimeError as e:
            code = 0 if "fork" in str(e) else 2
        except BaseException:
            code = 3
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert store.check("GBNWR2500017").decision == "allow"  # the parent's still works
