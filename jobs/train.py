"""`varsky train`: train the dm-dt CNN on simulated labelled light curves.

Simulate light curves of every class (:mod:`udfs.lightcurve_simulator`), turn them into dm-dt
images (:mod:`udfs.dmdt`), split by object into train, validation and test sets (stratified by
class), train the CNN of :mod:`udfs.classifier` with class weights and early stopping on the
validation loss, then write the model directory: the model, its card (with the test-split metrics
of the written file) and a confusion-matrix plot. Pure numpy and Keras; no Spark.

Example::

    varsky train --output models/varsky_dmdt_cnn
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from catalogs.provenance import file_sha256
from catalogs.schema import BAND_NAMES
from udfs.classifier import (
    CLASS_NAMES,
    MODEL_FILE,
    MODEL_NORM,
    Classifier,
    ModelCard,
    TestMetrics,
    TrainingRecord,
    build_model,
    classification_metrics,
    configure_tensorflow_threads,
)
from udfs.dmdt import DmDtGrid, dmdt_images
from udfs.lightcurve_simulator import simulate_lightcurves

#: The confusion-matrix plot written beside the model.
CONFUSION_MATRIX_FILE = "confusion_matrix.png"
_REPO_ROOT = Path(__file__).resolve().parents[1]
#: The real ZTF DR5 light curves whose epochs some simulated objects use as their cadence.
DEFAULT_CADENCE_SAMPLE = _REPO_ROOT / "data" / "sample" / "ztf_000250_zg_c01_q1_dr5.parquet"
GRID_NAMES = ("mahabal2017", "scope")

#: Split codes stored in the checksum of the training arrays.
TRAIN, VALIDATION, TEST = 0, 1, 2


@dataclass(frozen=True)
class TrainConfig:
    """Settings of a training run.

    Attributes
    ----------
    output : Path
        Model directory to write.
    objects_per_class : int
        Simulated light curves per class (all splits together).
    max_epochs : int
        Most training epochs; early stopping usually ends sooner.
    seed : int
        Seed of the simulation, the split and Keras.
    grid_name : str
        Built-in dm-dt grid (``mahabal2017`` or ``scope``).
    batch_size : int
        Images per gradient step.
    val_fraction, test_fraction : float
        Fractions of each class's objects held out for validation and test.
    patience : int
        Epochs without a better validation loss before training stops; the learning rate halves
        after half as many.
    learning_rate : float
        Adam learning rate.
    cadence_sample : Path or None
        DR file of real cadences; None for synthetic cadences only.
    real_cadence_fraction : float
        Fraction of objects given a real cadence.
    threads : int
        TensorFlow intra-op threads.
    """

    output: Path
    objects_per_class: int = 1200
    max_epochs: int = 40
    seed: int = 42
    grid_name: str = "mahabal2017"
    batch_size: int = 128
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    patience: int = 5
    learning_rate: float = 2e-3
    cadence_sample: Path | None = DEFAULT_CADENCE_SAMPLE
    real_cadence_fraction: float = 0.25
    threads: int = os.cpu_count() or 1

    def __post_init__(self) -> None:
        if self.objects_per_class < 3:
            raise ValueError(
                f"train: --objects-per-class must be >= 3 (one per split), "
                f"got {self.objects_per_class}"
            )
        for name in ("max_epochs", "batch_size", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"train: {name} must be >= 1, got {getattr(self, name)}")
        if self.grid_name not in GRID_NAMES:
            raise ValueError(f"train: --grid must be one of {GRID_NAMES}, got {self.grid_name!r}")
        if not (
            self.val_fraction > 0
            and self.test_fraction > 0
            and self.val_fraction + self.test_fraction < 1
        ):
            raise ValueError("train: need 0 < val_fraction, test_fraction and their sum < 1")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TrainConfig:
        """Build from the parsed command line."""
        sample = None if args.cadence_sample in (None, "", "none") else Path(args.cadence_sample)
        return cls(
            output=Path(args.output),
            objects_per_class=args.objects_per_class,
            max_epochs=args.epochs,
            seed=args.seed,
            grid_name=args.grid,
            batch_size=args.batch_size,
            patience=args.patience,
            cadence_sample=sample,
            real_cadence_fraction=args.real_cadence_fraction,
            threads=args.threads,
        )


@dataclass(frozen=True)
class TrainResult:
    """What a training run wrote and measured."""

    card: ModelCard
    model_path: Path
    card_path: Path
    confusion_matrix_path: Path
    model_sha256: str
    seconds: dict[str, float]
    best_val_loss: float


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the train job's options to ``parser``."""
    defaults = TrainConfig(output=Path("."))
    parser.add_argument("--output", required=True, help="model directory to write")
    parser.add_argument(
        "--objects-per-class",
        type=int,
        default=defaults.objects_per_class,
        metavar="N",
        help="simulated light curves per class, all splits (default %(default)s)",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=defaults.max_epochs,
        metavar="E",
        help="most training epochs; early stopping on validation loss (default %(default)s)",
    )
    parser.add_argument(
        "--patience",
        type=int,
        default=defaults.patience,
        help="epochs without better validation loss before stopping (default %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help="(default %(default)s)")
    parser.add_argument(
        "--grid",
        choices=GRID_NAMES,
        default=defaults.grid_name,
        help="dm-dt grid (default %(default)s)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=defaults.batch_size,
        metavar="B",
        help="(default %(default)s)",
    )
    parser.add_argument(
        "--cadence-sample",
        default=str(DEFAULT_CADENCE_SAMPLE),
        metavar="PARQUET",
        help="DR light-curve file whose real epochs some objects use; 'none' for synthetic only "
        "(default: the bundled DR5 sample)",
    )
    parser.add_argument(
        "--real-cadence-fraction",
        type=float,
        default=defaults.real_cadence_fraction,
        metavar="F",
        help="fraction of objects with a real cadence (default %(default)s)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=defaults.threads,
        help="TensorFlow intra-op threads (default: all cores, %(default)s)",
    )


def split_by_object(
    labels: npt.NDArray[np.integer], val_fraction: float, test_fraction: float, seed: int
) -> npt.NDArray[np.int8]:
    """Assign each object to train, validation or test, stratified by class.

    Every class with at least 3 objects gets at least one in each split.

    Parameters
    ----------
    labels : integer array, shape (n,)
    val_fraction, test_fraction : float
    seed : int

    Returns
    -------
    int8 array, shape (n,)
        :data:`TRAIN`, :data:`VALIDATION` or :data:`TEST`.
    """
    rng = np.random.default_rng([seed, 1])
    split = np.full(labels.shape, TRAIN, dtype=np.int8)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_test = max(1, int(round(test_fraction * members.size)))
        n_val = max(1, int(round(val_fraction * members.size)))
        split[members[:n_test]] = TEST
        split[members[n_test : n_test + n_val]] = VALIDATION
    return split


def training_arrays_sha256(
    images: npt.NDArray[np.uint8], labels: npt.NDArray[np.int16], split: npt.NDArray[np.int8]
) -> str:
    """Hex sha256 of the images, then the labels, then the split codes (C-order bytes)."""
    digest = hashlib.sha256()
    for array, dtype in ((images, np.uint8), (labels, np.int16), (split, np.int8)):
        digest.update(np.ascontiguousarray(array, dtype=dtype).tobytes())
    return digest.hexdigest()


def _portable_path(path: Path) -> str:
    """``path`` relative to the repository when inside it, so that cards do not name one machine."""
    try:
        return str(path.resolve().relative_to(_REPO_ROOT))
    except ValueError:
        return str(path)


def _data_description(config: TrainConfig) -> str:
    if config.cadence_sample is not None and config.real_cadence_fraction > 0:
        cadences = (
            f"ZTF-like synthetic cadences, {config.real_cadence_fraction:.0%} of objects with the "
            f"real epochs of {config.cadence_sample.name}"
        )
    else:
        cadences = "ZTF-like synthetic cadences"
    return (
        f"udfs.lightcurve_simulator light curves, {config.objects_per_class} per class: "
        f"{cadences}; g+r, g-only, r-only and g+r+i band subsets; noise from the DR5 "
        "error-magnitude relation. Split by object, stratified by class."
    )


def _class_weights(labels: npt.NDArray[np.integer], n_classes: int) -> dict[int, float]:
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    weights = labels.size / (n_classes * np.maximum(counts, 1.0))
    return {k: float(w) for k, w in enumerate(weights)}


def _plot_confusion_matrix(
    metrics: TestMetrics, classes: tuple[str, ...], path: Path, title: str
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.asarray(metrics.confusion_matrix, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        fractions = np.nan_to_num(counts / counts.sum(axis=1, keepdims=True))
    fig, ax = plt.subplots(figsize=(9, 8), layout="constrained")
    image = ax.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(len(classes)):
        for j in range(len(classes)):
            if counts[i, j]:
                colour = "white" if fractions[i, j] > 0.5 else "black"
                ax.text(
                    j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=7, color=colour
                )
    ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="fraction of the true class", shrink=0.8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def train(config: TrainConfig, log: Callable[[str], None] = print) -> TrainResult:
    """Simulate, train, evaluate and write the model directory.

    Parameters
    ----------
    config : TrainConfig
    log : callable
        Receives progress lines.

    Returns
    -------
    TrainResult
    """
    start = time.perf_counter()
    seconds: dict[str, float] = {}
    configure_tensorflow_threads(config.threads)
    import keras

    classes = CLASS_NAMES
    grid = DmDtGrid.named(config.grid_name)
    log(
        f"[train] simulating {config.objects_per_class} light curves x {len(classes)} classes "
        f"(seed {config.seed})"
    )
    t0 = time.perf_counter()
    sim = simulate_lightcurves(
        config.objects_per_class,
        config.seed,
        classes,
        cadence_sample_path=config.cadence_sample,
        real_cadence_fraction=config.real_cadence_fraction,
    )
    seconds["simulate"] = time.perf_counter() - t0
    log(
        f"[train] {sim.n_lightcurves} light curves, {sim.t_hmjd.size} epochs in "
        f"{seconds['simulate']:.1f} s; making {grid.name} dm-dt images"
    )
    t0 = time.perf_counter()
    images = dmdt_images(
        sim.t_hmjd, sim.mag, sim.channel, sim.offsets, grid, len(BAND_NAMES), norm=MODEL_NORM
    )
    seconds["images"] = time.perf_counter() - t0
    labels = sim.labels
    split = split_by_object(labels, config.val_fraction, config.test_fraction, config.seed)
    data_sha256 = training_arrays_sha256(images, labels, split)
    train_, val, test = (split == s for s in (TRAIN, VALIDATION, TEST))
    log(
        f"[train] images {images.shape} in {seconds['images']:.1f} s; split by object: "
        f"train {train_.sum()}, validation {val.sum()}, test {test.sum()}"
    )

    keras.utils.set_random_seed(config.seed)
    model = build_model(images.shape[1:], len(classes))
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate),
        loss=keras.losses.BinaryCrossentropy(),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )
    one_hot = np.eye(len(classes), dtype=np.float32)[labels]
    callbacks = [
        keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=0.5, patience=max(1, config.patience // 2), verbose=1
        ),
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=config.patience, restore_best_weights=True
        ),
    ]
    log(f"[train] training {model.count_params()} parameters, up to {config.max_epochs} epochs")
    t0 = time.perf_counter()
    history = model.fit(
        images[train_],
        one_hot[train_],
        validation_data=(images[val], one_hot[val]),
        epochs=config.max_epochs,
        batch_size=config.batch_size,
        class_weight=_class_weights(labels[train_], len(classes)),
        callbacks=callbacks,
        verbose=2,
    )
    seconds["fit"] = time.perf_counter() - t0
    epochs_run = len(history.history["loss"])
    best_val_loss = float(np.min(history.history["val_loss"]))

    # Save an uncompiled copy: no optimizer state in the file, which stays small.
    output = config.output
    output.mkdir(parents=True, exist_ok=True)
    exported = build_model(images.shape[1:], len(classes))
    exported.set_weights(model.get_weights())
    model_path = output / MODEL_FILE
    partial = output / f".{MODEL_FILE}.partial.keras"
    exported.save(partial)
    os.replace(partial, model_path)

    record = TrainingRecord(
        description=_data_description(config),
        seed=config.seed,
        sha256=data_sha256,
        objects_per_class=config.objects_per_class,
        n_train=int(train_.sum()),
        n_val=int(val.sum()),
        n_test=int(test.sum()),
        epochs_run=epochs_run,
        max_epochs=config.max_epochs,
        batch_size=config.batch_size,
        cadence_sample=_portable_path(config.cadence_sample) if config.cadence_sample else None,
    )
    card = ModelCard.for_grid(grid, classes, training=record)
    # Score the written file, not the in-memory model: the card describes what is on disk.
    classifier = Classifier.load(model_path, card)
    probabilities = classifier.predict(images[test])
    metrics = classification_metrics(labels[test], probabilities.argmax(axis=1), classes)
    seconds["total"] = time.perf_counter() - start
    card = replace(
        card, training=replace(record, duration_s=round(seconds["total"], 1)), test_metrics=metrics
    )
    card_path = card.write(output)
    confusion_path = output / CONFUSION_MATRIX_FILE
    _plot_confusion_matrix(
        metrics,
        classes,
        confusion_path,
        f"{card.name}, test split ({record.n_test} objects): macro F1 {metrics.macro_f1:.3f}",
    )
    return TrainResult(
        card=card,
        model_path=model_path,
        card_path=card_path,
        confusion_matrix_path=confusion_path,
        model_sha256=file_sha256(model_path),
        seconds=seconds,
        best_val_loss=best_val_loss,
    )


