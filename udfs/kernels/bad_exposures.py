"""Exposure-level quality cut: epochs from exposures where many stars jump at once.

A bad exposure (a poor zero point, a PSF-fit problem) moves many stars of a CCD quadrant in the
same direction at the same time. In one star's light curve it looks like a flare or a dip, and
catflags does not flag it. In the bundled DR5 quadrant, 76% of the epochs more than 3 robust
sigma brighter than their star's median fall in 20 of its 89 exposures. Across stars it is
obvious: in a good exposure about 1% of stars are 3 sigma off, in a bad one 10-25%.

The cut works on the light curves of one IRSA DR file (one field, CCD quadrant and filter), so
an exposure is (file, band, time): stars of a quadrant share it to a few seconds of heliocentric
correction, well within :data:`EXPOSURE_BIN_DAYS`.

1. :func:`exposure_deviations`: for every epoch, its exposure key and whether the epoch is more
   than :data:`DEVIATION_SIGMA` robust sigma (1.4826 MAD) from its star's median in that band.
2. Count stars and deviant stars per exposure (a Spark group-by, or :func:`flag_exposures`).
3. :func:`remove_epochs`: drop the epochs of flagged exposures from the light curves, keeping a
   light curve whole if fewer than ``min_left`` epochs would remain.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy import ndimage

from catalogs.schema import BAND, BAND_NAMES, LIGHTCURVE, N_GOOD, SOURCE_FILE, n_good_column
from udfs.kernels.model_inputs import flat_lightcurves, taken_epochs

#: Width of an exposure's time bin, days (86 s: one exposure, whatever the star's heliocentric
#: correction within a quadrant).
EXPOSURE_BIN_DAYS = 0.001
#: An epoch deviates when it lies this many robust sigma from its star's median in its band.
DEVIATION_SIGMA = 3.0
EXPOSURE = "exposure"
DEVIANT = "deviant"
#: What exposures are counted by: the file (one quadrant's exposures), band and exposure bin.
EXPOSURE_KEYS: tuple[str, ...] = (SOURCE_FILE, BAND, EXPOSURE)
#: The columns of the kept rows :func:`exposure_counts` reads.
EXPOSURE_INPUT_COLUMNS: tuple[str, ...] = (SOURCE_FILE, LIGHTCURVE)

_EXPOSURE_FIELDS = [
    pa.field(SOURCE_FILE, pa.string()),
    pa.field(BAND, pa.int8()),
    pa.field(EXPOSURE, pa.int64()),
]
#: Schema of :func:`exposure_deviations` output.
DEVIATION_SCHEMA = pa.schema([*_EXPOSURE_FIELDS, pa.field(DEVIANT, pa.bool_())])
#: Epochs (``n``) and deviant epochs (``d``) per (file, band, exposure) of one batch: partial
#: counts, summed across batches by the engine (one row per star and exposure).
EXPOSURE_COUNT_SCHEMA = pa.schema(
    [*_EXPOSURE_FIELDS, pa.field("n", pa.int64()), pa.field("d", pa.int64())]
)


def exposure_key(hmjd_days: np.ndarray) -> np.ndarray:
    """Exposure time bin of each epoch (int64)."""
    return np.round(np.asarray(hmjd_days, dtype=np.float64) / EXPOSURE_BIN_DAYS).astype(np.int64)


def exposure_deviations(batch: pa.RecordBatch) -> pa.RecordBatch:
    """One row per epoch: source file, band, exposure key, and whether the epoch deviates."""
    flat = flat_lightcurves(batch.column(LIGHTCURVE))
    t, mag, band, offsets = flat.t_days, flat.mag, flat.channel, flat.offsets
    # Median and MAD of every (star, band) at once (scipy's labelled medians, no Python loop).
    star = np.repeat(np.arange(offsets.size - 1, dtype=np.int64), np.diff(offsets))
    groups, group = np.unique(star * 256 + band.astype(np.int64), return_inverse=True)
    labels = np.arange(groups.size)
    if groups.size:
        median = np.asarray(ndimage.median(mag, group, labels))[group]
        off = np.abs(mag - median)
        spread = 1.4826 * np.asarray(ndimage.median(off, group, labels))[group]
        deviant = (spread > 0) & (off > DEVIATION_SIGMA * spread)
    else:
        deviant = np.zeros(t.size, dtype=bool)
    files = batch.column(SOURCE_FILE).to_numpy(zero_copy_only=False)
    per_epoch_file = np.repeat(files, np.diff(offsets))
    return pa.RecordBatch.from_arrays(
        [
            pa.array(per_epoch_file, pa.string()),
            pa.array(band, pa.int8()),
            pa.array(exposure_key(t), pa.int64()),
            pa.array(deviant),
        ],
        schema=DEVIATION_SCHEMA,
    )


def exposure_counts(batch: pa.RecordBatch) -> pa.RecordBatch:
    """:func:`exposure_deviations` counted per (file, band, exposure) within the batch.

    What an engine aggregates: one row per exposure of the batch, not one per epoch (5.7
    million epoch rows through Spark's aggregation cost a CRTS sky of 20,000 stars 15 s).
    """
    counted = _counted(pa.Table.from_batches([exposure_deviations(batch)]))
    return (
        counted.cast(EXPOSURE_COUNT_SCHEMA).combine_chunks().to_batches()[0]
        if counted.num_rows
        else pa.RecordBatch.from_pylist([], schema=EXPOSURE_COUNT_SCHEMA)
    )


def _counted(deviations: pa.Table) -> pa.Table:
    """Epochs (``n``) and deviant epochs (``d``) per (file, band, exposure) of a deviation table."""
    grouped = deviations.group_by(list(EXPOSURE_KEYS), use_threads=False).aggregate(
        [(DEVIANT, "count"), (DEVIANT, "sum")]
    )
    counted = grouped.select([*EXPOSURE_KEYS, f"{DEVIANT}_count", f"{DEVIANT}_sum"])
    return counted.rename_columns([*EXPOSURE_KEYS, "n", "d"])


def flag_exposures(
    deviations: pa.Table, min_stars: int, max_deviant_fraction: float
) -> dict[tuple[str, int], set[int]]:
    """Exposures with at least ``min_stars`` stars of which more than the fraction deviate.

    Returns
    -------
    dict of (source file, band) to set of exposure keys
    """
    counted = _counted(deviations)
    columns = [counted.column(c).to_numpy(zero_copy_only=False) for c in counted.column_names]
    return flagged_from_counts(*columns, min_stars, max_deviant_fraction)


def flagged_from_counts(files, bands, exposures, n_stars, n_deviant, min_stars, max_fraction):
    """The flagged exposures from per-exposure star and deviant counts."""
    flagged: dict[tuple[str, int], set[int]] = {}
    n_stars = np.asarray(n_stars)
    n_deviant = np.asarray(n_deviant)
    bad = (n_stars >= min_stars) & (n_deviant > max_fraction * n_stars)
    for k in np.flatnonzero(bad):
        flagged.setdefault((files[k], int(bands[k])), set()).add(int(exposures[k]))
    return flagged


def remove_epochs(
    batch: pa.RecordBatch, flagged: Mapping[tuple[str, int], set[int]], min_left: int
) -> tuple[pa.RecordBatch, int]:
    """Drop the epochs of flagged exposures; update the good-epoch counts.

    A light curve that would keep fewer than ``min_left`` epochs is left whole (it was good
    enough to classify before; the cut must not reject it).

    Returns
    -------
    (pyarrow.RecordBatch, int)
        The batch with the same schema, and the number of epochs removed.
    """
    lightcurve = batch.column(LIGHTCURVE)
    if isinstance(lightcurve, pa.ChunkedArray):
        lightcurve = lightcurve.combine_chunks()
    flat = flat_lightcurves(lightcurve)
    t, band, offsets = flat.t_days, flat.channel, flat.offsets
    files = batch.column(SOURCE_FILE).to_numpy(zero_copy_only=False)
    row = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    # Every epoch's (file, band, exposure) looked up in the flagged set at once (a hash join).
    file_code, file_names = pd.factorize(files)
    code_of = {name: code for code, name in enumerate(file_names)}
    bad = [
        (code_of[f], b, int(key))
        for (f, b), keys in flagged.items()
        if f in code_of
        for key in keys
    ]
    epochs = pd.MultiIndex.from_arrays([file_code[row], band.astype(np.int64), exposure_key(t)])
    drop = epochs.isin(bad) if bad else np.zeros(t.size, dtype=bool)
    n_drop = np.bincount(row[drop], minlength=len(offsets) - 1)
    # A light curve that would keep too few epochs stays whole.
    whole = np.diff(offsets) - n_drop < min_left
    keep = ~(drop & ~whole[row])
    removed = int((~keep).sum())
    if not removed:
        return batch, 0
    lengths = np.bincount(row[keep], minlength=len(offsets) - 1)
    columns = {name: batch.column(name) for name in batch.schema.names}
    columns[LIGHTCURVE] = taken_epochs(lightcurve, pa.array(np.flatnonzero(keep)), lengths)
    kept_band = band[keep]
    kept_row = row[keep]
    n_rows = len(offsets) - 1
    if N_GOOD in columns:
        columns[N_GOOD] = pa.array(lengths.astype(np.int32), batch.schema.field(N_GOOD).type)
    for b, name in enumerate(BAND_NAMES):
        column = n_good_column(name)
        if column in columns:
            counts = np.bincount(kept_row[kept_band == b], minlength=n_rows).astype(np.int32)
            columns[column] = pa.array(counts, batch.schema.field(column).type)
    return pa.RecordBatch.from_arrays(list(columns.values()), schema=batch.schema), removed
