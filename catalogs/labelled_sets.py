"""Real labelled light-curve sets: a long detection table and a label table per set.

The layout of ``data/real_labelled`` (see its README): for a set ``NAME``,
``NAME_detections.parquet`` (objectid string, ra, dec degrees, mjd float64 days, band, mag,
magerr) and ``NAME_labels.parquet`` (objectid, objectid_int int64, label_orig, classes: the
acceptable classes of varsky's taxonomy joined with ``|``). :func:`read_labelled_set` turns a set
into one row per object with a ``lightcurve`` struct of lists (epochs in time order, bands mapped
onto channels by a :class:`catalogs.band_map.BandMap`), ready for model inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from catalogs.band_map import DROPPED_CHANNEL, BandMap
from catalogs.errors import InputError
from catalogs.schema import DEC, LIGHTCURVE, LIGHTCURVE_STRUCT, RA, DRColumn

#: Columns of a label table.
LABEL_OBJECTID = "objectid"
LABEL_OBJECTID_INT = "objectid_int"
LABEL_ORIG = "label_orig"
CLASSES = "classes"
#: Separator of the acceptable classes in ``classes``.
CLASS_SEPARATOR = "|"
#: Columns of :func:`read_labelled_set` besides the light curve.
SET_NAME = "set_name"
N_EPOCHS = "n_epochs"

_DETECTION_COLUMNS = ("objectid", "ra", "dec", "mjd", "band", "mag", "magerr")


@dataclass(frozen=True)
class LabelledSetFiles:
    """The two files of a set."""

    name: str
    detections: Path
    labels: Path

    @classmethod
    def from_prefix(cls, prefix: str | Path) -> LabelledSetFiles:
        """``DIR/NAME`` -> ``DIR/NAME_detections.parquet`` and ``DIR/NAME_labels.parquet``."""
        prefix = Path(prefix)
        files = cls(
            prefix.name,
            prefix.with_name(f"{prefix.name}_detections.parquet"),
            prefix.with_name(f"{prefix.name}_labels.parquet"),
        )
        for path in (files.detections, files.labels):
            if not path.is_file():
                raise InputError(str(path), "no such file (a labelled set is DIR/NAME for "
                                 "NAME_detections.parquet and NAME_labels.parquet)")  # fmt: skip
        return files


def read_labelled_set(prefix: str | Path, band_map: BandMap | None = None) -> pa.Table:
    """One row per labelled object of a set, with its light curve.

    Parameters
    ----------
    prefix : str or Path
        ``DIR/NAME`` of the set's two files.
    band_map : BandMap, optional
        Maps the detections' band names onto channels (an unmapped band is an InputError).

    Returns
    -------
    pyarrow.Table
        ``objectid`` (int64, the label table's objectid_int), ``classes``, ``label_orig``,
        ``set_name``, ``ra``, ``dec`` (degrees), ``n_epochs`` and ``lightcurve``
        (:data:`catalogs.schema.LIGHTCURVE_STRUCT`: hmjd float64 days as given, mag, magerr,
        band channel; epochs in time order, dropped bands left out). Objects without
        detections have an empty light curve. Sorted by objectid.
    """
    files = LabelledSetFiles.from_prefix(prefix)
    labels = pq.read_table(files.labels)
    for column in (LABEL_OBJECTID, LABEL_OBJECTID_INT, CLASSES):
        if column not in labels.column_names:
            raise InputError(str(files.labels), "required column is missing", column=column)
    dets = pq.read_table(files.detections)
    for column in _DETECTION_COLUMNS:
        if column not in dets.column_names:
            raise InputError(str(files.detections), "required column is missing", column=column)
    channel = (band_map or BandMap()).channels(
        dets.column("band").to_numpy(zero_copy_only=False), str(files.detections)
    )
    keep = channel != DROPPED_CHANNEL
    label_ids = labels.column(LABEL_OBJECTID).to_numpy(zero_copy_only=False).astype(str)
    index = pc.index_in(dets.column("objectid").cast(pa.string()), pa.array(label_ids, pa.string()))
    if index.null_count:
        row = int(np.flatnonzero(index.is_null().to_numpy(zero_copy_only=False))[0])
        raise InputError(str(files.detections), "objectid not in the label table", "objectid", row)
    obj = index.to_numpy(zero_copy_only=False)[keep]
    t = dets.column("mjd").to_numpy().astype(np.float64)[keep]
    order = np.lexsort((t, obj))
    obj, t = obj[order], t[order]
    mag = dets.column("mag").to_numpy().astype(np.float32)[keep][order]
    magerr = dets.column("magerr").to_numpy().astype(np.float32)[keep][order]
    band = channel[keep][order].astype(np.int8)
    counts = np.bincount(obj, minlength=labels.num_rows)
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))

    def lists(values: np.ndarray) -> pa.ListArray:
        return pa.ListArray.from_arrays(offsets, pa.array(values))

    lightcurve = pa.StructArray.from_arrays(
        [lists(t), lists(mag), lists(magerr), lists(band)], fields=list(LIGHTCURVE_STRUCT)
    )
    # Position: mean of the object's detections (the label tables carry none).
    ra_all = dets.column("ra").to_numpy()[keep][order]
    dec_all = dets.column("dec").to_numpy()[keep][order]
    with np.errstate(invalid="ignore", divide="ignore"):
        ra = np.bincount(obj, ra_all, labels.num_rows) / counts
        dec = np.bincount(obj, dec_all, labels.num_rows) / counts
    table = pa.table(
        {
            DRColumn.OBJECTID: labels.column(LABEL_OBJECTID_INT).cast(pa.int64()),
            CLASSES: labels.column(CLASSES).cast(pa.string()),
            LABEL_ORIG: labels.column(LABEL_ORIG).cast(pa.string())
            if LABEL_ORIG in labels.column_names
            else pa.nulls(labels.num_rows, pa.string()),
            SET_NAME: pa.array([files.name] * labels.num_rows, pa.string()),
            RA: ra,
            DEC: dec,
            N_EPOCHS: counts.astype(np.int32),
            LIGHTCURVE: lightcurve,
        }
    )
    return table.sort_by(DRColumn.OBJECTID)
