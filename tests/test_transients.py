"""The transient head: its features, the probability rule, the model file, the shipped card."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from catalogs.band_map import BandMap
from catalogs.schema import (
    CARRIED_COLUMNS,
    CLASS_NAMES,
    CLASSIFICATION_SCHEMA_VERSION,
    TRANSIENT_CLASS_NAMES,
)
from udfs.kernels.bazin import BAZIN_FEATURE_NAMES, bazin_features
from udfs.kernels.lightcurve_cuts import apply_quality_cuts
from udfs.kernels.model_inputs import flat_lightcurves
from udfs.kernels.transient_features import (
    N_TRANSIENT_FEATURES,
    TRANSIENT_FEATURE_NAMES,
    transient_features,
)
from udfs.model.classifier import MODEL_FILE, Classifier, ModelCard, build_model
from udfs.model.inference import classify_batch
from udfs.model.transients import (
    HEAD_FEATURE_NAMES,
    HEAD_OUTPUTS,
    N_HEAD_FEATURES,
    attach_head,
    build_head,
    combine,
    first_detections,
    head_features,
    output_classes,
    row_offsets,
    type_probabilities,
)

keras = pytest.importorskip("keras")
F = {name: k for k, name in enumerate(TRANSIENT_FEATURE_NAMES)}


def _supernova(colour=0.3, rise=15.0, fall=0.05, step=2.0):
    """A g and r light curve: linear rise by 2 mag over ``rise`` days, then ``fall`` mag/day."""
    t = np.arange(0.0, 120.0, step) + 59000.0
    shape = np.where(t - 59000 < rise, 2.0 * (1 - (t - 59000) / rise), fall * (t - 59000 - rise))
    r = 18.0 + shape
    t_all = np.concatenate([t, t + 0.1])
    mag = np.concatenate([r + colour, r])
    channel = np.concatenate([np.zeros(t.size), np.ones(t.size)]).astype(np.int8)
    order = np.argsort(t_all, kind="stable")
    return t_all[order], mag[order], channel[order]


def test_features_read_rise_fall_and_colour():
    t, mag, channel = _supernova(colour=0.3, rise=16.0, fall=0.05)
    f = transient_features(t, mag, channel, np.array([0, t.size]))[0]
    assert f.shape == (N_TRANSIENT_FEATURES,) and len(set(TRANSIENT_FEATURE_NAMES)) == f.size
    assert f[F["has_g"]] == f[F["has_r"]] == 1
    assert f[F["rise_days_r"]] == pytest.approx(16.0, abs=0.01)
    assert f[F["fall_rate_0_20_r"]] == pytest.approx(0.05, abs=1e-4)
    assert f[F["has_fall_rate_60_r"]] == 1 and f[F["fall_rate_60_r"]] == pytest.approx(0.05, 1e-3)
    assert f[F["amplitude_r_mag"]] == pytest.approx(0.05 * (118.0 - 16.0), abs=0.01)
    assert f[F["colour_peak_mag"]] == pytest.approx(0.3, abs=1e-5) and f[F["has_colour_peak"]]
    assert f[F["colour_gr_p20"]] == pytest.approx(0.305, abs=1e-5)  # r is 0.1 d later
    # 1 mag fainter than the peak 20 days after it (0.05 mag/day).
    assert f[F["dmag_r_p20"]] == pytest.approx(1.0, abs=0.01) and f[F["has_dmag_r_p20"]] == 1
    assert f[F["von_neumann_r"]] < 0.1  # a smooth flare, not noise
    # A fast-rising, fast-fading, redder one reads differently.
    t2, mag2, ch2 = _supernova(colour=0.8, rise=6.0, fall=0.12)
    g = transient_features(t2, mag2, ch2, np.array([0, t2.size]))[0]
    assert g[F["rise_days_r"]] < f[F["rise_days_r"]]
    assert g[F["fall_rate_0_20_r"]] > f[F["fall_rate_0_20_r"]]


def test_features_of_sparse_and_empty_light_curves():
    t, mag, channel = _supernova()
    offsets = np.array([0, 0, 1, 3, t.size])
    f = transient_features(t, mag, channel, offsets)
    assert np.all(f[0] == 0)  # empty
    assert f[1][F["log_epochs"]] == pytest.approx(np.log10(2)) and f[1][F["rise_days_g"]] == 0
    assert np.isfinite(f).all()
    # Bands other than g and r are left out.
    other = transient_features(t, mag, np.full(t.size, 2, np.int8), np.array([0, t.size]))
    assert np.all(other == 0)
    with pytest.raises(ValueError, match="finite"):
        transient_features(t, np.where(t > 59010, np.nan, mag), channel, np.array([0, t.size]))


B = {name: k for k, name in enumerate(BAZIN_FEATURE_NAMES)}


def _bazin_flare(t, rise, fall, t0, baseline=0.02):
    """Magnitudes of a Bazin flare in flux (peak flux about 1 at mag 18)."""
    flux = np.exp(-(t - t0) / fall) / (1 + np.exp(-(t - t0) / rise)) + baseline
    return 18.0 - 2.5 * np.log10(flux)


def test_bazin_fit_recovers_rise_and_fall_times():
    rng = np.random.default_rng(3)
    t = np.sort(rng.uniform(59000.0, 59250.0, 80))
    channel = (np.arange(t.size) % 2).astype(np.int8)
    slow = _bazin_flare(t, 10.0, 120.0, 59030.0)
    fast = _bazin_flare(t, 3.0, 25.0, 59020.0)
    mag = np.where(channel == 0, fast, slow) + rng.normal(0, 0.01, t.size)
    f = bazin_features(t, mag, np.full(t.size, 0.01), channel, np.array([0, t.size]))[0]
    assert f.shape == (len(BAZIN_FEATURE_NAMES),)
    assert f[B["has_bazin_g"]] == f[B["has_bazin_r"]] == 1
    # The grid's points near the true times (log10 spacing of the grid: 0.27 and 0.21).
    assert f[B["bazin_log_tau_rise_g"]] == pytest.approx(np.log10(3.0), abs=0.15)
    assert f[B["bazin_log_tau_fall_g"]] == pytest.approx(np.log10(25.0), abs=0.15)
    assert f[B["bazin_log_tau_fall_r"]] == pytest.approx(np.log10(120.0), abs=0.15)
    assert f[B["bazin_gain_g"]] > 0.95 and f[B["bazin_gain_r"]] > 0.95
    # Noise about a constant: the flare explains little; under four epochs: no fit.
    flat = 18.0 + rng.normal(0, 0.02, t.size)
    g = bazin_features(t, flat, np.full(t.size, 0.02), channel, np.array([0, 3, t.size]))
    assert np.all(g[0] == 0) and g[1][B["bazin_gain_r"]] < 0.5
    with pytest.raises(ValueError, match="finite"):
        bazin_features(t, mag, np.full(t.size, np.nan), channel, np.array([0, t.size]))


def test_first_detections_cut_every_light_curve():
    t, mag, channel = _supernova()
    flat = flat_lightcurves(
        pa.array(
            [{"hmjd": t, "mag": mag, "magerr": np.full(t.size, 0.05), "band": channel}] * 2,
            pa.struct([("hmjd", pa.list_(pa.float64())), ("mag", pa.list_(pa.float32())),
                       ("magerr", pa.list_(pa.float32())), ("band", pa.list_(pa.int8()))]),
        )
    )  # fmt: skip
    cut = first_detections(flat, 5)
    assert cut.n_lightcurves == 2 and list(np.diff(cut.offsets)) == [5, 5]
    np.testing.assert_array_equal(cut.t_days[:5], t[:5])
    assert head_features(cut).shape == (2, N_HEAD_FEATURES)


def test_combine_follows_the_rule():
    cnn_classes = list(CLASS_NAMES)
    p_cnn = np.zeros((3, len(cnn_classes)))
    p_cnn[:, cnn_classes.index("rrab")] = 0.9
    p_cnn[:, cnn_classes.index("cv")] = 0.2
    p_head = np.zeros((3, len(HEAD_OUTPUTS)))
    p_head[0, [0, 1]] = [0.9, 0.1]  # not a transient: the CNN's class
    p_head[1, [0, 1, 2]] = [0.2, 0.7, 0.1]  # a SN Ia
    p_head[2, [0, HEAD_OUTPUTS.index("nova")]] = [0.4, 0.6]  # a nova: cv
    probabilities, p_transient, best = combine(p_cnn, cnn_classes, p_head)
    classes = output_classes(cnn_classes)
    assert classes[: len(CLASS_NAMES)] == CLASS_NAMES
    assert classes[len(CLASS_NAMES) :] == TRANSIENT_CLASS_NAMES
    np.testing.assert_allclose(p_transient, [0.1, 0.8, 0.6], rtol=1e-6)
    assert [classes[k] for k in best] == ["rrab", "sn_ia", "cv"]
    rrab, cv, ia = (classes.index(c) for c in ("rrab", "cv", "sn_ia"))
    np.testing.assert_allclose(probabilities[:, rrab], 0.9 * (1 - p_transient), rtol=1e-6)
    # p(type | transient) is the head's types renormalised: all of row 2's is nova.
    np.testing.assert_allclose(probabilities[2, cv], 0.2 * 0.4 + 0.6 * 1.0, rtol=1e-6)
    np.testing.assert_allclose(probabilities[1, ia], 0.8 * (0.7 / 0.8), rtol=1e-6)


def test_type_offsets_move_the_type_never_p_transient():
    p_head = np.zeros((2, len(HEAD_OUTPUTS)))
    p_head[:, [0, 1, 3]] = [0.2, 0.5, 0.3]  # sn_ia ahead of sn_ibc
    regimes = [
        {"min_epochs": 0, "max_epochs": 5, "offsets": [0.0] * len(HEAD_OUTPUTS)},
        {"min_epochs": 6, "max_epochs": 10**9, "offsets": [0, 0, 0, 1.0, 0, 0, 0, 0]},
    ]
    offsets = row_offsets(regimes, [4, 30])
    assert offsets.shape == (2, len(HEAD_OUTPUTS)) and offsets[0].sum() == 0
    types = type_probabilities(p_head, offsets)
    np.testing.assert_allclose(types.sum(axis=1), 1.0)
    np.testing.assert_allclose(types[0, :3], [0.625, 0, 0.375])
    expected = 0.3 * np.e / (0.5 + 0.3 * np.e)  # sn_ibc's share after the offset
    np.testing.assert_allclose(types[1, 2], expected)
    probabilities, p_transient, best = combine(np.zeros((2, 15)), CLASS_NAMES, p_head, offsets)
    np.testing.assert_allclose(p_transient, [0.8, 0.8], rtol=1e-6)
    classes = output_classes(CLASS_NAMES)
    assert [classes[k] for k in best] == ["sn_ia", "sn_ibc"]
    assert row_offsets(None, [3]) is None


@pytest.fixture(scope="module")
def small_model_with_head(tmp_path_factory, model_dir):
    """A model directory: an untrained CNN of the shipped card's inputs and an untrained head."""
    keras.utils.set_random_seed(5)
    shipped = ModelCard.read(model_dir)
    n_features = shipped.input_shapes["features"][0]
    cnn = build_model(
        shipped.input_shapes, len(CLASS_NAMES), feature_mean=np.zeros(n_features),
        feature_variance=np.ones(n_features),
    )  # fmt: skip
    head = build_head(np.zeros(N_HEAD_FEATURES), np.ones(N_HEAD_FEATURES))
    path = tmp_path_factory.mktemp("with_head")
    attach_head(cnn, head).save(path / MODEL_FILE)
    transients = {"outputs": list(HEAD_OUTPUTS), "features": list(HEAD_FEATURE_NAMES)}
    card = ModelCard(**{**shipped.__dict__, "transients": transients})
    card.write(path)
    return path, card


