"""Every ingest input as one long table of detections (Arrow), with quality reasons.

psfcat rows, DR light-curve epochs and generic detections all become rows of
:data:`INGEST_DETECTION_SCHEMA`. A row with a ``reject_reason`` goes to the rejects table; the
others are associated into objects. ``catalog`` names the catalog a row comes from (the exposure
for psfcat and generic detections, the field-quadrant-filter file for DR epochs): two rows of one
catalog never belong to the same object.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from catalogs.band_map import DROPPED_CHANNEL, BandMap
from catalogs.errors import InputError
from catalogs.healpix import healpix_29
from catalogs.schema import (
    CATFLAGS_GOOD,
    HEALPIX_COLUMN,
    REJECT_REASON,
    Band,
    DetColumn,
    DetectionRejectReason,
    DRColumn,
)
from catalogs.time_scales import heliocentric_mjd

SOURCE_ID = "source_id"  # int64, nullable: the DR objectid of an epoch, or a reference id
CATALOG = "catalog"  # int64
HMJD = "hmjd"  # float64 days, heliocentric where the input allows
#: Bits for the epoch index in the detid of a DR epoch: detid = (objectid << 12) | epoch.
DR_EPOCH_BITS = 12

INGEST_DETECTION_SCHEMA = pa.schema(
    [
        pa.field(DetColumn.DETID, pa.int64()),
        pa.field(DetColumn.OBJECTID, pa.int64()),
        pa.field(SOURCE_ID, pa.int64()),
        pa.field(CATALOG, pa.int64()),
        pa.field(DetColumn.RA, pa.float64()),
        pa.field(DetColumn.DEC, pa.float64()),
        pa.field(HEALPIX_COLUMN, pa.int64()),
        pa.field(HMJD, pa.float64()),
        pa.field(DetColumn.BAND, pa.int8()),
        pa.field(DetColumn.MAG, pa.float32()),
        pa.field(DetColumn.MAGERR, pa.float32()),
        pa.field(DetColumn.FLAGS, pa.int32()),
        pa.field(DetColumn.SOURCE_FILE, pa.string()),
        pa.field(DetColumn.SOURCE_ROW, pa.int64()),
        pa.field(REJECT_REASON, pa.string()),
    ]
)

#: Sources to group into objects (reference sources, DR objectids): one row each.
_SOURCE_COLUMNS = (SOURCE_ID, CATALOG, DetColumn.RA, DetColumn.DEC, HEALPIX_COLUMN)
SOURCE_SCHEMA = pa.schema([INGEST_DETECTION_SCHEMA.field(c) for c in _SOURCE_COLUMNS])


#: Reject reasons by code (int8; -1 is kept), in the order later checks override earlier ones.
_REASONS = (
    DetectionRejectReason.FLAGGED,
    DetectionRejectReason.BAD_BAND,
    DetectionRejectReason.BAND_DROPPED,
    DetectionRejectReason.NONFINITE,
    DetectionRejectReason.NEGATIVE_DIFFERENCE,
    DetectionRejectReason.NON_DETECTION,
    "array_length_mismatch",
)
_CODE = {reason: code for code, reason in enumerate(_REASONS)}
_REASON_STRINGS = pa.array(_REASONS)


def _reasons(
    flagged: np.ndarray, finite: np.ndarray, band_ok: np.ndarray, dropped: np.ndarray | None = None
) -> np.ndarray:
    """Each row's reject-reason code (-1: kept); :func:`_reason_strings` names them."""
    code = np.full(flagged.size, -1, dtype=np.int8)
    code[flagged] = _CODE[DetectionRejectReason.FLAGGED]
    code[~band_ok] = _CODE[DetectionRejectReason.BAD_BAND]
    if dropped is not None:
        code[dropped] = _CODE[DetectionRejectReason.BAND_DROPPED]
    code[~finite] = _CODE[DetectionRejectReason.NONFINITE]
    return code


