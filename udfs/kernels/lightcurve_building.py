"""Assemble per-object light curves from associated detections (Arrow and numpy, no Spark).

Input: one row per detection with its object id. Output: one row per object, its epochs sorted
by time as a struct of lists (the nested layout lsdb loads lazily). A detection that repeats one
already kept (the same detid, or the same object, band, time and magnitude) is returned as a
duplicate, not dropped.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from catalogs.healpix import healpix_29
from catalogs.schema import (
    BAND_NAMES,
    DEC,
    HEALPIX_COLUMN,
    INGEST_LIGHTCURVE_STRUCT,
    LIGHTCURVE,
    N_EPOCHS,
    RA,
    SOURCE_IDS,
    DetColumn,
    n_epochs_column,
)
from udfs.kernels.association import mean_positions

OBJECTID = "objectid"
HMJD = "hmjd"

#: Columns :func:`build_lightcurves` needs.
BUILD_INPUT_COLUMNS = (OBJECTID, DetColumn.DETID, DetColumn.RA, DetColumn.DEC, HMJD,
                       DetColumn.BAND, DetColumn.MAG, DetColumn.MAGERR, DetColumn.FLAGS,
                       SOURCE_IDS)  # fmt: skip

#: Arrow schema of the light-curve catalog rows.
LIGHTCURVE_CATALOG_SCHEMA = pa.schema(
    [
        pa.field(OBJECTID, pa.int64()),
        pa.field(RA, pa.float64()),
        pa.field(DEC, pa.float64()),
        pa.field(HEALPIX_COLUMN, pa.int64()),
        pa.field(N_EPOCHS, pa.int32()),
        *[pa.field(n_epochs_column(b), pa.int32()) for b in BAND_NAMES],
        pa.field(SOURCE_IDS, pa.list_(pa.int64())),
        pa.field(LIGHTCURVE, INGEST_LIGHTCURVE_STRUCT),
    ]
)


def _lists(offsets: np.ndarray, values: np.ndarray, dtype: pa.DataType) -> pa.ListArray:
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(values, dtype))


#: The duplicates :func:`build_lightcurves` leaves out.
DUPLICATES_SCHEMA = pa.schema(
    [pa.field(OBJECTID, pa.int64()), pa.field(DetColumn.DETID, pa.int64())]
)


def build_lightcurves(detections: pa.Table) -> tuple[pa.Table, pa.Table]:
    """One light-curve row per object, and the duplicate epochs left out.

    Parameters
    ----------
    detections : pyarrow.Table
        Columns :data:`BUILD_INPUT_COLUMNS`: objectid (int64), detid (int64), ra, dec (degrees),
        hmjd (float64 days), band (int8 channel), mag, magerr (mag), flags, and source_ids
        (int64: the reference or DR source each detection was matched through, or null).

    Returns
    -------
    (pyarrow.Table, pyarrow.Table)
        Rows of :data:`LIGHTCURVE_CATALOG_SCHEMA` sorted by objectid (ra, dec are the mean of the
        kept detections), and the (objectid, detid) of the duplicates left out
        (:data:`DUPLICATES_SCHEMA`).
    """
    table, duplicate_rows = build_lightcurves_and_duplicate_rows(detections)
    duplicates = detections.select([OBJECTID, DetColumn.DETID]).take(pa.array(duplicate_rows))
    return table, pa.Table.from_arrays(duplicates.columns, schema=DUPLICATES_SCHEMA)


def build_lightcurves_and_duplicate_rows(
    detections: pa.Table, positions: bool = True
) -> tuple[pa.Table, np.ndarray]:
    """:func:`build_lightcurves`, with the duplicates as the indices of their rows (int64).

    ``positions=False`` leaves ra, dec, `_healpix_29` and source_ids null, for a caller that
    gives the objects their reference positions (the mean of every detection is then not paid
    for).
    """
    if detections.num_rows == 0:
        return LIGHTCURVE_CATALOG_SCHEMA.empty_table(), np.empty(0, dtype=np.int64)
    columns: dict[str, np.ndarray] = {}

    def col(name, dtype):
        if name not in columns:
            columns[name] = (
                detections.column(name).to_numpy(zero_copy_only=False).astype(dtype, copy=False)
            )
        return columns[name]

    keep, duplicate_rows = _epochs_and_duplicates(
        col(OBJECTID, np.int64),
        col(DetColumn.DETID, np.int64),
        col(HMJD, np.float64),
        col(DetColumn.BAND, np.int8),
        col(DetColumn.MAG, np.float32),
    )
    obj = col(OBJECTID, np.int64)[keep]
    objects, counts = np.unique(obj, return_counts=True)
    offsets = np.zeros(objects.size + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    kept_band = col(DetColumn.BAND, np.int8)[keep]
    owner_of_epoch = np.repeat(np.arange(objects.size), counts)
    per_band = {
        n_epochs_column(name): np.bincount(
            owner_of_epoch[kept_band == c], minlength=objects.size
        ).astype(np.int32)
        for c, name in enumerate(BAND_NAMES)
    }
    if not positions:
        position_columns = [
            pa.nulls(objects.size, LIGHTCURVE_CATALOG_SCHEMA.field(name).type)
            for name in (RA, DEC, HEALPIX_COLUMN, SOURCE_IDS)
        ]
        return _catalog_rows(
            objects, offsets, counts, keep, kept_band, per_band, position_columns, col
        ), duplicate_rows

    ra, dec = col(DetColumn.RA, np.float64)[keep], col(DetColumn.DEC, np.float64)[keep]
    _, mean_ra, mean_dec = mean_positions(obj, ra, dec)
    # Distinct non-null source ids per object, without a Python loop over objects.
    sources = detections.column(SOURCE_IDS).take(pa.array(keep))
    valid = pc.is_valid(sources).to_numpy(zero_copy_only=False)
    owner = owner_of_epoch[valid]
    src = pc.fill_null(sources, 0).to_numpy(zero_copy_only=False).astype(np.int64)[valid]
    pair_order = np.lexsort((src, owner))
    owner, src = owner[pair_order], src[pair_order]
    distinct = np.ones(owner.size, dtype=bool)
    distinct[1:] = (owner[1:] != owner[:-1]) | (src[1:] != src[:-1])
    owner, src = owner[distinct], src[distinct]
    source_offsets = np.zeros(objects.size + 1, dtype=np.int64)
    np.cumsum(np.bincount(owner, minlength=objects.size), out=source_offsets[1:])
    source_ids = _lists(source_offsets, src, pa.int64())

    position_columns = [
        pa.array(mean_ra),
        pa.array(mean_dec),
        pa.array(healpix_29(mean_ra, mean_dec)),
        source_ids,
    ]
    return _catalog_rows(
        objects, offsets, counts, keep, kept_band, per_band, position_columns, col
    ), duplicate_rows


def _catalog_rows(objects, offsets, counts, keep, kept_band, per_band, position_columns, col):
    """:data:`LIGHTCURVE_CATALOG_SCHEMA` rows; ``position_columns`` are ra, dec, hp, source_ids."""
    lightcurve = pa.StructArray.from_arrays(
        [
            _lists(offsets, col(HMJD, np.float64)[keep], pa.float64()),
            _lists(offsets, col(DetColumn.MAG, np.float32)[keep], pa.float32()),
            _lists(offsets, col(DetColumn.MAGERR, np.float32)[keep], pa.float32()),
            _lists(offsets, kept_band, pa.int8()),
            _lists(offsets, col(DetColumn.FLAGS, np.int32)[keep], pa.int32()),
            _lists(offsets, col(DetColumn.DETID, np.int64)[keep], pa.int64()),
        ],
        fields=list(INGEST_LIGHTCURVE_STRUCT),
    )
    ra, dec, hp, source_ids = position_columns
    return pa.Table.from_arrays(
        [
            pa.array(objects),
            ra,
            dec,
            hp,
            pa.array(counts.astype(np.int32)),
            *[pa.array(v) for v in per_band.values()],
            source_ids,
            lightcurve,
        ],
        schema=LIGHTCURVE_CATALOG_SCHEMA,
    )


def _epochs_and_duplicates(
    obj: np.ndarray, detid: np.ndarray, t: np.ndarray, band: np.ndarray, mag: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Rows kept, sorted by (object, time, detid), and the duplicate rows.

    A duplicate is the same detid again, or an exact repeat of a measurement (same object,
    band, time and mag). Of each set of repeats the first in (object, band, time, mag, detid,
    row) order is kept. Distinct measurements at one time stay: float32 copies of DR files round
    epochs minutes apart to the same time. Duplicates come in that order too.
    """
    if pc.count_distinct(pa.array(detid)).as_py() != detid.size:
        return _epochs_and_duplicates_general(obj, detid, t, band, mag)
    # Every detid once: one sort; a repeated measurement shares its (object, time) run.
    order = np.lexsort((detid, t, obj))
    o, tt = obj[order], t[order]
    same_run = (o[1:] == o[:-1]) & (tt[1:] == tt[:-1])
    duplicate = np.zeros(order.size, dtype=bool)
    if same_run.any():
        # The few rows of runs of two or more: compare their (band, mag) within the run.
        in_run = np.zeros(order.size, dtype=bool)
        in_run[1:] |= same_run
        in_run[:-1] |= same_run
        rows = np.flatnonzero(in_run)
        run = np.cumsum(np.concatenate([[True], ~same_run]))[rows]
        at = order[rows]
        sub = np.lexsort((detid[at], mag[at], band[at], run))
        r, b, m = run[sub], band[at][sub], mag[at][sub]
        repeat = np.zeros(rows.size, dtype=bool)
        repeat[1:] = (r[1:] == r[:-1]) & (b[1:] == b[:-1]) & (m[1:] == m[:-1])
        duplicate[rows[sub[repeat]]] = True
    duplicate_rows = order[duplicate]
    if duplicate_rows.size:
        duplicate_rows = duplicate_rows[
            np.lexsort(tuple(a[duplicate_rows] for a in (detid, mag, t, band, obj)))
        ]
    return order[~duplicate], duplicate_rows.astype(np.int64)


def _epochs_and_duplicates_general(obj, detid, t, band, mag) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_epochs_and_duplicates` for any detids (some repeated)."""
    order = np.lexsort((detid, mag, t, band, obj))
    o, d, tt, b, m = obj[order], detid[order], t[order], band[order], mag[order]
    repeat_epoch = np.zeros(o.size, dtype=bool)
    repeat_epoch[1:] = (
        (o[1:] == o[:-1]) & (b[1:] == b[:-1]) & (tt[1:] == tt[:-1]) & (m[1:] == m[:-1])
    )
    _, first_of_detid = np.unique(d, return_index=True)
    repeat_detid = np.ones(o.size, dtype=bool)
    repeat_detid[first_of_detid] = False
    duplicate = repeat_epoch | repeat_detid
    keep = order[~duplicate]
    keep = keep[np.lexsort((detid[keep], t[keep], obj[keep]))]
    return keep, order[duplicate].astype(np.int64)
