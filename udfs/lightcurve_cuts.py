"""ZTF quality cuts on a batch of DR light-curve rows, in Arrow and numpy (no Spark).

Per epoch: keep catflags == 0 (ZTF's recommendation) with finite hmjd, mag and magerr. An epoch
with catflags != 0 counts as flagged; an unflagged epoch with a non-finite value counts as
non-finite. Per row: the row is rejected, with one reason, when its objectid is null, its filterid
is not a ZTF band, its position is not finite or outside -90..90 deg, its per-epoch lists differ in
length, or it keeps fewer than ``min_epochs`` good epochs. Every input row comes out once, with its
reason or none, so rows in = rows kept + rows rejected.

Hand-written on Arrow lists rather than nested-pandas: 0.7.2 under the locked pandas 3.1 cannot
address a nested field (``NestedFrame.query("lc.catflags == 0")`` and ``nf["lc.catflags"]`` fail),
and Spark's batches are Arrow already.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from catalogs.healpix import healpix_29
from catalogs.schema import (
    BAND_NAMES,
    CATFLAGS_GOOD,
    DEC,
    HEALPIX_COLUMN,
    LIGHTCURVE,
    LIGHTCURVE_STRUCT,
    N_FLAGGED,
    N_GOOD,
    N_NONFINITE,
    RA,
    REJECT_REASON,
    SOURCE_FILE,
    SOURCE_ROW,
    Band,
    DRColumn,
    RejectReason,
    n_good_column,
)

N_EPOCHS_IN = "n_epochs_in"
_LIST_COLUMNS = (DRColumn.HMJD, DRColumn.MAG, DRColumn.MAGERR, DRColumn.CATFLAGS)

#: Arrow schema of the batches :func:`apply_quality_cuts` returns.
CUT_SCHEMA = pa.schema(
    [
        pa.field(DRColumn.OBJECTID, pa.int64()),
        pa.field(DRColumn.FILTERID, pa.int32()),
        pa.field(DRColumn.FIELDID, pa.int32()),
        pa.field(DRColumn.RCID, pa.int32()),
        pa.field(RA, pa.float64()),
        pa.field(DEC, pa.float64()),
        pa.field(HEALPIX_COLUMN, pa.int64()),
        pa.field(SOURCE_FILE, pa.string()),
        pa.field(SOURCE_ROW, pa.int64()),
        pa.field(N_EPOCHS_IN, pa.int32()),
        pa.field(N_FLAGGED, pa.int32()),
        pa.field(N_NONFINITE, pa.int32()),
        pa.field(N_GOOD, pa.int32()),
        *[pa.field(n_good_column(b), pa.int32()) for b in BAND_NAMES],
        pa.field(REJECT_REASON, pa.string()),
        pa.field(LIGHTCURVE, LIGHTCURVE_STRUCT),
    ]
)


def _numpy(array: pa.Array, fill: float | int, dtype: npt.DTypeLike) -> np.ndarray:
    return pc.fill_null(array, fill).to_numpy(zero_copy_only=False).astype(dtype, copy=False)


def epoch_index(
    starts: npt.NDArray[np.int64], lengths: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """Flat indices of ranges [starts[k], starts[k] + lengths[k]) concatenated."""
    total = int(lengths.sum())
    if total == 0:
        return np.empty(0, dtype=np.int64)
    run_start = np.cumsum(lengths) - lengths
    return np.repeat(starts - run_start, lengths) + np.arange(total, dtype=np.int64)


def _list_parts(array: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(flat values as numpy with nulls filled, per-row lengths) of a list column."""
    lengths = _numpy(pc.list_value_length(array), 0, np.int64)
    values = pc.list_flatten(array)
    if pa.types.is_integer(values.type):
        # A null flag counts as flagged.
        flat = _numpy(pc.cast(values, pa.int64()), -1, np.int64)
    else:
        flat = _numpy(pc.cast(values, pa.float64()), np.nan, np.float64)
    return flat, lengths


