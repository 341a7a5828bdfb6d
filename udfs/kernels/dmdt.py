"""dm-dt images (Mahabal et al. 2017, arXiv:1709.06257) of light curves in the Arrow list layout.

For a light curve of n epochs in one band, sorted by time, every pair i < j gives
dt = t_j - t_i >= 0 (days) and dm = m_j - m_i (mag, later minus earlier). The pairs are binned into
a 2-D histogram of (n_dm, n_dt) cells. Cells are half-open, [lo, hi) on both axes; pairs outside
the grid are not counted. The counts are identical to light-curve's
``DmDt(dt, dm, dt_type="asis", dm_type="asis").points(t, m).T`` (light-curve puts dt first).

Light curves come flat: ``t[offsets[k]:offsets[k+1]]`` is light curve k (the Arrow list layout), so
a batch of millions of light curves needs no per-light-curve Python object. Multi-band light curves
carry one image channel per band (``channel``); pairs are only formed within a channel.

Rules
-----
- Times must be float64 days; absolute epochs never go through float32, whose spacing is minutes at
  MJD 59000 (a known SCoPe bug: float32 JD turns same-night pairs into dt = 0 or 0.25 d).
- NaN or inf in ``t`` or ``mag`` is rejected before the kernel, with the count and the
  first index; drop such epochs upstream.
- Epochs need not be sorted: each channel of each light curve is sorted by time inside the kernel
  with a stable sort (skipped when it is already sorted, the usual case).
- Equal times (dt = 0): the pair is ordered as in the input, so dm = m_later - m_earlier where
  "later" is the epoch that comes later in the input (of that channel). With the first dt edge at 0
  the pair counts in the first dt cell; with a first dt edge > 0 it is outside the grid. light-curve
  refuses equal times, so this rule is ours.
"""

from __future__ import annotations

import math
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
#: The built-in grids by name: (dt edges in days, dm edges in mag).
_NAMED_EDGES = {
    "mahabal2017": (_MAHABAL2017_DT_EDGES_DAYS, _MAHABAL2017_DM_EDGES_MAG),
    "scope": (_SCOPE_DT_EDGES_DAYS, _SCOPE_DM_EDGES_MAG),
}

# (SCoPe's l2 and other float norms went: the classifier takes mahabal images only.)
Norm = Literal["mahabal", "none"]
NORMS: tuple[str, ...] = ("mahabal", "none")

#: Longest light curve accepted: n(n-1)/2 pairs of 65,536 epochs still fit an int32 cell count.
MAX_EPOCHS_PER_LC = 65_536
#: Largest number of image channels (channel codes are stored as int8 in the kernel).
_MAX_CHANNELS = 127
#: Size cap of the dm lookup table (entries); coarser tables stay exact, only slower.
_DM_LUT_MAX_SIZE = 1 << 16
#: |z| beyond which the normal CDF is taken as exactly 0 or 1 (Phi(-9) = 1.1e-19, far below
#: the float32 resolution of the output).
_GAUSS_Z_CUT = 9.0


