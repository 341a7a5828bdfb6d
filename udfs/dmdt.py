"""dm-dt images (Mahabal et al. 2017, arXiv:1709.06257) of light curves in the Arrow list layout.

For a light curve of n epochs sorted by time, every pair i < j gives dt = t_j - t_i >= 0 (days) and
dm = m_j - m_i (mag, later minus earlier). The pairs are binned into a 2-D histogram of
(n_dm, n_dt) cells. Cells are half-open, [lo, hi) on both axes; pairs outside the grid are not
counted. A pair with equal times (dt = 0) falls in the first dt cell when the first dt edge is 0.

Light curves come flat: ``t[offsets[k]:offsets[k+1]]`` is light curve k (the Arrow list layout), so
a batch of millions of light curves needs no per-light-curve Python object. Times must be float64
days; absolute epochs never go through float32, whose spacing is minutes at MJD 59000.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numba as nb
import numpy as np
import numpy.typing as npt

#: Mahabal et al. 2017 (CRTS) grid, dm edges in mag.
_MAHABAL2017_DM_EDGES_MAG = (
    -8, -5, -3, -2.5, -2, -1.5, -1, -0.5, -0.3, -0.2, -0.1, 0,
    0.1, 0.2, 0.3, 0.5, 1, 1.5, 2, 2.5, 3, 5, 8,
)  # fmt: skip
#: Mahabal et al. 2017 (CRTS) grid, dt edges in days.
_MAHABAL2017_DT_EDGES_DAYS = (
    0, 1 / 145, 2 / 145, 3 / 145, 4 / 145, 1 / 25, 2 / 25, 3 / 25, 1.5, 2.5, 3.5, 4.5, 5.5,
    7, 10, 20, 30, 60, 90, 120, 240, 600, 960, 2000, 4000,
)  # fmt: skip
#: SCoPe production grid (ZwickyTransientFacility/scope-ml config.defaults.yaml, dmdt_ints,
#: commit 67b0cfb, MIT licence): 26 x 26 cells.
_SCOPE_DM_EDGES_MAG = (
    -8, -4.5, -3, -2.5, -2, -1.5, -1.25, -0.75, -0.5, -0.3, -0.2, -0.1, -0.05, 0,
    0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.25, 1.5, 2, 2.5, 3, 4.5, 8,
)  # fmt: skip
_SCOPE_DT_EDGES_DAYS = (
    0.0, 0.02759, 0.04, 0.08, 0.12, 0.3, 0.75, 1, 1.5, 2.5, 3.5, 4.5, 5.5, 7, 10, 20, 30,
    45, 60, 90, 120, 180, 240, 360, 500, 650, 2000,
)  # fmt: skip

Norm = Literal["mahabal", "l2", "max", "dt_column", "none"]
NORMS: tuple[str, ...] = ("mahabal", "l2", "max", "dt_column", "none")


@dataclass(frozen=True)
class DmDtGrid:
    """Edges of a dm-dt histogram.

    Parameters
    ----------
    dt_edges_days : array of float64, shape (n_dt + 1,)
        Strictly increasing time-difference edges, days, first edge >= 0.
    dm_edges_mag : array of float64, shape (n_dm + 1,)
        Strictly increasing magnitude-difference edges, mag.
    name : str
        Name recorded in the output provenance.
    """

    dt_edges_days: npt.NDArray[np.float64] = field(repr=False)
    dm_edges_mag: npt.NDArray[np.float64] = field(repr=False)
    name: str = "custom"

    def __post_init__(self) -> None:
        dt = np.ascontiguousarray(self.dt_edges_days, dtype=np.float64)
        dm = np.ascontiguousarray(self.dm_edges_mag, dtype=np.float64)
        for label, edges in (("dt_edges_days", dt), ("dm_edges_mag", dm)):
            if edges.ndim != 1 or edges.size < 2:
                raise ValueError(f"DmDtGrid {label}: need at least 2 edges, got {edges.size}")
            if not np.all(np.isfinite(edges)):
                raise ValueError(f"DmDtGrid {label}: edges must be finite")
            if not np.all(np.diff(edges) > 0):
                raise ValueError(f"DmDtGrid {label}: edges must be strictly increasing")
        if dt[0] < 0:
            raise ValueError(f"DmDtGrid dt_edges_days: first edge must be >= 0, got {dt[0]}")
        object.__setattr__(self, "dt_edges_days", dt)
        object.__setattr__(self, "dm_edges_mag", dm)

    @property
    def shape(self) -> tuple[int, int]:
        """Image shape (n_dm, n_dt)."""
        return self.dm_edges_mag.size - 1, self.dt_edges_days.size - 1

    @classmethod
    def mahabal2017(cls) -> DmDtGrid:
        """The CRTS grid of Mahabal et al. 2017: 22 dm x 24 dt cells."""
        return cls(
            np.array(_MAHABAL2017_DT_EDGES_DAYS, dtype=np.float64),
            np.array(_MAHABAL2017_DM_EDGES_MAG, dtype=np.float64),
            "mahabal2017",
        )

    @classmethod
    def scope(cls) -> DmDtGrid:
        """SCoPe's production grid: 26 dm x 26 dt cells."""
        return cls(
            np.array(_SCOPE_DT_EDGES_DAYS, dtype=np.float64),
            np.array(_SCOPE_DM_EDGES_MAG, dtype=np.float64),
            "scope",
        )

    @classmethod
    def from_edges(
        cls, dt_edges_days: npt.ArrayLike, dm_edges_mag: npt.ArrayLike, name: str = "custom"
    ) -> DmDtGrid:
        """Build a grid from any edges (days, mag)."""
        return cls(np.asarray(dt_edges_days), np.asarray(dm_edges_mag), name)

    @classmethod
    def log_linear(
        cls,
        dt_min_days: float,
        dt_max_days: float,
        n_dt: int,
        dm_max_mag: float,
        n_dm: int,
        name: str | None = None,
    ) -> DmDtGrid:
        """Log-spaced dt edges from 0 (the first cell is [0, dt_min)), linear dm in +-dm_max."""
        if not 0 < dt_min_days < dt_max_days:
            raise ValueError(
                f"log_linear: need 0 < dt_min_days < dt_max_days, got {dt_min_days}, {dt_max_days}"
            )
        dt = np.concatenate([[0.0], np.geomspace(dt_min_days, dt_max_days, n_dt)])
        dm = np.linspace(-dm_max_mag, dm_max_mag, n_dm + 1)
        return cls(dt, dm, name or f"loglin_dt{n_dt}_dm{n_dm}")

    @classmethod
    def named(cls, name: str) -> DmDtGrid:
        """Look up a built-in grid by name (``mahabal2017`` or ``scope``)."""
        builders = {"mahabal2017": cls.mahabal2017, "scope": cls.scope}
        if name not in builders:
            raise ValueError(f"unknown dm-dt grid {name!r}; known: {sorted(builders)}")
        return builders[name]()


