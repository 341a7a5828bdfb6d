"""Binned Lomb-Scargle periodograms: the period information a dm-dt image cannot hold.

A dm-dt image keeps how much a star changes over a time lag, but ZTF's nightly sampling folds
every period shorter than a day into the same lags, so RR Lyrae, contact binaries and delta
Scuti stars look alike. A periodogram keeps the period. Each light curve gets one vector: the
classical Lomb-Scargle power (with the time offset tau, mean-subtracted data) of all its bands
together, each band first centred on its median and scaled by its robust spread (so a band's
zero point or amplitude does not dominate), evaluated on a linear frequency grid of step
``1 / (oversampling * baseline)`` and reduced to the largest power within each of a fixed set of
log-spaced period bins. The vector has the same length for every light curve, so it can feed a
neural network beside the image. With it come a few numbers on the shape of the light curve
folded on the best period (relative Fourier amplitudes and phases, as in the classical RR Lyrae
and binary work), which tell a contact binary from an RRc star of the same period.

Times are float64 days and are taken relative to each light curve's first epoch before any
trigonometry, so float precision does not depend on the MJD.

Example
-------
>>> grid = PeriodogramGrid()
>>> t = np.sort(np.random.default_rng(1).uniform(0, 300, 200))
>>> mag = 15 + 0.3 * np.sin(2 * np.pi * t / 0.61)
>>> powers, shape = binned_periodograms(
...     t, mag, np.zeros(200, np.int8), np.array([0, 200]), grid, 3
... )
>>> float(grid.bin_centres_days[powers[0].argmax()]).__round__(2)
0.61
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numba as nb
import numpy as np
import numpy.typing as npt

#: Robust sigma of a band's residuals below which it counts as flat (mag).
_FLAT_MAG = 1e-6
#: Residuals are clipped to this many robust sigmas, so one outlier cannot make a peak.
_CLIP_SIGMA = 5.0
#: Harmonics of the Fourier fit at twice the best period.
_N_HARMONICS = 4
#: Names of the shape features :func:`binned_periodograms` returns with the powers.
SHAPE_FEATURE_NAMES: tuple[str, ...] = (
    "log_best_period_days",
    "best_power",
    *[f"relative_amplitude_{k}" for k in range(1, _N_HARMONICS + 1)],
    *[f"{f}_phi{k}1" for k in range(2, _N_HARMONICS + 1) for f in ("cos", "sin")],
    # phi_4 - 2 phi_2 of the same fit: the classical phi_21 at the best period itself. The
    # phi_k1 above are referred to the first harmonic of the doubled period, which is noise for
    # a pulsator (it repeats every best period), so they cannot hold a pulsator's shape.
    "cos_phi42",
    "sin_phi42",
    # Of the folded light curve's Fourier model at the best period (contact binaries: symmetric,
    # faint-skewed, equal minima; RRc stars of the same period: rise faster than they fade).
    "folded_skew",
    "rise_fraction",
    "log_doubling_f_ratio",
    "minima_depth_difference",
)
N_SHAPE_FEATURES = len(SHAPE_FEATURE_NAMES)
#: Shape features written by the Fourier fit at twice the period (after period and power).
_N_FOURIER = 3 * _N_HARMONICS
#: Phases at which the Fourier models are evaluated for the folded statistics.
_N_PHASES = 100
#: Reseed the float32 recurrence from float64 phases every this many steps (bounds its drift).
_RESEED_STEPS = 256


@dataclass(frozen=True)
class PeriodogramGrid:
    """Log-spaced period bins and the frequency sampling of the periodogram.

    Attributes
    ----------
    min_period_days, max_period_days : float
        Range of periods searched, days.
    n_bins : int
        Log-spaced period bins over the range.
    oversampling : float
        Frequency step is ``1 / (oversampling * baseline)``.
    max_frequencies : int
        Cap on the frequencies evaluated for one light curve (the step grows beyond it), which
        bounds the cost. 150,000 keeps the step at 1 / (2 x baseline) down to 0.05 d for
        baselines up to 10 years (CRTS: 8); a 20,000 cap made the step 6 times coarser than a
        peak's width on CRTS light curves, and the shipped model's mean recall on the real CRTS
        validation split went from 0.54 to 0.44 (before fine-tuning; README).
    """

    min_period_days: float = 0.05
    max_period_days: float = 1000.0
    n_bins: int = 64
    oversampling: float = 2.0
    max_frequencies: int = 150_000

    def __post_init__(self) -> None:
        if not 0 < self.min_period_days < self.max_period_days:
            raise ValueError("PeriodogramGrid: need 0 < min_period_days < max_period_days")
        if self.n_bins < 1 or self.max_frequencies < 2 or self.oversampling <= 0:
            raise ValueError(
                "PeriodogramGrid: need n_bins >= 1, max_frequencies >= 2 and oversampling > 0"
            )

    @property
    def period_edges_days(self) -> npt.NDArray[np.float64]:
        """Bin edges, days, increasing; shape (n_bins + 1,)."""
        return np.geomspace(self.min_period_days, self.max_period_days, self.n_bins + 1)

    @property
    def bin_centres_days(self) -> npt.NDArray[np.float64]:
        """Geometric bin centres, days."""
        edges = self.period_edges_days
        return np.sqrt(edges[:-1] * edges[1:])

    def to_dict(self) -> dict[str, float | int]:
        """JSON form (for model cards)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> PeriodogramGrid:
        """Inverse of :meth:`to_dict`: every field read as the type of its default."""
        return cls(**{f.name: type(f.default)(data[f.name]) for f in fields(cls)})


