"""The periodogram kernel of this tree against a baseline commit's, on the same light curves.

Made for the float32 phase recurrence (the phases stay float64 and reseed it): how much faster
it is, and how far its outputs move. Same light curves for both (written once to a temporary
file): the CRTS validation split (8-year baselines, ~290 epochs, ~118,000 frequencies) and the
bundled DR5 quadrant (2.4 years, ~65 epochs). Each tree runs `binned_periodograms` in its own
process (a git worktree of the baseline, same interpreter), numba on one thread, after a warm-up
call. Printed per set: light curves per second per core for each, the speed-up, the largest
change of any binned power and of any folded-shape number, and the share of best periods that
agree to 1e-6 (relative).

    .venv/bin/python bench/periodogram_precision.py --baseline 40b1840
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from throughput import baseline_worktree  # noqa: E402

#: Run in a child process inside one tree: time the kernel on the saved light curves.
_CHILD = """
import sys, time
import numba, numpy as np
sys.path.insert(0, sys.argv[1])
from udfs.kernels.periodogram import PeriodogramGrid, binned_periodograms
numba.set_num_threads(1)
data = np.load(sys.argv[2])
out = {}
for name in data["names"]:
    t, mag, ch, off = (data[f"{name}_{k}"] for k in ("t", "mag", "channel", "offsets"))
    args = (t, mag, ch, off, PeriodogramGrid(), 3)
    binned_periodograms(*args)
    t0 = time.perf_counter()
    powers, shape = binned_periodograms(*args)
    out[f"{name}_seconds"] = np.array(time.perf_counter() - t0)
    out[f"{name}_powers"], out[f"{name}_shape"] = powers, shape
np.savez(sys.argv[3], **out)
"""


def light_curve_sets() -> dict:
    from catalogs.band_map import BandMap
    from udfs.model.training import VALIDATION
    from udfs.model.variability_training import dr_lightcurves, labelled_lightcurves

    crts = BandMap.parse("crts")
    return {
        "CRTS validation": labelled_lightcurves(
            REPO / "data" / "real_labelled" / "crts_train", crts, 20, 0.2, 2026, VALIDATION
        ),
        "ZTF DR5 quadrant": dr_lightcurves(
            REPO / "data" / "sample" / "ztf_000250_zg_c01_q1_dr5.parquet", 20, None
        ),
    }


def run_tree(tree: Path, data: Path, out: Path) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tree / ".numba_cache"))
    subprocess.run([sys.executable, "-c", _CHILD, str(tree), str(data), str(out)], check=True,
                   env=env, cwd=tree)  # fmt: skip
    return dict(np.load(out))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="commit to compare with")
    args = parser.parse_args()
    sets = light_curve_sets()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        arrays = {"names": np.array(list(sets))}
        for name, lc in sets.items():
            arrays |= {f"{name}_t": lc.t_days.astype(np.float64), f"{name}_mag": lc.mag,
                       f"{name}_channel": lc.channel, f"{name}_offsets": lc.offsets}  # fmt: skip
        np.savez(tmp / "lightcurves.npz", **arrays)
        with baseline_worktree(args.baseline, tmp) as worktree:
            base = run_tree(worktree, tmp / "lightcurves.npz", tmp / "base.npz")
        now = run_tree(REPO, tmp / "lightcurves.npz", tmp / "now.npz")
    print(f"| light curves | n | median epochs | {args.baseline} lc/s/core | this tree lc/s/core | "
          "speed-up | max change of a binned power | max change of a shape number | "
          "same best period |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, lc in sets.items():
        n = lc.n_lightcurves
        r0, r1 = n / base[f"{name}_seconds"], n / now[f"{name}_seconds"]
        dp = np.abs(base[f"{name}_powers"] - now[f"{name}_powers"]).max()
        ds = np.abs(base[f"{name}_shape"] - now[f"{name}_shape"]).max()
        period0 = 10.0 ** base[f"{name}_shape"][:, 0].astype(np.float64)
        period1 = 10.0 ** now[f"{name}_shape"][:, 0].astype(np.float64)
        same = np.mean(np.abs(period1 / np.where(period0 > 0, period0, 1) - 1) < 1e-6)
        print(f"| {name} | {n:,} | {int(np.median(np.diff(lc.offsets)))} | {r0:,.0f} | "
              f"{r1:,.0f} | {r1 / r0:.2f} | {dp:.1e} | {ds:.1e} | {same:.1%} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
