"""A store that cannot be trusted is refused with the typed exception of its
SPEC.md §9 code; nothing is ever answered "allow" from it."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import warnings
from pathlib import Path

import pytest

import consentry
from conftest import Demo, rfc3339


def flip_byte(p: Path, at: int | None = None) -> None:
    b = bytearray(p.read_bytes())
    i = len(b) // 2 if at is None else at
    b[i] ^= 0x5A
    p.write_bytes(bytes(b))


def largest(d: Path) -> Path:
    files = [p for p in d.iterdir() if p.is_file()]
    assert files, d
    return max(files, key=lambda p: p.stat().st_size)


def test_a_tampered_shard_is_refused_with_hash_mismatch(demo: Demo, tmp_path):
    s = demo.copy_store(tmp_path / "store")
    flip_byte(largest(s / "shard"))
    # The index is intact: lookups answer from it (its blocks are checked
    # against the signed leaves); verify re-hashes every file and refuses.
    store = consentry.Store.open(s)
    with pytest.raises(consentry.HashMismatchError) as e:
        store.verify()
    err = e.value
    assert err.code == "hash_mismatch" and err.family == "verification"
    assert isinstance(err, consentry.VerificationError) and isinstance(err, consentry.ConsentryError)
    assert "shard" in err.file and "sync" in err.hint, (err.file, err.hint)
    cli = demo.cli("verify", store=s)
    assert cli.code == 2 and "hash_mismatch" in cli.stderr
    # Without its index, the store must rebuild it from the shard: refused.
    for idx in (s / "local" / "index").iterdir():
        idx.unlink()
    with pytest.warns(UserWarning, match="index"):
        with pytest.raises(consentry.HashMismatchError):
            consentry.Store.open(s).check("GBNWR2500017")
    # sync from the site repairs it.
    fixed = consentry.Store.init(tmp_path / "other", demo.site / "root" / "1.cbor")
    assert fixed.sync(demo.site).to_version == 1
    repaired = demo.copy_store(tmp_path / "repaired")
    flip_byte(largest(repaired / "shard"))
    r = consentry.Store.open(repaired)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        r.sync(demo.site)
    assert any("fetching it again" in str(w.message) for w in seen), [str(w.message) for w in seen]
    assert r.verify().ok


def test_a_damaged_index_is_not_trusted(demo: Demo, tmp_path, golden):
    s = demo.copy_store(tmp_path / "store")
    idx = largest(s / "local" / "index")
    size = idx.stat().st_size
    flip_byte(idx, at=size - 40)
    store = consentry.Store.open(s)
    rep = store.verify()
    assert rep.index in ("corrupt", "intact") and (rep.index == "corrupt") == (not rep.ok)
    # Every answer still equals the golden one (a corrupt block is detected
    # against the signed leaves and the index rebuilt in a temporary file).
    warned = pytest.warns(UserWarning, match="corrupt") if rep.index == "corrupt" else contextlib.nullcontext()
    with warned:
        for row in golden:
            a = store.check(row["isrc"], use=row["use"], territory=row["territory"] or None, at=row["at"])
            assert (a.decision, a.reason) == (row["decision"], row["reason"])


def test_a_tampered_manifest_or_head_is_refused(demo: Demo, tmp_path):
    s = demo.copy_store(tmp_path / "m")
    flip_byte(largest(s / "manifest"))
    with pytest.raises(consentry.ConsentryError) as e:
        consentry.Store.open(s)
    assert e.value.code == "hash_mismatch" and isinstance(e.value, consentry.HashMismatchError)
    cli = demo.cli("check", "GBNWR2500017", store=s)
    assert cli.code == 2 and "hash_mismatch" in cli.stderr and cli.stdout == ""

    s = demo.copy_store(tmp_path / "h")
    flip_byte(s / "head.cbor", at=(s / "head.cbor").stat().st_size - 10)
    with pytest.raises(consentry.ConsentryError) as e:
        consentry.Store.open(s)
    assert e.value.code in ("head_not_trusted", "malformed_envelope", "threshold_not_met"), e.value.code
    assert e.value.code in demo.cli("check", "GBNWR2500017", store=s).stderr

    s = demo.copy_store(tmp_path / "t")
    (s / "local" / "trust.json").write_text('{"pinned_version":1,"pinned_sha256":"' + "0" * 64 + '"}')
    with pytest.raises(consentry.TrustMismatchError) as e:
        consentry.Store.open(s)
    assert e.value.family == "store"


def test_an_expired_store_is_refused_unless_allowed(demo: Demo):
    later = demo.signed_at + dt.timedelta(days=10)
    with pytest.raises(consentry.ExpiredError) as e:
        consentry.Store.open(demo.store, now=later)
    err = e.value
    assert err.code == "expired" and isinstance(err, consentry.VerificationError)
    assert "allow-expired" in err.hint
    cli = demo.cli("--now", rfc3339(later), "check", "GBNWR2500017")
    assert cli.code == 2 and "expired" in cli.stderr
    for now in (later, rfc3339(later), int(later.timestamp()), later.date()):
        with pytest.raises(consentry.ExpiredError):
            consentry.Store.open(demo.store, now=now)
    old = consentry.Store.open(demo.store, allow_expired=True, now=later)
    assert old.snapshot.expired
    a = old.check("GBNWR2500017")
    assert a.snapshot.expired and a.decision == "allow"
    cli = demo.cli_json("--now", rfc3339(later), "--allow-expired", "check", "GBNWR2500017", "--json")[0]
    assert a.to_dict() == cli


def test_a_clock_behind_the_snapshot_is_refused(demo: Demo):
    earlier = demo.signed_at - dt.timedelta(days=1)
    with pytest.raises(consentry.ClockBackwardsError) as e:
        consentry.Store.open(demo.store, now=earlier)
    assert e.value.code == "clock_backwards"
    with pytest.raises(consentry.ClockBackwardsError):
        consentry.Store.open(demo.store, allow_expired=True, now=earlier)


def test_no_store_is_refused(tmp_path):
    with pytest.raises(consentry.NotInitializedError) as e:
        consentry.Store.open(tmp_path)
    assert e.value.code == "not_initialized" and "init" in e.value.hint
    with pytest.raises(consentry.ConsentryError):
        consentry.Store.open(tmp_path / "missing")
    root = tmp_path / "bad-root.cbor"
    root.write_bytes(os.urandom(64))
    with pytest.raises(consentry.VerificationError):
        consentry.Store.init(tmp_path / "s", root)
