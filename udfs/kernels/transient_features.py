"""The shape of a flare in brightness: what tells a supernova's type from its g and r light curve.

A dm-dt image and the periodogram describe how a star keeps changing; a transient changes once.
Its type shows in how fast it rises and fades, how long it stays bright, and how its colour
evolves (Ia: a fast rise, about 0.05-0.1 mag/day fall in g and a g - r that reddens by about
1 mag in 30 days; II: a slow, often flat decline; Ibc: redder and faster; SLSN: rise and fall
over months). These numbers are taken from the light curve as observed, without redshift and
without any absolute or apparent magnitude (a survey's depth must not become a cue), on the g
(channel 0) and r (channel 1) bands only. They are defined for any number of epochs, so the
same features serve a light curve cut to its first 3, 5 or 10 detections.

Features (columns of the output, in this order; see :data:`TRANSIENT_FEATURE_NAMES`), per band
``b`` in g, r (times in days, relative to the band's own brightest epoch, the "peak"):

- ``has_b``: 1 if the band has an epoch, else 0 (and every feature of the band is 0);
- ``log_epochs_b``: log10(1 + epochs);
- ``amplitude_b_mag``: faintest minus brightest magnitude;
- ``rise_days_b``, ``fall_days_b``: from the first epoch to the peak, from the peak to the last;
- ``rise_rate_b``: magnitudes gained per day from the first epoch to the peak (0 if the peak is
  the first epoch);
- ``fall_rate_0_20_b``, ``fall_rate_20_60_b``, ``fall_rate_60_b``: least-squares slope of the
  magnitude, mag/day, over 0-20, 20-60 and 60+ days after the peak, each with ``has_...``
  (slopes need two epochs that far apart: 2, 10 and 20 days);
- ``bright_days_b``: days between the first and last epoch within 1 mag of the peak;
- ``von_neumann_b``: sum of squared successive differences over (n - 1) times the variance
  (small for a smooth rise and fall, about 2 for noise or an unresolved variable), clipped to 4;
- ``before_peak_b``: fraction of the band's epochs before its peak.

And of both bands (``T0``: the r peak, else the g one):

- ``colour_peak_mag``, ``colour_15_mag``, ``colour_40_mag``: median g - r of epoch pairs within
  1.5 days of each other, at -10..+5, +5..+25 and +25..+60 days from T0, each with ``has_...``;
- ``peak_lag_days``: g peak minus r peak (0 unless both bands are there);
- ``log_span_days``: log10(1 + last epoch - first epoch), all bands;
- ``log_epochs``: log10(1 + epochs), all bands.

Every slope and duration is clipped to a physical range, so that one odd epoch cannot dominate.
"""

from __future__ import annotations

import numba as nb
import numpy as np
import numpy.typing as npt

_BANDS = ("g", "r")
_PER_BAND = (
    "has",
    "log_epochs",
    "amplitude_{}_mag",
    "rise_days",
    "fall_days",
    "rise_rate",
    "fall_rate_0_20",
    "has_fall_rate_0_20",
    "fall_rate_20_60",
    "has_fall_rate_20_60",
    "fall_rate_60",
    "has_fall_rate_60",
    "bright_days",
    "von_neumann",
    "before_peak",
)
N_PER_BAND = len(_PER_BAND)


def _band_name(template: str, band: str) -> str:
    return template.format(band) if "{}" in template else f"{template}_{band}"


#: Phases (days from T0) at which each band's magnitude below its peak is interpolated.
_PHASES_DAYS = (-20.0, -10.0, -5.0, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 60.0, 90.0)
#: Phases at which g - r is interpolated.
_COLOUR_PHASES_DAYS = (-5.0, 0.0, 10.0, 20.0, 30.0, 45.0)
#: Interpolation only between epochs at most this far apart (days), or this close to one.
_MAX_GAP_DAYS = 20.0
_NEAR_DAYS = 3.0


def _phase_name(phase: float) -> str:
    return f"{'m' if phase < 0 else 'p'}{abs(int(phase))}"


TRANSIENT_FEATURE_NAMES: tuple[str, ...] = (
    *[_band_name(name, band) for band in _BANDS for name in _PER_BAND],
    "colour_peak_mag",
    "has_colour_peak",
    "colour_15_mag",
    "has_colour_15",
    "colour_40_mag",
    "has_colour_40",
    "peak_lag_days",
    "log_span_days",
    "log_epochs",
    *[
        f"{kind}_{band}_{_phase_name(p)}"
        for band in _BANDS
        for p in _PHASES_DAYS
        for kind in ("dmag", "has_dmag")
    ],
    *[
        f"{kind}_{_phase_name(p)}"
        for p in _COLOUR_PHASES_DAYS
        for kind in ("colour_gr", "has_colour_gr")
    ],
)
N_TRANSIENT_FEATURES = len(TRANSIENT_FEATURE_NAMES)
_CROSS = 2 * N_PER_BAND
_PHASE_BASE = _CROSS + 9
_COLOUR_BASE = _PHASE_BASE + 2 * len(_BANDS) * len(_PHASES_DAYS)
#: Fall-rate windows after the peak (days) and the span of epochs a slope needs in each.
_WINDOWS = ((0.0, 20.0, 2.0), (20.0, 60.0, 10.0), (60.0, 1e9, 20.0))
#: Colour windows around T0 (days).
_COLOUR_WINDOWS = ((-10.0, 5.0), (5.0, 25.0), (25.0, 60.0))
#: Largest |rate| kept, mag/day, and longest duration kept, days.
_MAX_RATE = 2.0
_MAX_DAYS = 3000.0
#: Epochs of two bands closer than this (days) make a colour pair.
_PAIR_DAYS = 1.5


