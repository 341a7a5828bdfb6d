"""The transient head: supernova types, TDEs and novae, from the shape of a light curve's flare.

The dm-dt CNN knows variable stars: it reads how a star keeps changing. A supernova changes once,
and its type shows in how fast it rises and fades and how its colour evolves
(:mod:`udfs.kernels.transient_features`). The head is a small network on those features, trained
on real ZTF Bright Transient Survey light curves (spectroscopic types) against real variables,
quasars and ZTF stars, so that "transient" is learned from the flare, not from the survey:

- positives: the BTS transients of the train split (:func:`udfs.model.training.real_split`,
  stratified by type), each also cut to its first 3, 5, 7, 10, 15 and 20 detections (the early
  light curves a broker sees) and with one band dropped; rare types also as copies moved to
  another redshift (time dilated by (1 + z') / (1 + z), dimmed or brightened by the distance
  modulus difference, noise added for the fainter flux, epochs beyond the detection limit dropped:
  augmentation "by redshifting", as avocado does), so SLSN (19 to train on) and TDE (5) are not
  three examples each;
- negatives ("not_transient"): the train splits of the CRTS periodic variables and TDSS quasars,
  and the train half of a ZTF DR light-curve file (mostly constant stars), each whole and in
  windows of 20-150 days (a transient's span: a window of a variable must not look new).

Its outputs (:data:`HEAD_OUTPUTS`) are softmax probabilities. :func:`combine` puts them beside the
CNN's: ``p_transient = 1 - p(not_transient)``; each variability class gets ``(1 - p_transient)``
times the CNN's probability, each transient class ``p_transient`` times the head's p(type |
transient) (:func:`type_probabilities`, with the card's fitted type offsets); a nova is a
cataclysmic variable, so the head's nova probability adds to ``p_cv``. The predicted class is the
head's most probable transient type (nova -> cv) when ``p_transient >= 0.5``, else the most
probable variability class (the CNN's, with ``p_cv`` holding the nova share).

The head lives in the model file itself: the saved model has two nested models, ``cnn`` and
``transient_head`` (one file, one sha256, loaded in Keras safe mode), and the card's
``transients`` entry says what the head was trained on and how it scored.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from catalogs.schema import TRANSIENT_CLASS_NAMES, VariabilityClass
from udfs.kernels.bazin import BAZIN_FEATURE_NAMES, bazin_features
from udfs.kernels.model_inputs import FlatLightCurves
from udfs.kernels.transient_features import TRANSIENT_FEATURE_NAMES, transient_features

#: The head's outputs, in order.
HEAD_OUTPUTS: tuple[str, ...] = (
    "not_transient",
    "sn_ia",
    "sn_ii",
    "sn_ibc",
    "slsn",
    "tde",
    "nova",
    "transient_other",
)
NOT_TRANSIENT = 0
#: Where each head output goes among the catalog's classes (nova -> cv).
HEAD_TO_CLASS = {name: name for name in TRANSIENT_CLASS_NAMES} | {"nova": VariabilityClass.cv.value}
#: A labelled set's ``classes`` -> head output (``cv`` in the BTS set means a nova).
LABEL_TO_HEAD = {name: name for name in TRANSIENT_CLASS_NAMES} | {"cv": "nova"}
#: Names of the nested models in a saved model with a head.
CNN_MODEL = "cnn"
HEAD_MODEL = "transient_head"
HEAD_INPUT = "transient_features"
HEAD_OUTPUT = "transient_probability"
#: Detection counts the positives are also cut to (early light curves).
EARLY_DETECTIONS = (3, 5, 7, 10, 15, 20)
#: Redshifted copies per transient of each head class (rare classes get more).
REDSHIFT_COPIES = {"sn_ii": 2, "sn_ibc": 6, "slsn": 20, "tde": 20}
#: Faintest magnitude a redshifted copy keeps an epoch at (ZTF's alert depth, about 20.8).
DETECTION_LIMIT_MAG = 20.8
#: Window lengths of the negatives, days.
WINDOW_DAYS = (20.0, 150.0)


#: The head's input features, in order: the flare's shape, then its Bazin fit per band.
HEAD_FEATURE_NAMES: tuple[str, ...] = TRANSIENT_FEATURE_NAMES + BAZIN_FEATURE_NAMES
N_HEAD_FEATURES = len(HEAD_FEATURE_NAMES)


def head_features(lightcurves: FlatLightCurves) -> npt.NDArray[np.float32]:
    """The head's input (:data:`HEAD_FEATURE_NAMES`), shape (n_lc, N_HEAD_FEATURES).

    :func:`udfs.kernels.transient_features.transient_features` beside
    :func:`udfs.kernels.bazin.bazin_features`.
    """
    lc = lightcurves
    return np.hstack([
        transient_features(lc.t_days, lc.mag, lc.channel, lc.offsets),
        bazin_features(lc.t_days, lc.mag, lc.magerr, lc.channel, lc.offsets),
    ])  # fmt: skip


def output_classes(cnn_classes: Sequence[str]) -> tuple[str, ...]:
    """The catalog's classes of a model with a head: the CNN's, then the transient classes."""
    return (*cnn_classes, *TRANSIENT_CLASS_NAMES)


#: Detection-count regimes with their own type offsets (inclusive ranges): early light curves
#: need other priors than whole ones.
EPOCH_REGIMES = ((0, 5), (6, 10), (11, 10**9))


def row_offsets(regimes: Sequence[dict] | None, n_epochs: npt.ArrayLike) -> np.ndarray | None:
    """Each light curve's type log-offsets, shape (n, len(HEAD_OUTPUTS)), from its epoch count.

    ``regimes``: the card's ``type_log_offsets``, a list of ``{"min_epochs", "max_epochs",
    "offsets"}``; None gives None (no offsets).
    """
    if not regimes:
        return None
    n_epochs = np.asarray(n_epochs)
    out = np.zeros((n_epochs.size, len(HEAD_OUTPUTS)))
    for regime in regimes:
        inside = (n_epochs >= regime["min_epochs"]) & (n_epochs <= regime["max_epochs"])
        out[inside] = np.asarray(regime["offsets"], np.float64)
    return out


def type_probabilities(
    p_head: npt.NDArray[np.floating], log_offsets: npt.ArrayLike | None = None
) -> npt.NDArray[np.float64]:
    """The head's transient types given a transient: p(type | transient), shape (n, types).

    ``log_offsets`` (per head output, the first, not_transient's, unused; one row for all or one
    per object, :func:`row_offsets`) move the types' log-probabilities before they are
    normalised. They are fitted per :data:`EPOCH_REGIMES` on the train split's out-of-fold
    predictions (:mod:`udfs.model.transient_training`) and change which type a transient gets,
    never ``p_transient``.
    """
    types = np.asarray(p_head, np.float64)[:, 1:]
    if log_offsets is not None:
        types = types * np.exp(np.asarray(log_offsets, np.float64)[..., 1:])
    total = types.sum(axis=1, keepdims=True)
    return np.divide(types, total, out=np.full_like(types, 1.0 / types.shape[1]), where=total > 0)


def combine(
    p_cnn: npt.NDArray[np.floating],
    cnn_classes: Sequence[str],
    p_head: npt.NDArray[np.floating],
    log_offsets: npt.ArrayLike | None = None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """The catalog's probabilities, ``p_transient`` and the predicted class index of each object.

    Parameters
    ----------
    p_cnn : array, shape (n, len(cnn_classes))
        The CNN's one-vs-rest probabilities.
    cnn_classes : sequence of str
    p_head : array, shape (n, len(HEAD_OUTPUTS))
        The head's softmax probabilities.
    log_offsets : array, optional
        Type log-offsets, (len(HEAD_OUTPUTS),) or per object (:func:`row_offsets`).

    Returns
    -------
    probabilities : float32 array, shape (n, len(output_classes(cnn_classes)))
    p_transient : float32 array, shape (n,)
    best : int64 array, shape (n,)
        Index into ``output_classes(cnn_classes)``.
    """
    classes = output_classes(cnn_classes)
    p_cnn = np.asarray(p_cnn, np.float64)
    p_head = np.asarray(p_head, np.float64)
    p_transient = 1.0 - p_head[:, NOT_TRANSIENT]
    types = type_probabilities(p_head, log_offsets)
    out = np.zeros((p_cnn.shape[0], len(classes)))
    out[:, : len(cnn_classes)] = p_cnn * (1.0 - p_transient)[:, None]
    for k, name in enumerate(HEAD_OUTPUTS[1:]):
        out[:, classes.index(HEAD_TO_CLASS[name])] += p_transient * types[:, k]
    best = out[:, : len(cnn_classes)].argmax(axis=1)
    head_best = types.argmax(axis=1) + 1
    head_class = np.array([classes.index(HEAD_TO_CLASS[HEAD_OUTPUTS[k]]) for k in head_best])
    transient = p_transient >= 0.5
    best = np.where(transient, head_class, best).astype(np.int64)
    return out.astype(np.float32), p_transient.astype(np.float32), best


# --- The network ---
def build_head(
    feature_mean: npt.ArrayLike, feature_variance: npt.ArrayLike, width: int = 128, depth: int = 3
):
    """The head, uncompiled.

    Normalization (fixed mean and variance) -> ``depth`` x (Dense(width), Dropout(0.2)) ->
    Dense(len(HEAD_OUTPUTS), softmax).
    """
    from udfs.model.tensorflow_import import quiet_import

    quiet_import()
    import keras
    from keras import layers

    features = keras.Input(shape=(N_HEAD_FEATURES,), name=HEAD_INPUT)
    x = layers.Normalization(
        mean=np.asarray(feature_mean, np.float32).tolist(),
        variance=np.asarray(feature_variance, np.float32).tolist(),
        name="t_standardise",
    )(features)
    for k in range(depth):
        x = layers.Dense(width, activation="relu", name=f"t_dense{k + 1}")(x)
        x = layers.Dropout(0.2, name=f"t_drop{k + 1}")(x)
    out = layers.Dense(len(HEAD_OUTPUTS), activation="softmax", name=HEAD_OUTPUT)(x)
    return keras.Model(features, out, name=HEAD_MODEL)


def attach_head(cnn, head):
    """One model of the two, nested: the CNN's inputs and the head's in, both outputs out."""
    import keras

    cnn = keras.Model(cnn.inputs, cnn.outputs, name=CNN_MODEL) if cnn.name != CNN_MODEL else cnn
    inputs = {t.name.split(":")[0]: keras.Input(shape=t.shape[1:], dtype=t.dtype,
                                                name=t.name.split(":")[0])
              for t in cnn.inputs}  # fmt: skip
    features = keras.Input(shape=(N_HEAD_FEATURES,), name=HEAD_INPUT)
    cnn_in = [inputs[t.name.split(":")[0]] for t in cnn.inputs]
    outputs = {
        "class_probability": cnn(cnn_in if len(cnn_in) > 1 else cnn_in[0]),
        HEAD_OUTPUT: head(features),
    }
    return keras.Model([*cnn_in, features], outputs, name=f"{cnn.name}_with_transients")


def fit_head(
    x: npt.NDArray[np.float32],
    y: npt.NDArray[np.integer],
    seed: int,
    epochs: int = 60,
    class_weight_power: float = 0.75,
    batch_size: int = 256,
    verbose: int = 0,
):
    """Train a head on features ``x`` and head-output indices ``y``; returns the Keras model.

    Class weights are the balanced ones to the power ``class_weight_power`` (capped at 50): full
    balance made SN Ibc and SLSN guesses so common that their purity fell (out-of-fold macro-F1
    0.52 at power 0.5, 0.56 at 0.75, on the train split; docs/classifier.md).
    """
    import keras

    keras.utils.set_random_seed(seed)
    head = build_head(x.mean(axis=0), np.maximum(x.var(axis=0), 1e-6))
    counts = np.bincount(y, minlength=len(HEAD_OUTPUTS)).astype(np.float64)
    weights = np.minimum(
        (counts.sum() / (len(HEAD_OUTPUTS) * np.maximum(counts, 1))) ** class_weight_power, 50.0
    )
    head.compile(
        optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.SparseCategoricalCrossentropy()
    )
    order = np.random.default_rng(seed).permutation(y.size)
    head.fit(
        x[order],
        y[order],
        sample_weight=weights[y[order]],
        epochs=epochs,
        batch_size=batch_size,
        verbose=verbose,
    )
    return head


# --- The training set ---
def _pieces(lc: FlatLightCurves, k: int):
    lo, hi = lc.offsets[k], lc.offsets[k + 1]
    return lc.t_days[lo:hi], lc.mag[lo:hi], lc.magerr[lo:hi], lc.channel[lo:hi]


def flat_of(parts: Sequence[tuple[np.ndarray, ...]]) -> FlatLightCurves:
    """Light curves given as (t, mag, magerr, channel) tuples, flat."""
    lengths = [len(p[0]) for p in parts]
    offsets = np.zeros(len(parts) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])

    def cat(i, dtype):
        return np.concatenate([p[i] for p in parts]).astype(dtype) if parts else np.zeros(0, dtype)

    return FlatLightCurves(
        cat(0, np.float64), cat(1, np.float64), cat(2, np.float64), cat(3, np.int8), offsets
    )


def first_detections(lc: FlatLightCurves, n: int) -> FlatLightCurves:
    """Every light curve cut to its first ``n`` epochs (time order, all bands)."""
    from udfs.kernels.lightcurve_cuts import epoch_index

    lengths = np.minimum(np.diff(lc.offsets), n)
    offsets = np.zeros(lengths.size + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    epochs = epoch_index(lc.offsets[:-1], lengths)
    return FlatLightCurves(
        lc.t_days[epochs], lc.mag[epochs], lc.magerr[epochs], lc.channel[epochs], offsets
    )


def _window(piece, rng):
    t = piece[0]
    if t.size == 0:
        return None
    for _ in range(5):
        length = rng.uniform(*WINDOW_DAYS)
        start = rng.uniform(t[0] - length / 2, t[-1])
        inside = (t >= start) & (t < start + length)
        if inside.sum() >= 3:
            return tuple(a[inside] for a in piece)
    return None


def redshifts(labels_path: str | Path) -> dict[int, float]:
    """objectid_int -> redshift, from a label table's ``label_detail`` (``z=0.034``)."""
    import pyarrow.parquet as pq

    labels = pq.read_table(labels_path, columns=["objectid_int", "label_detail"]).to_pylist()
    out = {}
    for row in labels:
        found = re.search(r"z=([0-9.]+)", row["label_detail"] or "")
        if found:
            out[int(row["objectid_int"])] = float(found.group(1))
    return out


