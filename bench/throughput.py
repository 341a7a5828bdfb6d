"""Whole-job classify throughput on real-cadence skies, this tree against another commit.

Builds skies in one IRSA-layout DR Parquet file each, 2 x 2 degrees, on real cadences:
``--cadence crts`` (the bundled CRTS stars of the validation split, never trained on: about 290
epochs over 8 years) or ``--cadence dr5`` (the held-out half of the bundled ZTF DR5 quadrant):

- realistic: 10% variables, 90% noise-only twins (a real light curve's times and quoted errors,
  its median magnitude plus noise: ``--noise realistic``, the default, or ``ideal``; see
  udfs/simulators/noise_twins.py), as in a real field. The variables are the real CRTS stars, or, on
  DR5 cadences, simulated variables of every class on the quadrant's real cadences;
- all-variable: every object a variable (cycled when the sky is larger than the set).

Besides the rates it prints the purity and completeness of the variable calls (any class but
constant) of the larger sky.

Runs ``varsky classify`` on each sky at two sizes, for this tree and, with ``--baseline REF``, for
the code of that commit (a git worktree, same interpreter, same machine, same run), and prints
the stage times, the marginal rate (objects between the two sizes over the time between them)
per core, and the inputs + network stage's core use (Python task seconds / stage wall / cores,
as the job's summary prints it; blank for code that does not report it).

    .venv/bin/python bench/throughput.py [--sizes 4000 20000] [--baseline 93c83eb]
"""

from __future__ import annotations

import argparse
import contextlib
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
DR5 = REPO / "data" / "sample" / "ztf_000250_zg_c01_q1_dr5.parquet"
sys.path.insert(0, str(REPO))


@contextlib.contextmanager
def baseline_worktree(commit: str, parent: Path):
    """A detached git worktree of ``commit`` under ``parent`` (yields its path), removed after."""
    worktree = parent / "baseline"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(worktree), commit],
                   check=True, capture_output=True)  # fmt: skip
    try:
        yield worktree
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(worktree)],
                       check=False)  # fmt: skip


def _lists(lc):
    parts = [np.split(a, lc.offsets[1:-1]) for a in (lc.t_days, lc.mag, lc.magerr)]
    return tuple([np.asarray(x, np.float64) for x in p] for p in parts)


