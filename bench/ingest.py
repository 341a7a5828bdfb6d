"""Ingest throughput and memory on simulated skies: psfcat (with references) and DR Parquet.

For each sky size: `varsky simulate` writes the sky once (kept under --workdir for reuse), then
the ingest job runs in-process on Spark local[*]. Reports detections per second per core (psfcat),
DR light-curve rows per second per core (dr-parquet), and peak memory: of the whole process tree
(driver, JVM, Python workers) and of the largest single Python worker, sampled every 0.2 s. The
worker peak is the memory one task needs; it must not grow with the sky.

    .venv/bin/python bench/ingest.py --objects 20000 200000 [--workdir build/bench_ingest]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def _children(pid: int) -> list[int]:
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


class MemorySampler(threading.Thread):
    """Peak RSS of this process tree, of the largest Python worker and of the JVM."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_tree = 0
        self.peak_python_worker = 0
        self.peak_jvm = 0
        self._done = threading.Event()

    def run(self) -> None:
        me = os.getpid()
        while not self._done.is_set():
            tree, stack = 0, [me]
            while stack:
                pid = stack.pop()
                rss = _rss_bytes(pid)
                tree += rss
                kids = _children(pid)
                stack += kids
                if pid != me:
                    try:
                        with open(f"/proc/{pid}/cmdline") as f:
                            exe = os.path.basename(f.read().split("\0")[0])
                    except OSError:
                        exe = ""
                    # Spark's Python workers; the JVM (java ... pyspark-shell) is counted apart.
                    if exe.startswith("python"):
                        self.peak_python_worker = max(self.peak_python_worker, rss)
                    elif exe == "java":
                        self.peak_jvm = max(self.peak_jvm, rss)
            self.peak_tree = max(self.peak_tree, tree)
            time.sleep(0.2)

    def stop(self) -> None:
        self._done.set()
        self.join()


def simulate(workdir: Path, objects: int, seed: int) -> Path:
    sky = workdir / f"sky_{objects}"
    if not (sky / "truth" / "objects.parquet").exists():
        subprocess.run(
            [sys.executable, "-m", "jobs.cli", "simulate", "--output", str(sky),
             "--objects", str(objects), "--seed", str(seed)],
            check=True, cwd=REPO,
        )  # fmt: skip
    return sky


def measure(spark, config) -> dict:
    from jobs.ingest import run_ingest

    sampler = MemorySampler()
    sampler.start()
    t0 = time.perf_counter()
    summary = run_ingest(spark, config, log=lambda *_: None)
    wall = time.perf_counter() - t0
    sampler.stop()
    return {
        "rows_in": summary.rows_in,
        "objects_out": summary.objects_out,
        "wall_s": wall,
        "peak_tree_mib": sampler.peak_tree / 2**20,
        "peak_python_worker_mib": sampler.peak_python_worker / 2**20,
        "peak_jvm_mib": sampler.peak_jvm / 2**20,
        "stage_s": summary.stage_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--workdir", default=str(REPO / "build" / "bench_ingest"))
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--formats", nargs="+", default=["psfcat", "dr-parquet"])
    parser.add_argument("--work-rows", type=int, default=None, help="the job's --work-rows")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    from jobs.ingest import IngestConfig
    from jobs.session import build_spark_session

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    skies = {n: simulate(workdir, n, args.seed) for n in args.objects}
    spark = build_spark_session(
        "varsky bench ingest", conf={"spark.ui.showConsoleProgress": "false"}
    )
    cores = spark.sparkContext.defaultParallelism
    results = []
    for n, sky in skies.items():
        for fmt, inputs, refs in (
            ("psfcat", [sky / "psfcat"], [sky / "refpsfcat"]),
            ("dr-parquet", [sky / "dr_parquet"], []),
        ):
            if fmt not in args.formats:
                continue
            out = workdir / f"out_{n}_{fmt}"
            config = IngestConfig(
                input_format=fmt, inputs=tuple(map(str, inputs)), output=str(out),
                rejects=str(out) + "_rejects", references=tuple(map(str, refs)), overwrite=True,
                **({"work_rows": args.work_rows} if args.work_rows else {}),
            )  # fmt: skip
            r = measure(spark, config)
            if fmt == "dr-parquet":
                import pyarrow.dataset as ds

                r["dr_rows"] = ds.dataset(sky / "dr_parquet").count_rows()
            r.update(sky_objects=n, format=fmt, cores=cores, work_rows=config.work_rows)
            results.append(r)
            print(json.dumps(r), flush=True)

    print(f"\nvarsky ingest on simulated skies, Spark local[*] with {cores} cores")
    print("| sky objects | input | work rows | rows in | objects out | wall s | rate per core | "
          "peak memory: all processes | JVM | largest Python worker |")  # fmt: skip
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        if r["format"] == "psfcat":
            rate = f"{r['rows_in'] / r['wall_s'] / cores:,.0f} detections/s"
        else:
            rate = f"{r['dr_rows'] / r['wall_s'] / cores:,.0f} light curves/s"
        print(
            f"| {r['sky_objects']:,} | {r['format']} | {r['work_rows']:,} | {r['rows_in']:,} "
            f"| {r['objects_out']:,} "
            f"| {r['wall_s']:.0f} | {rate} | {r['peak_tree_mib']:,.0f} MiB "
            f"| {r['peak_jvm_mib']:,.0f} MiB | {r['peak_python_worker_mib']:,.0f} MiB |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
