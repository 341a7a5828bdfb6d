"""Parquet files a Spark or Dask task writes itself, under their final name only once complete."""

from __future__ import annotations

import uuid

import pyarrow as pa
import pyarrow.parquet as pq

from catalogs.input_files import filesystem


class ParquetFileInTask:
    """One Parquet file a task streams tables into, under its final name only once closed.

    A retried task writes the same name again and replaces the first attempt's file, so a task
    that dies half way leaves a ``.tmp-*`` file, never a partial file under the final name.
    Writes an empty file (schema only) when nothing came.
    """

    #: Rows held before a row group is written: one per small table would cost ~60 us a row (a
    #: read task's rejects come a file, a few rows, at a time).
    ROW_GROUP_ROWS = 131_072

    def __init__(self, path: str, schema):
        self._fs, self._path = filesystem(path)
        folder, name = self._path.rsplit("/", 1)
        self._fs.create_dir(folder, recursive=True)
        self._tmp = f"{folder}/.tmp-{uuid.uuid4().hex}-{name}"
        self._schema = schema
        self._writer = pq.ParquetWriter(self._tmp, schema, filesystem=self._fs)
        self._pending: list = []
        self._n_pending = 0
        self.n_rows = 0

    def write(self, table) -> None:
        """Append ``table``'s rows (cast to the file's schema)."""
        if table.num_rows:
            self._pending.append(table.cast(self._schema))
            self._n_pending += table.num_rows
            self.n_rows += table.num_rows
            if self._n_pending >= self.ROW_GROUP_ROWS:
                self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._writer.write_table(pa.concat_tables(self._pending))
        self._pending, self._n_pending = [], 0

    def close(self) -> None:
        """Finish the file and give it its final name."""
        self._flush()
        self._writer.close()
        self._fs.move(self._tmp, self._path)
