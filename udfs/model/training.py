"""Training logic on numpy arrays (no Spark): splits, targets, fitting, fine-tuning, calibration.

`varsky train` (:mod:`jobs.train`) makes the model inputs with Spark and calls these; tests call
them directly. The recipe of ``make model``:

1. pretrain the network on simulated light curves of every class (:func:`fit`);
2. fine-tune it on real labelled light curves (CRTS periodic variables, spectroscopic quasars)
   mixed with simulated ones, at a lower learning rate (:func:`fit` again, from the pretrained
   weights);
3. calibrate each class's sigmoid on the validation objects (:func:`fit_platt`, folded into the
   output layer by :func:`fold_calibration`, so the saved model gives calibrated probabilities
   with built-in layers only).

Labels may name several acceptable classes (``rrc|rrab``): :func:`multi_hot_targets` makes all of
them positives of their one-vs-rest sigmoids, and a prediction counts as right when its argmax is
any of them (:func:`accepted_mask`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

#: Split codes.
TRAIN, VALIDATION, TEST = 0, 1, 2


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


def real_split(
    objectids: npt.ArrayLike, strata: Sequence[str], val_fraction: float, seed: int
) -> npt.NDArray[np.int8]:
    """Train/validation split of real labelled objects, by object, stratified, fixed seed.

    The split depends only on the object ids, their strata (the source's own label, e.g.
    ``crts_train/RRd``) and the seed, not on row order: objects are ordered by id within each
    stratum before a seeded permutation. Every stratum of at least 2 objects gets at least one
    validation object.

    Returns
    -------
    int8 array
        :data:`TRAIN` or :data:`VALIDATION` per object.
    """
    ids = np.asarray(objectids, dtype=np.int64)
    strata = np.asarray(strata, dtype=object).astype(str)
    split = np.full(ids.size, TRAIN, dtype=np.int8)
    for stratum in sorted(set(strata.tolist())):
        members = np.flatnonzero(strata == stratum)
        members = members[np.argsort(ids[members], kind="stable")]
        if members.size < 2:
            continue
        digest = hashlib.sha256(stratum.encode()).digest()
        rng = np.random.default_rng([seed, int.from_bytes(digest[:4], "little")])
        n_val = max(1, int(round(val_fraction * members.size)))
        split[rng.permutation(members)[:n_val]] = VALIDATION
    return split


#: Split code of a labelled object with too few epochs to be trained on or validated.
TOO_SPARSE = -1


def labelled_set_split(
    set_name: str,
    objectids: npt.ArrayLike,
    label_orig: Sequence[str],
    n_epochs: npt.ArrayLike,
    min_epochs: int,
    val_fraction: float,
    seed: int,
) -> npt.NDArray[np.int8]:
    """The real split of one labelled set, as `varsky train` and the real-validation bench make it.

    Objects with fewer than ``min_epochs`` epochs get :data:`TOO_SPARSE`; the others are split
    by :func:`real_split`, stratified by ``SET/LABEL``.
    """
    n_epochs = np.asarray(n_epochs)
    enough = n_epochs >= min_epochs
    split = np.full(n_epochs.size, TOO_SPARSE, dtype=np.int8)
    labels = np.asarray(label_orig, dtype=object)[enough]
    split[enough] = real_split(
        np.asarray(objectids)[enough], [f"{set_name}/{g}" for g in labels], val_fraction, seed
    )
    return split


def multi_hot_targets(
    labels: Sequence[str], classes: Sequence[str], separator: str = "|"
) -> npt.NDArray[np.float32]:
    """One-vs-rest targets: 1 for every acceptable class of each label (``"rrc|rrab"``).

    A label may name only classes in ``classes``; a ValueError names the first that does not.
    """
    index = {c: k for k, c in enumerate(classes)}
    out = np.zeros((len(labels), len(classes)), dtype=np.float32)
    for row, label in enumerate(labels):
        for name in str(label).split(separator):
            if name not in index:
                raise ValueError(f"label {label!r} (row {row}): {name!r} is not a model class")
            out[row, index[name]] = 1.0
    return out


def accepted_mask(labels: Sequence[str], classes: Sequence[str]) -> npt.NDArray[np.bool_]:
    """(n, n_classes) booleans: which predicted classes count as right for each label."""
    return multi_hot_targets(labels, classes) > 0


def class_weights(targets: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
    """Balanced per-class weights from (n, n_classes) targets (a multi-label row counts in each)."""
    counts = targets.sum(axis=0).astype(np.float64)
    n_present = max(int((counts > 0).sum()), 1)
    return targets.shape[0] / (n_present * np.maximum(counts, 1.0))


def sample_weights(
    targets: npt.NDArray[np.floating], weights: npt.NDArray[np.float64]
) -> np.ndarray:
    """Weight of each object: the mean class weight of its positive classes (1 if it has none)."""
    positives = targets.sum(axis=1)
    total = targets @ weights
    return np.where(positives > 0, total / np.maximum(positives, 1), 1.0).astype(np.float32)


def training_arrays_sha256(
    inputs: dict[str, np.ndarray], labels: npt.NDArray[np.int16], split: npt.NDArray[np.int8]
) -> str:
    """Hex sha256 of the training arrays.

    Each input in name order (name, then C-order bytes), then the labels (int16), then the split
    codes (int8).
    """
    digest = hashlib.sha256()
    for name in sorted(inputs):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(inputs[name]).tobytes())
    for array, dtype in ((labels, np.int16), (split, np.int8)):
        digest.update(np.ascontiguousarray(array, dtype=dtype).tobytes())
    return digest.hexdigest()


# --- calibration ---------------------------------------------------------------------------------


def _logit(p: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
    p = np.clip(np.asarray(p, np.float64), 1e-7, 1 - 1e-7)
    return np.log(p) - np.log1p(-p)


def _sigmoid(z: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, np.float64)))


@dataclass(frozen=True)
class PlattScaling:
    """Per-class calibration of one-vs-rest sigmoids: p' = sigmoid(scale * logit(p) + shift).

    ``scale`` is the inverse temperature; ``shift`` moves the class's prior. Fitted by
    :func:`fit_platt`; :func:`fold_calibration` writes it into the output layer.
    """

    scale: tuple[float, ...]
    shift: tuple[float, ...]

    def apply(self, probabilities: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
        """Calibrated probabilities, (n, n_classes) float32."""
        z = _logit(probabilities) * np.asarray(self.scale) + np.asarray(self.shift)
        return _sigmoid(z).astype(np.float32)


def fit_platt(
    probabilities: npt.NDArray[np.floating],
    targets: npt.NDArray[np.floating],
    weights: npt.NDArray[np.floating] | None = None,
    l2: float = 1e-3,
) -> PlattScaling:
    """Fit :class:`PlattScaling` per class by weighted binary cross-entropy (L-BFGS, scipy).

    A small ridge ``l2`` pulls scale towards 1 and shift towards 0, so a class with few or no
    positives keeps its probabilities nearly unchanged.
    """
    from scipy.optimize import minimize

    z_all = _logit(probabilities)
    y_all = np.asarray(targets, np.float64)
    w = np.ones(z_all.shape[0]) if weights is None else np.asarray(weights, np.float64)
    w = w / w.sum()
    scales, shifts = [], []
    for k in range(z_all.shape[1]):
        z, y = z_all[:, k], y_all[:, k]

        def loss(params, z=z, y=y):
            a, b = params
            u = a * z + b
            # log(1 + e^u) - y u, stably.
            value = np.sum(w * (np.logaddexp(0.0, u) - y * u))
            r = w * (_sigmoid(u) - y)
            value += 0.5 * l2 * ((a - 1.0) ** 2 + b**2)
            grad = np.array([np.sum(r * z) + l2 * (a - 1.0), np.sum(r) + l2 * b])
            return value, grad

        result = minimize(loss, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
        scales.append(float(result.x[0]))
        shifts.append(float(result.x[1]))
    return PlattScaling(tuple(scales), tuple(shifts))


def fold_calibration(model, scaling: PlattScaling, layer_name: str = "class_probability") -> None:
    """Write ``scaling`` into the sigmoid output layer: W' = scale W, b' = scale b + shift."""
    layer = model.get_layer(layer_name)
    kernel, bias = layer.get_weights()
    scale = np.asarray(scaling.scale, np.float32)
    shift = np.asarray(scaling.shift, np.float32)
    layer.set_weights([kernel * scale[None, :], bias * scale + shift])


def expected_calibration_error(
    probabilities: npt.NDArray[np.floating], correct: npt.NDArray[np.bool_], n_bins: int = 15
) -> float:
    """Top-label ECE: the mean |accuracy - confidence| over equal-width confidence bins.

    Parameters
    ----------
    probabilities : (n, n_classes)
        The predicted class is the argmax; its probability is the confidence.
    correct : (n,) bool
        Whether each prediction is right.
    """
    confidence = np.asarray(probabilities).max(axis=1)
    correct = np.asarray(correct, bool)
    if confidence.size == 0:
        return float("nan")
    bins = np.minimum((confidence * n_bins).astype(np.int64), n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        inside = bins == b
        if inside.any():
            total += inside.sum() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total / confidence.size)


def reliability_curve(
    probabilities: npt.NDArray[np.floating], correct: npt.NDArray[np.bool_], n_bins: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per confidence bin: mean confidence, accuracy and count (empty bins NaN, 0)."""
    confidence = np.asarray(probabilities).max(axis=1)
    bins = np.minimum((confidence * n_bins).astype(np.int64), n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(bins, confidence, n_bins) / count
        accuracy = np.bincount(bins, np.asarray(correct, np.float64), n_bins) / count
    return mean_conf, accuracy, count


# --- scores on labels with several acceptable classes ---------------------------------------------


@dataclass(frozen=True)
class GroupRecall:
    """Recall of one source label (e.g. CRTS ``RRd``): objects, right calls, and what they got."""

    label: str
    n: int
    n_right: int
    predicted: dict[str, int]

    @property
    def recall(self) -> float:
        """Fraction called one of the acceptable classes."""
        return self.n_right / self.n if self.n else float("nan")


def recall_by_group(
    groups: Sequence[str],
    accepted: npt.NDArray[np.bool_],
    predicted: npt.NDArray[np.integer],
    classes: Sequence[str],
) -> dict[str, GroupRecall]:
    """Recall of each source label: right when the argmax is one of its acceptable classes."""
    groups = np.asarray(groups, dtype=object).astype(str)
    predicted = np.asarray(predicted)
    right = accepted[np.arange(predicted.size), predicted]
    out = {}
    for group in sorted(set(groups.tolist())):
        inside = groups == group
        names, counts = np.unique(np.asarray(classes)[predicted[inside]], return_counts=True)
        order = np.argsort(-counts, kind="stable")
        out[group] = GroupRecall(
            group,
            int(inside.sum()),
            int(right[inside].sum()),
            {str(names[i]): int(counts[i]) for i in order},
        )
    return out


# --- fitting -------------------------------------------------------------------------------------


def fit(
    model,
    x: Mapping[str, np.ndarray],
    y: npt.NDArray[np.floating],
    *,
    epochs: int,
    learning_rate: float,
    batch_size: int,
    sample_weight: npt.NDArray[np.floating] | None = None,
    validation: tuple[Mapping[str, np.ndarray], np.ndarray] | None = None,
    patience: int | None = None,
    verbose: int = 2,
) -> dict[str, list[float]]:
    """Compile ``model`` (Adam, cosine decay to 0 over ``epochs``, binary cross-entropy) and fit.

    With ``validation`` and ``patience``, training stops early when the validation accuracy
    (argmax) stalls and the best epoch's weights are kept. Seeds are the caller's
    (``keras.utils.set_random_seed``). Returns Keras's history.
    """
    from udfs.model.tensorflow_import import quiet_import

    quiet_import()
    import keras

    steps_per_epoch = -(-int(y.shape[0]) // batch_size)
    # Cosine decay beat halving on plateaus: test macro F1 0.897 against 0.891 (README).
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, epochs * steps_per_epoch)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=schedule),
        loss=keras.losses.BinaryCrossentropy(),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )
    callbacks = []
    if validation is not None and patience:
        # On accuracy, not loss: as the rate anneals the sigmoids grow confident, and the
        # validation loss stalls while the accuracy still climbs.
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_accuracy", mode="max", patience=patience, restore_best_weights=True
            )
        )
    history = model.fit(
        dict(x),
        y,
        sample_weight=sample_weight,
        validation_data=validation,
        epochs=epochs,
        batch_size=batch_size,
        callbacks=callbacks,
        verbose=verbose,
    )
    return history.history


