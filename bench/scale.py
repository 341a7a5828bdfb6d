"""The classify job at scale: 10^5 and 10^6 real-cadence light curves end to end, with memory.

Builds IRSA-layout DR Parquet files from the bundled ZTF DR5 quadrant (data/sample): every light
curve with at least 25 good epochs is a template, copied onto its own patch of a survey strip
(one 1.2-degree patch per copy of the quadrant), with its real times, errors and flags and its
magnitudes jittered by 0.2 of their errors so that no two copies are bit-equal. Files hold
``--rows-per-file`` light curves, as IRSA's field/CCD/quadrant files do.

Runs ``varsky classify`` once on 5,000 light curves to fill numba's cache, then on each size
(in-process, or under ``spark-submit.sh --driver-memory`` to bound the JVM's heap). Every half
second it samples the resident memory of the JVM, of the Python driver and of the largest
Python worker (RSS, so pages shared with the worker daemon count in each), then prints
per-stage seconds, the rates per core, the peaks, and the DR19 extrapolation (2.1 x 10^9 light
curves) in core-hours.

    .venv/bin/python bench/scale.py [--sizes 100000 1000000] [--driver-memory 2g] [--keep DIR]

About 25 minutes on 2 cores for the default sizes; the 10^6 input takes about 0.5 GB of disk.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import summary_times  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "sample" / "ztf_000250_zg_c01_q1_dr5.parquet"
DR19_LIGHTCURVES = 2.1e9
MIN_GOOD = 25


def templates() -> pa.Table:
    """The sample's light curves with at least ``MIN_GOOD`` epochs of catflags 0 and finite mag."""
    table = pq.read_table(SAMPLE).drop_columns(["__index_level_0__"])
    flags = pc.list_flatten(table.column("catflags")).to_numpy()
    mags = pc.list_flatten(table.column("mag")).to_numpy(zero_copy_only=False)
    good = (flags == 0) & np.isfinite(mags)
    owner = pc.list_parent_indices(table.column("catflags")).to_numpy()
    n_good = np.bincount(owner, weights=good, minlength=table.num_rows)
    return table.filter(pa.array(n_good >= MIN_GOOD))


def write_inputs(folder: Path, n: int, rows_per_file: int, seed: int = 1) -> int:
    """Write ``n`` light curves in DR files under ``folder``; return the number of files."""
    base = templates()
    rng = np.random.default_rng(seed)
    ra0, dec0 = 41.7, -26.65  # the quadrant's centre, degrees
    ra = base.column("objra").to_numpy().astype(np.float64) - ra0
    dec = base.column("objdec").to_numpy().astype(np.float64) - dec0
    mag = base.column("mag")
    err_flat = pc.list_flatten(base.column("magerr")).to_numpy(zero_copy_only=False)
    mag_flat = pc.list_flatten(mag).to_numpy(zero_copy_only=False)
    files, written, copy = 0, 0, 0
    while written < n:
        parts = []
        while sum(p.num_rows for p in parts) < rows_per_file and written < n:
            take = min(base.num_rows, n - written, rows_per_file - sum(p.num_rows for p in parts))
            centre_dec = -60.0 + 1.2 * (copy // 250)
            centre_ra = (1.2 * (copy % 250)) % 360.0
            jitter = (mag_flat + 0.2 * err_flat * rng.standard_normal(mag_flat.size)).astype(
                np.float32
            )
            part = base.set_column(
                base.schema.get_field_index("mag"),
                "mag",
                pa.ListArray.from_arrays(mag.combine_chunks().offsets, pa.array(jitter)),
            )
            part = part.set_column(
                base.schema.get_field_index("objectid"),
                "objectid",
                pa.array(base.column("objectid").to_numpy() + (copy + 1) * 10**15),
            )
            part = part.set_column(
                base.schema.get_field_index("objra"),
                "objra",
                pa.array(((centre_ra + ra / np.cos(np.radians(centre_dec))) % 360.0).astype(
                    np.float32
                )),
            )  # fmt: skip
            part = part.set_column(
                base.schema.get_field_index("objdec"),
                "objdec",
                pa.array((centre_dec + dec).astype(np.float32)),
            )
            parts.append(part.slice(0, take))
            written += take
            copy += 1
        pq.write_table(
            pa.concat_tables(parts).combine_chunks(),
            folder / f"ztf_{files:06d}_zg_c01_q1_scale.parquet",
        )
        files += 1
    return files


class MemorySampler(threading.Thread):
    """Peak RSS of a process tree's JVM, Python driver and largest Python worker, bytes."""

    def __init__(self, pid: int, every_s: float = 0.5):
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.every_s = every_s
        self.peak = {"jvm": 0, "driver": 0, "worker": 0}
        self.done = threading.Event()

    @staticmethod
    def kind(proc: psutil.Process) -> str | None:
        """jvm, worker (pyspark's daemon and workers) or driver (any other Python)."""
        name = proc.name()
        if name == "java":
            return "jvm"
        if "python" in name:
            return "worker" if "pyspark" in " ".join(proc.cmdline()) else "driver"
        return None

    def run(self) -> None:
        while not self.done.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            for proc in procs:
                try:
                    kind, rss = self.kind(proc), proc.memory_info().rss
                except psutil.NoSuchProcess:
                    continue
                if kind:
                    self.peak[kind] = max(self.peak[kind], rss)
            self.done.wait(self.every_s)


def classify(
    inputs: Path, output: Path, driver_memory: str | None = None
) -> tuple[dict[str, float], dict[str, int], str]:
    """Run ``varsky classify`` (under ``spark-submit.sh --driver-memory`` when given).

    Returns its times, memory peaks and summary.
    """
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
    env.setdefault("NUMBA_CACHE_DIR", str(REPO / ".numba_cache"))
    env.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    env.setdefault("PYSPARK_PYTHON", sys.executable)
    env.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    job = ["classify", "--input", str(inputs), "--output", str(output), "--overwrite"]
    if driver_memory:
        argv = [str(REPO / "spark-submit.sh"), "--driver-memory", driver_memory, *job]
    else:
        argv = [sys.executable, "-c", "import sys; from jobs.cli import main; sys.exit(main())"]
        argv += job
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.PIPE)
        sampler = MemorySampler(proc.pid)
        sampler.start()
        _, err = proc.communicate()
        sampler.done.set()
        sampler.join()
        out.seek(0)
        summary = out.read()
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"classify failed:\n{err.decode()[-3000:]}")
    return {"job": wall} | summary_times(summary), sampler.peak, summary


