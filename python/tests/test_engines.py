"""The package inside data engines: Hugging Face `datasets`, Spark (local
mode, `mapInArrow` on executors), DuckDB over `consentry export --format
parquet`. Each result must equal the allowed set the CLI gives."""

from __future__ import annotations

import json
import shutil
import sys
from typing import List, Optional, Set

import pytest

import consentry
from conftest import Demo, catalogue


def cli_allowed(demo: Demo, items: List[Optional[str]], use: str = "train-ai") -> Set[str]:
    """The inputs `consentry check --input … --json` answers allow (as given)."""
    strings = [s for s in items if isinstance(s, str) and s.strip()]
    f = demo.dir / f"engine-questions-{use}.jsonl"
    f.write_text("".join(json.dumps({"isrc": s}) + "\n" for s in strings))
    answers = demo.cli_json("check", "--input", str(f), "--json", "--use", use)
    assert len(answers) == len(strings)
    return {s for s, a in zip(strings, answers) if a["decision"] == "allow"}


def test_hf_datasets_filter_keeps_exactly_the_allowed_rows(store, demo: Demo, golden, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    datasets = pytest.importorskip("datasets")
    items = catalogue(golden)
    ds = datasets.Dataset.from_dict({"isrc": items, "title": [f"track {i}" for i in range(len(items))]})
    want = cli_allowed(demo, items)
    assert want

    # Plain Python lists per batch.
    kept = ds.filter(lambda b: store.allowed_list(b["isrc"]), batched=True, batch_size=16)
    assert set(kept["isrc"]) == want
    assert kept.num_rows == sum(1 for s in items if s in want)
    assert kept["title"] == [f"track {i}" for i, s in enumerate(items) if s in want]
    # Arrow batches, decided in place.
    arrow = ds.with_format("arrow").filter(
        lambda t: store.allowed_mask(t["isrc"]), batched=True, batch_size=32
    )
    assert arrow.with_format(None)["isrc"] == kept["isrc"]


def test_spark_map_in_arrow_filters_on_executors(demo: Demo, golden, monkeypatch):
    pytest.importorskip("pyspark")
    if shutil.which("java") is None:
        pytest.skip("Spark needs java (python/run-tests installs it when root)")
    from pyspark.sql import SparkSession

    monkeypatch.setenv("SPARK_LOCAL_IP", "127.0.0.1")
    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)
    monkeypatch.setenv("PYSPARK_DRIVER_PYTHON", sys.executable)
    items = catalogue(golden)
    want = cli_allowed(demo, items)
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("consentry-test")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .getOrCreate()
    )
    try:
        df = spark.createDataFrame([(i, s) for i, s in enumerate(items)], "id long, isrc string").repartition(3)
        path = str(demo.store)

        def allowed(batches):
            import consentry as c  # on the executor

            store = c.Store.open(path)  # the store travels as a path; verified here
            for b in batches:
                yield b.filter(store.allowed_mask(b.column("isrc")))

        out = df.mapInArrow(allowed, df.schema).collect()
        assert {r["isrc"] for r in out} == want
        assert sorted(r["id"] for r in out) == [i for i, s in enumerate(items) if s in want]
        # A pickled Store reopens (and re-verifies) on the executor too.
        store = consentry.Store.open(demo.store)

        def by_store(batches):
            for b in batches:
                yield b.filter(store.allowed_mask(b.column("isrc"), use="train-genai"))

        out = df.mapInArrow(by_store, df.schema).collect()
        assert {r["isrc"] for r in out} == cli_allowed(demo, items, use="train-genai")
    finally:
        spark.stop()


def export_available(demo: Demo) -> bool:
    return demo.cli("export", "--help").code == 0


def test_duckdb_anti_join_against_the_parquet_export(store, demo: Demo, golden, tmp_path):
    duckdb = pytest.importorskip("duckdb")
    if not export_available(demo):
        pytest.skip("`consentry export` is not in this build yet (branch issue15-export)")
    out = tmp_path / "export"
    demo.cli("export", "--format", "parquet", "--out", str(out)).ok()
    entries, prefixes = out / "entries.parquet", out / "prefixes.parquet"
    assert entries.exists() and prefixes.exists()
    con = duckdb.connect()
    cols = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet('{entries}')").fetchall()}
    assert {"isrc", "decision", "reason"} <= cols, cols
    pcols = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet('{prefixes}')").fetchall()}
    assert {"prefix", "decision", "reason"} <= pcols, pcols
    items = [s for s in catalogue(golden) if isinstance(s, str)]
    normal = {}
    for s in items:
        try:
            normal[s] = consentry.normalize_isrc(s)
        except consentry.InvalidIsrcError:
            pass
    con.execute("CREATE TABLE catalogue (input VARCHAR, isrc VARCHAR)")
    con.executemany("INSERT INTO catalogue VALUES (?, ?)", list(normal.items()))
    # check's answer per ISRC: its own entries row, else the registrant-year
    # prefix row, else the registrant row, else unknown / no_record (the
    # export's documented reading); the catalogue anti-joined against every
    # answer that is not allow is the training set.
    con.execute(
        f"""
        CREATE VIEW answers AS
        SELECT c.input, c.isrc,
               coalesce(e.decision, y.decision, r.decision, 'unknown') AS decision,
               coalesce(e.reason, y.reason, r.reason, 'no_record') AS reason
        FROM catalogue c
        LEFT JOIN read_parquet('{entries}') e ON e.isrc = c.isrc
        LEFT JOIN read_parquet('{prefixes}') y ON y.prefix = left(c.isrc, 7)
        LEFT JOIN read_parquet('{prefixes}') r ON r.prefix = left(c.isrc, 5)
        """
    )
    rows = con.execute(
        """
        SELECT c.input FROM catalogue c
        ANTI JOIN (SELECT isrc FROM answers WHERE decision <> 'allow') n ON n.isrc = c.isrc
        """
    ).fetchall()
    decided = dict(zip(normal.values(), store.decide(list(normal.values()))))
    for isrc, decision, reason in con.execute("SELECT isrc, decision, reason FROM answers").fetchall():
        assert (decision, reason) == decided[isrc], isrc
    assert {r[0] for r in rows} == cli_allowed(demo, items)


def test_duckdb_and_pandas_as_the_readme_shows(store, demo: Demo, golden):
    duckdb = pytest.importorskip("duckdb")
    pd = pytest.importorskip("pandas")
    items = [s for s in catalogue(golden) if s is not None]
    want = cli_allowed(demo, items)
    con = duckdb.connect()
    con.execute("CREATE TABLE catalogue (isrc VARCHAR, title VARCHAR)")
    con.executemany("INSERT INTO catalogue VALUES (?, ?)", [(s, f"t{i}") for i, s in enumerate(items)])
    rel = con.sql("SELECT isrc FROM catalogue")
    col = (rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.arrow())["isrc"]
    answers = store.check_arrow(col)  # noqa: F841  (queried by name below)
    got = {r[0] for r in con.sql("SELECT isrc FROM answers WHERE decision = 'allow'").fetchall()}
    assert got == want
    df = pd.DataFrame({"isrc": items, "n": range(len(items))})
    kept = df[store.allowed_mask(df["isrc"]).to_numpy(zero_copy_only=False)]
    assert set(kept["isrc"]) == want and len(kept) == sum(1 for s in items if s in want)
