"""`varsky train`: simulated and labelled training sets built with Spark; the model directory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from catalogs.errors import InputError
from jobs.cli import build_parser
from jobs.train import CONFUSION_MATRIX_FILE, format_summary, run, train
from jobs.train_config import TrainConfig
from jobs.training_sets import label_classes, read_labels
from udfs.kernels.lightcurve_features import FEATURE_NAMES
from udfs.kernels.model_inputs import (
    DMDT_INPUT,
    FEATURES_INPUT,
    PERIOD_SHAPE_INPUT,
    PERIODOGRAM_INPUT,
)
from udfs.model.classifier import CLASS_NAMES, MODEL_CARD_FILE, MODEL_FILE, Classifier, ModelCard
from udfs.model.training import TEST, TRAIN, VALIDATION, split_by_object, training_arrays_sha256

TINY = ["--objects-per-class", "8", "--epochs", "1", "--batch-size", "32", "--seed", "3"]


@pytest.fixture(scope="module")
def trained(spark, tmp_path_factory):
    """Train on a tiny simulated set; return the model directory and the result."""
    output = tmp_path_factory.mktemp("train") / "model"
    args = build_parser().parse_args(["train", "--output", str(output), *TINY])
    return output, train(spark, TrainConfig.from_args(args), log=lambda line: None)


def test_train_writes_the_model_directory(trained):
    output, result = trained
    for name in (MODEL_FILE, MODEL_CARD_FILE, CONFUSION_MATRIX_FILE):
        assert (output / name).is_file(), name
    assert (output / CONFUSION_MATRIX_FILE).read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in output.iterdir()) == sorted(
        [MODEL_FILE, MODEL_CARD_FILE, CONFUSION_MATRIX_FILE]
    )
    assert (output / MODEL_FILE).stat().st_size < 3_000_000
    assert result.n_band_dropped > 0


def test_card_holds_everything_the_contract_names(trained):
    output, _ = trained
    data = json.loads((output / MODEL_CARD_FILE).read_text())
    assert data["classes"] == list(CLASS_NAMES)
    assert data["grid"]["name"] == "mahabal2017"
    assert len(data["grid"]["dt_edges_days"]) == 25 and len(data["grid"]["dm_edges_mag"]) == 23
    assert data["norm"] == "mahabal" and data["bands"] == ["g", "r", "i"]
    assert data["input_shape"] == [22, 24, 3]
    assert data["periodogram"]["n_bins"] == 64 and data["features"] == list(FEATURE_NAMES)
    assert data["varsky_version"] and data["created"].endswith("+00:00")
    training = data["training"]
    assert training["seed"] == 3 and len(training["sha256"]) == 64 and training["description"]
    assert training["objects_per_class"] == 8 and training["band_dropout"] == 0.3
    assert training["cadence_sample"] == "data/sample/ztf_000250_zg_c01_q1_dr5.parquet"
    assert training["n_train"] + training["n_val"] + training["n_test"] == 8 * len(CLASS_NAMES)
    metrics = data["test_metrics"]
    assert set(metrics["per_class"]) == set(CLASS_NAMES)
    assert set(metrics["per_class"]["rrab"]) == {"precision", "recall", "f1", "support"}
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.shape == (15, 15) and matrix.sum() == training["n_test"]
    assert 0.0 <= metrics["macro_f1"] <= 1.0


def test_trained_model_loads_in_safe_mode_and_predicts(trained):
    output, _ = trained
    card = ModelCard.read(output)
    classifier = Classifier.load(output / MODEL_FILE, card)
    rng = np.random.default_rng(0)
    shapes = card.input_shapes
    assert set(shapes) == {DMDT_INPUT, PERIODOGRAM_INPUT, PERIOD_SHAPE_INPUT, FEATURES_INPUT}
    inputs = {
        name: rng.integers(0, 256, (5, *shape), dtype=np.uint8)
        if name == DMDT_INPUT
        else rng.random((5, *shape), dtype=np.float32)
        for name, shape in shapes.items()
    }
    probabilities = classifier.predict(inputs)
    assert probabilities.shape == (5, 15) and probabilities.dtype == np.float32
    with pytest.raises(ValueError, match="need inputs"):
        classifier.predict(inputs[DMDT_INPUT])


def test_the_summary_is_readable(trained):
    _, result = trained
    text = format_summary(result)
    for part in ("light curves", "band-dropped", "made with Spark", "macro F1", "bogus"):
        assert part in text


def test_cli_run_image_only_model_on_the_scope_grid(spark, tmp_path, capsys):
    # The seed paper's network alone: no periodogram, no features.
    args = build_parser().parse_args(
        ["train", "--output", str(tmp_path / "m"), *TINY, "--grid", "scope",
         "--cadence-sample", "none", "--no-periodogram", "--no-features", "--band-dropout", "0"]
    )  # fmt: skip
    assert run(args) == 0
    out = capsys.readouterr().out
    assert "macro F1" in out and "+0 band-dropped" in out
    card = ModelCard.read(tmp_path / "m")
    assert card.input_shape == (26, 26, 3) and list(card.input_shapes) == [DMDT_INPUT]


def test_training_on_a_labelled_table_and_the_dr5_sample(spark, sample_file, tmp_path):
    ids = pq.read_table(sample_file, columns=["objectid", "nepochs"])
    objectid = ids.column("objectid").to_numpy()
    many = ids.column("nepochs").to_numpy() >= 60
    # Labels that are a property of the light curve: many epochs or not. Plus one object
    # that is not in the catalog and some with too few good epochs.
    chosen = np.concatenate([objectid[many][:40], objectid[~many][:40]])
    labels = ["bright_many"] * 40 + ["sparse"] * 40
    table = pa.table({"objectid": np.append(chosen, 123), "label": labels + ["sparse"]})
    pq.write_table(table, tmp_path / "labels.parquet")
    config = TrainConfig(
        output=tmp_path / "m",
        labels=tmp_path / "labels.parquet",
        inputs=(str(sample_file),),
        max_epochs=2,
        batch_size=16,
    )
    result = train(spark, config, log=lambda line: None)
    assert result.card.classes == ("bright_many", "sparse")
    assert result.left_out["not in the light-curve catalog"] == 1
    record = result.card.training
    kept = record.n_train + record.n_val + record.n_test
    assert kept + sum(result.left_out.values()) == table.num_rows
    assert "labels.parquet" in record.description and record.cadence_sample is None
    assert record.learning_rate_schedule == "cosine decay to 0 over 2 epochs"
    assert record.learning_rate == config.learning_rate
    assert set(result.card.test_metrics.per_class) == {"bright_many", "sparse"}


def test_labelled_table_errors_name_file_column_and_row(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("objectid,kind\n1,rrab\n")
    with pytest.raises(InputError, match="label"):
        read_labels(path)
    path.write_text("objectid,label\n1,rrab\n2,RR Lyrae\n")
    with pytest.raises(InputError, match="row 1") as err:
        read_labels(path)
    assert "labels.csv" in str(err.value)
    path.write_text("objectid,label\n1,rrab\n2,ew\n1,rrc\n")
    with pytest.raises(InputError, match="more than once"):
        read_labels(path)
    path.write_text("objectid,label\n1,rrab\n2,\n")
    with pytest.raises(InputError, match="row 1: label ''"):
        read_labels(path)
    nulls = tmp_path / "nulls.parquet"
    pq.write_table(pa.table({"objectid": [1, None], "label": ["rrab", "ew"]}), nulls)
    with pytest.raises(InputError, match="column 'objectid', row 1: null"):
        read_labels(nulls)
    path.write_text("objectid,label\n1,rrab\n2,ew\n")
    assert read_labels(path).column("label").to_pylist() == ["rrab", "ew"]
    with pytest.raises(InputError, match="no such file"):
        read_labels(tmp_path / "missing.parquet")


def test_label_classes_keep_taxonomy_order():
    assert label_classes(["ew", "rrab", "ew"]) == ("rrab", "ew")
    assert label_classes(["b", "a", "rrab"]) == ("a", "b", "rrab")


def test_parser_defaults_use_the_bundled_cadence_sample(tmp_path):
    args = build_parser().parse_args(["train", "--output", str(tmp_path)])
    config = TrainConfig.from_args(args)
    assert config.grid_name == "mahabal2017" and config.cadence_sample is not None
    assert config.cadence_sample.is_file()
    assert config.periodogram and config.features


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


def test_training_checksum_covers_inputs_labels_and_split():
    inputs = {DMDT_INPUT: np.zeros((4, 2, 2, 3), np.uint8), FEATURES_INPUT: np.zeros((4, 3))}
    labels = np.arange(4, dtype=np.int16)
    split = np.zeros(4, np.int8)
    base = training_arrays_sha256(inputs, labels, split)
    assert base == training_arrays_sha256(dict(inputs), labels.copy(), split.copy())
    assert base != training_arrays_sha256(inputs, labels[::-1].copy(), split)
    assert base != training_arrays_sha256(inputs, labels, split + 1)
    changed = {**inputs, FEATURES_INPUT: np.ones((4, 3))}
    assert base != training_arrays_sha256(changed, labels, split)


def test_config_errors_name_the_option():
    with pytest.raises(ValueError, match="--objects-per-class must be >= 3"):
        TrainConfig(output=Path("x"), objects_per_class=2)
    with pytest.raises(ValueError, match="--grid must be one of"):
        TrainConfig(output=Path("x"), grid_name="crts")
    with pytest.raises(ValueError, match="--labels and --input go together"):
        TrainConfig(output=Path("x"), labels=Path("labels.parquet"))


# --- fine-tuning on real labelled sets ----------------------------------------------------------

SEVEN = ("EW", "EA", "RRab", "RRc", "RRd", "RS_CVn", "LPV")


def _tiny_real_sets(directory):
    """8 CRTS stars of each of the paper's seven labels and 10 TDSS quasars, as labelled sets."""
    from tests.conftest import REPO

    real = REPO / "data" / "real_labelled"
    prefixes = []
    for name, pick in (("crts_train", SEVEN), ("tdss_quasars", ("QSO",))):
        labels = pq.read_table(real / f"{name}_labels.parquet")
        dets = pq.read_table(real / f"{name}_detections.parquet")
        counts = dets.group_by("objectid").aggregate([("mjd", "count")])
        rich = set(counts.filter(pc.greater_equal(counts["mjd_count"], 25))["objectid"].to_pylist())
        rows = []
        per = 8 if name == "crts_train" else 10
        for label in pick:
            mine = [
                k
                for k, (o, lab) in enumerate(
                    zip(
                        labels["objectid"].to_pylist(),
                        labels["label_orig"].to_pylist(),
                        strict=True,
                    )
                )
                if lab == label and o in rich
            ]
            rows += mine[:per]
        tiny = labels.take(rows)
        pq.write_table(tiny, directory / f"{name}_labels.parquet")
        keep = pc.is_in(dets["objectid"], tiny["objectid"])
        pq.write_table(dets.filter(keep), directory / f"{name}_detections.parquet")
        prefixes.append(str(directory / name))
    return prefixes