@nb.njit(cache=True, nogil=True)
def _bin_pairs(t, m, dt_edges, dm_edges, out):
    """Add the pairs of one time-sorted light curve to ``out`` (n_dm, n_dt)."""
    n = t.size
    dt_lo = dt_edges[0]
    dt_hi = dt_edges[-1]
    dm_lo = dm_edges[0]
    dm_hi = dm_edges[-1]
    for i in range(n - 1):
        ti = t[i]
        mi = m[i]
        k = 0
        for j in range(i + 1, n):
            dt = t[j] - ti
            if dt >= dt_hi:
                break
            if dt < dt_lo:
                continue
            while dt >= dt_edges[k + 1]:
                k += 1
            dm = m[j] - mi
            if dm < dm_lo or dm >= dm_hi:
                continue
            b = np.searchsorted(dm_edges, dm, side="right") - 1
            out[b, k] += 1


@nb.njit(cache=True, parallel=True)
def _counts_multiband(t, m, channel, offsets, n_channels, dt_edges, dm_edges):
    n_lc = offsets.size - 1
    n_dm = dm_edges.size - 1
    n_dt = dt_edges.size - 1
    out = np.zeros((n_lc, n_dm, n_dt, n_channels), dtype=np.int32)
    for k in nb.prange(n_lc):
        lo = offsets[k]
        hi = offsets[k + 1]
        if hi - lo < 2:
            continue
        tk = t[lo:hi]
        mk = m[lo:hi]
        ck = channel[lo:hi]
        buf = np.zeros((n_dm, n_dt), dtype=np.int32)
        for c in range(n_channels):
            sel = np.flatnonzero(ck == c)
            if sel.size < 2:
                continue
            tc = tk[sel]
            mc = mk[sel]
            order = np.argsort(tc, kind="mergesort")
            buf[:, :] = 0
            _bin_pairs(tc[order], mc[order], dt_edges, dm_edges, buf)
            out[k, :, :, c] = buf
    return out


