"""`varsky train`: train the classifier on labelled light curves; write a model directory.

Training set: simulated light curves of every class (:mod:`udfs.simulators.lightcurve_simulator`),
or a user's labelled table (``objectid``, ``label``) joined to a light-curve catalog (IRSA DR
Parquet or a HATS catalog from `varsky ingest`). The model inputs (dm-dt images, binned
periodograms, summary features) are made with Spark by the same code that classify uses
(:func:`udfs.kernels.model_inputs.model_inputs`). Objects are split into train, validation and test
sets (stratified by class); training objects with several bands also get band-dropped copies. The
network of :mod:`udfs.model.classifier` is trained with class weights, early stopping on the
validation loss and fixed seeds; the job writes the model, its card (with the test-split metrics of
the written file) and a confusion-matrix plot.

Example::

    varsky train --output models/varsky_dmdt_cnn
    varsky train --output my_model --labels labels.parquet --input data/sample
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from catalogs.provenance import file_sha256
from catalogs.schema import DRColumn
from jobs.train_config import LABEL, SPLIT, TrainConfig, add_arguments
from jobs.training_sets import (
    equalized_grid,
    label_classes,
    labelled_lightcurves,
    make_training_set,
    portable_path,
    real_lightcurves,
    simulated_lightcurve_table,
    split_table,
)
from udfs.kernels.dmdt import DmDtGrid
from udfs.kernels.lightcurve_features import FEATURE_NAMES
from udfs.kernels.model_inputs import FEATURES_INPUT
from udfs.kernels.periodogram import PeriodogramGrid
from udfs.model.classifier import (
    CLASS_NAMES,
    MODEL_FILE,
    Classifier,
    ModelCard,
    TrainingRecord,
    build_model,
    classification_metrics,
    configure_tensorflow_threads,
)
from udfs.model.model_figures import plot_confusion_matrix, plot_reliability
from udfs.model.training import TEST, TRAIN, VALIDATION, training_arrays_sha256

__all__ = ["CONFUSION_MATRIX_FILE", "TrainConfig", "TrainResult", "add_arguments", "run", "train"]

#: The confusion-matrix plot written beside the model.
CONFUSION_MATRIX_FILE = "confusion_matrix.png"
#: The reliability diagram (real validation split, before and after calibration).
RELIABILITY_FILE = "reliability.png"


@dataclass
class TrainResult:
    """What a training run wrote and measured."""

    card: ModelCard
    model_path: Path
    card_path: Path
    confusion_matrix_path: Path
    model_sha256: str
    #: Seconds per stage (the job runner adds the Spark start-up).
    stage_s: dict[str, float]
    best_val_loss: float
    best_val_accuracy: float = float("nan")
    n_band_dropped: int = 0
    left_out: dict[str, int] = field(default_factory=dict)

    def format(self) -> str:
        """The readable end-of-job summary."""
        return format_summary(self)


@dataclass
class _TrainingData:
    """The training sets as model-input tables, and what the model card needs of them."""

    table: pa.Table
    card: ModelCard
    classes: tuple[str, ...]
    description: str
    left_out: dict[str, int]
    real_table: pa.Table | None = None
    real_meta: dict | None = None
    real_sets: list[dict] = field(default_factory=list)


def _training_data(spark, config: TrainConfig, log, seconds: dict[str, float]) -> _TrainingData:
    """Simulated or labelled light curves (and the real sets), split, as model inputs (Spark)."""
    grid = None if config.grid_name == "equalized" else DmDtGrid.named(config.grid_name)
    periodogram = PeriodogramGrid() if config.periodogram else None
    features = FEATURE_NAMES if config.features else ()
    left_out: dict[str, int] = {}
    real_table = real_meta = None
    workdir = Path(tempfile.mkdtemp(prefix="varsky_train_"))
    try:
        t0 = time.perf_counter()
        if config.labels is None:
            log(
                f"[train] simulating {config.objects_per_class} light curves x "
                f"{len(CLASS_NAMES)} classes (seed {config.seed})"
            )
            table, description = simulated_lightcurve_table(config)
            pq.write_table(table, workdir / "lightcurves.parquet", row_group_size=2000)
            lightcurves = spark.read.parquet(str(workdir / "lightcurves.parquet"))
        else:
            lightcurves, left_out, description = labelled_lightcurves(spark, config, log)
        ids_labels = lightcurves.select(DRColumn.OBJECTID, LABEL).toArrow()
        ids = ids_labels.column(DRColumn.OBJECTID).to_numpy()
        names = ids_labels.column(LABEL).to_pylist()
        classes = label_classes(names)
        if len(classes) < 2:
            raise ValueError(f"train: need at least 2 classes, found {list(classes)}")
        class_of = np.array([classes.index(n) for n in names], dtype=np.int16)
        counts = np.bincount(class_of, minlength=len(classes))
        if counts.min() < 3:
            raise ValueError(
                "train: every class needs at least 3 objects (one per split); "
                f"{classes[int(counts.argmin())]!r} has {int(counts.min())}"
            )
        split = split_table(ids, class_of, config)
        # Through a file, not createDataFrame: the table can be large for one task.
        pq.write_table(pa.table({DRColumn.OBJECTID: ids, SPLIT: split}), workdir / "split.parquet")
        split_df = spark.read.parquet(str(workdir / "split.parquet"))
        lightcurves = lightcurves.join(split_df, DRColumn.OBJECTID)
        real_sets: list[dict] = []
        if config.real_sets:
            real_lcs, real_sets, real_meta, real_arrow = real_lightcurves(
                spark, config, workdir, log
            )
        if config.grid_name == "equalized":
            if config.labels is not None:
                raise ValueError("train: --grid equalized needs simulated training light curves")
            position = {int(o): k for k, o in enumerate(ids)}
            rows = [position[int(o)] for o in table.column(DRColumn.OBJECTID).to_pylist()]
            sim = table.append_column(SPLIT, pa.array(split[rows], pa.int8()))
            grid = equalized_grid([sim] + ([real_arrow] if config.real_sets else []), config.seed)
            log(
                f"[train] equalized dm-dt grid: dt edges {np.round(grid.dt_edges_days, 3).tolist()}"
                f" days; dm edges {np.round(grid.dm_edges_mag, 3).tolist()} mag"
            )
        seconds["light curves"] = time.perf_counter() - t0
        log(
            f"[train] {ids.size} labelled light curves, {len(classes)} classes; making model "
            f"inputs with Spark ({grid.name} dm-dt"
            f"{', periodogram' if periodogram else ''}{', features' if features else ''})"
        )
        card = ModelCard.for_grid(grid, classes, periodogram=periodogram, features=features)
        t0 = time.perf_counter()
        table = make_training_set(spark, lightcurves, card, config)
        if config.real_sets:
            real_table = make_training_set(spark, real_lcs, card, config)
        seconds["inputs"] = time.perf_counter() - t0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return _TrainingData(
        table, card, classes, description, left_out, real_table, real_meta, real_sets
    )


def _fine_tune(model, data: _TrainingData, arrays, labels, sim_train, val, config, log, seconds):
    """Fine-tune on the real sets, calibrate, score the real validation split.

    Returns the card's ``fine_tuning``, ``calibration`` and ``real_validation`` entries and the
    reliability curve. ``sim_train`` and ``val`` select the simulated training and validation
    objects of ``arrays``.
    """
    from udfs.model.band_dropout import VARIANT
    from udfs.model.inference import model_input_arrays
    from udfs.model.real_validation import labelled_scores
    from udfs.model.training import calibrate, finetune, multi_hot_targets

    card, classes, real_table, real_meta = data.card, data.classes, data.real_table, data.real_meta
    t0 = time.perf_counter()
    r_arrays = model_input_arrays(real_table, card)
    r_labels = real_table.column(LABEL).to_pylist()
    r_split = real_table.column(SPLIT).to_numpy()
    r_original = real_table.column(VARIANT).to_numpy() == 0
    r_train, r_val = r_split == TRAIN, (r_split == VALIDATION) & r_original
    where = {int(o): k for k, o in enumerate(real_meta["objectid"])}
    r_row = np.array([where[int(o)] for o in real_table.column(DRColumn.OBJECTID).to_numpy()])
    r_set, r_group = real_meta["set"][r_row], real_meta["label_orig"][r_row]
    r_targets = multi_hot_targets(r_labels, classes)
    log(
        f"[train] fine-tuning on {int(r_train.sum())} real (with band-dropped copies) + "
        f"simulated light curves, {config.finetune_epochs} epochs"
    )
    n_real_train, n_simulated = finetune(
        model,
        r_arrays,
        r_targets,
        r_train,
        arrays,
        labels,
        sim_train,
        sim_per_class=config.finetune_sim_per_class,
        epochs=config.finetune_epochs,
        learning_rate=config.finetune_learning_rate,
        batch_size=config.batch_size,
    )
    seconds["fine-tune"] = time.perf_counter() - t0
    cal = calibrate(
        model,
        Classifier(model, card).predict,
        r_arrays,
        r_targets,
        r_val,
        arrays,
        labels,
        val,
        sim_per_class=config.calibration_sim_per_class,
    )
    calibration = {
        "method": "per-class Platt scaling of the one-vs-rest sigmoids, folded into the "
        "output layer: p' = sigmoid(scale * logit(p) + shift)",
        "fitted_on": f"{cal.n_real} real validation objects and {cal.n_simulated} simulated "
        f"validation objects ({config.calibration_sim_per_class} per class)",
        "scale": dict(zip(classes, cal.scaling.scale, strict=True)),
        "shift": dict(zip(classes, cal.scaling.shift, strict=True)),
        "ece_real_validation_before": cal.ece_before,
        "ece_real_validation_after": cal.ece_after,
        "reliability": cal.reliability,
    }
    real_validation = {}
    for name in sorted(set(r_set[r_val].tolist())):
        mine = r_set[r_val] == name
        real_validation[name] = labelled_scores(
            cal.p_real_after[mine],
            [r_labels[k] for k in np.flatnonzero(r_val)[mine]],
            r_group[r_val][mine],
            classes,
        )
    fine_tuning = {
        "sets": data.real_sets,
        "band_map": json.loads(config.band_map.to_json()),
        "label_rule": "a label naming several classes (a|b) makes each of them a positive "
        "of its one-vs-rest sigmoid; a prediction counts as right when its argmax is any "
        "of them",
        "min_epochs": config.min_epochs,
        "validation_fraction": config.real_val_fraction,
        "validation_seed": config.real_split_seed,
        "validation": f"{config.real_val_fraction:.0%} of each set's objects per source "
        f"label (udfs.model.training.real_split, seed {config.real_split_seed}); never "
        "trained on",
        "epochs": config.finetune_epochs,
        "learning_rate": config.finetune_learning_rate,
        "learning_rate_schedule": f"cosine decay to 0 over {config.finetune_epochs} epochs",
        "mix": f"real training objects (with band-dropped copies) + "
        f"{config.finetune_sim_per_class} simulated training objects per class"
        + (
            "; realistic noise-only twins of every real object and of the cadence "
            "sample's stars as constants"
            if config.twins
            else ""
        )
        + "; balanced class weights",
        "n_real_train": n_real_train,
        "n_simulated": n_simulated,
        "layers": "all trainable",
        "sha256": training_arrays_sha256(
            r_arrays, np.frombuffer("\n".join(r_labels).encode(), np.uint8), r_split
        ),
    }
    return fine_tuning, calibration, real_validation, cal.reliability


def train(spark, config: TrainConfig, log: Callable[[str], None] = print) -> TrainResult:
    """Build the training sets with Spark, pretrain, fine-tune, calibrate, evaluate, write."""
    from udfs.model.band_dropout import VARIANT
    from udfs.model.inference import model_input_arrays
    from udfs.model.training import class_weights, fit, sample_weights, take

    start = time.perf_counter()
    seconds: dict[str, float] = {}
    configure_tensorflow_threads(config.threads)
    from udfs.model.tensorflow_import import quiet_import

    quiet_import()
    import keras

    data = _training_data(spark, config, log, seconds)
    table, card, classes = data.table, data.card, data.classes

    arrays = model_input_arrays(table, card)
    labels = np.array([classes.index(n) for n in table.column(LABEL).to_pylist()], dtype=np.int16)
    split_all = table.column(SPLIT).to_numpy().astype(np.int8)
    original = table.column(VARIANT).to_numpy() == 0
    data_sha256 = training_arrays_sha256(arrays, labels, split_all)
    train_ = split_all == TRAIN
    val = (split_all == VALIDATION) & original
    test = (split_all == TEST) & original
    n_dropped = int((train_ & ~original).sum())
    log(
        f"[train] inputs in {seconds['inputs']:.1f} s; split by object: train "
        f"{int((train_ & original).sum())} (+{n_dropped} band-dropped copies), validation "
        f"{int(val.sum())}, test {int(test.sum())}"
    )

    feature_mean = feature_variance = None
    if FEATURES_INPUT in arrays:
        feature_mean = arrays[FEATURES_INPUT][train_].mean(axis=0)
        feature_variance = np.maximum(arrays[FEATURES_INPUT][train_].var(axis=0), 1e-6)
    shapes = card.input_shapes

    def network():
        return build_model(
            shapes, len(classes), feature_mean=feature_mean, feature_variance=feature_variance
        )

    keras.utils.set_random_seed(config.seed)
    model = network()
    one_hot = np.eye(len(classes), dtype=np.float32)[labels]
    log(f"[train] training {model.count_params()} parameters, up to {config.max_epochs} epochs")
    t0 = time.perf_counter()
    history = fit(
        model,
        take(arrays, train_),
        one_hot[train_],
        epochs=config.max_epochs,
        learning_rate=config.learning_rate,
        batch_size=config.batch_size,
        sample_weight=sample_weights(one_hot[train_], class_weights(one_hot[train_])),
        validation=(take(arrays, val), one_hot[val]),
        patience=config.patience,
    )
    seconds["fit"] = time.perf_counter() - t0

    fine_tuning = calibration = real_validation = None
    reliability = {}
    if data.real_table is not None:
        fine_tuning, calibration, real_validation, reliability = _fine_tune(
            model, data, arrays, labels, train_ & original, val, config, log, seconds
        )

    # Save an uncompiled copy: no optimizer state in the file, which stays small.
    output = config.output
    output.mkdir(parents=True, exist_ok=True)
    exported = network()
    exported.set_weights(model.get_weights())
    transients = None
    if config.transient_set:
        t0 = time.perf_counter()
        fitted = fit_transients(config, log)
        seconds["transients"] = time.perf_counter() - t0
        exported, transients = attach_transients(exported, fitted), fitted.entry
    model_path = output / MODEL_FILE
    save_model(exported, model_path)

    record = TrainingRecord(
        description=data.description,
        seed=config.seed,
        sha256=data_sha256,
        objects_per_class=config.objects_per_class if config.labels is None else 0,
        n_train=int((train_ & original).sum()),
        n_val=int(val.sum()),
        n_test=int(test.sum()),
        epochs_run=len(history["loss"]),
        max_epochs=config.max_epochs,
        batch_size=config.batch_size,
        cadence_sample=portable_path(config.cadence_sample)
        if config.cadence_sample and config.labels is None
        else None,
        band_dropout=config.band_dropout,
        n_band_dropped=n_dropped,
        learning_rate=config.learning_rate,
        learning_rate_schedule=f"cosine decay to 0 over {config.max_epochs} epochs",
    )
    card = replace(
        card,
        training=record,
        fine_tuning=fine_tuning,
        calibration=calibration,
        real_validation=real_validation,
        transients=transients,
    )
    # Score the written file, not the in-memory model: the card describes what is on disk.
    classifier = Classifier.load(model_path, card)
    probabilities = classifier.predict(take(arrays, test))
    metrics = classification_metrics(labels[test], probabilities.argmax(axis=1), classes)
    seconds["total"] = time.perf_counter() - start
    card = replace(
        card,
        training=replace(record, duration_s=round(seconds["total"], 1)),
        test_metrics=metrics,
        model_sha256=file_sha256(model_path),
        variability=fit_variability(config, len(card.bands), log),
    )
    card_path = card.write(output)
    confusion_path = output / CONFUSION_MATRIX_FILE
    plot_confusion_matrix(
        metrics,
        classes,
        confusion_path,
        f"{card.name}, synthetic test split ({record.n_test} objects): macro F1 "
        f"{metrics.macro_f1:.3f}",
    )
    if reliability:
        plot_reliability(
            reliability,
            output / RELIABILITY_FILE,
            f"{card.name}: real validation split, ECE "
            f"{calibration['ece_real_validation_before']:.3f} -> "
            f"{calibration['ece_real_validation_after']:.3f}",
        )
    return TrainResult(
        card=card,
        model_path=model_path,
        card_path=card_path,
        confusion_matrix_path=confusion_path,
        model_sha256=card.model_sha256,
        stage_s=seconds,
        best_val_loss=float(np.min(history["val_loss"])),
        best_val_accuracy=float(np.max(history["val_accuracy"])),
        n_band_dropped=n_dropped,
        left_out=data.left_out,
    )


def format_summary(result: TrainResult) -> str:
    """The readable end-of-job summary."""
    card, record, metrics = result.card, result.card.training, result.card.test_metrics
    assert record is not None and metrics is not None
    minutes, secs = divmod(result.stage_s["total"], 60)
    size_mb = result.model_path.stat().st_size / 1e6
    inputs = ", ".join(
        f"{name} {'x'.join(map(str, shape))}" for name, shape in card.input_shapes.items()
    )
    lines = [
        f"varsky train: done in {int(minutes)}m{secs:04.1f}s",
        f"  data         {record.description}",
        f"  light curves {record.n_train + record.n_val + record.n_test} in "
        f"{len(card.classes)} classes ({result.stage_s['light curves']:.1f} s)",
    ]
    for reason, count in sorted(result.left_out.items()):
        lines.append(f"    left out   {count} labelled objects: {reason}")
    lines += [
        f"  inputs       {inputs}, made with Spark ({result.stage_s['inputs']:.1f} s)",
        f"  split        train {record.n_train} (+{result.n_band_dropped} band-dropped copies), "
        f"validation {record.n_val}, test {record.n_test} (by object, stratified by class)",
        f"  training     {record.epochs_run} of {record.max_epochs} epochs (Adam "
        f"{record.learning_rate:g}, {record.learning_rate_schedule}), best validation accuracy "
        f"{result.best_val_accuracy:.4f}, loss {result.best_val_loss:.4f} "
        f"({result.stage_s['fit']:.1f} s)",
        f"  test split   accuracy {metrics.accuracy:.3f}, macro F1 {metrics.macro_f1:.3f}",
        f"    {'class':<12} {'precision':>9} {'recall':>7} {'F1':>6} {'n':>5}",
    ]
    for name, scores in metrics.per_class.items():
        lines.append(
            f"    {name:<12} {scores.precision:9.3f} {scores.recall:7.3f} {scores.f1:6.3f} "
            f"{scores.support:5d}"
        )
    lines += [
        f"  model        {result.model_path} ({size_mb:.2f} MB, sha256 {result.model_sha256[:16]})",
        f"  card         {result.card_path}",
        f"  confusion    {result.confusion_matrix_path}",
    ]
    return "\n".join(lines)


def save_model(model, path: Path) -> None:
    """Write ``model`` to ``path`` through a partial file (a reader never sees half a model)."""
    partial = path.parent / f".{path.name}.partial.keras"
    model.save(partial)
    os.replace(partial, path)


def fit_transients(config: TrainConfig, log=print):
    """The transient head fitted on ``config.transient_set`` (and its non-transients)."""
    if not config.real_sets or config.cadence_sample is None:
        raise ValueError(
            "train --transients: the head's non-transients are the --real sets and the "
            "--cadence-sample DR file; give both"
        )
    from udfs.model.transient_training import fit_transient_head

    return fit_transient_head(
        config.transient_set,
        [(prefix, config.band_map) for prefix in config.real_sets],
        config.cadence_sample,
        config.band_map,
        config.min_epochs,
        config.real_val_fraction,
        config.real_split_seed,
        config.seed,
        log=log,
    )


def attach_transients(cnn, fitted):
    """One model of the CNN and the fitted head (:func:`udfs.model.transients.attach_head`)."""
    from udfs.model.transients import attach_head

    return attach_head(cnn, fitted.head)


def refit_transients(config: TrainConfig) -> int:
    """``--transients-only``: fit the head of the model in ``config.output``; rewrite it."""
    from udfs.model.tensorflow_import import quiet_import

    start = time.perf_counter()
    if not config.transient_set:
        raise ValueError("train --transients-only: give the --transients set to fit the head on")
    configure_tensorflow_threads(config.threads)
    quiet_import()
    card = ModelCard.read(config.output)
    # The head is about to be replaced, so one fitted on older features may load here.
    current = card
    if card.transients:
        from udfs.model.transients import HEAD_FEATURE_NAMES

        current = replace(card, transients=card.transients | {"features": list(HEAD_FEATURE_NAMES)})
    cnn = Classifier.load(config.output / MODEL_FILE, current).model  # the CNN alone
    fitted = fit_transients(config)
    save_model(attach_transients(cnn, fitted), config.output / MODEL_FILE)
    sha256 = file_sha256(config.output / MODEL_FILE)
    path = replace(card, transients=fitted.entry, model_sha256=sha256).write(config.output)
    scores = fitted.entry["validation"]["all"]
    print(
        f"varsky train --transients-only: done in {time.perf_counter() - start:.1f} s\n"
        f"  head         {len(fitted.entry['outputs'])} outputs; validation SN macro-F1 "
        f"{scores['macro_f1_sn']:.3f} over {scores['objects']} transients\n"
        f"  model        {config.output / MODEL_FILE} (sha256 {sha256[:16]})\n"
        f"  card         {path}"
    )
    return 0


def fit_variability(config: TrainConfig, n_channels: int, log=print):
    """The variability stage fitted on the config's real sets and cadence sample, or None."""
    if not config.real_sets or config.cadence_sample is None:
        log("[train] no variability stage: it needs --real sets and a --cadence-sample DR file")
        return None
    from udfs.model.variability_training import fit_variability_stage

    return fit_variability_stage(
        [(prefix, config.band_map) for prefix in config.real_sets],
        config.cadence_sample,
        n_channels,
        config.min_epochs,
        config.real_val_fraction,
        config.real_split_seed,
        config.seed,
        log=log,
    )


def refit_variability(config: TrainConfig) -> int:
    """``--variability-only``: fit the stage of the model in ``config.output``, rewrite its card."""
    start = time.perf_counter()
    card = ModelCard.read(config.output)
    stage = fit_variability(config, len(card.bands))
    if stage is None:
        raise ValueError("train --variability-only: give the --real sets to fit the stage on")
    path = replace(card, variability=stage).write(config.output)
    print(
        f"varsky train --variability-only: done in {time.perf_counter() - start:.1f} s\n"
        f"  stage        threshold p_variable >= {stage.threshold:.4g}, "
        f"sha256 {stage.sha256[:16]}\n"
        f"  card         {path}"
    )
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the train job from parsed arguments; return the exit status."""
    from jobs.session import run_spark_job

    config = TrainConfig.from_args(args)
    if config.variability_only:
        return refit_variability(config)
    if config.transients_only:
        return refit_transients(config)
    return run_spark_job("varsky-train", config.master, lambda spark: train(spark, config))