@dataclass(frozen=True, eq=False)
class DmDtGrid:
    """Edges of a dm-dt histogram.

    Cells are half-open, ``[lo, hi)`` on both axes.

    Parameters
    ----------
    dt_edges_days : array of float64, shape (n_dt + 1,)
        Strictly increasing time-difference edges, days, first edge >= 0.
    dm_edges_mag : array of float64, shape (n_dm + 1,)
        Strictly increasing magnitude-difference edges, mag.
    name : str
        Name recorded in the output provenance.

    Examples
    --------
    >>> DmDtGrid.from_edges([0.0, 1.0, 10.0], [-1.0, 0.0, 1.0], "tiny").shape
    (2, 2)
    """

    dt_edges_days: npt.NDArray[np.float64] = field(repr=False)
    dm_edges_mag: npt.NDArray[np.float64] = field(repr=False)
    name: str = "custom"

    def __post_init__(self) -> None:
        dt = np.array(self.dt_edges_days, dtype=np.float64)
        dm = np.array(self.dm_edges_mag, dtype=np.float64)
        for label, edges in (("dt_edges_days", dt), ("dm_edges_mag", dm)):
            if edges.ndim != 1 or edges.size < 2:
                raise ValueError(
                    f"DmDtGrid {label}: need a 1-D array of at least 2 edges, "
                    f"got shape {edges.shape}"
                )
            if not np.all(np.isfinite(edges)):
                raise ValueError(f"DmDtGrid {label}: edges must be finite, got {edges.tolist()}")
            steps = np.diff(edges)
            if not np.all(steps > 0):
                i = int(np.flatnonzero(steps <= 0)[0])
                raise ValueError(
                    f"DmDtGrid {label}: edges must be strictly increasing, got edge {i + 1} = "
                    f"{edges[i + 1]} after edge {i} = {edges[i]}"
                )
            edges.flags.writeable = False
            object.__setattr__(self, label, edges)
        if dt[0] < 0:
            raise ValueError(f"DmDtGrid dt_edges_days: first edge must be >= 0, got {dt[0]}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DmDtGrid):
            return NotImplemented
        return (
            self.name == other.name
            and np.array_equal(self.dt_edges_days, other.dt_edges_days)
            and np.array_equal(self.dm_edges_mag, other.dm_edges_mag)
        )

    def __hash__(self) -> int:
        return hash((self.name, self.dt_edges_days.tobytes(), self.dm_edges_mag.tobytes()))

    @property
    def shape(self) -> tuple[int, int]:
        """Image shape (n_dm, n_dt)."""
        return self.dm_edges_mag.size - 1, self.dt_edges_days.size - 1

    @classmethod
    def mahabal2017(cls) -> DmDtGrid:
        """The CRTS grid of Mahabal et al. 2017: 22 dm x 24 dt cells."""
        return cls.named("mahabal2017")

    @classmethod
    def scope(cls) -> DmDtGrid:
        """SCoPe's production grid: 26 dm x 26 dt cells."""
        return cls.named("scope")

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
        """Log-spaced dt edges after a first cell [0, dt_min_days); linear dm in +-dm_max_mag.

        The dt edges are 0 followed by ``n_dt`` log-spaced values from ``dt_min_days`` to
        ``dt_max_days`` (so ``n_dt`` cells); the dm edges are ``n_dm + 1`` linear values.
        """
        if not 0 < dt_min_days < dt_max_days:
            raise ValueError(
                f"log_linear: need 0 < dt_min_days < dt_max_days, got {dt_min_days}, {dt_max_days}"
            )
        if n_dt < 2 or n_dm < 1:
            raise ValueError(f"log_linear: need n_dt >= 2 and n_dm >= 1, got {n_dt}, {n_dm}")
        if not dm_max_mag > 0:
            raise ValueError(f"log_linear: need dm_max_mag > 0, got {dm_max_mag}")
        dt = np.concatenate([[0.0], np.geomspace(dt_min_days, dt_max_days, n_dt)])
        dm = np.linspace(-dm_max_mag, dm_max_mag, n_dm + 1)
        return cls(dt, dm, name or f"loglin_dt{n_dt}_dm{n_dm}")

    @classmethod
    def equalized(
        cls,
        t_days: npt.ArrayLike,
        mag: npt.ArrayLike,
        offsets: npt.ArrayLike,
        channel: npt.ArrayLike | None = None,
        n_dt: int = 24,
        n_dm: int = 22,
        pairs_per_lightcurve: int = 2000,
        seed: int = 0,
        name: str = "equalized",
    ) -> DmDtGrid:
        """A grid whose cells hold equal shares of a training set's pairs, on each axis.

        The seed's question, "How to choose bins? Histogram equalization in both axes?": the dt
        edges are quantiles of the pairs' time differences and the dm edges quantiles of their
        magnitude differences (pairs i < j within one band of one light curve, later minus
        earlier), so every dt column and every dm row holds about the same number of pairs.
        The first dt edge is 0 and the outer edges enclose every pair seen.

        Parameters
        ----------
        t_days, mag : float arrays
            Flat times (days) and magnitudes (mag) of the training light curves.
        offsets : int array, shape (n_lc + 1,)
        channel : int array, optional
            Band of each epoch; pairs are taken within a band. All one band if omitted.
        n_dt, n_dm : int
            Cells on each axis.
        pairs_per_lightcurve : int
            At most this many pairs drawn at random from each light curve, so that long light
            curves do not set the grid alone.
        seed : int
        name : str
        """
        t = np.asarray(t_days, dtype=np.float64)
        m = np.asarray(mag, dtype=np.float64)
        offsets = np.asarray(offsets, dtype=np.int64)
        band = np.zeros(t.size, np.int64) if channel is None else np.asarray(channel, np.int64)
        if n_dt < 2 or n_dm < 2:
            raise ValueError(f"equalized: need n_dt >= 2 and n_dm >= 2, got {n_dt}, {n_dm}")
        rng = np.random.default_rng(seed)
        dts, dms = [], []
        for k in range(offsets.size - 1):
            lo, hi = offsets[k], offsets[k + 1]
            for b in np.unique(band[lo:hi]):
                idx = lo + np.flatnonzero(band[lo:hi] == b)
                idx = idx[np.argsort(t[idx], kind="stable")]
                if idx.size < 2:
                    continue
                i, j = np.triu_indices(idx.size, k=1)
                if i.size > pairs_per_lightcurve:
                    pick = rng.choice(i.size, pairs_per_lightcurve, replace=False)
                    i, j = i[pick], j[pick]
                dts.append(t[idx[j]] - t[idx[i]])
                dms.append(m[idx[j]] - m[idx[i]])
        if not dts:
            raise ValueError("equalized: no light curve has two epochs in one band")
        dt, dm = np.concatenate(dts), np.concatenate(dms)
        if not (np.isfinite(dt).all() and np.isfinite(dm).all()):
            raise ValueError("equalized: times and magnitudes must be finite")

        def quantile_edges(values, n, low):
            inner = np.quantile(values, np.arange(1, n) / n)
            top = values.max()
            edges = np.concatenate([[low], inner, [top + max(abs(top), 1.0) * 1e-6]])
            # Ties (many pairs at one lag) would give empty cells: keep edges strictly apart.
            for e in range(1, edges.size):
                if edges[e] <= edges[e - 1]:
                    edges[e] = np.nextafter(edges[e - 1], np.inf) + 1e-9
            return edges

        return cls(
            quantile_edges(dt, n_dt, 0.0),
            quantile_edges(dm, n_dm, dm.min() - 1e-6),
            name,
        )

    @classmethod
    def named(cls, name: str) -> DmDtGrid:
        """Look up a built-in grid by name (``mahabal2017`` or ``scope``)."""
        if name not in _NAMED_EDGES:
            raise ValueError(f"unknown dm-dt grid {name!r}; known: {sorted(_NAMED_EDGES)}")
        return cls(*_NAMED_EDGES[name], name)


# --------------------------------------------------------------------------------------------
# dm cell lookup: a table finer than the narrowest dm cell, then an exact correction.


def _dm_lookup_table(dm_edges: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.int32], float]:
    """Return (lut, inv_step): ``lut[q]`` is the cell of ``dm_edges[0] + q / inv_step``.

    The step is half the narrowest cell, so at most one edge lies between any dm and the table
    point below it: the true cell is ``lut[q]`` or a neighbour, and ``_dm_cell`` corrects it
    against the true edges. A grid whose table would exceed ``_DM_LUT_MAX_SIZE`` entries (a dm
    cell narrower than about 0.0005 mag on a 16 mag grid) gets an empty table, and ``_dm_cell``
    falls back to a binary search.
    """
    width = dm_edges[-1] - dm_edges[0]
    step = float(np.min(np.diff(dm_edges))) / 2.0
    size = math.ceil(width / step) + 1
    if size > _DM_LUT_MAX_SIZE:
        return np.empty(0, dtype=np.int32), 0.0
    x = dm_edges[0] + step * np.arange(size, dtype=np.float64)
    lut = np.searchsorted(dm_edges, x, side="right") - 1
    lut = np.clip(lut, 0, dm_edges.size - 2).astype(np.int32)
    return lut, 1.0 / step