@pytest.fixture(scope="module")
def finetuned(spark, tmp_path_factory):
    sets = _tiny_real_sets(tmp_path_factory.mktemp("real"))
    output = tmp_path_factory.mktemp("finetune") / "model"
    argv = ["train", "--output", str(output), *TINY, "--band-map", "crts", "--finetune-epochs", "1"]
    for prefix in sets:
        argv += ["--real", prefix]
    args = build_parser().parse_args(argv)
    lines = []
    result = train(spark, TrainConfig.from_args(args), log=lines.append)
    return output, result, lines


def test_finetune_card_records_sets_calibration_and_real_scores(finetuned):
    output, result, lines = finetuned
    card = ModelCard.read(output)
    ft = card.fine_tuning
    names = ["crts_train", "tdss_quasars", "crts_train_twins", "tdss_quasars_twins"]
    assert [s["name"] for s in ft["sets"]] == [*names, "ztf_000250_zg_c01_q1_dr5_twins"]
    # Twins of the cadence sample's own stars too, three draws each, split by dr_half.
    dr_twins = ft["sets"][4]
    assert dr_twins["twin_draws"] == 3 and dr_twins["objects"] % 3 == 0
    assert dr_twins["train"] + dr_twins["validation"] == dr_twins["objects"]
    assert 0.3 < dr_twins["train"] / dr_twins["objects"] < 0.7
    twins = ft["sets"][2]
    assert twins["twins_of"] == "crts_train" and twins["objects"] == 56
    assert twins["noise_model"]["name"] == "realistic"
    assert twins["train"] == ft["sets"][0]["train"]  # a twin takes its object's split
    assert card.real_validation["crts_train_twins"]["per_label"]["noise-only twin"]["n"] >= 7
    crts = ft["sets"][0]
    assert crts["objects"] == 56 and crts["too_few_epochs"] == 0
    assert crts["train"] + crts["validation"] == 56 and crts["validation"] >= 7
    assert len(crts["detections_sha256"]) == 64 and ft["band_map"]["bands"]["V"] == "g"
    assert "a|b" in ft["label_rule"]
    cal = card.calibration
    assert set(cal["scale"]) == set(CLASS_NAMES)
    assert 0 <= cal["ece_real_validation_after"] <= 1
    assert (output / "reliability.png").read_bytes()[:4] == b"\x89PNG"
    scores = card.real_validation["crts_train"]
    assert set(scores["per_label"]) == set(SEVEN)
    assert set(scores["mahabal2017"]["varsky"]) == set(SEVEN)
    assert card.real_validation["tdss_quasars"]["n"] >= 1
    assert any("real set crts_train: 56 objects" in line for line in lines)
    assert "band-dropped" in ft["mix"] and "twins" in ft["mix"]
    # The variability stage is fitted too, on the same sets' train splits.
    stage = card.variability
    assert stage is not None and 0 <= stage.threshold <= 0.5
    assert stage.calibration["objects"]["crts_train"] == crts["train"]


