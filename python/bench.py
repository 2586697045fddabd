#!/usr/bin/env python3
"""Python-side benchmark: deciding N ISRCs (default 10^6) against a store of
R records (default 10^6), four ways, on the same keys:

1. ``Store.check_arrow`` on a pyarrow string array (the package; unsorted
   keys, decided with ``Reader::decide_inputs``: parse, sort, dedupe,
   ``decide_batch``) on its first call and warm, ``Store.allowed_mask``,
   ``Store.decide`` on a Python list, and the same ``decide_inputs`` called
   from Rust (``consentry-bench decide-inputs``) to measure what Python adds;
2. ``consentry check --input FILE`` (the CLI batch path, one answer per
   line written to /dev/null);
3. a Python loop of point queries over ``sqlite3`` (a table isrc -> decision
   holding the same exact entries: no lookup rule, no prefixes, no
   verification: the naive baseline);
4. DuckDB: a semi join of the keys against the allowed entries of that table
   (in memory, same caveats).

Run with the venv of python/run-tests and release binaries::

    cargo build --release -p consentry -p consentry-publish -p consentry-bench
    target/py-venv/bin/python python/bench.py [--records N] [--keys N]

It prints one ``name value`` line per figure.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--bin-dir", default=str(REPO / "target" / "release"))
    ap.add_argument("--work", default=None, help="work directory (default: a temporary one, removed)")
    ap.add_argument(
        "--markdown",
        default=None,
        metavar="FILE",
        help="also write the figures as a Python section of FILE (BENCHMARKS.md), one per --records size, between its python-bench markers",
    )
    args = ap.parse_args()
    if args.markdown:
        lines: List[str] = []
        real = sys.stdout

        class Tee:
            def write(self, text: str) -> int:
                lines.append(text)
                return real.write(text)

            def flush(self) -> None:
                real.flush()

        sys.stdout = Tee()  # type: ignore[assignment]
        try:
            code = run(args)
        finally:
            sys.stdout = real
        if code == 0:
            write_markdown(Path(args.markdown), "".join(lines), args)
        return code
    return run(args)


def run(args: argparse.Namespace) -> int:

    import pyarrow as pa

    import consentry

    bins = Path(args.bin_dir)
    for b in ("consentry", "consentry-publish", "consentry-bench"):
        if not (bins / b).exists():
            print(f"bench.py: {bins / b} missing: cargo build --release -p consentry -p consentry-publish -p consentry-bench", file=sys.stderr)
            return 2
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="consentry-pybench-"))
    work.mkdir(parents=True, exist_ok=True)

    def sh(*cmd: str, out=None) -> float:
        t = time.perf_counter()
        subprocess.run(cmd, cwd=work, check=True, stdout=out or subprocess.DEVNULL, stderr=subprocess.PIPE)
        return time.perf_counter() - t

    try:
        t0 = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        pub, ver, helper = str(bins / "consentry-publish"), str(bins / "consentry"), str(bins / "consentry-bench")
        keys_dir = str(REPO / "keys")
        sign = ["--allow-short-expiry", "--insecure-test-keys"]
        if not (work / "store" / "head.cbor").exists():
            sh(pub, "init", "--db", "reg.db")
            g = sh(pub, "generate", "--db", "reg.db", "--records", str(args.records), "--seed", "1", "--recorded-at", t0)
            print(f"generate_s {g:.1f}")
            sh(pub, "root", "init", "--keys", keys_dir, "--site", "site", "--now", t0, "--expires-in", "3650d", *sign)
            p = sh(pub, "publish", "--db", "reg.db", "--keys", keys_dir, "--site", "site", "--now", "registry", *sign)
            print(f"publish_s {p:.1f}")
            sh(ver, "--store", "store", "init", "--root", "site/root/1.cbor")
            sh(ver, "--quiet", "--store", "store", "sync", "site")
            sh(helper, "export", "--db", "reg.db", "--sqlite", "export.sqlite", "--jsonl", "slice.jsonl", "--site", "site", "--slice", "1000")
            sh(helper, "keys", "--sqlite", "export.sqlite", "--n", str(args.keys), "--hits", "0.5", "--out", "keys.txt")
            sh(helper, "keys", "--sqlite", "export.sqlite", "--n", str(args.keys), "--hits", "1.0", "--seed", "2", "--out", "present.txt")
        keys = [line.strip() for line in (work / "keys.txt").read_text().splitlines() if line.strip()]
        random.Random(7).shuffle(keys)
        (work / "keys-shuffled.txt").write_text("\n".join(keys) + "\n")
        n = len(keys)
        print(f"records {args.records}")
        print(f"keys {n}")

        t = time.perf_counter()
        store = consentry.Store.open(work / "store")
        print(f"py_open_ms {(time.perf_counter() - t) * 1e3:.2f}")
        arr = pa.array(keys, type=pa.string())
        # The first call after open reads and verifies (hashes) every index
        # chunk it touches; later calls answer from the verified chunks the
        # store keeps (a pipeline deciding batch after batch).
        t = time.perf_counter()
        out = store.check_arrow(arr)
        first = time.perf_counter() - t
        best = None
        for _ in range(3):
            t = time.perf_counter()
            out = store.check_arrow(arr)
            s = time.perf_counter() - t
            best = s if best is None else min(best, s)
        allowed = out["decision"].to_pylist().count("allow")
        print(f"check_arrow_first_s {first:.3f}")
        print(f"check_arrow_first_per_s {n / first:.0f}")
        print(f"check_arrow_s {best:.3f}")
        print(f"check_arrow_per_s {n / best:.0f}")
        print(f"allowed {allowed}")
        best = None
        for _ in range(3):
            t = time.perf_counter()
            mask = store.allowed_mask(arr)
            s = time.perf_counter() - t
            best = s if best is None else min(best, s)
        if mask.true_count != allowed:
            print(f"bench.py: allowed_mask allowed {mask.true_count}, check_arrow {allowed}", file=sys.stderr)
            return 1
        print(f"allowed_mask_per_s {n / best:.0f}")
        # The Rust batch path on the same strings in the same order, in a
        # process of its own: what the Python layer adds.
        now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        rust = subprocess.run(
            [helper, "decide-inputs", "--store", "store", "--now", now, "--keys", "keys-shuffled.txt"],
            cwd=work, check=True, capture_output=True, text=True,
        ).stdout
        figures = dict(line.split(" ", 1) for line in rust.splitlines() if " " in line)
        if int(figures.get("rust_decide_inputs_allow", -1)) != allowed:
            print(f"bench.py: Reader::decide_inputs allowed {figures.get('rust_decide_inputs_allow')}, check_arrow {allowed}", file=sys.stderr)
            return 1
        for k in ("rust_decide_inputs_first_per_s", "rust_decide_inputs_per_s"):
            print(f"{k} {figures[k]}")
        t = time.perf_counter()
        decided = store.decide(keys)
        s = time.perf_counter() - t
        assert [d for d, _ in decided] == out["decision"].to_pylist()
        print(f"decide_list_per_s {n / s:.0f}")
        sample = keys[: min(n, 100_000)]
        t = time.perf_counter()
        for k in sample:
            store.is_allowed(k)
        s = time.perf_counter() - t
        print(f"is_allowed_loop_per_s {len(sample) / s:.0f}")

        with open(os.devnull, "w") as null:
            s = sh(ver, "--quiet", "--store", "store", "check", "--input", "keys-shuffled.txt", out=null)
        print(f"cli_check_s {s:.3f}")
        print(f"cli_check_per_s {n / s:.0f}")

        # The naive baselines: the same exact entries, isrc -> decision.
        present = sorted({line.strip() for line in (work / "present.txt").read_text().splitlines() if line.strip()})
        pdec = store.check_arrow(pa.array(present, type=pa.string()))["decision"].to_pylist()
        db = work / "py.sqlite"
        if db.exists():
            db.unlink()
        con = sqlite3.connect(db)
        con.execute("CREATE TABLE entries (isrc TEXT PRIMARY KEY, decision TEXT NOT NULL) WITHOUT ROWID")
        con.executemany("INSERT INTO entries VALUES (?, ?)", zip(present, pdec))
        con.commit()
        cur = con.cursor()
        t = time.perf_counter()
        ok = 0
        for k in keys:
            row = cur.execute("SELECT decision FROM entries WHERE isrc = ?", (k,)).fetchone()
            ok += row is not None and row[0] == "allow"
        s = time.perf_counter() - t
        con.close()
        print(f"sqlite_py_loop_s {s:.3f}")
        print(f"sqlite_py_loop_per_s {n / s:.0f}")
        print(f"sqlite_allowed {ok} (exact entries only: no prefixes, no rule)")
        try:
            import duckdb
        except ImportError:
            print("duckdb_join_per_s n/a (duckdb not installed)")
        else:
            dcon = duckdb.connect()
            q = pa.table({"isrc": arr})
            e = pa.table({"isrc": pa.array(present, type=pa.string()), "decision": pa.array(pdec, type=pa.string())})
            dcon.register("q", q)
            dcon.register("e", e)
            t = time.perf_counter()
            got = dcon.execute(
                "SELECT count(*) FROM q SEMI JOIN (SELECT isrc FROM e WHERE decision = 'allow') a ON a.isrc = q.isrc"
            ).fetchone()[0]
            s = time.perf_counter() - t
            print(f"duckdb_join_s {s:.3f}")
            print(f"duckdb_join_per_s {n / s:.0f}")
            print(f"duckdb_allowed {got} (exact entries only: no prefixes, no rule)")
            # The real alternative: `consentry export` to Parquet, then an
            # anti-join of the catalogue against it in DuckDB, with the
            # prefix rule (README): the same allowed set as check_arrow.
            for f in ("entries.parquet", "prefixes.parquet"):
                (work / "export" / f).unlink(missing_ok=True)
            x = sh(ver, "--quiet", "--store", "store", "export", "--format", "parquet", "--out", "export")
            print(f"export_parquet_s {x:.3f}")
            dcon.execute(f"CREATE VIEW export_entries AS SELECT * FROM read_parquet('{work / 'export' / 'entries.parquet'}')")
            dcon.execute(f"CREATE VIEW export_prefixes AS SELECT * FROM read_parquet('{work / 'export' / 'prefixes.parquet'}')")
            t = time.perf_counter()
            got = dcon.execute(
                "SELECT count(*) FROM q LEFT JOIN export_entries x ON x.isrc = q.isrc "
                "LEFT JOIN export_prefixes p7 ON p7.prefix = substr(q.isrc, 1, 7) "
                "LEFT JOIN export_prefixes p5 ON p5.prefix = substr(q.isrc, 1, 5) "
                "WHERE coalesce(x.decision, p7.decision, p5.decision, 'unknown') = 'allow'"
            ).fetchone()[0]
            s = time.perf_counter() - t
            print(f"duckdb_export_join_s {s:.3f}")
            print(f"duckdb_export_join_per_s {n / s:.0f}")
            print(f"duckdb_export_allowed {got} (check_arrow: {allowed})")
            if got != allowed:
                print(f"bench.py: DuckDB on the export allowed {got}, check_arrow {allowed}", file=sys.stderr)
                return 1
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def write_markdown(path: Path, out: str, args: argparse.Namespace) -> None:
    """Replace the text between the python-bench markers of `path` for this
    store size (one section per --records: 10^6 and 10^7 side by side)."""
    fig = {}
    for line in out.splitlines():
        k, _, v = line.partition(" ")
        fig[k] = v.split(" ")[0]

    def rate(k: str) -> str:
        v = fig.get(k)
        return f"{float(v) / 1e6:.2f} M/s" if v and v != "n/a" else "n/a"

    def ratio(a: str, b: str) -> str:
        try:
            return f"{float(fig[a]) / float(fig[b]):.3g}×"
        except (KeyError, ValueError, ZeroDivisionError):
            return "n/a"

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    cmd = f"target/py-venv/bin/python python/bench.py --records {args.records} --keys {args.keys} --markdown {path.name}"
    def overhead(rust: str, py: str) -> str:
        try:
            return f"{(float(fig[rust]) / float(fig[py]) - 1) * 100:+.0f} %"
        except (KeyError, ValueError, ZeroDivisionError):
            return "n/a"

    rows = [
        ("`Store.check_arrow` (pyarrow strings, GIL released), warm: index chunks verified by an earlier call", rate("check_arrow_per_s"), "1.0×"),
        ("`Store.check_arrow`, first call after open (verifies every chunk it reads)", rate("check_arrow_first_per_s"), ratio("check_arrow_first_per_s", "check_arrow_per_s")),
        ("`Store.allowed_mask` (a boolean array only), warm", rate("allowed_mask_per_s"), ratio("allowed_mask_per_s", "check_arrow_per_s")),
        ("Rust `Reader::decide_inputs` on the same strings (`consentry-bench decide-inputs`), warm", rate("rust_decide_inputs_per_s"), ratio("rust_decide_inputs_per_s", "check_arrow_per_s")),
        ("Rust `Reader::decide_inputs`, first call after open", rate("rust_decide_inputs_first_per_s"), ratio("rust_decide_inputs_first_per_s", "check_arrow_per_s")),
        ("`Store.decide` on a Python list", rate("decide_list_per_s"), ratio("decide_list_per_s", "check_arrow_per_s")),
        ("`consentry check --input` (CLI batch, one process)", rate("cli_check_per_s"), ratio("cli_check_per_s", "check_arrow_per_s")),
        ("Python `sqlite3` point-query loop (exact entries only, no rule)", rate("sqlite_py_loop_per_s"), ratio("sqlite_py_loop_per_s", "check_arrow_per_s")),
        ("DuckDB semi-join, in-memory table (exact entries only, no rule)", rate("duckdb_join_per_s"), ratio("duckdb_join_per_s", "check_arrow_per_s")),
        ("DuckDB join against `consentry export` Parquet, with the prefix rule", rate("duckdb_export_join_per_s"), ratio("duckdb_export_join_per_s", "check_arrow_per_s")),
        ("`Store.is_allowed` one call per ISRC", rate("is_allowed_loop_per_s"), ratio("is_allowed_loop_per_s", "check_arrow_per_s")),
    ]
    body = [
        f"<!-- python-bench {args.records}: written by python/bench.py --markdown; do not edit by hand -->",
        f"## Python: deciding a catalogue from Python and the engines ({args.records:,} records)",
        "",
        f"Command: `{cmd}` (release binaries and a release build of the package: "
        "`cargo build --release -p consentry -p consentry-publish -p consentry-bench` and "
        "`(cd python && maturin develop --release)` in the venv of `python/run-tests`). "
        f"Commit {commit}, load average {load} at the end; one process, keys shuffled, half of them present.",
        "",
        f"{fig.get('records', '?')} records, {fig.get('keys', '?')} ISRCs asked; `check_arrow` best of 3: "
        f"{fig.get('check_arrow_s', '?')} s; `consentry export --format parquet`: {fig.get('export_parquet_s', '?')} s; "
        f"allowed {fig.get('allowed', '?')} (DuckDB on the export: {fig.get('duckdb_export_allowed', '?')}).",
        "",
        "| path | ISRCs/s | ÷ check_arrow |",
        "|---|---|---|",
    ] + [f"| {a} | {b} | {c} |" for a, b, c in rows] + [
        "",
        f"check_arrow ÷ Python sqlite3 loop: {ratio('check_arrow_per_s', 'sqlite_py_loop_per_s')} (target ≥ 50×); "
        f"check_arrow: {rate('check_arrow_per_s')} warm, {rate('check_arrow_first_per_s')} on the first call, "
        "one thread (target ≥ 5 M/s per core); "
        f"Python's overhead over the Rust batch path: {overhead('rust_decide_inputs_per_s', 'check_arrow_per_s')} warm, "
        f"{overhead('rust_decide_inputs_first_per_s', 'check_arrow_first_per_s')} first call (target ≤ 20 %).",
        f"<!-- /python-bench {args.records} -->",
    ]
    text = path.read_text() if path.exists() else ""
    start, end = f"<!-- python-bench {args.records}:", f"<!-- /python-bench {args.records} -->"
    if start in text and end in text:
        a = text.index(start)
        b = text.index(end) + len(end)
        text = text[:a] + "\n".join(body) + text[b:]
    else:
        text = text.rstrip("\n") + "\n\n" + "\n".join(body) + "\n"
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
