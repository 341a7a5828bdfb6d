"""The variability taxonomy, the dm-dt CNN, its model directory and batched prediction.

A model directory holds two files: :data:`MODEL_FILE`, the Keras model (loaded in safe mode, so a
file cannot run code), and :data:`MODEL_CARD_FILE`, a JSON :class:`ModelCard` that says what the
model expects (classes, dm-dt grid, image normalisation, bands, input shape) and how it was made
(training data, seed, checksum, test-split metrics).

The model takes the uint8 ``mahabal`` dm-dt images of :func:`udfs.kernels.dmdt.dmdt_images`, shape
(n, n_dm, n_dt, n_bands), and scales them to [0, 1] itself with a Rescaling layer. It has one
sigmoid output per class (one-vs-rest, trained with binary cross-entropy on one-hot targets, as
SCoPe does); the predicted class is the argmax.

Keras and TensorFlow are imported only by the functions that need them, so the taxonomy and the
card can be used (by Spark drivers, by the simulator) without starting TensorFlow.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from catalogs.provenance import VARSKY_VERSION
from catalogs.schema import BAND_NAMES, CLASS_NAMES, VariabilityClass  # noqa: F401 - re-exported
from udfs.kernels.dmdt import DmDtGrid
from udfs.kernels.lightcurve_features import FEATURE_NAMES
from udfs.kernels.model_inputs import (
    DMDT_INPUT,
    FEATURES_INPUT,
    PERIOD_SHAPE_INPUT,
    PERIODOGRAM_INPUT,
    FlatLightCurves,
    input_shapes,
    model_inputs,
)
from udfs.kernels.periodogram import PeriodogramGrid

if TYPE_CHECKING:
    import keras


#: Files of a model directory.
MODEL_FILE = "model.keras"
MODEL_CARD_FILE = "model_card.json"
#: The shipped model.
DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[2] / "models" / "varsky_dmdt_cnn"
#: The image normalisation the model takes (see :func:`udfs.kernels.dmdt.normalize_counts`).
MODEL_NORM = "mahabal"
#: Name of the CNN architecture built by :func:`build_model`.
MODEL_NAME = "varsky_dmdt_cnn"

_PIXEL_SCALE = 1.0 / 255.0  # uint8 mahabal image -> [0, 1]


@dataclass(frozen=True)
class ClassScores:
    """Precision, recall and F1 of one class on a split; support is its number of objects."""

    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class TestMetrics:
    """Scores on the held-out test split.

    Attributes
    ----------
    accuracy : float
        Fraction of objects whose argmax class is right.
    macro_f1 : float
        Unweighted mean of the per-class F1.
    per_class : dict of str to ClassScores
        Scores of each class, in class order.
    confusion_matrix : tuple of tuple of int, shape (n_classes, n_classes)
        Object counts, rows the true class, columns the predicted class, in class order.
    split : str
        Which split the scores are on.
    """

    accuracy: float
    macro_f1: float
    per_class: dict[str, ClassScores]
    confusion_matrix: tuple[tuple[int, ...], ...]
    split: str = "test"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TestMetrics:
        """Build from the card's JSON form."""
        return cls(
            accuracy=float(data["accuracy"]),
            macro_f1=float(data["macro_f1"]),
            per_class={k: ClassScores(**v) for k, v in data["per_class"].items()},
            confusion_matrix=tuple(tuple(int(x) for x in row) for row in data["confusion_matrix"]),
            split=str(data.get("split", "test")),
        )


@dataclass(frozen=True)
class TrainingRecord:
    """How a model was trained.

    Attributes
    ----------
    description : str
        What the training data are.
    seed : int
        Seed of the simulation, the split and Keras.
    sha256 : str
        Hex sha256 of the training arrays (``udfs.model.training.training_arrays_sha256``): every
        model input, the labels and the split of each object.
    objects_per_class : int
    n_train, n_val, n_test : int
        Objects in each split (split by object, stratified by class).
    epochs_run : int
        Training epochs run (early stopping on the validation loss may stop before the maximum).
    max_epochs : int
    batch_size : int
    cadence_sample : str or None
        The DR file whose real epochs some simulated objects used.
    band_dropout : float
        Probability a multi-band training object got a copy with one band removed.
    n_band_dropped : int
        Band-dropped copies added to the training split.
    duration_s : float
        Wall time of the training job, seconds.
    learning_rate : float or None
        Adam's starting learning rate (None in cards written before it was recorded).
    learning_rate_schedule : str
        How the learning rate changed over the epochs.
    """

    description: str
    seed: int
    sha256: str
    objects_per_class: int
    n_train: int
    n_val: int
    n_test: int
    epochs_run: int
    max_epochs: int
    batch_size: int
    cadence_sample: str | None = None
    band_dropout: float = 0.0
    n_band_dropped: int = 0
    duration_s: float = float("nan")
    learning_rate: float | None = None
    learning_rate_schedule: str = ""