@nb.njit(cache=True, nogil=True, inline="always")
def _dm_cell(dm, dm_edges, lut, inv_step):
    """Cell b with dm_edges[b] <= dm < dm_edges[b + 1]; requires dm inside the grid."""
    if lut.size == 0:
        return np.searchsorted(dm_edges, dm, side="right") - 1
    q = min(int((dm - dm_edges[0]) * inv_step), lut.size - 1)
    b = lut[q]
    # One exact correction each way, branchless: dm is random, so a branch here would
    # mispredict about every other pair.
    b -= np.int64(dm < dm_edges[b])
    b += np.int64(dm >= dm_edges[b + 1])
    return b


# --------------------------------------------------------------------------------------------
# Kernels. One light curve is never split across threads; each writes only its own out[k].


@nb.njit(cache=True, nogil=True)
def _is_sorted(t):
    for i in range(t.size - 1):
        if t[i + 1] < t[i]:
            return False
    return True


@nb.njit(cache=True, nogil=True)
def _group_by_channel(t, m, e, channel, n_channels, n_epochs):
    """Stable sort of one light curve by (channel, time); counts epochs per channel.

    ``e`` may be empty (no errors). Epochs of channels outside [0, n_channels) are dropped.
    Returns (ts, ms, es, starts): channel c is ``ts[starts[c]:starts[c + 1]]``, sorted by time.
    When the light curve is one channel already sorted by time, the inputs are returned as they
    are (no copy).
    """
    n = t.size
    first = -1
    single = True
    for i in range(n):
        c = channel[i]
        if c >= 0 and c < n_channels:
            n_epochs[c] += 1
            if first < 0:
                first = c
            elif c != first:
                single = False
        else:
            single = False
    starts = np.zeros(n_channels + 1, dtype=np.int64)
    for c in range(n_channels):
        starts[c + 1] = starts[c] + n_epochs[c]
    if single and first >= 0 and _is_sorted(t):
        return t, m, e, starts
    n_valid = starts[n_channels]
    has_e = e.size > 0
    ts = np.empty(n_valid, dtype=np.float64)
    ms = np.empty(n_valid, dtype=np.float64)
    es = np.empty(n_valid if has_e else 0, dtype=np.float64)
    pos = starts[:-1].copy()
    for i in range(n):
        c = channel[i]
        if c >= 0 and c < n_channels:
            p = pos[c]
            ts[p] = t[i]
            ms[p] = m[i]
            if has_e:
                es[p] = e[i]
            pos[c] = p + 1
    for c in range(n_channels):
        a = starts[c]
        b = starts[c + 1]
        if b - a > 1 and not _is_sorted(ts[a:b]):
            order = np.argsort(ts[a:b], kind="mergesort") + a  # mergesort is stable
            ts[a:b] = ts[order]
            ms[a:b] = ms[order]
            if has_e:
                es[a:b] = es[order]
    return ts, ms, es, starts


