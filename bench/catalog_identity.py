"""Are the catalogs this tree writes byte-identical to another commit's? On Spark and on Dask.

For a refactor that must not change a single output byte (issue 24). Two inputs:

- the demo's input, the bundled ZTF DR5 quadrant (data/sample, with the exposure-level cut);
- a simulated sky (``varsky simulate``, 300 objects, made once) through each code's ``varsky
  ingest`` (whose Parquet files are compared too), classified with small tiles
  (``--max-rows-per-pixel 60``) so that a margin cache is written too;

then runs ``varsky classify`` on each, with ``--engine spark`` and ``--engine dask``, for this
tree and for ``--baseline REF`` (a git worktree, same interpreter, same run), all with one
``SOURCE_DATE_EPOCH``. Prints the sha256 of every data file (Parquet tiles, ``_metadata``,
``_common_metadata``; the rejects by their rows) and whether each code, engine and input agree.
Exit 1 when a file differs.

    .venv/bin/python bench/catalog_identity.py --baseline dba4047 [--code HEAD]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "sample"
WHEN = "1790000000"


@contextlib.contextmanager
def worktree_of(commit: str, parent: Path):
    """A detached git worktree of ``commit`` under ``parent`` (yields its path), removed after."""
    path = parent / f"worktree_{commit}"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), commit],
                   check=True, capture_output=True)  # fmt: skip
    try:
        yield path
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)],
                       check=False)  # fmt: skip


def varsky(code: Path, *argv: str) -> None:
    """``varsky ARGV`` run with the code of ``code`` (a checkout), failing loudly."""
    env = dict(os.environ, PYTHONPATH=str(code), SOURCE_DATE_EPOCH=WHEN, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run([sys.executable, "-m", "jobs.cli", *argv], cwd=code, env=env,
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode:
        raise RuntimeError(f"varsky {' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}")


def data_files(out: Path) -> dict[str, str]:
    """sha256 of every Parquet data file of a collection, by relative path, and of its rejects.

    The rejects are one file whose name Spark draws at random, so they are hashed by content:
    their rows, sorted by (source_file, source_row).
    """
    hashes = {}
    for f in sorted(out.rglob("*")):
        if f.is_file() and (f.suffix == ".parquet" or f.name.startswith("_")):
            hashes[str(f.relative_to(out))] = hashlib.sha256(f.read_bytes()).hexdigest()
    rejects = pq.read_table(str(out) + "_rejects")
    rows = rejects.sort_by([("source_file", "ascending"), ("source_row", "ascending")])
    hashes["rejects (rows)"] = hashlib.sha256(repr(rows.to_pylist()).encode()).hexdigest()
    return hashes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="the commit to compare with")
    parser.add_argument("--code", help="a commit to test instead of this working tree")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name, contextlib.ExitStack() as stack:
        tmp = Path(tmp_name)
        codes = {args.code or "this tree": REPO}
        if args.code:
            codes[args.code] = stack.enter_context(worktree_of(args.code, tmp))
        codes[args.baseline] = stack.enter_context(worktree_of(args.baseline, tmp))
        sky = tmp / "sky"
        varsky(REPO, "simulate", "--output", str(sky), "--objects", "300", "--seed", "11",
               "--ccds-per-side", "1", "--survey-days", "300", "--workers", "2")  # fmt: skip
        extra = {"dr5 sample": [], "simulated sky": ["--max-rows-per-pixel", "60"]}
        hashes: dict[tuple[str, str, str], dict[str, str]] = {}
        ingested: dict[str, dict[str, str]] = {}
        for label, code in codes.items():
            # Each code ingests the sky itself, so the light-curve catalog is compared too; at one
            # path, which the classified rows and rejects name.
            lightcurves = tmp / "lightcurves"
            varsky(code, "ingest", "--format", "psfcat", "--input", str(sky / "psfcat"),
                   "--reference", str(sky / "refpsfcat"), "--output", str(lightcurves),
                   "--overwrite")  # fmt: skip
            ingested[label] = {
                str(f.relative_to(lightcurves)): hashlib.sha256(f.read_bytes()).hexdigest()
                for f in sorted(lightcurves.rglob("*"))
                if f.is_file() and (f.suffix == ".parquet" or f.name.startswith("_"))
            }
            inputs = {"dr5 sample": [str(SAMPLE)], "simulated sky": [str(lightcurves)]}
            for name, paths in inputs.items():
                for engine in ("spark", "dask"):
                    out = tmp / "out" / f"{len(hashes)}" / "classified"
                    varsky(code, "classify", "--input", *paths, "--output", str(out),
                           "--engine", engine, *extra[name])  # fmt: skip
                    hashes[label, name, engine] = data_files(out)
                    print(f"{label:>12} {name:<14} {engine:<6} {len(hashes[label, name, engine])}"
                          " data files", flush=True)  # fmt: skip
        reference = ingested[args.baseline]
        differ = sum(files != reference for files in ingested.values())
        print(f"\ningested sky: {len(reference)} Parquet files")
        for label, files in ingested.items():
            same = "identical" if files == reference else "DIFFERENT"
            print(f"  {label:>12} vs {args.baseline}: {same}")
        for name in inputs:
            reference = hashes[args.baseline, name, "spark"]
            margin = sum("arcs/" in k for k in reference)
            print(f"\n{name}: {len(reference)} data files ({margin} in the margin cache)")
            for (label, other, engine), files in hashes.items():
                if other != name:
                    continue
                bad = sorted(k for k in reference.keys() | files.keys()
                             if reference.get(k) != files.get(k))  # fmt: skip
                differ += len(bad)
                verdict = "identical" if not bad else f"{len(bad)} differ: {bad[:4]}"
                print(f"  {label:>12} {engine:<6} vs {args.baseline} spark: {verdict}")
        return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
