"""Exceptions for bad input, with the file, column and row they concern."""

from __future__ import annotations


class InputError(ValueError):
    """An input file that cannot be read as the format it should be."""

    def __init__(
        self, path: str, message: str, column: str | None = None, row: int | None = None
    ) -> None:
        self.path = path
        self.column = column
        self.row = row
        where = path
        if column is not None:
            where += f", column {column!r}"
        if row is not None:
            where += f", row {row}"
        super().__init__(f"{where}: {message}")