def crts_lightcurves() -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Times (MJD), magnitudes and errors of the bundled CRTS stars of the validation split.

    (The split `varsky train` never trains on: udfs.model.training.real_split, as in the card.)
    """
    from catalogs.band_map import BandMap
    from udfs.model.training import VALIDATION
    from udfs.model.variability_training import labelled_lightcurves

    prefix = CRTS.parent / "crts_train"
    return _lists(labelled_lightcurves(prefix, BandMap.parse("crts"), 20, 0.2, 2026, VALIDATION))


def dr5_lightcurves(seed: int):
    """Twin templates and variables on the bundled DR5 quadrant's cadences.

    Templates: the quadrant's own good light curves (times and quoted errors). Variables:
    simulated light curves of every variable class on the quadrant's real cadences
    (``udfs.model.variability_training.simulated_variables``: the simulator's class models and ZTF
    error relation; there are no labelled ZTF variables here).
    """
    from udfs.model.variability_training import dr_lightcurves, simulated_variables

    return _lists(dr_lightcurves(DR5, 20, 1)), _lists(simulated_variables(DR5, 40, seed))


def write_sky(
    path: Path,
    n: int,
    variable_fraction: float,
    seed: int,
    cadence: str = "crts",
    noise: str = "ideal",
) -> np.ndarray:
    """One DR Parquet file of ``n`` objects in a 2 x 2 degree box at (150, 20) degrees.

    Returns which objects are variable (objectid order).
    """  # fmt: skip
    from udfs.kernels.model_inputs import FlatLightCurves
    from udfs.simulators.noise_twins import NOISE_MODELS, noise_twins

    if cadence == "crts":
        t, mag, err = crts_lightcurves()
        var_t, var_mag, var_err = t, mag, err
    else:
        (t, mag, err), (var_t, var_mag, var_err) = dr5_lightcurves(seed)
    rng = np.random.default_rng(seed)
    variable = rng.random(n) < variable_fraction
    template = rng.permutation(np.arange(n) % len(t))
    var_template = rng.permutation(np.arange(n) % len(var_t))
    times, mags, errs = [], [], []
    quiet = np.flatnonzero(~variable)
    picked = template[quiet]
    lengths = np.array([t[k].size for k in picked])
    flat = FlatLightCurves(
        np.concatenate([t[k] for k in picked]), np.concatenate([mag[k] for k in picked]),
        np.concatenate([err[k] for k in picked]), np.zeros(lengths.sum(), np.int8),
        np.r_[0, np.cumsum(lengths)],
    )  # fmt: skip
    twins = noise_twins(flat, NOISE_MODELS[noise], rng)
    twin_mags = np.split(twins.mag, twins.offsets[1:-1])
    twin_of = dict(zip(quiet.tolist(), range(quiet.size), strict=True))
    for k in range(n):
        if variable[k]:
            j = var_template[k]
            times.append(var_t[j])
            mags.append(var_mag[j])
            errs.append(var_err[j])
        else:
            j = template[k]
            times.append(t[j])
            mags.append(twin_mags[twin_of[k]])
            errs.append(err[j])
    counts = np.array([x.size for x in times])
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
            "hmjd": lists(times, np.float64),
            "mag": lists(mags, np.float32),
            "magerr": lists(errs, np.float32),
            "clrcoeff": lists([np.zeros(c) for c in counts], np.float32),
            "catflags": lists([np.zeros(c) for c in counts], np.uint16),
        }
    )
    pq.write_table(table, path)
    return variable


def purity_completeness(output: Path, variable: np.ndarray) -> tuple[float, float, int]:
    """Purity and completeness of the variable calls (any class but constant), and the calls."""
    files = [f for f in (output / "varsky_classification" / "dataset").rglob("Npix=*.parquet")]
    table = pa.concat_tables(
        [pq.read_table(f, columns=["objectid", "predicted_class"]) for f in files]
    )
    index = table.column("objectid").to_numpy() - 250_000_000_000
    called = np.asarray(table.column("predicted_class").to_pylist()) != "constant"
    truth = variable[index]
    hits = int((called & truth).sum())
    return hits / max(int(called.sum()), 1), hits / max(int(variable.sum()), 1), int(called.sum())


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
    parser.add_argument(
        "--cadence",
        choices=["crts", "dr5"],
        default="crts",
        help="CRTS stars' cadences, or the DR5 quadrant's (default crts)",
    )
    parser.add_argument(
        "--noise",
        choices=["ideal", "realistic"],
        default="realistic",
        help="the twins' noise model (udfs/simulators/noise_twins.py; default realistic)",
    )
    args = parser.parse_args()
    cores = os.cpu_count()
    with (
        tempfile.TemporaryDirectory(prefix="varsky_throughput_") as tmp_name,
        contextlib.ExitStack() as stack,
    ):
        tmp = Path(tmp_name)
        codes = {"this tree": REPO}
        if args.baseline:
            codes[args.baseline] = stack.enter_context(baseline_worktree(args.baseline, tmp))
        for sky in args.skies:
            fraction = 0.1 if sky == "realistic" else 1.0
            paths, truth = {}, {}
            for n in args.sizes:
                paths[n] = tmp / f"{sky}_{n}" / "sky.parquet"
                paths[n].parent.mkdir()
                truth[n] = write_sky(paths[n], n, fraction, n, args.cadence, args.noise)
            for name, code in codes.items():
                classify(code, paths[args.sizes[0]], tmp / "warmup")  # numba caches
                runs = {n: classify(code, paths[n], tmp / f"out_{n}") for n in args.sizes}
                small, large = (runs[n] for n in args.sizes)
                stage = "inputs + network"
                marginal = (args.sizes[1] - args.sizes[0]) / (large["job"] - small["job"])
                stage_rate = args.sizes[1] / large[stage]
                purity, completeness, calls = purity_completeness(
                    tmp / f"out_{args.sizes[1]}", truth[args.sizes[1]]
                )
                print(
                    f"{sky:>12} | {name:>10} | job {small['job']:.1f} s / {large['job']:.1f} s"
                    f" | marginal {marginal / cores:,.0f} lc/s/core | stage "
                    f"{large[stage]:.1f} s, {stage_rate / cores:,.0f} lc/s/core | cores busy "
                    f"{large.get('cores busy', float('nan')):.2f} | variable calls "
                    f"{calls:,}: purity {purity:.3f}, completeness {completeness:.3f}",
                    flush=True,
                )
    print(f"({cores} cores; sizes {args.sizes[0]:,} and {args.sizes[1]:,} objects; "
          f"{args.cadence} cadences, {args.noise} twins)")  # fmt: skip


if __name__ == "__main__":
    main()