@nb.njit(cache=True, nogil=True)
def _bin_pairs(t, m, dt_edges, dm_edges, lut, inv_step, row_hist):
    """Add the pairs of one time-sorted channel to ``row_hist`` (n_dt, n_dm), dt-major.

    For each i the later epochs j fall in dt cells in order, so j is walked in segments, one per
    dt cell: the inner loop only finds the dm cell and increments one row that stays in L1.
    """
    n = t.size
    n_dt = dt_edges.size - 1
    dt_lo = dt_edges[0]
    dm_lo = dm_edges[0]
    dm_hi = dm_edges[-1]
    for i in range(n - 1):
        ti = t[i]
        mi = m[i]
        j = i + 1
        while j < n and t[j] - ti < dt_lo:  # only when the first dt edge is above 0
            j += 1
        for k in range(n_dt):
            edge = dt_edges[k + 1]
            row = row_hist[k]
            while j < n and t[j] - ti < edge:
                dm = m[j] - mi
                if dm >= dm_lo and dm < dm_hi:
                    row[_dm_cell(dm, dm_edges, lut, inv_step)] += 1
                j += 1
            if j >= n:
                break


@nb.njit(cache=True, parallel=True)
def _counts_kernel(t, m, channel, offsets, n_channels, dt_edges, dm_edges, lut, inv_step):
    n_lc = offsets.size - 1
    n_dm = dm_edges.size - 1
    n_dt = dt_edges.size - 1
    out = np.zeros((n_lc, n_dm, n_dt, n_channels), dtype=np.int32)
    n_epochs = np.zeros((n_lc, n_channels), dtype=np.int64)
    no_err = np.empty(0, dtype=np.float64)
    for k in nb.prange(n_lc):
        lo = offsets[k]
        hi = offsets[k + 1]
        ts, ms, _, starts = _group_by_channel(
            t[lo:hi], m[lo:hi], no_err, channel[lo:hi], n_channels, n_epochs[k]
        )
        row_hist = np.empty((n_dt, n_dm), dtype=np.int32)
        for c in range(n_channels):
            a = starts[c]
            b = starts[c + 1]
            if b - a > 1:
                row_hist[:, :] = 0
                _bin_pairs(ts[a:b], ms[a:b], dt_edges, dm_edges, lut, inv_step, row_hist)
                out[k, :, :, c] = row_hist.T
    return out, n_epochs


