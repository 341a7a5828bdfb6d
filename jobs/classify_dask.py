"""`varsky classify --engine dask`: the classify job's plan on a Dask cluster.

The same stages, kernels and catalog as the Spark plan (`jobs/classify.py`): each input file is
read and cut on a worker (:func:`udfs.pipeline.cut_partition`), rejects are written, the
exposure-level cut is judged over every star of a file, the kept rows are classified in chunks
(:func:`udfs.dask_inference.classify_table`, the model loaded once per worker) and written as the
same HATS collection (:mod:`catalogs.dask_tables`). Data stays on the workers as Arrow tables;
only counts, histograms and the rejects travel to the client.

With ``--scheduler ADDRESS`` the job runs on an existing cluster (``dask scheduler`` and
``dask worker`` processes; the workers need varsky's environment and the input and output paths);
without it, on a ``distributed.LocalCluster`` of one single-threaded worker per core.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from catalogs.dr_lightcurves import read_dr_rows, source_file_uri
from catalogs.input_files import is_hats_catalog
from catalogs.parquet_output import check_output_dir, publish_output
from catalogs.provenance import VARSKY_VERSION
from catalogs.schema import (
    BAND,
    CARRIED_COLUMNS,
    CLASSIFICATION_SCHEMA_VERSION,
    DEC,
    LIGHTCURVE,
    N_DUPLICATE,
    N_FLAGGED,
    N_GOOD,
    N_NONFINITE,
    N_THINNED,
    PREDICTED_CLASS,
    RA,
    REJECT_REASON,
    SOURCE_FILE,
    SOURCE_ROW,
    DRColumn,
    InputKind,
    Property,
)
from jobs.classify import (
    HISTOGRAM_ORDER,
    MAX_REPEATED_ROWS,
    CheckedInputs,
    ClassifyConfig,
    ClassifySummary,
    catalog_properties,
    check_before_start,
    note_stage,
    processing_time_utc,
    stage_of_config,
)

#: Name of the rejects table's one file (Spark names its part file after the write's id).
REJECTS_FILE = "part-00000.parquet"


# --- Tasks (module functions, so workers import them by name) ---
def read_cut(path: str, kind: str, min_epochs: int) -> pa.Table:
    """One input file read and cut: one cut row per input row."""
    from udfs.pipeline import cut_partition

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


def cut_counts(cut: pa.Table) -> list[dict]:
    """Rows and epochs of a cut table by reject reason (None for kept rows)."""
    counted = ["n_epochs_in", N_GOOD, N_FLAGGED, N_NONFINITE, N_DUPLICATE, N_THINNED]
    frame = cut.select([REJECT_REASON, *counted]).to_pandas()
    frame[REJECT_REASON] = frame[REJECT_REASON].astype(object).fillna("")
    grouped = frame.groupby(REJECT_REASON, sort=True)
    counts = grouped.sum().join(grouped.size().rename("rows"))
    return [
        {k: int(v) for k, v in row.items()} | {REJECT_REASON: reason or None}
        for reason, row in counts.iterrows()
    ]


def rejected_rows(cut: pa.Table) -> pa.Table:
    """The rejected rows, without light curves."""
    return cut.filter(pc.is_valid(cut.column(REJECT_REASON))).drop_columns([LIGHTCURVE])


def kept_rows(cut: pa.Table) -> pa.Table:
    """The kept rows: carried columns and the light curve."""
    return cut.filter(pc.is_null(cut.column(REJECT_REASON))).select([*CARRIED_COLUMNS, LIGHTCURVE])


def kept_exposure_counts(kept: pa.Table):
    """Stars (n) and deviant stars (d) per (file, band, exposure) of a table of kept rows."""
    from udfs.bad_exposures import EXPOSURE, exposure_counts

    parts = [exposure_counts(b) for b in kept.select([SOURCE_FILE, LIGHTCURVE]).to_batches()]
    if not parts:
        return pd.DataFrame({"n": [], "d": []}, index=pd.MultiIndex.from_arrays([[], [], []]))
    rows = pa.Table.from_batches(parts).to_pandas()
    return rows.groupby([SOURCE_FILE, BAND, EXPOSURE], sort=True)[["n", "d"]].sum()


def without_bad_exposures(kept: pa.Table, flagged, min_epochs: int) -> tuple[pa.Table, int]:
    """Kept rows with the epochs of flagged exposures removed, and the epochs removed."""
    from udfs.bad_exposures import remove_epochs

    out, removed = [], 0
    for batch in kept.combine_chunks().to_batches():
        cut, n = remove_epochs(batch, flagged, min_epochs)
        out.append(cut)
        removed += n
    return (pa.Table.from_batches(out, kept.schema) if out else kept), removed


def kept_objectids(cut: pa.Table) -> np.ndarray:
    """Objectids of the kept rows."""
    kept = cut.filter(pc.is_null(cut.column(REJECT_REASON)))
    return kept.column(DRColumn.OBJECTID).to_numpy()


def rows_of_objects(cut: pa.Table, objectids: np.ndarray) -> pa.Table:
    """(objectid, source_file, source_row) of the kept rows of these objectids."""
    kept = cut.filter(pc.is_null(cut.column(REJECT_REASON)))
    kept = kept.filter(pc.is_in(kept.column(DRColumn.OBJECTID), pa.array(objectids)))
    return kept.select([DRColumn.OBJECTID, SOURCE_FILE, SOURCE_ROW])


def reject_repeats(cut: pa.Table, first_of) -> pa.Table:
    """:func:`udfs.lightcurve_cuts.reject_repeated_objects` on a table."""
    from udfs.lightcurve_cuts import reject_repeated_objects

    batches = [reject_repeated_objects(b, first_of) for b in cut.combine_chunks().to_batches()]
    return pa.Table.from_batches(batches, cut.schema)


def first(pair):
    """The first item of a task's pair (a future's part, kept on its worker)."""
    return pair[0]


def second(pair):
    """The second item of a task's pair."""
    return pair[1]