def classified_count(summary: str) -> int:
    """The number after 'classified' in a classify summary."""
    for line in summary.splitlines():
        if line.strip().startswith("classified"):
            return int(line.split()[1].replace(",", ""))
    raise ValueError("no 'classified' line in the summary")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--rows-per-file", type=int, default=50_000)
    parser.add_argument("--keep", type=Path, help="write inputs and outputs here (kept)")
    parser.add_argument(
        "--driver-memory", help="run under spark-submit.sh with this JVM heap, e.g. 2g "
        "(default: in-process, the job's local default of 4g)",
    )  # fmt: skip
    args = parser.parse_args()
    cores = os.cpu_count()
    with tempfile.TemporaryDirectory(prefix="varsky_scale_") as tmp:
        root = args.keep or Path(tmp)
        rows = []
        warm = root / "in_warmup"
        warm.mkdir(parents=True, exist_ok=True)
        write_inputs(warm, 5_000, args.rows_per_file)
        classify(warm, root / "out_warmup", args.driver_memory)  # fills numba's cache
        for n in args.sizes:
            inputs = root / f"in_{n}"
            inputs.mkdir(parents=True, exist_ok=True)
            t = time.perf_counter()
            n_files = write_inputs(inputs, n, args.rows_per_file)
            print(f"{n:,} light curves in {n_files} files ({time.perf_counter() - t:.0f} s)")
            times, peak, summary = classify(inputs, root / f"out_{n}", args.driver_memory)
            print(summary, flush=True)
            rows.append((n, n_files, classified_count(summary), times, peak))
        gib = 2.0**30
        stages = ["spark start", "read + cuts", "write rejects", "inputs + network", "write HATS"]
        print(f"\n{cores} cores; stage seconds, then rates per core and peak RSS")
        print("| light curves | files | classified | " + " | ".join(stages) + " | job |")
        for n, n_files, done, times, _ in rows:
            cells = " | ".join(f"{times.get(s, float('nan')):.1f}" for s in stages)
            print(f"| {n:,} | {n_files} | {done:,} | {cells} | {times['job']:.1f} |")
        print("| light curves | job lc/s/core | stage lc/s/core | cores busy | JVM GiB | "
              "driver GiB | largest worker GiB | DR19 core-hours |")  # fmt: skip
        for n, _, done, times, peak in rows:
            job_rate = done / times["job"] / cores
            print(
                f"| {n:,} | {job_rate:,.0f} | {done / times['inputs + network'] / cores:,.0f} | "
                f"{times.get('cores busy', float('nan')):.2f} | {peak['jvm'] / gib:.2f} | "
                f"{peak['driver'] / gib:.2f} | {peak['worker'] / gib:.2f} | "
                f"{DR19_LIGHTCURVES / job_rate / 3600:,.0f} |"
            )


if __name__ == "__main__":
    main()
