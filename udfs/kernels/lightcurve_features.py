"""Summary statistics of a light curve that a dm-dt image cannot hold: noise level and asymmetry.

A dm-dt image has no magnitude errors in it, so a star varying by twice its errors and a
constant star with large errors give the same image; nor does it tell brightenings from
fadings once epochs are far apart. These few statistics, computed from the same flat light
curves, carry that. Every band is centred on its own median first, so that bands with different
zero points can be pooled; statistics are then taken over all bands together.

Features (columns of the output, in this order; see :data:`FEATURE_NAMES`):

- ``log_chi2``: log10 of the reduced chi-square of the residuals about the band medians.
- ``log_spread_over_error``: log10 of the robust spread (1.4826 MAD) over the median magerr.
- ``log_amplitude_mag``: log10 of the 5-95 percentile range of the residuals, mag.
- ``von_neumann``: the von Neumann ratio of the residuals within each band, in time order, pooled
  (about 2 for white noise, small for smooth variation), clipped to [0, 4].
- ``skew``, ``excess_kurtosis``: of the residuals clipped to 10 robust sigmas, clipped to [-10, 10]
  and [-5, 50].
- ``bright_fraction``, ``faint_fraction``: fractions of epochs brighter / fainter than the median
  by more than 3 magerr.
- ``bright_tail``, ``faint_tail``: largest brightening / fading over the robust spread, log10(1 +
  x).
- ``log_epochs``, ``log_baseline_days``: log10 of the number of epochs and of the time span, days.
- ``colour_gr_mag``, ``colour_ri_mag``: differences of the band medians, mag (observed, not
  dereddened), 0 where a band is missing; ``has_gr``, ``has_ri`` say whether both bands are
  there (at least 3 epochs each).
- ``log_amplitude_ratio_rg``, ``log_amplitude_ratio_ir``: log10 of the ratio of the bands' 5-95
  percentile ranges (pulsators vary less in redder bands; eclipses are nearly grey), 0 where a
  band is missing.

Example
-------
>>> t = np.arange(50.0); mag = 15 + 0.01 * np.random.default_rng(0).standard_normal(50)
>>> f = lightcurve_features(t, mag, np.full(50, 0.01), np.zeros(50, np.int8), np.array([0, 50]), 3)
>>> f.shape
(1, 18)
"""

from __future__ import annotations

import numba as nb
import numpy as np
import numpy.typing as npt

FEATURE_NAMES: tuple[str, ...] = (
    "log_chi2",
    "log_spread_over_error",
    "log_amplitude_mag",
    "von_neumann",
    "skew",
    "excess_kurtosis",
    "bright_fraction",
    "faint_fraction",
    "bright_tail",
    "faint_tail",
    "log_epochs",
    "log_baseline_days",
    "colour_gr_mag",
    "colour_ri_mag",
    "has_gr",
    "has_ri",
    "log_amplitude_ratio_rg",
    "log_amplitude_ratio_ir",
)
N_FEATURES = len(FEATURE_NAMES)

_TINY = 1e-6


@nb.njit(cache=True, nogil=True)
def _one_lightcurve(t, mag, err, channel, n_channels, out):
    n = t.size
    resid = np.zeros(n)
    von_num = 0.0
    von_den = 0.0
    band_median = np.zeros(n_channels)
    band_range = np.zeros(n_channels)
    band_ok = np.zeros(n_channels, np.bool_)
    for c in range(n_channels):
        idx = np.flatnonzero(channel == c)
        if idx.size == 0:
            continue
        order = idx[np.argsort(t[idx])]
        m = mag[order]
        median = np.median(m)
        if idx.size >= 3:
            band_ok[c] = True
            band_median[c] = median
            band_range[c] = max(np.quantile(m, 0.95) - np.quantile(m, 0.05), 1e-3)
        for j in range(order.size):
            resid[order[j]] = m[j] - median
        if order.size >= 3:
            d = m - median
            mean = d.mean()
            for j in range(1, order.size):
                von_num += (d[j] - d[j - 1]) ** 2
            for j in range(order.size):
                von_den += (d[j] - mean) ** 2
    if n < 2:
        return
    safe_err = np.maximum(err, _TINY)
    chi2 = 0.0
    n_bright = 0
    n_faint = 0
    for i in range(n):
        z = resid[i] / safe_err[i]
        chi2 += z * z
        if z < -3.0:
            n_bright += 1
        elif z > 3.0:
            n_faint += 1
    chi2 /= max(n - n_channels, 1)
    spread = 1.4826 * np.median(np.abs(resid - np.median(resid)))
    spread = max(spread, _TINY)
    lo = np.quantile(resid, 0.05)
    hi = np.quantile(resid, 0.95)
    clipped = np.minimum(np.maximum(resid, -10.0 * spread), 10.0 * spread)
    mu = clipped.mean()
    m2 = ((clipped - mu) ** 2).mean()
    m3 = ((clipped - mu) ** 3).mean()
    m4 = ((clipped - mu) ** 4).mean()
    skew = m3 / m2**1.5 if m2 > 0 else 0.0
    kurt = m4 / (m2 * m2) - 3.0 if m2 > 0 else 0.0
    von = (von_num / (n - 1)) / (von_den / n) if von_den > 0 else 2.0
    out[0] = np.log10(max(chi2, 1e-3))
    out[1] = np.log10(spread / max(np.median(safe_err), _TINY))
    out[2] = np.log10(max(hi - lo, 1e-3))
    out[3] = min(max(von, 0.0), 4.0)
    out[4] = min(max(skew, -10.0), 10.0)
    out[5] = min(max(kurt, -5.0), 50.0)
    out[6] = n_bright / n
    out[7] = n_faint / n
    out[8] = np.log10(1.0 + max(-resid.min(), 0.0) / spread)
    out[9] = np.log10(1.0 + max(resid.max(), 0.0) / spread)
    out[10] = np.log10(n)
    out[11] = np.log10(max(t.max() - t.min(), 1e-3))
    # Bands 0, 1, 2 are g, r, i (catalogs.schema.BAND_NAMES).
    for j, (blue, red) in enumerate(((0, 1), (1, 2))):
        if red < n_channels and band_ok[blue] and band_ok[red]:
            out[12 + j] = band_median[blue] - band_median[red]
            out[14 + j] = 1.0
            out[16 + j] = np.log10(band_range[red] / band_range[blue])


