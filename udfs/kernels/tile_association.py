"""Association within one HEALPix tile plus its margin (Arrow in, Arrow out; no Spark).

The ingest job groups rows by tile, copying rows near a tile's edge into the neighbouring tiles
(the margin), and calls these functions once per tile. A group of sources belongs to the tile that
holds its mean position, and each tile emits only its own groups, so every source comes out once
as long as the margin is wider than any group.
"""

from __future__ import annotations

import functools

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from catalogs.hats_tiles import Tiles
from catalogs.healpix import healpix_29
from catalogs.object_tiles import NO_TILE, read_object_tile
from catalogs.schema import HEALPIX_COLUMN, REJECT_REASON, DetectionRejectReason
from udfs.kernels.association import (
    link_sources,
    mean_positions,
    nearest_in_tree,
    object_tree,
)

SOURCE_ID = "source_id"  # int64 id of a source to group (refid, DR objectid, detid)
CATALOG = "catalog"  # int64: sources of one catalog never share an object
OBJECTID = "objectid"
OBJECT_RA = "object_ra"  # degrees
OBJECT_DEC = "object_dec"  # degrees
TILE = "tile"  # index into the job's Tiles
IS_MARGIN = "is_margin"

#: Output of :func:`link_in_tile`: one row per source of a group owned by the tile.
MEMBERSHIP_SCHEMA = pa.schema(
    [
        pa.field(SOURCE_ID, pa.int64()),
        pa.field(OBJECTID, pa.int64()),
        pa.field(OBJECT_RA, pa.float64()),
        pa.field(OBJECT_DEC, pa.float64()),
    ]
)


def _np(table: pa.Table, name: str, dtype) -> np.ndarray:
    return table.column(name).to_numpy(zero_copy_only=False).astype(dtype, copy=False)


def link_in_tile(
    table: pa.Table,
    tile: int,
    tiles: Tiles,
    link_arcsec: float,
    max_neighbours: int | None = None,
) -> pa.Table:
    """Group the sources of a tile and its margin; return the members of the tile's own groups.

    Parameters
    ----------
    table : pyarrow.Table
        Columns source_id, ra, dec (degrees), catalog: the tile's rows and its margin rows.
    tile : int
        Index of this tile in ``tiles``.
    tiles : Tiles
    link_arcsec : float
        Link length (see :func:`udfs.kernels.association.link_sources`).
    max_neighbours : int, optional
        Link each source only to its nearest neighbours (for dense detection sets).

    Returns
    -------
    pyarrow.Table
        :data:`MEMBERSHIP_SCHEMA`: source_id, objectid (the group's smallest source id) and the
        group's mean position, for every source whose group's mean lies in this tile.
    """
    if table.num_rows == 0:
        return MEMBERSHIP_SCHEMA.empty_table()
    ids = _np(table, SOURCE_ID, np.int64)
    ra = _np(table, "ra", np.float64)
    dec = _np(table, "dec", np.float64)
    groups = link_sources(ra, dec, _np(table, CATALOG, np.int64), ids, link_arcsec, max_neighbours)
    group_ids, group_ra, group_dec = mean_positions(groups, ra, dec)
    owned = tiles.tile_index(healpix_29(group_ra, group_dec)) == tile
    row_group = np.searchsorted(group_ids, groups)
    mine = owned[row_group]
    return pa.Table.from_arrays(
        [
            pa.array(ids[mine]),
            pa.array(groups[mine]),
            pa.array(group_ra[row_group][mine]),
            pa.array(group_dec[row_group][mine]),
        ],
        schema=MEMBERSHIP_SCHEMA,
    )


