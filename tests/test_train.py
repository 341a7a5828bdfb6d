from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from jobs.cli import build_parser
from jobs.train import (
    CONFUSION_MATRIX_FILE,
    TEST,
    TRAIN,
    VALIDATION,
    TrainConfig,
    run,
    split_by_object,
    training_arrays_sha256,
)
from udfs.classifier import CLASS_NAMES, MODEL_CARD_FILE, MODEL_FILE, Classifier, ModelCard

TINY = ["--objects-per-class", "8", "--epochs", "1", "--batch-size", "32", "--seed", "3"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Run `varsky train` on a tiny configuration; return the model directory and its output."""
    output = tmp_path_factory.mktemp("train") / "model"
    args = build_parser().parse_args(["train", "--output", str(output), *TINY])
    return output, run(args)


def test_train_writes_the_model_directory(trained):
    output, status = trained
    assert status == 0
    for name in (MODEL_FILE, MODEL_CARD_FILE, CONFUSION_MATRIX_FILE):
        assert (output / name).is_file(), name
    assert (output / CONFUSION_MATRIX_FILE).read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in output.iterdir()) == sorted(
        [MODEL_FILE, MODEL_CARD_FILE, CONFUSION_MATRIX_FILE]
    )
    assert (output / MODEL_FILE).stat().st_size < 3_000_000


def test_card_holds_everything_the_contract_names(trained):
    output, _ = trained
    data = json.loads((output / MODEL_CARD_FILE).read_text())
    assert data["classes"] == list(CLASS_NAMES)
    assert data["grid"]["name"] == "mahabal2017"
    assert len(data["grid"]["dt_edges_days"]) == 25 and len(data["grid"]["dm_edges_mag"]) == 23
    assert data["norm"] == "mahabal" and data["bands"] == ["g", "r", "i"]
    assert data["input_shape"] == [22, 24, 3]
    assert data["varsky_version"] and data["created"].endswith("+00:00")
    training = data["training"]
    assert training["seed"] == 3 and len(training["sha256"]) == 64 and training["description"]
    assert training["objects_per_class"] == 8
    assert training["cadence_sample"] == "data/sample/ztf_000250_zg_c01_q1_dr5.parquet"
    assert training["n_train"] + training["n_val"] + training["n_test"] == 8 * len(CLASS_NAMES)
    metrics = data["test_metrics"]
    assert set(metrics["per_class"]) == set(CLASS_NAMES)
    assert set(metrics["per_class"]["rrab"]) == {"precision", "recall", "f1", "support"}
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.shape == (15, 15) and matrix.sum() == training["n_test"]
    assert 0.0 <= metrics["macro_f1"] <= 1.0


def test_trained_model_loads_and_predicts(trained):
    output, _ = trained
    card = ModelCard.read(output)
    classifier = Classifier.load(output / MODEL_FILE, card)
    images = np.random.default_rng(0).integers(0, 256, (5, *card.input_shape), dtype=np.uint8)
    probabilities = classifier.predict(images)
    assert probabilities.shape == (5, 15) and probabilities.dtype == np.float32


def test_parser_defaults_use_the_bundled_cadence_sample(tmp_path):
    args = build_parser().parse_args(["train", "--output", str(tmp_path)])
    config = TrainConfig.from_args(args)
    assert config.grid_name == "mahabal2017" and config.cadence_sample is not None
    assert config.cadence_sample.is_file()


def test_run_prints_a_readable_summary(tmp_path, capsys):
    args = build_parser().parse_args(
        [
            "train",
            "--output",
            str(tmp_path / "m"),
            *TINY,
            "--grid",
            "scope",
            "--cadence-sample",
            "none",
        ]
    )
    assert run(args) == 0
    out = capsys.readouterr().out
    for text in (
        "objects per class",
        "train ",
        "validation ",
        "test ",
        "macro F1",
        "bogus",
        MODEL_FILE,
    ):
        assert text in out
    assert ModelCard.read(tmp_path / "m").input_shape == (26, 26, 3)


def test_split_is_by_object_stratified_and_deterministic():
    labels = np.repeat(np.arange(15, dtype=np.int16), 20)
    split = split_by_object(labels, 0.15, 0.15, seed=1)
    np.testing.assert_array_equal(split, split_by_object(labels, 0.15, 0.15, seed=1))
    for label in range(15):
        mine = split[labels == label]
        assert (np.sum(mine == TEST), np.sum(mine == VALIDATION), np.sum(mine == TRAIN)) == (
            3,
            3,
            14,
        )
    tiny = split_by_object(np.repeat(np.arange(2), 3), 0.15, 0.15, seed=1)
    assert sorted(tiny[:3]) == [TRAIN, VALIDATION, TEST]


def test_training_checksum_covers_images_labels_and_split():
    images = np.zeros((4, 2, 2, 3), np.uint8)
    labels = np.arange(4, dtype=np.int16)
    split = np.zeros(4, np.int8)
    base = training_arrays_sha256(images, labels, split)
    assert base == training_arrays_sha256(images.copy(), labels.copy(), split.copy())
    assert base != training_arrays_sha256(images, labels[::-1].copy(), split)
    assert base != training_arrays_sha256(images, labels, split + 1)


def test_config_errors_name_the_option():
    with pytest.raises(ValueError, match="--objects-per-class must be >= 3"):
        TrainConfig(output=Path("x"), objects_per_class=2)
    with pytest.raises(ValueError, match="--grid must be one of"):
        TrainConfig(output=Path("x"), grid_name="crts")
