"""Dask wrappers of :mod:`udfs.pipeline`: task functions with a per-worker model.

A :class:`ModelPlugin` carries the model file's bytes to every worker (as Spark's ``addFile``
ships it), which writes them into its local directory once; the first task on a worker loads the
model through :func:`udfs.pipeline.worker_classifier` (sha256 checked) and later tasks reuse it.
TensorFlow's and numba's threads are set to the worker's threads, so workers divide the cores.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from distributed import WorkerPlugin

#: Name the plugin is registered under on each worker.
PLUGIN_NAME = "varsky-model"


class ModelPlugin(WorkerPlugin):
    """A ``distributed`` worker plugin that puts the model file on each worker.

    Parameters
    ----------
    model_bytes : bytes
        The model file's content.
    sha256 : str
        Its checksum; the worker refuses other bytes.
    card_json : str
        The model card, JSON.
    """

    name = PLUGIN_NAME

    def __init__(self, model_bytes: bytes, sha256: str, card_json: str):
        self.model_bytes = model_bytes
        self.sha256 = sha256
        self.card_json = card_json
        self.path: str | None = None

    def setup(self, worker) -> None:
        """Write the model file into the worker's local directory and check its sha256."""
        from catalogs.provenance import file_sha256

        path = Path(worker.local_directory) / f"varsky_model_{self.sha256[:16]}.keras"
        path.write_bytes(self.model_bytes)
        if file_sha256(path) != self.sha256:
            raise RuntimeError(f"model bytes written to {path} do not have sha256 {self.sha256}")
        self.path = str(path)
        self.model_bytes = b""  # the file holds them now


def worker_classifier():
    """The current worker's classifier, from the :class:`ModelPlugin` registered on it."""
    from distributed import get_worker

    from udfs.pipeline import worker_classifier

    plugin = get_worker().plugins.get(PLUGIN_NAME)
    if plugin is None:
        raise RuntimeError("no varsky model plugin on this worker; register a ModelPlugin first")
    return worker_classifier(
        plugin.sha256, lambda: plugin.path, _worker_threads(), plugin.card_json
    )


def _worker_threads() -> int:
    from distributed import get_worker

    return max(1, int(get_worker().state.nthreads))


def classify_table(
    table: pa.Table, batch_size: int, provenance=None, stage=None
) -> tuple[pa.Table, dict[str, float]]:
    """:func:`udfs.pipeline.classify_partition` of a table of kept rows on a Dask worker.

    Returns the classified rows and the task's seconds (``load_s``, ``inputs_s``, ``predict_s``,
    ``task_s``) and ``settled`` objects, for the job's summary.
    """
    from udfs.pipeline import classify_task

    batches = table.combine_chunks().to_batches()
    batches = batches or [pa.RecordBatch.from_pylist([], schema=table.schema)]
    seconds: dict[str, float] = {}
    task = classify_task(
        batches, worker_classifier, _worker_threads(), provenance, batch_size, stage, seconds
    )
    return pa.Table.from_batches(list(task)), seconds