@nb.njit(cache=True, parallel=True)
def _features_kernel(t, mag, err, channel, offsets, n_channels, n_features):
    n_lc = offsets.size - 1
    out = np.zeros((n_lc, n_features), np.float32)
    for k in nb.prange(n_lc):
        lo, hi = offsets[k], offsets[k + 1]
        row = np.zeros(n_features)
        _one_lightcurve(t[lo:hi], mag[lo:hi], err[lo:hi], channel[lo:hi], n_channels, row)
        for j in range(n_features):
            out[k, j] = row[j]
    return out


def lightcurve_features(
    t: npt.ArrayLike,
    mag: npt.ArrayLike,
    magerr: npt.ArrayLike,
    channel: npt.ArrayLike,
    offsets: npt.ArrayLike,
    n_channels: int,
) -> npt.NDArray[np.float32]:
    """The :data:`FEATURE_NAMES` of every light curve.

    Parameters
    ----------
    t : float array, shape (n_epochs,)
        Times, days (float64).
    mag, magerr : float arrays, shape (n_epochs,)
        Magnitudes and their 1-sigma errors, mag.
    channel : int array, shape (n_epochs,)
        Band channel, in [0, n_channels).
    offsets : int array, shape (n_lc + 1,)
        Light curve k is ``[offsets[k]:offsets[k + 1]]``.
    n_channels : int

    Returns
    -------
    float32 array, shape (n_lc, N_FEATURES)
        All zeros for a light curve with fewer than 2 epochs.
    """
    t = np.ascontiguousarray(t, dtype=np.float64)
    mag = np.ascontiguousarray(mag, dtype=np.float64)
    magerr = np.ascontiguousarray(magerr, dtype=np.float64)
    channel = np.ascontiguousarray(channel, dtype=np.int64)
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    if not (t.shape == mag.shape == magerr.shape == channel.shape):
        raise ValueError("lightcurve_features: t, mag, magerr and channel must have the same shape")
    if offsets.ndim != 1 or offsets.size < 1 or offsets[0] != 0 or offsets[-1] != t.size:
        raise ValueError("lightcurve_features: offsets must start at 0 and end at len(t)")
    if np.any(np.diff(offsets) < 0):
        raise ValueError("lightcurve_features: offsets must be non-decreasing")
    if channel.size and (channel.min() < 0 or channel.max() >= n_channels):
        raise ValueError(f"lightcurve_features: channel must be in [0, {n_channels})")
    if not (np.isfinite(t).all() and np.isfinite(mag).all() and np.isfinite(magerr).all()):
        raise ValueError("lightcurve_features: t, mag and magerr must be finite")
    return _features_kernel(t, mag, magerr, channel, offsets, int(n_channels), N_FEATURES)


def band_median_mags(
    mag: npt.ArrayLike, channel: npt.ArrayLike, offsets: npt.ArrayLike, n_channels: int
) -> npt.NDArray[np.float64]:
    """Median magnitude of each band of each light curve, mag; NaN where a band has no epoch.

    Returns
    -------
    float64 array, shape (n_lc, n_channels)
    """
    mag = np.asarray(mag, np.float64)
    channel = np.asarray(channel, np.int64)
    offsets = np.asarray(offsets, np.int64)
    n_lc = offsets.size - 1
    out = np.full((n_lc, n_channels), np.nan)
    if not mag.size:
        return out
    key = np.repeat(np.arange(n_lc), np.diff(offsets)) * n_channels + channel
    order = np.lexsort((mag, key))
    sorted_key = key[order]
    starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]])
    ends = np.r_[starts[1:], sorted_key.size]
    values = mag[order]
    medians = 0.5 * (values[(starts + ends - 1) // 2] + values[(starts + ends) // 2])
    out.reshape(-1)[sorted_key[starts]] = medians
    return out
