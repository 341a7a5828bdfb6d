"""Could the Dask engine write with lsdb's own writer? The same tiles, compared file by file.

Issue 24 asks the Dask side to use lsdb/hats' writers where they produce the same files. This
classifies the bundled DR5 quadrant once (``varsky classify --engine dask``, fixed
``SOURCE_DATE_EPOCH``), opens the collection with ``lsdb.open_catalog`` and writes it again
with lsdb's collection writer (``Catalog.write_catalog(as_collection=True)``), which keeps the
partitioning. For every file of the two catalogs it prints whether the bytes, the rows, the
schema and the row groups agree, and the seconds each writer took (ours: the job's "write HATS").

    .venv/bin/python bench/lsdb_writer.py
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "sample"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def _files(catalog: Path) -> dict[str, Path]:
    return {
        p.relative_to(catalog).as_posix(): p
        for p in sorted(catalog.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def _describe(path: Path) -> tuple:
    if path.suffix != ".parquet" and not path.name.startswith("_"):
        return (path.stat().st_size,)
    meta = pq.read_metadata(path)
    return meta.num_rows, meta.num_row_groups, meta.schema.to_arrow_schema().remove_metadata()


def main() -> int:
    """Classify, rewrite with lsdb, compare; exit 0 (this is a measurement, not a check)."""
    import lsdb

    with tempfile.TemporaryDirectory(prefix="varsky_lsdb_writer_") as tmp:
        ours = Path(tmp) / "ours"
        env = dict(os.environ, SOURCE_DATE_EPOCH="1790000000", TF_CPP_MIN_LOG_LEVEL="2")
        t = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "jobs.cli", "classify", "--engine", "dask", "--input",
             str(SAMPLE), "--output", str(ours)],
            cwd=REPO, env=env, capture_output=True, text=True,
        )  # fmt: skip
        if done.returncode:
            print(done.stdout, done.stderr)
            return 1
        print(f"varsky classify --engine dask: {time.perf_counter() - t:.1f} s")
        print("\n".join(line for line in done.stdout.splitlines() if "write" in line))

        name = next(p.name for p in ours.iterdir() if (p / "dataset").is_dir())
        catalog = lsdb.open_catalog(ours)
        theirs = Path(tmp) / "lsdb"
        t = time.perf_counter()
        catalog.write_catalog(theirs, catalog_name=name, as_collection=True, progress_bar=False)
        print(f"lsdb Catalog.write_catalog(as_collection=True): {time.perf_counter() - t:.1f} s")

        a, b = _files(ours / name), _files(theirs / name)
        same = differ = 0
        for rel in sorted(set(a) | set(b)):
            if rel not in a or rel not in b:
                print(f"  only in {'ours' if rel in a else 'lsdb'}: {rel}")
                differ += 1
                continue
            if _sha(a[rel]) == _sha(b[rel]):
                same += 1
                continue
            differ += 1
            da, db = _describe(a[rel]), _describe(b[rel])
            what = []
            if len(da) == 3:
                if da[0] != db[0]:
                    what.append(f"rows {da[0]} vs {db[0]}")
                if da[1] != db[1]:
                    what.append(f"row groups {da[1]} vs {db[1]}")
                if not da[2].equals(db[2]):
                    fa, fb = set(map(str, da[2])), set(map(str, db[2]))
                    what.append(f"schema: ours {sorted(fa - fb)}, lsdb's {sorted(fb - fa)}")
            print(f"  differs: {rel} ({', '.join(what) or 'bytes only'})")
        print(f"catalog {name}: {same} files byte-identical, {differ} differ or are missing")
    return 0


if __name__ == "__main__":
    sys.exit(main())