def _reason_strings(code: np.ndarray) -> pa.Array:
    # Taking from the reasons (a null index gives null) makes no Python object per row.
    return _REASON_STRINGS.take(pa.array(code, mask=code < 0))


def _table(columns: dict) -> pa.Table:
    arrays = [
        c if isinstance(c := columns[f.name], pa.Array | pa.ChunkedArray) and c.type == f.type
        else pa.array(c, f.type)
        for f in INGEST_DETECTION_SCHEMA
    ]  # fmt: skip
    return pa.Table.from_arrays(arrays, schema=INGEST_DETECTION_SCHEMA)


def _finite(ra: np.ndarray, dec: np.ndarray, *values: np.ndarray) -> np.ndarray:
    """Where the position is finite with |dec| <= 90 deg and every one of ``values`` is finite."""
    ok = np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= 90)
    for value in values:
        ok &= np.isfinite(value)
    return ok


def _numpy(column: pa.ChunkedArray | pa.Array, dtype: type) -> np.ndarray:
    return column.to_numpy(zero_copy_only=False).astype(dtype, copy=False)


def _healpix(ra: np.ndarray, dec: np.ndarray, finite: np.ndarray) -> np.ndarray:
    hp = np.zeros(ra.size, dtype=np.int64)
    hp[finite] = healpix_29(ra[finite], dec[finite])
    return hp


def from_psfcat(table: pa.Table) -> pa.Table:
    """Detections of a science psfcat table (:func:`catalogs.ztf_psfcat.read_psfcat`).

    Times become heliocentric MJD of each detection's position; the catalog is the exposure
    (the PID part of the detid). Flagged: psfcat flags != 0 or the exposure's INFOBITS != 0.
    """
    from catalogs.ztf_psfcat import psfcat_quality

    def col(name, dtype):
        return _numpy(table.column(name), dtype)

    detid = col(DetColumn.DETID, np.int64)
    ra, dec = col(DetColumn.RA, np.float64), col(DetColumn.DEC, np.float64)
    mjd = col(DetColumn.MJD, np.float64)
    mag, magerr = col(DetColumn.MAG, np.float64), col(DetColumn.MAGERR, np.float64)
    band = col(DetColumn.BAND, np.int64)
    finite = _finite(ra, dec, mjd, mag, magerr)
    good = psfcat_quality(col(DetColumn.FLAGS, np.int64), col("infobits", np.int64))
    band_ok = (band >= 0) & (band < len(Band))
    hmjd = np.where(
        finite, heliocentric_mjd(mjd, np.where(finite, ra, 0), np.where(finite, dec, 0)), mjd
    )
    return _table(
        {
            DetColumn.DETID: detid,
            DetColumn.OBJECTID: pa.nulls(table.num_rows, pa.int64()),
            SOURCE_ID: pa.nulls(table.num_rows, pa.int64()),
            CATALOG: detid >> 20,
            DetColumn.RA: ra,
            DetColumn.DEC: dec,
            HEALPIX_COLUMN: _healpix(ra, dec, finite),
            HMJD: hmjd,
            DetColumn.BAND: band.astype(np.int8),
            DetColumn.MAG: mag.astype(np.float32),
            DetColumn.MAGERR: magerr.astype(np.float32),
            DetColumn.FLAGS: col(DetColumn.FLAGS, np.int32),
            DetColumn.SOURCE_FILE: table.column(DetColumn.SOURCE_FILE),
            DetColumn.SOURCE_ROW: col(DetColumn.SOURCE_ROW, np.int64),
            REJECT_REASON: _reason_strings(_reasons(~good, finite, band_ok)),
        }
    )


#: A non-detection's detid: -(round(mjd / _LIMIT_TIME_STEP) * 4 + fid), negative, so never a candid.
_LIMIT_TIME_STEP = 1e-6


