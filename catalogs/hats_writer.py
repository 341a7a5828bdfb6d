"""Write HATS catalogs (as hats-import 0.11 does) from engine tasks (Spark, Dask adapters).

Layout under the catalog's base directory ``BASE``::

    BASE/hats.properties, BASE/properties       catalog properties (hats writes both names)
    BASE/partition_info.csv                     Norder,Npix of every data file
    BASE/skymap.fits, BASE/point_map.fits       row counts per pixel at the skymap order
    BASE/dataset/_common_metadata               the schema
    BASE/dataset/_metadata                      every file's footer, paths relative to dataset/
    BASE/dataset/Norder=K/Dir=D/Npix=N.parquet  one file per tile, rows sorted by _healpix_29

with ``D = (N // 10000) * 10000``. Data files go through ``pyarrow.fs`` (local paths and URIs such
as ``s3://``); the properties, partition list and skymaps through hats' own writers.

A margin catalog (``dataproduct_type=margin``) has the same layout: its file for tile (K, N) holds
the rows of other tiles lying within the margin of (K, N). `write_collection_properties` ties a
catalog and its margins into a HATS collection that ``lsdb.open_catalog`` loads together.

Engine tasks (Spark's Python workers, Dask's workers) import this module to run the write tasks.
hats takes seconds to import and the tasks need none of it, so hats (and astropy) are imported
inside the driver-side functions only; the path names the tasks use are
:mod:`catalogs.hats_paths`'.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from catalogs.hats_paths import DATASET_DIR, partition_relative_path
from catalogs.hats_tiles import Tiles, n_pixels
from catalogs.provenance import VARSKY_VERSION
from catalogs.schema import HEALPIX_COLUMN, HEALPIX_ORDER

if TYPE_CHECKING:
    from hats.catalog import TableProperties
    from hats.catalog.dataset.collection_properties import CollectionProperties

#: hats-import's default ``pixel_threshold``: most rows in one data file.
DEFAULT_MAX_ROWS = 1_000_000
#: Order of the skymap written beside the catalog (786,432 pixels).
DEFAULT_SKYMAP_ORDER = 8
#: A data file's row group is closed after this many rows (Arrow's own ceiling) ...
ROW_GROUP_MAX_ROWS = 1_048_576
#: ... or this many bytes of Arrow data, whichever comes first.
ROW_GROUP_MAX_BYTES = 128 * 1024 * 1024
#: zstd level of tile files. hats writes level 15; on a light-curve tile (3,926 objects, 972,012
#: epochs) level 15 took 1.87 s and 10.5 MiB, level 3 0.11 s and 11.6 MiB: 17 times the write
#: speed for 10% more bytes (the ingest's largest cost at level 15; docs/performance.md).
ZSTD_LEVEL = 3
#: Name of the helper column holding a row's tile index inside an engine's plan (never written).
TILE_COLUMN = "_hats_tile"
#: Threads reading file footers on the driver.
_FOOTER_THREADS = 16

#: One written data file: its tile and its row count.
WrittenTile = tuple[int, int, int]


@dataclass(frozen=True)
class CatalogSpec:
    """What a catalog's metadata records besides its files; one value for every engine's writer.

    A margin catalog is the spec of its primary with ``margin_arcsec`` (arcsec) and
    ``primary_catalog`` (the primary's path or URL) set: see :meth:`margin`.
    """

    name: str
    ra_column: str = "ra"
    dec_column: str = "dec"
    #: Row threshold the tiles were cut with (``hats_max_rows``).
    max_rows: int = DEFAULT_MAX_ROWS
    #: More properties, by their on-disk key (e.g. ``varsky_schema_version``).
    extra_properties: dict[str, str] | None = None
    skymap_order: int = DEFAULT_SKYMAP_ORDER
    margin_arcsec: float | None = None
    primary_catalog: str | None = None

    @property
    def is_margin(self) -> bool:
        """Whether this is a margin catalog's spec."""
        return self.margin_arcsec is not None

    def margin(self, name: str, margin_arcsec: float, primary_catalog: str) -> CatalogSpec:
        """The spec of this catalog's margin cache ``name``, ``margin_arcsec`` wide."""
        return replace(self, name=name, margin_arcsec=margin_arcsec,
                       primary_catalog=primary_catalog)  # fmt: skip


# --- file systems ---
def _filesystem(base: str | os.PathLike) -> tuple[pafs.FileSystem, str]:
    """The pyarrow file system of ``base`` and ``base``'s path on it."""
    base = os.fspath(base)
    if "://" in base:
        return pafs.FileSystem.from_uri(base)
    return pafs.LocalFileSystem(), os.path.abspath(base)


def _join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts])


