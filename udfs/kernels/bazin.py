"""A Bazin fit per band: a flare's rise and decline times from its flux (Bazin et al. 2009).

The model, in flux relative to the band's brightest epoch (so no magnitude goes in):

    f(t) = A exp(-(t - t0) / tau_fall) / (1 + exp(-(t - t0) / tau_rise)) + B

is fitted by weighted least squares (weights from the quoted errors): A and B linearly for
every (t0, tau_rise, tau_fall) of a fixed grid, the best grid point kept. A grid, not a
gradient search, because it cannot diverge or stop in a local minimum on three sparse epochs,
and its cost is fixed. The times are the supernova's own (Ia: tau_rise about 3-5 days,
tau_fall about 20-40; II: a slow, long fall; SLSN: both over months), and they complement the
shape numbers of :mod:`udfs.kernels.transient_features`, which read the epochs directly.

Features per band ``b`` in g (channel 0), r (channel 1); see :data:`BAZIN_FEATURE_NAMES`:

- ``has_bazin_b``: 1 if the band has at least :data:`MIN_EPOCHS` epochs, else 0 (and the
  band's other features are 0);
- ``bazin_log_tau_rise_b``, ``bazin_log_tau_fall_b``: log10 of the times, days;
- ``bazin_peak_offset_b_days``: the model's peak minus the brightest epoch's time, days;
- ``bazin_baseline_b``: B / A (the flux left once the flare is over), clipped to [-1, 1];
- ``bazin_log_chi2_b``: log10(1 + chi2 per degree of freedom) of the best fit;
- ``bazin_gain_b``: 1 - chi2 of the fit / chi2 of a constant flux (how much a flare explains).
"""

from __future__ import annotations

import numba as nb
import numpy as np
import numpy.typing as npt

#: Fewest epochs a band needs to be fitted (four parameters, one of them free in the grid).
MIN_EPOCHS = 4
_BANDS = ("g", "r")
_PER_BAND = (
    "has_bazin_{}",
    "bazin_log_tau_rise_{}",
    "bazin_log_tau_fall_{}",
    "bazin_peak_offset_{}_days",
    "bazin_baseline_{}",
    "bazin_log_chi2_{}",
    "bazin_gain_{}",
)
BAZIN_FEATURE_NAMES: tuple[str, ...] = tuple(n.format(b) for b in _BANDS for n in _PER_BAND)
N_BAZIN_FEATURES = len(BAZIN_FEATURE_NAMES)
N_PER_BAND = len(_PER_BAND)

#: The grid: t0 relative to the brightest epoch (days), tau_rise and tau_fall (days).
T0_OFFSETS_DAYS = np.array([-40.0, -25.0, -16.0, -10.0, -6.0, -3.0, -1.0, 1.0, 4.0, 8.0])
TAU_RISE_DAYS = np.geomspace(0.5, 60.0, 9)
TAU_FALL_DAYS = np.geomspace(3.0, 600.0, 11)
#: Error floor of a relative flux (ZTF's calibration, about 1%).
_FLUX_ERROR_FLOOR = 0.01
_MAX_OFFSET_DAYS = 200.0


