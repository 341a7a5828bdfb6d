"""Positional association of sources and detections into sky objects (numpy, scipy, numba).

One rule carries all three uses (merging reference sources across fields and filters, merging DR
objectids across fields and filters, clustering detections when there is no reference): two
sources that come from the same catalog (one reference catalog, one DR field-quadrant-filter, one
exposure) are never the same object. Candidate links shorter than the link length are taken
closest first; a link joins two groups unless they already share a catalog. Tight same-object
links form first, and two neighbouring objects seen in the same exposure can never merge, however
their detections scatter. A group is named by the smallest id among its members, so every tile
that sees a whole group names it the same way.

Detections are then assigned to the nearest object within a radius (:func:`assign_nearest`).
"""

from __future__ import annotations

import numba as nb
import numpy as np
import numpy.typing as npt
from scipy.spatial import cKDTree

ARCSEC_PER_RADIAN = 180.0 / np.pi * 3600.0
_CATALOG_GROUP_KEY = nb.types.UniTuple(nb.types.int64, 2)  # (catalog, group root)


def unit_vectors(ra_deg: npt.ArrayLike, dec_deg: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Unit vectors (n, 3) of positions in degrees.

    The same values as astropy's ``SkyCoord.cartesian`` for RA in [0, 360), at the same speed
    (bench/library_alternatives.py); kept because SkyCoord wraps RA first, which would move the
    last bits of every ingest output with RA outside that range, for no gain.
    """
    ra = np.radians(np.asarray(ra_deg, dtype=np.float64))
    dec = np.radians(np.asarray(dec_deg, dtype=np.float64))
    cos_dec = np.cos(dec)
    return np.column_stack([cos_dec * np.cos(ra), cos_dec * np.sin(ra), np.sin(dec)])


def chord_of_arcsec(angle_arcsec: float) -> float:
    """Chord length on the unit sphere of an angle in arcsec."""
    return 2.0 * np.sin(angle_arcsec / ARCSEC_PER_RADIAN / 2.0)


def arcsec_of_chord(chord: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Angle in arcsec of chord lengths on the unit sphere."""
    chord = np.asarray(chord, dtype=np.float64)
    return 2.0 * np.arcsin(np.minimum(chord / 2.0, 1.0)) * ARCSEC_PER_RADIAN


def mean_positions(
    group: npt.NDArray[np.int64], ra_deg: npt.ArrayLike, dec_deg: npt.ArrayLike
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(group ids, mean ra deg, mean dec deg) per group, averaging unit vectors (RA-wrap safe)."""
    ids, inverse = np.unique(group, return_inverse=True)
    xyz = unit_vectors(ra_deg, dec_deg)
    sums = np.zeros((ids.size, 3))
    np.add.at(sums, inverse, xyz)
    ra = np.degrees(np.arctan2(sums[:, 1], sums[:, 0])) % 360.0
    dec = np.degrees(np.arctan2(sums[:, 2], np.hypot(sums[:, 0], sums[:, 1])))
    return ids, ra, dec


def candidate_links(
    xyz: npt.NDArray[np.float64], link_arcsec: float, max_neighbours: int | None = None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Pairs (i < j) closer than ``link_arcsec``, closest first (ties by i, then j).

    With ``max_neighbours``, only each point's nearest neighbours are linked: enough to connect a
    tight cluster, and it keeps the number of links linear in the number of detections, where all
    pairs grow with the square of the epochs per object.
    """
    n = xyz.shape[0]
    if n < 2:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    tree = cKDTree(xyz)
    chord = chord_of_arcsec(link_arcsec)
    if max_neighbours is None:
        pairs = tree.query_pairs(chord, output_type="ndarray").astype(np.int64)
        i, j = pairs[:, 0], pairs[:, 1]
    else:
        k = min(max_neighbours + 1, n)
        _, idx = tree.query(xyz, k=k, distance_upper_bound=chord)
        i = np.repeat(np.arange(n, dtype=np.int64), k - 1)
        j = idx[:, 1:].ravel().astype(np.int64)
        keep = j < n  # missing neighbours come back as index n
        i, j = np.minimum(i[keep], j[keep]), np.maximum(i[keep], j[keep])
        if i.size:
            pairs = np.unique(np.column_stack([i, j]), axis=0)
            i, j = pairs[:, 0], pairs[:, 1]
    dist = np.linalg.norm(xyz[i] - xyz[j], axis=1)
    order = np.lexsort((j, i, dist))
    return i[order], j[order]


@nb.njit(cache=True)
def _find(parent, a):
    root = a
    while parent[root] != root:
        root = parent[root]
    while parent[a] != root:  # path compression
        parent[a], a = root, parent[a]
    return root


@nb.njit(cache=True)
def _constrained_union(n, link_i, link_j, catalog):
    """Union-find over links in order, refusing unions of groups that share a catalog."""
    parent = np.arange(n)
    size = np.ones(n, dtype=np.int64)
    head = np.arange(n)  # members of a root as a linked list: head, nxt, tail
    nxt = np.full(n, -1, dtype=np.int64)
    tail = np.arange(n)
    seen = nb.typed.Dict.empty(key_type=_CATALOG_GROUP_KEY, value_type=nb.types.int64)
    for a in range(n):
        seen[(catalog[a], a)] = 1
    for e in range(link_i.size):
        ra_ = _find(parent, link_i[e])
        rb = _find(parent, link_j[e])
        if ra_ == rb:
            continue
        if size[ra_] < size[rb]:
            ra_, rb = rb, ra_  # rb is the smaller group
        conflict = False
        m = head[rb]
        while m != -1:
            if (catalog[m], ra_) in seen:
                conflict = True
                break
            m = nxt[m]
        if conflict:
            continue
        m = head[rb]
        while m != -1:
            seen[(catalog[m], ra_)] = 1
            m = nxt[m]
        parent[rb] = ra_
        size[ra_] += size[rb]
        nxt[tail[ra_]] = head[rb]
        tail[ra_] = tail[rb]
    roots = np.empty(n, dtype=np.int64)
    for a in range(n):
        roots[a] = _find(parent, a)
    return roots


def link_sources(
    ra_deg: npt.ArrayLike,
    dec_deg: npt.ArrayLike,
    catalog: npt.ArrayLike,
    ids: npt.ArrayLike,
    link_arcsec: float,
    max_neighbours: int | None = None,
) -> npt.NDArray[np.int64]:
    """Group sources into objects; return each source's object id (the group's smallest id).

    Parameters
    ----------
    ra_deg, dec_deg : arrays of float64, shape (n,)
        Positions, degrees.
    catalog : int64 array, shape (n,)
        Catalog of each source (reference catalog, DR field-quadrant-filter, or exposure); sources
        of one catalog never share an object.
    ids : int64 array, shape (n,)
        Unique id of each source; an object is named by its smallest member id.
    link_arcsec : float
        Sources farther apart than this are never linked directly.
    max_neighbours : int, optional
        Link each source only to its nearest neighbours (see :func:`candidate_links`).
    """
    ids = np.asarray(ids, dtype=np.int64)
    n = ids.size
    if n == 0:
        return np.empty(0, dtype=np.int64)
    catalog = np.ascontiguousarray(catalog, dtype=np.int64)
    i, j = candidate_links(unit_vectors(ra_deg, dec_deg), link_arcsec, max_neighbours)
    roots = _constrained_union(np.int64(n), i, j, catalog)
    smallest = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(smallest, roots, ids)
    return smallest[roots]


def assign_nearest(
    object_ra_deg: npt.ArrayLike,
    object_dec_deg: npt.ArrayLike,
    ra_deg: npt.ArrayLike,
    dec_deg: npt.ArrayLike,
    radius_arcsec: float,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Index of the nearest object within ``radius_arcsec`` of each position (-1 if none).

    Returns (index, distance_arcsec); the distance is NaN where there is no object.
    """
    tree = object_tree(object_ra_deg, object_dec_deg)
    return nearest_in_tree(tree, np.size(object_ra_deg), ra_deg, dec_deg, radius_arcsec)


def object_tree(object_ra_deg: npt.ArrayLike, object_dec_deg: npt.ArrayLike) -> cKDTree | None:
    """The search tree :func:`nearest_in_tree` takes (None for no objects)."""
    if np.size(object_ra_deg) == 0:
        return None
    return cKDTree(unit_vectors(object_ra_deg, object_dec_deg))


def nearest_in_tree(
    tree: cKDTree | None,
    n_objects: int,
    ra_deg: npt.ArrayLike,
    dec_deg: npt.ArrayLike,
    radius_arcsec: float,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """:func:`assign_nearest` against a tree built once (:func:`object_tree`) of ``n_objects``."""
    n = np.size(ra_deg)
    index = np.full(n, -1, dtype=np.int64)
    dist_arcsec = np.full(n, np.nan)
    if n == 0 or tree is None:
        return index, dist_arcsec
    chord, idx = tree.query(
        unit_vectors(ra_deg, dec_deg), k=1, distance_upper_bound=chord_of_arcsec(radius_arcsec)
    )
    found = idx < n_objects
    index[found] = idx[found]
    dist_arcsec[found] = arcsec_of_chord(chord[found])
    return index, dist_arcsec