def format_summary(result: TrainResult) -> str:
    """The readable end-of-job summary."""
    card, record, metrics = result.card, result.card.training, result.card.test_metrics
    assert record is not None and metrics is not None
    n_dm, n_dt, n_bands = card.input_shape
    minutes, secs = divmod(result.seconds["total"], 60)
    size_mb = result.model_path.stat().st_size / 1e6
    lines = [
        f"varsky train: done in {int(minutes)}m{secs:04.1f}s",
        f"  simulated    {record.objects_per_class} objects per class x {len(card.classes)} classes"
        f" = {record.objects_per_class * len(card.classes)} light curves "
        f"(seed {record.seed}, {result.seconds['simulate']:.1f} s)",
        f"  images       {card.grid_name} grid, {n_dm} dm x {n_dt} dt x {n_bands} bands "
        f"({result.seconds['images']:.1f} s)",
        f"  split        train {record.n_train}, validation {record.n_val}, test {record.n_test}"
        " (by object, stratified by class)",
        f"  training     {record.epochs_run} of {record.max_epochs} epochs, best validation loss "
        f"{result.best_val_loss:.4f} ({result.seconds['fit']:.1f} s)",
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


def run(args: argparse.Namespace) -> int:
    """Run the train job from parsed arguments; return the exit status."""
    config = TrainConfig.from_args(args)
    result = train(config)
    print(format_summary(result))
    return 0