def from_alerts(table: pa.Table, path: str) -> pa.Table:
    """Detections of ZTF alert packets (:func:`catalogs.ztf_alerts.read_alert_file` rows).

    detid is the alert's candid; a non-detection gets a negative one from its time and band, so
    that the same epoch repeated by a later packet has the same detid. The objectid is the ZTF
    name's (:func:`catalogs.ztf_alerts.ztf_name_to_objectid`). Times become heliocentric MJD.
    Magnitudes are the difference image's (magpsf, sigmapsf). Rejected: non-detections (mag then
    holds diffmaglim, magerr is NaN) and detections fainter than the reference (isdiffpos false),
    whose magnitude is of a negative flux and cannot join a magnitude light curve.
    """
    from catalogs.ztf_alerts import objectids

    n = table.num_rows
    objectid = objectids(table.column("objectId"), path)
    candid = table.column("candid")
    detected = _numpy(pc.is_valid(candid), bool)
    ra, dec = _numpy(table.column("ra"), np.float64), _numpy(table.column("dec"), np.float64)
    mjd = _numpy(table.column("jd"), np.float64) - 2_400_000.5
    fid = _numpy(pc.fill_null(table.column("fid"), 0), np.int64)
    mag = np.where(
        detected,
        _numpy(table.column("magpsf"), np.float64),
        _numpy(table.column("diffmaglim"), np.float64),
    )
    magerr = np.where(detected, _numpy(table.column("sigmapsf"), np.float64), np.nan)
    finite = _finite(ra, dec, mjd, mag) & (~detected | np.isfinite(magerr))
    band = fid - 1
    band_ok = (band >= 0) & (band < len(Band))
    limit_id = -(np.round(np.where(finite, mjd, 0) / _LIMIT_TIME_STEP).astype(np.int64) * 4 + fid)
    detid = np.where(detected, _numpy(pc.fill_null(candid, 0), np.int64), limit_id)
    negative = detected & ~_numpy(pc.fill_null(table.column("isdiffpos"), True), bool)
    hmjd = np.where(
        finite, heliocentric_mjd(mjd, np.where(finite, ra, 0), np.where(finite, dec, 0)), mjd
    )
    reason = _reasons(np.zeros(n, bool), finite, band_ok)
    reason[(reason < 0) & negative] = _CODE[DetectionRejectReason.NEGATIVE_DIFFERENCE]
    reason[(reason < 0) & ~detected] = _CODE[DetectionRejectReason.NON_DETECTION]
    flags = np.zeros(n, np.int32)
    return _file_rows(
        path, detid, objectid, ra, dec, mjd, hmjd, band, band_ok, mag, magerr, flags, finite, reason
    )


def _file_rows(
    path, detid, objectid, ra, dec, mjd, hmjd, band, band_ok, mag, magerr, flags, finite, reason
) -> pa.Table:
    """Detections of one input file, row by row; the catalog of a detection is its exposure time."""
    n = len(detid)
    return _table(
        {
            DetColumn.DETID: detid,
            DetColumn.OBJECTID: objectid,
            SOURCE_ID: objectid,
            CATALOG: np.where(finite, mjd, 0).view(np.int64),
            DetColumn.RA: ra,
            DetColumn.DEC: dec,
            HEALPIX_COLUMN: _healpix(ra, dec, finite),
            HMJD: hmjd,
            DetColumn.BAND: np.where(band_ok, band, -1).astype(np.int8),
            DetColumn.MAG: mag.astype(np.float32),
            DetColumn.MAGERR: magerr.astype(np.float32),
            DetColumn.FLAGS: flags.astype(np.int32),
            DetColumn.SOURCE_FILE: pa.array([path] * n, pa.string()),
            DetColumn.SOURCE_ROW: np.arange(n, dtype=np.int64),
            REJECT_REASON: _reason_strings(reason),
        }
    )


def sources_from_refpsfcat(table: pa.Table) -> pa.Table:
    """Reference sources (:func:`catalogs.ztf_psfcat.read_refpsfcat`) to group into objects."""
    ref = _numpy(table.column("refid"), np.int64)
    ra = _numpy(table.column(DetColumn.RA), np.float64)
    dec = _numpy(table.column(DetColumn.DEC), np.float64)
    finite = _finite(ra, dec)
    return pa.Table.from_arrays(
        [
            pa.array(ref[finite]),
            pa.array(ref[finite] >> 20),
            pa.array(ra[finite]),
            pa.array(dec[finite]),
            pa.array(healpix_29(ra[finite], dec[finite])),
        ],
        schema=SOURCE_SCHEMA,
    )