@nb.njit(cache=True, nogil=True)
def _standardised_residuals(t, mag, channel, n_channels, y):
    """Per band: (mag - median) / (1.4826 MAD), clipped; 0 for flat or single-epoch bands."""
    n = t.size
    for c in range(n_channels):
        count = 0
        for i in range(n):
            if channel[i] == c:
                count += 1
        if count == 0:
            continue
        values = np.empty(count)
        idx = np.empty(count, np.int64)
        j = 0
        for i in range(n):
            if channel[i] == c:
                values[j] = mag[i]
                idx[j] = i
                j += 1
        median = np.median(values)
        spread = 1.4826 * np.median(np.abs(values - median))
        if count < 2 or spread < _FLAT_MAG:
            for j in range(count):
                y[idx[j]] = 0.0
            continue
        for j in range(count):
            r = (values[j] - median) / spread
            y[idx[j]] = min(max(r, -_CLIP_SIGMA), _CLIP_SIGMA)


@nb.njit(cache=True, nogil=True)
def _power_from_sums(yc, ys, cc, cs, yy, n):
    """Normalised Lomb-Scargle power from the sums of y cos, y sin, cos^2, cos sin and y^2."""
    ss = n - cc
    # Time offset tau: tan(2 w tau) = sum sin 2wt / sum cos 2wt.
    two_tau = np.arctan2(2.0 * cs, cc - ss)
    ct = np.cos(0.5 * two_tau)
    st = np.sin(0.5 * two_tau)
    c2 = cc * ct * ct + 2.0 * cs * ct * st + ss * st * st
    s2 = ss * ct * ct - 2.0 * cs * ct * st + cc * st * st
    a = yc * ct + ys * st
    b = ys * ct - yc * st
    power = 0.0
    if c2 > 1e-12:
        power += a * a / c2
    if s2 > 1e-12:
        power += b * b / s2
    return power / yy


@nb.njit(cache=True, nogil=True, inline="always")
def _power_without_tau(yc, ys, cc, cs, yy, n):
    """The power of :func:`_power_from_sums` without its three trigonometric calls.

    The classical power with the time offset tau equals the least-squares power of
    a cos + b sin: (YC, YS) M^-1 (YC, YS)^T / yy with M = [[CC, CS], [CS, SS]], tau only
    diagonalising M. The tau form stays for a near-singular M (all phases aligned), where it
    drops the unsampled term. The float32 powers are the same as the tau form's.
    """
    ss = n - cc
    det = cc * ss - cs * cs
    if det > 1e-6 * n * n:
        return (ss * yc * yc - 2.0 * cs * yc * ys + cc * ys * ys) / (det * yy)
    return _power_from_sums(yc, ys, cc, cs, yy, n)


