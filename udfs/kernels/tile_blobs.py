"""Rows packed per output tile into Arrow IPC blobs, to cross a shuffle as a few binary rows.

The psfcat ingest knows every detection's output tile in the task that reads it (the tile of its
object). Rather than millions of rows of ten columns, each read task hands Spark one binary row
per tile and flush: an Arrow IPC stream (lz4) of that tile's rows, about 55 bytes a detection.
The JVM only moves bytes; the task that builds a tile decodes its blobs back into one table.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import pyarrow as pa

TILE = "tile"
KIND = "kind"
N_ROWS = "n_rows"
SEQ = "seq"
BLOB = "blob"

#: A packed chunk of rows, one per (tile, kind) and flush. ``seq`` orders a tile's blobs the same
#: way on every run, whatever order the shuffle delivers them in.
BLOB_SCHEMA = pa.schema(
    [
        pa.field(TILE, pa.int64(), nullable=False),
        pa.field(KIND, pa.int8(), nullable=False),
        pa.field(N_ROWS, pa.int64(), nullable=False),
        pa.field(SEQ, pa.int64(), nullable=False),
        pa.field(BLOB, pa.binary(), nullable=False),
    ]
)

#: Rows per blob at most: a blob stays a few MiB, far below Arrow's 2 GiB binary batches.
MAX_BLOB_ROWS = 65_536

_IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")


def _to_ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=_IPC_OPTIONS) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def pack_by_tile(
    table: pa.Table,
    tile: np.ndarray,
    kind: int,
    seq: Iterator[int] | None = None,
) -> Iterator[pa.RecordBatch]:
    """Blob rows (:data:`BLOB_SCHEMA`) of ``table``'s rows grouped by their ``tile`` index.

    One batch per blob, so that no Arrow batch Spark sees holds more than one. Dictionary columns
    travel as they are (file paths: one copy per blob, not per row). The blobs' ``seq`` values
    come from ``seq`` (0 without it).
    """
    if table.num_rows == 0:
        return
    order = np.argsort(tile, kind="stable")
    tile = np.asarray(tile)[order]
    table = table.take(pa.array(order)).combine_chunks()
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(tile)) + 1, [tile.size]])
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        for lo in range(int(start), int(stop), MAX_BLOB_ROWS):
            n = min(MAX_BLOB_ROWS, int(stop) - lo)
            number = 0 if seq is None else next(seq)
            yield blob_row(int(tile[start]), kind, n, _to_ipc(table.slice(lo, n)), number)


def blob_row(tile: int, kind: int, n_rows: int, blob: bytes, seq: int = 0) -> pa.RecordBatch:
    """One row of :data:`BLOB_SCHEMA`."""
    return pa.RecordBatch.from_arrays(
        [
            pa.array([tile], pa.int64()),
            pa.array([kind], pa.int8()),
            pa.array([n_rows], pa.int64()),
            pa.array([seq], pa.int64()),
            pa.array([blob], pa.binary()),
        ],
        schema=BLOB_SCHEMA,
    )


def unpack(blobs: Iterable[pa.Buffer | bytes], schema: pa.Schema) -> pa.Table:
    """The rows of ``blobs`` (as :func:`pack_by_tile` made them) as one table of ``schema``.

    Each column is cast to its type in ``schema`` (a dictionary column to plain values where
    ``schema`` says so).
    """
    tables = [pa.ipc.open_stream(b).read_all() for b in blobs]
    if not tables:
        return schema.empty_table()
    return pa.concat_tables([t.cast(schema) for t in tables])