def _record_from_dict(data: Mapping[str, Any], source: str) -> TrainingRecord:
    """Build a TrainingRecord, ignoring keys a later version may have added."""
    known = {f.name for f in fields(TrainingRecord)}
    try:
        return TrainingRecord(**{k: v for k, v in data.items() if k in known})
    except TypeError as err:
        raise ValueError(f"{source}: bad 'training' entry ({err})") from err


def _stage_from_dict(data: Mapping[str, Any] | None, source: str):
    if not data:
        return None
    from udfs.model.variability import VariabilityStage

    return VariabilityStage.from_dict(dict(data), source)


def _tuple_of_floats(values: Sequence[float]) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


@dataclass(frozen=True)
class ModelCard:
    """What a model expects and how it was made: the contents of :data:`MODEL_CARD_FILE`.

    Attributes
    ----------
    name : str
    varsky_version : str
        varsky version that wrote the model.
    classes : tuple of str
        Class of each model output, in order.
    grid_name : str
    dt_edges_days : tuple of float
        dm-dt grid time-difference edges, days (JSON: ``grid.dt_edges_days``).
    dm_edges_mag : tuple of float
        dm-dt grid magnitude-difference edges, mag (JSON: ``grid.dm_edges_mag``).
    norm : str
        Image normalisation, ``mahabal`` (uint8).
    bands : tuple of str
        Band of each image channel.
    input_shape : tuple of int
        (n_dm, n_dt, n_bands).
    periodogram : PeriodogramGrid or None
        Period bins of the binned-periodogram input (:mod:`udfs.kernels.periodogram`); None for a
        model that takes the dm-dt image only.
    features : tuple of str
        Names of the summary-feature input's columns (:mod:`udfs.kernels.lightcurve_features`);
        empty for a model without it.
    training : TrainingRecord or None
    test_metrics : TestMetrics or None
        Scores on the held-out synthetic test split.
    fine_tuning : dict or None
        How the pretrained network was fine-tuned on real labelled light curves: the sets
        (files and sha256), label rule, split, mix, epochs, learning rate.
    calibration : dict or None
        Per-class Platt scaling folded into the output layer (``scale``, ``shift``), what it was
        fitted on, and the expected calibration error before and after.
    real_validation : dict or None
        Scores on the real validation split of each labelled set (see ``bench/real_validation.py``).
    created : str
        UTC time the card was made, ISO 8601.
    model_sha256 : str or None
        Hex sha256 of the model file the card describes (written by ``varsky train``); jobs
        refuse a model file that does not match it.
    variability : udfs.model.variability.VariabilityStage or None
        The fitted variability stage that settles non-variable objects before the periodogram
        and the network; None for a model without one (every object goes to the network).
    transients : dict or None
        The transient head (:mod:`udfs.model.transients`) inside the model file: its outputs,
        features, what it was fitted on and its validation scores; None for a model without one.
    """

    name: str
    classes: tuple[str, ...]
    grid_name: str
    dt_edges_days: tuple[float, ...]
    dm_edges_mag: tuple[float, ...]
    input_shape: tuple[int, int, int]
    norm: str = MODEL_NORM
    bands: tuple[str, ...] = BAND_NAMES
    varsky_version: str = VARSKY_VERSION
    periodogram: PeriodogramGrid | None = None
    features: tuple[str, ...] = ()
    training: TrainingRecord | None = None
    test_metrics: TestMetrics | None = None
    fine_tuning: dict[str, Any] | None = None
    calibration: dict[str, Any] | None = None
    real_validation: dict[str, Any] | None = None
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    model_sha256: str | None = None
    variability: Any = None
    transients: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        n_dm, n_dt = len(self.dm_edges_mag) - 1, len(self.dt_edges_days) - 1
        if tuple(self.input_shape) != (n_dm, n_dt, len(self.bands)):
            raise ValueError(
                f"model card input_shape {tuple(self.input_shape)} does not match the grid and "
                f"bands: need {(n_dm, n_dt, len(self.bands))}"
            )
        if self.norm != MODEL_NORM:
            raise ValueError(f"model card norm must be {MODEL_NORM!r}, got {self.norm!r}")
        if self.features and tuple(self.features) != FEATURE_NAMES:
            raise ValueError(
                f"model card features {list(self.features)} are not this varsky's "
                f"{list(FEATURE_NAMES)}"
            )

    @property
    def output_classes(self) -> tuple[str, ...]:
        """The catalog's classes: the CNN's, then the transient classes for a model with a head."""
        if not self.transients:
            return self.classes
        from udfs.model.transients import output_classes

        return output_classes(self.classes)

    @property
    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shape (without the batch axis) of each model input, by input name."""
        return input_shapes(self.grid, len(self.bands), self.periodogram, bool(self.features))

    def model_inputs(
        self, lightcurves: FlatLightCurves, seconds: dict[str, float] | None = None
    ) -> dict[str, np.ndarray]:
        """The inputs this card's model takes, made from flat light curves."""
        return model_inputs(
            lightcurves,
            self.grid,
            len(self.bands),
            self.norm,
            self.periodogram,
            bool(self.features),
            seconds,
        )

    @classmethod
    def for_grid(cls, grid: DmDtGrid, classes: Sequence[str] = CLASS_NAMES, **kwargs) -> ModelCard:
        """A card for a model of ``grid`` images of all bands; ``kwargs`` set the other fields."""
        return cls(
            name=kwargs.pop("name", MODEL_NAME),
            classes=tuple(classes),
            grid_name=grid.name,
            dt_edges_days=_tuple_of_floats(grid.dt_edges_days),
            dm_edges_mag=_tuple_of_floats(grid.dm_edges_mag),
            input_shape=(*grid.shape, len(BAND_NAMES)),
            **kwargs,
        )

    @property
    def grid(self) -> DmDtGrid:
        """The dm-dt grid the model was trained on."""
        return DmDtGrid.from_edges(self.dt_edges_days, self.dm_edges_mag, self.grid_name)

    def to_dict(self) -> dict[str, Any]:
        """The card's JSON form."""
        return {
            "name": self.name,
            "varsky_version": self.varsky_version,
            "classes": list(self.classes),
            "grid": {
                "name": self.grid_name,
                "dt_edges_days": list(self.dt_edges_days),
                "dm_edges_mag": list(self.dm_edges_mag),
            },
            "norm": self.norm,
            "bands": list(self.bands),
            "input_shape": list(self.input_shape),
            "periodogram": self.periodogram.to_dict() if self.periodogram else None,
            "features": list(self.features),
            "training": asdict(self.training) if self.training else None,
            "test_metrics": asdict(self.test_metrics) if self.test_metrics else None,
            "fine_tuning": self.fine_tuning,
            "calibration": self.calibration,
            "real_validation": self.real_validation,
            "created": self.created,
            "model_sha256": self.model_sha256,
            "variability": self.variability.to_dict() if self.variability else None,
            "transients": self.transients,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "model card") -> ModelCard:
        """Build from the JSON form; ``source`` names the file in error messages."""
        required = ("name", "classes", "grid", "norm", "bands", "input_shape")
        missing = [k for k in required if k not in data]
        missing += [f"grid.{k}" for k in ("name", "dt_edges_days", "dm_edges_mag")
                    if "grid" in data and k not in data["grid"]]  # fmt: skip
        if missing:
            raise ValueError(f"{source}: missing keys {missing}")
        grid = data["grid"]
        training = data.get("training")
        metrics = data.get("test_metrics")
        periodogram = data.get("periodogram")
        return cls(
            name=str(data["name"]),
            varsky_version=str(data.get("varsky_version", "unknown")),
            classes=tuple(str(c) for c in data["classes"]),
            grid_name=str(grid["name"]),
            dt_edges_days=_tuple_of_floats(grid["dt_edges_days"]),
            dm_edges_mag=_tuple_of_floats(grid["dm_edges_mag"]),
            norm=str(data["norm"]),
            bands=tuple(str(b) for b in data["bands"]),
            input_shape=tuple(int(n) for n in data["input_shape"]),
            periodogram=PeriodogramGrid.from_dict(periodogram) if periodogram else None,
            features=tuple(str(f) for f in data.get("features") or ()),
            training=_record_from_dict(training, source) if training else None,
            test_metrics=TestMetrics.from_dict(metrics) if metrics else None,
            fine_tuning=data.get("fine_tuning"),
            calibration=data.get("calibration"),
            real_validation=data.get("real_validation"),
            created=str(data.get("created", "")),
            model_sha256=data.get("model_sha256"),
            variability=_stage_from_dict(data.get("variability"), source),
            transients=data.get("transients"),
        )

    def write(self, model_dir: str | Path) -> Path:
        """Write :data:`MODEL_CARD_FILE` into ``model_dir``; return its path."""
        path = Path(model_dir) / MODEL_CARD_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def read(cls, model_dir: str | Path) -> ModelCard:
        """Read :data:`MODEL_CARD_FILE` from ``model_dir``."""
        path = Path(model_dir) / MODEL_CARD_FILE
        if not path.is_file():
            raise FileNotFoundError(f"model card {path}: no such file")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"model card {path}: not valid JSON ({err})") from err
        return cls.from_dict(data, source=f"model card {path}")


