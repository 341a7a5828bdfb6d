"""Light curves of catalog objects, remade from their input files exactly as classify cut them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from catalogs.hats_paths import tile_of_path
from catalogs.healpix import tile_of
from catalogs.input_files import expand_files, hats_partition_files, is_hats_catalog
from catalogs.schema import LIGHTCURVE, REJECT_REASON, SOURCE_FILE, SOURCE_ROW, DRColumn, InputKind


def _rows_with_objectids(path: str, objectids: pa.Array) -> pa.Table | None:
    """Rows of a Parquet file whose objectid is one of ``objectids``, with source file and row.

    Reads the objectid column, then only the row groups holding a match.
    """
    parquet = pq.ParquetFile(path)
    ids = pc.cast(parquet.read(columns=[DRColumn.OBJECTID]).column(0), pa.int64())
    hits = np.flatnonzero(pc.fill_null(pc.is_in(ids, value_set=objectids), False).to_numpy())
    if hits.size == 0:
        return None
    sizes = np.array(
        [parquet.metadata.row_group(g).num_rows for g in range(parquet.num_row_groups)],
        dtype=np.int64,
    )
    starts = np.cumsum(sizes) - sizes
    group_of_hit = np.searchsorted(starts, hits, side="right") - 1
    groups = np.unique(group_of_hit)
    read_starts = np.cumsum(sizes[groups]) - sizes[groups]
    local = hits - starts[group_of_hit] + read_starts[np.searchsorted(groups, group_of_hit)]
    table = parquet.read_row_groups(groups.tolist()).take(pa.array(local))
    table = table.append_column(SOURCE_FILE, pa.array([str(path)] * hits.size, pa.string()))
    return table.append_column(SOURCE_ROW, pa.array(hits.astype(np.int64)))


def _cut_rows(table: pa.Table, ingest_catalog: bool) -> pa.RecordBatch:
    """Cut rows (``udfs.kernels.lightcurve_cuts.CUT_SCHEMA``) of light-curve rows, all kept."""
    from udfs.kernels.lightcurve_cuts import cut_partition

    if ingest_catalog:
        kind = InputKind.CATALOG
    elif LIGHTCURVE in table.column_names:  # IRSA's DR light curves in HATS layout
        kind = InputKind.HATS_DR
    else:
        kind = InputKind.DR
    # min_epochs 0: these objects were classified, so they passed classify's cut already.
    return cut_partition(table.combine_chunks().to_batches()[0], kind, 0)


def _without_bad_exposures(
    batch: pa.RecordBatch, path: str, fraction: float, min_stars: int, min_epochs: int
) -> pa.RecordBatch:
    """``batch`` (rows of the DR file ``path``) after classify's exposure-level cut."""
    from udfs.kernels.bad_exposures import exposure_deviations, flag_exposures, remove_epochs
    from udfs.kernels.lightcurve_cuts import cut_partition

    whole = pq.read_table(path)
    whole = whole.append_column(SOURCE_FILE, pa.array([path] * whole.num_rows, pa.string()))
    whole = whole.append_column(SOURCE_ROW, pa.array(np.arange(whole.num_rows, dtype=np.int64)))
    cut = cut_partition(whole.combine_chunks().to_batches()[0], InputKind.DR, min_epochs)
    kept = cut.filter(pc.is_null(cut.column(REJECT_REASON)))
    flagged = flag_exposures(
        pa.Table.from_batches([exposure_deviations(kept)]), min_stars, fraction
    )
    # The flags are keyed by this file's path; the batch's rows name the same file.
    flagged = {(path, band): keys for (_, band), keys in flagged.items()}
    batch = batch.set_column(
        batch.schema.get_field_index(SOURCE_FILE),
        SOURCE_FILE,
        pa.array([path] * batch.num_rows, pa.string()),
    )
    out, _ = remove_epochs(batch, flagged, min_epochs)
    return out


def fetch_lightcurves(
    objectids: npt.ArrayLike,
    lightcurve_paths: Sequence[str | Path],
    input_files: Sequence[str] | None = None,
    healpix29: npt.ArrayLike | None = None,
    bad_exposure_fraction: float = 0.0,
    bad_exposure_min_stars: int = 30,
    min_epochs: int = 20,
) -> pa.Table:
    """The light curves of catalog objects, read from the light-curve files they came from.

    Parameters
    ----------
    objectids : int64 array
        Objects to find.
    lightcurve_paths : sequence of str or Path
        IRSA DR light-curve Parquet files or folders, or HATS light-curve catalogs (from
        `varsky ingest`, or IRSA's DR in HATS layout).
    input_files : sequence of str, optional
        Basenames of the DR files the objects came from (the catalog's ``input_file``): other
        DR files are not opened, unless none of the files has such a name.
    healpix29 : int64 array, optional
        The objects' ``_healpix_29``: only the HATS tiles holding them are opened.
    bad_exposure_fraction, bad_exposure_min_stars, min_epochs : optional
        classify's exposure-level cut (``udfs.kernels.bad_exposures``), redone on each whole DR file
        so that the light curves are the ones classify used; a fraction of 0 skips it.

    Returns
    -------
    pyarrow.Table
        One row per object found (the first if found twice), schema
        ``udfs.kernels.lightcurve_cuts.CUT_SCHEMA``: the lightcurve struct holds the good epochs
        (catflags 0, finite), time-sorted, as classify used them.
    """
    from udfs.kernels.lightcurve_cuts import CUT_SCHEMA

    wanted = pa.array(np.unique(np.asarray(objectids, dtype=np.int64)))
    paths = [str(p) for p in lightcurve_paths]
    hats = [p for p in paths if is_hats_catalog(p)]
    sources: list[tuple[str, bool | None]] = []
    for catalog in hats:
        files = hats_partition_files(catalog)
        if healpix29 is not None:
            files = _files_holding(files, np.asarray(healpix29, dtype=np.int64)) or files
        sources += [(f, None) for f in files]
    dr_paths = [p for p in paths if p not in hats]
    if dr_paths:
        files = expand_files(dr_paths)
        if input_files:
            names = set(input_files)
            files = [f for f in files if Path(f).name in names] or files
        sources += [(f, False) for f in files]
    batches = []
    for path, ingest in sources:
        rows = _rows_with_objectids(path, wanted)
        if rows is None:
            continue
        if ingest is None:  # a HATS catalog: varsky's light curves have n_epochs, IRSA's not
            ingest = "n_epochs" in rows.column_names
        batch = _cut_rows(rows, ingest)
        if not ingest and bad_exposure_fraction > 0 and LIGHTCURVE not in rows.column_names:
            batch = _without_bad_exposures(
                batch, path, bad_exposure_fraction, bad_exposure_min_stars, min_epochs
            )
        batches.append(batch)
    table = pa.Table.from_batches(batches, schema=CUT_SCHEMA)
    ids = table.column(DRColumn.OBJECTID).to_numpy()
    _, first = np.unique(ids, return_index=True)
    return table.take(pa.array(np.sort(first)))


def _files_holding(files: list[str], healpix29: npt.NDArray[np.int64]) -> list[str]:
    """The HATS tile files whose tile holds one of the positions."""
    keep = []
    for path in files:
        tile = tile_of_path(Path(path))
        if tile is None or np.any(tile_of(healpix29, tile[0]) == tile[1]):
            keep.append(path)
    return keep
