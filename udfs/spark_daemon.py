"""Spark's Python daemon, with TensorFlow and varsky's kernels imported before it forks workers.

Spark starts Python workers by forking one daemon per executor. A plain daemon forks a bare
interpreter, so every worker that classifies imported TensorFlow itself: about 10 s of a core,
and the pool of a local[2] session grew to three or four workers over a job's stages (a task may
start before the previous one's worker is back in the pool), so a 20,000-object job paid three
or four imports where a 4,000-object one paid two (bench/throughput.py). Importing once here,
before the first fork, gives every worker the modules at no cost, shared copy-on-write.

Only modules are imported: no TensorFlow op runs, no numba kernel is called and no thread pool
is started before the fork (each worker still sets its own thread counts). A failed import here
is not fatal: the workers then import what they need, as with Spark's own daemon.

Used by ``spark.python.daemon.module`` (jobs/session.py) where the workers' Python can import
varsky: local sessions, and clusters whose workers have varsky installed (not code shipped only
with ``--py-files``, which workers see after the fork).
"""

from __future__ import annotations


def preload() -> None:
    """Import TensorFlow, Keras and the per-object kernels; on any failure, carry on without."""
    try:
        from udfs.tensorflow_import import quiet_import

        quiet_import()
        import udfs.inference  # noqa: F401
        import udfs.pipeline  # noqa: F401
    except Exception:  # noqa: BLE001 - the workers import (and report) it themselves
        pass


if __name__ == "__main__":
    preload()
    from pyspark.daemon import manager

    manager()