def dr_catalog_key(fieldid: np.ndarray, rcid: np.ndarray, filterid: np.ndarray) -> np.ndarray:
    """One int64 per DR field-quadrant-filter file."""
    return (fieldid.astype(np.int64) * 100 + rcid.astype(np.int64)) * 10 + filterid.astype(np.int64)


def from_dr_rows(batch: pa.RecordBatch | pa.Table) -> pa.Table:
    """Epochs of DR light-curve rows (columns as read by catalogs.dr_lightcurves), one per row.

    Each epoch keeps its row's objectid as source_id and position; hmjd is already heliocentric.
    A row whose lists differ in length gives one rejected epoch per hmjd value.
    """
    col = batch.column
    n_rows = batch.num_rows
    objectid = _numpy(col(DRColumn.OBJECTID), np.int64)
    filterid = pc.fill_null(col(DRColumn.FILTERID), 0).to_numpy(zero_copy_only=False)
    lengths = {}
    flat = {}
    for name in (DRColumn.HMJD, DRColumn.MAG, DRColumn.MAGERR, DRColumn.CATFLAGS):
        arr = col(name)
        lengths[name] = pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False)
        values = pc.list_flatten(arr)
        fill = -1 if pa.types.is_integer(values.type) else np.nan
        target = pa.int64() if pa.types.is_integer(values.type) else pa.float64()
        flat[name] = pc.fill_null(pc.cast(values, target), fill).to_numpy(zero_copy_only=False)
    n = lengths[DRColumn.HMJD]
    same = np.ones(n_rows, dtype=bool)
    for name in (DRColumn.MAG, DRColumn.MAGERR, DRColumn.CATFLAGS):
        same &= lengths[name] == n
    row = np.repeat(np.arange(n_rows), n)
    epoch = np.arange(row.size) - np.repeat(np.cumsum(n) - n, n)
    if np.any(epoch >= 1 << DR_EPOCH_BITS):
        raise InputError(
            str(col("source_file")[0]), f"more than {1 << DR_EPOCH_BITS} epochs in one row",
            column=DRColumn.HMJD,
        )  # fmt: skip

    def per_epoch(name):
        """Values of a list column, aligned with hmjd for rows whose lists agree."""
        values = np.full(row.size, np.nan if name != DRColumn.CATFLAGS else -1)
        ok_epochs = same[row]
        starts = np.cumsum(lengths[name]) - lengths[name]
        index = np.repeat(starts, n) + epoch
        values[ok_epochs] = flat[name][index[ok_epochs]]
        return values

    hmjd = flat[DRColumn.HMJD]
    mag, magerr, catflags = (
        per_epoch(c) for c in (DRColumn.MAG, DRColumn.MAGERR, DRColumn.CATFLAGS)
    )
    ra = _numpy(col(DRColumn.RA), np.float64)[row]
    dec = _numpy(col(DRColumn.DEC), np.float64)[row]
    band = filterid.astype(np.int64)[row] - 1
    finite = _finite(ra, dec, hmjd, mag, magerr)
    reason = _reasons(catflags != CATFLAGS_GOOD, finite, (band >= 0) & (band < len(Band)))
    reason[~same[row]] = _CODE["array_length_mismatch"]
    catalog = dr_catalog_key(
        pc.fill_null(col(DRColumn.FIELDID), 0).to_numpy(zero_copy_only=False),
        pc.fill_null(col(DRColumn.RCID), 0).to_numpy(zero_copy_only=False),
        filterid,
    )[row]
    return _table(
        {
            DetColumn.DETID: (objectid[row] << DR_EPOCH_BITS) | epoch,
            DetColumn.OBJECTID: pa.nulls(row.size, pa.int64()),
            SOURCE_ID: objectid[row],
            CATALOG: catalog,
            DetColumn.RA: ra,
            DetColumn.DEC: dec,
            HEALPIX_COLUMN: _healpix(ra, dec, _finite(ra, dec)),
            HMJD: hmjd,
            DetColumn.BAND: np.where(band >= 0, band, -1).astype(np.int8),
            DetColumn.MAG: mag.astype(np.float32),
            DetColumn.MAGERR: magerr.astype(np.float32),
            DetColumn.FLAGS: catflags.astype(np.int32),
            DetColumn.SOURCE_FILE: pc.take(col("source_file"), pa.array(row)),
            DetColumn.SOURCE_ROW: col("source_row").to_numpy(zero_copy_only=False)[row],
            REJECT_REASON: _reason_strings(reason),
        }
    )


