"""The local Spark session's Python workers (jobs/session.py, udfs/spark_daemon.py)."""

from __future__ import annotations

from jobs.session import PRELOADING_DAEMON


def test_local_workers_are_forked_with_tensorflow_already_imported(spark):
    assert spark.conf.get("spark.python.daemon.module") == PRELOADING_DAEMON

    def worker_modules(batches):
        import sys

        import pyarrow as pa

        rows = sum(b.num_rows for b in batches)
        # Nothing here imports TensorFlow: it can only come from the daemon's preload.
        yield pa.RecordBatch.from_pydict(
            {"tensorflow": ["tensorflow" in sys.modules], "rows": [rows]}
        )

    rows = (
        spark.range(0, 1000, numPartitions=6)
        .mapInArrow(worker_modules, "tensorflow boolean, rows long")
        .collect()
    )
    assert sum(r.rows for r in rows) == 1000
    assert all(r.tensorflow for r in rows), rows
