"""Whole-job classify throughput on real-cadence skies, this tree against another commit.

Builds skies in one IRSA-layout DR Parquet file each, 2 x 2 degrees, on real CRTS cadences (the
bundled crts_train detections: about 290 epochs over 8 years):

- realistic: 10% real CRTS variables, 90% noise-only twins (a variable's times and errors, its
  median magnitude plus Gaussian noise of its errors), as in a real field;
- all-variable: every object a real CRTS variable (cycled when the sky is larger than the set).

Runs ``varsky classify`` on each sky at two sizes, for this tree and, with ``--baseline REF``, for
the code of that commit (a git worktree, same interpreter, same machine, same run), and prints
the stage times, the marginal rate (objects between the two sizes over the time between them)
per core, and the inputs + network stage's core use (Python task seconds / stage wall / cores,
as the job's summary prints it; blank for code that does not report it).

    .venv/bin/python bench/throughput.py [--sizes 4000 20000] [--baseline 93c83eb]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent
CRTS = REPO / "data" / "real_labelled" / "crts_train_detections.parquet"


def crts_lightcurves() -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Times (MJD), magnitudes and errors of every bundled CRTS star, sorted by time."""
    table = pq.read_table(CRTS, columns=["objectid", "mjd", "mag", "magerr"])
    table = table.sort_by([("objectid", "ascending"), ("mjd", "ascending")])
    ids = table.column("objectid").to_numpy(zero_copy_only=False)
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1], True])
    cols = [table.column(c).to_numpy() for c in ("mjd", "mag", "magerr")]
    return tuple([c[a:b] for a, b in zip(starts[:-1], starts[1:], strict=True)] for c in cols)


def write_sky(path: Path, n: int, variable_fraction: float, seed: int) -> None:
    """One DR Parquet file of ``n`` objects in a 2 x 2 degree box at (150, 20) degrees."""
    t, mag, err = crts_lightcurves()
    rng = np.random.default_rng(seed)
    template = np.arange(n) % len(t)
    rng.shuffle(template)
    variable = rng.random(n) < variable_fraction
    mags = []
    for k, v in zip(template, variable, strict=True):
        if v:
            mags.append(mag[k])
        else:
            noise = rng.normal(0.0, 1.0, mag[k].size) * err[k]
            mags.append((np.median(mag[k]) + noise).astype(np.float32))
    counts = np.array([t[k].size for k in template])
    offsets = pa.array(np.r_[0, np.cumsum(counts)].astype(np.int32))

    def lists(values, dtype):
        return pa.ListArray.from_arrays(offsets, pa.array(np.concatenate(values).astype(dtype)))

    dec = rng.uniform(19.0, 21.0, n)
    table = pa.table(
        {
            "objectid": np.arange(n, dtype=np.int64) + 250_000_000_000,
            "filterid": np.ones(n, np.uint8),
            "fieldid": np.full(n, 250, np.int16),
            "rcid": np.zeros(n, np.uint8),
            "objra": (150.0 + rng.uniform(-1.0, 1.0, n) / np.cos(np.radians(dec))).astype(
                np.float32
            ),
            "objdec": dec.astype(np.float32),
            "nepochs": counts.astype(np.int64),
            "hmjd": lists([t[k] for k in template], np.float64),
            "mag": lists(mags, np.float32),
            "magerr": lists([err[k] for k in template], np.float32),
            "clrcoeff": lists([np.zeros(c) for c in counts], np.float32),
            "catflags": lists([np.zeros(c) for c in counts], np.uint16),
        }
    )
    pq.write_table(table, path)


def classify(code: Path, sky: Path, output: Path) -> dict[str, float]:
    """Run ``varsky classify`` of the tree at ``code``; its stage and task seconds."""
    env = dict(os.environ, PYTHONPATH=str(code), TF_CPP_MIN_LOG_LEVEL="2")
    env.setdefault("NUMBA_CACHE_DIR", str(REPO / ".numba_cache"))
    env.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    env.setdefault("PYSPARK_PYTHON", sys.executable)
    env.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    argv = [sys.executable, "-c", "import sys; from jobs.cli import main; sys.exit(main())"]
    argv += ["classify", "--input", str(sky), "--output", str(output), "--overwrite"]
    t0 = time.perf_counter()
    done = subprocess.run(argv, cwd=code, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode:
        raise SystemExit(f"classify failed in {code}:\n{done.stderr[-3000:]}")
    return {"job": wall} | summary_times(done.stdout)


def summary_times(out: str) -> dict[str, float]:
    """Stage and task seconds, and cores busy, from a classify summary."""
    times = {}
    for line in out.splitlines():
        line = line.strip()
        if line.startswith(("time ", "task time ")):
            for part in line.removeprefix("task ").removeprefix("time").split("|"):
                found = re.match(r"\s*(.+?) ([0-9.]+) s", part)
                if found:
                    times[found.group(1)] = float(found.group(2))
        if "cores busy" in line:
            times["cores busy"] = float(re.search(r"cores busy\s+([0-9.]+)", line).group(1))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[4000, 20000])
    parser.add_argument("--baseline", help="a commit to compare with (run from a git worktree)")
    parser.add_argument("--skies", nargs="+", default=["realistic", "all-variable"])
    args = parser.parse_args()
    cores = os.cpu_count()
    with tempfile.TemporaryDirectory(prefix="varsky_throughput_") as tmp:
        tmp = Path(tmp)
        codes = {"this tree": REPO}
        if args.baseline:
            worktree = tmp / "baseline"
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "add", "--detach", str(worktree),
                 args.baseline], check=True, capture_output=True,
            )  # fmt: skip
            codes[args.baseline] = worktree
        try:
            for sky in args.skies:
                fraction = 0.1 if sky == "realistic" else 1.0
                paths = {}
                for n in args.sizes:
                    paths[n] = tmp / f"{sky}_{n}" / "sky.parquet"
                    paths[n].parent.mkdir()
                    write_sky(paths[n], n, fraction, seed=n)
                for name, code in codes.items():
                    classify(code, paths[args.sizes[0]], tmp / "warmup")  # numba caches
                    runs = {n: classify(code, paths[n], tmp / f"out_{n}") for n in args.sizes}
                    small, large = (runs[n] for n in args.sizes)
                    stage = "inputs + network"
                    marginal = (args.sizes[1] - args.sizes[0]) / (large["job"] - small["job"])
                    stage_rate = args.sizes[1] / large[stage]
                    print(
                        f"{sky:>12} | {name:>10} | job {small['job']:.1f} s / {large['job']:.1f} s"
                        f" | marginal {marginal / cores:,.0f} lc/s/core | stage "
                        f"{large[stage]:.1f} s, {stage_rate / cores:,.0f} lc/s/core | cores busy "
                        f"{large.get('cores busy', float('nan')):.2f}",
                        flush=True,
                    )
        finally:
            if args.baseline:
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force",
                                str(worktree)], check=False)  # fmt: skip
    print(f"({cores} cores; sizes {args.sizes[0]:,} and {args.sizes[1]:,} objects)")


if __name__ == "__main__":
    main()