def row_slice(table: pa.Table, start: int, length: int) -> pa.Table:
    """Rows [start, start + length) of a table."""
    return table.slice(start, length)


def class_counts(table: pa.Table) -> dict[str, int]:
    """Objects per predicted class."""
    names, counts = np.unique(
        table.column(PREDICTED_CLASS).to_numpy(zero_copy_only=False).astype(str), return_counts=True
    )
    return {str(name): int(n) for name, n in zip(names, counts, strict=True)}


def n_rows(table: pa.Table) -> int:
    """Rows of a table."""
    return table.num_rows


def schema_of(table: pa.Table) -> pa.Schema:
    """A table's schema."""
    return table.schema


# --- The plan ---
def _progress(futures, what: str, log) -> None:
    """Wait for ``futures``, logging every tenth of them done."""
    from distributed import as_completed

    total = len(futures)
    step = max(1, total // 10)
    for done, _ in enumerate(as_completed(futures), start=1):
        if done % step == 0 or done == total:
            log(f"  {what}: {done} of {total} partitions")


def _without_repeated_objects(client, cut: list) -> list:
    """The cut tables with kept rows repeating an earlier row's objectid rejected."""
    from udfs.lightcurve_cuts import repeated_objects

    ids = np.concatenate(client.gather([client.submit(kept_objectids, c) for c in cut]) or [[]])
    unique, counts = np.unique(ids.astype(np.int64), return_counts=True)
    repeated = unique[counts > 1]
    if repeated.size == 0:
        return cut
    if counts[counts > 1].sum() > MAX_REPEATED_ROWS:
        raise ValueError(
            f"more than {MAX_REPEATED_ROWS:,} rows repeat the objectid of another row: is an input "
            "given twice under two names?"
        )
    parts = client.gather([client.submit(rows_of_objects, c, repeated) for c in cut])
    rows = pa.concat_tables(parts)
    first_of = repeated_objects(
        rows.column(DRColumn.OBJECTID).to_numpy(),
        np.array(rows.column(SOURCE_FILE).to_pylist(), object),
        rows.column(SOURCE_ROW).to_numpy(),
    )
    return [client.submit(reject_repeats, c, first_of) for c in cut]


def run_classify_dask(
    client, config: ClassifyConfig, log=print, checked: CheckedInputs | None = None
) -> ClassifySummary:
    """Run the whole job on a ``distributed.Client``; return its summary.

    ``checked`` is ``jobs.classify.check_before_start``'s result when the caller ran it already.
    """
    from catalogs.dask_tables import dask_tiles, write_hats_dask, write_margin_dask
    from catalogs.hats_writer import write_collection_properties
    from udfs.bad_exposures import flagged_from_counts
    from udfs.dask_inference import ModelPlugin, classify_table
    from udfs.pipeline import Provenance

    stage_s: dict[str, float] = {}
    t = time.perf_counter()
    checked = checked or check_before_start(config)
    files = checked.files
    model_path, card, sha256 = checked.model
    final, config = config, config.staged()
    for path in (final.output, final.rejects):
        check_output_dir(path, final.overwrite)
    summary = ClassifySummary(
        files=files, output=final.output, rejects=final.rejects, model_sha256=sha256
    )
    card_json = (Path(config.model_dir) / "model_card.json").read_text()
    client.register_plugin(ModelPlugin(model_path.read_bytes(), sha256, card_json))
    stage_s["check inputs"] = time.perf_counter() - t
    log(f"varsky classify: {len(files)} file(s), {sum(f.num_rows for f in files):,} rows")

    t = time.perf_counter()
    kind = str(checked.kind)
    cut = [client.submit(read_cut, f.path, kind, config.min_epochs, pure=False) for f in files]
    _progress(cut, "read + cuts", log)
    cut = _without_repeated_objects(client, cut)
    for rows in client.gather([client.submit(cut_counts, c) for c in cut]):
        for row in rows:
            summary.rows_in += row["rows"]
            summary.epochs_in += row["n_epochs_in"]
            summary.epochs_flagged += row[N_FLAGGED]
            summary.epochs_nonfinite += row[N_NONFINITE]
            summary.epochs_duplicate += row[N_DUPLICATE]
            summary.epochs_thinned += row[N_THINNED]
            summary.epochs_good += row[N_GOOD]
            reason = row[REJECT_REASON]
            if reason is None:
                summary.epochs_used += row[N_GOOD]
            else:
                rejected = summary.rejected_by_reason
                rejected[reason] = rejected.get(reason, 0) + row["rows"]
    kept_total = summary.rows_in - summary.rows_rejected
    stage_s["read + cuts"] = time.perf_counter() - t
    log(f"  read {summary.rows_in:,} rows: {kept_total:,} kept, {summary.rows_rejected:,} rejected")

    t = time.perf_counter()
    rejects = pa.concat_tables(client.gather([client.submit(rejected_rows, c) for c in cut]))
    rejects = rejects.sort_by([(SOURCE_FILE, "ascending"), (SOURCE_ROW, "ascending")])
    Path(config.rejects).mkdir(parents=True, exist_ok=True)
    pq.write_table(rejects, Path(config.rejects) / REJECTS_FILE)
    stage_s["write rejects"] = time.perf_counter() - t

    t = time.perf_counter()
    kept = [client.submit(kept_rows, c) for c in cut]
    del cut
    summary.bad_exposure_fraction = config.bad_exposure_fraction
    removed = []
    if any(is_hats_catalog(p) for p in config.inputs):
        summary.bad_exposure_note = "no exposure-level cut on HATS input (no exposure keys)"
    elif config.bad_exposure_fraction <= 0:
        summary.bad_exposure_note = "exposure-level cut off (--bad-exposure-fraction 0)"
    else:
        parts = client.gather([client.submit(kept_exposure_counts, k) for k in kept])
        counts = pd.concat(parts).groupby(level=[0, 1, 2]).sum()
        counts = counts[counts["n"] >= config.bad_exposure_min_stars]
        summary.exposures_checked = len(counts)
        files, bands, exposures = (counts.index.get_level_values(k).tolist() for k in range(3))
        flagged = flagged_from_counts(
            files, bands, exposures, counts["n"].to_numpy(), counts["d"].to_numpy(),
            config.bad_exposure_min_stars, config.bad_exposure_fraction,
        )  # fmt: skip
        summary.exposures_flagged = sum(len(v) for v in flagged.values())
        pairs = [client.submit(without_bad_exposures, k, flagged, config.min_epochs) for k in kept]
        kept = [client.submit(first, p) for p in pairs]
        removed = [client.submit(second, p) for p in pairs]

    n_workers = max(1, len(client.scheduler_info()["workers"]))
    n_partitions = max(math.ceil(kept_total / config.rows_per_partition), n_workers)
    chunk = max(1, math.ceil(kept_total / n_partitions))
    sizes = client.gather([client.submit(n_rows, k) for k in kept])
    chunks = [
        client.submit(row_slice, k, start, chunk)
        for k, size in zip(kept, sizes, strict=True)
        for start in range(0, size, chunk)
    ]
    when = processing_time_utc()
    provenance = Provenance(card.name, sha256, card.grid.name, when, checked.catalog_of_file)
    stage = stage_of_config(config, card)
    pairs = [
        client.submit(classify_table, c, config.batch_size, provenance, stage, pure=False)
        for c in chunks
    ]
    _progress(pairs, "inputs + network", log)
    classified = [client.submit(first, p) for p in pairs]
    seconds = client.gather([client.submit(second, p) for p in pairs])
    for counts in client.gather([client.submit(class_counts, c) for c in classified]):
        for name, n in counts.items():
            summary.class_counts[name] = summary.class_counts.get(name, 0) + n
    summary.epochs_bad_exposure = int(sum(client.gather(removed)))
    summary.epochs_used -= summary.epochs_bad_exposure
    summary.rows_out = sum(summary.class_counts.values())
    stage_s["inputs + network"] = time.perf_counter() - t
    summary.cores = sum(w["nthreads"] for w in client.scheduler_info()["workers"].values())
    keys = ("load_s", "variability_s", "inputs_s", "predict_s", "task_s")
    total = {k: sum(s[k] for s in seconds) for k in keys}
    summary.cores_busy = total["task_s"] / stage_s["inputs + network"] / summary.cores
    summary.task_s = {
        "model load": total["load_s"],
        "variability stage": total["variability_s"],
        "model inputs": total["inputs_s"],
        "network": total["predict_s"],
    }
    note_stage(summary, stage, int(sum(s["settled"] for s in seconds)))

    t = time.perf_counter()
    properties = catalog_properties(final, card, sha256, checked.catalog_of_file, when)
    if not chunks:
        raise ValueError("no object passed the cuts: nothing to classify")
    schema = client.submit(schema_of, classified[0]).result()
    tiles = dask_tiles(client, classified, HISTOGRAM_ORDER, config.max_rows_per_pixel)
    summary.tiles = write_hats_dask(
        client, classified, schema, config.catalog_dir, config.catalog_name, tiles, RA, DEC,
        max_rows=config.max_rows_per_pixel, extra_properties=properties,
    )  # fmt: skip
    margin_dirs: list[str] = []
    if len(tiles) > 1:
        try:
            margin = write_margin_dask(
                client, classified, schema, f"{config.output}/{config.margin_name}",
                config.margin_name, tiles, config.margin_arcsec, config.catalog_name, RA, DEC,
                extra_properties=properties,
            )  # fmt: skip
            summary.margin_rows = sum(n for _, _, n in margin)
            margin_dirs = [config.margin_name]
        except ValueError as err:
            if "no row lies within" not in str(err):
                raise
    write_collection_properties(
        config.output, config.catalog_name, config.catalog_name, margin_dirs,
        {Property.SCHEMA_VERSION: CLASSIFICATION_SCHEMA_VERSION, Property.VERSION: VARSKY_VERSION},
    )  # fmt: skip
    summary.margin_name = config.margin_name
    stage_s["write HATS"] = time.perf_counter() - t
    written_rows = sum(n for _, _, n in summary.tiles)
    if written_rows != summary.rows_out:
        raise RuntimeError(
            f"wrote {written_rows} rows to {config.catalog_dir}, classified {summary.rows_out}: "
            "a bug in varsky, please report it"
        )
    summary.stage_s = stage_s
    if summary.rows_in != summary.rows_out + summary.rows_rejected:
        raise RuntimeError(
            f"rows in ({summary.rows_in}) != rows out ({summary.rows_out}) + rows rejected "
            f"({summary.rows_rejected}): a bug in varsky, please report it"
        )
    publish_output(config.rejects, final.rejects)
    publish_output(config.output, final.output)
    return summary


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