def concat_inputs(parts: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Model inputs of several sets, one after the other (same keys in each)."""
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def take(inputs: Mapping[str, np.ndarray], rows: npt.ArrayLike) -> dict[str, np.ndarray]:
    """The rows ``rows`` (a mask or indices) of every input."""
    return {k: v[rows] for k, v in inputs.items()}


def first_per_class(
    labels: npt.NDArray[np.integer], eligible: npt.NDArray[np.bool_], n_per_class: int
) -> npt.NDArray[np.int64]:
    """Indices of the first ``n_per_class`` eligible rows of each class, in row order."""
    picks = [
        np.flatnonzero(eligible & (labels == k))[:n_per_class] for k in np.unique(labels[eligible])
    ]
    return np.sort(np.concatenate(picks)) if picks else np.zeros(0, np.int64)


def _real_and_simulated(real_inputs, real_targets, real_rows, sim_inputs, sim_labels, sim_rows, n):
    """(x, y, picked): the real rows (multi-hot), then the first ``n`` per class of ``sim_rows``."""
    pick = first_per_class(sim_labels, sim_rows, n)
    one_hot = np.eye(real_targets.shape[1], dtype=np.float32)[sim_labels[pick]]
    x = concat_inputs([take(real_inputs, real_rows), take(sim_inputs, pick)])
    return x, np.concatenate([real_targets[real_rows], one_hot]), pick


# --- the fine-tuning and calibration steps of `varsky train` -------------------------------------


def finetune(
    model,
    real_inputs: Mapping[str, np.ndarray],
    real_targets: npt.NDArray[np.float32],
    real_train: npt.NDArray[np.bool_],
    sim_inputs: Mapping[str, np.ndarray],
    sim_labels: npt.NDArray[np.integer],
    sim_train: npt.NDArray[np.bool_],
    *,
    sim_per_class: int,
    epochs: int,
    learning_rate: float,
    batch_size: int,
) -> tuple[int, int]:
    """Fine-tune ``model`` on real training objects mixed with simulated ones.

    The mix: every real training row (``real_targets`` multi-hot) and the first
    ``sim_per_class`` simulated training rows of each class (one-hot), balanced class weights,
    every layer trainable, cosine decay from ``learning_rate`` over ``epochs``.

    Returns
    -------
    (int, int)
        Real and simulated rows trained on.
    """
    x, y, pick = _real_and_simulated(
        real_inputs, real_targets, real_train, sim_inputs, sim_labels, sim_train, sim_per_class
    )
    fit(
        model,
        x,
        y,
        epochs=epochs,
        learning_rate=learning_rate,
        batch_size=batch_size,
        sample_weight=sample_weights(y, class_weights(y)),
    )
    return int(real_train.sum()), int(pick.size)


@dataclass(frozen=True)
class Calibration:
    """A fitted and folded calibration, and what it did on the real validation objects."""

    scaling: PlattScaling
    n_real: int
    n_simulated: int
    p_real_before: np.ndarray
    p_real_after: np.ndarray
    ece_before: float
    ece_after: float
    reliability: dict[str, dict[str, list[float]]]


def calibrate(
    model,
    predict,
    real_inputs: Mapping[str, np.ndarray],
    real_targets: npt.NDArray[np.float32],
    real_val: npt.NDArray[np.bool_],
    sim_inputs: Mapping[str, np.ndarray],
    sim_labels: npt.NDArray[np.integer],
    sim_val: npt.NDArray[np.bool_],
    *,
    sim_per_class: int,
) -> Calibration:
    """Fit :class:`PlattScaling` on validation objects and fold it into ``model``.

    Real validation rows, and the first ``sim_per_class`` simulated validation rows of each class
    (classes without real examples need positives). ``predict(inputs) -> probabilities`` runs
    the model. The expected calibration error and reliability curves are of the real rows.
    """
    x, y, pick = _real_and_simulated(
        real_inputs, real_targets, real_val, sim_inputs, sim_labels, sim_val, sim_per_class
    )
    p = predict(x)
    scaling = fit_platt(p, y)
    n_real = int(real_val.sum())
    before = p[:n_real]
    after = scaling.apply(before)
    fold_calibration(model, scaling)
    rows = np.arange(n_real)
    right_before = real_targets[real_val][rows, before.argmax(1)] > 0
    right_after = real_targets[real_val][rows, after.argmax(1)] > 0
    reliability = {}
    for tag, probs, right in (
        ("before calibration", before, right_before),
        ("after calibration", after, right_after),
    ):
        curve = zip(
            ("confidence", "accuracy", "count"), reliability_curve(probs, right), strict=True
        )
        reliability[f"real validation, {tag}"] = {k: v.tolist() for k, v in curve}
    return Calibration(
        scaling,
        n_real,
        int(pick.size),
        before,
        after,
        expected_calibration_error(before, right_before),
        expected_calibration_error(after, right_after),
        reliability,
    )