@nb.njit(cache=True, nogil=True)
def _slope(t, mag, lo, hi, min_span):
    """Least-squares dmag/dt of the epochs with lo <= t < hi; (slope, 1) or (0, 0)."""
    n = 0
    st = 0.0
    sm = 0.0
    tmin = 1e300
    tmax = -1e300
    for i in range(t.size):
        if lo <= t[i] < hi:
            n += 1
            st += t[i]
            sm += mag[i]
            tmin = min(tmin, t[i])
            tmax = max(tmax, t[i])
    if n < 2 or tmax - tmin < min_span:
        return 0.0, 0.0
    mt = st / n
    mm = sm / n
    num = 0.0
    den = 0.0
    for i in range(t.size):
        if lo <= t[i] < hi:
            num += (t[i] - mt) * (mag[i] - mm)
            den += (t[i] - mt) ** 2
    if den <= 0.0:
        return 0.0, 0.0
    return min(max(num / den, -_MAX_RATE), _MAX_RATE), 1.0


@nb.njit(cache=True, nogil=True)
def _one_band(t, mag, out, base):
    """The per-band features of one band's epochs (time-ordered), into out[base:]; its peak."""
    n = t.size
    if n == 0:
        return np.nan
    peak = 0
    for i in range(n):
        if mag[i] < mag[peak]:
            peak = i
    t_peak = t[peak]
    out[base + 0] = 1.0
    out[base + 1] = np.log10(1.0 + n)
    out[base + 2] = mag.max() - mag[peak]
    rise = t_peak - t[0]
    out[base + 3] = min(rise, _MAX_DAYS)
    out[base + 4] = min(t[n - 1] - t_peak, _MAX_DAYS)
    if rise > 0.0:
        out[base + 5] = min((mag[0] - mag[peak]) / max(rise, 1.0), _MAX_RATE)
    rel = t - t_peak
    for w in range(len(_WINDOWS)):
        lo, hi, span = _WINDOWS[w]
        slope, has = _slope(rel, mag, lo, hi, span)
        out[base + 6 + 2 * w] = slope
        out[base + 7 + 2 * w] = has
    first = 1e300
    last = -1e300
    for i in range(n):
        if mag[i] <= mag[peak] + 1.0:
            first = min(first, t[i])
            last = max(last, t[i])
    out[base + 12] = min(last - first, _MAX_DAYS)
    if n >= 3:
        mean = mag.mean()
        var = 0.0
        for i in range(n):
            var += (mag[i] - mean) ** 2
        succ = 0.0
        for i in range(n - 1):
            succ += (mag[i + 1] - mag[i]) ** 2
        out[base + 13] = min(succ / var, 4.0) if var > 0.0 else 2.0
    else:
        out[base + 13] = 2.0
    out[base + 14] = peak / n
    return t_peak


@nb.njit(cache=True, nogil=True)
def _colour(tg, mg, tr, mr, lo, hi):
    """Median g - r of pairs within _PAIR_DAYS, with the g epoch in [lo, hi); (colour, has)."""
    values = np.empty(tg.size)
    k = 0
    j = 0
    for i in range(tg.size):
        if not lo <= tg[i] < hi:
            continue
        # The r epochs are time-ordered: advance to the first one near this g epoch.
        while j < tr.size and tr[j] < tg[i] - _PAIR_DAYS:
            j += 1
        best = -1
        for q in range(j, tr.size):
            if tr[q] > tg[i] + _PAIR_DAYS:
                break
            if best < 0 or abs(tr[q] - tg[i]) < abs(tr[best] - tg[i]):
                best = q
        if best >= 0:
            values[k] = mg[i] - mr[best]
            k += 1
    if k == 0:
        return 0.0, 0.0
    return min(max(np.median(values[:k]), -3.0), 3.0), 1.0


@nb.njit(cache=True, nogil=True)
def _interpolate(t, mag, when):
    """The magnitude at ``when``, linear in time: (mag, 1), or (0, 0) without support."""
    n = t.size
    if n == 0:
        return 0.0, 0.0
    j = np.searchsorted(t, when)
    if j < n and t[j] == when:
        return mag[j], 1.0
    if 0 < j < n and t[j] - t[j - 1] <= _MAX_GAP_DAYS:
        w = (when - t[j - 1]) / (t[j] - t[j - 1])
        return mag[j - 1] + w * (mag[j] - mag[j - 1]), 1.0
    if j < n and t[j] - when <= _NEAR_DAYS:
        return mag[j], 1.0
    if j > 0 and when - t[j - 1] <= _NEAR_DAYS:
        return mag[j - 1], 1.0
    return 0.0, 0.0


