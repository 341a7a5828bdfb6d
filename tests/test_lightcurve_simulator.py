from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from catalogs.schema import CLASS_NAMES
from udfs.kernels.dmdt import DmDtGrid, dmdt_images
from udfs.simulators.lightcurve_simulator import (
    SURVEY_END_HMJD,
    SURVEY_START_HMJD,
    SimulatedLightCurves,
    draw_magerr,
    load_dr_cadences,
    median_magerr,
    object_variability,
    simulate_lightcurves,
)


def _band_counts(sim):
    """Epochs per light curve and band, shape (n_lc, 3)."""
    obj = np.repeat(np.arange(sim.offsets.size - 1), np.diff(sim.offsets))
    return np.bincount(obj * 3 + sim.channel, minlength=(sim.offsets.size - 1) * 3).reshape(-1, 3)


SAMPLE = (
    Path(__file__).resolve().parents[1] / "data" / "sample" / "ztf_000250_zg_c01_q1_dr5.parquet"
)
N_PER_CLASS = 40

#: Stated parameter ranges: period (days), amplitude (mag); None where not applicable.
RANGES = {
    "rrab": ((0.45, 0.9), (0.5, 1.2)),
    "rrc": ((0.2, 0.45), (0.2, 0.6)),
    "cepheid": ((1.0, 50.0), (0.2, 1.2)),
    "delta_scuti": ((0.02, 0.25), (0.01, 0.8)),
    "ew": ((0.22, 0.6), (0.2, 0.8)),
    "ea": ((0.5, 20.0), (0.1, 2.0)),
    "mira": ((100.0, 700.0), (1.0, 5.0)),
    "semiregular": ((20.0, 300.0), (0.05, 1.0)),
    "rotational": ((0.5, 30.0), (0.02, 0.3)),
    "agn": (None, (0.1, 0.3)),
    "yso": (None, (0.2, 2.0)),
    "cv": (None, (2.0, 6.0)),
    "flare": (None, (0.5, 3.0)),
}


@pytest.fixture(scope="module")
def sim() -> SimulatedLightCurves:
    return simulate_lightcurves(N_PER_CLASS, seed=7, cadence_sample_path=SAMPLE)


def _segment(sim: SimulatedLightCurves, k: int) -> slice:
    return slice(sim.offsets[k], sim.offsets[k + 1])