def _check_flat(
    t: npt.ArrayLike, mag: npt.ArrayLike, offsets: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    t = np.asarray(t)
    if t.dtype != np.float64:
        # float32 absolute times lose minutes; callers must convert (and offset) in float64.
        raise TypeError(f"dmdt: t must be float64 days, got dtype {t.dtype}")
    mag = np.ascontiguousarray(mag, dtype=np.float64)
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    if t.shape != mag.shape or t.ndim != 1:
        raise ValueError(f"dmdt: t and mag must be 1-D of equal length, got {t.shape}, {mag.shape}")
    if offsets.ndim != 1 or offsets.size < 1 or offsets[0] != 0 or offsets[-1] != t.size:
        raise ValueError("dmdt: offsets must start at 0 and end at len(t)")
    if np.any(np.diff(offsets) < 0):
        raise ValueError("dmdt: offsets must be non-decreasing")
    if not np.all(np.isfinite(t)):
        raise ValueError(f"dmdt: t has {np.count_nonzero(~np.isfinite(t))} non-finite values")
    if not np.all(np.isfinite(mag)):
        raise ValueError(f"dmdt: mag has {np.count_nonzero(~np.isfinite(mag))} non-finite values")
    return np.ascontiguousarray(t), mag, offsets


def dmdt_counts_multiband(
    t: npt.ArrayLike,
    mag: npt.ArrayLike,
    channel: npt.ArrayLike,
    offsets: npt.ArrayLike,
    grid: DmDtGrid,
    n_channels: int,
) -> npt.NDArray[np.int32]:
    """Pair counts per band channel.

    Parameters
    ----------
    t : float64 array, shape (n_epochs,)
        Times, days, flat over all light curves.
    mag : float array, shape (n_epochs,)
        Magnitudes, mag.
    channel : integer array, shape (n_epochs,)
        Image channel of each epoch (0 .. n_channels - 1); epochs of other values are ignored.
    offsets : int64 array, shape (n_lc + 1,)
        Light curve k is ``t[offsets[k]:offsets[k + 1]]``.
    grid : DmDtGrid
    n_channels : int

    Returns
    -------
    int32 array, shape (n_lc, n_dm, n_dt, n_channels)
    """
    t, mag, offsets = _check_flat(t, mag, offsets)
    channel = np.ascontiguousarray(channel, dtype=np.int8)
    if channel.shape != t.shape:
        raise ValueError(f"dmdt: channel must have the shape of t, got {channel.shape}")
    return _counts_multiband(
        t, mag, channel, offsets, np.int64(n_channels), grid.dt_edges_days, grid.dm_edges_mag
    )


def dmdt_counts(
    t: npt.ArrayLike, mag: npt.ArrayLike, offsets: npt.ArrayLike, grid: DmDtGrid
) -> npt.NDArray[np.int32]:
    """Pair counts of single-band light curves, int32 array of shape (n_lc, n_dm, n_dt)."""
    zeros = np.zeros(np.shape(t), dtype=np.int8)
    return dmdt_counts_multiband(t, mag, zeros, offsets, grid, 1)[..., 0]


def normalize_counts(counts: npt.NDArray[np.int32], norm: Norm = "mahabal") -> npt.NDArray:
    """Normalise pair counts of shape (..., n_dm, n_dt, n_channels) per image and channel.

    ``mahabal``: uint8 ``floor(255 * count / n_pairs + 0.99999)`` with n_pairs = n(n-1)/2, the
    number of pairs of the channel's light curve (Mahabal et al. 2017); computed here from the
    in-grid total, which equals n_pairs when every pair is inside the grid.
    ``l2``: float32 count / sqrt(sum count^2) (SCoPe). ``max``: float32 count / max count.
    ``dt_column``: float32, each dt column divided by its sum. ``none``: the counts as float32.
    All-zero channels stay zero.
    """
    c = counts.astype(np.float64)
    axes = (-3, -2)
    if norm == "mahabal":
        total = c.sum(axis=axes, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            img = np.floor(255.0 * c / total + 0.99999)
        img = np.where(total > 0, img, 0.0)
        img = np.where(c > 0, img, 0.0)
        return np.minimum(img, 255).astype(np.uint8)
    if norm == "l2":
        scale = np.sqrt((c * c).sum(axis=axes, keepdims=True))
    elif norm == "max":
        scale = c.max(axis=axes, keepdims=True)
    elif norm == "dt_column":
        scale = c.sum(axis=-3, keepdims=True)
    elif norm == "none":
        return c.astype(np.float32)
    else:
        raise ValueError(f"unknown dm-dt norm {norm!r}; known: {NORMS}")
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(scale > 0, c / scale, 0.0)
    return out.astype(np.float32)


def dmdt_images(
    t: npt.ArrayLike,
    mag: npt.ArrayLike,
    channel: npt.ArrayLike,
    offsets: npt.ArrayLike,
    grid: DmDtGrid,
    n_channels: int,
    norm: Norm = "mahabal",
) -> npt.NDArray:
    """Normalised multi-band dm-dt images, shape (n_lc, n_dm, n_dt, n_channels).

    A channel whose band has fewer than 2 epochs is all zeros.
    """
    counts = dmdt_counts_multiband(t, mag, channel, offsets, grid, n_channels)
    return normalize_counts(counts, norm)
