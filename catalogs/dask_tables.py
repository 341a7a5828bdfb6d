"""The Dask adapter of the format layer: HATS tiles written from Arrow tables on Dask workers.

The twin of :mod:`catalogs.spark_tables`' writers, over futures of Arrow tables held by a
``distributed.Client``. The per-partition steps are the same functions
(:mod:`catalogs.hats_writer`): tile indices, margins, the streaming tile writer and the row order
(tile, `_healpix_29`, objectid), so both engines write the same files for the same rows.
"""

from __future__ import annotations

import os

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from catalogs import hats_writer as core
from catalogs.hats_tiles import DEFAULT_HISTOGRAM_ORDER, Tiles, histogram
from catalogs.schema import HEALPIX_COLUMN

#: Arrow's batches of a tile are handed to the writer in Spark's Arrow batch size, so that row
#: groups close at the same rows as under Spark.
WRITE_BATCH_ROWS = 10_000


def _histogram_of(table: pa.Table, order: int) -> npt.NDArray[np.int64]:
    return histogram(table.column(HEALPIX_COLUMN).to_numpy(), order)


def dask_tiles(client, tables, order: int, max_rows: int) -> Tiles:
    """Adaptive tiles of at most ``max_rows`` rows of the tables (futures), as ``spark_tiles``."""
    parts = client.gather([client.submit(_histogram_of, t, order) for t in tables])
    return Tiles.from_counts(np.sum(parts, axis=0, dtype=np.int64), order, max_rows)


def _split_by_group(table: pa.Table, tiles: Tiles, n_groups: int, margin_arcsec: float | None):
    """The table's rows (with their tile) in ``n_groups`` tables, by tile index modulo n_groups."""
    batch = table.combine_chunks().to_batches()
    batch = batch[0] if batch else pa.RecordBatch.from_pylist([], schema=table.schema)
    if margin_arcsec is None:
        tagged = core.with_tile_index(batch, tiles)
    else:
        tagged = core.with_margin_tiles(batch, tiles, margin_arcsec)
    group = tagged.column(core.TILE_COLUMN).to_numpy() % n_groups
    return [pa.Table.from_batches([tagged.filter(pa.array(group == g))]) for g in range(n_groups)]


def _pick(parts: list, index: int):
    return parts[index]


def _write_group(base: str, tiles: Tiles, skymap_order: int, write_kwargs: dict, *parts):
    """Write one group's rows, sorted as Spark sorts them; the written files' result rows."""
    table = pa.concat_tables(parts).combine_chunks()
    if not table.num_rows:
        return []
    table = table.sort_by([(c, "ascending") for c in core.tile_sort_columns(table.column_names)])
    batches = table.to_batches(max_chunksize=WRITE_BATCH_ROWS)
    rows = []
    for result in core.write_tile_files(batches, base, tiles, skymap_order, write_kwargs):
        rows.extend(result.to_pylist())
    return rows


def _write_dask_tiles(client, tables, base, tiles, skymap_order, schema, margin_arcsec=None):
    """Rows grouped by tile on the workers, each group's files written there; the result rows."""
    write_kwargs = core.tile_write_settings(schema)
    n_groups = max(1, min(len(tiles), 4 * len(client.scheduler_info()["workers"])))
    split = [
        client.submit(_split_by_group, t, tiles, n_groups, margin_arcsec, pure=False)
        for t in tables
    ]
    groups = [[client.submit(_pick, s, g, pure=False) for s in split] for g in range(n_groups)]
    written = client.gather(
        [
            client.submit(_write_group, base, tiles, skymap_order, write_kwargs, *g, pure=False)
            for g in groups
        ]
    )
    return [row for rows in written for row in rows]


def write_hats_dask(
    client, tables, schema: pa.Schema, base: str | os.PathLike, spec: core.CatalogSpec, tiles: Tiles
) -> list[core.WrittenTile]:
    """Write Arrow tables held by Dask workers (futures, all of ``schema``) as a HATS catalog.

    As :func:`catalogs.spark_tables.write_hats_spark`, margin caches included: every row gets
    its tile, rows are grouped by tile, sorted by (tile, `_healpix_29`, objectid) and streamed
    into their tile files by the workers; the client then writes the catalog metadata. Returns
    ``(order, pixel, n_rows)`` of every file, breadth first ([] for a margin with no row).
    """
    base = core.output_base(base)
    rows = _write_dask_tiles(
        client, tables, base, tiles, spec.skymap_order, schema, spec.margin_arcsec
    )
    return core.finish_catalog(base, spec, rows)


__all__ = ["DEFAULT_HISTOGRAM_ORDER", "dask_tiles", "write_hats_dask"]
