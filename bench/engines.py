"""The classify job on Spark and on Dask, same input, same machine, one run.

The input is real-cadence light curves (copies of the bundled DR5 quadrant, as bench/scale.py
writes them). Each engine runs ``varsky classify`` once to warm numba's cache, then ``--repeats``
times; the table gives the best job wall time, the inputs + network stage, the rate per core and
the ratio to Spark. Both engines write the same catalog (tests/test_dask_engine.py), which this
bench checks again on the data files.

    .venv/bin/python bench/engines.py [--objects 20000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import write_inputs  # noqa: E402
from throughput import summary_times  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def classify(engine: str, inputs: Path, output: Path) -> dict[str, float]:
    """Run ``varsky classify --engine ENGINE``; its wall time and summary times."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", SOURCE_DATE_EPOCH="1790000000")
    env.setdefault("NUMBA_CACHE_DIR", str(REPO / ".numba_cache"))
    env.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    env.setdefault("PYSPARK_PYTHON", sys.executable)
    env.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    argv = [sys.executable, "-c", "import sys; from jobs.cli import main; sys.exit(main())"]
    argv += ["classify", "--engine", engine, "--input", str(inputs), "--output", str(output)]
    argv += ["--overwrite"]
    t0 = time.perf_counter()
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode:
        raise SystemExit(f"classify --engine {engine} failed:\n{done.stderr[-3000:]}")
    return {"job": wall} | summary_times(done.stdout)


def data_digest(output: Path) -> str:
    """sha256 over the catalog's Parquet data files, in path order."""
    digest = hashlib.sha256()
    for f in sorted(output.rglob("Npix=*.parquet")):
        digest.update(str(f.relative_to(output)).encode())
        digest.update(f.read_bytes())
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=20_000)
    parser.add_argument("--rows-per-file", type=int, default=5_000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    cores = os.cpu_count()
    with tempfile.TemporaryDirectory(prefix="varsky_engines_") as tmp:
        tmp = Path(tmp)
        inputs = tmp / "in"
        inputs.mkdir()
        n_files = write_inputs(inputs, args.objects, args.rows_per_file)
        results, digests = {}, {}
        for engine in ("spark", "dask"):
            classify(engine, inputs, tmp / f"warm_{engine}")
            runs = [classify(engine, inputs, tmp / f"out_{engine}") for _ in range(args.repeats)]
            results[engine] = min(runs, key=lambda r: r["job"])
            digests[engine] = data_digest(tmp / f"out_{engine}")
        stage = "inputs + network"
        print(f"{args.objects:,} light curves in {n_files} files; {cores} cores; best of "
              f"{args.repeats}")  # fmt: skip
        print("| engine | start | read + cuts | inputs + network | write HATS | job | "
              "job lc/s/core | stage lc/s/core | cores busy | job time vs Spark |")  # fmt: skip
        for engine, r in results.items():
            busy = r.get("cores busy", float("nan"))
            start = r.get("spark start", r.get("dask start", float("nan")))
            print(
                f"| {engine} | {start:.1f} s | {r['read + cuts']:.1f} s | {r[stage]:.1f} s | "
                f"{r['write HATS']:.1f} s | {r['job']:.1f} s | "
                f"{args.objects / r['job'] / cores:,.0f} | "
                f"{args.objects / r[stage] / cores:,.0f} | {busy:.2f} | "
                f"{r['job'] / results['spark']['job']:.2f} |"
            )
        same = digests["spark"] == digests["dask"]
        print(f"catalog data files identical across engines: {same}")


if __name__ == "__main__":
    main()
