#!/usr/bin/env python3
"""The Python baselines of bench/run (run with a venv holding pyarrow and
duckdb; bench/run finds it at ${CONSENTRY_VENV:-target/py-venv}).

``parquet``: the live entries of a snapshot as a tuned Parquet file set, what
a user would publish instead: ``consentry-bench entries`` writes the entries
(TSV ``key seq id policy``, in key order), the prefix entries and the policy
table; this writes

- ``entries.parquet``: ``key`` (int64, the packed ISRC key), ``seq`` (int64),
  ``id`` (string), ``policy`` (int32, an index into the policy table);
  DELTA_BINARY_PACKED for ``key`` and ``seq``, DELTA_BYTE_ARRAY for ``id``, a
  dictionary for ``policy`` (smaller there than DELTA_BINARY_PACKED), zstd
  level 19, row groups of 2^20 rows (pyarrow's default), streamed (memory: a
  row group or two);
- ``policies.parquet``: ``policy`` (int32), ``value`` (the policy as JSON);
- ``prefixes.parquet``: ``scope``, ``seq``, ``id``, ``policy``,

and prints ``name value`` lines: ``parquet_entries``, ``parquet_bytes`` (the
three files), ``parquet_entries_bytes``, ``parquet_s``.

``duckdb-check``: the per-line answers of a file of ISRCs (one per line) from
``consentry export --format parquet``'s entries and prefixes files, as
DuckDB over Parquet answers them: every line left-joined to its own entry,
then its registrant-year and registrant prefix rows (the export's documented
reading; python/tests/test_engines.py checks it equals the library), the
answers written in line order with ``COPY … TO`` a CSV file. Timed from
``duckdb.connect()`` to the file written, a fresh in-memory database each
time, best of ``--repeat``; interpreter start-up and imports are not timed.
Prints ``duckdb_s`` (best), ``duckdb_runs``, ``duckdb_lines`` and
``duckdb_allow`` (counted after the timing).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def parquet(args: argparse.Namespace) -> int:
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    t0 = time.perf_counter()
    opts = dict(compression="zstd", compression_level=19)
    names = ["key", "seq", "id", "policy"]
    schema = pa.schema(
        [("key", pa.int64()), ("seq", pa.int64()), ("id", pa.string()), ("policy", pa.int32())]
    )
    # The policy column holds few distinct numbers: a dictionary beats
    # DELTA_BINARY_PACKED on it (0.44 vs 0.90 MB at 10^6 entries).
    delta = {"key": "DELTA_BINARY_PACKED", "seq": "DELTA_BINARY_PACKED", "id": "DELTA_BYTE_ARRAY"}

    def tsv(src, columns, types):
        return pcsv.open_csv(
            src,
            read_options=pcsv.ReadOptions(column_names=columns, block_size=8 << 20),
            parse_options=pcsv.ParseOptions(delimiter="\t", quote_char=False, double_quote=False),
            convert_options=pcsv.ConvertOptions(column_types=types),
        )

    out = args.out.rstrip("/")
    src = sys.stdin.buffer if args.entries == "-" else args.entries
    group = 1 << 20
    rows = 0
    with pq.ParquetWriter(
        f"{out}/entries.parquet",
        schema,
        use_dictionary=["policy"],
        column_encoding=delta,
        **opts,
    ) as w:
        held, n = [], 0
        for batch in tsv(src, names, {f.name: f.type for f in schema}):
            held.append(batch)
            n += batch.num_rows
            while n >= group:
                t = pa.Table.from_batches(held, schema)
                w.write_table(t.slice(0, group), row_group_size=group)
                rest = t.slice(group)
                held, n = rest.to_batches(), rest.num_rows
                rows += group
        if n:
            w.write_table(pa.Table.from_batches(held, schema), row_group_size=group)
            rows += n
    with open(args.policies, encoding="utf-8") as f:
        lines = [json.loads(line) for line in f if line.strip()]
    value = pa.array([json.dumps(p["value"], separators=(",", ":")) for p in lines], pa.string())
    ids = pa.array([p["policy"] for p in lines], pa.int32())
    pq.write_table(pa.table({"policy": ids, "value": value}), f"{out}/policies.parquet", **opts)
    pschema = pa.schema(
        [("scope", pa.string()), ("seq", pa.int64()), ("id", pa.string()), ("policy", pa.int32())]
    )
    if os.path.getsize(args.prefixes) == 0:
        prefixes = pschema.empty_table()
    else:
        prefixes = tsv(args.prefixes, pschema.names, {f.name: f.type for f in pschema}).read_all()
    pq.write_table(prefixes.cast(pschema), f"{out}/prefixes.parquet", **opts)
    secs = time.perf_counter() - t0

    sizes = {n: os.path.getsize(f"{out}/{n}.parquet") for n in ("entries", "policies", "prefixes")}
    print(f"parquet_entries {rows}")
    print(f"parquet_prefixes {prefixes.num_rows}")
    print(f"parquet_policies {len(lines)}")
    print(f"parquet_entries_bytes {sizes['entries']}")
    print(f"parquet_bytes {sum(sizes.values())}")
    print(f"parquet_s {secs:.2f}")
    return 0


def duckdb_check(args: argparse.Namespace) -> int:
    import duckdb

    q = f"""
    COPY (
        SELECT l.input,
               coalesce(e.decision, y.decision, r.decision, 'unknown') AS decision,
               coalesce(e.reason, y.reason, r.reason, 'no_record') AS reason
        FROM (SELECT row_number() OVER () AS n, input
              FROM read_csv('{args.lines}', header = false, columns = {{'input': 'VARCHAR'}},
                            delim = '\\t', quote = '', escape = '')) l
        LEFT JOIN read_parquet('{args.entries}') e ON e.isrc = l.input
        LEFT JOIN read_parquet('{args.prefixes}') y ON y.prefix = left(l.input, 7)
        LEFT JOIN read_parquet('{args.prefixes}') r ON r.prefix = left(l.input, 5)
        ORDER BY l.n
    ) TO '{args.out}' (FORMAT csv, HEADER false)
    """
    runs = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        con = duckdb.connect()
        if args.threads:
            con.execute(f"SET threads = {int(args.threads)}")
        con.execute(q)
        con.close()
        runs.append(time.perf_counter() - t)
    con = duckdb.connect()
    lines, allow = con.execute(
        f"""SELECT count(*), count(*) FILTER (WHERE column1 = 'allow')
            FROM read_csv('{args.out}', header = false,
                          columns = {{'column0': 'VARCHAR', 'column1': 'VARCHAR', 'column2': 'VARCHAR'}})"""
    ).fetchone()
    con.close()
    print(f"duckdb_s {min(runs):.4f}")
    print(f"duckdb_runs {','.join(f'{r:.4f}' for r in runs)}")
    print(f"duckdb_lines {lines}")
    print(f"duckdb_allow {allow}")
    print(f"duckdb_threads {args.threads or 'default'}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("parquet", help="the tuned Parquet baseline")
    p.add_argument("--entries", required=True, help="TSV key seq id policy, or - for stdin")
    p.add_argument("--policies", required=True)
    p.add_argument("--prefixes", required=True)
    p.add_argument("--out", required=True, help="directory for the three .parquet files")
    d = sub.add_parser("duckdb-check", help="per-line answers through DuckDB over the Parquet export")
    d.add_argument("--lines", required=True)
    d.add_argument("--entries", required=True)
    d.add_argument("--prefixes", required=True)
    d.add_argument("--out", required=True)
    d.add_argument("--repeat", type=int, default=3)
    d.add_argument("--threads", type=int, default=0, help="DuckDB threads (default: DuckDB's own)")
    args = ap.parse_args()
    return parquet(args) if args.cmd == "parquet" else duckdb_check(args)


if __name__ == "__main__":
    sys.exit(main())
