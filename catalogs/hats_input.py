"""HATS light-curve catalogs as input: IRSA's published ZTF DR light curves in HATS layout.

Each row is a DR objectid (objectid, objra, objdec, filterid, fieldid, rcid, nepochs) with a
nested ``lightcurve`` column holding hmjd, mag, magerr, clrcoeff and catflags, either as a struct
of lists (the layout lsdb writes) or as a list of structs. Rows are turned into the DR
light-curve row layout so the DR ingest path handles them.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from catalogs.errors import InputError
from catalogs.schema import DRColumn

NESTED_COLUMN = "lightcurve"
_EPOCH_FIELDS = (DRColumn.HMJD, DRColumn.MAG, DRColumn.MAGERR, DRColumn.CATFLAGS)


def _lists_of(nested: pa.Array, path: str) -> dict[str, pa.Array]:
    if isinstance(nested, pa.ChunkedArray):
        nested = nested.combine_chunks()
    if pa.types.is_large_list(nested.type):  # nested-pandas hands list of structs as large_list
        nested = nested.cast(pa.list_(nested.type.value_type))
    if pa.types.is_struct(nested.type):  # struct of lists
        names = [nested.type.field(i).name for i in range(nested.type.num_fields)]
        get = {name: nested.field(name) for name in names}
    elif pa.types.is_list(nested.type) and pa.types.is_struct(nested.type.value_type):
        values = nested.flatten()
        names = [values.type.field(i).name for i in range(values.type.num_fields)]
        offsets = pc.subtract(nested.offsets, nested.offsets[0])
        get = {n: pa.ListArray.from_arrays(offsets, values.field(n)) for n in names}
    else:
        message = f"must be a struct of lists or a list of structs, found {nested.type}"
        raise InputError(path, message, column=NESTED_COLUMN)
    for name in _EPOCH_FIELDS:
        if name not in get:
            raise InputError(path, f"nested field {name!r} is missing", column=NESTED_COLUMN)
    return {name: get[name] for name in _EPOCH_FIELDS}


def dr_rows_of_hats_file(table: pa.Table, path: str) -> pa.Table:
    """DR light-curve rows (with source_file and source_row) of one HATS partition file."""
    for name in (DRColumn.OBJECTID, DRColumn.RA, DRColumn.DEC, DRColumn.FILTERID, NESTED_COLUMN):
        if name not in table.column_names:
            raise InputError(path, "required column is missing", column=name)
    n = table.num_rows
    lists = _lists_of(table.column(NESTED_COLUMN), path)

    def optional(name):
        if name in table.column_names:
            return pc.cast(table.column(name), pa.int32())
        return pa.array(np.zeros(n, dtype=np.int32))

    columns = {
        DRColumn.OBJECTID: pc.cast(table.column(DRColumn.OBJECTID), pa.int64()),
        DRColumn.FILTERID: pc.cast(table.column(DRColumn.FILTERID), pa.int32()),
        DRColumn.FIELDID: optional(DRColumn.FIELDID),
        DRColumn.RCID: optional(DRColumn.RCID),
        DRColumn.RA: pc.cast(table.column(DRColumn.RA), pa.float64()),
        DRColumn.DEC: pc.cast(table.column(DRColumn.DEC), pa.float64()),
        **lists,
        "source_file": pa.array([path] * n, pa.string()),
        "source_row": pa.array(np.arange(n, dtype=np.int64)),
    }
    return pa.table(columns)
