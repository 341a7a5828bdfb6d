"""The HATS path vocabulary, in one place: folder and file names of catalogs and collections.

The names are hats' own (``hats.io.paths``), spelled here because engine tasks use them and must
not import hats (seconds per worker process); tests/test_hats_writer.py pins every one of them to
hats' constants. Driver-side code that parses paths goes through hats itself
(:func:`tile_of_path`).

Layout of a catalog ``BASE``::

    BASE/hats.properties, BASE/properties       catalog properties (hats writes both names)
    BASE/partition_info.csv                     Norder,Npix of every data file
    BASE/skymap.fits, BASE/point_map.fits       row counts per pixel at the skymap order
    BASE/dataset/_common_metadata               the schema
    BASE/dataset/_metadata                      every file's footer, paths relative to dataset/
    BASE/dataset/Norder=K/Dir=D/Npix=N.parquet  one file per tile

with ``D = (N // 10000) * 10000``; a collection holds catalogs as folders beside its
``collection.properties``.
"""

from __future__ import annotations

from pathlib import Path

#: A catalog's data folder.
DATASET_DIR = "dataset"
PARTITION_ORDER = "Norder"
PARTITION_DIR = "Dir"
PARTITION_PIXEL = "Npix"
#: Pixels per ``Dir=D`` folder: D = (N // PIXELS_PER_DIR) * PIXELS_PER_DIR.
PIXELS_PER_DIR = 10_000
METADATA_FILE = "_metadata"
COMMON_METADATA_FILE = "_common_metadata"
PARTITION_INFO_FILE = "partition_info.csv"
#: A catalog's properties file, new name first (HATS 1.0 writes both).
PROPERTIES_FILES = ("hats.properties", "properties")
COLLECTION_PROPERTIES_FILE = "collection.properties"
#: Glob of a catalog's data files below ``dataset/``.
DATA_FILE_GLOB = f"{PARTITION_PIXEL}=*.parquet"


def partition_relative_path(order: int, pixel: int) -> str:
    """Path of a tile's data file relative to ``BASE/dataset``: Norder=K/Dir=D/Npix=N.parquet."""
    directory = (pixel // PIXELS_PER_DIR) * PIXELS_PER_DIR
    return (
        f"{PARTITION_ORDER}={order}/{PARTITION_DIR}={directory}/{PARTITION_PIXEL}={pixel}.parquet"
    )


def tile_of_path(path: str | Path) -> tuple[int, int] | None:
    """(order, pixel) of a HATS data file's path (``hats.io.paths.get_healpix_from_path``).

    None for a path of another layout.
    """
    from hats.io.paths import INVALID_PIXEL, get_healpix_from_path

    pixel = get_healpix_from_path(Path(path).as_posix())
    return None if pixel == INVALID_PIXEL else (pixel.order, pixel.pixel)