def test_variability_only_refits_the_stage_of_an_existing_model(finetuned, tmp_path):
    import shutil

    output, _, _ = finetuned
    copy = tmp_path / "model"
    shutil.copytree(output, copy)
    card = ModelCard.read(copy)
    card_json = (copy / "model_card.json").read_text()
    (copy / "model_card.json").write_text(card_json.replace('"variability": {', '"old": {'))
    assert ModelCard.read(copy).variability is None
    argv = [
        "train",
        "--output",
        str(copy),
        "--variability-only",
        "--band-map",
        "crts",
        "--seed",
        "3",
    ]
    for prefix in card.fine_tuning["sets"][:2]:
        argv += ["--real", str(Path(prefix["labels"]).parent / prefix["name"])]
    from jobs.train import run

    assert run(build_parser().parse_args(argv)) == 0
    refit = ModelCard.read(copy)
    assert refit.variability is not None and refit.variability.sha256 == card.variability.sha256
    assert refit.model_sha256 == card.model_sha256


def test_finetuned_model_is_calibrated_on_disk(finetuned):
    """The saved model's probabilities are the calibrated ones: classify needs no extra step."""
    output, result, _ = finetuned
    card = ModelCard.read(output)
    classifier = Classifier.load(output)
    assert classifier.card.calibration == card.calibration
    layer = classifier.model.get_layer("class_probability")
    assert layer.get_weights()[0].shape[1] == len(CLASS_NAMES)
    assert card.test_metrics is not None and card.test_metrics.split == "test"


def test_equalized_grid_is_saved_in_the_card(spark, tmp_path):
    from udfs.kernels.dmdt import DmDtGrid

    output = tmp_path / "model"
    args = build_parser().parse_args(
        ["train", "--output", str(output), *TINY, "--grid", "equalized"]
    )
    train(spark, TrainConfig.from_args(args), log=lambda line: None)
    card = ModelCard.read(output)
    assert card.grid_name == "equalized" and card.grid.shape == DmDtGrid.mahabal2017().shape
    assert card.grid != DmDtGrid.mahabal2017() and card.dt_edges_days[0] == 0.0
    assert Classifier.load(output).card.grid == card.grid