@nb.njit(cache=True, nogil=True)
def _one_lightcurve(t, mag, channel, out):
    n = t.size
    if n == 0:
        return
    ng = 0
    nr = 0
    for i in range(n):
        if channel[i] == 0:
            ng += 1
        elif channel[i] == 1:
            nr += 1
    tg = np.empty(ng)
    mg = np.empty(ng)
    tr = np.empty(nr)
    mr = np.empty(nr)
    a = 0
    b = 0
    for i in range(n):
        if channel[i] == 0:
            tg[a] = t[i]
            mg[a] = mag[i]
            a += 1
        elif channel[i] == 1:
            tr[b] = t[i]
            mr[b] = mag[i]
            b += 1
    peak_g = _one_band(tg, mg, out, 0)
    peak_r = _one_band(tr, mr, out, N_PER_BAND)
    t0 = peak_r if nr > 0 else peak_g
    if ng > 0 and nr > 0:
        for w in range(len(_COLOUR_WINDOWS)):
            lo, hi = _COLOUR_WINDOWS[w]
            colour, has = _colour(tg, mg, tr, mr, t0 + lo, t0 + hi)
            out[_CROSS + 2 * w] = colour
            out[_CROSS + 2 * w + 1] = has
        out[_CROSS + 6] = min(max(peak_g - peak_r, -_MAX_DAYS), _MAX_DAYS)
    if ng + nr > 0:
        lo = 1e300
        hi = -1e300
        for i in range(n):
            if channel[i] <= 1:
                lo = min(lo, t[i])
                hi = max(hi, t[i])
        out[_CROSS + 7] = np.log10(1.0 + hi - lo)
    out[_CROSS + 8] = np.log10(1.0 + ng + nr)
    if ng + nr == 0:
        return
    base = _PHASE_BASE
    for tb, mb in ((tg, mg), (tr, mr)):
        peak_mag = mb.min() if mb.size else 0.0
        for p in range(len(_PHASES_DAYS)):
            value, has = _interpolate(tb, mb, t0 + _PHASES_DAYS[p])
            out[base] = min(max(value - peak_mag, -1.0), 5.0) if has else 0.0
            out[base + 1] = has
            base += 2
    if ng > 0 and nr > 0:
        for p in range(len(_COLOUR_PHASES_DAYS)):
            when = t0 + _COLOUR_PHASES_DAYS[p]
            g, has_g = _interpolate(tg, mg, when)
            r, has_r = _interpolate(tr, mr, when)
            if has_g and has_r:
                out[_COLOUR_BASE + 2 * p] = min(max(g - r, -3.0), 3.0)
                out[_COLOUR_BASE + 2 * p + 1] = 1.0


@nb.njit(cache=True, parallel=True)
def _kernel(t, mag, channel, offsets, n_features):
    n_lc = offsets.size - 1
    out = np.zeros((n_lc, n_features), np.float32)
    for k in nb.prange(n_lc):
        lo, hi = offsets[k], offsets[k + 1]
        row = np.zeros(n_features)
        _one_lightcurve(t[lo:hi], mag[lo:hi], channel[lo:hi], row)
        for j in range(n_features):
            out[k, j] = row[j]
    return out


def transient_features(
    t: npt.ArrayLike, mag: npt.ArrayLike, channel: npt.ArrayLike, offsets: npt.ArrayLike
) -> npt.NDArray[np.float32]:
    """The :data:`TRANSIENT_FEATURE_NAMES` of every light curve.

    Parameters
    ----------
    t : float array, shape (n_epochs,)
        Times, days (float64), in time order within each light curve.
    mag : float array, shape (n_epochs,)
        Magnitudes, mag.
    channel : int array, shape (n_epochs,)
        Band channel: 0 g, 1 r (other channels are left out).
    offsets : int array, shape (n_lc + 1,)
        Light curve k is ``[offsets[k]:offsets[k + 1]]``.

    Returns
    -------
    float32 array, shape (n_lc, N_TRANSIENT_FEATURES)
        All zeros for a light curve without g or r epochs.
    """
    t = np.ascontiguousarray(t, dtype=np.float64)
    mag = np.ascontiguousarray(mag, dtype=np.float64)
    channel = np.ascontiguousarray(channel, dtype=np.int64)
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    if not t.shape == mag.shape == channel.shape:
        raise ValueError("transient_features: t, mag and channel must have the same shape")
    if offsets.ndim != 1 or offsets.size < 1 or offsets[0] != 0 or offsets[-1] != t.size:
        raise ValueError("transient_features: offsets must start at 0 and end at len(t)")
    if np.any(np.diff(offsets) < 0):
        raise ValueError("transient_features: offsets must be non-decreasing")
    if not (np.isfinite(t).all() and np.isfinite(mag).all()):
        raise ValueError("transient_features: t and mag must be finite")
    return _kernel(t, mag, channel, offsets, N_TRANSIENT_FEATURES)
