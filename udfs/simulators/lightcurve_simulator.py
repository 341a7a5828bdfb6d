"""Labelled light curves of every class at ZTF cadences, to train and test the classifier.

Each object gets a cadence (a ZTF-like schedule, or the real epochs of a DR light curve), a set of
bands, a noiseless model of its class with widely varied parameters, and ZTF-like noise. The output
is flat, in the Arrow list layout: light curve k is ``t_hmjd[offsets[k]:offsets[k + 1]]``, sorted
by time, so it goes straight into :func:`udfs.kernels.dmdt.dmdt_images`.

Objects come grouped by class, in the order of the ``classes`` argument. Every class draws from its
own random generator seeded by ``(seed, index of the class in CLASS_NAMES)``: a class's light
curves do not depend on which other classes are simulated with it.

Example
-------
>>> sim = simulate_lightcurves(n_per_class=10, seed=1)
>>> sim.n_lightcurves, sim.t_hmjd.dtype
(150, dtype('float64'))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt

from catalogs.schema import BAND_NAMES, CATFLAGS_GOOD, CLASS_NAMES, DEFAULT_MIN_EPOCHS, DRColumn

FloatArray = npt.NDArray[np.float64]

#: First and last epoch a simulated light curve may have, heliocentric MJD (days): ZTF DR years.
SURVEY_START_HMJD = 58200.0
SURVEY_END_HMJD = 59600.0

_G, _R, _I = (BAND_NAMES.index(b) for b in ("g", "r", "i"))
_N_BANDS = len(BAND_NAMES)

#: Band subsets (image channels) and how often an object has each: g+r most, single bands
#: sometimes, i occasionally.
_BAND_SUBSETS: tuple[tuple[int, ...], ...] = ((_G, _R), (_G,), (_R,), (_G, _R, _I))
_BAND_SUBSET_PROBABILITIES = (0.6, 0.15, 0.15, 0.1)

#: Median magerr (mag) per g magnitude (mag) of the DR5 sample's catflags == 0 epochs, used for
#: every band; np.interp holds the end values outside 14-21 mag.
_MAGERR_RELATION_MAG = np.array([14.0, 15.0, 16.0, 17.0, 18.0, 19.0, 20.0, 21.0])
_MAGERR_RELATION_ERR_MAG = np.array([0.016, 0.016, 0.021, 0.035, 0.075, 0.138, 0.193, 0.22])
#: Lognormal scatter (natural-log sigma) of an epoch's magerr about the median relation.
_MAGERR_LOG_SCATTER = 0.2

#: Slope of the star counts, d log10 N / dm (mag^-1), at high Galactic latitude around 18-20 mag.
_NUMBER_COUNT_SLOPE = 0.25
#: Range of reference g magnitudes, and the limits the noiseless g model must stay within.
_MEAN_MAG_RANGE = (14.0, 20.5)
_BRIGHTEST_MAG = 12.5
_FAINTEST_MAG = 21.0

#: Outliers: each object gets a fraction of its epochs (log-uniform in this range) displaced by
#: 3-15 times their magerr, either way (DR5: at most 1% of a star's epochs 3 sigma fainter for 90%
#: of stars; the bright side is the wing below).
_OUTLIER_FRACTION = (0.0005, 0.01)
_OUTLIER_SIGMA = (3.0, 15.0)
#: A bright wing: a fraction of each object's epochs (log-uniform in this range) are brighter by
#: |N(0, this many magerr)|. In the DR5 sample the median star at 18-21 mag has 2.4-2.9% of its
#: epochs more than 3 robust sigma brighter than its median (90th percentile 6-9%) and almost
#: none 3 sigma fainter; Gaussian noise and symmetric outliers give a third of that.
_BRIGHT_WING_FRACTION = (0.01, 0.4)
_BRIGHT_WING_SIGMA = 3.0
#: Per-object factor on the reported errors (real errors are somewhat underestimated: the
#: sample's median reduced chi-square about the median is 1.6) and extra per-epoch scatter from
#: calibration, mag.
_ERROR_SCALE = (0.9, 1.4)
_CALIBRATION_SCATTER_MAG = (0.0, 0.02)
#: Each epoch's limiting magnitude (mean, sigma; mag): fainter measurements are not detected and
#: are missing from the light curve, as in ZTF's. This truncates the faint side of faint stars'
#: light curves: in the DR5 sample, stars at 19-20.5 mag have 3% of epochs 3 sigma brighter
#: than their median and none 3 sigma fainter, and their faintest epochs reach 20.6-21 mag.
_LIMITING_MAG = (20.8, 0.35)

#: A labelled variable star is one whose variability was detected: its amplitude is at least this
#: many times the median magerr at its mean magnitude (the object is made bright enough). Four
#: puts a sinusoid's rms at 1.4 magerr, a reduced chi-square near 3: beyond the scatter of
#: constant stars with underestimated errors.
_DETECTION_AMPLITUDE_OVER_ERROR = 4.0
#: And its own light curve shows it: at least this many epochs whose noiseless magnitude lies
#: more than this many of their magerr from the band's median level (an Algol with no epoch in
#: eclipse, a dwarf nova never seen in outburst, is drawn again: nobody would have labelled it).
_VISIBLE_EPOCHS = 3
_VISIBLE_SIGMA = 3.0

_DAYS_PER_YEAR = 365.25
_MINUTES_PER_DAY = 1440.0


@dataclass(frozen=True)
class SimulatedLightCurves:
    """Simulated light curves and their labels, flat in the Arrow list layout.

    Attributes
    ----------
    t_hmjd : float64 array, shape (n_epochs,)
        Heliocentric MJD of each epoch, days; sorted within each light curve.
    mag : float32 array, shape (n_epochs,)
        Observed magnitude, mag (noiseless model plus noise and random outliers).
    magerr : float32 array, shape (n_epochs,)
        Reported 1-sigma magnitude error, mag.
    channel : int8 array, shape (n_epochs,)
        Band channel of each epoch: 0 g, 1 r, 2 i (the order of ``catalogs.schema.BAND_NAMES``).
    offsets : int64 array, shape (n_lc + 1,)
        Light curve k is ``[offsets[k]:offsets[k + 1]]``.
    labels : int16 array, shape (n_lc,)
        Class of each light curve, an index into ``udfs.model.classifier.CLASS_NAMES``.
    period_days : float64 array, shape (n_lc,)
        Period, days (for eclipsing binaries the orbital period); NaN for aperiodic classes.
    amplitude_mag : float64 array, shape (n_lc,)
        g-band amplitude, mag: peak-to-peak for periodic classes; the asymptotic structure function
        SF_inf for agn; the largest dip, burst, outburst or flare for yso, cv and flare; the
        largest artefact for bogus; NaN for constant.
    mean_mag : float64 array, shape (n_lc,)
        Reference g magnitude, mag: mid-range of the periodic models, the quiescent level of the
        eruptive ones. The r and i levels are offset by the object's colour.
    mag_model : float32 array, shape (n_epochs,)
        Noiseless model magnitude, mag (with the bogus class's artefacts, without noise or the
        random outliers every class gets).
    real_cadence : bool array, shape (n_lc,)
        True where the epochs were taken from a real DR light curve.
    """

    t_hmjd: FloatArray
    mag: npt.NDArray[np.float32]
    magerr: npt.NDArray[np.float32]
    channel: npt.NDArray[np.int8]
    offsets: npt.NDArray[np.int64]
    labels: npt.NDArray[np.int16]
    period_days: FloatArray
    amplitude_mag: FloatArray
    mean_mag: FloatArray
    mag_model: npt.NDArray[np.float32]
    real_cadence: npt.NDArray[np.bool_]

    def __post_init__(self) -> None:
        n_epochs = self.t_hmjd.shape[0]
        n_lc = self.offsets.shape[0] - 1
        for name in ("mag", "magerr", "channel", "mag_model"):
            if getattr(self, name).shape != (n_epochs,):
                raise ValueError(f"SimulatedLightCurves.{name}: need shape ({n_epochs},)")
        for name in ("labels", "period_days", "amplitude_mag", "mean_mag", "real_cadence"):
            if getattr(self, name).shape != (n_lc,):
                raise ValueError(f"SimulatedLightCurves.{name}: need shape ({n_lc},)")
        if self.t_hmjd.dtype != np.float64:
            raise TypeError(f"SimulatedLightCurves.t_hmjd: need float64, got {self.t_hmjd.dtype}")
        if self.offsets[0] != 0 or self.offsets[-1] != n_epochs:
            raise ValueError("SimulatedLightCurves.offsets: must start at 0 and end at n_epochs")

    @property
    def n_lightcurves(self) -> int:
        """Number of light curves."""
        return int(self.offsets.size - 1)

    @property
    def n_epochs_per_lightcurve(self) -> npt.NDArray[np.int64]:
        """Epochs (all bands) of each light curve, int64 array of shape (n_lc,)."""
        return np.diff(self.offsets)


# --- cadences ---


@lru_cache(maxsize=4)
def _load_dr_cadences_cached(path: str, min_epochs: int) -> tuple[FloatArray, ...]:
    import pyarrow.parquet as pq

    if not Path(path).is_file():
        raise FileNotFoundError(f"cadence sample {path}: no such file")
    table = pq.read_table(path, columns=[DRColumn.HMJD, DRColumn.CATFLAGS])
    hmjd = table.column(DRColumn.HMJD).combine_chunks()
    flags = table.column(DRColumn.CATFLAGS).combine_chunks()
    offsets = hmjd.offsets.to_numpy()
    # Widen before anything else: float32 absolute epochs are only good to minutes.
    t = hmjd.values.to_numpy().astype(np.float64)[offsets[0] : offsets[-1]]
    good = flags.values.to_numpy()[offsets[0] : offsets[-1]] == CATFLAGS_GOOD
    cadences = []
    for lo, hi in zip(offsets[:-1] - offsets[0], offsets[1:] - offsets[0], strict=True):
        epochs = t[lo:hi][good[lo:hi]]
        if epochs.size >= min_epochs:
            cadences.append(np.sort(epochs))
    if not cadences:
        raise ValueError(f"cadence sample {path}: no light curve has >= {min_epochs} good epochs")
    return tuple(cadences)


def load_dr_cadences(
    path: str | Path, min_epochs: int = DEFAULT_MIN_EPOCHS
) -> tuple[FloatArray, ...]:
    """Epochs of the light curves of an IRSA DR light-curve Parquet file.

    Keeps the epochs with catflags == 0 and the light curves with at least ``min_epochs`` of them.
    Results are cached per path.

    Parameters
    ----------
    path : str or Path
        The Parquet file (IRSA DR layout: ``hmjd`` and ``catflags`` list columns).
    min_epochs : int
        Fewest good epochs a light curve needs to be kept.

    Returns
    -------
    tuple of float64 arrays
        Sorted heliocentric MJDs (days), one array per light curve kept.
    """
    return _load_dr_cadences_cached(str(path), int(min_epochs))


def _loguniform(rng: np.random.Generator, lo: float, hi: float, size=None):
    return np.exp(rng.uniform(np.log(lo), np.log(hi), size))


def _synthetic_cadence(
    rng: np.random.Generator, bands: tuple[int, ...]
) -> tuple[FloatArray, npt.NDArray[np.int8]]:
    """A ZTF-like schedule of one field: seasons, nightly to 3-day revisits, g/r pairs, some i."""
    duration_days = rng.uniform(1.0, 3.0) * _DAYS_PER_YEAR
    start = rng.uniform(SURVEY_START_HMJD, SURVEY_END_HMJD - duration_days)
    nights = np.arange(np.floor(start), np.floor(start + duration_days))
    gap_days = rng.uniform(90.0, 150.0)  # the field is behind the Sun
    gap_start = rng.uniform(0.0, _DAYS_PER_YEAR)
    in_season = np.mod(nights - gap_start, _DAYS_PER_YEAR) >= gap_days
    revisit_days = rng.uniform(1.0, 3.0)
    clear = rng.uniform(0.65, 0.9)
    observed = in_season & (rng.random(nights.size) < clear / revisit_days)
    first = nights[observed] + rng.uniform(0.15, 0.45, observed.sum())  # time of night
    n = first.size
    first_band = rng.integers(_G, _R + 1, n)
    times, chans = [first], [first_band]
    both = rng.random(n) < rng.uniform(0.3, 0.9)  # second band 30-60 min later
    times.append(first[both] + rng.uniform(30.0, 60.0, both.sum()) / _MINUTES_PER_DAY)
    chans.append(1 - first_band[both])
    repeat = rng.random(n) < rng.uniform(0.0, 0.25)  # high-cadence nights: same band again
    times.append(first[repeat] + rng.uniform(0.04, 0.15, repeat.sum()))
    chans.append(first_band[repeat])
    if _I in bands:
        with_i = rng.random(n) < rng.uniform(0.04, 0.15)
        times.append(first[with_i] + rng.uniform(0.06, 0.1, with_i.sum()))
        chans.append(np.full(with_i.sum(), _I))
    t = np.concatenate(times)
    ch = np.concatenate(chans).astype(np.int8)
    keep = np.isin(ch, bands)
    return t[keep], ch[keep]


def _real_cadence(
    rng: np.random.Generator, epochs: FloatArray, bands: tuple[int, ...]
) -> tuple[FloatArray, npt.NDArray[np.int8]]:
    """Real single-band epochs with bands assigned by g/r alternation (and some i)."""
    n = epochs.size
    if bands in ((_G,), (_R,)):
        ch = np.full(n, bands[0], dtype=np.int8)
    else:
        ch = ((np.arange(n) + rng.integers(0, 2)) % 2).astype(np.int8)
        if _I in bands:
            ch[rng.random(n) < rng.uniform(0.05, 0.12)] = _I
    return epochs.copy(), ch


@dataclass(frozen=True)
class _CadenceSource:
    """Where the objects' cadences come from."""

    real: tuple[FloatArray, ...]  # real DR epochs (may be none)
    real_fraction: float  # of the objects, given a real cadence
    max_epochs: int  # most epochs of a synthetic cadence


