"""Cadence augmentation: copies of long, dense light curves resampled to a survey-like cadence.

CRTS light curves span about 8 years with four visits a night; ZTF's span 1.5 to 6 years with one
or two a night per band. A network fine-tuned on CRTS alone would learn CRTS's cadence. Each copy
keeps a random window of the light curve (``window_years``), at most ``max_per_night`` epochs per
night, and a random fraction of the rest (``keep_fraction``), so the same star is seen through
other cadences and baselines. Deterministic for a seed and an object id.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

_DAYS_PER_YEAR = 365.25


@dataclass(frozen=True)
class CadenceAugmentation:
    """How copies are drawn.

    Attributes
    ----------
    window_years : (float, float)
        Range of the window length, years (uniform); a shorter light curve is kept whole.
    max_per_night : int
        Epochs kept per night (UTC day of the time), drawn at random.
    keep_fraction : (float, float)
        Range of the fraction of the remaining epochs kept (uniform).
    min_epochs : int
        A copy with fewer epochs is not made.
    """

    window_years: tuple[float, float] = (1.5, 5.0)
    max_per_night: int = 1
    keep_fraction: tuple[float, float] = (0.4, 1.0)
    min_epochs: int = 20

    def epochs_of_copy(
        self, t_days: npt.NDArray[np.float64], rng: np.random.Generator
    ) -> npt.NDArray[np.int64]:
        """Indices (sorted) of the epochs one copy keeps; empty if too few remain."""
        n = t_days.size
        if n == 0:
            return np.zeros(0, np.int64)
        span = float(t_days.max() - t_days.min())
        window = rng.uniform(*self.window_years) * _DAYS_PER_YEAR
        start = t_days.min() + rng.uniform(0.0, max(span - window, 0.0))
        inside = np.flatnonzero((t_days >= start) & (t_days <= start + window))
        # One (or a few) epochs per night: shuffle, then keep the first of each night.
        shuffled = rng.permutation(inside)
        night = np.floor(t_days[shuffled]).astype(np.int64)
        order = np.argsort(night, kind="stable")
        night_sorted = night[order]
        rank = np.arange(order.size) - np.searchsorted(night_sorted, night_sorted)
        kept = shuffled[order][rank < self.max_per_night]
        kept = kept[rng.random(kept.size) < rng.uniform(*self.keep_fraction)]
        if kept.size < self.min_epochs:
            return np.zeros(0, np.int64)
        return np.sort(kept)


def augmented_copies(
    objectids: npt.NDArray[np.int64],
    t_days: npt.NDArray[np.float64],
    offsets: npt.NDArray[np.int64],
    n_copies: int,
    seed: int,
    augmentation: CadenceAugmentation | None = None,
) -> tuple[
    npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]
]:
    """Epochs of ``n_copies`` resampled copies of each light curve.

    Parameters
    ----------
    objectids : int64 array, shape (n_lc,)
        Seed each object's draws (so copies do not depend on the other objects).
    t_days : float64 array
        Flat times, days; light curve k is ``[offsets[k]:offsets[k + 1]]``.
    offsets : int64 array, shape (n_lc + 1,)
    n_copies : int
    seed : int
    augmentation : CadenceAugmentation, optional

    Returns
    -------
    source : int64 array, shape (n_made,)
        Light curve each copy comes from.
    copy : int64 array, shape (n_made,)
        Copy number, 1 to ``n_copies``.
    copy_offsets : int64 array, shape (n_made + 1,)
        Copy j's epochs are ``epochs[copy_offsets[j]:copy_offsets[j + 1]]``.
    epochs : int64 array
        Flat indices into ``t_days`` of the copies' epochs, in time order within each copy.
    """
    augmentation = augmentation or CadenceAugmentation()
    sources, copies, epochs, lengths = [], [], [], []
    for k, oid in enumerate(np.asarray(objectids, np.int64)):
        lo, hi = int(offsets[k]), int(offsets[k + 1])
        for c in range(1, n_copies + 1):
            rng = np.random.default_rng([seed, int(oid) & 0x7FFFFFFFFFFFFFFF, c])
            kept = augmentation.epochs_of_copy(t_days[lo:hi], rng)
            if kept.size:
                sources.append(k)
                copies.append(c)
                epochs.append(lo + kept)
                lengths.append(kept.size)
    if not epochs:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(1, np.int64), empty
    return (
        np.asarray(sources, np.int64),
        np.asarray(copies, np.int64),
        np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        np.concatenate(epochs).astype(np.int64),
    )


#: Bit where the copy number goes in a copy's object id (real ids are below 2**53).
COPY_ID_SHIFT = 56


def copy_objectid(objectid: npt.ArrayLike, copy: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Object id of an augmented copy: the copy number above bit :data:`COPY_ID_SHIFT`."""
    return np.asarray(objectid, np.int64) | (np.asarray(copy, np.int64) << COPY_ID_SHIFT)


def original_objectid(objectid: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Inverse of :func:`copy_objectid` (an original's id is itself)."""
    return np.asarray(objectid, np.int64) & ((1 << COPY_ID_SHIFT) - 1)


def augment_lightcurve_table(
    table,
    n_copies: int,
    seed: int,
    augmentation: CadenceAugmentation | None = None,
    id_column: str = "objectid",
    lightcurve_column: str = "lightcurve",
):
    """Rows of resampled copies of every light curve of an Arrow table.

    The other columns are copied from the source row; the id becomes :func:`copy_objectid`; the
    ``lightcurve`` struct of lists keeps its fields, restricted to the copy's epochs.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    lc = table.column(lightcurve_column).combine_chunks()
    hmjd = lc.field(0)
    lengths = pc.fill_null(pc.list_value_length(hmjd), 0).to_numpy(zero_copy_only=False)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    t = pc.list_flatten(hmjd).to_numpy(zero_copy_only=False).astype(np.float64)
    ids = table.column(id_column).to_numpy()
    source, copy, copy_offsets, epochs = augmented_copies(
        ids, t, offsets, n_copies, seed, augmentation
    )
    take = pa.array(epochs)
    list_offsets = pa.array(copy_offsets.astype(np.int32))
    fields = [
        pa.ListArray.from_arrays(list_offsets, pc.list_flatten(lc.field(k)).take(take))
        for k in range(lc.type.num_fields)
    ]
    new_lc = pa.StructArray.from_arrays(fields, fields=list(lc.type))
    out = table.take(pa.array(source))
    out = out.set_column(
        out.schema.get_field_index(id_column), id_column, pa.array(copy_objectid(ids[source], copy))
    )
    return out.set_column(out.schema.get_field_index(lightcurve_column), lightcurve_column, new_lc)
