"""ZTF quality cuts on a batch of DR light-curve rows, in Arrow and numpy (no Spark).

Per epoch: keep catflags == 0 (ZTF's recommendation) with finite hmjd, mag and magerr and
magerr > 0. An epoch with catflags != 0 counts as flagged; an unflagged epoch with a non-finite
value or a non-positive error counts as non-finite (invalid). An epoch that repeats an earlier one
of its light curve exactly (time, mag and magerr) counts as a duplicate and is dropped; epochs
that share a time but not their measurements are kept (DR files store float32 times, which merge
exposures a few minutes apart). A light curve with more than :data:`MAX_EPOCHS` good epochs keeps
:data:`MAX_EPOCHS` of them, evenly spaced in time order; the rest count as thinned.

Per row: the row is rejected, with one reason, when its objectid is null, its filterid
is not a ZTF band, its position is not finite or outside -90..90 deg, its per-epoch lists differ in
length, or it keeps fewer than ``min_epochs`` good epochs. Every input row comes out once, with its
reason or none, so rows in = rows kept + rows rejected.

Hand-written on Arrow lists rather than nested-pandas: 0.7.2 under the locked pandas 3.1 cannot
address a nested field (``NestedFrame.query("lc.catflags == 0")`` and ``nf["lc.catflags"]`` fail),
and Spark's batches are Arrow already.
"""

from __future__ import annotations

import numba as nb
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
    KEPT_COLUMNS,
    LIGHTCURVE,
    LIGHTCURVE_STRUCT,
    N_DUPLICATE,
    N_FLAGGED,
    N_GOOD,
    N_NONFINITE,
    N_THINNED,
    RA,
    REJECT_REASON,
    ROW_ORIGIN_COLUMNS,
    SOURCE_FILE,
    SOURCE_ROW,
    Band,
    DRColumn,
    InputKind,
    RejectReason,
    n_good_column,
)

N_EPOCHS_IN = "n_epochs_in"
#: What the plan sums per reject reason: rows, then the epoch counts of :data:`CUT_SCHEMA`.
CUT_COUNTS = ("rows", N_EPOCHS_IN, N_GOOD, N_FLAGGED, N_NONFINITE, N_DUPLICATE, N_THINNED)
#: Most epochs a light curve keeps: its dm-dt image then costs ~5 x 10^7 pairs and its
#: periodogram ~1.5 x 10^9 terms (about 2 s), and int32 dm-dt cell counts cannot overflow.
MAX_EPOCHS = 10_000
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
        *[
            pa.field(name, pa.int32())
            for name in (N_EPOCHS_IN, N_FLAGGED, N_NONFINITE, N_DUPLICATE, N_THINNED, N_GOOD)
        ],
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


@nb.njit(cache=True, nogil=True)
def _time_order(row, t):
    n = row.size
    order = np.empty(n, np.int64)
    start = 0
    while start < n:
        end = start + 1
        in_order = True
        while end < n and row[end] == row[start]:
            in_order &= t[end] >= t[end - 1]
            end += 1
        if in_order:  # DR light curves mostly are: no sort at all
            for i in range(start, end):
                order[i] = i
        else:
            by_time = np.argsort(t[start:end], kind="mergesort")
            for i in range(end - start):
                order[start + i] = start + by_time[i]
        start = end
    return order


