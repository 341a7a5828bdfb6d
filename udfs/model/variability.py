"""The variability stage: does this light curve vary at all? Asked first, cheaply, of every object.

Nine in ten objects of a survey catalog do not vary. This stage gives each light curve a
probability that it varies, from a few noise-aware statistics that cost microseconds, before
any periodogram. Objects below the stage's threshold are written as constant and never pay for
the periodogram or the network; the others (candidates) go on as before.

The statistics (:data:`STATISTIC_NAMES`), over all bands, each band centred on its median and
scaled by the quoted errors (z = residual / magerr):

- ``log_chi2``: log10 of the reduced chi-square.
- ``log_trimmed_chi2``: the same without the 5% largest z^2, rescaled so a Gaussian gives 1
  (a few bad epochs do not make a star variable).
- ``log_spread_over_error``: log10 of 1.4826 MAD over the median quoted error.
- ``von_neumann_significance``: (2 - eta) sqrt(n) / 2 for the von Neumann ratio eta within
  each band in time order: about N(0, 1) for white noise whatever the error scale.
- ``fraction_beyond_3_sigma``: of the epochs.
- ``log_epochs``.
- ``close_pair_significance``: sum(z_i z_j) / sqrt(sum (z_i z_j)^2) over pairs of epochs less
  than 0.1 days apart (any bands): a Stetson-type index that is about N(0, 1) for independent
  noise of *any* scale and grows as sqrt(pairs) for a star that moves between nights but not
  within one (CRTS takes four images in 30 minutes, ZTF g and r within the hour).
- ``season_pair_significance``: the same for pairs 0.1 to 30 days apart (quasars, long periods).

Quoted errors are often wrong by tens of percent, so chi-square alone calls real constant stars
variable; the two pair indices and the von Neumann significance do not depend on the error
scale. A logistic model on these (:func:`design_matrix`) is fitted on real variables and on
realistic noise-only twins of the same light curves (:mod:`udfs.simulators.noise_twins`), the same
number of each per cadence, so the cadence itself carries no evidence either way. Its probability is
calibrated at even odds. The fit, its threshold and what they were measured on live in the
model card (``variability``), and the catalog's provenance records them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any

import numba as nb
import numpy as np
import numpy.typing as npt

from udfs.kernels.model_inputs import FlatLightCurves

STATISTIC_NAMES: tuple[str, ...] = (
    "log_chi2",
    "log_trimmed_chi2",
    "log_spread_over_error",
    "von_neumann_significance",
    "fraction_beyond_3_sigma",
    "log_epochs",
    "close_pair_significance",
    "season_pair_significance",
)
N_STATISTICS = len(STATISTIC_NAMES)
#: Pairs of epochs closer than this are "close" (days); season pairs go up to SEASON_PAIR_DAYS.
CLOSE_PAIR_DAYS = 0.1
SEASON_PAIR_DAYS = 30.0
#: Fraction of the largest z^2 the trimmed chi-square leaves out, and its Gaussian mean then.
_TRIM = 0.05
_TRIMMED_GAUSSIAN_MEAN = 0.7593
_TINY = 1e-6


@nb.njit(cache=True, nogil=True)
def _pair_significance(t, z, min_dt, max_dt):
    s = 0.0
    q = 0.0
    n = t.size
    for i in range(n):
        for j in range(i + 1, n):
            dt = t[j] - t[i]
            if dt >= max_dt:
                break
            if dt >= min_dt:
                p = z[i] * z[j]
                s += p
                q += p * p
    return s / np.sqrt(q) if q > 0.0 else 0.0


@nb.njit(cache=True, nogil=True)
def _one_lightcurve(t, mag, err, channel, n_channels, out):
    n = t.size
    order = np.argsort(t)
    t = t[order]
    mag = mag[order]
    err = np.maximum(err[order], _TINY)
    channel = channel[order]
    resid = np.zeros(n)
    n_bands = 0
    von_num = 0.0
    von_den = 0.0
    for c in range(n_channels):
        idx = np.flatnonzero(channel == c)
        if idx.size == 0:
            continue
        n_bands += 1
        m = mag[idx]
        median = np.median(m)
        d = m - median
        resid[idx] = d
        mean = d.mean()
        for j in range(1, idx.size):
            von_num += (d[j] - d[j - 1]) ** 2
        for j in range(idx.size):
            von_den += (d[j] - mean) ** 2
    z = resid / err
    z2 = z * z
    out[0] = np.log10(max(z2.sum() / max(n - n_bands, 1), 1e-3))
    n_keep = max(n - int(np.ceil(_TRIM * n)), 1)
    trimmed = np.sort(z2)[:n_keep].mean() / _TRIMMED_GAUSSIAN_MEAN
    out[1] = np.log10(max(trimmed, 1e-3))
    spread = 1.4826 * np.median(np.abs(resid - np.median(resid)))
    out[2] = np.log10(max(spread, _TINY) / np.median(err))
    eta = (von_num / max(n - 1, 1)) / (von_den / n) if von_den > 0 else 2.0
    out[3] = (2.0 - eta) * np.sqrt(n) / 2.0
    out[4] = (z2 > 9.0).sum() / n
    out[5] = np.log10(n)
    out[6] = _pair_significance(t, z, 0.0, CLOSE_PAIR_DAYS)
    out[7] = _pair_significance(t, z, CLOSE_PAIR_DAYS, SEASON_PAIR_DAYS)


@nb.njit(cache=True, parallel=True)
def _statistics_kernel(t, mag, err, channel, offsets, n_channels):
    n_lc = offsets.size - 1
    out = np.zeros((n_lc, N_STATISTICS))
    for k in nb.prange(n_lc):
        lo, hi = offsets[k], offsets[k + 1]
        if hi - lo >= 2:
            _one_lightcurve(t[lo:hi], mag[lo:hi], err[lo:hi], channel[lo:hi], n_channels, out[k])
    return out


def variability_statistics(
    lightcurves: FlatLightCurves, n_channels: int
) -> npt.NDArray[np.float64]:
    """The :data:`STATISTIC_NAMES` of every light curve, shape (n_lc, N_STATISTICS).

    All zeros for a light curve of fewer than 2 epochs.
    """
    lc = lightcurves
    return _statistics_kernel(
        np.ascontiguousarray(lc.t_days, np.float64),
        np.ascontiguousarray(lc.mag, np.float64),
        np.ascontiguousarray(lc.magerr, np.float64),
        np.ascontiguousarray(lc.channel, np.int64),
        np.ascontiguousarray(lc.offsets, np.int64),
        int(n_channels),
    )


#: Columns of :func:`design_matrix`: the statistics and the few products the logistic needs to
#: let a threshold move with the number of epochs and to saturate the pair indices.
DESIGN_NAMES: tuple[str, ...] = (
    "log_trimmed_chi2",
    "log_spread_over_error",
    "von_neumann_significance",
    "log_chi2",
    "fraction_beyond_3_sigma",
    "log_trimmed_chi2 * log_epochs",
    "log_spread_over_error * log_epochs",
    "log_trimmed_chi2^2",
    "log_epochs",
    "close_pair_significance",
    "season_pair_significance",
    "close_pair_significance+^2 / 30",
    "season_pair_significance+^2 / 30",
)


def design_matrix(statistics: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
    """The logistic model's inputs (:data:`DESIGN_NAMES`) from :func:`variability_statistics`."""
    s = dict(zip(STATISTIC_NAMES, np.asarray(statistics, np.float64).T, strict=True))
    trimmed, spread, n = s["log_trimmed_chi2"], s["log_spread_over_error"], s["log_epochs"]
    close = np.clip(s["close_pair_significance"], -5.0, 30.0)
    season = np.clip(s["season_pair_significance"], -5.0, 30.0)
    return np.column_stack(
        [
            trimmed,
            spread,
            np.clip(s["von_neumann_significance"], -5.0, 30.0),
            s["log_chi2"],
            s["fraction_beyond_3_sigma"],
            trimmed * n,
            spread * n,
            trimmed**2,
            n,
            close,
            season,
            np.maximum(close, 0.0) ** 2 / 30.0,
            np.maximum(season, 0.0) ** 2 / 30.0,
        ]
    )


