"""Training logic without Spark: real split, multi-label targets, calibration, real-data scores."""

from __future__ import annotations

import numpy as np
import pytest

from udfs.model.real_validation import MAHABAL2017_RECALL, format_scores, labelled_scores
from udfs.model.training import (
    TRAIN,
    VALIDATION,
    PlattScaling,
    accepted_mask,
    class_weights,
    expected_calibration_error,
    first_per_class,
    fit_platt,
    fold_calibration,
    multi_hot_targets,
    real_split,
    sample_weights,
)


def test_real_split_is_stratified_fixed_and_order_free():
    rng = np.random.default_rng(0)
    ids = rng.permutation(np.arange(1000, 1500))
    strata = np.where(ids % 5 == 0, "crts/RRd", "crts/EW")
    split = real_split(ids, strata, 0.2, seed=7)
    for s in ("crts/RRd", "crts/EW"):
        mine = split[strata == s]
        assert abs((mine == VALIDATION).mean() - 0.2) < 0.01
    order = rng.permutation(ids.size)
    again = real_split(ids[order], strata[order], 0.2, seed=7)
    np.testing.assert_array_equal(again, split[order])
    assert set(np.unique(split)) == {TRAIN, VALIDATION}
    assert not np.array_equal(real_split(ids, strata, 0.2, seed=8), split)


def test_multi_hot_and_accepted():
    classes = ["rrab", "rrc", "ew"]
    y = multi_hot_targets(["rrc|rrab", "ew"], classes)
    np.testing.assert_array_equal(y, [[1, 1, 0], [0, 0, 1]])
    assert accepted_mask(["rrc|rrab"], classes).tolist() == [[True, True, False]]
    with pytest.raises(ValueError, match="'sn_ia' is not a model class"):
        multi_hot_targets(["sn_ia"], classes)


def test_class_and_sample_weights_balance():
    y = multi_hot_targets(["a"] * 90 + ["b"] * 10, ["a", "b"])
    w = sample_weights(y, class_weights(y))
    assert w[:90].sum() == pytest.approx(w[90:].sum())


def test_first_per_class():
    labels = np.array([0, 1, 0, 1, 0, 2])
    eligible = np.array([True, True, False, True, True, False])
    assert first_per_class(labels, eligible, 1).tolist() == [0, 1]
    assert first_per_class(labels, eligible, 5).tolist() == [0, 1, 3, 4]


def test_platt_recovers_a_known_distortion():
    rng = np.random.default_rng(1)
    n = 20000
    z_true = rng.normal(0, 2, (n, 2))
    y = (rng.random((n, 2)) < 1 / (1 + np.exp(-z_true))).astype(np.float32)
    # An overconfident, shifted model: logit = 3 * z_true + 1.
    p_model = 1 / (1 + np.exp(-(3 * z_true + 1)))
    scaling = fit_platt(p_model, y)
    np.testing.assert_allclose(scaling.scale, [1 / 3, 1 / 3], rtol=0.05)
    np.testing.assert_allclose(scaling.shift, [-1 / 3, -1 / 3], atol=0.05)
    right = y[np.arange(n), p_model.argmax(1)] > 0
    after = scaling.apply(p_model)
    right_after = y[np.arange(n), after.argmax(1)] > 0
    assert expected_calibration_error(after, right_after) < expected_calibration_error(
        p_model, right
    )


def test_fold_calibration_matches_apply():
    import keras

    inputs = keras.Input(shape=(4,), name="x")
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    out = keras.layers.Dense(3, activation="sigmoid", name="class_probability")(hidden)
    model = keras.Model(inputs, out)
    x = np.random.default_rng(2).normal(size=(50, 4)).astype(np.float32)
    before = np.asarray(model.predict(x, verbose=0))
    scaling = PlattScaling(scale=(0.5, 2.0, 1.0), shift=(0.3, -1.0, 0.0))
    fold_calibration(model, scaling)
    after = np.asarray(model.predict(x, verbose=0))
    np.testing.assert_allclose(after, scaling.apply(before), atol=2e-5)


