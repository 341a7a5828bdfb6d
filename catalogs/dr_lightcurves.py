"""IRSA ZTF DR light-curve Parquet files: check each footer (catalogs.input_files finds them).

One row per objectid (a field, CCD quadrant and filter), with per-epoch lists hmjd, mag, magerr,
clrcoeff and catflags. Files are checked on the driver from their footers only (no data read), so a
missing file or column fails in seconds with a message naming the file and column.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from catalogs.errors import InputError
from catalogs.input_files import expand_files, filesystem
from catalogs.schema import DR_REQUIRED_COLUMNS, SOURCE_FILE, SOURCE_ROW, DRColumn


@dataclass(frozen=True)
class DRFile:
    """A checked DR light-curve file."""

    path: str  #: path or URI as Spark should read it
    num_rows: int  #: rows (objects) in the file, from its footer
    hmjd_type: str  #: Arrow type of the hmjd list elements in this file (float or double)


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
    fs, fs_path = filesystem(path)
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
        raise InputError(
            path,
            f"cannot read as Parquet ({err}); classify reads IRSA DR light-curve Parquet or a "
            "HATS catalog from `varsky ingest`",
        ) from err
    for column, family in DR_REQUIRED_COLUMNS.items():
        index = schema.get_field_index(column)
        if index < 0:
            raise InputError(
                path,
                f"required column is missing; a DR light-curve file needs "
                f"{sorted(DR_REQUIRED_COLUMNS)}",
                column=column,
            )
        if _type_family(schema.field(index).type) != family:
            raise InputError(
                path, f"must be {family}, found {schema.field(index).type}", column=column
            )
    hmjd_type = schema.field(DRColumn.HMJD).type.value_type
    return DRFile(path=path, num_rows=num_rows, hmjd_type=str(hmjd_type))


def check_dr_files(paths: list[str]) -> list[DRFile]:
    """Expand and check every input path; see :func:`check_dr_file`."""
    return [check_dr_file(p) for p in expand_files(paths)]


#: The Arrow types DR rows are read with on every engine: lists of double and int32, so that
#: files storing float32 or float64, uint8 or int32 read alike. ``catalogs.spark_tables``'s
#: ``spark_read_schema`` is the same in Spark's types (Spark widens on read, never narrows).
DR_READ_SCHEMA = pa.schema(
    [
        pa.field(DRColumn.OBJECTID, pa.int64()),
        pa.field(DRColumn.FILTERID, pa.int32()),
        pa.field(DRColumn.FIELDID, pa.int32()),
        pa.field(DRColumn.RCID, pa.int32()),
        pa.field(DRColumn.RA, pa.float64()),
        pa.field(DRColumn.DEC, pa.float64()),
        pa.field(DRColumn.HMJD, pa.list_(pa.float64())),
        pa.field(DRColumn.MAG, pa.list_(pa.float64())),
        pa.field(DRColumn.MAGERR, pa.list_(pa.float64())),
        pa.field(DRColumn.CATFLAGS, pa.list_(pa.int32())),
    ]
)


def source_file_uri(path: str) -> str:
    """A local path as Spark's ``_metadata.file_path`` spells it (``file:/abs/path``)."""
    if "://" in path or path.startswith("file:"):
        return path
    return "file:" + str(Path(path).resolve())


def read_dr_rows(path: str) -> pa.Table:
    """Every row of a checked DR file in :data:`DR_READ_SCHEMA`, with source_file and source_row.

    Columns absent from the file (fieldid, rcid) come as nulls, as Spark reads them.
    """
    fs, fs_path = filesystem(path)
    with fs.open_input_file(fs_path) as f:
        pf = pq.ParquetFile(f)
        names = [n for n in DR_READ_SCHEMA.names if n in pf.schema_arrow.names]
        table = pf.read(columns=names)
    n = table.num_rows
    columns = {
        field.name: (
            table.column(field.name).cast(field.type)
            if field.name in names
            else pa.nulls(n, field.type)
        )
        for field in DR_READ_SCHEMA
    }
    columns[SOURCE_FILE] = pa.array([source_file_uri(path)] * n, pa.string())
    columns[SOURCE_ROW] = pa.array(range(n), pa.int64())
    return pa.table(columns)
