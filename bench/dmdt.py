"""dm-dt pair counts: varsky's numba kernel side by side with light-curve's DmDt, in one run.

Same light curves (ZTF-like: three seasons of nightly to 3-day revisits around MJD 58500, float64
times), same grid (Mahabal et al. 2017), counts only (no normalisation). light-curve runs in its
binary-search mode ('asis') with n_jobs=1; varsky runs with numba set to 1 thread, then 2. Reports
light curves per second and nanoseconds per pair (n(n-1)/2 pairs per light curve), best of
--repeats, and checks that both give the same counts.

    .venv/bin/python bench/dmdt.py [--repeats 5] [--pairs 2e7] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numba
import numpy as np

from udfs.kernels.dmdt import DmDtGrid, dmdt_counts

EPOCHS = (50, 200, 500, 1000)


def ztf_like_batch(n_epochs: int, n_lc: int, rng: np.random.Generator):
    """Flat (t days float64, mag, offsets) of n_lc light curves of n_epochs each."""
    nights = np.concatenate([np.arange(s, s + 240) for s in (58300, 58665, 59030)])
    t = np.empty((n_lc, n_epochs))
    for k in range(n_lc):
        chosen = np.sort(rng.choice(nights, n_epochs, replace=n_epochs > nights.size))
        # Same-night revisits minutes to an hour apart, as ZTF's g/r pairs.
        t[k] = chosen + 0.15 + rng.uniform(0, 0.3, n_epochs)
    t.sort(axis=1)
    mag = 18.0 + 0.3 * np.sin(t / 0.37) + rng.normal(0, 0.05, t.shape)
    offsets = np.arange(n_lc + 1, dtype=np.int64) * n_epochs
    return t.ravel(), mag.ravel(), offsets


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--pairs", type=float, default=2e7, help="pairs per measurement")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()

    import light_curve

    grid = DmDtGrid.mahabal2017()
    lc_dmdt = light_curve.DmDt(
        dt=grid.dt_edges_days, dm=grid.dm_edges_mag, dt_type="asis", dm_type="asis", n_jobs=1
    )
    rng = np.random.default_rng(2026)
    rows = []
    for n in EPOCHS:
        pairs_per_lc = n * (n - 1) // 2
        n_lc = max(20, int(args.pairs / pairs_per_lc))
        t, mag, offsets = ztf_like_batch(n, n_lc, rng)
        lcs = [(t[a:b], mag[a:b]) for a, b in zip(offsets[:-1], offsets[1:], strict=True)]

        numba.set_num_threads(1)
        ours = dmdt_counts(t, mag, offsets, grid)  # compiles or loads the cache
        theirs = lc_dmdt.points_many(lcs, sorted=True)
        if not np.array_equal(ours, np.swapaxes(theirs, 1, 2).astype(np.int32)):
            raise SystemExit(f"counts differ from light-curve at n = {n}")

        def ours_fn(t=t, mag=mag, offsets=offsets):
            return dmdt_counts(t, mag, offsets, grid)

        varsky_1 = best_of(ours_fn, args.repeats)
        lc_1 = best_of(lambda lcs=lcs: lc_dmdt.points_many(lcs, sorted=True), args.repeats)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        varsky_2 = best_of(ours_fn, args.repeats)
        n_pairs = pairs_per_lc * n_lc
        rows.append(
            {
                "n_epochs": n,
                "n_lc": n_lc,
                "varsky_lc_per_s": n_lc / varsky_1,
                "varsky_ns_per_pair": 1e9 * varsky_1 / n_pairs,
                "light_curve_lc_per_s": n_lc / lc_1,
                "light_curve_ns_per_pair": 1e9 * lc_1 / n_pairs,
                "speedup_vs_light_curve": lc_1 / varsky_1,
                "varsky_2_threads_lc_per_s": n_lc / varsky_2,
                "scaling_2_threads": varsky_1 / varsky_2,
            }
        )

    print(
        f"dm-dt counts, Mahabal 2017 grid, single thread unless stated; "
        f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"best of {args.repeats}"
    )
    header = (
        "| epochs | varsky lc/s | varsky ns/pair | light-curve lc/s | light-curve ns/pair "
        "| speed-up | varsky 2 threads lc/s | 2-thread scaling |"
    )
    print(header)
    print("|---:" * 8 + "|")
    for r in rows:
        print(
            f"| {r['n_epochs']} | {r['varsky_lc_per_s']:,.0f} | {r['varsky_ns_per_pair']:.2f} "
            f"| {r['light_curve_lc_per_s']:,.0f} | {r['light_curve_ns_per_pair']:.2f} "
            f"| {r['speedup_vs_light_curve']:.2f}x | {r['varsky_2_threads_lc_per_s']:,.0f} "
            f"| {r['scaling_2_threads']:.2f}x |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
