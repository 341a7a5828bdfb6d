"""Lomb-Scargle periodograms: varsky's numba kernel side by side with astropy, in one run.

Same light curves (simulated, all classes, 20 to 1,000 epochs over 1 to 3 years), same data
(each band centred on its median and scaled by its robust spread, as varsky does), same linear
frequency grid per light curve (varsky's: periods 0.05 to 1,000 days, step
1 / (2 baseline), at most 20,000 frequencies), same classical power (no fitted mean). The peers
run one light curve at a time through astropy's ``LombScargle``: its direct sums (``cython``),
scipy's ``lombscargle`` (``scipy``) and the Press & Rybicki approximation (``fast``). varsky runs
with numba set to 1 thread, then all cores, and also bins the powers and fits the folded shape.
Reports light curves per second per core and how often each peer's highest peak lands on
varsky's best frequency (within one grid step).

    .venv/bin/python bench/periodogram.py [--objects-per-class 40] [--peer-objects 150]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numba
import numpy as np

# The kernel's own input scaling, so both sides see the same data.
from udfs.kernels.periodogram import (
    PeriodogramGrid,
    _standardised_residuals,
    binned_periodograms,
    frequency_grid,
)
from udfs.simulators.lightcurve_simulator import simulate_lightcurves

PEER_METHODS = ("cython", "scipy", "fast")


def standardised(t: np.ndarray, mag: np.ndarray, channel: np.ndarray) -> np.ndarray:
    """varsky's periodogram input: each band centred on its median, over its robust spread."""
    y = np.empty(mag.size)
    _standardised_residuals(t, mag, channel.astype(np.int64), 3, y)
    return y


def frequencies(baseline_days: float, grid: PeriodogramGrid) -> np.ndarray:
    """varsky's linear frequency grid (1/days) for one light curve."""
    f_lo, df, n = frequency_grid(
        baseline_days,
        grid.min_period_days,
        grid.max_period_days,
        grid.oversampling,
        grid.max_frequencies,
    )
    return f_lo + df * np.arange(n)


def time_varsky(sim, grid: PeriodogramGrid, threads: int, repeats: int) -> tuple[float, np.ndarray]:
    """Best seconds of ``repeats`` runs and the best periods (days)."""
    numba.set_num_threads(threads)
    args = (sim.t_hmjd, sim.mag, sim.channel, sim.offsets, grid, 3)
    binned_periodograms(*args)  # compile or load from cache
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        _, shape = binned_periodograms(*args)
        best = min(best, time.perf_counter() - t0)
    return best, 10.0 ** shape[:, 0].astype(np.float64)


def time_astropy(
    sim, grid: PeriodogramGrid, picked: np.ndarray, method: str
) -> tuple[float, np.ndarray]:
    """Seconds for the ``picked`` light curves, one at a time, and their best frequencies."""
    from astropy.timeseries import LombScargle

    best_f = np.zeros(picked.size)
    elapsed = 0.0
    for j, k in enumerate(picked):
        lo, hi = sim.offsets[k], sim.offsets[k + 1]
        t = sim.t_hmjd[lo:hi] - sim.t_hmjd[lo]
        y = standardised(t, sim.mag[lo:hi].astype(np.float64), sim.channel[lo:hi])
        freq = frequencies(float(t.max()), grid)
        t0 = time.perf_counter()
        power = LombScargle(t, y, fit_mean=False, center_data=True).power(
            freq, method=method, assume_regular_frequency=True
        )
        elapsed += time.perf_counter() - t0
        best_f[j] = freq[int(np.argmax(power))]
    return elapsed, best_f


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects-per-class", type=int, default=40)
    parser.add_argument("--peer-objects", type=int, default=150, help="light curves for astropy")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()

    grid = PeriodogramGrid()
    sim = simulate_lightcurves(args.objects_per_class, seed=args.seed)
    n_lc = sim.offsets.size - 1
    # Spread over the whole set, so the peers see every class.
    picked = np.unique(np.linspace(0, n_lc - 1, min(args.peer_objects, n_lc)).astype(int))
    n_peer = picked.size
    epochs = np.diff(sim.offsets)
    cores = os.cpu_count() or 1

    rows = []
    periods_1 = None
    for threads in (1, cores):
        seconds, periods = time_varsky(sim, grid, threads, args.repeats)
        periods_1 = periods if periods_1 is None else periods_1
        rows.append((f"varsky, numba {threads} thread(s)", n_lc, seconds, threads))
    agreement = {}
    for method in PEER_METHODS:
        seconds, best_f = time_astropy(sim, grid, picked, method)
        rows.append((f"astropy LombScargle '{method}', 1 thread", n_peer, seconds, 1))
        baselines = [np.ptp(sim.t_hmjd[sim.offsets[k] : sim.offsets[k + 1]]) for k in picked]
        step = np.array([np.diff(frequencies(float(b), grid)[:2])[0] for b in baselines])
        # varsky refines its best frequency within one grid step; allow that step.
        off = np.abs(best_f - 1.0 / periods_1[picked])
        agreement[method] = float(np.mean(off <= 1.01 * step))

    varsky_rate = rows[0][1] / rows[0][2]
    print(
        f"\n{n_lc:,} simulated light curves ({epochs.min()}-{epochs.max()} epochs, median "
        f"{int(np.median(epochs))}); astropy on {n_peer:,} of them; {cores} cores, "
        f"{platform.processor() or platform.machine()}"
    )
    print(
        "| periodogram | light curves | seconds | per second per core | varsky (1 thread) / this |"
    )
    print("|---|---:|---:|---:|---:|")
    for name, n, seconds, threads in rows:
        rate = n / seconds / threads
        print(f"| {name} | {n:,} | {seconds:.2f} | {rate:,.0f} | {varsky_rate / rate:.1f} |")
    for method, fraction in agreement.items():
        print(
            f"astropy '{method}': highest peak within one grid step of varsky's in {fraction:.1%}"
        )


if __name__ == "__main__":
    main()
