"""The classify plan's Dask engine: futures of Arrow tables on a ``distributed`` cluster.

The stages, their order and their accounting are the plan's (:mod:`jobs.classify_plan`), as for
Spark. Here: each input file is read and cut on a worker (:func:`udfs.pipeline.cut_partition`),
rows stay on the workers as Arrow tables, the kept rows are classified in chunks
(:func:`udfs.engines.dask_inference.classify_table`, the model shipped by a worker plugin and loaded
once per worker) and written as the same HATS collection (:mod:`catalogs.dask_tables`). Only counts,
histograms and the rejects travel to the client.

With ``--scheduler ADDRESS`` the job runs on an existing cluster (``dask scheduler`` and
``dask worker`` processes; the workers need varsky's environment and the input and output paths);
without it, on a ``distributed.LocalCluster`` of one single-threaded worker per core.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from operator import attrgetter, itemgetter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from catalogs.dr_lightcurves import read_dr_rows, source_file_uri
from catalogs.schema import PREDICTED_CLASS, SOURCE_FILE, SOURCE_ROW, DRColumn, InputKind
from jobs.classify_plan import (
    CheckedInputs,
    ClassifyConfig,
    ClassifySummary,
    check_repeats,
    run_plan,
)
from udfs.kernels.lightcurve_cuts import (
    counts_of_cut,
    cut_partition,
    kept_objectids,
    kept_table,
    rejected_table,
    rows_of_objects,
    table_without_repeats,
)

#: Name of the rejects table's one file (Spark names its part file after the write's id).
REJECTS_FILE = "part-00000.parquet"


# --- Tasks (module functions, so workers import them by name) ---
def read_cut_file(path: str, kind: str, min_epochs: int) -> pa.Table:
    """One input file read and cut: one cut row per input row."""
    if InputKind(kind) is InputKind.DR:
        table = read_dr_rows(path)
    else:
        table = pq.read_table(path)
        n = table.num_rows
        table = table.append_column(SOURCE_FILE, pa.array([source_file_uri(path)] * n))
        table = table.append_column(SOURCE_ROW, pa.array(range(n), pa.int64()))
    batches = table.combine_chunks().to_batches()
    batches = batches or [pa.RecordBatch.from_pylist([], schema=table.schema)]
    return pa.Table.from_batches([cut_partition(b, kind, min_epochs) for b in batches])


def kept_exposure_counts(kept: pa.Table):
    """Stars (n) and deviant stars (d) per (file, band, exposure) of a table of kept rows."""
    from udfs.kernels.bad_exposures import EXPOSURE_INPUT_COLUMNS, EXPOSURE_KEYS, exposure_counts

    parts = [exposure_counts(b) for b in kept.select(list(EXPOSURE_INPUT_COLUMNS)).to_batches()]
    if not parts:
        return pd.DataFrame({"n": [], "d": []}, index=pd.MultiIndex.from_arrays([[], [], []]))
    rows = pa.Table.from_batches(parts).to_pandas()
    return rows.groupby(list(EXPOSURE_KEYS), sort=True)[["n", "d"]].sum()


def table_without_bad_exposures(kept: pa.Table, flagged, min_epochs: int) -> tuple[pa.Table, int]:
    """Kept rows with the epochs of flagged exposures removed, and the epochs removed."""
    from udfs.kernels.bad_exposures import remove_epochs

    out, removed = [], 0
    for batch in kept.combine_chunks().to_batches():
        cut, n = remove_epochs(batch, flagged, min_epochs)
        out.append(cut)
        removed += n
    return (pa.Table.from_batches(out, kept.schema) if out else kept), removed


def count_classes(table: pa.Table) -> dict[str, int]:
    """Objects per predicted class."""
    names, counts = np.unique(
        table.column(PREDICTED_CLASS).to_numpy(zero_copy_only=False).astype(str), return_counts=True
    )
    return {str(name): int(n) for name, n in zip(names, counts, strict=True)}


# --- The engine ---
def _progress(futures, what: str, log) -> None:
    """Wait for ``futures``, logging every tenth of them done."""
    from distributed import as_completed

    total = len(futures)
    step = max(1, total // 10)
    for done, _ in enumerate(as_completed(futures), start=1):
        if done % step == 0 or done == total:
            log(f"  {what}: {done} of {total} partitions")


@dataclass
class _Kept:
    """Futures of kept-row tables, and the rows per classify chunk."""

    tables: list
    chunk_rows: int


class DaskEngine:
    """:class:`jobs.classify_plan.ClassifyEngine` on a ``distributed.Client``."""

    name = "dask"
    supports_resume = False

    def __init__(self, client):
        self.client = client

    def parallelism(self) -> int:
        """The workers."""
        return max(1, len(self.client.scheduler_info()["workers"]))

    def cores(self) -> int:
        """The threads of all workers."""
        return sum(w["nthreads"] for w in self.client.scheduler_info()["workers"].values())

    def ship_model(self, model_path: Path, sha256: str, card_json: str) -> None:
        """A :class:`udfs.engines.dask_inference.ModelPlugin` on every worker."""
        from udfs.engines.dask_inference import ModelPlugin

        self.client.register_plugin(ModelPlugin(model_path.read_bytes(), sha256, card_json))

    def read_cut(self, inputs: CheckedInputs, min_epochs: int, log):
        """One task per input file; futures of cut tables."""
        kind = str(inputs.kind)
        submit = self.client.submit
        cut = [submit(read_cut_file, f.path, kind, min_epochs, pure=False) for f in inputs.files]
        _progress(cut, "read + cuts", log)
        return cut

    def repeated_rows(self, cut, limit: int):
        """Every kept objectid to the client, then the rows of the repeated ones."""
        client = self.client
        ids = np.concatenate(client.gather([client.submit(kept_objectids, c) for c in cut]) or [[]])
        unique, counts = np.unique(ids.astype(np.int64), return_counts=True)
        repeated = unique[counts > 1]
        check_repeats(int(counts[counts > 1].sum()))
        if repeated.size == 0:
            return np.array([], np.int64), np.array([], object), np.array([], np.int64)
        rows = pa.concat_tables(
            client.gather([client.submit(rows_of_objects, c, repeated) for c in cut])
        )
        return (
            rows.column(DRColumn.OBJECTID).to_numpy(),
            np.array(rows.column(SOURCE_FILE).to_pylist(), object),
            rows.column(SOURCE_ROW).to_numpy(),
        )

    def reject_repeats(self, cut, first_of):
        """One task per cut table."""
        return [self.client.submit(table_without_repeats, c, first_of) for c in cut]

    def cut_counts(self, cut) -> list[dict]:
        """One count per cut table."""
        parts = self.client.gather([self.client.submit(counts_of_cut, c) for c in cut])
        return [row for rows in parts for row in rows]

    def write_rejects(self, cut, path: str) -> None:
        """Gathered, sorted by (source_file, source_row), one file."""
        client = self.client
        rejects = pa.concat_tables(client.gather([client.submit(rejected_table, c) for c in cut]))
        rejects = rejects.sort_by([(SOURCE_FILE, "ascending"), (SOURCE_ROW, "ascending")])
        Path(path).mkdir(parents=True, exist_ok=True)
        pq.write_table(rejects, Path(path) / REJECTS_FILE)

    def kept_rows(self, cut, n_partitions: int, n_kept: int):
        """One kept table per cut table; classified later in chunks of equal size."""
        kept = [self.client.submit(kept_table, c) for c in cut]
        return _Kept(kept, max(1, math.ceil(n_kept / n_partitions)))

    def exposure_counts(self, kept: _Kept, min_stars: int):
        """Partial counts per table, summed on the client."""
        client = self.client
        parts = client.gather([client.submit(kept_exposure_counts, k) for k in kept.tables])
        counts = pd.concat(parts).groupby(level=[0, 1, 2]).sum()
        counts = counts[counts["n"] >= min_stars]
        files, bands, exposures = (counts.index.get_level_values(k).tolist() for k in range(3))
        return files, bands, exposures, counts["n"].to_numpy(), counts["d"].to_numpy()

    def without_bad_exposures(self, kept: _Kept, flagged, min_epochs: int):
        """One task per table; the removed counts are gathered after."""
        submit = self.client.submit
        pairs = [submit(table_without_bad_exposures, k, flagged, min_epochs) for k in kept.tables]
        removed = [submit(itemgetter(1), p) for p in pairs]
        tables = [submit(itemgetter(0), p) for p in pairs]
        return _Kept(tables, kept.chunk_rows), lambda: sum(self.client.gather(removed))

    def without_tiles(self, kept, state):
        """Not on Dask (the plan refuses --resume first)."""
        raise NotImplementedError("--resume is for the Spark engine")

    def classify(self, kept: _Kept, classes, batch_size: int, provenance, stage, log):
        """Chunks of equal size, one task each (the model loaded once per worker)."""
        from udfs.engines.dask_inference import classify_table
        from udfs.pipeline import TASK_SECONDS

        client, chunk = self.client, kept.chunk_rows
        sizes = client.gather([client.submit(attrgetter("num_rows"), k) for k in kept.tables])
        chunks = [
            client.submit(pa.Table.slice, k, start, chunk)
            for k, size in zip(kept.tables, sizes, strict=True)
            for start in range(0, size, chunk)
        ]
        pairs = [
            client.submit(classify_table, c, batch_size, provenance, stage, pure=False)
            for c in chunks
        ]
        _progress(pairs, "inputs + network", log)
        classified = [client.submit(itemgetter(0), p) for p in pairs]
        seconds = client.gather([client.submit(itemgetter(1), p) for p in pairs])
        total = {k: sum(s[k] for s in seconds) for k in TASK_SECONDS}
        class_counts: dict[str, int] = {}
        for counts in client.gather([client.submit(count_classes, c) for c in classified]):
            for name, n in counts.items():
                class_counts[name] = class_counts.get(name, 0) + n
        return classified, class_counts, total

    def tiles(self, classified, order: int, max_rows: int):
        """:func:`catalogs.dask_tables.dask_tiles`."""
        from catalogs.dask_tables import dask_tiles

        return dask_tiles(self.client, classified, order, max_rows)

    def write_catalog(self, classified, base, spec, tiles, journal, kept):
        """:func:`catalogs.dask_tables.write_hats_dask` (Dask does not resume: no journal)."""
        from catalogs.dask_tables import write_hats_dask

        schema = self.client.submit(attrgetter("schema"), classified[0]).result()
        return write_hats_dask(self.client, classified, schema, base, spec, tiles)

    def write_margin(self, classified, base, spec, tiles, kept_files):
        """The margin cache, by :func:`catalogs.dask_tables.write_hats_dask`."""
        return self.write_catalog(classified, base, spec, tiles, None, None)

    def release(self, *rows) -> None:
        """Futures are freed when the plan drops them."""


def run_classify_dask(
    client, config: ClassifyConfig, log=print, checked: CheckedInputs | None = None
) -> ClassifySummary:
    """Run the whole job on a ``distributed.Client``; return its summary."""
    return run_plan(DaskEngine(client), config, log, checked)


def dask_client(scheduler: str | None):
    """A client of the cluster at ``scheduler``, or of a new local one (one worker per core)."""
    from distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler)
    cluster = LocalCluster(
        n_workers=os.cpu_count() or 1,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        host="127.0.0.1",
    )
    return Client(cluster)


def run_dask_job(config: ClassifyConfig, checked: CheckedInputs | None = None) -> int:
    """Start (or join) the Dask cluster, run the job, print its summary."""
    from jobs.session import default_numba_cache_dir

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("NUMBA_CACHE_DIR", default_numba_cache_dir())
    t = time.perf_counter()
    client = dask_client(config.scheduler)
    start_s = time.perf_counter() - t
    try:
        summary = run_classify_dask(client, config, checked=checked)
    finally:
        cluster = client.cluster
        client.close()
        if cluster is not None:
            cluster.close()
    summary.stage_s = {"dask start": start_s, **summary.stage_s}
    print(summary.format(), flush=True)
    return 0
