from __future__ import annotations

import json

import numpy as np
import pytest

from udfs.kernels.dmdt import DmDtGrid
from udfs.model.classifier import (
    CLASS_NAMES,
    MODEL_CARD_FILE,
    MODEL_FILE,
    Classifier,
    ModelCard,
    TrainingRecord,
    build_model,
    classification_metrics,
    configure_tensorflow_threads,
)

keras = pytest.importorskip("keras")
# Keras's own saving code converts TensorFlow variables the numpy-1 way.

GRID = DmDtGrid.named("mahabal2017")
INPUT_SHAPE = (*GRID.shape, 3)


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *INPUT_SHAPE), dtype=np.uint8)


def _card(**kwargs) -> ModelCard:
    return ModelCard.for_grid(GRID, CLASS_NAMES, **kwargs)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A model directory with an untrained model and its card."""
    keras.utils.set_random_seed(3)
    path = tmp_path_factory.mktemp("model")
    model = build_model(INPUT_SHAPE, len(CLASS_NAMES))
    model.save(path / MODEL_FILE)
    _card().write(path)
    return path, model


def test_taxonomy_order_is_the_contract():
    assert CLASS_NAMES == (
        "constant", "rrab", "rrc", "cepheid", "delta_scuti", "ew", "ea", "mira", "semiregular",
        "rotational", "agn", "yso", "cv", "flare", "bogus",
    )  # fmt: skip
    assert (MODEL_FILE, MODEL_CARD_FILE) == ("model.keras", "model_card.json")


def test_model_is_self_contained_and_small(model_dir):
    path, model = model_dir
    assert model.input_shape == (None, *INPUT_SHAPE)
    assert model.output_shape == (None, len(CLASS_NAMES))
    layer_types = {type(layer).__name__ for layer in model.layers}
    assert "Rescaling" in layer_types and "Lambda" not in layer_types
    assert (path / MODEL_FILE).stat().st_size < 3_000_000


def test_predictions_survive_save_and_safe_load(model_dir):
    path, model = model_dir
    images = _images(37)
    expected = np.asarray(model(images, training=False))
    loaded = Classifier.load(path / MODEL_FILE, _card())
    got = loaded.predict(images, batch_size=16)
    assert got.shape == (37, len(CLASS_NAMES)) and got.dtype == np.float32
    assert np.all((got >= 0) & (got <= 1))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # A directory works too, with the card beside the model.
    from_dir = Classifier.load(path)
    assert from_dir.classes == CLASS_NAMES
    np.testing.assert_array_equal(from_dir.predict(images), loaded.predict(images, batch_size=1024))


def test_empty_and_bad_inputs(model_dir):
    classifier = Classifier.load(model_dir[0])
    assert classifier.predict(_images(0)).shape == (0, len(CLASS_NAMES))
    with pytest.raises(TypeError, match="images must be uint8.*float32"):
        classifier.predict(_images(2).astype(np.float32))
    with pytest.raises(ValueError, match=r"dmdt_image must have shape \(n, \*\(22, 24, 3\)\)"):
        classifier.predict(np.zeros((2, 26, 26, 3), np.uint8))


def test_card_that_disagrees_with_the_model_is_refused(model_dir):
    with pytest.raises(ValueError, match="model has 15 outputs, the card names 2 classes"):
        Classifier.load(model_dir[0], ModelCard.for_grid(GRID, ("a", "b")))
    with pytest.raises(ValueError, match="do not match the card"):
        Classifier.load(model_dir[0], ModelCard.for_grid(DmDtGrid.named("scope")))


def test_lambda_layer_is_refused_by_safe_mode(tmp_path):
    inputs = keras.Input(shape=INPUT_SHAPE, dtype="uint8")
    x = keras.layers.Lambda(lambda v: v * 2.0)(keras.layers.Rescaling(1 / 255)(inputs))
    outputs = keras.layers.Dense(len(CLASS_NAMES), activation="sigmoid")(keras.layers.Flatten()(x))
    keras.Model(inputs, outputs).save(tmp_path / MODEL_FILE)
    _card().write(tmp_path)
    with pytest.raises(ValueError, match="(?i)lambda"):
        Classifier.load(tmp_path / MODEL_FILE)


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="model file .*model.keras: no such file"):
        Classifier.load(tmp_path)
    with pytest.raises(ValueError, match="need a .keras file"):
        Classifier.load(tmp_path / "model.h5")


def test_card_round_trips_through_json(tmp_path):
    metrics = classification_metrics([0, 1, 2, 2], [0, 2, 2, 2], CLASS_NAMES)
    record = TrainingRecord(
        description="test", seed=5, sha256="ab" * 32, objects_per_class=8, n_train=6, n_val=1,
        n_test=1, epochs_run=1, max_epochs=1, batch_size=4, cadence_sample=None, duration_s=1.5,
    )  # fmt: skip
    card = _card(training=record, test_metrics=metrics)
    again = ModelCard.from_dict(json.loads(json.dumps(card.to_dict())))
    assert again == card
    card.write(tmp_path)
    assert ModelCard.read(tmp_path) == card
    data = json.loads((tmp_path / MODEL_CARD_FILE).read_text())
    for key in ("name", "varsky_version", "classes", "grid", "norm", "bands", "input_shape",
                "training", "test_metrics", "created"):  # fmt: skip
        assert key in data
    assert set(data["grid"]) == {"name", "dt_edges_days", "dm_edges_mag"}
    assert data["bands"] == ["g", "r", "i"] and data["norm"] == "mahabal"
    grid = ModelCard.read(tmp_path).grid
    assert grid.name == "mahabal2017"
    np.testing.assert_array_equal(grid.dt_edges_days, GRID.dt_edges_days)
    np.testing.assert_array_equal(grid.dm_edges_mag, GRID.dm_edges_mag)


def test_card_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="model card .*model_card.json: no such file"):
        ModelCard.read(tmp_path)
    data = _card().to_dict()
    del data["grid"]["dm_edges_mag"], data["norm"]
    with pytest.raises(ValueError, match=r"missing keys \['norm', 'grid.dm_edges_mag'\]"):
        ModelCard.from_dict(data)
    with pytest.raises(ValueError, match=r"input_shape \(22, 24, 2\) does not match"):
        ModelCard(
            name="x", classes=CLASS_NAMES, grid_name="g", dt_edges_days=tuple(GRID.dt_edges_days),
            dm_edges_mag=tuple(GRID.dm_edges_mag), input_shape=(22, 24, 2),
        )  # fmt: skip


def test_classification_metrics_by_hand():
    metrics = classification_metrics([0, 0, 1, 1, 2], [0, 1, 1, 1, 0], ("a", "b", "c"))
    assert metrics.confusion_matrix == ((1, 1, 0), (0, 2, 0), (1, 0, 0))
    a, b, c = (metrics.per_class[k] for k in "abc")
    assert (a.precision, a.recall, a.support) == (0.5, 0.5, 2)
    assert b.precision == pytest.approx(2 / 3) and b.recall == 1.0
    assert b.f1 == pytest.approx(0.8)
    assert (c.precision, c.recall, c.f1) == (0.0, 0.0, 0.0)
    assert metrics.accuracy == pytest.approx(0.6)
    assert metrics.macro_f1 == pytest.approx((0.5 + 0.8 + 0.0) / 3)


def test_configure_tensorflow_threads_is_safe_to_repeat():
    assert isinstance(configure_tensorflow_threads(1), bool)
    assert isinstance(configure_tensorflow_threads(2), bool)
    with pytest.raises(ValueError, match="n_threads must be >= 1, got 0"):
        configure_tensorflow_threads(0)


def test_model_with_periodogram_and_features_round_trips(tmp_path):
    from udfs.kernels.lightcurve_features import FEATURE_NAMES, N_FEATURES
    from udfs.kernels.model_inputs import FlatLightCurves
    from udfs.kernels.periodogram import PeriodogramGrid

    card = _card(periodogram=PeriodogramGrid(n_bins=32), features=FEATURE_NAMES)
    mean, variance = np.zeros(N_FEATURES), np.full(N_FEATURES, 4.0)
    with pytest.raises(ValueError, match="feature_mean"):
        build_model(card.input_shapes, len(CLASS_NAMES))
    model = build_model(
        card.input_shapes, len(CLASS_NAMES), feature_mean=mean, feature_variance=variance
    )
    model.save(tmp_path / MODEL_FILE)
    card.write(tmp_path)
    loaded = Classifier.load(tmp_path)
    assert loaded.card == card
    rng = np.random.default_rng(2)
    n = 30
    t = np.sort(rng.uniform(59000.0, 59300.0, (n, 40)), axis=1).ravel()
    lightcurves = FlatLightCurves(
        t_days=t,
        mag=15 + rng.normal(0, 0.1, t.size),
        magerr=np.full(t.size, 0.1),
        channel=np.tile(np.arange(40) % 2, n).astype(np.int8),
        offsets=np.arange(n + 1, dtype=np.int64) * 40,
    )
    inputs = card.model_inputs(lightcurves)
    assert {k: v.shape[1:] for k, v in inputs.items()} == card.input_shapes
    got = loaded.predict(inputs, batch_size=8)
    expected = np.asarray(model([inputs[t.name] for t in model.inputs], training=False))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # Objects are independent of their batch neighbours, bit for bit.
    part = loaded.predict({k: v[3:5] for k, v in inputs.items()}, batch_size=8)
    np.testing.assert_array_equal(part, got[3:5])
