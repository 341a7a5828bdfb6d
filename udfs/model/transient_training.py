"""What the transient head is fitted and judged on: real transients, real non-transients.

:func:`fit_transient_head` builds the training set of :mod:`udfs.model.transients` from the train
splits of a labelled transient set (ZTF BTS), of labelled variable sets (CRTS, TDSS) and the
train half of a ZTF DR light-curve file, fits the head, and scores it on the validation splits
(never trained on): per class on the transients, whole and cut to their first 3, 5 and 10
detections, and how many of the other sets' validation objects it calls a transient.
``bench/real_validation.py`` scores the same through `varsky ingest` and `varsky classify`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from catalogs.labelled_sets import CLASSES
from catalogs.schema import DRColumn
from udfs.model.training import TRAIN, VALIDATION
from udfs.model.transients import (
    EPOCH_REGIMES,
    HEAD_FEATURE_NAMES,
    HEAD_OUTPUTS,
    LABEL_TO_HEAD,
    NOT_TRANSIENT,
    first_detections,
    fit_head,
    flat_of,
    head_features,
    negative_parts,
    positive_parts,
    redshifts,
    row_offsets,
    type_probabilities,
)

#: The supernova classes the macro-F1 is taken over (issue 25's figure).
SN_CLASSES = ("sn_ia", "sn_ii", "sn_ibc", "slsn")
#: Detection counts of the early table.
EARLY_TABLE = (3, 5, 10)
#: Folds of the out-of-fold predictions the type offsets are fitted on.
N_FOLDS = 4
#: Fewest epochs a transient needs to be trained on or validated.
MIN_TRANSIENT_EPOCHS = 3


@dataclass
class HeadFit:
    """A fitted head and its card entry."""

    head: object
    entry: dict


def _split_set(prefix, band_map, min_epochs, val_fraction, seed):
    from udfs.kernels.model_inputs import flat_lightcurves
    from udfs.model.variability_training import labelled_split

    table, split = labelled_split(prefix, band_map, min_epochs, val_fraction, seed)
    return table, split, flat_lightcurves(table.column("lightcurve"))


def class_scores(true: np.ndarray, predicted: np.ndarray, names: tuple[str, ...]) -> dict:
    """Recall, purity (precision) and F1 of each head class present in ``true`` or predicted."""
    scores = {}
    for k, name in enumerate(names):
        n_true, n_called = int((true == k).sum()), int((predicted == k).sum())
        if not n_true and not n_called:
            continue
        hits = int(((true == k) & (predicted == k)).sum())
        recall, purity = hits / max(n_true, 1), hits / max(n_called, 1)
        f1 = 2 * recall * purity / (recall + purity) if recall + purity else 0.0
        scores[name] = {"n": n_true, "called": n_called, "recall": round(recall, 4),
                        "purity": round(purity, 4), "f1": round(f1, 4)}  # fmt: skip
    return scores


def head_calls(p_head: np.ndarray, log_offsets=None) -> np.ndarray:  # offsets (K,) or (n, K)
    """The head output each object is called: not_transient below p_transient 0.5, else its type."""
    types = type_probabilities(p_head, log_offsets).argmax(axis=1) + 1
    return np.where(p_head[:, NOT_TRANSIENT] > 0.5, NOT_TRANSIENT, types)


def sn_macro_f1(true: np.ndarray, called: np.ndarray) -> float:
    """Mean F1 over :data:`SN_CLASSES`."""
    f1 = []
    for name in SN_CLASSES:
        k = HEAD_OUTPUTS.index(name)
        hits = float(((true == k) & (called == k)).sum())
        n_true, n_called = float((true == k).sum()), float((called == k).sum())
        f1.append(2 * hits / (n_true + n_called) if n_true + n_called else 0.0)
    return float(np.mean(f1))


def fit_type_offsets(p_head: np.ndarray, true: np.ndarray, sweeps: int = 3) -> np.ndarray:
    """Log-offsets of the transient types that maximise the SN macro-F1 of ``p_head``'s calls.

    Coordinate ascent over a grid of -2..2 in steps of 0.1, each type in turn, ``sweeps`` times;
    the offsets are fitted on the train split's out-of-fold predictions, never on validation.
    """
    offsets = np.zeros(len(HEAD_OUTPUTS))
    best = sn_macro_f1(true, head_calls(p_head, offsets))
    for _ in range(sweeps):
        for k in range(1, len(HEAD_OUTPUTS)):
            for value in np.round(np.linspace(-2.0, 2.0, 41), 2):
                trial = offsets.copy()
                trial[k] = value
                score = sn_macro_f1(true, head_calls(p_head, trial))
                if score > best + 1e-12:
                    best, offsets = score, trial
    return offsets


def transient_scores(p_head: np.ndarray, true: np.ndarray, log_offsets=None) -> dict:
    """Per-class scores, the SN macro-F1 and the share called not-transient, of head outputs."""
    predicted = head_calls(p_head, log_offsets)
    per_class = class_scores(true, predicted, HEAD_OUTPUTS)
    return {
        "objects": int(true.size),
        "macro_f1_sn": round(sn_macro_f1(true, predicted), 4),
        "accuracy": round(float((predicted == true).mean()), 4) if true.size else 0.0,
        "called_not_transient": round(float((predicted == NOT_TRANSIENT).mean()), 4),
        "per_class": per_class,
    }


def fit_transient_head(
    transient_set: str | Path,
    variable_sets: list[tuple[str | Path, object]],
    dr_path: str | Path,
    transient_band_map,
    min_epochs: int,
    val_fraction: float,
    split_seed: int,
    seed: int,
    log=print,
) -> HeadFit:
    """Fit the head (see :mod:`udfs.model.transients`); score it on the validation splits.

    ``variable_sets``: (prefix, band map) of the labelled sets whose objects are not transients;
    ``min_epochs``: the epochs those need (the CNN's fine-tuning split), a transient needs
    :data:`MIN_TRANSIENT_EPOCHS`.
    """
    from udfs.model.variability_training import dr_lightcurves
    from udfs.simulators.noise_twins import REALISTIC, noise_twins

    rng = np.random.default_rng([seed, 25])
    table, split, lc = _split_set(
        transient_set, transient_band_map, MIN_TRANSIENT_EPOCHS, val_fraction, split_seed
    )
    heads = [LABEL_TO_HEAD[c.split("|")[0]] for c in table.column(CLASSES).to_pylist()]
    z_of = redshifts(Path(transient_set).with_name(f"{Path(transient_set).name}_labels.parquet"))
    ids = table.column(DRColumn.OBJECTID).to_numpy()
    z = np.array([z_of.get(int(o), np.nan) for o in ids])
    train = np.flatnonzero(split == TRAIN)
    val = np.flatnonzero(split == VALIDATION)
    parts, labels, origin, real = positive_parts(
        lc.take(train), [heads[k] for k in train], z[train], rng
    )
    negatives_train, negatives_val = [], {}
    for prefix, band_map in variable_sets:
        _, s, vlc = _split_set(prefix, band_map, min_epochs, val_fraction, split_seed)
        negatives_train.append(vlc.take(np.flatnonzero(s == TRAIN)))
        negatives_val[Path(prefix).name] = vlc.take(np.flatnonzero(s == VALIDATION))
    negatives_train.append(dr_lightcurves(dr_path, min_epochs, 0))
    negatives_val[f"{Path(dr_path).name} (held-out half)"] = dr_lightcurves(dr_path, min_epochs, 1)
    # Realistic noise-only twins of every non-transient: a star that does not vary, at these
    # cadences and depths, with bad exposures and error wings, must not read as a flare.
    twins = [noise_twins(flat, REALISTIC, rng) for flat in negatives_train]
    negatives = negative_parts(negatives_train + twins, 2, rng)
    x = head_features(flat_of(parts + negatives))
    y = np.array(labels + [NOT_TRANSIENT] * len(negatives), np.int64)
    counts = np.bincount(y, minlength=len(HEAD_OUTPUTS))
    log(
        f"[transients] {train.size} transients to train on ({len(parts):,} light curves with "
        f"early cuts, band drops and redshifted copies), {len(negatives):,} non-transient light "
        f"curves; per head class {dict(zip(HEAD_OUTPUTS, counts.tolist(), strict=True))}"
    )
    # Out-of-fold predictions of the train split (folds by transient; non-transients at random)
    # choose the type offsets; the head itself is then fitted on the whole train split.
    fold = np.concatenate([np.asarray(origin) % N_FOLDS, rng.integers(0, N_FOLDS, len(negatives))])
    out_of_fold = np.zeros((y.size, len(HEAD_OUTPUTS)), np.float32)
    for k in range(N_FOLDS):
        part = fold == k
        model = fit_head(x[~part], y[~part], seed + 1 + k)
        out_of_fold[part] = model.predict(x[part], verbose=0, batch_size=4096)
        log(f"[transients] out-of-fold predictions: fold {k + 1} of {N_FOLDS}")
    # One set of offsets per epoch regime, fitted on the real positives of that many epochs
    # (whole light curves and their early cuts, in the survey's own class mix; not the copies,
    # which over-weight the rare types): early light curves need other priors than whole ones.
    n_parts = np.diff(flat_of(parts).offsets)
    regimes = []
    for lo, hi in EPOCH_REGIMES:
        rows = np.flatnonzero((n_parts >= lo) & (n_parts <= hi) & np.asarray(real))
        offsets = fit_type_offsets(out_of_fold[rows], y[rows])
        before = sn_macro_f1(y[rows], head_calls(out_of_fold[rows]))
        after = sn_macro_f1(y[rows], head_calls(out_of_fold[rows], offsets))
        regimes.append({"min_epochs": lo, "max_epochs": hi,
                        "offsets": [round(float(v), 2) for v in offsets],
                        "out_of_fold_macro_f1_sn": [round(before, 4), round(after, 4)],
                        "light_curves": int(rows.size)})  # fmt: skip
        log(f"[transients] {lo}-{hi} epochs: type offsets {np.round(offsets, 2).tolist()}, "
            f"out-of-fold SN macro-F1 {before:.3f} -> {after:.3f}")  # fmt: skip
    head = fit_head(x, y, seed)

    def predict(flat):
        return np.asarray(head.predict(head_features(flat), verbose=0, batch_size=4096))

    def scores(flat, true):
        return transient_scores(predict(flat), true, row_offsets(regimes, np.diff(flat.offsets)))

    true = np.array([HEAD_OUTPUTS.index(heads[k]) for k in val])
    vlc = lc.take(val)
    validation = {"all": scores(vlc, true)}
    for n in EARLY_TABLE:
        validation[f"first_{n}"] = scores(first_detections(vlc, n), true)
    called_transient = {}
    for name, flat in negatives_val.items():
        p = predict(flat)
        called_transient[name] = {
            "objects": flat.n_lightcurves,
            "called_transient": round(float((p.argmax(axis=1) != NOT_TRANSIENT).mean()), 4),
        }
    for name, scores in validation.items():
        log(f"[transients] validation {name}: SN macro-F1 {scores['macro_f1_sn']:.3f}")
    entry = {
        "outputs": list(HEAD_OUTPUTS),
        "features": list(HEAD_FEATURE_NAMES),
        "nova_class": "cv",
        "type_log_offsets": regimes,
        "type_offsets_fitted_on": f"out-of-fold predictions of the train split's transients "
        f"({N_FOLDS} folds by transient), per epoch regime: each regime's real light curves "
        "(whole and early cuts; not the single-band or redshifted copies)",
        "rule": "p_transient = 1 - p(not_transient); variability classes x (1 - p_transient), "
        "transient classes x p_transient x p(type | transient) (the head's types with "
        "type_log_offsets, renormalised), nova -> cv; predicted: the most probable transient "
        "type when p_transient >= 0.5, else the most probable variability class",
        "fitted_on": {
            "transients": f"{train.size} objects of the train split of {Path(transient_set).name}"
            f" (at least {MIN_TRANSIENT_EPOCHS} epochs), with early cuts to "
            "3/5/7/10/15/20 detections, single-band copies and redshifted copies of rare types",
            "non_transients": [Path(p).name for p, _ in variable_sets]
            + [f"{Path(dr_path).name} (train half)"],
            "non_transient_windows": "each whole and in 2 windows of 20-150 days",
            "non_transient_twins": "a noise-only twin of each (same times and errors), "
            f"noise model {REALISTIC.to_dict()}",
            "head_class_counts": dict(zip(HEAD_OUTPUTS, counts.tolist(), strict=True)),
            "sha256": hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest(),
        },
        "validation": validation,
        "called_transient": called_transient,
        "real_split": {"val_fraction": val_fraction, "seed": split_seed},
    }
    return HeadFit(head, entry)