def test_ece_of_perfect_and_overconfident():
    p = np.array([[0.9, 0.1]] * 10)
    assert expected_calibration_error(p, np.array([True] * 9 + [False])) == pytest.approx(0.0)
    assert expected_calibration_error(p, np.array([False] * 10)) == pytest.approx(0.9)


def test_labelled_scores_with_ambiguous_labels_and_paper_table():
    classes = ["rrab", "rrc", "ew", "ea", "rotational", "mira", "semiregular"]
    groups = ["EW", "EA", "RRab", "RRc", "RRd", "RRd", "RS_CVn", "LPV"]
    labels = ["ew", "ea", "rrab", "rrc", "rrc|rrab", "rrc|rrab", "rotational", "mira|semiregular"]
    called = ["ew", "ew", "rrab", "rrc", "rrab", "ea", "rotational", "semiregular"]
    p = np.full((len(labels), len(classes)), 0.01)
    for row, c in enumerate(called):
        p[row, classes.index(c)] = 0.9
    scores = labelled_scores(p, labels, groups, classes)
    assert scores["accuracy"] == pytest.approx(6 / 8)
    assert scores["per_label"]["RRd"]["recall"] == 0.5
    assert scores["per_label"]["EA"]["predicted"] == {"ew": 1}
    m = scores["mahabal2017"]
    assert m["varsky"]["LPV"] == 1.0 and m["paper"] == MAHABAL2017_RECALL
    assert m["varsky_mean"] == pytest.approx((1 + 0 + 1 + 1 + 0.5 + 1 + 1) / 7)
    # EA called ew: ea's recall 0, ew's precision 1/2.
    assert scores["per_class"]["ea"]["recall"] == 0.0
    assert scores["per_class"]["ew"]["precision"] == 0.5
    text = "\n".join(format_scores("crts", scores))
    assert "RRd" in text and "mean" in text


def test_finetune_then_calibrate_without_spark():
    import keras

    from udfs.model.training import TRAIN, calibrate, finetune

    rng = np.random.default_rng(3)
    inputs = keras.Input(shape=(4,), name="x")
    out = keras.layers.Dense(3, activation="sigmoid", name="class_probability")(
        keras.layers.Dense(8, activation="relu")(inputs)
    )
    model = keras.Model(inputs, out)
    classes = ["a", "b", "c"]
    real_x = {"x": rng.normal(size=(60, 4)).astype(np.float32)}
    real_y = multi_hot_targets(["a|b"] * 20 + ["b"] * 20 + ["a"] * 20, classes)
    real_split_ = np.where(np.arange(60) % 5 == 0, VALIDATION, TRAIN)
    sim_x = {"x": rng.normal(size=(90, 4)).astype(np.float32)}
    sim_labels = np.repeat(np.arange(3), 30)
    sim_split = np.where(np.arange(90) % 3 == 0, VALIDATION, TRAIN)
    n_real, n_sim = finetune(
        model, real_x, real_y, real_split_ == TRAIN, sim_x, sim_labels, sim_split == TRAIN,
        sim_per_class=5, epochs=1, learning_rate=1e-3, batch_size=16,
    )  # fmt: skip
    assert (n_real, n_sim) == (48, 15)
    before = np.asarray(model.predict(real_x["x"][real_split_ == VALIDATION], verbose=0))
    cal = calibrate(
        model, lambda x: np.asarray(model.predict(x["x"], verbose=0)), real_x, real_y,
        real_split_ == VALIDATION, sim_x, sim_labels, sim_split == VALIDATION, sim_per_class=4,
    )  # fmt: skip
    assert (cal.n_real, cal.n_simulated) == (12, 12)
    np.testing.assert_allclose(cal.p_real_before, before, atol=1e-6)
    folded = np.asarray(model.predict(real_x["x"][real_split_ == VALIDATION], verbose=0))
    np.testing.assert_allclose(folded, cal.p_real_after, atol=2e-5)
    assert set(cal.reliability) == {
        "real validation, before calibration",
        "real validation, after calibration",
    }
