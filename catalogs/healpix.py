"""HEALPix indices: the order-29 nested index `_healpix_29` and coarse tiles derived from it."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from catalogs.schema import HEALPIX_ORDER


def healpix_29(ra_deg: npt.ArrayLike, dec_deg: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Nested order-29 HEALPix index of each position (ICRS degrees), as int64.

    The `_healpix_29` column of hats and lsdb, bit for bit the same as hats'
    ``compute_spatial_index`` (tests/test_healpix.py). RA wraps (any value); positions must be
    finite with -90 <= dec <= 90. cdshealpix's kernel is called directly on one thread: its
    wrapper makes astropy angles and starts a thread per CPU on every call, which costs more
    than the kernel on a file's rows and oversubscribes the cores Spark gives each task.
    """
    from cdshealpix import cdshealpix as kernel

    ra = np.asarray(ra_deg, dtype=np.float64).ravel()
    dec = np.asarray(dec_deg, dtype=np.float64).ravel()
    if ra.shape != dec.shape:
        raise ValueError(f"ra and dec differ in length: {ra.size} and {dec.size}")
    bad = ~(np.isfinite(ra) & (np.abs(dec) <= 90))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"position {i} is not on the sky: ra={ra[i]}, dec={dec[i]} deg")
    # astropy's Longitude wraps into [0, 360) deg before its radians: the same values here.
    lon = np.deg2rad(np.mod(ra, 360.0))
    lat = np.deg2rad(dec)
    index = np.empty(ra.size, dtype=np.uint64)
    dx, dy = np.empty(ra.size), np.empty(ra.size)
    depth = np.full(ra.size, HEALPIX_ORDER, dtype=np.uint8)
    kernel.lonlat_to_healpix(depth, lon, lat, index, dx, dy, np.uint16(1))
    return index.view(np.int64)


def tile_of(healpix29: npt.ArrayLike, order: int) -> npt.NDArray[np.int64]:
    """Nested pixel of a coarser ``order`` containing each order-29 index (a bit shift)."""
    return np.asarray(healpix29, dtype=np.int64) >> np.int64(tile_shift_bits(order))


def tile_shift_bits(order: int) -> int:
    """Bits to shift `_healpix_29` right to get the pixel at ``order`` (for Spark expressions)."""
    if not 0 <= order <= HEALPIX_ORDER:
        raise ValueError(f"tile order must be in 0..{HEALPIX_ORDER}, got {order}")
    return 2 * (HEALPIX_ORDER - order)