def apply_quality_cuts(batch: pa.RecordBatch, min_epochs: int) -> pa.RecordBatch:
    """Apply the epoch and row cuts to a batch of DR light-curve rows.

    Parameters
    ----------
    batch : pyarrow.RecordBatch
        Columns objectid, filterid, fieldid, rcid, objra, objdec (degrees), hmjd (list of float64
        days), mag, magerr (lists, mag), catflags (list of int), source_file, source_row.
    min_epochs : int
        Rows with fewer good epochs (all bands) are rejected as too_few_good_epochs.

    Returns
    -------
    pyarrow.RecordBatch
        One row per input row, schema :data:`CUT_SCHEMA`. Kept rows have a null reject_reason
        and their good epochs, sorted by time, in the lightcurve struct; rejected rows have a
        reason and a null lightcurve.
    """
    n_rows = batch.num_rows
    col = batch.column
    objectid = col(DRColumn.OBJECTID)
    filterid = _numpy(col(DRColumn.FILTERID), 0, np.int32)
    ra = _numpy(col(DRColumn.RA), np.nan, np.float64)
    dec = _numpy(col(DRColumn.DEC), np.nan, np.float64)

    parts = {c: _list_parts(col(c)) for c in _LIST_COLUMNS}
    lengths = parts[DRColumn.HMJD][1]
    same_length = np.ones(n_rows, dtype=bool)
    for c in _LIST_COLUMNS[1:]:
        same_length &= parts[c][1] == lengths

    # Epochs of rows whose lists agree; the lists of other rows are never paired up.
    rows = np.flatnonzero(same_length)
    row_lengths = lengths[rows]
    epoch_row = np.repeat(rows, row_lengths)
    gathered = {}
    for c in _LIST_COLUMNS:
        flat, col_lengths = parts[c]
        starts = np.cumsum(col_lengths) - col_lengths
        gathered[c] = flat[epoch_index(starts[rows], row_lengths)]
    t_days = gathered[DRColumn.HMJD]
    mag = gathered[DRColumn.MAG]
    magerr = gathered[DRColumn.MAGERR]
    flagged = gathered[DRColumn.CATFLAGS] != CATFLAGS_GOOD
    finite = np.isfinite(t_days) & np.isfinite(mag) & np.isfinite(magerr)
    good = ~flagged & finite

    n_flagged = np.bincount(epoch_row[flagged], minlength=n_rows).astype(np.int32)
    n_nonfinite = np.bincount(epoch_row[~flagged & ~finite], minlength=n_rows).astype(np.int32)
    n_good = np.bincount(epoch_row[good], minlength=n_rows).astype(np.int32)

    reason = np.full(n_rows, None, dtype=object)
    bad_coords = ~(np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= 90.0))
    known_band = np.isin(filterid, [b.value for b in Band])
    reason[n_good < min_epochs] = RejectReason.TOO_FEW_EPOCHS
    reason[~same_length] = RejectReason.LENGTH_MISMATCH
    reason[bad_coords] = RejectReason.BAD_COORDINATES
    reason[~known_band] = RejectReason.BAD_FILTERID
    reason[_numpy(pc.is_null(objectid), True, bool)] = RejectReason.NULL_OBJECTID
    kept = np.equal(reason, None)

    hp29 = np.zeros(n_rows, dtype=np.int64)
    hp29[~bad_coords] = healpix_29(ra[~bad_coords], dec[~bad_coords])

    # Good epochs of kept rows, time-ordered within each row.
    take = good & kept[epoch_row]
    order = np.lexsort((t_days[take], epoch_row[take]))
    lc_row = epoch_row[take][order]
    counts = np.where(kept, n_good, 0)
    offsets = np.zeros(n_rows + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    channel = (filterid[lc_row] - 1).astype(np.int8)
    null_mask = pa.array(~kept)
    lightcurve = pa.StructArray.from_arrays(
        [
            pa.ListArray.from_arrays(pa.array(offsets), pa.array(t_days[take][order])),
            pa.ListArray.from_arrays(
                pa.array(offsets), pa.array(mag[take][order].astype(np.float32))
            ),
            pa.ListArray.from_arrays(
                pa.array(offsets), pa.array(magerr[take][order].astype(np.float32))
            ),
            pa.ListArray.from_arrays(pa.array(offsets), pa.array(channel)),
        ],
        fields=list(LIGHTCURVE_STRUCT),
        mask=null_mask,
    )

    per_band = {
        n_good_column(b.name): np.where(filterid == b.value, n_good, 0).astype(np.int32)
        for b in Band
    }
    columns = {
        DRColumn.OBJECTID: pc.cast(objectid, pa.int64()),
        DRColumn.FILTERID: pa.array(filterid, pa.int32()),
        DRColumn.FIELDID: pc.cast(col(DRColumn.FIELDID), pa.int32()),
        DRColumn.RCID: pc.cast(col(DRColumn.RCID), pa.int32()),
        RA: pa.array(np.mod(ra, 360.0)),
        DEC: pa.array(dec),
        HEALPIX_COLUMN: pa.array(hp29, mask=bad_coords),
        SOURCE_FILE: pc.cast(col(SOURCE_FILE), pa.string()),
        SOURCE_ROW: pc.cast(col(SOURCE_ROW), pa.int64()),
        N_EPOCHS_IN: pa.array(lengths.astype(np.int32)),
        N_FLAGGED: pa.array(n_flagged),
        N_NONFINITE: pa.array(n_nonfinite),
        N_GOOD: pa.array(n_good),
        **{name: pa.array(values) for name, values in per_band.items()},
        REJECT_REASON: pa.array(reason, pa.string()),
        LIGHTCURVE: lightcurve,
    }
    return pa.RecordBatch.from_arrays(list(columns.values()), schema=CUT_SCHEMA)


def cut_lightcurve_catalog(batch: pa.RecordBatch, min_epochs: int) -> pa.RecordBatch:
    """Rows of a varsky light-curve catalog (from `varsky ingest`) as :data:`CUT_SCHEMA` rows.

    Ingest has already removed flagged and non-finite epochs; here an object with fewer than
    ``min_epochs`` epochs is rejected, and the light curve keeps the fields classify uses.
    """
    n = batch.num_rows
    lightcurve = batch.column(LIGHTCURVE)
    if isinstance(lightcurve, pa.ChunkedArray):
        lightcurve = lightcurve.combine_chunks()
    n_good = _numpy(batch.column("n_epochs"), 0, np.int32)
    reason = np.where(n_good < min_epochs, RejectReason.TOO_FEW_EPOCHS, None).astype(object)
    kept = np.equal(reason, None)
    slim = pa.StructArray.from_arrays(
        [lightcurve.field(f.name) for f in LIGHTCURVE_STRUCT],
        fields=list(LIGHTCURVE_STRUCT),
        mask=pa.array(~kept),
    )
    nulls = pa.nulls(n, pa.int32())
    columns = {
        DRColumn.OBJECTID: pc.cast(batch.column(DRColumn.OBJECTID), pa.int64()),
        DRColumn.FILTERID: nulls,
        DRColumn.FIELDID: nulls,
        DRColumn.RCID: nulls,
        RA: pc.cast(batch.column(RA), pa.float64()),
        DEC: pc.cast(batch.column(DEC), pa.float64()),
        HEALPIX_COLUMN: pc.cast(batch.column(HEALPIX_COLUMN), pa.int64()),
        SOURCE_FILE: pc.cast(batch.column(SOURCE_FILE), pa.string()),
        SOURCE_ROW: pc.cast(batch.column(SOURCE_ROW), pa.int64()),
        N_EPOCHS_IN: pa.array(n_good),
        N_FLAGGED: pa.array(np.zeros(n, np.int32)),
        N_NONFINITE: pa.array(np.zeros(n, np.int32)),
        N_GOOD: pa.array(n_good),
        **{
            n_good_column(b): pc.cast(batch.column(f"n_epochs_{b}"), pa.int32()) for b in BAND_NAMES
        },
        REJECT_REASON: pa.array(reason, pa.string()),
        LIGHTCURVE: slim,
    }
    return pa.RecordBatch.from_arrays(list(columns.values()), schema=CUT_SCHEMA)
