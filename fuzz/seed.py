#!/usr/bin/env python3
"""Write the initial fuzz corpus (fuzz/seeds/<target>/) from the project's real
files: the example snapshot, the test vectors, the import examples, a bundle
and receipts made with the real binaries, and the index seed.

Usage (from the repository root, after `cargo build --bins`):

    python3 fuzz/seed.py [--bin target/debug]

The result is a starting point; `cargo fuzz run` grows it and `cargo fuzz
cmin` minimizes it into fuzz/corpus/<target>/ (see fuzz/README.md). Needs the
`zstd` and `tar` command-line tools.
"""

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fuzz" / "seeds"


def put(target, data, out=OUT):
    d = out / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()).write_bytes(data)


def cbor_head(b, i):
    """(major type, argument, next offset) of the CBOR item at b[i]."""
    ib = b[i]
    major, info = ib >> 5, ib & 0x1F
    if info < 24:
        return major, info, i + 1
    n = {24: 1, 25: 2, 26: 4, 27: 8}[info]
    return major, int.from_bytes(b[i + 1 : i + 1 + n], "big"), i + 1 + n


def envelope_payload(b):
    """The `payload` byte string of an envelope (its first map entry)."""
    major, _, i = cbor_head(b, 0)
    assert major == 5
    major, n, i = cbor_head(b, i)
    assert major == 3 and b[i : i + n] == b"payload"
    major, n, i = cbor_head(b, i + n)
    assert major == 2
    return b[i : i + n]


def site_files(sites):
    for site in sites:
        for p in sorted(site.rglob("*")):
            if p.is_file():
                yield p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=str(ROOT / "target" / "debug"))
    args = ap.parse_args()
    bins = Path(args.bin)
    if OUT.exists():
        shutil.rmtree(OUT)

    sites = [ROOT / "snapshots" / "example"] + sorted(
        (ROOT / "verifier" / "tests" / "vectors").glob("*/site")
    )
    tmpdir = tempfile.TemporaryDirectory()
    tmp = Path(tmpdir.name)
    run = lambda *a: subprocess.run([str(x) for x in a], check=True, capture_output=True)
    pub = bins / "consentry-publish"
    # Two generated registries, version 1 (several ranges) and 2 (a layer):
    # clustered keys (small deltas, derived ids) and uniform keys (key_low).
    generated = []
    for kind in ["clustered", "uniform"]:
        db, site = tmp / f"{kind}.db", tmp / f"{kind}-site"
        run(pub, "init", "--db", db)
        run(pub, "generate", "--db", db, "--records", 300, "--keys", kind,
            "--recorded-at", "2026-11-01T00:00:00Z")
        run(pub, "root", "init", "--keys", ROOT / "keys", "--site", site)
        for churn_at in [None, "2026-11-01T06:00:00Z"]:
            if churn_at:
                run(pub, "generate", "--db", db, "--churn", "0.05", "--recorded-at", churn_at)
            run(pub, "publish", "--db", db, "--keys", ROOT / "keys", "--site", site,
                "--shard-rows", 100)
        generated.append(site)
    sites += generated

    for p in site_files(sites):
        data = p.read_bytes()
        kind = p.parent.name if p.name != "head.cbor" else "head"
        if p.suffix == ".cbor":
            target = {"root": "root", "head": "head", "manifest": "manifest"}[kind]
            put("envelope", data)
            put(target, data)
            try:
                put(target, envelope_payload(data))
            except (AssertionError, KeyError, IndexError):
                pass  # a deliberately broken vector
        elif p.suffix == ".zst":
            put("data_file", b"\0" + data)
            raw = subprocess.run(
                ["zstd", "-dc"], input=data, capture_output=True
            ).stdout
            if raw:
                put({"shard": "shard", "layer": "layer", "prefix": "prefixes"}[kind], raw)

    for name in ["declarations.csv", "declarations.jsonl"]:
        text = (ROOT / "tests" / "data" / name).read_bytes()
        mode = b"\1" if name.endswith(".jsonl") else b"\0"
        put("import_rows", mode + text)
        lines = text.splitlines(keepends=True)
        if name.endswith(".csv"):
            for line in lines[1:4]:
                put("import_rows", mode + lines[0] + line)
        else:
            for line in lines[:3]:
                put("import_rows", mode + line)

    lookups = (ROOT / "tests" / "data" / "lookups.csv").read_text().splitlines()[1:]
    isrcs = sorted({row.split(",")[0] for row in lookups})
    for a, b in zip(isrcs, isrcs[1:] + isrcs[:1]):
        put("isrc", f"{a}\n{b}".encode())
    for s in ["GB-NWR", "gb-nwr-25", "ISRC:GB-NWR-25-00017", "ZZZZZ9999999", "AA0000000000"]:
        put("isrc", s.encode())

    # Bundles: the publisher's own, and GNU tar's with directory entries.
    for i, site in enumerate([sites[0], ROOT / "verifier/tests/vectors/02-valid-delta/site"]):
        out = tmp / f"b{i}.tar"
        run(pub, "bundle", "--site", site, "--out", out)
        put("bundle", out.read_bytes())
    out = tmp / "gnu.tar"
    run("tar", "--format=gnu", "-cf", out, "-C", sites[0], ".")
    put("bundle", out.read_bytes())
    # Receipts: one per answer, and a batch, from stores synced from the
    # example snapshot and from a generated site.
    for n, (site, isrcs) in enumerate([
        (sites[0], ["GBNWR2500017", "USQZ92400123", "FRAB10012345", "not-an-isrc"]),
        (generated[0], ["GBNWR2500017", "USQZ92400123"]),
    ]):
        store = tmp / f"store{n}"
        cli = [bins / "consentry", "--store", store, "--now", "2026-11-02T00:00:00Z", "--quiet"]
        run(*cli, "init", "--root", site / "root" / "1.cbor")
        run(*cli, "sync", site)
        rdir = tmp / f"receipts{n}"
        rdir.mkdir()
        run(*cli, "check", *isrcs, "--use", "train-ai", "--receipt", rdir)
        for p in sorted(rdir.iterdir()):
            put("receipt", p.read_bytes())
        batch = tmp / f"batch{n}.receipt.cbor"
        run(*cli, "check", *isrcs, "--use", "all", "--receipt", batch)
        put("receipt", batch.read_bytes())
    tmpdir.cleanup()

    # The index seed comes from the library (the fixed state of the target).
    idx = OUT / "index"
    idx.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["cargo", "run", "-q", "-p", "consentry", "--example", "index_seed", "--",
         str(idx / "seed.idx")],
        cwd=ROOT, check=True,
    )
    for t in sorted(OUT.iterdir()):
        print(f"{t.name}: {len(list(t.iterdir()))} files")


if __name__ == "__main__":
    sys.exit(main())
