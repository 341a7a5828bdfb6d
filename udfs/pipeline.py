"""The classify chain of one partition, engine-free: Arrow rows in, cut and classified rows out.

Every engine calls these and nothing else: Spark's mapInArrow wrappers
(:mod:`udfs.engines.spark_inference` and `jobs/classify.py`), the report when it recomputes what the
network saw, and tests, which run them without Spark. The chain:

1. :func:`udfs.kernels.lightcurve_cuts.cut_partition`: quality cuts of the input rows (IRSA DR
   rows, IRSA's DR in HATS layout, or rows of a `varsky ingest` catalog); every row comes out
   once, kept or with a reject reason.
2. (Between the two, the exposure-level cut of :mod:`udfs.kernels.bad_exposures`: it needs
   statistics over every star of an exposure, so the engine gathers them;
   :func:`udfs.kernels.bad_exposures.remove_epochs` then works per partition.)
3. :func:`classify_partition`: the variability stage, then model inputs and the network for
   the objects it did not settle, the predicted class, and the per-row
   provenance columns.

The model is loaded once per process by :func:`cached_classifier`, keyed by the model file's
sha256, which it checks.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pyarrow as pa

from catalogs.provenance import VARSKY_VERSION, file_sha256
from catalogs.schema import SOURCE_FILE, classification_schema, provenance_schema
from udfs.model.inference import StageTimes, classify_batch


@dataclass(frozen=True)
class Provenance:
    """The per-row provenance of a classification catalog.

    Attributes
    ----------
    model_name, model_sha256 : str
        The model (its card's name) and its file's checksum.
    dmdt_grid : str
        Name of the model's dm-dt grid.
    processing_time : datetime
        The job's processing time, timezone-aware (UTC).
    catalog_of_file : mapping of str to str
        Name and release of the input catalog of each input file, under every spelling of the
        file's path an engine may report (plain, ``file:`` and ``file://`` URIs).
    """

    model_name: str
    model_sha256: str
    dmdt_grid: str
    processing_time: datetime
    catalog_of_file: Mapping[str, str] = field(default_factory=dict)


def with_provenance(batch: pa.RecordBatch, provenance: Provenance) -> pa.RecordBatch:
    """``batch`` with its ``source_file`` replaced by the provenance columns."""
    n = batch.num_rows
    source = batch.column(SOURCE_FILE).to_pylist()
    catalogs = [None if s is None else provenance.catalog_of_file.get(s) for s in source]
    files = [None if s is None else s.split("/")[-1] for s in source]

    def constant(value, kind):
        return pa.repeat(pa.scalar(value, kind), n) if n else pa.array([], kind)

    arrays = [batch.column(f.name) for f in batch.schema if f.name != SOURCE_FILE]
    arrays += [
        pa.array(catalogs, pa.string()),
        pa.array(files, pa.string()),
        constant(VARSKY_VERSION, pa.string()),
        constant(provenance.model_name, pa.string()),
        constant(provenance.model_sha256, pa.string()),
        constant(provenance.dmdt_grid, pa.string()),
        constant(provenance.processing_time, pa.timestamp("us", tz="UTC")),
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=provenance_schema(batch.schema))


def classified_schema(classes, carried: pa.Schema) -> pa.Schema:
    """Arrow schema of :func:`classify_partition` output with provenance (the catalog's)."""
    return classification_schema(classes, carried)


def classify_partition(
    batch: pa.RecordBatch,
    classifier,
    provenance: Provenance | None = None,
    batch_size: int = 256,
    times: StageTimes | None = None,
    stage=None,
) -> pa.RecordBatch:
    """Classify the kept rows of a partition: inputs, network, predicted class, provenance.

    :func:`udfs.model.inference.classify_batch` of the kept cut rows (``batch``: the
    ``catalogs.schema.CARRIED_COLUMNS`` and the ``lightcurve`` struct), the same parameters;
    ``provenance`` adds the provenance columns in place of ``source_file`` (without it the rows
    keep ``source_file``).
    """
    rows = classify_batch(batch, classifier, batch_size, times, stage)
    return rows if provenance is None else with_provenance(rows, provenance)


#: The per-task numbers :func:`classify_task` reports, summed by the engines for the summary.
TASK_SECONDS = ("load_s", "variability_s", "inputs_s", "predict_s", "task_s", "settled")


def classify_task(
    batches, classifier_of, threads: int, provenance, batch_size: int, stage, seconds
):
    """:func:`classify_partition` of each batch of one engine task (Spark's or Dask's).

    Numba's kernels get ``threads`` threads, like TensorFlow (the task's CPUs, not every core of
    the machine: the engine's task slots divide the cores); ``classifier_of()`` gives the
    worker's model (:func:`worker_classifier`). At the end ``seconds`` receives the task's
    ``load_s``, ``variability_s``, ``inputs_s``, ``predict_s``, ``task_s`` and ``settled`` (objects
    the variability stage settled), for the job's summary.
    """
    import numba

    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    t0 = time.perf_counter()
    classifier = classifier_of()
    load_s = time.perf_counter() - t0
    times = StageTimes()
    for batch in batches:
        yield classify_partition(batch, classifier, provenance, batch_size, times, stage)
    seconds |= {
        "load_s": load_s,
        "variability_s": times.variability_s,
        "inputs_s": times.inputs_s,
        "predict_s": times.predict_s,
        "task_s": time.perf_counter() - t0,
        "settled": float(times.n_settled),
    }


# --- One model per process ---
_CLASSIFIERS: dict[str, object] = {}


def worker_classifier(sha256: str, locate, threads: int, card_json: str | None = None):
    """The worker process's classifier of the model with ``sha256``: the one model cache.

    Every engine's task asks here (Spark, Dask, lsdb). Only the first task of a process pays:
    it sets TensorFlow's threads to ``threads`` (the task's CPUs, so workers divide the cores),
    calls ``locate()`` for the model file's local path, and loads it through
    :func:`cached_classifier` (sha256 checked); ``card_json`` is the model card, when the card
    beside the file is not the one to use.
    """
    if sha256 not in _CLASSIFIERS:  # only the process's first task
        import json

        from udfs.model.classifier import ModelCard, configure_tensorflow_threads

        configure_tensorflow_threads(threads)
        card = ModelCard.from_dict(json.loads(card_json)) if card_json else None
        cached_classifier(locate(), sha256, card)
    return _CLASSIFIERS[sha256]


def cached_classifier(path: str | Path, sha256: str, card=None):
    """The process's classifier of the model file ``path``, loaded and verified on first use.

    Raises
    ------
    RuntimeError
        If the file's sha256 is not ``sha256`` (a tampered or different model).
    """
    classifier = _CLASSIFIERS.get(sha256)
    if classifier is None:
        from udfs.model.classifier import Classifier

        found = file_sha256(path)
        if found != sha256:
            raise RuntimeError(
                f"model file {path} has sha256 {found}, expected {sha256}: "
                "every worker must use the model the job was started with"
            )
        classifier = Classifier.load(path, card)
        _CLASSIFIERS[sha256] = classifier
    return classifier
