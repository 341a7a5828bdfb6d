"""udfs.kernels.periodogram: binned Lomb-Scargle powers against astropy, folded-shape numbers."""

import numpy as np
import pytest
from astropy.timeseries import LombScargle

from udfs.kernels.periodogram import (
    N_SHAPE_FEATURES,
    SHAPE_FEATURE_NAMES,
    PeriodogramGrid,
    _binned_power,
    _power_from_sums,
    _power_without_tau,
    _standardised_residuals,
    binned_periodograms,
)

GRID = PeriodogramGrid()


def _sine(rng, period_days, n=200, t0=59000.0, amplitude=0.3, noise=0.02):
    t = t0 + np.sort(rng.uniform(0, 400, n))
    return t, 15 + amplitude * np.sin(2 * np.pi * t / period_days) + rng.normal(0, noise, n)


def test_power_at_one_frequency_equals_astropy():
    rng = np.random.default_rng(1)
    t, mag = _sine(rng, 0.61)
    tk = t - t[0]
    y = np.empty(t.size)
    _standardised_residuals(tk, mag, np.zeros(t.size, np.int64), 3, y)
    reference = LombScargle(tk, y, fit_mean=False, center_data=True)
    for frequency in (1 / 0.61, 2.0, 0.1):
        out = np.zeros(1)
        _binned_power(tk, y.copy(), frequency, 1e-3, 1, np.log(0.01), 1 / np.log(1e6), 1, out)
        # The sums run in float32 (phases float64): about 1e-7 off, well inside the float32 out.
        np.testing.assert_allclose(out[0], reference.power(frequency), rtol=1e-6)


def test_power_without_tau_equals_the_tau_form():
    rng = np.random.default_rng(3)
    t = np.sort(rng.uniform(0, 700, 60))
    y = rng.normal(0, 1, t.size)
    y -= y.mean()
    # The last frequency puts every epoch at phase 0 (sin sums vanish): the fallback path.
    t_aligned = np.arange(40, dtype=float)
    for times, frequencies in ((t, rng.uniform(1e-3, 20, 200)), (t_aligned, [1.0, 2.0])):
        ys = y[: times.size] - y[: times.size].mean()
        for f in frequencies:
            c, s = np.cos(2 * np.pi * f * times), np.sin(2 * np.pi * f * times)
            sums = (ys @ c, ys @ s, c @ c, c @ s, ys @ ys, times.size)
            np.testing.assert_allclose(
                _power_without_tau(*sums), _power_from_sums(*sums), rtol=1e-9, atol=1e-12
            )


@pytest.mark.parametrize("period_days", [0.31, 0.61, 3.7, 45.0])
def test_the_peak_lands_in_the_bin_of_the_period(period_days):
    rng = np.random.default_rng(7)
    t, mag = _sine(rng, period_days)
    powers, shape = binned_periodograms(
        t, mag, np.zeros(t.size, np.int8), np.array([0, t.size]), GRID, 3
    )
    edges = GRID.period_edges_days
    expected_bin = np.searchsorted(edges, period_days) - 1
    assert powers.shape == (1, GRID.n_bins) and powers.dtype == np.float32
    assert powers[0].argmax() == expected_bin and powers[0].max() > 0.8
    assert shape.shape == (1, N_SHAPE_FEATURES) == (1, len(SHAPE_FEATURE_NAMES))
    np.testing.assert_allclose(10 ** shape[0, 0], period_days, rtol=0.02)
    # Folded on twice the period, a sine is all second harmonic.
    assert shape[0, 3] > 0.8


@pytest.mark.parametrize("phi21", [0.0, 1.3, -2.4])
def test_phi42_is_the_phase_difference_at_the_best_period(phi21):
    rng = np.random.default_rng(11)
    period = 0.37
    t = np.sort(rng.uniform(59000.0, 59300.0, 400))
    x = 2 * np.pi * (t - 59000.0) / period
    mag = 15 + 0.3 * np.cos(x) + 0.1 * np.cos(2 * x + phi21) + rng.normal(0, 0.005, t.size)
    _, shape = binned_periodograms(
        t, mag, np.zeros(t.size, np.int8), np.array([0, t.size]), GRID, 3
    )
    features = dict(zip(SHAPE_FEATURE_NAMES, shape[0], strict=True))
    # The fit writes each harmonic as A_k cos(k x - phi_k), so phi_2 - 2 phi_1 at the period is
    # -phi21 here, whatever the time origin; the other phase features cannot see it.
    found = np.arctan2(features["sin_phi42"], features["cos_phi42"])
    assert abs(np.angle(np.exp(1j * (found + phi21)))) < 0.2


