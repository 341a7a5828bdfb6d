"""Ingest throughput and memory on simulated skies: psfcat (with references) and DR Parquet.

For each sky size: `varsky simulate` writes the sky once (kept under --workdir for reuse), then
the ingest job runs in-process on Spark local[*]. Reports detections per second per core (psfcat),
DR light-curve rows per second per core (dr-parquet), and peak memory: of the whole process tree
(driver, JVM, Python workers) and of the largest single Python worker, sampled every 0.2 s. The
worker peak is the memory one task needs; it must not grow with the sky.

``--ccds-per-side 1`` gives psfcat files of a real quadrant catalog's size (about 1,500 rows;
the default layout's files hold tens). ``--hats-import`` also imports the same science psfcat
files with hats-import (the tool people use to make HATS catalogs: its Dask pipeline, one worker
process per core, one thread each), in the same run: hats-import only partitions the detections
by HEALPix, where varsky also merges references, converts times, associates detections into
objects and builds their light curves.

    .venv/bin/python bench/ingest.py --objects 20000 200000 [--workdir build/bench_ingest]
    .venv/bin/python bench/ingest.py --objects 32000 --formats psfcat --ccds-per-side 1 \
        --hats-import 32000 --baseline COMMIT      # hats-import on the 32,000-object sky only

``--baseline COMMIT`` also runs the ingest of that commit (a git worktree of it, first on the
Python path) on the same skies, in the same run, before this code's.
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


def simulate(workdir: Path, objects: int, seed: int, ccds_per_side: int | None) -> Path:
    layout = f"_ccds{ccds_per_side}" if ccds_per_side else ""
    sky = workdir / f"sky_{objects}{layout}"
    if not (sky / "truth" / "objects.parquet").exists():
        extra = ["--ccds-per-side", str(ccds_per_side)] if ccds_per_side else []
        subprocess.run(
            [sys.executable, "-m", "jobs.cli", "simulate", "--output", str(sky),
             "--objects", str(objects), "--seed", str(seed), *extra],
            check=True, cwd=REPO,
        )  # fmt: skip
    return sky


def hats_import(psfcat_dir: Path, out: Path, cores: int) -> dict:
    """hats-import of every science psfcat file under ``psfcat_dir`` into a HATS catalog."""
    import shutil

    from dask.distributed import Client
    from hats_import.catalog.arguments import ImportArguments
    from hats_import.catalog.file_readers import FitsReader
    from hats_import.pipeline import pipeline_with_client

    files = sorted(str(p) for p in psfcat_dir.rglob("*_psfcat.fits"))
    if out.exists():
        shutil.rmtree(out)
    args = ImportArguments(
        output_artifact_name="psfcat", output_path=out, input_file_list=files,
        file_reader=FitsReader(hdu=1), ra_column="ra", dec_column="dec", catalog_type="source",
        tmp_dir=out / "tmp", resume=False, progress_bar=False,
    )  # fmt: skip
    sampler = MemorySampler()
    sampler.start()
    t0 = time.perf_counter()
    # The cluster's start is timed, as the Spark session's start is in varsky's figure.
    with Client(
        n_workers=cores, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as client:
        pipeline_with_client(args, client)
    wall = time.perf_counter() - t0
    sampler.stop()
    import hats

    catalog = hats.read_hats(out / "psfcat")
    return {
        "rows_in": int(catalog.catalog_info.total_rows),
        "files": len(files),
        "partitions": len(catalog.get_healpix_pixels()),
        "wall_s": wall,
        "peak_tree_mib": sampler.peak_tree / 2**20,
        "peak_python_worker_mib": sampler.peak_python_worker / 2**20,
    }


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


def run_baseline(args, workdir: Path) -> list[dict]:
    """This bench's varsky runs on the code of ``args.baseline`` (a worktree), in a subprocess."""
    commit = subprocess.run(["git", "rev-parse", "--short", args.baseline], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    tree = workdir / f"baseline_{commit}"
    if not tree.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), commit], cwd=REPO,
                       check=True)  # fmt: skip
    out = workdir / f"baseline_{commit}.json"
    argv = [sys.executable, __file__, "--workdir", str(workdir), "--seed", str(args.seed),
            "--objects", *map(str, args.objects), "--formats", *args.formats,
            "--json", str(out)]  # fmt: skip
    for flag, value in (("--ccds-per-side", args.ccds_per_side), ("--work-rows", args.work_rows),
                        ("--max-rows-per-pixel", args.max_rows_per_pixel)):  # fmt: skip
        if value:
            argv += [flag, str(value)]
    env = os.environ | {"PYTHONPATH": str(tree), "VARSKY_BENCH_CODE": commit}
    subprocess.run(argv, cwd=tree, env=env, check=True)  # fmt: skip
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--workdir", default=str(REPO / "build" / "bench_ingest"))
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--formats", nargs="+", default=["psfcat", "dr-parquet"])
    parser.add_argument("--work-rows", type=int, default=None, help="the job's --work-rows")
    parser.add_argument("--ccds-per-side", type=int, default=None, help="simulate's layout")
    parser.add_argument("--max-rows-per-pixel", type=int, default=None,
                        help="the job's --max-rows-per-pixel")  # fmt: skip
    parser.add_argument("--hats-import", nargs="*", type=int, metavar="OBJECTS",
                        help="also hats-import the skies of these sizes (default all)")  # fmt: skip
    parser.add_argument("--baseline", help="also run the ingest of this commit, first")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    from jobs.ingest import IngestConfig
    from jobs.session import build_spark_session

    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    skies = {n: simulate(workdir, n, args.seed, args.ccds_per_side) for n in args.objects}
    results = []
    if args.baseline:
        results += run_baseline(args, workdir)
    spark = build_spark_session(
        "varsky bench ingest", conf={"spark.ui.showConsoleProgress": "false"}
    )
    cores = spark.sparkContext.defaultParallelism
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
                **({"max_rows_per_pixel": args.max_rows_per_pixel}
                   if args.max_rows_per_pixel else {}),
            )  # fmt: skip
            r = measure(spark, config)
            if fmt == "dr-parquet":
                import pyarrow.dataset as ds

                r["dr_rows"] = ds.dataset(sky / "dr_parquet").count_rows()
            r.update(sky_objects=n, format=fmt, cores=cores, work_rows=config.work_rows,
                     max_rows_per_pixel=config.max_rows_per_pixel,
                     code=os.environ.get("VARSKY_BENCH_CODE", "this code"))  # fmt: skip
            results.append(r)
            print(json.dumps(r), flush=True)
        if args.hats_import is not None and (not args.hats_import or n in args.hats_import):
            r = hats_import(sky / "psfcat", workdir / f"hats_import_{n}", cores)
            r.update(sky_objects=n, format="hats-import", cores=cores)
            results.append(r)
            print(json.dumps(r), flush=True)

    print(f"\nvarsky ingest on simulated skies, Spark local[*] with {cores} cores")
    print("| code | sky objects | input | work rows | rows in | objects out | wall s "
          "| rate per core | peak memory: all processes | JVM "
          "| largest Python worker |")  # fmt: skip
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        if r["format"] == "hats-import":
            continue
        if r["format"] == "psfcat":
            rate = f"{r['rows_in'] / r['wall_s'] / cores:,.0f} detections/s"
        else:
            rate = f"{r['dr_rows'] / r['wall_s'] / cores:,.0f} light curves/s"
        print(
            f"| {r['code']} | {r['sky_objects']:,} | {r['format']} | {r['work_rows']:,} "
            f"| {r['rows_in']:,} "
            f"| {r['objects_out']:,} "
            f"| {r['wall_s']:.0f} | {rate} | {r['peak_tree_mib']:,.0f} MiB "
            f"| {r['peak_jvm_mib']:,.0f} MiB | {r['peak_python_worker_mib']:,.0f} MiB |"
        )
    for r in results:
        base = [q for q in results if q.get("code") not in (None, "this code")
                and (q["format"], q["sky_objects"]) == (r["format"], r["sky_objects"])]  # fmt: skip
        if r.get("code") == "this code" and base:
            print(f"this code / {base[0]['code']}, {r['format']} at {r['sky_objects']:,} objects: "
                  f"{base[0]['wall_s'] / r['wall_s']:.2f} times the rate")  # fmt: skip
    if any(r["format"] == "hats-import" for r in results):
        print(f"\nThe same science psfcat files, varsky ingest beside hats-import ({cores} cores)")
        print("| sky objects | tool | what it does | detections | wall s | detections/s/core "
              "| varsky / hats-import | peak memory: all processes "
              "| largest Python worker |")  # fmt: skip
        print("|---:|---|---|---:|---:|---:|---:|---:|---:|")
        for r in results:
            if r["format"] not in ("psfcat", "hats-import"):
                continue
            rate = r["rows_in"] / r["wall_s"] / cores
            peer = next((q for q in results if q["format"] == "hats-import"
                         and q["sky_objects"] == r["sky_objects"]), None)  # fmt: skip
            if peer is None:
                continue
            ratio = rate / (peer["rows_in"] / peer["wall_s"] / cores)
            what = ("partition by HEALPix" if r["format"] == "hats-import" else
                    "references, times, association, light curves, HATS")  # fmt: skip
            tool = "hats-import" if r["format"] == "hats-import" else f"varsky ({r['code']})"
            print(f"| {r['sky_objects']:,} | {tool} | {what} | {r['rows_in']:,} | "
                  f"{r['wall_s']:.0f} | {rate:,.0f} | {ratio:.2f} | {r['peak_tree_mib']:,.0f} MiB "
                  f"| {r['peak_python_worker_mib']:,.0f} MiB |")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