def check_empty_output(base: str | os.PathLike) -> None:
    """Refuse a catalog directory that is a file or holds anything."""
    fs, root = _filesystem(base)
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.File:
        raise FileExistsError(f"HATS output {os.fspath(base)} is a file")
    if info.type == pafs.FileType.Directory and fs.get_file_info(pafs.FileSelector(root)):
        raise FileExistsError(
            f"HATS output {os.fspath(base)} is not empty; write a catalog into a new directory"
        )


# --- data files ---
def _healpix_values(data: pa.Table | pa.RecordBatch) -> npt.NDArray[np.int64]:
    """The `_healpix_29` column as int64 numpy; nulls are refused."""
    column = data.column(HEALPIX_COLUMN)
    if column.null_count:
        raise ValueError(f"{HEALPIX_COLUMN} has {column.null_count} nulls; every row needs one")
    return column.to_numpy()


def check_schema(schema: pa.Schema) -> None:
    """Refuse a schema without an int64 `_healpix_29` column."""
    if schema.get_field_index(HEALPIX_COLUMN) < 0:
        raise ValueError(f"a HATS table needs a {HEALPIX_COLUMN} column, got {schema.names}")
    if not pa.types.is_int64(schema.field(HEALPIX_COLUMN).type):
        raise ValueError(f"{HEALPIX_COLUMN} must be int64, got {schema.field(HEALPIX_COLUMN).type}")


class _TileFileWriter:
    """Streams one tile's Arrow batches into its data file, in row groups of bounded size."""

    def __init__(self, fs: pafs.FileSystem, path: str, schema: pa.Schema, write_kwargs: dict):
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        self._writer = pq.ParquetWriter(path, schema, filesystem=fs, **write_kwargs)
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._pending_bytes = 0
        self.n_rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        self._pending_bytes += batch.nbytes
        self.n_rows += batch.num_rows
        if self._pending_rows >= ROW_GROUP_MAX_ROWS or self._pending_bytes >= ROW_GROUP_MAX_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self._pending_rows:
            table = pa.Table.from_batches(self._pending).combine_chunks()
            self._writer.write_table(table, row_group_size=ROW_GROUP_MAX_ROWS)
        self._pending, self._pending_rows, self._pending_bytes = [], 0, 0

    def close(self) -> None:
        self._flush()
        self._writer.close()


# --- per-partition steps of a tile write, engine-free (the Spark and Dask adapters call them) ---
def with_tile_index(batch: pa.RecordBatch, tiles: Tiles) -> pa.RecordBatch:
    """``batch`` with each row's tile index (int64) appended as ``TILE_COLUMN``.

    Raises
    ------
    ValueError
        If a row lies in no tile.
    """
    hp29 = _healpix_values(batch)
    index = tiles.tile_index(hp29)
    if np.any(index < 0):
        raise ValueError(
            f"{int(np.sum(index < 0))} rows lie in no tile, e.g. "
            f"{HEALPIX_COLUMN}={int(hp29[index < 0][0])}"
        )
    return _append_tile(batch, index)


def with_margin_tiles(batch: pa.RecordBatch, tiles: Tiles, margin_arcsec: float) -> pa.RecordBatch:
    """Each row of ``batch`` once per other tile within ``margin_arcsec``, with that tile."""
    rows, margin_tiles = tiles.margin_tile_indices(_healpix_values(batch), margin_arcsec)
    return _append_tile(batch.take(pa.array(rows, pa.int64())), margin_tiles)


def _append_tile(batch: pa.RecordBatch, index: npt.NDArray[np.int64]) -> pa.RecordBatch:
    field = pa.field(TILE_COLUMN, pa.int64(), nullable=False)
    return pa.RecordBatch.from_arrays(
        [*batch.columns, pa.array(index, pa.int64())], schema=batch.schema.append(field)
    )


def tile_sort_columns(columns: Sequence[str]) -> list[str]:
    """The order rows are written in: tile, `_healpix_29`, then objectid where there is one.

    Breaking ties by objectid makes reruns (and engines) byte-identical.
    """
    return [TILE_COLUMN, HEALPIX_COLUMN] + [c for c in ("objectid",) if c in columns]