def _cadences(
    rng: np.random.Generator, n_objects: int, source: _CadenceSource
) -> tuple[FloatArray, npt.NDArray[np.int8], npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """Flat sorted epochs, channels and offsets of ``n_objects`` cadences."""
    real = source.real
    subset_index = rng.choice(len(_BAND_SUBSETS), n_objects, p=_BAND_SUBSET_PROBABILITIES)
    use_real = (rng.random(n_objects) < source.real_fraction) if real else np.zeros(n_objects, bool)
    ts, chs = [], []
    for k in range(n_objects):
        bands = _BAND_SUBSETS[subset_index[k]]
        if use_real[k]:
            t, ch = _real_cadence(rng, real[rng.integers(len(real))], bands)
        else:
            target = int(round(_loguniform(rng, DEFAULT_MIN_EPOCHS, source.max_epochs)))
            t, ch = _synthetic_cadence(rng, bands)
            while t.size < DEFAULT_MIN_EPOCHS:  # a sparse draw: schedule another field
                t, ch = _synthetic_cadence(rng, bands)
            if t.size > target:
                pick = rng.choice(t.size, target, replace=False)
                t, ch = t[pick], ch[pick]
        order = np.lexsort((ch, t))
        ts.append(t[order])
        chs.append(ch[order])
    offsets = np.zeros(n_objects + 1, dtype=np.int64)
    np.cumsum([t.size for t in ts], out=offsets[1:])
    return np.concatenate(ts), np.concatenate(chs), offsets, use_real


# --- class models: a noiseless magnitude offset from the object's band levels ---


@dataclass(frozen=True)
class _Epochs:
    """The epochs of the objects of one class, flat; ``obj`` is the object index in the class."""

    t: FloatArray
    ch: npt.NDArray[np.int8]
    offsets: npt.NDArray[np.int64]
    obj: npt.NDArray[np.int64]

    @property
    def n(self) -> int:
        return self.offsets.size - 1

    def phase(self, period_days: FloatArray, t0_hmjd: FloatArray) -> FloatArray:
        """Phase in [0, 1) of every epoch."""
        return np.mod((self.t - t0_hmjd[self.obj]) / period_days[self.obj], 1.0)

    def band_factor(
        self, rng: np.random.Generator, r: tuple[float, float], i: tuple[float, float]
    ) -> FloatArray:
        """Per-epoch amplitude factor of the band relative to g (1 for g)."""
        factors = np.ones((self.n, _N_BANDS))
        factors[:, _R] = rng.uniform(*r, self.n)
        factors[:, _I] = rng.uniform(*i, self.n)
        return factors[self.obj, self.ch]

    def objects(self):
        """Yield (object index, epoch slice)."""
        for k in range(self.n):
            yield k, slice(self.offsets[k], self.offsets[k + 1])


@dataclass(frozen=True)
class _ClassDraw:
    delta_mag: FloatArray  # (n_epochs,) noiseless offset from the band level, mag
    period_days: FloatArray  # (n,)
    amplitude_mag: FloatArray  # (n,)
    colour_gr_mag: tuple[float, float]  # range of the g - r colour, mag


_NAN = float("nan")
_PULSATOR_R = (0.75, 0.9)
_PULSATOR_I = (0.6, 0.75)


def _t0(rng: np.random.Generator, period_days: FloatArray) -> FloatArray:
    return SURVEY_START_HMJD - rng.uniform(0.0, 1.0, period_days.size) * period_days


def _sawtooth(phase: FloatArray, rise_fraction: FloatArray, gamma: FloatArray) -> FloatArray:
    """Faintness in [0, 1] of a fast-rise, slow-decline pulsation; 0 at maximum light (phase 0).

    A fast fall then a slow approach to minimum over ``1 - rise_fraction`` of the cycle, then a
    smooth rise back over ``rise_fraction``.
    """
    decline = 1.0 - rise_fraction
    u = np.clip(phase / decline, 0.0, 1.0)
    falling = 1.0 - (1.0 - u) ** gamma
    v = np.clip((phase - decline) / rise_fraction, 0.0, 1.0)
    rising = 0.5 * (1.0 + np.cos(np.pi * v))
    return np.where(phase < decline, falling, rising)


def _constant(rng: np.random.Generator, ep: _Epochs) -> _ClassDraw:
    nan = np.full(ep.n, _NAN)
    return _ClassDraw(np.zeros(ep.t.size), nan, nan.copy(), (0.0, 1.5))


def _rrab(rng: np.random.Generator, ep: _Epochs) -> _ClassDraw:
    period = rng.uniform(0.45, 0.9, ep.n)
    amp = rng.uniform(0.5, 1.2, ep.n)
    w = _sawtooth(
        ep.phase(period, _t0(rng, period)),
        rng.uniform(0.1, 0.2, ep.n)[ep.obj],
        rng.uniform(1.5, 3.0, ep.n)[ep.obj],
    )
    delta = amp[ep.obj] * (w - 0.5) * ep.band_factor(rng, _PULSATOR_R, _PULSATOR_I)
    return _ClassDraw(delta, period, amp, (0.1, 0.5))


def _rrc(rng: np.random.Generator, ep: _Epochs) -> _ClassDraw:
    period = rng.uniform(0.2, 0.45, ep.n)
    amp = rng.uniform(0.2, 0.6, ep.n)
    h2 = rng.uniform(0.0, 0.15, ep.n)  # a weak second harmonic
    psi = rng.uniform(0.0, 2 * np.pi, ep.n)

    def raw(phase, k):
        return -np.cos(2 * np.pi * phase) + h2[k] * np.cos(4 * np.pi * phase + psi[k])

    grid = np.linspace(0.0, 1.0, 257)[None, :]
    on_grid = raw(grid, np.arange(ep.n)[:, None])
    lo, hi = on_grid.min(axis=1), on_grid.max(axis=1)
    w = np.clip(
        (raw(ep.phase(period, _t0(rng, period)), ep.obj) - lo[ep.obj]) / (hi - lo)[ep.obj], 0, 1
    )
    delta = amp[ep.obj] * (w - 0.5) * ep.band_factor(rng, _PULSATOR_R, _PULSATOR_I)
    return _ClassDraw(delta, period, amp, (0.1, 0.4))


def _cepheid(rng: np.random.Generator, ep: _Epochs) -> _ClassDraw:
    mostly = _loguniform(rng, 3.0, 30.0, ep.n)
    period = np.where(rng.random(ep.n) < 0.85, mostly, _loguniform(rng, 1.0, 50.0, ep.n))
    amp = rng.uniform(0.2, 1.2, ep.n)
    w = _sawtooth(
        ep.phase(period, _t0(rng, period)),
        rng.uniform(0.2, 0.4, ep.n)[ep.obj],
        rng.uniform(1.0, 2.0, ep.n)[ep.obj],
    )
    delta = amp[ep.obj] * (w - 0.5) * ep.band_factor(rng, _PULSATOR_R, _PULSATOR_I)
    return _ClassDraw(delta, period, amp, (0.3, 1.0))


def _delta_scuti(rng: np.random.Generator, ep: _Epochs) -> _ClassDraw:
    period = _loguniform(rng, 0.02, 0.25, ep.n)
    # Down to 0.03 mag, not 0.01: below that ZTF detects none (twice its best errors).
    amp = _loguniform(rng, 0.03, 0.8, ep.n)
    # Half the stars also pulsate in a second mode (period ratio near 0.77, fundamental/overtone).
    second = np.where(rng.random(ep.n) < 0.5, rng.uniform(0.1, 0.5, ep.n), 0.0)
    period2 = period * rng.uniform(0.75, 0.8, ep.n)
    a1 = amp / (2.0 * (1.0 + second))
    t0 = _t0(rng, period)
    delta = a1[ep.obj] * np.sin(2 * np.pi * ep.phase(period, t0))
    delta += (a1 * second)[ep.obj] * np.sin(2 * np.pi * ep.phase(period2, t0 + period * 0.37))
    delta *= ep.band_factor(rng, _PULSATOR_R, _PULSATOR_I)
    return _ClassDraw(delta, period, amp, (0.0, 0.4))


def _ew(rng: np.random.Generator, ep: _Epochs) -> _ClassDraw:
    period = rng.uniform(0.22, 0.6, ep.n)
    amp = rng.uniform(0.2, 0.8, ep.n)
    phase = ep.phase(period, _t0(rng, period))
    w = 0.5 * (1.0 + np.cos(4 * np.pi * phase))  # 1 at the minima (phases 0 and 0.5)
    secondary = (phase >= 0.25) & (phase < 0.75)
    w = np.where(secondary, w * rng.uniform(0.85, 1.0, ep.n)[ep.obj], w)
    w = w ** rng.uniform(0.8, 1.3, ep.n)[ep.obj]
    delta = amp[ep.obj] * (w - 0.5) * ep.band_factor(rng, (0.9, 1.0), (0.85, 1.0))
    return _ClassDraw(delta, period, amp, (0.2, 1.0))


def _ea(rng: np.random.Generator, ep: _Epochs) -> _ClassDraw:
    period = _loguniform(rng, 0.5, 20.0, ep.n)
    depth1 = _loguniform(rng, 0.1, 2.0, ep.n)
    depth2 = depth1 * rng.uniform(0.0, 0.6, ep.n)
    # Eclipse duration as a fraction of the period falls as P^(-2/3) (Kepler, fixed radii).
    width = np.clip(rng.uniform(0.6, 1.4, ep.n) * 0.1 * (period / 0.5) ** (-2 / 3), 0.01, 0.2)
    eccentric = rng.random(ep.n) < 0.3
    phase2 = 0.5 + np.where(eccentric, rng.normal(0.0, 0.03, ep.n), 0.0)
    shape = rng.uniform(0.5, 1.5, ep.n)
    phase = ep.phase(period, _t0(rng, period))
    delta = np.zeros(ep.t.size)
    for centre, depth in ((np.zeros(ep.n), depth1), (phase2, depth2)):
        distance = np.abs(np.mod(phase - centre[ep.obj] + 0.5, 1.0) - 0.5)
        x = np.minimum(distance / (0.5 * width[ep.obj]), 1.0)
        delta += depth[ep.obj] * (1.0 - x * x) ** shape[ep.obj]
    delta *= ep.band_factor(rng, (0.85, 1.0), (0.75, 1.0))
    return _ClassDraw(delta, period, depth1, (-0.1, 1.0))


def _mira(rng: np.random.Generator, ep: _Epochs) -> _ClassDraw:
    period = _loguniform(rng, 100.0, 700.0, ep.n)
    amp = rng.uniform(1.0, 5.0, ep.n)
    t0 = _t0(rng, period)
    w = _sawtooth(
        ep.phase(period, t0),
        rng.uniform(0.3, 0.45, ep.n)[ep.obj],
        rng.uniform(1.0, 1.3, ep.n)[ep.obj],
    )
    # Cycle-to-cycle changes of amplitude and mean level.
    cycle = np.floor((ep.t - t0[ep.obj]) / period[ep.obj]).astype(np.int64)
    n_cycles = int(cycle.max()) + 1
    amp_change = rng.uniform(-0.15, 0.15, (ep.n, n_cycles))[ep.obj, cycle]
    level_change = rng.uniform(-0.1, 0.1, (ep.n, n_cycles))[ep.obj, cycle]
    delta = (amp[ep.obj] * (1.0 + amp_change) * (w - 0.5) + level_change) * ep.band_factor(
        rng, (0.6, 0.8), (0.4, 0.6)
    )
    return _ClassDraw(delta, period, amp, (1.2, 2.2))


def _semiregular(rng: np.random.Generator, ep: _Epochs) -> _ClassDraw:
    period = _loguniform(rng, 20.0, 300.0, ep.n)
    amp = rng.uniform(0.05, 1.0, ep.n)
    # Beating of close periods makes the amplitude and phase wander; some have a long secondary
    # period.
    weights = rng.uniform(0.2, 1.0, (ep.n, 3))
    weights /= weights.sum(axis=1, keepdims=True)
    delta = np.zeros(ep.t.size)
    for j in range(3):
        pj = period * (1.0 + (rng.normal(0.0, 0.07, ep.n) if j else 0.0))
        delta += (0.5 * amp * weights[:, j])[ep.obj] * np.sin(
            2 * np.pi * ep.phase(pj, _t0(rng, pj))
        )
    lsp = np.where(rng.random(ep.n) < 0.4, rng.uniform(0.2, 0.6, ep.n), 0.0)
    p_lsp = period * rng.uniform(5.0, 10.0, ep.n)
    delta += (0.5 * amp * lsp)[ep.obj] * np.sin(2 * np.pi * ep.phase(p_lsp, _t0(rng, p_lsp)))
    delta *= ep.band_factor(rng, (0.7, 0.9), (0.5, 0.8))
    return _ClassDraw(delta, period, amp, (1.0, 1.8))


def _rotational(rng: np.random.Generator, ep: _Epochs) -> _ClassDraw:
    period = _loguniform(rng, 0.5, 30.0, ep.n)
    amp = rng.uniform(0.03, 0.3, ep.n)  # 0.03, not 0.02: ZTF's detection floor
    # Two spot groups at slightly different periods (differential rotation) drift in phase; the
    # spots grow and decay.
    period2 = period * (1.0 + rng.uniform(0.0, 0.04, ep.n))
    share = rng.uniform(0.5, 1.0, ep.n)
    t0 = _t0(rng, period)
    spots = share[ep.obj] * np.sin(2 * np.pi * ep.phase(period, t0))
    spots += (1 - share)[ep.obj] * np.sin(2 * np.pi * ep.phase(period2, t0 + 0.3 * period))
    evolution_days = rng.uniform(30.0, 300.0, ep.n)
    envelope = 1.0 + 0.4 * np.sin(2 * np.pi * ep.phase(evolution_days, _t0(rng, evolution_days)))
    delta = 0.5 * amp[ep.obj] * spots * envelope / 1.4
    delta *= ep.band_factor(rng, (0.75, 0.95), (0.6, 0.9))
    return _ClassDraw(delta, period, amp, (0.5, 1.6))


def _damped_random_walk(
    rng: np.random.Generator, ep: _Epochs, tau_days: FloatArray, sigma_mag: FloatArray
) -> FloatArray:
    """Stationary damped random walk (Ornstein-Uhlenbeck) of std ``sigma_mag`` at every epoch."""
    counts = np.diff(ep.offsets)
    position = np.arange(ep.t.size) - ep.offsets[ep.obj]
    padded_t = np.zeros((ep.n, counts.max()))
    padded_t[ep.obj, position] = ep.t
    decay = np.exp(-np.clip(np.diff(padded_t, axis=1), 0.0, None) / tau_days[:, None])
    step = sigma_mag[:, None] * np.sqrt(1.0 - decay * decay)
    z = rng.standard_normal(padded_t.shape)
    x = np.empty_like(padded_t)
    x[:, 0] = sigma_mag * z[:, 0]
    for j in range(1, x.shape[1]):
        x[:, j] = decay[:, j - 1] * x[:, j - 1] + step[:, j - 1] * z[:, j]
    return x[ep.obj, position]


def _agn(rng: np.random.Generator, ep: _Epochs) -> _ClassDraw:
    tau = _loguniform(rng, 50.0, 500.0, ep.n)
    sf_inf = rng.uniform(0.1, 0.3, ep.n)
    delta = _damped_random_walk(rng, ep, tau, sf_inf / np.sqrt(2.0))
    delta *= ep.band_factor(rng, (0.7, 0.9), (0.55, 0.8))
    return _ClassDraw(delta, np.full(ep.n, _NAN), sf_inf, (0.0, 0.6))


def _flux_to_mag(flux: FloatArray) -> FloatArray:
    return -2.5 * np.log10(np.maximum(flux, 1e-3))


def _fred(dt_days: FloatArray, rise_days, plateau_days, decay_days) -> FloatArray:
    """Exponential rise, plateau, exponential decline; 1 on the plateau starting at dt = 0."""
    rising = np.exp(np.minimum(dt_days, 0.0) / rise_days)
    falling = np.exp(-np.maximum(dt_days - plateau_days, 0.0) / decay_days)
    return np.where(dt_days < 0.0, rising, falling)


def _yso(rng: np.random.Generator, ep: _Epochs) -> _ClassDraw:
    kind = rng.choice(3, ep.n, p=(0.5, 0.3, 0.2))  # dipper, burster, both
    depth_max = rng.uniform(0.2, 2.0, ep.n)
    rate_days = rng.uniform(5.0, 60.0, ep.n)  # mean time between events
    delta = _damped_random_walk(
        rng, ep, rng.uniform(1.0, 20.0, ep.n), rng.uniform(0.02, 0.15, ep.n)
    )
    for k, s in ep.objects():
        t = ep.t[s]
        lo, hi = t[0] - 10.0, t[-1] + 10.0
        n_events = max(1, rng.poisson((hi - lo) / rate_days[k]))
        centre = rng.uniform(lo, hi, n_events)
        width_days = _loguniform(rng, 0.3, 5.0, n_events)
        depth = depth_max[k] * rng.uniform(0.2, 1.0, n_events)
        depth[rng.integers(n_events)] = depth_max[k]
        burst = rng.random(n_events) < (0.0, 1.0, 0.4)[kind[k]]
        profile = np.exp(-0.5 * ((t[:, None] - centre) / width_days) ** 2)
        # Overlapping dips never block more than the deepest dip does.
        blocked = profile @ np.where(burst, 0.0, 1.0 - 10 ** (-0.4 * depth))
        dimmed = 1.0 - np.minimum(blocked, 1.0 - 10 ** (-0.4 * depth_max[k]))
        brightened = 1.0 + profile @ np.where(burst, 10 ** (0.4 * depth) - 1.0, 0.0)
        delta[s] += _flux_to_mag(dimmed * brightened)
    delta *= ep.band_factor(rng, (0.7, 0.85), (0.5, 0.7))  # dust: redder bands change less
    return _ClassDraw(delta, np.full(ep.n, _NAN), depth_max, (0.8, 1.8))


def _cv(rng: np.random.Generator, ep: _Epochs) -> _ClassDraw:
    amp = rng.uniform(2.0, 6.0, ep.n)
    recurrence_days = _loguniform(rng, 10.0, 500.0, ep.n)
    flicker_mag = rng.uniform(0.02, 0.2, ep.n)
    delta = np.empty(ep.t.size)
    for k, s in ep.objects():
        t = ep.t[s]
        start = t[0] - rng.uniform(0.0, recurrence_days[k])
        gaps = recurrence_days[k] * rng.uniform(
            0.7, 1.3, int((t[-1] - start) / recurrence_days[k] / 0.7) + 2
        )
        onsets = start + np.cumsum(gaps)
        peak_flux = 10 ** (0.4 * amp[k] * rng.uniform(0.8, 1.0, onsets.size)) - 1.0
        profile = _fred(
            t[:, None] - onsets,
            rng.uniform(0.3, 1.5, onsets.size),
            rng.uniform(0.5, 8.0, onsets.size),
            rng.uniform(1.0, 5.0, onsets.size),
        )
        flux = 1.0 + profile @ peak_flux
        delta[s] = _flux_to_mag(flux) + flicker_mag[k] * rng.standard_normal(t.size) / flux
    delta *= ep.band_factor(rng, (0.8, 1.0), (0.65, 0.9))
    return _ClassDraw(delta, np.full(ep.n, _NAN), amp, (-0.2, 0.6))


def _flare(rng: np.random.Generator, ep: _Epochs) -> _ClassDraw:
    amp = rng.uniform(0.5, 3.0, ep.n)
    delta = np.empty(ep.t.size)
    for k, s in ep.objects():
        t = ep.t[s]
        # Flares are rare: place 2-6 of them just before observed epochs so that they are seen.
        n_flares = rng.integers(2, 7)
        decay_days = _loguniform(rng, 10.0, 180.0, n_flares) / _MINUTES_PER_DAY
        seen = t[rng.choice(t.size, n_flares, replace=False)]
        peak = seen - rng.uniform(0.0, 0.5, n_flares) * decay_days
        peak_mag = amp[k] * rng.uniform(0.5, 1.0, n_flares)
        peak_mag[0] = amp[k]
        profile = _fred(t[:, None] - peak, decay_days / 10.0, 0.0, decay_days)
        delta[s] = _flux_to_mag(1.0 + profile @ (10 ** (0.4 * peak_mag) - 1.0))
    delta *= ep.band_factor(rng, (0.3, 0.6), (0.15, 0.4))  # flares are blue
    return _ClassDraw(delta, np.full(ep.n, _NAN), amp, (1.0, 1.6))


def _bogus(rng: np.random.Generator, ep: _Epochs) -> _ClassDraw:
    """Calibration and extraction artefacts: single-epoch outliers, steps, trends."""
    delta = np.zeros(ep.t.size)
    largest = np.zeros(ep.n)
    for k, s in ep.objects():
        t, ch = ep.t[s], ep.ch[s]
        kinds = rng.random(3) < (0.6, 0.5, 0.4)
        if not kinds.any():
            kinds[rng.integers(3)] = True
        d = np.zeros(t.size)
        if kinds[0]:  # outliers
            n_out = max(1, int(round(rng.uniform(0.02, 0.1) * t.size)))
            size = rng.uniform(0.5, 3.0, n_out) * np.where(rng.random(n_out) < 0.7, 1.0, -1.0)
            d[rng.choice(t.size, n_out, replace=False)] += size
            largest[k] = max(largest[k], np.abs(size).max())
        span = max(t[-1] - t[0], 1.0)
        one_band = ch == rng.choice(ch) if rng.random() < 0.5 else np.ones(t.size, bool)
        if kinds[1]:  # a zero-point step, in one band or all
            size = rng.uniform(0.1, 1.0) * rng.choice((-1.0, 1.0))
            d += np.where((t > t[0] + rng.uniform(0.1, 0.9) * span) & one_band, size, 0.0)
            largest[k] = max(largest[k], abs(size))
        if kinds[2]:  # a calibration trend
            size = rng.uniform(0.1, 1.0) * rng.choice((-1.0, 1.0))
            d += np.where(one_band, size * ((t - t[0]) / span - 0.5), 0.0)
            largest[k] = max(largest[k], abs(size))
        delta[s] = d
    return _ClassDraw(delta, np.full(ep.n, _NAN), largest, (0.0, 1.5))


_CLASS_MODELS: dict[str, Callable[[np.random.Generator, _Epochs], _ClassDraw]] = {
    "constant": _constant,
    "rrab": _rrab,
    "rrc": _rrc,
    "cepheid": _cepheid,
    "delta_scuti": _delta_scuti,
    "ew": _ew,
    "ea": _ea,
    "mira": _mira,
    "semiregular": _semiregular,
    "rotational": _rotational,
    "agn": _agn,
    "yso": _yso,
    "cv": _cv,
    "flare": _flare,
    "bogus": _bogus,
}
assert tuple(_CLASS_MODELS) == CLASS_NAMES, "a simulator for every class, in taxonomy order"


def median_magerr(mag: npt.ArrayLike) -> FloatArray:
    """Median ZTF magnitude error at a magnitude, mag (the DR5 sample's relation, interpolated)."""
    return np.interp(mag, _MAGERR_RELATION_MAG, _MAGERR_RELATION_ERR_MAG)


def draw_magerr(rng: np.random.Generator, model_mag: npt.ArrayLike) -> FloatArray:
    """Reported magnitude errors (mag) of epochs at these noiseless magnitudes (mag).

    The sample's median relation with lognormal epoch-to-epoch scatter.
    """
    model_mag = np.asarray(model_mag, dtype=np.float64)
    scatter = rng.standard_normal(model_mag.shape)
    return median_magerr(model_mag) * np.exp(_MAGERR_LOG_SCATTER * scatter)


@dataclass(frozen=True)
class ObjectVariability:
    """One simulated object's variability at its epochs.

    Attributes
    ----------
    delta_mag : float array, shape (n_epochs,)
        Noiseless offset of each epoch from its band's mean level, mag.
    period_days : float
        Period, days (NaN for aperiodic classes).
    amplitude_mag : float
        Amplitude, mag (for bogus, the largest artefact).
    colour_gr_mag : tuple of float
        Range of the class's g - r colour, mag.
    """

    delta_mag: FloatArray
    period_days: float
    amplitude_mag: float
    colour_gr_mag: tuple[float, float]


def object_variability(
    class_name: str,
    rng: np.random.Generator,
    t_hmjd: npt.ArrayLike,
    channel: npt.ArrayLike,
) -> ObjectVariability:
    """Draw one object of ``class_name`` and evaluate it at the epochs ``t_hmjd`` (days).

    ``channel`` is each epoch's band channel (g, r, i = 0, 1, 2). The draw is the training
    simulator's own, so a simulated sky holds the classifier's classes.
    """
    if class_name not in _CLASS_MODELS:
        raise ValueError(f"object_variability: unknown class {class_name!r}; one of {CLASS_NAMES}")
    t = np.asarray(t_hmjd, dtype=np.float64)
    epochs = _Epochs(
        t,
        np.asarray(channel, dtype=np.int8),
        np.array([0, t.size], dtype=np.int64),
        np.zeros(t.size, dtype=np.int64),
    )
    draw = _CLASS_MODELS[class_name](rng, epochs)
    return ObjectVariability(
        draw.delta_mag,
        float(draw.period_days[0]),
        float(draw.amplitude_mag[0]),
        draw.colour_gr_mag,
    )


def _number_count_magnitudes(
    rng: np.random.Generator, lo: FloatArray, hi: FloatArray
) -> FloatArray:
    """Magnitudes in [lo, hi] (mag) drawn as star counts grow, p(m) ~ 10**(slope * m).

    Faint stars outnumber bright ones; the classifier must see noisy faint light curves as
    often as the sky has them.
    """
    k = _NUMBER_COUNT_SLOPE * np.log(10.0)
    u = rng.random(np.shape(lo))
    span = np.asarray(hi) - np.asarray(lo)
    return lo + np.log1p(u * np.expm1(k * span)) / k


def detection_limit_mag(amplitude_mag: npt.ArrayLike) -> FloatArray:
    """Faintest mean magnitude (mag) at which a variable of this amplitude counts as detected.

    Where the median magerr is ``amplitude / _DETECTION_AMPLITUDE_OVER_ERROR``; NaN amplitudes
    (no limit) give +inf.
    """
    amplitude = np.asarray(amplitude_mag, dtype=np.float64)
    limit = np.interp(
        amplitude / _DETECTION_AMPLITUDE_OVER_ERROR,
        _MAGERR_RELATION_ERR_MAG[1:],
        _MAGERR_RELATION_MAG[1:],
        right=np.inf,
    )
    return np.where(np.isnan(amplitude), np.inf, limit)


def _simulate_class(
    rng: np.random.Generator, class_name: str, n_objects: int, source: _CadenceSource
) -> dict[str, np.ndarray]:
    t, ch, offsets, use_real = _cadences(rng, n_objects, source)
    obj = np.repeat(np.arange(n_objects), np.diff(offsets))
    draw = _CLASS_MODELS[class_name](rng, _Epochs(t, ch, offsets, obj))
    # The reference g magnitude keeps the noiseless model within the bright and faint limits,
    # and a variable bright enough for its variability to have been detected.
    brightest = np.minimum.reduceat(draw.delta_mag, offsets[:-1])
    faintest = np.maximum.reduceat(draw.delta_mag, offsets[:-1])
    lo = np.maximum(_MEAN_MAG_RANGE[0], _BRIGHTEST_MAG - brightest)
    hi = np.minimum(_MEAN_MAG_RANGE[1], _FAINTEST_MAG - faintest)
    if class_name != "constant":
        hi = np.minimum(hi, detection_limit_mag(draw.amplitude_mag))
    hi = np.maximum(hi, lo)
    mean_g = _number_count_magnitudes(rng, lo, hi)
    colour_gr = rng.uniform(*draw.colour_gr_mag, n_objects)
    colour_ri = colour_gr * rng.uniform(0.3, 0.6, n_objects)
    levels = np.stack([mean_g, mean_g - colour_gr, mean_g - colour_gr - colour_ri], axis=1)
    model = levels[obj, ch] + draw.delta_mag
    # Noise: magerr from the sample's relation with epoch-to-epoch scatter; the true scatter is
    # the reported error times a per-object factor plus calibration scatter; outliers.
    magerr = draw_magerr(rng, model)
    scale = rng.uniform(*_ERROR_SCALE, n_objects)[obj]
    calibration = rng.uniform(*_CALIBRATION_SCATTER_MAG, n_objects)[obj]
    sigma = np.hypot(scale * magerr, calibration)
    mag = model + sigma * rng.standard_normal(t.size)
    outlier_fraction = _loguniform(rng, *_OUTLIER_FRACTION, n_objects)[obj]
    outlier = rng.random(t.size) < outlier_fraction
    mag[outlier] += (
        magerr[outlier]
        * rng.uniform(*_OUTLIER_SIGMA, outlier.sum())
        * rng.choice((-1.0, 1.0), outlier.sum())
    )
    wing = rng.random(t.size) < _loguniform(rng, *_BRIGHT_WING_FRACTION, n_objects)[obj]
    mag[wing] -= magerr[wing] * np.abs(rng.normal(0.0, _BRIGHT_WING_SIGMA, wing.sum()))
    detected = mag < rng.normal(*_LIMITING_MAG, t.size)
    t, ch, mag, magerr, model, obj = (a[detected] for a in (t, ch, mag, magerr, model, obj))
    return {
        "t_hmjd": t,
        "mag": mag.astype(np.float32),
        "magerr": magerr.astype(np.float32),
        "channel": ch.astype(np.int8),
        "n_epochs": np.bincount(obj, minlength=n_objects),
        "labels": np.full(n_objects, CLASS_NAMES.index(class_name), dtype=np.int16),
        "period_days": draw.period_days.astype(np.float64),
        "amplitude_mag": draw.amplitude_mag.astype(np.float64),
        "mean_mag": mean_g,
        "mag_model": model.astype(np.float32),
        "real_cadence": use_real,
    }


_PER_OBJECT_KEYS = (
    "n_epochs", "labels", "period_days", "amplitude_mag", "mean_mag", "real_cadence",
)  # fmt: skip


def _visible(part: dict[str, np.ndarray]) -> npt.NDArray[np.bool_]:
    """Objects whose light curve shows their variability (see ``_VISIBLE_EPOCHS``)."""
    offsets = np.concatenate([[0], np.cumsum(part["n_epochs"])])
    obj = np.repeat(np.arange(part["n_epochs"].size), part["n_epochs"])
    ch = part["channel"].astype(np.int64)
    model = part["mag_model"].astype(np.float64)
    # The band's median model level, per object and band.
    key = obj * _N_BANDS + ch
    order = np.lexsort((model, key))
    sorted_key = key[order]
    starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]])
    ends = np.r_[starts[1:], sorted_key.size]
    medians = np.empty(key.max() + 1 if key.size else 0)
    medians[sorted_key[starts]] = model[order][(starts + ends - 1) // 2]
    deviant = np.abs(model - medians[key]) > _VISIBLE_SIGMA * part["magerr"]
    counts = np.add.reduceat(deviant.astype(np.int64), offsets[:-1]) if obj.size else obj
    return counts >= _VISIBLE_EPOCHS


def _select(part: dict[str, np.ndarray], keep: npt.NDArray[np.bool_]) -> dict[str, np.ndarray]:
    epochs = np.repeat(keep, part["n_epochs"])
    return {k: v[keep] if k in _PER_OBJECT_KEYS else v[epochs] for k, v in part.items()}


def _simulate_visible_class(
    rng: np.random.Generator, class_name: str, n_objects: int, source: _CadenceSource
) -> dict[str, np.ndarray]:
    """``n_objects`` light curves of a class; a variable is redrawn until its epochs show it."""
    parts, found = [], 0
    for _ in range(50):
        part = _simulate_class(rng, class_name, n_objects, source)
        keep = np.ones(n_objects, bool) if class_name == "constant" else _visible(part)
        # Faint epochs are lost below the limiting magnitude: keep classifiable light curves.
        keep &= part["n_epochs"] >= DEFAULT_MIN_EPOCHS
        keep &= np.cumsum(keep) <= n_objects - found
        parts.append(_select(part, keep))
        found += int(keep.sum())
        if found == n_objects:
            return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    raise RuntimeError(f"simulator: too few {class_name} light curves show their variability")


def simulate_lightcurves(
    n_per_class: int,
    seed: int,
    classes: Sequence[str] = CLASS_NAMES,
    *,
    cadence_sample_path: str | Path | None = None,
    real_cadence_fraction: float = 0.25,
    max_epochs: int = 1000,
) -> SimulatedLightCurves:
    """Simulate ``n_per_class`` labelled light curves of each class.

    Parameters
    ----------
    n_per_class : int
        Light curves per class.
    seed : int
        Seed; the same seed and arguments give the same light curves.
    classes : sequence of str
        Classes to simulate (names from ``CLASS_NAMES``), in output order.
    cadence_sample_path : str or Path, optional
        IRSA DR light-curve Parquet file whose real epochs (catflags == 0, light curves with at
        least 20 of them) some objects take as their cadence. Without it every cadence is
        synthetic.
    real_cadence_fraction : float
        Fraction of objects given a real cadence when ``cadence_sample_path`` is set.
    max_epochs : int
        Most epochs (all bands) of a synthetic cadence; the count is log-uniform from 20.

    Returns
    -------
    SimulatedLightCurves
    """
    if n_per_class < 1:
        raise ValueError(f"simulate_lightcurves: n_per_class must be >= 1, got {n_per_class}")
    unknown = [c for c in classes if c not in CLASS_NAMES]
    if unknown:
        raise ValueError(f"simulate_lightcurves: unknown classes {unknown}; known: {CLASS_NAMES}")
    if not 0.0 <= real_cadence_fraction <= 1.0:
        raise ValueError(
            f"simulate_lightcurves: real_cadence_fraction must be in [0, 1], "
            f"got {real_cadence_fraction}"
        )
    if max_epochs < DEFAULT_MIN_EPOCHS:
        raise ValueError(
            f"simulate_lightcurves: max_epochs must be >= {DEFAULT_MIN_EPOCHS}, got {max_epochs}"
        )
    real = load_dr_cadences(cadence_sample_path) if cadence_sample_path is not None else ()
    source = _CadenceSource(real, real_cadence_fraction, max_epochs)
    parts = [
        _simulate_visible_class(
            np.random.default_rng([seed, CLASS_NAMES.index(name)]), name, n_per_class, source
        )
        for name in classes
    ]

    def cat(key: str) -> np.ndarray:
        return np.concatenate([p[key] for p in parts])

    offsets = np.zeros(len(classes) * n_per_class + 1, dtype=np.int64)
    np.cumsum(cat("n_epochs"), out=offsets[1:])
    # The class parts' arrays are the fields, with n_epochs in place of offsets.
    return SimulatedLightCurves(offsets=offsets, **{k: cat(k) for k in parts[0] if k != "n_epochs"})