@nb.njit(cache=True, nogil=True)
def _bin_edge_frequency(j, log_p_min, inv_log_step):
    """Frequency (1/days) just below the high-frequency edge of period bin ``j``."""
    return np.exp(-(log_p_min + j / inv_log_step)) * (1.0 - 1e-9)


@nb.njit(cache=True, nogil=True, fastmath=True)
def _binned_power(t, y, f_lo, df, n_freq, log_p_min, inv_log_step, n_bins, out):
    """Largest Lomb-Scargle power per log-period bin; ``t`` relative to the first epoch."""
    n = t.size
    mean = 0.0
    for i in range(n):
        mean += y[i]
    mean /= n
    yy = 0.0
    for i in range(n):
        y[i] -= mean
        yy += y[i] * y[i]
    best_f = 0.0
    best_power = 0.0
    if yy <= 0.0:
        return best_f, best_power
    # The phase recurrence and its sums run in float32: twice the SIMD lanes, 1.7 times faster
    # on 290-epoch CRTS light curves. The phases themselves (2 pi f t) are float64 and reseed
    # the recurrence every _RESEED_STEPS, so the powers move by < 1e-5 (bench/periodogram.py).
    y32 = y.astype(np.float32)
    c = np.empty(n, np.float32)
    s = np.empty(n, np.float32)
    cd = np.empty(n, np.float32)
    sd = np.empty(n, np.float32)
    # The reseeding phases advance by _RESEED_STEPS frequency steps in float64 (rounding stays
    # near 1e-13 over the grid): cos and sin of every phase cost 11% of the search on CRTS.
    c64 = np.empty(n)
    s64 = np.empty(n)
    c_jump = np.empty(n)
    s_jump = np.empty(n)
    for i in range(n):
        step = 2.0 * np.pi * df * t[i]
        cd[i] = np.cos(step)
        sd[i] = np.sin(step)
        c_jump[i] = np.cos(_RESEED_STEPS * step)
        s_jump[i] = np.sin(_RESEED_STEPS * step)
        c64[i] = np.cos(2.0 * np.pi * f_lo * t[i])
        s64[i] = np.sin(2.0 * np.pi * f_lo * t[i])
    # The frequency rises, so the period bin only falls: take a log only near a bin edge.
    j = int((np.log(1.0 / f_lo) - log_p_min) * inv_log_step)
    f_next_log = _bin_edge_frequency(j, log_p_min, inv_log_step)
    for k in range(n_freq):
        f = f_lo + k * df
        if k % _RESEED_STEPS == 0:
            for i in range(n):
                c[i] = c64[i]
                s[i] = s64[i]
                advanced = c64[i] * c_jump[i] - s64[i] * s_jump[i]
                s64[i] = s64[i] * c_jump[i] + c64[i] * s_jump[i]
                c64[i] = advanced
        yc = np.float32(0.0)
        ys = np.float32(0.0)
        cc = np.float32(0.0)
        cs = np.float32(0.0)
        for i in range(n):
            ci = c[i]
            si = s[i]
            yc += y32[i] * ci
            ys += y32[i] * si
            cc += ci * ci
            cs += ci * si
            # Advance the phase by one frequency step.
            c[i] = ci * cd[i] - si * sd[i]
            s[i] = si * cd[i] + ci * sd[i]
        power = _power_without_tau(
            np.float64(yc), np.float64(ys), np.float64(cc), np.float64(cs), yy, n
        )
        if f >= f_next_log:
            j = int((np.log(1.0 / f) - log_p_min) * inv_log_step)
            f_next_log = _bin_edge_frequency(j, log_p_min, inv_log_step)
            if f >= f_next_log:  # within rounding of the edge: the next frequency takes a log too
                f_next_log = f + 0.5 * df
        if 0 <= j < n_bins and power > out[j]:
            out[j] = power
        if power > best_power:
            best_power = power
            best_f = f
    return best_f, best_power