def write_tile_files(
    batches: Iterable[pa.RecordBatch],
    base: str,
    tiles: Tiles,
    skymap_order: int,
    write_kwargs: dict,
) -> Iterable[pa.RecordBatch]:
    """Write batches sorted by :func:`tile_sort_columns` into their tiles' files.

    Yields one row per file: (order, pixel, nrows) and its sparse histogram at ``skymap_order``
    (``skymap_pixels``, ``skymap_counts``). ``write_kwargs`` (Parquet settings) come from the
    driver, so tasks never import hats.
    """
    shift = np.int64(2 * (HEALPIX_ORDER - skymap_order))
    fs, root = _filesystem(base)
    writer: _TileFileWriter | None = None
    current = -1
    counted: list[npt.NDArray[np.int64]] = []

    def finish() -> pa.RecordBatch:
        writer.close()
        cells, counts = np.unique(np.concatenate(counted), return_counts=True)
        order, pixel = tiles.order_pixel(current)
        return pa.RecordBatch.from_pydict(
            {
                "order": pa.array([order], pa.int32()),
                "pixel": pa.array([pixel], pa.int64()),
                "nrows": pa.array([writer.n_rows], pa.int64()),
                "skymap_pixels": pa.array([cells], pa.list_(pa.int64())),
                "skymap_counts": pa.array([counts.astype(np.int64)], pa.list_(pa.int64())),
            }
        )

    for batch in batches:
        tile = batch.column(TILE_COLUMN).to_numpy(zero_copy_only=False)
        data = batch.drop_columns([TILE_COLUMN])
        bounds = np.concatenate([[0], np.flatnonzero(np.diff(tile)) + 1, [tile.size]])
        for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
            if tile[start] != current:
                if writer is not None:
                    yield finish()
                current = int(tile[start])
                order, pixel = tiles.order_pixel(current)
                path = _join(root, DATASET_DIR, partition_relative_path(order, pixel))
                writer = _TileFileWriter(fs, path, data.schema, write_kwargs)
                counted = []
            part = data.slice(start, stop - start)
            writer.write(part)
            counted.append(part.column(HEALPIX_COLUMN).to_numpy() >> shift)
    if writer is not None:
        yield finish()


def merge_written_tiles(
    rows: Iterable[dict], skymap_order: int
) -> tuple[list[WrittenTile], npt.NDArray[np.int64]]:
    """The files :func:`write_tile_files` wrote, from its rows as dicts, and the summed skymap."""
    skymap = np.zeros(n_pixels(skymap_order), dtype=np.int64)
    written = []
    for row in rows:
        pixels = np.asarray(row["skymap_pixels"], dtype=np.int64)
        np.add.at(skymap, pixels, np.asarray(row["skymap_counts"], dtype=np.int64))
        written.append((row["order"], row["pixel"], row["nrows"]))
    return written, skymap


# --- the writing core: what every engine adapter calls around its own shuffle ---
def output_base(base: str | os.PathLike, must_be_empty: bool = True) -> str:
    """``base`` as every worker opens it (an absolute local path or a URI), checked empty."""
    base = os.fspath(base)
    base = base if "://" in base else os.path.abspath(base)
    if must_be_empty:
        check_empty_output(base)
    return base


def tile_write_settings(schema: pa.Schema) -> dict:
    """The Parquet settings of a table's tile files, once its schema is checked.

    hats' settings (byte-stream-split floats, delta-coded `_healpix_29`, page index), sorted by
    `_healpix_29`, but zstd at :data:`ZSTD_LEVEL` instead of hats' 15. Made on the driver and
    handed to the tasks, which then never import hats.
    """
    from hats.io.file_io.file_io import get_parquet_write_table_kwargs

    check_schema(schema)
    sorting = [pq.SortingColumn(schema.get_field_index(HEALPIX_COLUMN))]
    ours = {"sorting_columns": sorting, "compression": "zstd", "compression_level": ZSTD_LEVEL}
    kwargs = get_parquet_write_table_kwargs(schema, write_table_kwargs=ours)
    kwargs.pop("row_group_size")
    return kwargs