@nb.njit(cache=True, nogil=True)
def _fit_band(t, mag, magerr, out, base, t0s, rises, falls):
    n = t.size
    if n < MIN_EPOCHS:
        return
    peak = 0
    for i in range(n):
        if mag[i] < mag[peak]:
            peak = i
    t_peak = t[peak]
    flux = np.empty(n)
    w = np.empty(n)
    for i in range(n):
        flux[i] = 10.0 ** (-0.4 * (mag[i] - mag[peak]))
        sigma = max(0.921034 * flux[i] * magerr[i], _FLUX_ERROR_FLOOR)
        w[i] = 1.0 / (sigma * sigma)
    # The constant model's chi2, the yardstick of the gain.
    sw = 0.0
    swf = 0.0
    for i in range(n):
        sw += w[i]
        swf += w[i] * flux[i]
    mean = swf / sw
    chi2_flat = 0.0
    for i in range(n):
        chi2_flat += w[i] * (flux[i] - mean) ** 2
    # The two exponentials factor into a per-epoch part (once per time scale) and a per-t0
    # scalar: exp(-(t - t0) / tau) = exp(-(t - t_peak) / tau) * exp((t0 - t_peak) / tau). So the
    # grid's inner loop has no exp, and chi2 comes from the sums (one pass per grid point).
    fall_part = np.empty((falls.size, n))
    rise_part = np.empty((rises.size, n))
    for c_ in range(falls.size):
        for i in range(n):
            fall_part[c_, i] = np.exp(min(-(t[i] - t_peak) / falls[c_], 700.0))
    for b_ in range(rises.size):
        for i in range(n):
            rise_part[b_, i] = np.exp(min(-(t[i] - t_peak) / rises[b_], 700.0))
    swff = 0.0
    for i in range(n):
        swff += w[i] * flux[i] * flux[i]
    best = 1e300
    best_a = 0.0
    best_b = 0.0
    best_t0 = 0.0
    best_rise = 0.0
    best_fall = 0.0
    for a_ in range(t0s.size):
        t0 = t_peak + t0s[a_]
        for b_ in range(rises.size):
            rise = rises[b_]
            rise_scale = np.exp(t0s[a_] / rise)
            for c_ in range(falls.size):
                fall = falls[c_]
                if fall <= rise:
                    continue
                fall_scale = np.exp(t0s[a_] / fall)
                # Weighted linear least squares of flux = A s + B.
                sws = 0.0
                swss = 0.0
                swsf = 0.0
                for i in range(n):
                    # Where (t - t0) / rise < -50 the rise term is 0 (and the parts may be huge).
                    if t[i] - t0 <= -50.0 * rise:
                        continue
                    s = fall_part[c_, i] * fall_scale / (1.0 + rise_part[b_, i] * rise_scale)
                    ws = w[i] * s
                    sws += ws
                    swss += ws * s
                    swsf += ws * flux[i]
                det = sw * swss - sws * sws
                if det <= 1e-12 * sw * swss:
                    continue
                amp = (sw * swsf - sws * swf) / det
                if amp <= 0.0:
                    continue
                base_ = (swf - amp * sws) / sw
                chi2 = (swff - 2.0 * amp * swsf - 2.0 * base_ * swf + amp * amp * swss
                        + 2.0 * amp * base_ * sws + base_ * base_ * sw)  # fmt: skip
                if chi2 < best:
                    best, best_a, best_b = chi2, amp, base_
                    best_t0, best_rise, best_fall = t0, rise, fall
    best = max(best, 0.0)
    if best_a == 0.0:
        return
    out[base + 0] = 1.0
    out[base + 1] = np.log10(best_rise)
    out[base + 2] = np.log10(best_fall)
    # The model's peak (the grid keeps tau_fall > tau_rise, so the logarithm is defined).
    t_max = best_t0 + best_rise * np.log(best_fall / best_rise - 1.0)
    out[base + 3] = min(max(t_max - t_peak, -_MAX_OFFSET_DAYS), _MAX_OFFSET_DAYS)
    out[base + 4] = min(max(best_b / best_a, -1.0), 1.0)
    out[base + 5] = np.log10(1.0 + best / max(n - 4, 1))
    out[base + 6] = 1.0 - best / chi2_flat if chi2_flat > 0.0 else 0.0


@nb.njit(cache=True, parallel=True)
def _kernel(t, mag, magerr, channel, offsets, t0s, rises, falls):
    n_lc = offsets.size - 1
    out = np.zeros((n_lc, N_BAZIN_FEATURES), np.float32)
    for k in nb.prange(n_lc):
        lo, hi = offsets[k], offsets[k + 1]
        row = np.zeros(N_BAZIN_FEATURES)
        for band in range(2):
            keep = channel[lo:hi] == band
            _fit_band(t[lo:hi][keep], mag[lo:hi][keep], magerr[lo:hi][keep], row,
                      band * N_PER_BAND, t0s, rises, falls)  # fmt: skip
        for j in range(N_BAZIN_FEATURES):
            out[k, j] = row[j]
    return out


def bazin_features(
    t: npt.ArrayLike,
    mag: npt.ArrayLike,
    magerr: npt.ArrayLike,
    channel: npt.ArrayLike,
    offsets: npt.ArrayLike,
) -> npt.NDArray[np.float32]:
    """The :data:`BAZIN_FEATURE_NAMES` of every light curve.

    Parameters
    ----------
    t : float array, shape (n_epochs,)
        Times, days (float64), in time order within each light curve.
    mag, magerr : float arrays, shape (n_epochs,)
        Magnitudes and their errors, mag.
    channel : int array, shape (n_epochs,)
        Band channel: 0 g, 1 r (other channels are left out).
    offsets : int array, shape (n_lc + 1,)
        Light curve k is ``[offsets[k]:offsets[k + 1]]``.

    Returns
    -------
    float32 array, shape (n_lc, N_BAZIN_FEATURES)
    """
    t = np.ascontiguousarray(t, dtype=np.float64)
    mag = np.ascontiguousarray(mag, dtype=np.float64)
    magerr = np.ascontiguousarray(magerr, dtype=np.float64)
    channel = np.ascontiguousarray(channel, dtype=np.int64)
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    if not t.shape == mag.shape == magerr.shape == channel.shape:
        raise ValueError("bazin_features: t, mag, magerr and channel must have the same shape")
    if offsets.ndim != 1 or offsets.size < 1 or offsets[0] != 0 or offsets[-1] != t.size:
        raise ValueError("bazin_features: offsets must start at 0 and end at len(t)")
    if not (np.isfinite(t).all() and np.isfinite(mag).all() and np.isfinite(magerr).all()):
        raise ValueError("bazin_features: t, mag and magerr must be finite")
    return _kernel(t, mag, magerr, channel, offsets, T0_OFFSETS_DAYS, TAU_RISE_DAYS, TAU_FALL_DAYS)
