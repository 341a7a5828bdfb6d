"""Read a classification catalog format-agnostically: every data file, margins skipped."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from catalogs.errors import InputError
from catalogs.hats_paths import (
    COMMON_METADATA_FILE,
    METADATA_FILE,
    PARTITION_ORDER,
    PARTITION_PIXEL,
    tile_of_path,
)
from catalogs.hats_properties import (
    COLLECTION_PROPERTIES_FILE,
    DATAPRODUCT_TYPE_PROPERTY,
    MARGINS_PROPERTY,
    read_properties,
)
from catalogs.healpix import healpix_29
from catalogs.schema import (
    DEC,
    HEALPIX_COLUMN,
    P_TRANSIENT,
    P_VARIABLE,
    PREDICTED_CLASS,
    PREDICTED_SCORE,
    RA,
    DRColumn,
)

_TABLE_TYPES = ("object", "source")  # other HATS tables (margin, index, ...) are not rows of ours
_MARGIN_SUFFIX = "_margin"
_METADATA_FILES = (METADATA_FILE, COMMON_METADATA_FILE)

#: Columns a classification catalog must have.
REQUIRED_COLUMNS = (DRColumn.OBJECTID, RA, DEC, PREDICTED_CLASS, PREDICTED_SCORE)

PROBABILITY_PREFIX = "p_"


def split_list(value: str | None) -> list[str]:
    """Items of a comma- or space-separated property value."""
    return [v for v in re.split(r"[,\s]+", value or "") if v]


def _skipped_directory(directory: Path, margins_here: set[str]) -> bool:
    """True for a folder that holds no rows of the catalog: hidden, a margin, an index."""
    name = directory.name
    if name.startswith(".") or name.endswith(_MARGIN_SUFFIX) or name in margins_here:
        return True
    kind = read_properties(directory).get(DATAPRODUCT_TYPE_PROPERTY)
    return kind is not None and kind not in _TABLE_TYPES


def catalog_files(catalog_dir: str | Path) -> list[Path]:
    """The catalog's data files: every ``*.parquet`` under ``catalog_dir``, sorted.

    Skips ``_metadata`` and ``_common_metadata``, hidden files and folders, and margin caches
    (folders named ``*_margin``, listed in a ``collection.properties``, or whose properties say
    ``dataproduct_type`` is not object or source).
    """
    root = Path(catalog_dir)
    found: list[Path] = []
    for here, dirs, files in os.walk(root):
        margins = set(split_list(
            read_properties(here, (COLLECTION_PROPERTIES_FILE,)).get(MARGINS_PROPERTY)
        ))  # fmt: skip
        dirs[:] = sorted(d for d in dirs if not _skipped_directory(Path(here, d), margins))
        found += [
            Path(here, f)
            for f in files
            if f.endswith(".parquet") and f not in _METADATA_FILES and not f.startswith(".")
        ]
    return sorted(found)


def read_classification_catalog(catalog_dir: str | Path) -> pd.DataFrame:
    """Every row of a classification catalog, as a DataFrame.

    Read file by file rather than with ``lsdb.open_catalog``, because the report also takes a
    plain folder of Parquet files (a copy, a Spark output) and needs each row's tile.

    Parameters
    ----------
    catalog_dir : str or Path
        A folder of Parquet files (see :func:`catalog_files`).

    Returns
    -------
    pandas.DataFrame
        The catalog's columns. When every file sits at a HATS path ``Norder=K/Dir=D/Npix=N``,
        int64 columns ``Norder`` and ``Npix`` say which tile each row came from.
        ``_healpix_29`` is computed from ra, dec (degrees) if the catalog lacks it.

    Raises
    ------
    InputError
        If the folder holds no Parquet file or a required column is missing.
    """
    catalog_dir = Path(catalog_dir)
    if not catalog_dir.is_dir():
        raise InputError(str(catalog_dir), "catalog directory does not exist")
    files = catalog_files(catalog_dir)
    if not files:
        raise InputError(str(catalog_dir), "directory holds no Parquet file (*.parquet)")
    try:
        first_columns = pq.read_schema(files[0]).names
    except (pa.ArrowInvalid, OSError) as err:
        raise InputError(str(files[0]), f"cannot read as Parquet ({err})") from err
    if PREDICTED_CLASS not in first_columns:
        raise InputError(
            str(catalog_dir),
            f"no {PREDICTED_CLASS} column: report expects the output of `varsky classify`, "
            "e.g. `varsky report demo_output/classified`",
        )
    tiles = [tile_of_path(f.relative_to(catalog_dir)) for f in files]
    with_tiles = all(t is not None for t in tiles)
    tables = []
    for path, tile in zip(files, tiles, strict=True):
        try:
            table = pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as err:
            raise InputError(str(path), f"cannot read as Parquet ({err})") from err
        if with_tiles:
            for name, value in zip((PARTITION_ORDER, PARTITION_PIXEL), tile, strict=True):
                if name not in table.column_names:
                    table = table.append_column(name, pa.array(np.full(table.num_rows, value)))
        tables.append(table)
    table = pa.concat_tables(tables, promote_options="permissive")
    for column in REQUIRED_COLUMNS:
        if column not in table.column_names:
            raise InputError(
                str(catalog_dir), "required column is missing from the catalog", column=column
            )
    df = table.to_pandas()
    if HEALPIX_COLUMN not in df.columns:
        df[HEALPIX_COLUMN] = healpix_29(df[RA].to_numpy(), df[DEC].to_numpy())
    return df


def catalog_classes(df: pd.DataFrame) -> tuple[str, ...]:
    """Classes of the catalog's probability columns ``p_<class>``, in column order."""
    return tuple(
        c[len(PROBABILITY_PREFIX) :]
        for c in df.columns
        if c.startswith(PROBABILITY_PREFIX) and c not in (P_VARIABLE, P_TRANSIENT)
    )