@nb.njit(cache=True, nogil=True)
def _power_at(t, y, frequency):
    """Lomb-Scargle power of mean-subtracted ``y`` at one frequency (direct sums)."""
    yc = 0.0
    ys = 0.0
    cc = 0.0
    cs = 0.0
    yy = 0.0
    n = t.size
    for i in range(n):
        phase = 2.0 * np.pi * frequency * t[i]
        c = np.cos(phase)
        s = np.sin(phase)
        yc += y[i] * c
        ys += y[i] * s
        cc += c * c
        cs += c * s
        yy += y[i] * y[i]
    if yy <= 0.0:
        return 0.0
    return _power_from_sums(yc, ys, cc, cs, yy, n)


@nb.njit(cache=True, nogil=True)
def _refine_peak(t, y, frequency, df):
    """The best frequency within one grid step of ``frequency`` (steps of df / 20).

    The grid can miss the top of a peak by half a step, which over a long baseline puts the
    folded light curve out of phase; the Fourier shape needs the peak itself.
    """
    best_f = frequency
    best = _power_at(t, y, frequency)
    for j in range(-20, 21):
        f = frequency + j * df / 20.0
        if f <= 0.0 or j == 0:
            continue
        p = _power_at(t, y, f)
        if p > best:
            best = p
            best_f = f
    return best_f


@nb.njit(cache=True, nogil=True)
def _fourier_fit(t, y, frequency, n_harmonics, constant):
    """Least-squares Fourier series at ``frequency``: (coefficients, residual sum of squares).

    Coefficients: [c0 if ``constant``], then cos and sin of each harmonic k = 1..n.
    """
    first = 1 if constant else 0
    m = 2 * n_harmonics + first
    a = np.zeros((m, m))
    b = np.zeros(m)
    row = np.empty(m)
    if constant:
        row[0] = 1.0
    for i in range(t.size):
        for k in range(n_harmonics):
            phase = 2.0 * np.pi * (k + 1) * frequency * t[i]
            row[first + 2 * k] = np.cos(phase)
            row[first + 2 * k + 1] = np.sin(phase)
        for p in range(m):
            b[p] += row[p] * y[i]
            for q in range(m):
                a[p, q] += row[p] * row[q]
    for p in range(m):
        a[p, p] += 1e-9 * t.size  # keeps the system solvable when a harmonic is unsampled
    coef = np.linalg.solve(a, b)
    rss = 0.0
    for i in range(t.size):
        model = coef[0] if constant else 0.0
        for k in range(n_harmonics):
            phase = 2.0 * np.pi * (k + 1) * frequency * t[i]
            model += coef[first + 2 * k] * np.cos(phase) + coef[first + 2 * k + 1] * np.sin(phase)
        rss += (y[i] - model) ** 2
    return coef, rss


@nb.njit(cache=True, nogil=True)
def _fourier_shape(t, y, frequency, n_harmonics, out):
    """Least-squares Fourier series at ``frequency``: relative amplitudes and phases.

    Writes, for harmonics k = 1..n: A_k / sum(A), then for k = 2..n: cos and sin of
    phi_k - k phi_1 (the classical phase differences, independent of the time origin), then
    cos and sin of phi_4 - 2 phi_2 (n >= 4).
    """
    if t.size <= 2 * n_harmonics + 1 or frequency <= 0.0:
        return
    coef, _ = _fourier_fit(t, y, frequency, n_harmonics, False)
    amp = np.empty(n_harmonics)
    phi = np.empty(n_harmonics)
    total = 0.0
    for k in range(n_harmonics):
        amp[k] = np.hypot(coef[2 * k], coef[2 * k + 1])
        phi[k] = np.arctan2(coef[2 * k + 1], coef[2 * k])
        total += amp[k]
    if total <= 0.0:
        return
    for k in range(n_harmonics):
        out[k] = amp[k] / total
    for k in range(1, n_harmonics):
        d = phi[k] - (k + 1) * phi[0]
        out[n_harmonics + 2 * (k - 1)] = np.cos(d)
        out[n_harmonics + 2 * (k - 1) + 1] = np.sin(d)
    if n_harmonics >= 4:
        d = phi[3] - 2.0 * phi[1]
        out[3 * n_harmonics - 2] = np.cos(d)
        out[3 * n_harmonics - 1] = np.sin(d)


