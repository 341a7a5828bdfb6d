"""Noise-only twins of real light curves: the same times, bands and quoted errors, and no star.

A twin keeps every epoch's time, band and quoted error and replaces the magnitude by the band's
median plus noise, so it is what a non-variable star looks like at that cadence and depth. Two
noise models:

- ``ideal``: Gaussian noise of exactly the quoted error;
- ``realistic``: what survey photometry does instead. Per light curve, the true noise is the
  quoted error times a factor drawn from [0.9, 1.4] (quoted errors are usually too small); a
  wing of 1% of the epochs lies 3-5 errors off; and 0.3% of the epochs are bad exposures,
  offset by 0.1-0.5 mag whatever their error (a zero point gone wrong).

The variability stage (:mod:`udfs.model.variability`) is calibrated on realistic twins of every real
light curve it learns from, and the benches judge it on both models.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from udfs.kernels.lightcurve_features import band_median_mags
from udfs.kernels.model_inputs import FlatLightCurves


@dataclass(frozen=True)
class NoiseModel:
    """How a twin's noise departs from its quoted errors.

    Attributes
    ----------
    name : str
    error_scale : (float, float)
        Range of the per-light-curve factor on the quoted error (uniform).
    wing_fraction : float
        Fraction of epochs put ``wing_sigmas`` errors off (either sign).
    wing_sigmas : (float, float)
    bad_fraction : float
        Fraction of epochs that are bad exposures.
    bad_offset_mag : (float, float)
        Range of a bad exposure's offset, mag (either sign).
    """

    name: str
    error_scale: tuple[float, float] = (1.0, 1.0)
    wing_fraction: float = 0.0
    wing_sigmas: tuple[float, float] = (3.0, 5.0)
    bad_fraction: float = 0.0
    bad_offset_mag: tuple[float, float] = (0.1, 0.5)

    def to_dict(self) -> dict:
        """JSON form, for model cards and provenance."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


IDEAL = NoiseModel("ideal")
REALISTIC = NoiseModel("realistic", error_scale=(0.9, 1.4), wing_fraction=0.01, bad_fraction=0.003)
NOISE_MODELS = {m.name: m for m in (IDEAL, REALISTIC)}


def band_medians(lightcurves: FlatLightCurves) -> np.ndarray:
    """Each epoch's band median within its light curve, mag (float64, one per epoch)."""
    lc = lightcurves
    n_channels = int(lc.channel.max()) + 1 if lc.channel.size else 1
    medians = band_median_mags(lc.mag, lc.channel, lc.offsets, n_channels)
    obj = np.repeat(np.arange(lc.n_lightcurves), np.diff(lc.offsets))
    return medians[obj, lc.channel.astype(np.int64)]


def noise_twins(
    lightcurves: FlatLightCurves, model: NoiseModel, rng: np.random.Generator
) -> FlatLightCurves:
    """Twins of ``lightcurves``: same times, bands, errors; band median plus ``model``'s noise."""
    lc = lightcurves
    n_epochs = lc.mag.size
    err = lc.magerr.astype(np.float64)
    lo, hi = model.error_scale
    scale = np.repeat(rng.uniform(lo, hi, lc.n_lightcurves), np.diff(lc.offsets))
    z = rng.standard_normal(n_epochs) * scale
    wing = rng.random(n_epochs) < model.wing_fraction
    z[wing] = rng.choice([-1.0, 1.0], wing.sum()) * rng.uniform(*model.wing_sigmas, wing.sum())
    mag = band_medians(lc) + z * err
    bad = rng.random(n_epochs) < model.bad_fraction
    mag[bad] += rng.choice([-1.0, 1.0], bad.sum()) * rng.uniform(*model.bad_offset_mag, bad.sum())
    return FlatLightCurves(lc.t_days, mag.astype(lc.mag.dtype), lc.magerr, lc.channel, lc.offsets)