def test_a_model_with_a_head_loads_in_safe_mode_and_fills_the_transient_columns(
    small_model_with_head, sample_file
):
    path, card = small_model_with_head
    classifier = Classifier.load(path / MODEL_FILE, card)
    assert classifier.has_transients and classifier.classes == CLASS_NAMES
    assert classifier.output_classes == CLASS_NAMES + TRANSIENT_CLASS_NAMES
    table = pq.read_table(sample_file).slice(0, 60)
    table = table.append_column("source_file", pa.array(["f"] * table.num_rows))
    table = table.append_column("source_row", pa.array(np.arange(table.num_rows)))
    cut = pa.Table.from_batches([apply_quality_cuts(table.combine_chunks().to_batches()[0], 20)])
    kept = cut.filter(cut.column("reject_reason").is_null())
    batch = kept.select([*CARRIED_COLUMNS, "lightcurve"]).combine_chunks().to_batches()[0]
    out = classify_batch(batch, classifier, batch_size=16)
    flat = flat_lightcurves(batch.column("lightcurve"))
    p_head = classifier.predict_transients(head_features(flat), 16)
    expected, p_transient, best = combine(
        classifier.predict(card.model_inputs(flat), 16), CLASS_NAMES, p_head
    )
    np.testing.assert_array_equal(out.column("p_transient").to_numpy(), p_transient)
    for k, name in enumerate(classifier.output_classes):
        np.testing.assert_array_equal(out.column(f"p_{name}").to_numpy(), expected[:, k])
    assert out.column("predicted_class").to_pylist() == [classifier.output_classes[k] for k in best]
    # The head alone does not depend on its batch's other rows.
    np.testing.assert_array_equal(
        classifier.predict_transients(head_features(flat)[3:5], 16), p_head[3:5]
    )


