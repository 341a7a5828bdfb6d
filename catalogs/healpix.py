"""HEALPix indices: the order-29 nested index `_healpix_29` and coarse tiles derived from it."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from catalogs.schema import HEALPIX_ORDER


def healpix_29(ra_deg: npt.ArrayLike, dec_deg: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Nested order-29 HEALPix index of each position (ICRS degrees), as int64.

    hats' ``compute_spatial_index``: the `_healpix_29` column of hats and lsdb. RA wraps (any
    value); positions must be finite with -90 <= dec <= 90.
    """
    # hats (with mocpy and nested-pandas) takes seconds to import: not at `varsky --help`.
    from hats.pixel_math.spatial_index import compute_spatial_index

    ra = np.asarray(ra_deg, dtype=np.float64)
    dec = np.asarray(dec_deg, dtype=np.float64)
    return compute_spatial_index(ra, dec, HEALPIX_ORDER).astype(np.int64, copy=False)


def tile_of(healpix29: npt.ArrayLike, order: int) -> npt.NDArray[np.int64]:
    """Nested pixel of a coarser ``order`` containing each order-29 index (a bit shift)."""
    return np.asarray(healpix29, dtype=np.int64) >> np.int64(tile_shift_bits(order))


def tile_shift_bits(order: int) -> int:
    """Bits to shift `_healpix_29` right to get the pixel at ``order`` (for Spark expressions)."""
    if not 0 <= order <= HEALPIX_ORDER:
        raise ValueError(f"tile order must be in 0..{HEALPIX_ORDER}, got {order}")
    return 2 * (HEALPIX_ORDER - order)
