"""A two-stage cascade: a coarse first look settles the objects it calls constant with confidence.

Stage 1 makes every model input with the periodogram capped at ``max_frequencies`` (the card's
cap is 150,000: an 8-year light curve needs 116,000 trial frequencies) and runs the network; an
object it calls constant with probability >= ``constant_probability`` keeps that answer. Every
other object gets the full periodogram (its other inputs do not depend on the frequency cap)
and the network, as without the cascade. Measured by
bench/cascade.py on the shipped model: on the bundled DR5 field stage 1 settles 72% of the
objects and changes one class in 1,363; it lets go 0.00% of the real CRTS variables, 0.07% of the
TDSS quasars and 0.14% of simulated variables (README, Performance).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from udfs.lightcurve_cuts import epoch_index
from udfs.model_inputs import PERIOD_SHAPE_INPUT, PERIODOGRAM_INPUT, FlatLightCurves
from udfs.periodogram import binned_periodograms


@dataclass(frozen=True)
class Cascade:
    """The first stage's settings.

    Attributes
    ----------
    max_frequencies : int
        Cap on the trial frequencies of the first stage's periodogram.
    constant_probability : float
        The first stage keeps an object it calls constant with at least this probability.
    """

    max_frequencies: int = 5000
    constant_probability: float = 0.95

    def describe(self) -> str:
        """One line for provenance."""
        return (
            f"first stage on a periodogram of at most {self.max_frequencies} frequencies keeps "
            f"objects called constant with p >= {self.constant_probability:g}"
        )


def take_lightcurves(flat: FlatLightCurves, rows: npt.NDArray[np.integer]) -> FlatLightCurves:
    """The light curves ``rows`` of ``flat``, in that order."""
    lengths = flat.offsets[rows + 1] - flat.offsets[rows]
    offsets = np.zeros(rows.size + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    epochs = epoch_index(flat.offsets[rows], lengths)
    return FlatLightCurves(
        flat.t_days[epochs], flat.mag[epochs], flat.magerr[epochs], flat.channel[epochs], offsets
    )


def cascade_probabilities(
    classifier, flat: FlatLightCurves, cascade: Cascade, batch_size: int, times=None
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """Class probabilities through the cascade, and which objects the first stage settled.

    ``times`` (a :class:`udfs.inference.StageTimes`) receives both stages' input and network
    seconds, and the objects settled.
    """
    card = classifier.card
    if card.periodogram is None or "constant" not in classifier.classes:
        raise ValueError(
            "the cascade needs a model with a periodogram input and a 'constant' class; "
            f"model {card.name!r} has periodogram={card.periodogram is not None}, "
            f"classes {list(classifier.classes)}"
        )
    coarse = replace(
        card, periodogram=replace(card.periodogram, max_frequencies=cascade.max_frequencies)
    )
    t0 = time.perf_counter()
    inputs = coarse.model_inputs(flat)
    t1 = time.perf_counter()
    first = np.asarray(classifier.predict(inputs, batch_size=batch_size))
    t2 = time.perf_counter()
    inputs_s, predict_s = t1 - t0, t2 - t1
    constant = list(classifier.classes).index("constant")
    settled = (first.argmax(axis=1) == constant) & (
        first[:, constant] >= cascade.constant_probability
    )
    rest = np.flatnonzero(~settled)
    probabilities = first.astype(np.float32)
    if rest.size:
        # Only the periodogram depends on the frequency cap: the rest keep their other inputs.
        full = {name: values[rest] for name, values in inputs.items()}
        lc = take_lightcurves(flat, rest)
        full[PERIODOGRAM_INPUT], full[PERIOD_SHAPE_INPUT] = binned_periodograms(
            lc.t_days, lc.mag, lc.channel, lc.offsets, card.periodogram, len(card.bands)
        )
        t3 = time.perf_counter()
        probabilities[rest] = classifier.predict(full, batch_size=batch_size)
        inputs_s, predict_s = inputs_s + t3 - t2, predict_s + time.perf_counter() - t3
    if times is not None:
        times.inputs_s += inputs_s
        times.predict_s += predict_s
        times.n_settled += int(settled.sum())
    return probabilities, settled