def test_a_card_and_a_model_that_disagree_on_the_head_are_refused(small_model_with_head):
    path, card = small_model_with_head
    with pytest.raises(ValueError, match="transients"):
        Classifier.load(path / MODEL_FILE, ModelCard(**{**card.__dict__, "transients": None}))
    # A head fitted on other features than this varsky computes: refused, with the remedy.
    older = card.transients | {"features": list(TRANSIENT_FEATURE_NAMES)}
    with pytest.raises(ValueError, match="--transients-only"):
        Classifier.load(path / MODEL_FILE, ModelCard(**{**card.__dict__, "transients": older}))


def test_the_shipped_model_knows_transients(model_dir):
    card = ModelCard.read(model_dir)
    assert CLASSIFICATION_SCHEMA_VERSION == "3"
    assert card.transients["outputs"] == list(HEAD_OUTPUTS)
    assert card.transients["nova_class"] == "cv"
    assert card.output_classes == CLASS_NAMES + TRANSIENT_CLASS_NAMES
    assert card.transients["features"] == list(HEAD_FEATURE_NAMES)
    scores = card.transients["validation"]
    assert {"all", "first_3", "first_5", "first_10"} <= set(scores)
    assert scores["all"]["per_class"]["sn_ia"]["recall"] > 0.8
    regimes = card.transients["type_log_offsets"]
    assert [(r["min_epochs"], r["max_epochs"]) for r in regimes] == [(0, 5), (6, 10), (11, 10**9)]
    assert all(len(r["offsets"]) == len(HEAD_OUTPUTS) for r in regimes)


def test_bts_light_curves_read_as_transients(model_dir):
    """Real BTS transients of the validation split, through the shipped head."""
    from udfs.model.training import VALIDATION
    from udfs.model.variability_training import labelled_split

    table, split = labelled_split("data/real_labelled/ztf_bts", BandMap.parse("ztf"), 3, 0.2, 2026)
    val = table.filter(pa.array(split == VALIDATION))
    classifier = Classifier.load(model_dir / MODEL_FILE)
    p = classifier.predict_transients(head_features(flat_lightcurves(val.column("lightcurve"))))
    assert val.num_rows > 300
    assert np.mean(p[:, 0] < 0.5) > 0.97  # called transients
