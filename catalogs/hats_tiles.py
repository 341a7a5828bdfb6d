"""Adaptive HEALPix tiles, as HATS partitions the sky, and the tiles near each position.

A tile is a nested HEALPix pixel ``(order, pixel)``. Dense parts of the sky get small tiles (high
order) and sparse parts large ones, so that no tile holds more than ``max_rows`` rows, as
hats-import does. Tiles are found from a count histogram of `_healpix_29` at a fixed
``histogram_order`` and are kept in breadth-first order (by their first order-29 index, the order
hats sorts partitions in), so that a tile's position in the list is a stable small integer.

Everything here is numpy; Spark code calls these methods inside ``mapInArrow``. cdshealpix (which
pulls in astropy) is imported by the margin search only, to keep Spark's Python workers light.

Memory: a histogram has ``12 * 4**order`` int64 counts: 6 MiB at order 8, 25 MiB at order 9,
100 MiB at order 10. Tiles are never smaller than the histogram's pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from catalogs.schema import HEALPIX_ORDER

#: Default order of the count histogram tiles are cut from (786,432 pixels, 6 MiB of int64).
DEFAULT_HISTOGRAM_ORDER = 8

#: A pixel whose side (square root of its area) is at least this many margins wide has a ring of
#: 8 neighbours thick enough to hold every point within the margin. Measured on 20,000 positions
#: at order 6 (poles and base-pixel corners included), the ring first leaks at 0.7 pixel sides;
#: 4 leaves a factor 2.8 to spare. tests/test_hats_tiles.py checks it by brute force.
_MARGIN_PIXEL_SIDES = 4.0

_ARCSEC_PER_RADIAN = 180.0 * 3600.0 / math.pi


def n_pixels(order: int) -> int:
    """Number of HEALPix pixels covering the sphere at ``order`` (``12 * 4**order``)."""
    return 12 * 4**order


def _check_order(order: int, name: str) -> None:
    if not 0 <= order <= HEALPIX_ORDER:
        raise ValueError(f"{name} must be in 0..{HEALPIX_ORDER}, got {order}")


def histogram(hp29: npt.ArrayLike, order: int) -> npt.NDArray[np.int64]:
    """Count rows per HEALPix pixel at ``order``.

    Parameters
    ----------
    hp29 : array_like of int64, shape (n,)
        `_healpix_29` of each row.
    order : int
        Order of the histogram (0..29; keep it modest, see the module notes on memory).

    Returns
    -------
    numpy.ndarray of int64, shape (12 * 4**order,)
        Number of rows in each nested pixel at ``order``.
    """
    _check_order(order, "histogram order")
    shift = np.int64(2 * (HEALPIX_ORDER - order))
    pixels = np.asarray(hp29, dtype=np.int64) >> shift
    return np.bincount(pixels, minlength=n_pixels(order)).astype(np.int64)


def margin_search_order(margin_arcsec: float) -> int:
    """Finest order whose pixels are wide enough that a margin never reaches past neighbours.

    Every point within ``margin_arcsec`` of a position lies in the position's pixel at this
    order or in one of its (up to 8) neighbours.
    """
    if not margin_arcsec > 0:
        raise ValueError(f"margin_arcsec must be > 0, got {margin_arcsec}")
    for order in range(HEALPIX_ORDER, -1, -1):
        side_arcsec = math.sqrt(4.0 * math.pi / n_pixels(order)) * _ARCSEC_PER_RADIAN
        if side_arcsec >= _MARGIN_PIXEL_SIDES * margin_arcsec:
            return order
    raise ValueError(
        f"margin_arcsec must be at most {side_arcsec / _MARGIN_PIXEL_SIDES:.0f} "
        f"(an order-0 pixel side / {_MARGIN_PIXEL_SIDES:g}), got {margin_arcsec}"
    )


def _nested_counts(
    counts: npt.NDArray[np.int64], top_order: int, bottom_order: int
) -> list[npt.NDArray[np.int64]]:
    """Counts at every order from ``bottom_order`` to ``top_order``, index = order - bottom."""
    levels = [counts]
    for _ in range(top_order - bottom_order):
        levels.append(levels[-1].reshape(-1, 4).sum(axis=1))
    return levels[::-1]


@dataclass(frozen=True, eq=False)
class Tiles:
    """A disjoint set of HEALPix tiles, in breadth-first order.

    Parameters
    ----------
    orders : array_like of int, shape (n,)
        HEALPix order of each tile.
    pixels : array_like of int, shape (n,)
        Nested pixel index of each tile at its order.
    row_counts : array_like of int, shape (n,), optional
        Rows in each tile, when known (from the histogram the tiles were cut from).

    The constructor sorts the tiles breadth-first (by their first `_healpix_29` index) and
    checks that they do not overlap.
    """

    orders: npt.NDArray[np.int64]
    pixels: npt.NDArray[np.int64]
    row_counts: npt.NDArray[np.int64] | None = None
    #: First `_healpix_29` index of each tile, shape (n,), increasing.
    starts29: npt.NDArray[np.int64] = field(init=False, repr=False)
    #: One past the last `_healpix_29` index of each tile, shape (n,), increasing.
    ends29: npt.NDArray[np.int64] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        orders = np.asarray(self.orders, dtype=np.int64).reshape(-1)
        pixels = np.asarray(self.pixels, dtype=np.int64).reshape(-1)
        if orders.shape != pixels.shape:
            raise ValueError(
                f"orders and pixels must have one value per tile, got {orders.size} orders "
                f"and {pixels.size} pixels"
            )
        if orders.size and (orders.min() < 0 or orders.max() > HEALPIX_ORDER):
            raise ValueError(f"tile orders must be in 0..{HEALPIX_ORDER}, got {orders.min()}..")
        if pixels.size and (pixels.min() < 0 or np.any(pixels >= 12 * 4**orders)):
            raise ValueError("tile pixels must be in 0..12*4**order - 1")
        shift = 2 * (HEALPIX_ORDER - orders)
        starts = pixels << shift
        ends = (pixels + 1) << shift
        order_by = np.argsort(starts, kind="stable")
        starts, ends = starts[order_by], ends[order_by]
        if np.any(starts[1:] < ends[:-1]):
            bad = int(np.flatnonzero(starts[1:] < ends[:-1])[0])
            raise ValueError(
                "tiles must be disjoint: "
                f"(order {orders[order_by][bad]}, pixel {pixels[order_by][bad]}) overlaps "
                f"(order {orders[order_by][bad + 1]}, pixel {pixels[order_by][bad + 1]})"
            )
        counts = None
        if self.row_counts is not None:
            counts = np.asarray(self.row_counts, dtype=np.int64).reshape(-1)
            if counts.shape != orders.shape:
                raise ValueError(
                    f"row_counts must have one value per tile ({orders.size}), got {counts.size}"
                )
            counts = counts[order_by]
        object.__setattr__(self, "orders", orders[order_by])
        object.__setattr__(self, "pixels", pixels[order_by])
        object.__setattr__(self, "row_counts", counts)
        object.__setattr__(self, "starts29", starts)
        object.__setattr__(self, "ends29", ends)
        for array in (self.orders, self.pixels, self.starts29, self.ends29, counts):
            if array is not None:
                array.setflags(write=False)

    # --- construction ---
    @classmethod
    def from_counts(
        cls,
        hp29_counts_at_order: npt.ArrayLike,
        histogram_order: int,
        max_rows: int,
        min_order: int = 0,
        max_order: int | None = None,
    ) -> Tiles:
        """Cut tiles from a count histogram, splitting each pixel until it holds at most max_rows.

        The same tiles as hats' ``generate_alignment`` (without dropping empty siblings), kept
        hand-written because it is about 50 times faster (bench/library_alternatives.py: 6 ms
        against 308 ms at order 8, 0.1 s against 4.7 s at order 10), vectorised:
        walking from ``min_order`` down, a non-empty pixel with at most ``max_rows`` rows whose
        ancestors are not tiles becomes a tile. At ``max_order`` every non-empty pixel left
        becomes a tile, even above ``max_rows``. Empty pixels get no tile.

        Parameters
        ----------
        hp29_counts_at_order : array_like of int, shape (12 * 4**histogram_order,)
            Rows per nested pixel at ``histogram_order`` (see `histogram`).
        histogram_order : int
            Order of the histogram.
        max_rows : int
            Largest number of rows a tile should hold.
        min_order : int
            Coarsest tile order allowed (limits the area of sparse tiles).
        max_order : int, optional
            Finest tile order allowed; at most ``histogram_order`` (the default).

        Returns
        -------
        Tiles
            The tiles, with their row counts.
        """
        _check_order(histogram_order, "histogram_order")
        counts = np.asarray(hp29_counts_at_order, dtype=np.int64)
        if counts.shape != (n_pixels(histogram_order),):
            raise ValueError(
                f"hp29_counts_at_order must have 12 * 4**{histogram_order} = "
                f"{n_pixels(histogram_order)} values, got shape {counts.shape}"
            )
        if max_rows < 1:
            raise ValueError(f"max_rows must be >= 1, got {max_rows}")
        max_order = histogram_order if max_order is None else max_order
        if not 0 <= min_order <= max_order <= histogram_order:
            raise ValueError(
                "orders must satisfy 0 <= min_order <= max_order <= histogram_order, got "
                f"min_order={min_order}, max_order={max_order}, histogram_order={histogram_order}"
            )
        if max_order < histogram_order:
            counts = _nested_counts(counts, histogram_order, max_order)[0]
        levels = _nested_counts(counts, max_order, min_order)

        orders, pixels, tile_counts = [], [], []
        covered = np.zeros(n_pixels(min_order), dtype=bool)
        for order, level in enumerate(levels, start=min_order):
            if order > min_order:
                covered = np.repeat(covered, 4)
            is_tile = ~covered & (level > 0)
            if order < max_order:
                is_tile &= level <= max_rows
            tile_pixels = np.flatnonzero(is_tile)
            orders.append(np.full(tile_pixels.size, order, dtype=np.int64))
            pixels.append(tile_pixels.astype(np.int64))
            tile_counts.append(level[tile_pixels])
            covered |= is_tile
        return cls(np.concatenate(orders), np.concatenate(pixels), np.concatenate(tile_counts))

    # --- access ---
    def __len__(self) -> int:
        return int(self.orders.size)

    @property
    def max_order(self) -> int:
        """Highest tile order (0 when there are no tiles)."""
        return int(self.orders.max()) if self.orders.size else 0

    def order_pixel(self, index: int) -> tuple[int, int]:
        """``(order, pixel)`` of the tile at position ``index``."""
        return int(self.orders[index]), int(self.pixels[index])

    def to_arrays(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Copies of the tile orders and pixels, int64 arrays of shape (n,)."""
        return self.orders.copy(), self.pixels.copy()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Tiles):
            return NotImplemented
        return np.array_equal(self.orders, other.orders) and np.array_equal(
            self.pixels, other.pixels
        )

    __hash__ = None  # type: ignore[assignment]

    # --- lookups ---
    def tile_index(self, hp29: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Position in this list of each row's tile.

        Parameters
        ----------
        hp29 : array_like of int64, shape (n,)
            `_healpix_29` of each row.

        Returns
        -------
        numpy.ndarray of int64, shape (n,)
            Index of the tile holding each row, or -1 where no tile covers it.
        """
        hp29 = np.asarray(hp29, dtype=np.int64)
        index = np.searchsorted(self.starts29, hp29, side="right").astype(np.int64) - 1
        inside = index >= 0
        inside[inside] = hp29[inside] < self.ends29[index[inside]]
        index[~inside] = -1
        return index

    def margin_tile_indices(
        self, hp29: npt.ArrayLike, margin_arcsec: float
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Every other tile that may lie within ``margin_arcsec`` of each row.

        A superset: it never misses a tile closer than the margin, and may add tiles up to two
        pixel sides away at `margin_search_order` (under 16 margins). The search takes the row's
        pixel and its neighbours at that order and lists the tiles overlapping them.

        Parameters
        ----------
        hp29 : array_like of int64, shape (n,)
            `_healpix_29` of each row.
        margin_arcsec : float
            Margin, arcsec.

        Returns
        -------
        row_index : numpy.ndarray of int64, shape (m,)
            Row (position in ``hp29``), increasing.
        tile_index : numpy.ndarray of int64, shape (m,)
            A tile other than the row's own, in this list; each (row, tile) pair once.
        """
        import cdshealpix.nested

        hp29 = np.asarray(hp29, dtype=np.int64)
        order = margin_search_order(margin_arcsec)
        shift = np.int64(2 * (HEALPIX_ORDER - order))
        empty = np.empty(0, dtype=np.int64)
        if hp29.size == 0 or len(self) == 0:
            return empty, empty.copy()
        neighbours = cdshealpix.nested.neighbours(hp29 >> shift, order).astype(np.int64)
        rows = np.repeat(np.arange(hp29.size, dtype=np.int64), neighbours.shape[1])
        cells = neighbours.reshape(-1)
        keep = cells >= 0
        rows, cells = rows[keep], cells[keep]
        # Tiles overlapping each cell's order-29 range [cell << shift, (cell + 1) << shift).
        first = np.searchsorted(self.ends29, cells << shift, side="right")
        stop = np.searchsorted(self.starts29, (cells + 1) << shift, side="left")
        n_overlaps = np.maximum(stop - first, 0)
        rows = np.repeat(rows, n_overlaps)
        starts = np.repeat(first, n_overlaps)
        offsets = np.arange(rows.size, dtype=np.int64) - np.repeat(
            np.cumsum(n_overlaps) - n_overlaps, n_overlaps
        )
        tiles = starts + offsets
        other = tiles != self.tile_index(hp29)[rows]
        pairs = np.unique(rows[other] * np.int64(len(self)) + tiles[other])
        return pairs // len(self), pairs % len(self)