def _check_finite(name: str, values: npt.NDArray[np.float64]) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        first = int(np.argmax(bad))
        raise ValueError(
            f"dmdt: {name} has {int(bad.sum())} non-finite values (NaN or inf), first at index "
            f"{first} ({values[first]}); drop those epochs first"
        )


def _check_offsets(offsets: npt.ArrayLike, n_epochs: int) -> npt.NDArray[np.int64]:
    """Offsets as int64: 1-D, from 0 to ``n_epochs``, non-decreasing, light curves not too long."""
    offsets = np.asarray(offsets)
    if offsets.dtype.kind not in "iu":
        raise TypeError(f"dmdt: offsets must be integers, got dtype {offsets.dtype}")
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    if offsets.ndim != 1 or offsets.size < 1 or offsets[0] != 0 or offsets[-1] != n_epochs:
        raise ValueError(
            f"dmdt: offsets must be 1-D, start at 0 and end at len(t) = {n_epochs}, got "
            f"{offsets[:1].tolist()} .. {offsets[-1:].tolist()}"
        )
    lengths = np.diff(offsets)
    if lengths.size and lengths.min() < 0:
        raise ValueError(
            f"dmdt: offsets must be non-decreasing, first decrease after index "
            f"{int(np.argmax(lengths < 0))}"
        )
    if lengths.size and lengths.max() > MAX_EPOCHS_PER_LC:
        raise ValueError(
            f"dmdt: offsets: light curve {int(np.argmax(lengths))} has {int(lengths.max())} "
            f"epochs, more than {MAX_EPOCHS_PER_LC} (int32 cell counts could overflow)"
        )
    return offsets