def _folded(mag_of_phase, period, seed):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(59000.0, 59600.0, 400))
    phase = ((t - 59000.0) / period) % 1.0
    mag = mag_of_phase(phase) + rng.normal(0, 0.005, t.size)
    _, shape = binned_periodograms(
        t, mag, np.zeros(t.size, np.int8), np.array([0, t.size]), GRID, 3
    )
    return dict(zip(SHAPE_FEATURE_NAMES, shape[0], strict=True))


def test_folded_statistics_tell_a_contact_binary_from_an_rrc_star():
    # Contact binary, orbit 0.6 d: two minima a little unequal, narrow minima, broad maxima.
    def contact(phase):
        depth = np.where(phase < 0.5, 0.40, 0.30)
        return 15 + depth * np.abs(np.sin(2 * np.pi * phase)) ** 6  # minima at 0.25, 0.75

    # RRc-like, 0.3 d: rises in 35% of the cycle, fades in 65%.
    def rrc(phase):
        rising = phase < 0.35
        return 15 + 0.4 * np.where(rising, 1 - phase / 0.35, (phase - 0.35) / 0.65)

    ew = _folded(contact, 0.6, 5)
    rr = _folded(rrc, 0.3, 6)
    np.testing.assert_allclose(10 ** ew["log_best_period_days"], 0.3, rtol=0.02)
    np.testing.assert_allclose(10 ** rr["log_best_period_days"], 0.3, rtol=0.02)
    # Same period; the shapes differ: faint-skewed and symmetric against a fast rise.
    assert ew["folded_skew"] > 0.5 and abs(rr["folded_skew"]) < 0.3
    # (A binary's flat maximum leaves its rise fraction loose: 0.5 within 0.1.)
    assert abs(ew["rise_fraction"] - 0.5) < 0.1 and abs(rr["rise_fraction"] - 0.35) < 0.05
    # Unequal minima show at twice the period; the pulsator repeats every cycle.
    assert ew["minima_depth_difference"] > 0.15 > abs(rr["minima_depth_difference"])
    assert ew["log_doubling_f_ratio"] > 1.0 > rr["log_doubling_f_ratio"]


def test_bands_are_standardised_separately_and_times_are_float64_safe():
    rng = np.random.default_rng(3)
    t, mag = _sine(rng, 0.45)
    channel = (np.arange(t.size) % 2).astype(np.int8)
    shifted = mag + np.where(channel == 1, 0.7, 0.0)  # r brighter by a colour offset
    offsets = np.array([0, t.size])
    a = binned_periodograms(t, mag, channel, offsets, GRID, 3)[0]
    b = binned_periodograms(t, shifted, channel, offsets, GRID, 3)[0]
    np.testing.assert_allclose(a, b, atol=1e-6)
    # A JD instead of an MJD changes nothing: times are taken from the first epoch.
    c = binned_periodograms(t + 2400000.5, mag, channel, offsets, GRID, 3)[0]
    np.testing.assert_allclose(a, c, atol=1e-4)


def test_degenerate_light_curves_give_zeros():
    t = np.array([59000.0, 59001.0, 59002.0, 59003.0, 59010.0])
    mag = np.array([15.0, 15.0, 15.0, 15.0, 15.0])
    offsets = np.array([0, 2, 5, 5])  # 2 epochs, a flat one, an empty one
    powers, shape = binned_periodograms(t, mag, np.zeros(5, np.int8), offsets, GRID, 3)
    assert powers.shape == (3, GRID.n_bins) and not powers.any() and not shape.any()


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="offsets"):
        binned_periodograms(np.zeros(3), np.zeros(3), np.zeros(3), np.array([0, 2]), GRID, 3)
    with pytest.raises(ValueError, match="channel"):
        binned_periodograms(np.zeros(3), np.zeros(3), np.full(3, 3), np.array([0, 3]), GRID, 3)
    with pytest.raises(ValueError, match="finite"):
        binned_periodograms(
            np.array([0, 1, np.nan]), np.zeros(3), np.zeros(3), np.array([0, 3]), GRID, 3
        )
    with pytest.raises(ValueError, match="min_period_days"):
        PeriodogramGrid(min_period_days=2.0, max_period_days=1.0)
    assert PeriodogramGrid.from_dict(GRID.to_dict()) == GRID
