"""Spark wrappers of :mod:`udfs.pipeline`: mapInArrow functions with a per-worker model.

The model is loaded once per Python worker (Spark reuses workers across tasks) by
:func:`udfs.pipeline.worker_classifier`, from the copy Spark shipped to the worker. TensorFlow's
threads are set to the task's CPUs (``spark.task.cpus``), and so are numba's, so Spark's task
slots divide the cores.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

import pyarrow as pa


@dataclass(frozen=True)
class ModelRef:
    """What a worker needs to find, verify and use the model.

    Attributes
    ----------
    driver_path : str
        Path of model.keras on the driver.
    file_name : str
        Its name among the files shipped with ``--files`` or ``SparkContext.addFile``.
    sha256 : str
        Checksum the worker's copy must have.
    card_json : str
        The model card (classes, grid, normalisation), as JSON text.
    """

    driver_path: str
    file_name: str
    sha256: str
    card_json: str


def _task_cpus() -> int:
    from pyspark import TaskContext

    context = TaskContext.get()
    return max(1, int(context.cpus())) if context is not None else (os.cpu_count() or 1)


def _local_model_file(ref: ModelRef) -> str:
    from pyspark import SparkFiles

    try:
        shipped = SparkFiles.get(ref.file_name)
        if os.path.exists(shipped):
            return shipped
    except Exception:  # noqa: BLE001 - no SparkFiles outside a Spark worker
        pass
    if os.path.exists(ref.driver_path):
        return ref.driver_path
    raise FileNotFoundError(
        f"model file {ref.file_name!r} was not shipped to this worker and {ref.driver_path!r} "
        "does not exist here; pass it with --files (spark-submit.sh does)"
    )


def worker_classifier(ref: ModelRef):
    """The worker's classifier for ``ref`` (:func:`udfs.pipeline.worker_classifier`)."""
    from udfs.pipeline import worker_classifier

    return worker_classifier(
        ref.sha256, lambda: _local_model_file(ref), _task_cpus(), ref.card_json
    )


def classify_partitions(
    ref: ModelRef,
    batch_size: int,
    accumulators: dict | None = None,
    provenance=None,
    stage=None,
):
    """The ``DataFrame.mapInArrow`` function of :func:`udfs.pipeline.classify_partition`.

    Parameters
    ----------
    ref : ModelRef
        The model to use.
    batch_size : int
        Images per model call.
    accumulators : dict, optional
        Spark accumulators ``load_s``, ``inputs_s``, ``predict_s`` that receive task seconds,
        and optionally ``task_s``: each task's whole time in the Python worker (for core use).
    provenance : udfs.pipeline.Provenance, optional
        Per-row provenance columns to add.
    stage : udfs.model.variability.VariabilityStage, optional
        The variability stage; a ``settled`` accumulator, when given, receives the objects it
        settled as constant.
    """
    classifier_of = partial(worker_classifier, ref)

    def classify(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from udfs.pipeline import classify_task

        seconds: dict[str, float] = {}
        yield from classify_task(
            batches, classifier_of, _task_cpus(), provenance, batch_size, stage, seconds
        )
        for name, value in seconds.items():
            if accumulators and name in accumulators:
                accumulators[name].add(value)

    return classify


def model_input_partitions(card_json: str, carried: tuple[str, ...]):
    """Return the ``mapInArrow`` function that makes a card's model inputs (for training sets).

    Parameters
    ----------
    card_json : str
        The model card, JSON (says which inputs to make, on which grids).
    carried : tuple of str
        Columns copied through (object id, label, split).
    """

    def make_inputs(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import numba

        from udfs.model.classifier import ModelCard
        from udfs.model.inference import model_input_batch

        numba.set_num_threads(min(_task_cpus(), numba.config.NUMBA_NUM_THREADS))
        card = ModelCard.from_dict(json.loads(card_json))
        for batch in batches:
            yield model_input_batch(batch, card, carried)

    return make_inputs


def band_dropout_partitions(fraction: float, seed: int, min_epochs: int):
    """Return the ``mapInArrow`` function making band-dropped copies (udfs.model.band_dropout)."""

    def copies(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from udfs.model.band_dropout import band_dropped_copies

        for batch in batches:
            yield band_dropped_copies(batch, fraction, seed, min_epochs)

    return copies
