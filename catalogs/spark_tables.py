"""The Spark adapter of the format layer: DR files read into, and HATS tiles written from, Spark.

The only module of ``catalogs/`` that touches pyspark (tests/test_layers.py checks it). What it
does to each Arrow batch (tile indices, margins, streaming tile files) lives in
:mod:`catalogs.hats_writer`, and the DR file checks in :mod:`catalogs.dr_lightcurves`; here are
the DataFrame plans around them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from catalogs import hats_writer as core
from catalogs.dr_lightcurves import DR_READ_SCHEMA, DRFile
from catalogs.hats_tiles import DEFAULT_HISTOGRAM_ORDER, Tiles, n_pixels
from catalogs.schema import HEALPIX_COLUMN, SOURCE_FILE, SOURCE_ROW


# --- Reading DR light-curve files ---
def spark_read_schema():
    """The Spark schema DR files are read with: ``catalogs.dr_lightcurves.DR_READ_SCHEMA``.

    Lists are requested as double (hmjd, mag, magerr) and int (catflags) so that files storing
    float32 or float64, uint8 or int32, read alike: Spark widens on read but never narrows.
    """
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(DR_READ_SCHEMA)


def read_dr_dataframe(spark, files: list[DRFile]):
    """Spark DataFrame of the rows of checked DR files, with source_file and source_row."""
    from pyspark.sql import functions as F

    return (
        spark.read.schema(spark_read_schema())
        .parquet(*[f.path for f in files])
        .withColumn(SOURCE_FILE, F.col("_metadata.file_path"))
        .withColumn(SOURCE_ROW, F.col("_metadata.row_index"))
    )


# --- Writing HATS tiles ---
_RESULT_DDL = (
    "order int, pixel long, nrows long, skymap_pixels array<long>, skymap_counts array<long>"
)


def _write_spark_tiles(
    df_with_tile, base: str, tiles: Tiles, skymap_order: int, n_partitions, journal=None
) -> list[dict]:
    """Shuffle rows by tile, sort each partition, write files in the tasks; their result rows.

    With a ``journal`` folder (``catalogs.resume``), each task records every file it closes.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import to_arrow_schema

    # Timestamps reach Python workers in the session time zone, which varsky sets to UTC.
    write_kwargs = core.tile_write_settings(
        to_arrow_schema(df_with_tile.drop(core.TILE_COLUMN).schema, timezone="UTC")
    )
    if n_partitions is None:
        shuffle = int(df_with_tile.sparkSession.conf.get("spark.sql.shuffle.partitions"))
        n_partitions = max(1, min(len(tiles), shuffle))

    def write_tiles(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for row in core.write_tile_files(batches, base, tiles, skymap_order, write_kwargs):
            if journal is not None:
                from catalogs.resume import record_tile

                record_tile(journal, base, row.to_pylist()[0])
            yield row

    written = (
        df_with_tile.repartition(n_partitions, F.col(core.TILE_COLUMN))
        .sortWithinPartitions(*core.tile_sort_columns(df_with_tile.columns))
        .mapInArrow(write_tiles, _RESULT_DDL)
        .collect()
    )
    return [r.asDict() for r in written]


def spark_tiles(df, order: int, max_rows: int) -> Tiles:
    """Adaptive tiles of at most ``max_rows`` rows of ``df`` (hats-import's rule).

    Counts rows per HEALPix pixel of ``order`` (from `_healpix_29`) with Spark, then merges
    sparse pixels and splits dense ones with :meth:`Tiles.from_counts`.
    """
    return Tiles.from_counts(spark_histogram(df, order), order, max_rows)


def spark_histogram(df, order: int = DEFAULT_HISTOGRAM_ORDER) -> npt.NDArray[np.int64]:
    """Rows per HEALPix pixel at ``order`` of a Spark DataFrame with a `_healpix_29` column.

    The Spark twin of `catalogs.hats_tiles.histogram`, to pass to ``Tiles.from_counts``. Only
    non-empty pixels travel to the driver; the dense result holds ``12 * 4**order`` int64.

    Returns
    -------
    numpy.ndarray of int64, shape (12 * 4**order,)
        Rows per nested pixel at ``order``.
    """
    from pyspark.sql import functions as F

    from catalogs.healpix import tile_shift_bits

    pixel = F.shiftright(F.col(HEALPIX_COLUMN), tile_shift_bits(order)).alias("pixel")
    counts = np.zeros(n_pixels(order), dtype=np.int64)
    rows = df.select(pixel).groupBy("pixel").count().collect()
    if rows:
        pixels, n_rows = np.array([(r["pixel"], r["count"]) for r in rows], dtype=np.int64).T
        counts[pixels] = n_rows
    return counts


def _schema_with_tile(schema):
    """A Spark schema plus the tile column (a new StructType; a DataFrame's schema is shared)."""
    from pyspark.sql.types import LongType, StructField, StructType

    return StructType([*schema.fields, StructField(core.TILE_COLUMN, LongType(), False)])


def write_hats_spark(
    df,
    base: str | os.PathLike,
    spec: core.CatalogSpec,
    tiles: Tiles,
    n_partitions: int | None = None,
    journal: str | None = None,
    kept: list[dict] | None = None,
    schema=None,
) -> list[core.WrittenTile]:
    """Write a Spark DataFrame as a HATS catalog (or, with a margin ``spec``, its margin cache).

    Each row gets its tile index (mapInArrow), rows are shuffled by tile into ``n_partitions``
    partitions (default: ``spark.sql.shuffle.partitions``, at most one per tile) and sorted by
    (tile, `_healpix_29`); each task streams its tiles' rows into their files and returns one
    small row per file. The driver then writes the catalog metadata. Every row must lie in a
    tile; empty tiles get no file. ``base`` must be empty or absent, and reachable from every
    executor (a shared file system or an object store URI). In a margin cache every row goes to
    each other tile within ``spec.margin_arcsec`` of it (``Tiles.margin_tile_indices``); when no
    row does, no catalog is written and the result is ``[]``.

    Parameters
    ----------
    df : pyspark.sql.DataFrame
        Rows to write, with an int64 `_healpix_29` column.
    base : str or os.PathLike
        Catalog base directory.
    spec : catalogs.hats_writer.CatalogSpec
        Name, position columns, row threshold, extra properties (and margin) of the catalog.
    tiles : Tiles
        Tiles covering every row, e.g. ``Tiles.from_counts`` on a histogram of ``df``.
    n_partitions : int, optional
        Spark partitions of the write.
    journal : str, optional
        Folder where tasks record each tile file they close (``catalogs.resume``).
    kept : list of dict, optional
        Journal records of tiles already in ``base`` from a dead run (``df`` holds none of
        their rows); they join the catalog's metadata as they are.
    schema : pyspark.sql.types.StructType, optional
        The schema to write (same columns as ``df``), when ``df`` is a union with rows read back
        from files, which Spark marks nullable.

    Returns
    -------
    list of (int, int, int)
        ``(order, pixel, n_rows)`` of every file written, in breadth-first order.
    """
    if HEALPIX_COLUMN not in df.columns:
        raise ValueError(f"df needs a {HEALPIX_COLUMN} column, got {df.columns}")
    base = core.output_base(base, must_be_empty=not kept)
    declared = _schema_with_tile(df.schema if schema is None else schema)
    target = None
    if schema is not None:
        from pyspark.sql.pandas.types import to_arrow_schema

        target = to_arrow_schema(schema, timezone="UTC")
        df = df.select(*schema.fieldNames())

    def add_tiles(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            if target is not None:
                batch = pa.RecordBatch.from_arrays(batch.columns, schema=target)
            if spec.is_margin:
                batch = core.with_margin_tiles(batch, tiles, spec.margin_arcsec)
            else:
                batch = core.with_tile_index(batch, tiles)
            if batch.num_rows:
                yield batch

    with_tile = df.mapInArrow(add_tiles, declared)
    rows = _write_spark_tiles(with_tile, base, tiles, spec.skymap_order, n_partitions, journal)
    return core.finish_catalog(base, spec, rows + list(kept or ()))