def finish_catalog(base: str, spec: CatalogSpec, rows: Iterable[dict]) -> list[WrittenTile]:
    """The catalog's metadata, once the tasks wrote its tile files; the files, breadth first.

    ``rows`` are what :func:`write_tile_files` yielded in every task, as dicts. An empty margin
    is a value: no row within ``spec.margin_arcsec`` of another tile, no file, no catalog, and
    ``[]`` (the collection then lists no margin).
    """
    written, skymap = merge_written_tiles(rows, spec.skymap_order)
    if spec.is_margin and not written:
        return []
    written = sorted_tiles(written)
    write_catalog_metadata(base, spec, written, skymap=None if spec.is_margin else skymap)
    return written


def _read_footers(
    fs: pafs.FileSystem, root: str, tiles: Sequence[WrittenTile]
) -> list[pq.FileMetaData]:
    def read(tile: WrittenTile) -> pq.FileMetaData:
        order, pixel, n_rows = tile
        relative = partition_relative_path(order, pixel)
        path = _join(root, DATASET_DIR, relative)
        with fs.open_input_file(path) as f:
            footer = pq.read_metadata(f)
        if footer.num_rows != n_rows:
            raise ValueError(f"{path} holds {footer.num_rows} rows, {n_rows} expected")
        footer.set_file_path(relative)
        return footer

    with ThreadPoolExecutor(_FOOTER_THREADS) as pool:
        return list(pool.map(read, tiles))


def _skymap_from_files(
    fs: pafs.FileSystem, root: str, tiles: Sequence[WrittenTile], order: int
) -> npt.NDArray[np.int64]:
    shift = np.int64(2 * (HEALPIX_ORDER - order))

    def count(tile: WrittenTile) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        path = _join(root, DATASET_DIR, partition_relative_path(*tile[:2]))
        hp29 = pq.read_table(path, columns=[HEALPIX_COLUMN], filesystem=fs)[HEALPIX_COLUMN]
        return np.unique(hp29.to_numpy() >> shift, return_counts=True)

    total = np.zeros(n_pixels(order), dtype=np.int64)
    with ThreadPoolExecutor(_FOOTER_THREADS) as pool:
        for pixels, counts in pool.map(count, tiles):
            total[pixels] += counts
    return total


def sorted_tiles(tiles_with_rows: Iterable[WrittenTile]) -> list[WrittenTile]:
    """Written tiles in breadth-first order; refuse empty, duplicate or overlapping tiles."""
    rows = [(int(o), int(p), int(n)) for o, p, n in tiles_with_rows]
    if not rows:
        raise ValueError("tiles_with_rows is empty: a HATS catalog needs at least one data file")
    empty = [(o, p) for o, p, n in rows if n <= 0]
    if empty:
        raise ValueError(f"tiles_with_rows lists tiles without rows (order, pixel): {empty[:5]}")
    tiles = Tiles(*np.array(rows, dtype=np.int64).T)
    return [
        (int(o), int(p), int(n))
        for o, p, n in zip(tiles.orders, tiles.pixels, tiles.row_counts, strict=True)
    ]