def _redshifted(piece, z, rng, z_grid, mu_grid):
    """A copy of a transient at another redshift, or None if under 3 epochs stay detected."""
    t, mag, err, channel = piece
    mu = np.interp(z, z_grid, mu_grid)
    if rng.random() < 0.5:
        z_new = z * rng.uniform(0.6, 1.0)
    else:
        z_new = np.interp(mu + rng.uniform(0.0, max(0.0, 19.3 - mag.min())), mu_grid, z_grid)
    dmu = np.interp(z_new, z_grid, mu_grid) - mu
    t_new = t[0] + (t - t[0]) * (1.0 + z_new) / (1.0 + z)
    err_new = err * 10.0 ** (0.4 * max(dmu, 0.0))
    mag_new = mag + dmu + rng.normal(0.0, np.sqrt(np.maximum(err_new**2 - err**2, 0.0)))
    kept = mag_new < DETECTION_LIMIT_MAG
    if kept.sum() < 3:
        return None
    return t_new[kept], mag_new[kept], err_new[kept], channel[kept]


def positive_parts(
    lc: FlatLightCurves, heads: Sequence[str], z_of: Sequence[float], rng
) -> tuple[list[tuple[np.ndarray, ...]], list[int], list[int], list[bool]]:
    """The augmented positives of transients ``lc`` with head labels ``heads``.

    Returns the light curves, their head labels, the transient each came from (its index in
    ``lc``) and whether it is real: the whole light curve or an early cut of it, not a copy with
    a band dropped or at another redshift.
    """
    from astropy.cosmology import Planck18

    z_grid = np.geomspace(1e-3, 1.5, 4000)
    mu_grid = Planck18.distmod(z_grid).value
    parts, labels, origin, real = [], [], [], []
    for k in range(lc.n_lightcurves):
        piece = _pieces(lc, k)
        label = HEAD_OUTPUTS.index(heads[k])
        n = piece[0].size
        variants = [piece] + [tuple(a[:m] for a in piece) for m in EARLY_DETECTIONS if m < n]
        n_real = len(variants)
        for channel in (0, 1):
            one = piece[3] == channel
            if 3 <= one.sum() < n:
                variants.append(tuple(a[one] for a in piece))
        z = z_of[k]
        if np.isfinite(z) and z > 0.002:
            for _ in range(REDSHIFT_COPIES.get(heads[k], 0)):
                copy = _redshifted(piece, z, rng, z_grid, mu_grid)
                if copy is None:
                    continue
                variants.append(copy)
                m = int(rng.integers(3, 12))
                if m < copy[0].size:
                    variants.append(tuple(a[:m] for a in copy))
        parts += variants
        labels += [label] * len(variants)
        origin += [k] * len(variants)
        real += [True] * n_real + [False] * (len(variants) - n_real)
    return parts, labels, origin, real


def negative_parts(lcs: Sequence[FlatLightCurves], windows: int, rng) -> list[tuple]:
    """Light curves that are not transients: each whole and in ``windows`` windows."""
    parts = []
    for lc in lcs:
        for k in range(lc.n_lightcurves):
            piece = _pieces(lc, k)
            if piece[0].size:
                parts.append(piece)
            for _ in range(windows):
                window = _window(piece, rng)
                if window is not None:
                    parts.append(window)
    return parts