@dataclass(frozen=True)
class VariabilityStage:
    """A fitted variability stage: logistic coefficients, threshold, and what it was fitted on.

    Attributes
    ----------
    mean, scale : tuple of float
        Standardisation of each :data:`DESIGN_NAMES` column.
    coefficients : tuple of float
        Intercept, then one per standardised column.
    threshold : float
        Objects with ``p_variable`` below it are settled as constant.
    calibration : dict
        What the fit was measured on (sets, noise model, counts, rates); provenance only.
    settles : bool
        False: the probability is computed but every object goes to the network (the off
        switch, ``varsky classify --variability-stage off``).
    """

    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coefficients: tuple[float, ...]
    threshold: float
    calibration: dict[str, Any] = field(default_factory=dict, compare=False)
    settles: bool = True

    def __post_init__(self) -> None:
        n = len(DESIGN_NAMES)
        if not (len(self.mean) == len(self.scale) == n and len(self.coefficients) == n + 1):
            raise ValueError(
                f"variability stage: need {n} means and scales and {n + 1} coefficients "
                f"(columns {list(DESIGN_NAMES)}), got {len(self.mean)}, {len(self.scale)} and "
                f"{len(self.coefficients)}"
            )
        if not 0.0 <= self.threshold < 1.0:
            raise ValueError(
                f"variability stage: threshold must be in [0, 1), got {self.threshold}"
            )

    def probability(self, statistics: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
        """p_variable of each row of :func:`variability_statistics`."""
        x = (design_matrix(statistics) - np.asarray(self.mean)) / np.asarray(self.scale)
        b = np.asarray(self.coefficients)
        return 1.0 / (1.0 + np.exp(-(b[0] + x @ b[1:])))

    def p_variable(self, lightcurves: FlatLightCurves, n_channels: int) -> np.ndarray:
        """p_variable of every light curve."""
        return self.probability(variability_statistics(lightcurves, n_channels))

    def with_threshold(self, threshold: float | None) -> VariabilityStage:
        """The same stage with another threshold (None: unchanged)."""
        return self if threshold is None else replace(self, threshold=float(threshold))

    def to_dict(self) -> dict[str, Any]:
        """JSON form (the model card's ``variability``)."""
        return {
            "statistics": list(STATISTIC_NAMES),
            "design": list(DESIGN_NAMES),
            "mean": list(self.mean),
            "scale": list(self.scale),
            "coefficients": list(self.coefficients),
            "threshold": self.threshold,
            "calibration": self.calibration,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "model card") -> VariabilityStage:
        """Build from :meth:`to_dict`'s form; ``source`` names the file in errors."""
        if list(data.get("design", [])) != list(DESIGN_NAMES):
            raise ValueError(
                f"{source}: variability.design {data.get('design')} is not this varsky's "
                f"{list(DESIGN_NAMES)}: refit the stage (varsky train --variability-only)"
            )
        return cls(
            mean=tuple(float(v) for v in data["mean"]),
            scale=tuple(float(v) for v in data["scale"]),
            coefficients=tuple(float(v) for v in data["coefficients"]),
            threshold=float(data["threshold"]),
            calibration=dict(data.get("calibration") or {}),
        )

    @property
    def sha256(self) -> str:
        """Checksum of the fitted numbers (not the calibration notes)."""
        numbers = [self.mean, self.scale, self.coefficients, self.threshold]
        return hashlib.sha256(json.dumps(numbers).encode()).hexdigest()

    def describe(self) -> dict[str, Any]:
        """What provenance records of the stage."""
        return {
            "settles": self.settles,
            "threshold": self.threshold,
            "sha256": self.sha256,
            "statistics": list(STATISTIC_NAMES),
            "calibration": self.calibration,
        }


def fit_logistic(
    x: npt.NDArray[np.floating],
    y: npt.NDArray[np.floating],
    weight: npt.NDArray[np.floating],
    l2: float = 1e-3,
    iterations: int = 50,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted L2-regularised logistic regression by Newton steps (IRLS).

    Returns the column means, scales and the coefficients (intercept first).
    """
    mean = x.mean(axis=0)
    scale = x.std(axis=0) + 1e-9
    z = np.column_stack([np.ones(len(x)), (x - mean) / scale])
    b = np.zeros(z.shape[1])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(z @ b)))
        w = weight * p * (1.0 - p)
        hessian = z.T @ (z * w[:, None]) + l2 * np.eye(b.size)
        step = np.linalg.solve(hessian, z.T @ (weight * (p - y)) + l2 * b)
        b -= step
        if np.abs(step).max() < 1e-8:
            break
    return mean, scale, b


@dataclass(frozen=True)
class StageSample:
    """Statistics of one group of light curves the stage is fitted on (one cadence, one kind)."""

    name: str
    statistics: npt.NDArray[np.float64]
    variable: bool
    #: Whether the threshold must keep this (variable) group: true for real labelled sets.
    sets_threshold: bool = True


def fit_stage(
    samples: list[StageSample], max_lost: float = 0.005, calibration: dict | None = None
) -> VariabilityStage:
    """Fit the stage on groups of light curves, each weighted equally.

    The threshold is the highest that settles at most ``max_lost`` of every variable group that
    ``sets_threshold`` (the real ones: a simulator's faintest variables are not the sky's).
    """
    x = np.concatenate([design_matrix(s.statistics) for s in samples])
    y = np.concatenate([np.full(len(s.statistics), float(s.variable)) for s in samples])
    w = np.concatenate([np.full(len(s.statistics), 1.0 / len(s.statistics)) for s in samples])
    w *= len(w) / w.sum()
    mean, scale, b = fit_logistic(x, y, w)
    stage = VariabilityStage(tuple(mean), tuple(scale), tuple(b), threshold=0.0)
    threshold = min(
        float(np.quantile(stage.probability(s.statistics), max_lost))
        for s in samples
        if s.variable and s.sets_threshold
    )
    threshold = float(np.clip(threshold, 0.0, 0.5))
    rates = {s.name: float(np.mean(stage.probability(s.statistics) >= threshold)) for s in samples}
    notes = dict(calibration or {})
    notes |= {
        "max_lost_per_variable_set": max_lost,
        "objects": {s.name: len(s.statistics) for s in samples},
        "passed_on_fit_sets": rates,
    }
    return replace(stage, threshold=threshold, calibration=notes)


def stage_of(card, on: bool = True, threshold: float | None = None) -> VariabilityStage | None:
    """The variability stage a job runs with a model ``card``: None if the card has none.

    ``on`` False keeps computing ``p_variable`` but settles nothing (every object goes to the
    network); ``threshold`` replaces the card's.
    """
    stage = getattr(card, "variability", None)
    if stage is None:
        return None
    return replace(stage.with_threshold(threshold), settles=bool(on))