def write_catalog_metadata(
    base: str | os.PathLike,
    spec: CatalogSpec,
    tiles_with_rows: Iterable[WrittenTile],
    skymap: npt.NDArray[np.int64] | None = None,
) -> TableProperties:
    """Write the catalog-level files once every data file is written.

    Writes ``dataset/_common_metadata``, ``dataset/_metadata`` (the listed files' footers, in
    breadth-first order, paths relative to ``dataset/``), ``partition_info.csv``, the skymaps
    (object and source catalogs) and the properties. The footers are read here, not by hats'
    ``write_parquet_metadata`` (which gives the same bytes on the demo catalog), because each
    file's rows are checked against what its task wrote, and 16 at a time for object stores.

    Parameters
    ----------
    base : str or os.PathLike
        Catalog base directory.
    spec : CatalogSpec
        Name (``obs_collection``), position columns, row threshold and extra properties; for a
        margin catalog its width (``hats_margin_threshold``, whose ``hats_max_rows`` is then its
        largest file's) and primary catalog (``hats_primary_table_url``).
    tiles_with_rows : iterable of (int, int, int)
        ``(order, pixel, n_rows)`` of every data file written; each must have rows.
    skymap : numpy.ndarray of int64, shape (12 * 4**order,), optional
        Rows per pixel at some order, for ``skymap.fits`` (not for margins); read from the files
        when not given.

    Returns
    -------
    hats.catalog.TableProperties
        The properties written.
    """
    from hats.catalog import CatalogType, PartitionInfo, TableProperties
    from hats.io import file_io, paths
    from hats.io.skymap import write_skymap
    from hats.pixel_math import HealpixPixel
    from hats.pixel_math.healpix_shim import npix2order

    if spec.is_margin and spec.primary_catalog is None:
        raise ValueError("a margin catalog needs margin_arcsec and primary_catalog")
    tiles = sorted_tiles(tiles_with_rows)
    fs, root = _filesystem(base)

    footers = _read_footers(fs, root, tiles)
    schema = footers[0].schema.to_arrow_schema()
    for (order, pixel, _), footer in zip(tiles, footers, strict=True):
        if not footer.schema.to_arrow_schema().equals(schema):
            raise ValueError(
                f"{partition_relative_path(order, pixel)} has a schema different from "
                f"{partition_relative_path(*tiles[0][:2])}'s"
            )
    dataset_dir = _join(root, DATASET_DIR)
    pq.write_metadata(
        schema,
        _join(dataset_dir, paths.PARQUET_METADATA_FILENAME),
        metadata_collector=footers,
        filesystem=fs,
        write_statistics=True,
    )
    pq.write_metadata(
        schema, _join(dataset_dir, paths.PARQUET_COMMON_METADATA_FILENAME), filesystem=fs
    )

    partition_info = PartitionInfo([HealpixPixel(o, p) for o, p, _ in tiles])
    partition_info.write_to_file(paths.get_partition_info_pointer(base))

    # A margin's max rows is its largest file's.
    max_rows = max(n for _, _, n in tiles) if spec.is_margin else spec.max_rows
    info: dict = {
        "catalog_name": spec.name,
        "catalog_type": CatalogType.MARGIN if spec.is_margin else CatalogType.OBJECT,
        "total_rows": sum(n for _, _, n in tiles),
        "ra_column": spec.ra_column,
        "dec_column": spec.dec_column,
        "healpix_column": HEALPIX_COLUMN,
        "healpix_order": HEALPIX_ORDER,
        "hats_max_rows": int(max_rows),
        "hats_order": partition_info.get_highest_order(),
        "moc_sky_fraction": f"{partition_info.calculate_fractional_coverage():0.5f}",
    }
    if spec.is_margin:
        info["margin_threshold"] = float(spec.margin_arcsec)
        info["primary_catalog"] = spec.primary_catalog
    else:
        if skymap is None:
            skymap = _skymap_from_files(fs, root, tiles, DEFAULT_SKYMAP_ORDER)
        skymap = np.asarray(skymap, dtype=np.int64)
        file_io.write_fits_image(skymap, paths.get_point_map_file_pointer(base))
        write_skymap(histogram=skymap, catalog_dir=base)
        info["skymap_order"] = int(npix2order(skymap.size))
    # Provenance last, so that hats_estsize counts every file but the properties.
    provenance = TableProperties.new_provenance_dict(base, builder=f"varsky {VARSKY_VERSION}")
    properties = TableProperties(**(provenance | info | dict(spec.extra_properties or {})))
    properties.to_properties_file(base)
    return properties


def write_collection_properties(
    collection_base: str | os.PathLike,
    collection_name: str,
    primary_subdir: str,
    margin_subdirs: Sequence[str] = (),
    extra_properties: dict[str, str] | None = None,
) -> CollectionProperties:
    """Write ``collection.properties`` tying a catalog and its margins (subdirectories of it).

    Parameters
    ----------
    collection_base : str or os.PathLike
        Collection directory, holding the catalogs.
    collection_name : str
        Name of the collection (``obs_collection``).
    primary_subdir : str
        The primary catalog's directory, relative to ``collection_base``.
    margin_subdirs : sequence of str
        Margin catalogs' directories; the first is the default one ``lsdb.open_catalog`` loads.
    extra_properties : dict of str to str, optional
        More properties, by their on-disk key.

    Returns
    -------
    hats.catalog.dataset.collection_properties.CollectionProperties
        The properties written.
    """
    from hats.catalog.dataset.collection_properties import CollectionProperties

    info = {
        "name": collection_name,
        "hats_primary_table_url": primary_subdir,
        "all_margins": list(margin_subdirs) or None,
        "default_margin": margin_subdirs[0] if margin_subdirs else None,
    }
    properties = CollectionProperties(**(info | dict(extra_properties or {})))
    properties.to_properties_file(collection_base)
    return properties