@nb.njit(cache=True, nogil=True)
def _model_curve(coef, n_harmonics, n_phases):
    """A Fourier model (from :func:`_fourier_fit`) at ``n_phases`` phases over one period."""
    curve = np.empty(n_phases)
    for j in range(n_phases):
        value = coef[0]
        for k in range(n_harmonics):
            phase = 2.0 * np.pi * (k + 1) * j / n_phases
            value += coef[2 * k + 1] * np.cos(phase) + coef[2 * k + 2] * np.sin(phase)
        curve[j] = value
    return curve


@nb.njit(cache=True, nogil=True)
def _folded_statistics(t, y, frequency, out):
    """Shape of the folded light curve, from Fourier models at the best period and twice it.

    ``y`` is in magnitude units (larger is fainter). Writes:
    0. skewness of the 4-harmonic model over phase at the best period: a contact binary spends
       longer near maximum light than in its minima (positive), a pulsator is near 0 or negative;
    1. fraction of the period from minimum to maximum light (0.5 for a symmetric curve, about 0.3
       to 0.4 for RR Lyrae, which rise faster than they fade);
    2. log10(1 + F), F the variance ratio of the 8-harmonic fit at twice the period against the
       4-harmonic fit at the period (large when alternate cycles differ: unequal minima);
    3. depth difference of the two minima of the 8-harmonic model at twice the period, over its
       full range.
    """
    n = t.size
    if n <= 2 * 8 + 2 or frequency <= 0.0:
        return
    coef1, rss1 = _fourier_fit(t, y, frequency, 4, True)
    curve = _model_curve(coef1, 4, _N_PHASES)
    mean = curve.mean()
    m2 = ((curve - mean) ** 2).mean()
    if m2 <= 0.0:
        return
    out[0] = min(max(((curve - mean) ** 3).mean() / m2**1.5, -5.0), 5.0)
    faintest = np.argmax(curve)
    brightest = np.argmin(curve)
    out[1] = ((brightest - faintest) % _N_PHASES) / _N_PHASES
    coef2, rss2 = _fourier_fit(t, y, 0.5 * frequency, 8, True)
    if rss2 > 0.0:
        f_ratio = ((rss1 - rss2) / 8.0) / (rss2 / (n - 17))
        out[2] = np.log10(1.0 + max(f_ratio, 0.0))
    curve2 = _model_curve(coef2, 8, 2 * _N_PHASES)
    full_range = curve2.max() - curve2.min()
    if full_range > 0.0:
        start = np.argmax(curve2)
        # The other minimum: the faintest point half a cycle (of the doubled period) away, +-1/4.
        other = -np.inf
        for j in range(_N_PHASES // 2, 3 * _N_PHASES // 2):
            other = max(other, curve2[(start + j) % (2 * _N_PHASES)])
        out[3] = (curve2[start] - other) / full_range


@nb.njit(cache=True, nogil=True)
def frequency_grid(baseline_days, min_period_days, max_period_days, oversampling, max_frequencies):
    """The linear frequency grid of one light curve: (lowest frequency, step, count), 1/days.

    Step ``1 / (oversampling * baseline_days)`` from ``1 / max_period_days``, widened so that
    at most ``max_frequencies`` reach ``1 / min_period_days``.
    """
    f_lo = 1.0 / max_period_days
    f_hi = 1.0 / min_period_days
    df = 1.0 / (oversampling * baseline_days)
    n_freq = int((f_hi - f_lo) / df) + 1
    if n_freq > max_frequencies:
        n_freq = max_frequencies
        df = (f_hi - f_lo) / (max_frequencies - 1)
    return f_lo, df, n_freq


@nb.njit(cache=True, parallel=True)
def _periodogram_kernel(
    t, mag, channel, offsets, n_channels, p_min, p_max, n_bins, oversampling, max_freq
):
    n_lc = offsets.size - 1
    out = np.zeros((n_lc, n_bins), np.float32)
    shape = np.zeros((n_lc, N_SHAPE_FEATURES), np.float32)
    log_p_min = np.log(p_min)
    inv_log_step = n_bins / (np.log(p_max) - log_p_min)
    for k in nb.prange(n_lc):
        lo, hi = offsets[k], offsets[k + 1]
        if hi - lo < 3:
            continue
        tk = t[lo:hi] - t[lo]
        baseline = tk.max()
        if baseline <= 0.0:
            continue
        y = np.empty(hi - lo)
        _standardised_residuals(tk, mag[lo:hi], channel[lo:hi], n_channels, y)
        f_lo, df, n_freq = frequency_grid(baseline, p_min, p_max, oversampling, max_freq)
        row = np.zeros(n_bins)
        y_raw = y.copy()
        best_f, best_power = _binned_power(
            tk, y, f_lo, df, n_freq, log_p_min, inv_log_step, n_bins, row
        )
        for j in range(n_bins):
            out[k, j] = row[j]
        if best_f > 0.0:
            centred = y_raw - y_raw.mean()
            best_f = _refine_peak(tk, centred, best_f, df)
            fourier = np.zeros(N_SHAPE_FEATURES - 2)
            # Fit at twice the best period: an eclipsing binary's orbit is twice its LS period.
            _fourier_shape(tk, y_raw, 0.5 * best_f, _N_HARMONICS, fourier[:_N_FOURIER])
            _folded_statistics(tk, y_raw, best_f, fourier[_N_FOURIER:])
            shape[k, 0] = np.log10(1.0 / best_f)
            shape[k, 1] = best_power
            for j in range(fourier.size):
                shape[k, 2 + j] = fourier[j]
    return out, shape


def binned_periodograms(
    t: npt.ArrayLike,
    mag: npt.ArrayLike,
    channel: npt.ArrayLike,
    offsets: npt.ArrayLike,
    grid: PeriodogramGrid,
    n_channels: int,
) -> npt.NDArray[np.float32]:
    """The binned multi-band periodogram of every light curve.

    Parameters
    ----------
    t : float array, shape (n_epochs,)
        Times, days; float64 (not rounded through float32).
    mag : float array, shape (n_epochs,)
        Magnitudes, mag.
    channel : int array, shape (n_epochs,)
        Band channel of each epoch, in [0, n_channels).
    offsets : int array, shape (n_lc + 1,)
        Light curve k is ``[offsets[k]:offsets[k + 1]]``; epochs need not be sorted.
    grid : PeriodogramGrid
    n_channels : int

    Returns
    -------
    powers : float32 array, shape (n_lc, grid.n_bins)
        Largest normalised power (0 to 1) within each period bin; all zeros for a light curve
        with fewer than 3 epochs, no time span, or no variation.
    shape : float32 array, shape (n_lc, N_SHAPE_FEATURES)
        :data:`SHAPE_FEATURE_NAMES`: log10 of the best period (days) and its power, then a
        4-harmonic Fourier fit at twice the best period (twice, so that an eclipsing binary is
        folded on its orbit): relative amplitudes, the phase differences phi_k1 as cos and
        sin, and phi_42 (phi_21 at the best period); then the folded statistics of
        :func:`_folded_statistics`. Zeros where the powers are.
    """
    t = np.ascontiguousarray(t, dtype=np.float64)
    mag = np.ascontiguousarray(mag, dtype=np.float64)
    channel = np.ascontiguousarray(channel, dtype=np.int64)
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    if not (t.shape == mag.shape == channel.shape):
        raise ValueError("binned_periodograms: t, mag and channel must have the same shape")
    if offsets.ndim != 1 or offsets.size < 1 or offsets[0] != 0 or offsets[-1] != t.size:
        raise ValueError("binned_periodograms: offsets must start at 0 and end at len(t)")
    if np.any(np.diff(offsets) < 0):
        raise ValueError("binned_periodograms: offsets must be non-decreasing")
    if channel.size and (channel.min() < 0 or channel.max() >= n_channels):
        raise ValueError(f"binned_periodograms: channel must be in [0, {n_channels})")
    if not (np.isfinite(t).all() and np.isfinite(mag).all()):
        raise ValueError("binned_periodograms: t and mag must be finite")
    return _periodogram_kernel(
        t,
        mag,
        channel,
        offsets,
        int(n_channels),
        float(grid.min_period_days),
        float(grid.max_period_days),
        int(grid.n_bins),
        float(grid.oversampling),
        int(grid.max_frequencies),
    )
