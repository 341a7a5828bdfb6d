"""Classify an lsdb catalog of nested light curves, lazily: the notebook API.

    import lsdb
    from udfs.engines.lsdb_engine import classify_catalog

    lc = lsdb.open_catalog("ztf_dr_lc", search_filter=lsdb.ConeSearch(41.7, -26.6, 600))
    classes = classify_catalog(lc)          # lazy, one task per HEALPix partition
    classes.compute()                       # or classes.write_catalog(...)

The catalog must be IRSA's ZTF DR light curves in HATS layout (objectid, objra, objdec,
filterid and a nested ``lightcurve`` column with hmjd, mag, magerr, catflags), as the classify
job reads them. Each partition goes through the same chain as the jobs
(:func:`udfs.pipeline.cut_partition`, then :func:`udfs.pipeline.classify_partition`); the model
is loaded once per worker process (:func:`udfs.pipeline.worker_classifier`, sha256 checked).
Objects that fail the quality cuts are left out of the result; the jobs' rejects table and
exposure-level cut are not made here (HATS input has no exposure keys).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa

from catalogs.hats_paths import partition_relative_path
from catalogs.schema import (
    CARRIED_COLUMNS,
    DEC,
    DEFAULT_MIN_EPOCHS,
    LIGHTCURVE,
    RA,
    REJECT_REASON,
    SOURCE_FILE,
    SOURCE_ROW,
    DRColumn,
    InputKind,
)
from udfs.model.classifier import DEFAULT_MODEL_DIR, checked_model


def _partition_name(pixel) -> str:
    return partition_relative_path(pixel.order, pixel.pixel)


def classify_frame(
    frame: pd.DataFrame,
    pixel,
    model_path: str,
    sha256: str,
    provenance,
    min_epochs: int,
    batch_size: int,
    stage=None,
) -> pd.DataFrame:
    """Classify one partition (a NestedFrame of DR light curves); rows of the cut survivors.

    The result's position columns keep the input's names (``objra``, ``objdec``) so that lsdb
    can check them; :func:`classify_catalog` renames them to ``ra`` and ``dec`` afterwards.
    """
    import pyarrow.compute as pc

    from udfs.kernels.lightcurve_cuts import cut_partition
    from udfs.pipeline import classify_partition, worker_classifier

    table = pa.Table.from_pandas(pd.DataFrame(frame), preserve_index=False)
    n = table.num_rows
    table = table.append_column(SOURCE_FILE, pa.array([_partition_name(pixel)] * n, pa.string()))
    table = table.append_column(SOURCE_ROW, pa.array(range(n), pa.int64()))
    batch = table.combine_chunks().to_batches()
    batch = batch[0] if batch else pa.RecordBatch.from_pylist([], schema=table.schema)
    cut = cut_partition(batch, InputKind.HATS_DR, min_epochs)
    kept = cut.filter(pc.is_null(cut.column(REJECT_REASON))).select([*CARRIED_COLUMNS, LIGHTCURVE])
    # One TensorFlow thread per Dask thread: workers divide the cores.
    classifier = worker_classifier(sha256, lambda: model_path, 1)
    rows = classify_partition(kept, classifier, provenance, batch_size, stage=stage)
    rows = rows.rename_columns([_input_name(c) for c in rows.schema.names])
    return rows.to_pandas(types_mapper=pd.ArrowDtype)


def _input_name(column: str) -> str:
    return {RA: DRColumn.RA, DEC: DRColumn.DEC}.get(column, column)


def classify_catalog(
    catalog,
    model_dir: str | Path = DEFAULT_MODEL_DIR,
    min_epochs: int = DEFAULT_MIN_EPOCHS,
    batch_size: int = 256,
    variability_stage: bool = True,
):
    """The classification of an lsdb catalog of DR light curves, as a lazy lsdb catalog.

    Parameters
    ----------
    catalog : lsdb.Catalog
        IRSA's ZTF DR light curves in HATS layout (or any catalog with their columns).
    model_dir : str or Path
        Directory with model.keras and model_card.json (default: the shipped model). Worker
        processes read the model file from this path.
    min_epochs : int
        Good epochs an object needs to be classified.
    batch_size : int
        Objects per network call (probabilities are bit-identical for a given batch size).
    variability_stage : bool
        Settle the objects the model's variability stage calls non-variable as constant, without
        the periodogram and network (as the classify job does by default); False sends every
        object to the network (``p_variable`` is still computed).

    Returns
    -------
    lsdb.Catalog
        One row per classified object with the columns of the classify job's catalog
        (README, "Columns"), positions in ``ra`` and ``dec``.
    """
    from udfs.kernels.lightcurve_cuts import CUT_SCHEMA
    from udfs.model.variability import stage_of
    from udfs.pipeline import Provenance, classified_schema

    model_path, card, sha256 = checked_model(model_dir)
    stage = stage_of(card, variability_stage)
    name = catalog.hc_structure.catalog_info.catalog_name
    when = datetime.now(UTC).replace(microsecond=0)
    files = {_partition_name(pixel): name for pixel in catalog.get_healpix_pixels()}
    provenance = Provenance(card.name, sha256, card.grid.name, when, files)
    carried = pa.schema([CUT_SCHEMA.field(c) for c in (*CARRIED_COLUMNS, LIGHTCURVE)])
    schema = classified_schema(card.output_classes, carried)
    meta = schema.empty_table().rename_columns([_input_name(c) for c in schema.names])
    classified = catalog.map_partitions(
        classify_frame, str(model_path), sha256, provenance, min_epochs, batch_size, stage,
        meta=meta.to_pandas(types_mapper=pd.ArrowDtype), include_pixel=True,
    )  # fmt: skip
    return classified.rename({DRColumn.RA: RA, DRColumn.DEC: DEC})
