"""Scores of a model on real labelled light curves whose labels may name several classes.

A label's ``classes`` value lists every class of the taxonomy that is right for it (``rrc|rrab``
for an RRd star). A prediction is right when its argmax is any of them. Per-class precision,
recall and F1 use, as each object's true class, the predicted class when it is acceptable and
otherwise the first class listed. Per source label (CRTS ``RRd``, ``RS_CVn``...) the recall is
the fraction called an acceptable class; for CRTS the seven classes of Mahabal et al. 2017 are
put beside the paper's own recall.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import numpy.typing as npt

from udfs.model.classifier import classification_metrics
from udfs.model.training import accepted_mask, expected_calibration_error, recall_by_group

#: Recall of the dm-dt CNN of Mahabal et al. 2017 (arXiv:1709.06257) on CRTS, per class.
MAHABAL2017_RECALL: dict[str, float] = {
    "EW": 0.94,
    "EA": 0.81,
    "RRab": 0.53,
    "RRc": 0.65,
    "RRd": 0.0,
    "RS_CVn": 0.13,
    "LPV": 0.83,
}


def labelled_scores(
    probabilities: npt.NDArray[np.floating],
    labels: Sequence[str],
    groups: Sequence[str],
    classes: Sequence[str],
    predicted: npt.ArrayLike | None = None,
) -> dict[str, Any]:
    """Scores of real labelled objects (JSON-ready).

    Parameters
    ----------
    probabilities : (n, n_classes)
        The model's one-vs-rest probabilities.
    labels : sequence of str
        Acceptable classes of each object, ``a|b``.
    groups : sequence of str
        The source's own label of each object (e.g. CRTS ``RRd``).
    classes : sequence of str
        Class of each probability column.
    predicted : int array, optional
        The predicted class of each object (index into ``classes``), as the catalog's
        ``predicted_class`` says; default the argmax of ``probabilities`` (they differ for a
        model with a transient head, and for objects the variability stage settled).

    Returns
    -------
    dict
        ``n``, ``accuracy``, ``ece`` (top-label), ``macro_f1`` over the classes present,
        ``per_class`` (precision, recall, f1, support), ``per_label`` (n, recall, predicted
        counts), ``confusion_matrix`` (rows true, columns predicted, ``classes`` order) and, when
        the paper's seven CRTS labels are all present, ``mahabal2017`` (ours and the paper's
        recall per label, and the means).
    """
    probabilities = np.asarray(probabilities)
    classes = list(classes)
    if predicted is not None:
        predicted = np.asarray(predicted, np.int64)
    elif len(probabilities):
        predicted = probabilities.argmax(axis=1)
    else:
        predicted = np.zeros(0, np.int64)
    accepted = accepted_mask(labels, classes)
    right = accepted[np.arange(predicted.size), predicted]
    first = accepted.argmax(axis=1)
    truth = np.where(right, predicted, first)
    metrics = classification_metrics(truth, predicted, classes)
    present = [c for k, c in enumerate(classes) if (truth == k).any()]
    per_label = recall_by_group(groups, accepted, predicted, classes)
    out: dict[str, Any] = {
        "n": int(predicted.size),
        "accuracy": float(right.mean()) if right.size else float("nan"),
        "ece": expected_calibration_error(probabilities, right),
        "macro_f1": float(np.mean([metrics.per_class[c].f1 for c in present]))
        if present
        else float("nan"),
        "per_class": {
            c: asdict(s) for c, s in metrics.per_class.items() if s.support or s.precision
        },
        "per_label": {
            g: {"n": r.n, "recall": r.recall, "predicted": r.predicted}
            for g, r in per_label.items()
        },
        "confusion_matrix": [list(row) for row in metrics.confusion_matrix],
        "classes": classes,
    }
    if all(g in per_label for g in MAHABAL2017_RECALL):
        ours = {g: per_label[g].recall for g in MAHABAL2017_RECALL}
        out["mahabal2017"] = {
            "varsky": ours,
            "paper": dict(MAHABAL2017_RECALL),
            "varsky_mean": float(np.mean(list(ours.values()))),
            "paper_mean": float(np.mean(list(MAHABAL2017_RECALL.values()))),
        }
    return out


def format_scores(name: str, scores: dict[str, Any]) -> list[str]:
    """Readable lines of :func:`labelled_scores` output."""
    lines = [
        f"{name}: {scores['n']} objects, accuracy {scores['accuracy']:.3f}, "
        f"macro F1 {scores['macro_f1']:.3f}, ECE {scores['ece']:.3f}",
        f"  {'class':<12} {'precision':>9} {'recall':>7} {'F1':>6} {'n':>6}",
    ]
    for c, s in scores["per_class"].items():
        lines.append(
            f"  {c:<12} {s['precision']:9.3f} {s['recall']:7.3f} {s['f1']:6.3f} {s['support']:6d}"
        )
    lines.append(f"  {'source label':<14} {'n':>5} {'recall':>7}  called")
    for g, r in scores["per_label"].items():
        called = ", ".join(f"{k} {v}" for k, v in list(r["predicted"].items())[:4])
        lines.append(f"  {g:<14} {r['n']:5d} {r['recall']:7.3f}  {called}")
    if "mahabal2017" in scores:
        m = scores["mahabal2017"]
        lines.append("  Mahabal et al. 2017 seven classes: recall varsky / paper")
        for g in MAHABAL2017_RECALL:
            lines.append(f"    {g:<8} {m['varsky'][g]:.3f} / {m['paper'][g]:.2f}")
        lines.append(f"    mean     {m['varsky_mean']:.3f} / {m['paper_mean']:.3f}")
    return lines
