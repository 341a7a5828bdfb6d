"""Classify a batch of light curves: dm-dt images, then the CNN, in one process (no Spark).

The Spark wrapper (:mod:`udfs.spark_inference`) calls :func:`classify_batch` on each Arrow batch
inside the Python worker, so images never travel through the JVM.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from catalogs.schema import (
    BAND,
    BAND_NAMES,
    DEC,
    HEALPIX_COLUMN,
    LIGHTCURVE,
    N_GOOD,
    PREDICTED_CLASS,
    PREDICTED_SCORE,
    RA,
    SOURCE_FILE,
    DRColumn,
    n_good_column,
    probability_column,
)
from udfs.dmdt import DmDtGrid, dmdt_images

#: Columns carried from the light-curve rows into the classification rows.
CARRIED_COLUMNS: tuple[str, ...] = (
    DRColumn.OBJECTID,
    RA,
    DEC,
    HEALPIX_COLUMN,
    N_GOOD,
    *[n_good_column(b) for b in BAND_NAMES],
    SOURCE_FILE,
)


def output_schema(classes: tuple[str, ...] | list[str], carried: pa.Schema) -> pa.Schema:
    """Arrow schema of :func:`classify_batch` output for a model's classes."""
    return pa.schema(
        [carried.field(c) for c in CARRIED_COLUMNS]
        + [pa.field(probability_column(c), pa.float32()) for c in classes]
        + [pa.field(PREDICTED_CLASS, pa.string()), pa.field(PREDICTED_SCORE, pa.float32())]
    )


@dataclass
class StageTimes:
    """Seconds spent in each step of :func:`classify_batch`, summed over calls."""

    images_s: float = 0.0
    predict_s: float = 0.0
    n_objects: int = 0


def flat_lightcurves(
    lightcurve: pa.Array,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Flat (t days float64, mag float64, channel int8, offsets int64) of a lightcurve column.

    Null light curves count as empty.
    """
    if isinstance(lightcurve, pa.ChunkedArray):
        lightcurve = lightcurve.combine_chunks()
    hmjd = lightcurve.field(DRColumn.HMJD)
    lengths = pc.fill_null(pc.list_value_length(hmjd), 0).to_numpy(zero_copy_only=False)
    offsets = np.zeros(len(hmjd) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])

    def values(name: str, dtype) -> np.ndarray:
        flat = pc.list_flatten(lightcurve.field(name))
        return flat.to_numpy(zero_copy_only=False).astype(dtype, copy=False)

    return (
        values(DRColumn.HMJD, np.float64),
        values(DRColumn.MAG, np.float64),
        values(BAND, np.int8),
        offsets,
    )


def classify_batch(
    batch: pa.RecordBatch,
    classifier,
    grid: DmDtGrid,
    norm: str = "mahabal",
    batch_size: int = 256,
    times: StageTimes | None = None,
) -> pa.RecordBatch:
    """Classify every light curve of a batch.

    Parameters
    ----------
    batch : pyarrow.RecordBatch
        Rows with the :data:`CARRIED_COLUMNS` and a ``lightcurve`` struct of lists
        (hmjd float64 days, mag, magerr, band channel int8).
    classifier : udfs.classifier.Classifier
        A loaded model; ``classifier.predict(images, batch_size)`` gives (n, n_classes).
    grid : DmDtGrid
        The grid the model was trained on.
    norm : str
        Image normalisation the model was trained with.
    batch_size : int
        Images per model call.
    times : StageTimes, optional
        Accumulates the seconds spent making images and predicting.

    Returns
    -------
    pyarrow.RecordBatch
        The carried columns, one float32 probability column per class, the predicted class and
        its score.
    """
    classes = list(classifier.classes)
    t0 = time.perf_counter()
    t_days, mag, channel, offsets = flat_lightcurves(batch.column(LIGHTCURVE))
    images = dmdt_images(t_days, mag, channel, offsets, grid, len(BAND_NAMES), norm=norm)
    t1 = time.perf_counter()
    probabilities = np.asarray(classifier.predict(images, batch_size=batch_size), np.float32)
    t2 = time.perf_counter()
    if times is not None:
        times.images_s += t1 - t0
        times.predict_s += t2 - t1
        times.n_objects += batch.num_rows
    best = probabilities.argmax(axis=1) if len(probabilities) else np.empty(0, dtype=np.int64)
    schema = output_schema(classes, batch.schema)
    arrays = [batch.column(c) for c in CARRIED_COLUMNS]
    arrays += [pa.array(probabilities[:, k]) for k in range(len(classes))]
    arrays.append(pa.array(np.asarray(classes, dtype=object)[best], pa.string()))
    arrays.append(pa.array(probabilities[np.arange(len(best)), best]))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
