"""Figures of a model: the confusion matrix and the reliability (calibration) diagram.

Written beside the model by `varsky train` and drawn again by `varsky report` from the card.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from udfs.model.classifier import TestMetrics


def plot_confusion_matrix(
    metrics: TestMetrics, classes: tuple[str, ...], path: Path, title: str
) -> None:
    """Write the confusion matrix (fractions of each true class, counts written in) as a PNG."""
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


def plot_reliability(
    curves: Mapping[str, Mapping[str, Sequence[float]]], path: Path, title: str
) -> None:
    """Write a reliability diagram: accuracy against confidence of the predicted class.

    Parameters
    ----------
    curves : dict of label to {"confidence", "accuracy", "count"}
        One line per label (e.g. "CRTS validation, before calibration"), per confidence bin;
        NaN bins are skipped.
    path : Path
    title : str
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5.5), layout="constrained")
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="perfectly calibrated")
    for label, curve in curves.items():
        conf = np.asarray(curve["confidence"], dtype=np.float64)
        acc = np.asarray(curve["accuracy"], dtype=np.float64)
        ok = np.isfinite(conf) & np.isfinite(acc)
        ax.plot(conf[ok], acc[ok], marker="o", ms=4, label=label)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (probability of the predicted class)")
    ax.set_ylabel("fraction right")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    fig.savefig(path, dpi=110)
    plt.close(fig)