def _check_flat(
    t: npt.ArrayLike, mag: npt.ArrayLike, offsets: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    t = np.asarray(t)
    if t.dtype != np.float64:
        # float32 absolute times lose minutes; callers must convert (and offset) in float64.
        raise TypeError(f"dmdt: t must be float64 days, got dtype {t.dtype}")
    t = np.ascontiguousarray(t)
    mag = np.ascontiguousarray(mag, dtype=np.float64)
    if t.ndim != 1 or t.shape != mag.shape:
        raise ValueError(f"dmdt: t and mag must be 1-D of equal length, got {t.shape}, {mag.shape}")
    offsets = _check_offsets(offsets, t.size)
    _check_finite("t", t)
    _check_finite("mag", mag)
    return t, mag, offsets


def _check_channel(
    channel: npt.ArrayLike, n_epochs: int, n_channels: int
) -> tuple[npt.NDArray[np.int8], int]:
    """Channel codes as int8; codes outside [0, n_channels) become -1 (ignored)."""
    n_channels = int(n_channels)
    if not 1 <= n_channels <= _MAX_CHANNELS:
        raise ValueError(f"dmdt: n_channels must be in 1..{_MAX_CHANNELS}, got {n_channels}")
    channel = np.asarray(channel)
    if channel.dtype.kind not in "iu":
        raise TypeError(f"dmdt: channel must be integers, got dtype {channel.dtype}")
    if channel.shape != (n_epochs,):
        raise ValueError(
            f"dmdt: channel must have the shape of t ({n_epochs},), got {channel.shape}"
        )
    if channel.dtype != np.int8:
        inside = (channel >= 0) & (channel < n_channels)
        channel = np.where(inside, channel, -1).astype(np.int8)
    return np.ascontiguousarray(channel), n_channels


# --------------------------------------------------------------------------------------------
# Public API.


def dmdt_counts_multiband(
    t: npt.ArrayLike,
    mag: npt.ArrayLike,
    channel: npt.ArrayLike,
    offsets: npt.ArrayLike,
    grid: DmDtGrid,
    n_channels: int,
) -> npt.NDArray[np.int32]:
    """Pair counts per band channel.

    Pairs are formed within a channel only. A channel with fewer than 2 epochs is all zeros.

    Parameters
    ----------
    t : float64 array, shape (n_epochs,)
        Times, days, flat over all light curves; need not be sorted within a light curve.
    mag : float array, shape (n_epochs,)
        Magnitudes, mag (widened to float64).
    channel : integer array, shape (n_epochs,)
        Image channel of each epoch (0 .. n_channels - 1); epochs of other values are ignored.
    offsets : integer array, shape (n_lc + 1,)
        Light curve k is ``t[offsets[k]:offsets[k + 1]]``; at most ``MAX_EPOCHS_PER_LC`` epochs.
    grid : DmDtGrid
        Cell edges.
    n_channels : int
        Number of channels, 1 .. 127.

    Returns
    -------
    int32 array, shape (n_lc, n_dm, n_dt, n_channels)
        Number of pairs per cell.

    Raises
    ------
    TypeError
        If ``t`` is not float64 (float32 epochs lose minutes), or ``channel``/``offsets`` are not
        integers.
    ValueError
        If ``t`` or ``mag`` holds NaN or inf, or shapes or offsets are inconsistent.
    """
    counts, _ = _counts_and_epochs(t, mag, channel, offsets, grid, n_channels)
    return counts


def _counts_and_epochs(t, mag, channel, offsets, grid: DmDtGrid, n_channels: int):
    """(counts, epochs per channel) of :func:`dmdt_counts_multiband`."""
    t, mag, offsets = _check_flat(t, mag, offsets)
    channel, n_channels = _check_channel(channel, t.size, n_channels)
    dt_edges, dm_edges = grid.dt_edges_days, grid.dm_edges_mag
    lut, inv_step = _dm_lookup_table(dm_edges)
    return _counts_kernel(
        t, mag, channel, offsets, np.int64(n_channels), dt_edges, dm_edges, lut, inv_step
    )


def dmdt_counts(
    t: npt.ArrayLike, mag: npt.ArrayLike, offsets: npt.ArrayLike, grid: DmDtGrid
) -> npt.NDArray[np.int32]:
    """Pair counts of single-band light curves.

    Parameters
    ----------
    t : float64 array, shape (n_epochs,)
        Times, days, flat over all light curves.
    mag : float array, shape (n_epochs,)
        Magnitudes, mag.
    offsets : integer array, shape (n_lc + 1,)
        Light curve k is ``t[offsets[k]:offsets[k + 1]]``.
    grid : DmDtGrid
        Cell edges.

    Returns
    -------
    int32 array, shape (n_lc, n_dm, n_dt)
        Number of pairs per cell.
    """
    zeros = np.zeros(np.shape(t), dtype=np.int8)
    return dmdt_counts_multiband(t, mag, zeros, offsets, grid, 1)[..., 0]


def dmdt_epoch_counts(
    channel: npt.ArrayLike, offsets: npt.ArrayLike, n_channels: int
) -> npt.NDArray[np.int64]:
    """Number of epochs of each light curve in each channel, the ``n`` of Mahabal normalisation.

    Parameters
    ----------
    channel : integer array, shape (n_epochs,)
        Image channel of each epoch; values outside 0 .. n_channels - 1 are not counted.
    offsets : integer array, shape (n_lc + 1,)
        Light curve k is ``channel[offsets[k]:offsets[k + 1]]``.
    n_channels : int
        Number of channels.

    Returns
    -------
    int64 array, shape (n_lc, n_channels)
    """
    channel = np.asarray(channel)
    offsets = _check_offsets(offsets, channel.size)
    channel, n_channels = _check_channel(channel, channel.size, n_channels)
    lc = np.repeat(np.arange(offsets.size - 1, dtype=np.int64), np.diff(offsets))
    keep = channel >= 0
    flat = np.bincount(
        lc[keep] * n_channels + channel[keep], minlength=(offsets.size - 1) * n_channels
    )
    return flat.reshape(offsets.size - 1, n_channels).astype(np.int64)


def normalize_counts(
    counts: npt.NDArray[np.int32],
    norm: Norm = "mahabal",
    n_epochs: npt.ArrayLike | None = None,
) -> npt.NDArray:
    """Normalise pair counts per image and channel.

    Norms (all-zero channels stay zero in every norm):

    - ``"mahabal"`` (Mahabal et al. 2017): uint8 ``floor(255 * count / n_pairs + 0.99999)`` with
      ``n_pairs = n (n - 1) / 2``, n the number of epochs of that light curve in that channel, so
      every pair counts in the denominator, including pairs outside the grid. Needs ``n_epochs``.
      Any non-empty cell is at least 1.
    - ``"none"``: the counts as float32.

    Parameters
    ----------
    counts : integer array, shape (..., n_dm, n_dt, n_channels)
        Pair counts, e.g. from ``dmdt_counts_multiband``.
    norm : {"mahabal", "none"}
        The normalisation.
    n_epochs : integer array, shape (..., n_channels), optional
        Epochs per light curve and channel (``dmdt_epoch_counts``); required for ``"mahabal"``.

    Returns
    -------
    uint8 array for ``"mahabal"``, float32 otherwise; the shape of ``counts``.

    Raises
    ------
    ValueError
        For an unknown norm, a missing ``n_epochs`` with ``"mahabal"``, or an ``n_epochs`` whose
        pair count is smaller than the in-grid count.
    """
    c = np.asarray(counts).astype(np.float64)
    if c.ndim < 3:
        raise ValueError(
            f"normalize_counts: counts must have shape (..., n_dm, n_dt, n_channels), got {c.shape}"
        )
    axes = (-3, -2)
    if norm == "mahabal":
        if n_epochs is None:
            raise ValueError(
                "normalize_counts: norm='mahabal' needs n_epochs (epochs per light curve and "
                "channel, see dmdt_epoch_counts)"
            )
        n = np.asarray(n_epochs, dtype=np.float64)
        if n.shape != c.shape[:-3] + c.shape[-1:]:
            raise ValueError(
                f"normalize_counts: n_epochs must have shape {c.shape[:-3] + c.shape[-1:]}, "
                f"got {n.shape}"
            )
        n_pairs = (n * (n - 1.0) / 2.0)[..., None, None, :]
        if np.any(c.sum(axis=axes, keepdims=True) > n_pairs):
            raise ValueError(
                "normalize_counts: n_epochs gives fewer pairs than counted in the grid"
            )
        with np.errstate(invalid="ignore", divide="ignore"):
            img = np.floor(255.0 * c / n_pairs + 0.99999)
        img = np.where(n_pairs > 0, img, 0.0)
        return img.astype(np.uint8)
    if norm == "none":
        return c.astype(np.float32)
    raise ValueError(f"normalize_counts: unknown dm-dt norm {norm!r}; known: {NORMS}")


def dmdt_images(
    t: npt.ArrayLike,
    mag: npt.ArrayLike,
    channel: npt.ArrayLike,
    offsets: npt.ArrayLike,
    grid: DmDtGrid,
    n_channels: int,
    norm: Norm = "mahabal",
) -> npt.NDArray:
    """Normalised multi-band dm-dt images.

    ``dmdt_counts_multiband`` followed by ``normalize_counts`` (with the epochs per channel for
    ``"mahabal"``). A channel whose band has fewer than 2 epochs is all zeros.

    Parameters
    ----------
    t, mag, channel, offsets, grid, n_channels
        As in ``dmdt_counts_multiband``.
    norm : {"mahabal", "none"}
        See ``normalize_counts``.

    Returns
    -------
    array, shape (n_lc, n_dm, n_dt, n_channels)
        uint8 for ``"mahabal"``, float32 otherwise.
    """
    if norm not in NORMS:
        raise ValueError(f"dmdt_images: unknown dm-dt norm {norm!r}; known: {NORMS}")
    counts, n_epochs = _counts_and_epochs(t, mag, channel, offsets, grid, n_channels)
    return normalize_counts(counts, norm, n_epochs)