#: Generic long-format detections: required columns; objectid and flags are optional.
GENERIC_REQUIRED = ("ra", "dec", "mjd", "band", "mag", "magerr")


def generic_band_channels(
    table: pa.Table, path: str, band_map: BandMap | None = None
) -> npt.NDArray[np.int64]:
    """Channel of each row of a generic table's ``band`` column.

    String bands go through ``band_map`` (an unmapped band is an :class:`InputError` naming the
    file, row and band; a dropped one is :data:`catalogs.band_map.DROPPED_CHANNEL`); integer bands
    are ZTF filterids 1/2/3 (others and nulls give -1, an ``unknown_band`` reject).
    """
    band_col = table.column("band")
    if pa.types.is_string(band_col.type) or pa.types.is_large_string(band_col.type):
        if band_col.null_count:
            row = int(np.flatnonzero(band_col.is_null().to_numpy(zero_copy_only=False))[0])
            raise InputError(path, "band is null", column="band", row=row)
        names = band_col.to_numpy(zero_copy_only=False)
        return (band_map or BandMap()).channels(names, path).astype(np.int64)
    return pc.fill_null(band_col, 0).to_numpy(zero_copy_only=False).astype(np.int64) - 1


def from_generic(
    table: pa.Table, path: str, file_index: int, band_map: BandMap | None = None
) -> pa.Table:
    """Detections of a generic long-format table.

    Columns ra, dec (degrees), mjd (days, taken as given, float64), band (a name mapped by
    ``band_map``, see :mod:`catalogs.band_map`, or the ZTF filterid 1/2/3), mag, magerr, and
    optionally flags and objectid. detid = (file_index << 40) | row. Without objectid, the catalog
    of a detection is its exposure time. Epochs of a dropped band are rejected
    (``band_dropped``).
    """
    for name in GENERIC_REQUIRED:
        if name not in table.column_names:
            raise InputError(
                path, f"required column is missing; need {list(GENERIC_REQUIRED)}", column=name
            )
    n = table.num_rows

    def col(name, dtype, fill=np.nan):
        return pc.fill_null(table.column(name), fill).to_numpy(zero_copy_only=False).astype(dtype)

    band = generic_band_channels(table, path, band_map)
    dropped = band == DROPPED_CHANNEL
    ra, dec, mjd = col("ra", np.float64), col("dec", np.float64), col("mjd", np.float64)
    mag, magerr = col("mag", np.float64), col("magerr", np.float64)
    flags = col("flags", np.int64, 0) if "flags" in table.column_names else np.zeros(n, np.int64)
    finite = _finite(ra, dec, mjd, mag, magerr)
    band_ok = (band >= 0) & (band < len(Band))
    objectid = (
        table.column("objectid").cast(pa.int64())
        if "objectid" in table.column_names
        else pa.nulls(n, pa.int64())
    )
    detid = (np.int64(file_index) << 40) | np.arange(n, dtype=np.int64)
    reason = _reasons(flags != 0, finite, band_ok | dropped, dropped)
    return _file_rows(
        path, detid, objectid, ra, dec, mjd, mjd, band, band_ok, mag, magerr, flags, finite, reason
    )
