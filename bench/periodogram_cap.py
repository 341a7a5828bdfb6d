"""The periodogram's frequency cap: cost and best periods at 20,000 (old) and 150,000 (new).

Same light curves, same kernel, one thread: the bundled DR5 quadrant (2.4-year baseline), ZTF-like
simulated light curves (`udfs.simulators.lightcurve_simulator`, 1-3 year baselines) and the CRTS
periodic variables (8 years). Prints light curves per second per core at each cap, the ratio, and
how many best periods agree within 1% between the two caps.

    .venv/bin/python bench/periodogram_cap.py
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numba
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def light_curve_sets(n_sim_per_class: int, n_crts: int):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from catalogs.band_map import BandMap
    from catalogs.labelled_sets import read_labelled_set
    from udfs.kernels.lightcurve_cuts import apply_quality_cuts
    from udfs.kernels.model_inputs import FlatLightCurves, flat_lightcurves
    from udfs.simulators.lightcurve_simulator import simulate_lightcurves

    sets = {}
    dr5 = pq.read_table(REPO / "data" / "sample" / "ztf_000250_zg_c01_q1_dr5.parquet")
    dr5 = dr5.append_column("source_file", pa.array(["dr5"] * dr5.num_rows))
    dr5 = dr5.append_column("source_row", pa.array(np.arange(dr5.num_rows)))
    cut = pa.Table.from_batches([apply_quality_cuts(b, 20) for b in dr5.to_batches()])
    cut = cut.filter(cut.column("reject_reason").is_null())
    sets["ZTF DR5 sample"] = flat_lightcurves(cut.column("lightcurve"))
    sim = simulate_lightcurves(n_sim_per_class, seed=3)
    sets["simulated ZTF-like"] = FlatLightCurves(
        sim.t_hmjd, sim.mag, sim.magerr, sim.channel, sim.offsets
    )
    crts = read_labelled_set(REPO / "data" / "real_labelled" / "crts_train", BandMap.parse("crts"))
    sets["CRTS periodic variables"] = flat_lightcurves(crts.column("lightcurve").slice(0, n_crts))
    return sets


def main() -> int:
    from udfs.kernels.periodogram import PeriodogramGrid, binned_periodograms

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sim-per-class", type=int, default=40)
    parser.add_argument("--crts", type=int, default=600)
    args = parser.parse_args()
    numba.set_num_threads(1)
    sets = light_curve_sets(args.sim_per_class, args.crts)
    print("| light curves | n | median epochs | median baseline, days | cap 20,000 lc/s | "
          "cap 150,000 lc/s | cost ratio | same best period (1%) |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, lc in sets.items():
        n = lc.n_lightcurves
        lengths = np.diff(lc.offsets)
        base = np.array(
            [np.ptp(lc.t_days[a:b]) for a, b in zip(lc.offsets[:-1], lc.offsets[1:], strict=True)]
        )
        rates, best = {}, {}
        for cap in (20_000, 150_000):
            grid = PeriodogramGrid(max_frequencies=cap)
            args_ = (lc.t_days, lc.mag, lc.channel, lc.offsets, grid, 3)
            binned_periodograms(*args_)  # compile and warm
            t0 = time.perf_counter()
            _, shape = binned_periodograms(*args_)
            rates[cap] = n / (time.perf_counter() - t0)
            best[cap] = shape[:, 0]
        same = np.mean(np.abs(best[20_000] - best[150_000]) < np.log10(1.01))
        print(f"| {name} | {n:,} | {int(np.median(lengths))} | {np.median(base):.0f} | "
              f"{rates[20_000]:,.0f} | {rates[150_000]:,.0f} | "
              f"{rates[20_000] / rates[150_000]:.2f} | {same:.1%} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