def classification_metrics(
    true_labels: npt.ArrayLike, predicted_labels: npt.ArrayLike, classes: Sequence[str]
) -> TestMetrics:
    """Confusion matrix, per-class precision, recall and F1, accuracy and macro F1.

    Parameters
    ----------
    true_labels, predicted_labels : integer arrays, shape (n,)
        Class indices into ``classes``.
    classes : sequence of str

    Returns
    -------
    TestMetrics
        A class never predicted has precision 0; one absent from the truth has recall 0.
    """
    true_labels = np.asarray(true_labels, dtype=np.int64)
    predicted_labels = np.asarray(predicted_labels, dtype=np.int64)
    k = len(classes)
    confusion = np.bincount(true_labels * k + predicted_labels, minlength=k * k).reshape(k, k)
    hits = np.diag(confusion).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.nan_to_num(hits / confusion.sum(axis=0))
        recall = np.nan_to_num(hits / confusion.sum(axis=1))
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
    per_class = {
        name: ClassScores(
            float(precision[j]), float(recall[j]), float(f1[j]), int(confusion[j].sum())
        )
        for j, name in enumerate(classes)
    }
    return TestMetrics(
        accuracy=float(hits.sum() / max(true_labels.size, 1)),
        macro_f1=float(f1.mean()),
        per_class=per_class,
        confusion_matrix=tuple(tuple(int(x) for x in row) for row in confusion),
    )


