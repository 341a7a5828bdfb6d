"""udfs.kernels.lightcurve_features: noise-aware statistics on known light curves."""

import numpy as np
import pytest

from udfs.kernels.lightcurve_features import FEATURE_NAMES, N_FEATURES, lightcurve_features


def _one(t, mag, err, channel=None):
    channel = np.zeros(t.size, np.int8) if channel is None else channel
    return dict(
        zip(
            FEATURE_NAMES, lightcurve_features(t, mag, err, channel, [0, t.size], 3)[0], strict=True
        )
    )


def test_white_noise_with_right_errors():
    rng = np.random.default_rng(0)
    t = 59000 + np.sort(rng.uniform(0, 300, 2000))
    f = _one(t, 17 + rng.normal(0, 0.05, t.size), np.full(t.size, 0.05))
    assert abs(f["log_chi2"]) < 0.05 and abs(f["log_spread_over_error"]) < 0.05
    assert abs(f["von_neumann"] - 2.0) < 0.15 and abs(f["skew"]) < 0.2
    assert f["bright_fraction"] < 0.01 and f["faint_fraction"] < 0.01
    np.testing.assert_allclose(f["log_epochs"], np.log10(t.size), rtol=1e-6)
    np.testing.assert_allclose(10 ** f["log_baseline_days"], t.max() - t.min(), rtol=1e-5)


def test_smooth_variable_and_one_sided_events():
    t = 59000 + np.arange(300.0)
    slow = 15 + 0.5 * np.sin(2 * np.pi * t / 100.0)
    f = _one(t, slow, np.full(t.size, 0.02))
    assert f["von_neumann"] < 0.1 and f["log_chi2"] > 2.0
    flares = np.full(t.size, 15.0)
    flares[[10, 100, 200]] -= 2.0  # brighter
    g = _one(t, flares + np.random.default_rng(1).normal(0, 0.02, t.size), np.full(t.size, 0.02))
    assert g["bright_fraction"] == pytest.approx(3 / 300, rel=1e-5)
    assert g["faint_fraction"] < 0.01  # 3-sigma noise only
    assert g["skew"] < -3 and g["bright_tail"] > g["faint_tail"] + 1


def test_band_offsets_do_not_count_as_variability():
    rng = np.random.default_rng(2)
    t = 59000 + np.sort(rng.uniform(0, 300, 400))
    channel = (np.arange(t.size) % 2).astype(np.int8)
    mag = 16 + 0.8 * channel + rng.normal(0, 0.03, t.size)
    f = _one(t, mag, np.full(t.size, 0.03), channel)
    assert abs(f["log_chi2"]) < 0.1
    assert f["colour_gr_mag"] == pytest.approx(-0.8, abs=0.01) and f["has_gr"] == 1.0
    assert f["has_ri"] == 0.0 and f["colour_ri_mag"] == 0.0
    # A pulsator varying half as much in r as in g.
    wave = np.sin(2 * np.pi * t / 7.3)
    g = _one(t, 16 + np.where(channel == 0, 0.4, 0.2) * wave, np.full(t.size, 0.01), channel)
    assert g["log_amplitude_ratio_rg"] == pytest.approx(np.log10(0.5), abs=0.05)


def test_shapes_and_errors():
    out = lightcurve_features(np.zeros(1), np.zeros(1), np.ones(1), np.zeros(1), [0, 1, 1], 3)
    assert out.shape == (2, N_FEATURES) and not out.any()
    with pytest.raises(ValueError, match="finite"):
        lightcurve_features(np.zeros(2), np.zeros(2), np.array([1, np.inf]), np.zeros(2), [0, 2], 3)
