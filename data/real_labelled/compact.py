"""Make the repository's compact copy of a labelled detections file.

The shared CRTS file stores every epoch's position and full-precision float32 magnitudes, 25 MB.
The copy here keeps what varsky reads and under 10 MB:

- mag and magerr rounded to 1 mmag: CRTS errors are at least 50 mmag, so the rounding
  (at most 0.5 mmag) is 1% of the smallest error;
- one position per object, the mean of its epochs' (what ``catalogs/labelled_sets.py`` uses);
- mjd kept exact (float64 days), rows and their order unchanged;
- zstd level 19, byte-stream-split mjd.

Run from the repository root::

    .venv/bin/python data/real_labelled/compact.py \
        ../shared/data/real_labelled/crts_train_detections.parquet \
        data/real_labelled/crts_train_detections.parquet
"""

import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

MAG_DECIMALS = 3


def compact(table: pa.Table) -> pa.Table:
    """Return the table with rounded mag/magerr (mag) and one position per object (degrees)."""
    _, obj = np.unique(table.column("objectid").to_numpy(zero_copy_only=False), return_inverse=True)
    counts = np.bincount(obj)
    out = table.replace_schema_metadata(None)
    for name in ("ra", "dec"):
        mean = np.bincount(obj, table.column(name).to_numpy()) / counts
        out = out.set_column(out.schema.get_field_index(name), name, pa.array(mean[obj]))
    for name in ("mag", "magerr"):
        values = np.round(table.column(name).to_numpy().astype(np.float64), MAG_DECIMALS)
        out = out.set_column(
            out.schema.get_field_index(name), name, pa.array(values.astype(np.float32))
        )
    return out


def main(source: str, target: str) -> None:
    """Write the compact copy of ``source`` to ``target``."""
    table = compact(pq.read_table(source))
    floats = [n for n in ("mjd",) if n in table.column_names]
    pq.write_table(
        table,
        target,
        compression="zstd",
        compression_level=19,
        use_dictionary=[n for n in table.column_names if n not in floats],
        use_byte_stream_split=floats,
    )
    print(f"{source} -> {target}: {table.num_rows:,} rows")


if __name__ == "__main__":
    main(*sys.argv[1:])