def time_order(row: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``np.lexsort((t, row))`` for ``row`` in runs (non-decreasing): a stable sort by time per run.

    One pass per light curve, and a sort only of those whose times are out of order (the
    lexsort of every epoch was most of the cuts' time on 290-epoch light curves).
    """
    if row.size > 1 and np.any(row[1:] < row[:-1]):
        raise ValueError("time_order: row must be non-decreasing")
    return _time_order(row, np.ascontiguousarray(t, dtype=np.float64))


@nb.njit(cache=True, nogil=True)
def _repeats(row, t, mag, magerr, order):
    repeat = np.zeros(row.size, np.bool_)
    k = 0
    while k < row.size:
        end = k + 1
        while end < row.size and row[order[end]] == row[order[k]] and t[order[end]] == t[order[k]]:
            end += 1
        # order[k:end] share row and time, in input order: each repeats an earlier one or not.
        for a in range(k + 1, end):
            for b in range(k, a):
                if mag[order[a]] == mag[order[b]] and magerr[order[a]] == magerr[order[b]]:
                    repeat[order[a]] = True
                    break
        k = end
    return repeat


def duplicate_epochs(
    row: np.ndarray, t: np.ndarray, mag: np.ndarray, magerr: np.ndarray
) -> np.ndarray:
    """True for each epoch equal in ``row``, ``t``, ``mag`` and ``magerr`` to an earlier one.

    ``row`` in runs (non-decreasing); ``t``, ``mag``, ``magerr`` finite. "Earlier" is input order,
    so the first of identical epochs stays.
    """
    as_f64 = lambda a: np.ascontiguousarray(a, dtype=np.float64)  # noqa: E731
    return _repeats(row, as_f64(t), as_f64(mag), as_f64(magerr), time_order(row, t))


def thinned_epochs(counts: np.ndarray, max_epochs: int = MAX_EPOCHS) -> np.ndarray:
    """Mask over the epochs of rows of ``counts`` epochs each (concatenated): True for those kept.

    Rows of at most ``max_epochs`` keep every epoch; longer ones keep ``max_epochs``, evenly
    spaced (indices rounded from a linear spacing, so the first and last are always kept).
    """
    keep = np.ones(int(counts.sum()), dtype=bool)
    starts = np.cumsum(counts) - counts
    for row in np.flatnonzero(counts > max_epochs):
        n = int(counts[row])
        chosen = np.zeros(n, dtype=bool)
        chosen[np.round(np.linspace(0, n - 1, max_epochs)).astype(np.int64)] = True
        keep[starts[row] : starts[row] + n] = chosen
    return keep


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
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(t_days) & np.isfinite(mag) & np.isfinite(magerr) & (magerr > 0)
    good = ~flagged & valid
    sel = np.flatnonzero(good)
    duplicate = np.zeros(good.size, dtype=bool)
    duplicate[sel] = duplicate_epochs(epoch_row[sel], t_days[sel], mag[sel], magerr[sel])
    good &= ~duplicate

    n_flagged = np.bincount(epoch_row[flagged], minlength=n_rows).astype(np.int32)
    n_nonfinite = np.bincount(epoch_row[~flagged & ~valid], minlength=n_rows).astype(np.int32)
    n_duplicate = np.bincount(epoch_row[duplicate], minlength=n_rows).astype(np.int32)
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
    order = time_order(epoch_row[take], t_days[take])
    counts = np.where(kept, n_good, 0)
    n_thinned = np.maximum(counts - MAX_EPOCHS, 0).astype(np.int32)
    if n_thinned.any():
        order = order[thinned_epochs(counts)]
        counts = counts - n_thinned
        n_good = (n_good - n_thinned).astype(np.int32)
    lc_row = epoch_row[take][order]
    offsets = np.zeros(n_rows + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    channel = (filterid[lc_row] - 1).astype(np.int8)
    epoch_values = (
        t_days[take][order],
        mag[take][order].astype(np.float32),
        magerr[take][order].astype(np.float32),
        channel,
    )
    lightcurve = pa.StructArray.from_arrays(
        [pa.ListArray.from_arrays(pa.array(offsets), pa.array(v)) for v in epoch_values],
        fields=list(LIGHTCURVE_STRUCT),
        mask=pa.array(~kept),
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
        N_DUPLICATE: pa.array(n_duplicate),
        N_THINNED: pa.array(n_thinned),
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
    fields = [lightcurve.field(f.name) for f in LIGHTCURVE_STRUCT]
    n_thinned = np.where(kept, np.maximum(n_good - MAX_EPOCHS, 0), 0).astype(np.int32)
    per_band = {b: _numpy(batch.column(f"n_epochs_{b}"), 0, np.int32) for b in BAND_NAMES}
    if n_thinned.any():
        fields, per_band = _thinned_lists(fields, per_band)
        n_good = (n_good - n_thinned).astype(np.int32)
    slim = pa.StructArray.from_arrays(fields, fields=list(LIGHTCURVE_STRUCT), mask=pa.array(~kept))
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
        N_DUPLICATE: pa.array(np.zeros(n, np.int32)),
        N_THINNED: pa.array(n_thinned),
        N_GOOD: pa.array(n_good),
        **{n_good_column(b): pa.array(v) for b, v in per_band.items()},
        REJECT_REASON: pa.array(reason, pa.string()),
        LIGHTCURVE: slim,
    }
    return pa.RecordBatch.from_arrays(list(columns.values()), schema=CUT_SCHEMA)


def _thinned_lists(fields: list, per_band: dict) -> tuple[list, dict]:
    """Light-curve list fields with rows over :data:`MAX_EPOCHS` thinned; per-band counts anew."""
    lengths = _numpy(pc.list_value_length(fields[0]), 0, np.int64)
    keep = pa.array(thinned_epochs(lengths))
    new_lengths = np.minimum(lengths, MAX_EPOCHS)
    offsets = pa.array(np.concatenate([[0], np.cumsum(new_lengths)]).astype(np.int32))
    thinned = [pa.ListArray.from_arrays(offsets, pc.list_flatten(f).filter(keep)) for f in fields]
    band = pc.list_flatten(thinned[-1]).to_numpy(zero_copy_only=False)
    row = np.repeat(np.arange(lengths.size), new_lengths)
    counts = {
        name: np.bincount(row[band == k], minlength=lengths.size).astype(np.int32)
        for k, name in enumerate(per_band)
    }
    return thinned, counts


def repeated_objects(
    objectid: np.ndarray, source_file: np.ndarray, source_row: np.ndarray
) -> dict[int, tuple[str, int]]:
    """The first (file, row) of every objectid that occurs more than once among kept rows.

    The first is the smallest (source_file, source_row); :func:`reject_repeated_objects` rejects
    the others.
    """
    if objectid.size == 0:
        return {}
    ids, counts = np.unique(objectid, return_counts=True)
    repeated = ids[counts > 1]
    if repeated.size == 0:
        return {}
    rows = np.flatnonzero(np.isin(objectid, repeated))
    order = rows[np.lexsort((source_row[rows], source_file[rows], objectid[rows]))]
    first = np.r_[True, objectid[order][1:] != objectid[order][:-1]]
    return {int(objectid[k]): (str(source_file[k]), int(source_row[k])) for k in order[first]}


def reject_repeated_objects(
    batch: pa.RecordBatch, first_of: dict[int, tuple[str, int]]
) -> pa.RecordBatch:
    """Reject kept rows whose objectid came first at another (file, row): duplicate_objectid."""
    if not first_of or batch.num_rows == 0:
        return batch
    objectid = _numpy(batch.column(DRColumn.OBJECTID), -1, np.int64)
    kept = _numpy(pc.is_null(batch.column(REJECT_REASON)), False, bool)
    candidates = np.flatnonzero(kept & np.isin(objectid, np.fromiter(first_of, np.int64)))
    files = batch.column(SOURCE_FILE).take(pa.array(candidates, pa.int64())).to_pylist()
    rows = _numpy(batch.column(SOURCE_ROW), -1, np.int64)[candidates]
    repeat = np.zeros(batch.num_rows, dtype=bool)
    repeat[candidates] = [
        first_of[int(o)] != (f, int(r))
        for o, f, r in zip(objectid[candidates], files, rows, strict=True)
    ]
    if not repeat.any():
        return batch
    reason = np.array(batch.column(REJECT_REASON).to_pylist(), dtype=object)
    reason[repeat] = RejectReason.DUPLICATE_OBJECTID
    lightcurve = batch.column(LIGHTCURVE)
    valid = _numpy(pc.is_valid(lightcurve), False, bool) & ~repeat
    lightcurve = pa.StructArray.from_arrays(
        lightcurve.flatten(), fields=list(LIGHTCURVE_STRUCT), mask=pa.array(~valid)
    )
    columns = [
        pa.array(reason, pa.string()) if name == REJECT_REASON
        else lightcurve if name == LIGHTCURVE
        else batch.column(name)
        for name in batch.schema.names
    ]  # fmt: skip
    return pa.RecordBatch.from_arrays(columns, schema=batch.schema)


def cut_partition(batch: pa.RecordBatch, kind: InputKind | str, min_epochs: int) -> pa.RecordBatch:
    """Quality cuts of input rows: :data:`CUT_SCHEMA` rows, one per input row.

    Kept rows have a null ``reject_reason``. Rows of ``kind`` ``hats_dr`` need ``source_file``
    and ``source_row`` columns (the engine knows them); the others carry them already.
    """
    from catalogs.hats_input import dr_rows_of_hats_file

    kind = InputKind(kind)
    if kind is InputKind.CATALOG:
        return cut_lightcurve_catalog(batch, min_epochs)
    if kind is InputKind.HATS_DR:
        table = pa.Table.from_batches([batch])
        path = table.column(SOURCE_FILE)[0].as_py() if table.num_rows else ""
        rows = dr_rows_of_hats_file(table.drop_columns([SOURCE_FILE, SOURCE_ROW]), path)
        for name in (SOURCE_FILE, SOURCE_ROW):
            rows = rows.set_column(rows.schema.get_field_index(name), name, table.column(name))
        batches = rows.combine_chunks().to_batches()
        batch = batches[0] if batches else pa.RecordBatch.from_pylist([], schema=rows.schema)
    return apply_quality_cuts(batch, min_epochs)


# --- Whole tables of cut rows (for an engine that holds Arrow tables, as Dask does) ---
def counts_of_cut(cut: pa.Table) -> list[dict]:
    """Rows and epochs of a cut table by reject reason (None for kept rows)."""
    counted = CUT_COUNTS[1:]
    grouped = cut.group_by(REJECT_REASON).aggregate(
        [([], "count_all"), *[(c, "sum") for c in counted]]
    )
    return [
        {"rows": row["count_all"], **{c: row[f"{c}_sum"] for c in counted}}
        | {REJECT_REASON: row[REJECT_REASON]}
        for row in grouped.to_pylist()
    ]


def rejected_table(cut: pa.Table) -> pa.Table:
    """The rejected rows, without light curves."""
    return cut.filter(pc.is_valid(cut.column(REJECT_REASON))).drop_columns([LIGHTCURVE])


def kept_table(cut: pa.Table, columns=KEPT_COLUMNS) -> pa.Table:
    """The kept rows' ``columns`` (default: carried columns and the light curve)."""
    return cut.filter(pc.is_null(cut.column(REJECT_REASON))).select(list(columns))


def kept_objectids(cut: pa.Table) -> np.ndarray:
    """Objectids of the kept rows."""
    return kept_table(cut, [DRColumn.OBJECTID]).column(0).to_numpy()


def rows_of_objects(cut: pa.Table, objectids: np.ndarray) -> pa.Table:
    """(objectid, source_file, source_row) of the kept rows of these objectids."""
    kept = kept_table(cut, ROW_ORIGIN_COLUMNS)
    return kept.filter(pc.is_in(kept.column(DRColumn.OBJECTID), pa.array(objectids)))


def table_without_repeats(cut: pa.Table, first_of) -> pa.Table:
    """:func:`reject_repeated_objects` on a table."""
    batches = [reject_repeated_objects(b, first_of) for b in cut.combine_chunks().to_batches()]
    return pa.Table.from_batches(batches, cut.schema)
