"""Band dropout: copies of multi-band training light curves with one band removed.

Surveys miss bands (a field observed in r only, a star too red for g), so a classifier trained on
g+r light curves alone can fail on a g-only one. Training on extra copies with one band removed
teaches it not to rely on any single band. The choice of copy and band depends only on the seed
and the object id, so a training set is reproducible whatever Spark's partitioning.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from catalogs.schema import BAND, LIGHTCURVE, DRColumn
from udfs.kernels.model_inputs import taken_epochs

#: Column numbering the copies of an object: 0 the original, 1 a band-dropped copy.
VARIANT = "variant"


def _object_draws(objectids: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two uniform [0, 1) numbers per object, from (seed, objectid) alone."""
    u = np.empty((objectids.size, 2))
    for k, objectid in enumerate(objectids):
        u[k] = np.random.default_rng([seed, int(objectid) & 0x7FFFFFFFFFFFFFFF]).random(2)
    return u[:, 0], u[:, 1]


def band_dropped_copies(
    batch: pa.RecordBatch, fraction: float, seed: int, min_epochs: int
) -> pa.RecordBatch:
    """Copies of some multi-band light curves of ``batch`` with one band removed.

    Parameters
    ----------
    batch : pyarrow.RecordBatch
        Rows with ``objectid`` (int64) and a ``lightcurve`` struct of lists that has a ``band``
        list (image channel per epoch).
    fraction : float
        Probability that a light curve with two or more bands gets a copy.
    seed : int
    min_epochs : int
        A copy needs at least this many epochs left, or is not made.

    Returns
    -------
    pyarrow.RecordBatch
        The same columns for the copies, plus :data:`VARIANT` = 1. Band removed: one of the
        object's bands, uniformly.
    """
    lightcurve = batch.column(LIGHTCURVE)
    bands = lightcurve.field(BAND)
    lengths = pc.fill_null(pc.list_value_length(bands), 0).to_numpy(zero_copy_only=False)
    offsets = np.zeros(len(batch) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat_band = pc.list_flatten(bands).to_numpy(zero_copy_only=False).astype(np.int64)
    objectids = batch.column(DRColumn.OBJECTID).to_numpy(zero_copy_only=False)
    take_u, band_u = _object_draws(objectids, seed)
    keep_rows, keep_epochs, new_lengths = [], [], []
    for k in range(len(batch)):
        lo, hi = offsets[k], offsets[k + 1]
        present = np.unique(flat_band[lo:hi])
        if present.size < 2 or take_u[k] >= fraction:
            continue
        dropped = present[int(band_u[k] * present.size)]
        kept = np.flatnonzero(flat_band[lo:hi] != dropped) + lo
        if kept.size < min_epochs:
            continue
        keep_rows.append(k)
        keep_epochs.append(kept)
        new_lengths.append(kept.size)
    rows = pa.array(np.asarray(keep_rows, dtype=np.int64))
    epochs = pa.array(np.concatenate(keep_epochs) if keep_epochs else np.empty(0, np.int64))
    copies = taken_epochs(lightcurve, epochs, new_lengths)
    names = batch.schema.names
    columns = [copies if name == LIGHTCURVE else batch.column(name).take(rows) for name in names]
    columns.append(pa.array(np.ones(len(keep_rows), dtype=np.int8)))
    return pa.RecordBatch.from_arrays(columns, names=[*names, VARIANT])
