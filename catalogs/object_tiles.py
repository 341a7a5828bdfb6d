"""The objects of each association tile, kept in Parquet between the ingest's two passes.

The ingest job merges reference sources into objects tile by tile, then writes every object (and
a copy of it into each neighbouring tile within the association radius) under
``BASE/tile=N/`` (Spark's ``partitionBy`` layout). Each task that reads detection files then
looks up the objects of the tiles its detections fall in, so detections never cross a shuffle to
meet their objects.
"""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq

TILE = "tile"
OBJECTID = "objectid"
OBJECT_RA = "object_ra"  # degrees
OBJECT_DEC = "object_dec"  # degrees
#: Optional: the index of the object's output tile (the HATS tile its light curve goes to).
OUT_TILE = "out_tile"
#: Tile of the objects whose position lies in no tile (a pixel of the histogram without sources).
NO_TILE = -1


def object_tile_path(base: str, tile: int) -> str:
    """The folder of one tile's objects."""
    return f"{base.rstrip('/')}/{TILE}={tile}"


def read_object_tile(base: str, tile: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(objectid, ra_deg, dec_deg, out_tile) of a tile's objects and margin copies, by objectid.

    ``out_tile`` is -1 where the store has no such column. A tile without objects has no folder:
    empty arrays. Sorted, so that the lookup does not depend on the order Spark wrote the rows in.
    """
    try:
        table = pq.read_table(object_tile_path(base, tile))
    except FileNotFoundError:
        return np.empty(0, np.int64), np.empty(0), np.empty(0), np.empty(0, np.int64)
    ids = table.column(OBJECTID).to_numpy()
    order = np.argsort(ids, kind="stable")
    if OUT_TILE in table.column_names:
        out_tile = table.column(OUT_TILE).to_numpy().astype(np.int64)[order]
    else:
        out_tile = np.full(ids.size, -1, dtype=np.int64)
    return (
        ids[order],
        table.column(OBJECT_RA).to_numpy()[order],
        table.column(OBJECT_DEC).to_numpy()[order],
        out_tile,
    )
