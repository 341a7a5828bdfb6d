"""IRSA ZTF DR light-curve Parquet files: locate, check the schema, and the Spark read schema.

One row per objectid (a field, CCD quadrant and filter), with per-epoch lists hmjd, mag, magerr,
clrcoeff and catflags. Files are checked on the driver from their footers only (no data read), so a
missing file or column fails in seconds with a message naming the file and column.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from catalogs.errors import InputError
from catalogs.schema import DR_REQUIRED_COLUMNS, DRColumn

PARQUET_SUFFIXES = (".parquet", ".parq", ".pq")


@dataclass(frozen=True)
class DRFile:
    """A checked DR light-curve file.

    Attributes
    ----------
    path : str
        Path or URI as Spark should read it.
    num_rows : int
        Rows (objects) in the file, from its footer.
    hmjd_type : str
        Arrow type of the hmjd list elements in this file (float or double).
    """

    path: str
    num_rows: int
    hmjd_type: str


def _filesystem(path: str) -> tuple[pafs.FileSystem, str]:
    if "://" in path:
        return pafs.FileSystem.from_uri(path)
    return pafs.LocalFileSystem(), path


def expand_input_paths(paths: list[str]) -> list[str]:
    """Expand directories into the Parquet files they hold (sorted); check that each path exists.

    Raises
    ------
    InputError
        If a path does not exist or a directory holds no Parquet file.
    """
    files: list[str] = []
    for path in paths:
        fs, fs_path = _filesystem(path)
        info = fs.get_file_info(fs_path)
        if info.type == pafs.FileType.NotFound:
            raise InputError(path, "input path does not exist")
        if info.type == pafs.FileType.Directory:
            selector = pafs.FileSelector(fs_path, recursive=True)
            found = sorted(
                i.path
                for i in fs.get_file_info(selector)
                if i.type == pafs.FileType.File
                and i.base_name.endswith(PARQUET_SUFFIXES)
                and not i.base_name.startswith(("_", "."))
            )
            if not found:
                raise InputError(path, "directory holds no Parquet file (*.parquet)")
            prefix = path[: path.index("://") + 3] if "://" in path else ""
            files.extend(prefix + f if prefix and not f.startswith(prefix) else f for f in found)
        else:
            files.append(path)
    return files


def _type_family(dtype: pa.DataType) -> str:
    if pa.types.is_integer(dtype):
        return "int"
    if pa.types.is_floating(dtype):
        return "float"
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype):
        return f"list<{_type_family(dtype.value_type)}>"
    return str(dtype)


def check_dr_file(path: str) -> DRFile:
    """Check one DR light-curve file's footer: readable Parquet with the required columns.

    Raises
    ------
    InputError
        Naming the file, and the column when one is missing or of the wrong type.
    """
    fs, fs_path = _filesystem(path)
    try:
        info = fs.get_file_info(fs_path)
        if info.type == pafs.FileType.NotFound:
            raise InputError(path, "input file does not exist")
        if info.size == 0:
            raise InputError(path, "file is empty (0 bytes), not a Parquet file")
        with fs.open_input_file(fs_path) as f:
            pf = pq.ParquetFile(f)
            schema = pf.schema_arrow
            num_rows = pf.metadata.num_rows
    except InputError:
        raise
    except (pa.ArrowInvalid, OSError) as err:
        raise InputError(path, f"cannot read as Parquet ({err})") from err
    for column, family in DR_REQUIRED_COLUMNS.items():
        index = schema.get_field_index(column)
        if index < 0:
            raise InputError(
                path,
                f"required column is missing; a DR light-curve file needs "
                f"{sorted(DR_REQUIRED_COLUMNS)}",
                column=column,
            )
        found = _type_family(schema.field(index).type)
        if found != family:
            raise InputError(
                path, f"must be {family}, found {schema.field(index).type}", column=column
            )
    hmjd_type = schema.field(DRColumn.HMJD).type.value_type
    return DRFile(path=path, num_rows=num_rows, hmjd_type=str(hmjd_type))


def check_dr_files(paths: list[str]) -> list[DRFile]:
    """Expand and check every input path; see :func:`check_dr_file`."""
    return [check_dr_file(p) for p in expand_input_paths(paths)]


def is_hats_catalog(path: str) -> bool:
    """True for a local directory holding a HATS catalog (a properties file and dataset/)."""
    from pathlib import Path

    p = Path(path[len("file://") :] if path.startswith("file://") else path)
    has_properties = (p / "hats.properties").is_file() or (p / "properties").is_file()
    return p.is_dir() and has_properties and (p / "dataset").is_dir()


def hats_partition_files(path: str) -> list[str]:
    """The pixel files (Norder=K/Dir=D/Npix=N.parquet) of a local HATS catalog, sorted."""
    from pathlib import Path

    files = sorted(str(f) for f in Path(path, "dataset").rglob("Npix=*.parquet"))
    if not files:
        raise InputError(path, "HATS catalog holds no Npix=*.parquet file")
    return files


def input_catalog_name(path: str) -> str:
    """Name and release of the light curves in ``path``, for provenance columns.

    A HATS catalog: its ``obs_collection`` property (HATS 1.0; ``catalog_name`` in older
    catalogs). An IRSA DR file or folder: "ZTF DR<n>" when the name says which release
    (``..._dr5.parquet``), else its base name.
    """
    import re
    from pathlib import Path

    from catalogs.hats_properties import read_properties

    p = Path(path[len("file://") :] if path.startswith("file://") else path)
    if is_hats_catalog(str(p)):
        properties = read_properties(p)
        for key in ("obs_collection", "catalog_name"):
            if properties.get(key):
                return properties[key]
        return p.name
    release = re.search(r"(?:^|[_./-])dr(\d+)(?:[_./-]|$)", p.name, flags=re.IGNORECASE)
    return f"ZTF DR{release.group(1)}" if release else p.name