def configure_tensorflow_threads(n_threads: int) -> bool:
    """Give TensorFlow ``n_threads`` intra-op threads and 1 inter-op thread.

    TensorFlow fixes its thread pools when its runtime starts; after that the call changes
    nothing. Safe to call any number of times.

    Returns
    -------
    bool
        True if the setting took effect (or already held).
    """
    if n_threads < 1:
        raise ValueError(f"configure_tensorflow_threads: n_threads must be >= 1, got {n_threads}")
    from udfs.model.tensorflow_import import quiet_import

    quiet_import()
    import tensorflow as tf

    threading = tf.config.threading
    if (
        threading.get_intra_op_parallelism_threads() == n_threads
        and threading.get_inter_op_parallelism_threads() == 1
    ):
        return True
    try:
        threading.set_intra_op_parallelism_threads(n_threads)
        threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # the runtime has started: its pools stay as they are
        return False
    return True


def build_model(
    input_shape: tuple[int, int, int] | Mapping[str, tuple[int, ...]],
    n_classes: int = len(CLASS_NAMES),
    name: str = MODEL_NAME,
    feature_mean: npt.ArrayLike | None = None,
    feature_variance: npt.ArrayLike | None = None,
) -> keras.Model:
    """The classifier network, uncompiled: the dm-dt CNN (after Mahabal et al. 2017) plus branches.

    dm-dt image branch: uint8 (n_dm, n_dt, n_bands) -> Rescaling(1/255) -> Conv2D(32, 3x3) ->
    MaxPooling(2) -> Conv2D(64, 3x3) -> MaxPooling(2) -> Dropout(0.1) -> Flatten.
    Periodogram branch (if asked): (n_bins,) -> two Conv1D(5)+MaxPooling(2) blocks -> Flatten,
    and beside it Dense(64) on the whole vector; with it the folded-shape numbers (n_shape,) ->
    Dense(32).
    Feature branch (if asked): (n_features,) -> Normalization (fixed mean and variance of the
    training set) -> Dense(64).
    Head: concatenate -> Dense(128) -> Dropout(0.25) -> Dense(128) -> Dense(n_classes, sigmoid).

    Parameters
    ----------
    input_shape : tuple of int, or dict of input name to shape
        The image shape (n_dm, n_dt, n_bands) alone, or ``ModelCard.input_shapes``.
    n_classes : int
    name : str
    feature_mean, feature_variance : array, shape (n_features,), optional
        Standardisation of the feature input; needed when the model has one.

    Returns
    -------
    keras.Model
        Inputs named as in :mod:`udfs.kernels.model_inputs`.
    """
    from udfs.model.tensorflow_import import quiet_import

    quiet_import()
    import keras
    from keras import layers

    shapes = dict(input_shape) if isinstance(input_shape, Mapping) else {DMDT_INPUT: input_shape}
    image = keras.Input(shape=tuple(shapes[DMDT_INPUT]), dtype="uint8", name=DMDT_INPUT)
    inputs = [image]
    x = layers.Rescaling(_PIXEL_SCALE, name="to_unit_range")(image)
    x = layers.Conv2D(32, 3, padding="same", activation="relu", name="conv1")(x)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Conv2D(64, 3, padding="same", activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.Dropout(0.1, name="drop1")(x)
    branches = [layers.Flatten(name="flatten")(x)]
    if PERIODOGRAM_INPUT in shapes:
        (n_bins,) = shapes[PERIODOGRAM_INPUT]
        power = keras.Input(shape=(n_bins,), name=PERIODOGRAM_INPUT)
        inputs.append(power)
        p = layers.Reshape((n_bins, 1), name="power_column")(power)
        p = layers.Conv1D(16, 5, padding="same", activation="relu", name="pconv1")(p)
        p = layers.MaxPooling1D(2, name="ppool1")(p)
        p = layers.Conv1D(32, 5, padding="same", activation="relu", name="pconv2")(p)
        p = layers.MaxPooling1D(2, name="ppool2")(p)
        branches.append(layers.Flatten(name="pflatten")(p))
        # The convolutions see local peak shapes; a dense layer relates distant bins (aliases).
        branches.append(layers.Dense(64, activation="relu", name="pdense")(power))
        (n_shape,) = shapes[PERIOD_SHAPE_INPUT]
        shape = keras.Input(shape=(n_shape,), name=PERIOD_SHAPE_INPUT)
        inputs.append(shape)
        branches.append(layers.Dense(32, activation="relu", name="sdense")(shape))
    if FEATURES_INPUT in shapes:
        (n_features,) = shapes[FEATURES_INPUT]
        if feature_mean is None or feature_variance is None:
            raise ValueError("build_model: a feature input needs feature_mean and feature_variance")
        features = keras.Input(shape=(n_features,), name=FEATURES_INPUT)
        inputs.append(features)
        f = layers.Normalization(
            mean=np.asarray(feature_mean, np.float32).tolist(),
            variance=np.asarray(feature_variance, np.float32).tolist(),
            name="standardise",
        )(features)
        branches.append(layers.Dense(64, activation="relu", name="fdense")(f))
    x = branches[0] if len(branches) == 1 else layers.Concatenate(name="join")(branches)
    x = layers.Dense(128, activation="relu", name="dense1")(x)
    x = layers.Dropout(0.25, name="drop2")(x)
    x = layers.Dense(128, activation="relu", name="dense2")(x)
    outputs = layers.Dense(n_classes, activation="sigmoid", name="class_probability")(x)
    return keras.Model(inputs, outputs, name=name)


class Classifier:
    """A loaded model and its card.

    Parameters
    ----------
    model : keras.Model
        Takes the inputs named in the card (``ModelCard.input_shapes``), gives (n, n_classes)
        probabilities.
    card : ModelCard
        Must agree with the model's inputs and number of outputs.
    """

    def __init__(self, model: keras.Model, card: ModelCard) -> None:
        from udfs.model.transients import CNN_MODEL, HEAD_FEATURE_NAMES, HEAD_MODEL, HEAD_OUTPUTS

        self._head = None
        names = {layer.name for layer in model.layers}
        if CNN_MODEL in names and HEAD_MODEL in names:
            if not card.transients or list(card.transients.get("outputs", [])) != list(
                HEAD_OUTPUTS
            ):
                raise ValueError(
                    f"the model has a transient head with outputs {list(HEAD_OUTPUTS)}; the "
                    "card's 'transients' entry is missing or names other outputs"
                )
            if list(card.transients.get("features", [])) != list(HEAD_FEATURE_NAMES):
                raise ValueError(
                    "the model's transient head was fitted on other features than this varsky "
                    f"computes ({len(card.transients.get('features', []))} named in the card, "
                    f"{len(HEAD_FEATURE_NAMES)} now): refit it with `varsky train "
                    "--transients-only`"
                )
            self._head = model.get_layer(HEAD_MODEL)
            model = model.get_layer(CNN_MODEL)
        elif card.transients:
            raise ValueError("the card describes a transient head the model file does not hold")
        expected = card.input_shapes
        found = {t.name.split(":")[0]: tuple(t.shape[1:]) for t in model.inputs}
        if found != expected:
            raise ValueError(f"model inputs {found} do not match the card's {expected}")
        n_outputs = model.output_shape[-1]
        if n_outputs != len(card.classes):
            raise ValueError(
                f"model has {n_outputs} outputs, the card names {len(card.classes)} classes"
            )
        self._model = model
        self._card = card
        self._input_names = [t.name.split(":")[0] for t in model.inputs]

    @classmethod
    def load(cls, model_path: str | Path, card: ModelCard | None = None) -> Classifier:
        """Load a model in Keras safe mode (no code in the file runs).

        Parameters
        ----------
        model_path : str or Path
            The ``.keras`` file, or a model directory holding :data:`MODEL_FILE`.
        card : ModelCard, optional
            Defaults to the :data:`MODEL_CARD_FILE` beside the model file.
        """
        from udfs.model.tensorflow_import import quiet_import

        quiet_import()
        import keras

        path = Path(model_path)
        if path.is_dir():
            path = path / MODEL_FILE
        if path.suffix != ".keras":
            raise ValueError(f"model file {path}: need a .keras file")
        if not path.is_file():
            raise FileNotFoundError(f"model file {path}: no such file")
        if card is None:
            card = ModelCard.read(path.parent)
        model = keras.models.load_model(path, safe_mode=True, compile=False)
        return cls(model, card)

    @property
    def card(self) -> ModelCard:
        """The model card."""
        return self._card

    @property
    def classes(self) -> tuple[str, ...]:
        """Class of each output column of the CNN (:meth:`predict`)."""
        return self._card.classes

    @property
    def output_classes(self) -> tuple[str, ...]:
        """The catalog's classes (``ModelCard.output_classes``)."""
        return self._card.output_classes

    @property
    def type_log_offsets(self) -> list[dict] | None:
        """The card's fitted type offsets per epoch regime (``udfs.model.transients``)."""
        return (self._card.transients or {}).get("type_log_offsets")

    @property
    def has_transients(self) -> bool:
        """Whether the model holds a transient head."""
        return self._head is not None

    def predict_transients(self, features: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """The head's softmax probabilities (n, len(HEAD_OUTPUTS)) of its feature rows.

        Padded to whole batches like :meth:`predict`, so an object's probabilities do not depend
        on the other objects of its batch.
        """
        if self._head is None:
            raise ValueError("Classifier.predict_transients: the model has no transient head")
        if batch_size < 1:
            raise ValueError(
                f"Classifier.predict_transients: batch_size must be >= 1, got {batch_size}"
            )
        features = np.asarray(features, np.float32)
        return _padded_predict(
            self._head, {"features": features}, ["features"], self._head.output_shape[-1],
            batch_size,
        )  # fmt: skip

    @property
    def model(self) -> keras.Model:
        """The Keras model."""
        return self._model

    def predict(
        self, inputs: Mapping[str, np.ndarray] | npt.NDArray[np.uint8], batch_size: int = 256
    ) -> npt.NDArray[np.float32]:
        """Class probabilities of model inputs.

        Parameters
        ----------
        inputs : dict of input name to array, or a uint8 image array
            As made by ``ModelCard.model_inputs``: every input the card names, first axis the
            objects. A bare array is the dm-dt images of an image-only model.
        batch_size : int
            Objects per model call (``predict_on_batch``: compiled once, no progress bar). The
            last batch is padded with zeros to this size, because oneDNN's results depend in the
            last bits on the batch shape: with every call the same shape, an object's
            probabilities are bit-identical whatever other objects share its batch, so outputs
            do not depend on Spark's partitioning.

        Returns
        -------
        float32 array, shape (n, n_classes)
            One-vs-rest probability of each class, in [0, 1]; rows need not sum to 1.
        """
        if not isinstance(inputs, Mapping):
            inputs = {DMDT_INPUT: inputs}
        expected = self._card.input_shapes
        if set(inputs) != set(expected):
            raise ValueError(
                f"Classifier.predict: need inputs {sorted(expected)}, got {sorted(inputs)}"
            )
        arrays = {}
        for key, shape in expected.items():
            array = np.asarray(inputs[key])
            if key == DMDT_INPUT and array.dtype != np.uint8:
                raise TypeError(
                    f"Classifier.predict: images must be uint8 (mahabal), got {array.dtype}"
                )
            if array.shape[1:] != shape:
                raise ValueError(
                    f"Classifier.predict: {key} must have shape (n, *{shape}), got {array.shape}"
                )
            arrays[key] = array if key == DMDT_INPUT else array.astype(np.float32, copy=False)
        sizes = {a.shape[0] for a in arrays.values()}
        if len(sizes) != 1:
            raise ValueError(f"Classifier.predict: inputs differ in length {sorted(sizes)}")
        if batch_size < 1:
            raise ValueError(f"Classifier.predict: batch_size must be >= 1, got {batch_size}")
        return _padded_predict(
            self._model, arrays, self._input_names, len(self.classes), batch_size
        )


def _padded_predict(model, arrays: Mapping[str, np.ndarray], names, n_outputs: int,
                    batch_size: int) -> npt.NDArray[np.float32]:  # fmt: skip
    """``model.predict_on_batch`` over ``arrays`` in batches of ``batch_size``.

    The last batch is padded with zeros (see :meth:`Classifier.predict`); inputs go in the
    order of ``names``.
    """
    n_objects = next(iter(arrays.values())).shape[0]
    out = np.empty((n_objects, n_outputs), dtype=np.float32)
    for lo in range(0, n_objects, batch_size):
        n = min(batch_size, n_objects - lo)
        batch = {}
        for key in names:
            part = arrays[key][lo : lo + n]
            if n < batch_size:
                pad = np.zeros((batch_size - n, *part.shape[1:]), dtype=part.dtype)
                part = np.concatenate([part, pad])
            batch[key] = part
        # A bare array for a one-input model: Keras wants the structure the model has.
        data = batch if len(batch) > 1 else batch[names[0]]
        out[lo : lo + n] = np.asarray(model.predict_on_batch(data))[:n]
    return out


def checked_model(model_dir: str | Path, grid: str | None = None):
    """The model file, its card and its sha256; the card's grid must be ``grid`` when given.

    Raises
    ------
    FileNotFoundError
        If the model file or the card is missing.
    ValueError
        If ``grid`` is not the model's grid.
    """
    from catalogs.provenance import file_sha256

    model_path = Path(model_dir) / MODEL_FILE
    card_path = Path(model_dir) / MODEL_CARD_FILE
    for required in (model_path, card_path):
        if not required.is_file():
            raise FileNotFoundError(f"model directory {model_dir}: {required.name} is missing")
    card = ModelCard.read(model_dir)
    if grid is not None and grid != card.grid.name:
        raise ValueError(
            f"--grid {grid}: the model in {model_dir} was trained on grid {card.grid.name!r}"
        )
    sha256 = file_sha256(model_path)
    if card.model_sha256 is not None and sha256 != card.model_sha256:
        raise ValueError(
            f"model directory {model_dir}: {MODEL_FILE} has sha256 {sha256[:16]}..., its card "
            f"says {card.model_sha256[:16]}...: the file was changed or belongs to another card"
        )
    return model_path, card, sha256
