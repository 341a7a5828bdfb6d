"""The bundled DR5 file in IRSA's HATS layout (nested light curves), written by lsdb as IRSA's."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

EPOCH_FIELDS = ["hmjd", "mag", "magerr", "clrcoeff", "catflags"]
OBJECT_COLUMNS = ("objectid", "objra", "objdec", "filterid", "fieldid", "rcid", "nepochs")


def write_irsa_hats(sample_file: Path, folder: Path, name: str = "ztf_dr5_lc") -> Path:
    """Write the DR file as a HATS catalog with a nested ``lightcurve``; return its path."""
    import lsdb
    import pandas as pd

    t = pq.read_table(sample_file)
    nested = pa.StructArray.from_arrays(
        [t[c].combine_chunks() for c in EPOCH_FIELDS], names=EPOCH_FIELDS
    )
    table = pa.table({c: t[c] for c in OBJECT_COLUMNS} | {"lightcurve": nested})
    lsdb.from_dataframe(
        table.to_pandas(types_mapper=pd.ArrowDtype), ra_column="objra", dec_column="objdec",
        catalog_name=name, partition_rows=2000,
    ).write_catalog(folder)  # fmt: skip
    return folder / name