def assign_by_work_tile(
    ra_deg: np.ndarray,
    dec_deg: np.ndarray,
    hp29: np.ndarray,
    tiles: Tiles,
    objects_of,
    radius_arcsec: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Objectid and output tile of the nearest object within the radius of each position.

    -1 for both where no object lies within the radius.

    ``objects_of(tile)`` gives ``(objectid, tree, out_tile)`` of a work tile's objects and its
    margin copies (every object within ``radius_arcsec`` of the tile; ``tree`` from
    :func:`udfs.kernels.association.object_tree`), so a position in a tile finds every object
    near it there. A position in no tile (a pixel without objects) may still lie within the
    radius of a neighbouring tile's objects: it looks in every tile within the radius.
    """
    n = np.size(ra_deg)
    objectid = np.full(n, -1, dtype=np.int64)
    out_tile = np.full(n, -1, dtype=np.int64)
    best = np.full(n, np.inf)
    tile = tiles.tile_index(hp29)
    loose = np.flatnonzero(tile < 0)
    rows_of = [(t, np.flatnonzero(tile == t)) for t in np.unique(tile[tile >= 0])]
    if loose.size:
        near_rows, near_tiles = tiles.margin_tile_indices(hp29[loose], radius_arcsec)
        rows_of += [(t, loose[near_rows[near_tiles == t]]) for t in np.unique(near_tiles)]
        rows_of.append((NO_TILE, loose))
    for t, rows in rows_of:
        ids, tree, tile_of_object = objects_of(int(t))
        index, dist = nearest_in_tree(tree, ids.size, ra_deg[rows], dec_deg[rows], radius_arcsec)
        closer = (index >= 0) & (dist < best[rows])
        objectid[rows[closer]] = ids[index[closer]]
        out_tile[rows[closer]] = tile_of_object[index[closer]]
        best[rows[closer]] = dist[closer]
    return objectid, out_tile


#: Tiles of stored objects a process keeps (ids and search tree), most recently used first. A
#: read task's files cover a few tiles; a bound keeps a long-lived worker's memory flat.
STORED_TILES_KEPT = 8


@functools.lru_cache(maxsize=STORED_TILES_KEPT)
def _stored_tile(base: str, tile: int):
    ids, ra, dec, out_tile = read_object_tile(base, tile)
    return ids, object_tree(ra, dec), out_tile


def assign_stored_objects_and_tiles(
    detections: pa.Table, base: str, tiles: Tiles, radius_arcsec: float
) -> tuple[pa.Table, np.ndarray]:
    """Detections with the objectid of their nearest stored object, and its output tile.

    Objects come from the store of ``catalogs.object_tiles``; the output tile is the store's
    ``out_tile`` of the object (-1 for rejects). Kept detections (reject reason null) without an
    object within ``radius_arcsec`` become rejects (no_reference_within_radius); rejected ones
    keep their reason and a null objectid. ``base`` names one run's store: a process caches the
    tiles it read under that name.
    """
    reason = detections.column(REJECT_REASON)
    kept = np.flatnonzero(reason.is_null().to_numpy(zero_copy_only=False))
    objectid = np.full(detections.num_rows, -1, dtype=np.int64)
    out_tile = np.full(detections.num_rows, -1, dtype=np.int64)
    if kept.size:
        objectid[kept], out_tile[kept] = assign_by_work_tile(
            _np(detections, "ra", np.float64)[kept],
            _np(detections, "dec", np.float64)[kept],
            _np(detections, HEALPIX_COLUMN, np.int64)[kept],
            tiles,
            lambda tile: _stored_tile(base, tile),
            radius_arcsec,
        )
    found = objectid >= 0
    missing = np.zeros(detections.num_rows, dtype=bool)
    missing[kept] = ~found[kept]
    if missing.any():
        reason = pc.if_else(pa.array(missing), DetectionRejectReason.NO_OBJECT, reason)
    index = detections.schema.get_field_index(OBJECTID)
    out = detections.set_column(
        index, detections.schema.field(index), pa.array(objectid, pa.int64(), mask=~found)
    )
    # The column itself: a list around it would convert it element by element (~1 ms a file).
    out = out.set_column(
        out.schema.get_field_index(REJECT_REASON), out.schema.field(REJECT_REASON), reason
    )
    return out, out_tile
