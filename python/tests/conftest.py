"""Fixtures: a registry published and synced by the REAL binaries
(`consentry-publish`, `consentry`), as tests/src/lib.rs `publish_example`
and the e2e fixture do: the example declarations (tests/data), the INSECURE
test keys (keys/), a site, a store pinned to its root and synced from it.

The snapshot is signed one hour before the wall clock (its head lives 72 h),
so `Store.open(path)` with the system clock verifies it, as a user's would.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import pytest

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
KEYS = REPO / "keys"


def bin_dir() -> Path:
    """Where the binaries are: $CONSENTRY_BIN_DIR, else target/debug (built
    here once per session unless CONSENTRY_TESTS_NO_BUILD is set)."""
    d = os.environ.get("CONSENTRY_BIN_DIR")
    return Path(d) if d else REPO / "target" / "debug"


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    def ok(self) -> "Run":
        assert self.code == 0, f"exit {self.code}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"
        return self


def run(name: str, args: Sequence[str], cwd: Path) -> Run:
    env = {k: v for k, v in os.environ.items() if k not in ("CONSENTRY_STORE", "CONSENTRY_PUBLISH_FAILPOINT")}
    env["NO_COLOR"] = "1"
    p = subprocess.run(
        [str(bin_dir() / name), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    return Run(p.returncode, p.stdout, p.stderr)


def rfc3339(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Demo:
    """A published site and a synced store."""

    dir: Path
    site: Path
    store: Path
    signed_at: dt.datetime

    def cli(self, *args: str, store: Optional[Path] = None) -> Run:
        return run("consentry", ["--store", str(store or self.store), *args], self.dir)

    def cli_json(self, *args: str, store: Optional[Path] = None) -> List[dict]:
        out = self.cli(*args, store=store).ok().stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def copy_store(self, dest: Path) -> Path:
        shutil.copytree(self.store, dest, symlinks=True)
        return dest


def publish_site(dir: Path, signed_at: dt.datetime) -> Path:
    """init → import tests/data/declarations.csv → root init → publish, with
    the INSECURE keys (the flags test fixtures need, as tests/src/lib.rs
    `test_args` adds them)."""
    t0 = rfc3339(signed_at)
    unsafe_flags = ["--allow-short-expiry", "--insecure-test-keys"]
    run("consentry-publish", ["init", "--db", "reg.db"], dir).ok()
    run(
        "consentry-publish",
        ["import", "--db", "reg.db", str(DATA / "declarations.csv"), "--recorded-at", t0],
        dir,
    ).ok()
    run(
        "consentry-publish",
        ["root", "init", "--keys", str(KEYS), "--site", "site", "--now", t0, "--expires-in", "3650d", *unsafe_flags],
        dir,
    ).ok()
    run(
        "consentry-publish",
        ["publish", "--db", "reg.db", "--keys", str(KEYS), "--site", "site", "--now", "registry", *unsafe_flags],
        dir,
    ).ok()
    return dir / "site"


@pytest.fixture(scope="session")
def binaries() -> Path:
    d = bin_dir()
    missing = any(not (d / b).exists() for b in ("consentry", "consentry-publish"))
    if missing or not os.environ.get("CONSENTRY_TESTS_NO_BUILD"):
        subprocess.run(
            ["cargo", "build", "--quiet", "-j2", "--bins", "-p", "consentry", "-p", "consentry-publish"],
            cwd=REPO,
            check=True,
        )
    return d


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory, binaries: Path) -> Demo:
    d = tmp_path_factory.mktemp("demo")
    signed_at = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(hours=1)
    site = publish_site(d, signed_at)
    run("consentry", ["--store", "store", "init", "--root", "site/root/1.cbor"], d).ok()
    run("consentry", ["--store", "store", "sync", "site"], d).ok()
    return Demo(dir=d, site=site, store=d / "store", signed_at=signed_at)


@pytest.fixture(scope="session")
def golden() -> List[Dict[str, str]]:
    with open(DATA / "lookups.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="session")
def store(demo: Demo):
    import consentry

    return consentry.Store.open(demo.store)


def catalogue(golden: List[Dict[str, str]]) -> List[Optional[str]]:
    """A catalogue to filter: every golden ISRC (as spelled there), ISRCs
    under the declared prefixes and outside them, repeats, spellings,
    strings that are not ISRCs, and missing values."""
    items: List[Optional[str]] = [r["isrc"] for r in golden]
    for reg in ("GBNWR25", "GBNWR24", "USQZ924", "USQZ923", "DEXY123", "NLA1B25", "JPAB025", "FRAB100", "ZZZZZ99"):
        for n in range(0, 40, 3):
            items.append(f"{reg}{n:05d}")
    items += ["gb-nwr-25-00017", " ISRC USQZ92400500 ", "GB-NWR-25", "not an isrc", "", "GBNWR2500017\u00a0", None, None]
    items += items[:20]
    return items
