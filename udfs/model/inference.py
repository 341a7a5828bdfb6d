"""Classify a batch of light curves: model inputs, then the network, in one process (no Spark).

The Spark wrapper (:mod:`udfs.engines.spark_inference`) calls :func:`classify_batch` on each Arrow
batch inside the Python worker, so images never travel through the JVM. The inputs (dm-dt images,
periodograms, summary features) are the ones the model's card names, made by
:func:`udfs.kernels.model_inputs.model_inputs`, as in training.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from catalogs.schema import (
    BAND_NAMES,
    CARRIED_COLUMNS,
    LIGHTCURVE,
    VariabilityClass,
    classification_schema,
)
from udfs.kernels.lightcurve_features import band_median_mags
from udfs.kernels.model_inputs import DMDT_INPUT, flat_lightcurves


def output_schema(classes: tuple[str, ...] | list[str], carried: pa.Schema) -> pa.Schema:
    """Arrow schema of :func:`classify_batch` output (no provenance columns yet)."""
    return classification_schema(classes, carried, provenance=False)


@dataclass
class StageTimes:
    """Seconds spent in each step of :func:`classify_batch`, summed over calls."""

    inputs_s: float = 0.0
    predict_s: float = 0.0
    n_objects: int = 0
    #: The variability stage: its seconds, and the objects it settled as constant.
    variability_s: float = 0.0
    n_settled: int = 0


def classify_batch(
    batch: pa.RecordBatch,
    classifier,
    batch_size: int = 256,
    times: StageTimes | None = None,
    stage=None,
) -> pa.RecordBatch:
    """Classify every light curve of a batch: the variability stage, then the network.

    Parameters
    ----------
    batch : pyarrow.RecordBatch
        Rows with the :data:`CARRIED_COLUMNS` and a ``lightcurve`` struct of lists
        (hmjd float64 days, mag, magerr, band channel int8).
    classifier : udfs.model.classifier.Classifier
        A loaded model and its card (which says what inputs to make).
    batch_size : int
        Objects per model call.
    times : StageTimes, optional
        Accumulates the seconds spent on the stage, the inputs and the network.
    stage : udfs.model.variability.VariabilityStage, optional
        Gives every object its ``p_variable``; when it ``settles``, objects below its threshold
        are written as constant (``p_constant = 1 - p_variable``, the other classes null) and
        skip the inputs and the network. Without it ``p_variable`` is null and every object
        goes to the network.

    Returns
    -------
    pyarrow.RecordBatch
        The carried columns, one float32 probability per class, the predicted class and its
        score, ``p_variable``, ``settled_as_constant``, ``p_transient`` (null without a transient
        head, and for settled objects) and ``median_mag_<band>``.
    """
    cnn_classes = list(classifier.classes)
    classes = list(classifier.output_classes)
    n = batch.num_rows
    t0 = time.perf_counter()
    flat = flat_lightcurves(batch.column(LIGHTCURVE))
    settled = np.zeros(n, bool)
    p_variable = None
    if stage is not None:
        p_variable = stage.p_variable(flat, len(classifier.card.bands)).astype(np.float32)
        if stage.settles:
            settled = p_variable < stage.threshold
    t1 = time.perf_counter()
    rest = np.flatnonzero(~settled)
    probabilities = np.full((n, len(classes)), np.nan, np.float32)
    p_transient = np.full(n, np.nan, np.float32)
    best = np.zeros(n, np.int64)
    t2 = t1
    if rest.size:
        candidates = flat if rest.size == n else flat.take(rest)
        inputs = classifier.card.model_inputs(candidates)
        t2 = time.perf_counter()
        predicted = np.asarray(classifier.predict(inputs, batch_size=batch_size), np.float32)
        if classifier.has_transients:
            from udfs.model.transients import combine, head_features, row_offsets

            p_head = classifier.predict_transients(head_features(candidates), batch_size)
            offsets = row_offsets(classifier.type_log_offsets, np.diff(candidates.offsets))
            predicted, p_transient[rest], best[rest] = combine(
                predicted, cnn_classes, p_head, offsets
            )
        else:
            best[rest] = predicted.argmax(axis=1)
        probabilities[rest] = predicted
    t3 = time.perf_counter()
    if settled.any():
        constant = classes.index(VariabilityClass.constant.value)
        probabilities[settled, constant] = 1.0 - p_variable[settled]
        best[settled] = constant
    if times is not None:
        times.variability_s += t1 - t0
        times.inputs_s += t2 - t1
        times.predict_s += t3 - t2
        times.n_objects += n
        times.n_settled += int(settled.sum())

    def nullable(column):  # float32, NaN as null
        return pa.array(column, pa.float32(), mask=np.isnan(column))

    schema = output_schema(classes, batch.schema)
    arrays = [batch.column(c) for c in CARRIED_COLUMNS]
    arrays += [nullable(probabilities[:, k]) for k in range(len(classes))]
    arrays.append(pa.array(np.asarray(classes, dtype=object)[best], pa.string()))
    arrays.append(pa.array(probabilities[np.arange(n), best], pa.float32()))
    arrays.append(
        pa.nulls(n, pa.float32()) if p_variable is None else pa.array(p_variable, pa.float32())
    )
    arrays.append(pa.array(settled, pa.bool_()))
    arrays.append(nullable(p_transient))
    medians = band_median_mags(flat.mag, flat.channel, flat.offsets, len(BAND_NAMES))
    arrays += [nullable(medians[:, k].astype(np.float32)) for k in range(len(BAND_NAMES))]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def model_input_schema(card, carried: pa.Schema) -> pa.Schema:
    """Arrow schema of :func:`model_input_batch` output: the carried columns, then each input.

    A dm-dt image is one binary value (uint8, C order); the other inputs are float32 lists.
    (Variable-size types: Spark has no fixed-size ones.)
    """
    fields = list(carried)
    for name in card.input_shapes:
        kind = pa.binary() if name == DMDT_INPUT else pa.list_(pa.float32())
        fields.append(pa.field(name, kind))
    return pa.schema(fields)


def model_input_batch(
    batch: pa.RecordBatch, card, carried: tuple[str, ...], seconds: dict[str, float] | None = None
) -> pa.RecordBatch:
    """The model inputs of every light curve of a batch, as Arrow columns (for training sets).

    Parameters
    ----------
    batch : pyarrow.RecordBatch
        Rows with the ``carried`` columns and a ``lightcurve`` struct of lists.
    card : udfs.model.classifier.ModelCard
        Says which inputs to make.
    carried : tuple of str
        Columns copied through (an object id, a label).
    seconds : dict, optional
        Receives the seconds spent on each input.
    """
    inputs = card.model_inputs(flat_lightcurves(batch.column(LIGHTCURVE)), seconds)
    schema = model_input_schema(card, pa.schema([batch.schema.field(c) for c in carried]))
    arrays = [batch.column(c) for c in carried]
    for name in card.input_shapes:
        values = np.ascontiguousarray(inputs[name])
        n = values.shape[0]
        size = int(np.prod(values.shape[1:]))
        offsets = np.arange(n + 1, dtype=np.int32) * size
        if name == DMDT_INPUT:
            buffers = [None, pa.py_buffer(offsets.tobytes()), pa.py_buffer(values.tobytes())]
            arrays.append(pa.BinaryArray.from_buffers(pa.binary(), n, buffers))
        else:
            flat = pa.array(values.astype(np.float32).reshape(-1))
            arrays.append(pa.ListArray.from_arrays(pa.array(offsets), flat))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def model_input_arrays(table: pa.Table, card) -> dict[str, np.ndarray]:
    """Inverse of :func:`model_input_batch`: numpy arrays of each input, by input name."""
    out: dict[str, np.ndarray] = {}
    for name, shape in card.input_shapes.items():
        column = table.column(name).combine_chunks()
        n = len(column)
        if name == DMDT_INPUT:
            raw = b"".join(column.to_pylist())
            out[name] = np.frombuffer(raw, dtype=np.uint8).reshape(n, *shape).copy()
        else:
            values = pc.list_flatten(column).to_numpy(zero_copy_only=False)
            out[name] = values.astype(np.float32).reshape(n, *shape)
    return out