def test_same_seed_same_light_curves_other_seed_differs():
    a = simulate_lightcurves(3, seed=11)
    b = simulate_lightcurves(3, seed=11)
    c = simulate_lightcurves(3, seed=12)
    for name in ("t_hmjd", "mag", "magerr", "channel", "offsets", "labels", "amplitude_mag"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.t_hmjd.size != c.t_hmjd.size or not np.array_equal(a.mag, c.mag)


def test_a_class_does_not_depend_on_the_others_simulated(sim):
    alone = simulate_lightcurves(N_PER_CLASS, seed=7, classes=("ew",), cadence_sample_path=SAMPLE)
    first = CLASS_NAMES.index("ew") * N_PER_CLASS
    lo, hi = sim.offsets[first], sim.offsets[first + N_PER_CLASS]
    np.testing.assert_array_equal(alone.t_hmjd, sim.t_hmjd[lo:hi])
    np.testing.assert_array_equal(alone.mag, sim.mag[lo:hi])


def test_layout_dtypes_and_offsets(sim):
    n_lc = len(CLASS_NAMES) * N_PER_CLASS
    assert sim.n_lightcurves == n_lc
    assert sim.t_hmjd.dtype == np.float64
    assert sim.mag.dtype == sim.magerr.dtype == sim.mag_model.dtype == np.float32
    assert sim.channel.dtype == np.int8 and sim.offsets.dtype == np.int64
    assert sim.labels.dtype == np.int16
    assert sim.offsets[0] == 0 and sim.offsets[-1] == sim.t_hmjd.size
    assert np.all(sim.n_epochs_per_lightcurve >= 20)
    assert sim.n_epochs_per_lightcurve.max() <= 1000
    assert set(np.unique(sim.channel)) <= {0, 1, 2}
    assert np.all(np.isfinite(sim.mag)) and np.all(sim.magerr > 0)
    assert sim.t_hmjd.min() >= SURVEY_START_HMJD and sim.t_hmjd.max() <= SURVEY_END_HMJD


def test_times_sorted_within_each_light_curve(sim):
    steps = np.diff(sim.t_hmjd)
    boundary = np.zeros(steps.size, bool)
    boundary[sim.offsets[1:-1] - 1] = True
    assert np.all(steps[~boundary] >= 0)


def test_every_class_present_in_equal_numbers(sim):
    counts = np.bincount(sim.labels, minlength=len(CLASS_NAMES))
    assert counts.tolist() == [N_PER_CLASS] * len(CLASS_NAMES)
    assert CLASS_NAMES[sim.labels[0]] == CLASS_NAMES[0]


@pytest.mark.parametrize("name", sorted(RANGES))
def test_parameters_inside_stated_ranges(sim, name):
    period_range, amp_range = RANGES[name]
    mine = sim.labels == CLASS_NAMES.index(name)
    period, amp = sim.period_days[mine], sim.amplitude_mag[mine]
    if period_range is None:
        assert np.all(np.isnan(period))
    else:
        assert np.all((period >= period_range[0]) & (period <= period_range[1]))
    assert np.all((amp >= amp_range[0]) & (amp <= amp_range[1]))
    mean = sim.mean_mag[mine]
    assert np.all((mean >= 14.0) & (mean <= 20.5))


@pytest.mark.parametrize("name", ["rrab", "rrc", "ew"])
def test_periodic_model_varies_with_its_amplitude(sim, name):
    checked = 0
    for k in np.flatnonzero(sim.labels == CLASS_NAMES.index(name)):
        s = _segment(sim, k)
        g_model = sim.mag_model[s][sim.channel[s] == 0].astype(np.float64)
        if g_model.size < 100:
            continue
        ptp = np.ptp(g_model)
        amp = sim.amplitude_mag[k]
        assert 0.7 * amp <= ptp <= amp * (1 + 1e-5) + 1e-5, (k, ptp, amp)
        checked += 1
    assert checked >= 5


def test_constant_model_is_flat_and_noise_is_like_the_dr5_sample(sim):
    mine = np.flatnonzero(sim.labels == CLASS_NAMES.index("constant"))
    lo, hi = sim.offsets[mine[0]], sim.offsets[mine[-1] + 1]
    for k in mine:
        s = _segment(sim, k)
        for band in range(3):
            model = sim.mag_model[s][sim.channel[s] == band]
            if model.size:
                assert np.ptp(model) == 0.0
    pulls = (sim.mag[lo:hi] - sim.mag_model[lo:hi]) / sim.magerr[lo:hi]
    # Gaussian noise of the stated error would give a median |pull| of 0.674; the errors are
    # underestimated by a factor 0.9-1.4 (DR5: median reduced chi-square 1.6).
    assert 0.7 < np.median(np.abs(pulls)) < 0.95
    # Epochs fainter than the limiting magnitude are lost: the faint side is truncated.
    assert sim.mag[lo:hi].max() < 20.8 + 5 * 0.35
    many = simulate_lightcurves(300, seed=3, classes=["constant"])
    level = np.repeat(many.mean_mag, many.n_epochs_per_lightcurve)
    near_limit = (level > 20.0) & (many.channel == 0)
    residual = many.mag[near_limit] - many.mag_model[near_limit]
    assert near_limit.sum() > 500 and np.mean(residual) < -0.02  # detected epochs: biased bright


def test_band_subsets_include_single_bands_and_i(sim):
    present = _band_counts(sim) > 0
    g_only = present[:, 0] & ~present[:, 1] & ~present[:, 2]
    r_only = ~present[:, 0] & present[:, 1] & ~present[:, 2]
    assert g_only.mean() > 0.05
    assert r_only.mean() > 0.05
    assert 0 < present[:, 2].mean() < 0.3
    assert (present[:, 0] & present[:, 1]).mean() > 0.5


def test_real_cadences_come_from_the_sample(sim):
    cadences = load_dr_cadences(SAMPLE)
    real_times = np.concatenate(cadences)
    assert 0.1 < sim.real_cadence.mean() < 0.45
    for k in np.flatnonzero(sim.real_cadence)[:20]:
        assert np.all(np.isin(sim.t_hmjd[_segment(sim, k)], real_times))
    assert not simulate_lightcurves(2, seed=1).real_cadence.any()


def test_load_dr_cadences_keeps_good_epochs_of_long_light_curves():
    cadences = load_dr_cadences(SAMPLE)
    assert len(cadences) == 1363  # the count data/sample/README.md states
    assert all(c.dtype == np.float64 and c.size >= 20 for c in cadences)
    assert all(np.all(np.diff(c) >= 0) for c in cadences)


def test_magerr_relation_interpolates_the_sample_medians():
    np.testing.assert_allclose(median_magerr([14.0, 17.0, 17.5, 21.0, 23.0]),
                               [0.016, 0.035, 0.055, 0.22, 0.22])  # fmt: skip


def test_images_of_simulated_light_curves(sim):
    images = dmdt_images(
        sim.t_hmjd, sim.mag, sim.channel, sim.offsets, DmDtGrid.named("mahabal2017"), 3
    )
    assert images.shape == (sim.n_lightcurves, 22, 24, 3) and images.dtype == np.uint8
    present = _band_counts(sim) >= 2
    assert np.array_equal(images.any(axis=(1, 2)), present)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="unknown classes.*'rr_lyrae'"):
        simulate_lightcurves(2, seed=1, classes=("rr_lyrae",))
    with pytest.raises(ValueError, match="n_per_class must be >= 1, got 0"):
        simulate_lightcurves(0, seed=1)
    with pytest.raises(FileNotFoundError, match="cadence sample .*nowhere.parquet"):
        simulate_lightcurves(2, seed=1, cadence_sample_path="nowhere.parquet")


def test_object_variability_evaluates_one_object_at_given_epochs():
    t = 58300.0 + np.sort(np.random.default_rng(0).uniform(0, 700, 300))
    channel = np.tile([0, 1], 150)
    a = object_variability("rrab", np.random.default_rng(5), t, channel)
    b = object_variability("rrab", np.random.default_rng(5), t, channel)
    np.testing.assert_array_equal(a.delta_mag, b.delta_mag)
    assert a.delta_mag.shape == t.shape
    assert 0.45 <= a.period_days <= 0.9 and 0.5 <= a.amplitude_mag <= 1.2
    # The r band varies less than g for a pulsator.
    assert np.ptp(a.delta_mag[channel == 1]) < np.ptp(a.delta_mag[channel == 0])
    assert np.isnan(object_variability("agn", np.random.default_rng(5), t, channel).period_days)
    with pytest.raises(ValueError, match="unknown class 'rr_lyrae'"):
        object_variability("rr_lyrae", np.random.default_rng(5), t, channel)


def test_draw_magerr_scatters_about_the_median_relation():
    mag = np.full(20000, 19.0)
    magerr = draw_magerr(np.random.default_rng(2), mag)
    assert magerr.shape == mag.shape and (magerr > 0).all()
    assert np.median(magerr) == pytest.approx(median_magerr(19.0), rel=0.02)
    assert np.std(np.log(magerr)) == pytest.approx(0.2, rel=0.05)
