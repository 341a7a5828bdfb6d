"""What the classifier sees of a light curve: dm-dt image, binned periodogram, summary features.

One function makes the inputs for training and for inference, from the same flat light curves,
so the two can never drift apart. Which inputs a model takes is written in its card.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from catalogs.schema import BAND, DRColumn
from udfs.kernels.dmdt import DmDtGrid, dmdt_images
from udfs.kernels.lightcurve_cuts import epoch_index
from udfs.kernels.lightcurve_features import N_FEATURES, lightcurve_features
from udfs.kernels.periodogram import N_SHAPE_FEATURES, PeriodogramGrid, binned_periodograms

#: Names of the model's inputs (Keras input layer names).
DMDT_INPUT = "dmdt_image"
PERIODOGRAM_INPUT = "periodogram"
PERIOD_SHAPE_INPUT = "period_shape"
FEATURES_INPUT = "features"


@dataclass(frozen=True)
class FlatLightCurves:
    """Light curves flat in the Arrow list layout: light curve k is ``[offsets[k]:offsets[k+1]]``.

    Attributes
    ----------
    t_days : float64 array
        Times, days (heliocentric MJD), never rounded through float32.
    mag, magerr : float arrays
        Magnitude and its 1-sigma error, mag.
    channel : int8 array
        Band channel (index into ``catalogs.schema.BAND_NAMES``).
    offsets : int64 array, shape (n_lc + 1,)
    """

    t_days: npt.NDArray[np.float64]
    mag: npt.NDArray[np.floating]
    magerr: npt.NDArray[np.floating]
    channel: npt.NDArray[np.int8]
    offsets: npt.NDArray[np.int64]

    @property
    def n_lightcurves(self) -> int:
        """Number of light curves."""
        return int(self.offsets.size - 1)

    def take(self, rows: npt.NDArray[np.integer]) -> FlatLightCurves:
        """The light curves ``rows``, in that order."""
        lengths = self.offsets[rows + 1] - self.offsets[rows]
        offsets = np.zeros(rows.size + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        epochs = epoch_index(self.offsets[rows], lengths)
        return FlatLightCurves(
            self.t_days[epochs], self.mag[epochs], self.magerr[epochs], self.channel[epochs],
            offsets,
        )  # fmt: skip


def flat_lightcurves(lightcurve: pa.Array) -> FlatLightCurves:
    """The flat light curves of a ``lightcurve`` struct-of-lists column (float64 times).

    Null light curves count as empty.
    """
    if isinstance(lightcurve, pa.ChunkedArray):
        lightcurve = lightcurve.combine_chunks()
    hmjd = lightcurve.field(DRColumn.HMJD)
    lengths = pc.fill_null(pc.list_value_length(hmjd), 0).to_numpy(zero_copy_only=False)
    offsets = np.zeros(len(hmjd) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])

    def values(name: str, dtype) -> np.ndarray:
        flat = pc.list_flatten(lightcurve.field(name))
        return flat.to_numpy(zero_copy_only=False).astype(dtype, copy=False)

    return FlatLightCurves(
        t_days=values(DRColumn.HMJD, np.float64),
        mag=values(DRColumn.MAG, np.float64),
        magerr=values(DRColumn.MAGERR, np.float64),
        channel=values(BAND, np.int8),
        offsets=offsets,
    )


def lightcurve_array(lightcurves: FlatLightCurves) -> pa.StructArray:
    """Inverse of :func:`flat_lightcurves`: a ``lightcurve`` struct-of-lists column."""
    from catalogs.schema import LIGHTCURVE_STRUCT

    lc = lightcurves
    offsets = pa.array(lc.offsets.astype(np.int32))
    values = [
        pa.array(lc.t_days, pa.float64()),
        pa.array(np.asarray(lc.mag, np.float32)),
        pa.array(np.asarray(lc.magerr, np.float32)),
        pa.array(np.asarray(lc.channel, np.int8)),
    ]
    return pa.StructArray.from_arrays(
        [pa.ListArray.from_arrays(offsets, v) for v in values], fields=list(LIGHTCURVE_STRUCT)
    )


def taken_epochs(lightcurve: pa.StructArray, epochs: pa.Array, lengths) -> pa.StructArray:
    """The flat epochs ``epochs`` of a ``lightcurve`` column, ``lengths[k]`` of them in row k."""
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    fields = [
        pa.ListArray.from_arrays(offsets, pc.list_flatten(lightcurve.field(i)).take(epochs), f.type)
        for i, f in enumerate(lightcurve.type)
    ]
    return pa.StructArray.from_arrays(fields, fields=list(lightcurve.type))


def model_inputs(
    lightcurves: FlatLightCurves,
    grid: DmDtGrid,
    n_channels: int,
    norm: str,
    periodogram: PeriodogramGrid | None,
    with_features: bool,
    seconds: dict[str, float] | None = None,
) -> dict[str, np.ndarray]:
    """The model inputs of every light curve.

    Parameters
    ----------
    lightcurves : FlatLightCurves
    grid : DmDtGrid
        dm-dt grid of the images.
    n_channels : int
        Image channels (bands).
    norm : str
        dm-dt image normalisation (see ``udfs.kernels.dmdt.normalize_counts``).
    periodogram : PeriodogramGrid or None
        Period bins of the periodogram input; None for a model without it.
    with_features : bool
        Whether to make the summary-feature input.
    seconds : dict, optional
        Receives the seconds spent on each input, added to any value already there.

    Returns
    -------
    dict of str to array
        :data:`DMDT_INPUT` (n, n_dm, n_dt, n_channels) and, as asked,
        :data:`PERIODOGRAM_INPUT` (n, n_bins) with :data:`PERIOD_SHAPE_INPUT`
        (n, N_SHAPE_FEATURES), and :data:`FEATURES_INPUT` (n, N_FEATURES).
    """
    import time

    lc = lightcurves
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    out = {
        DMDT_INPUT: dmdt_images(lc.t_days, lc.mag, lc.channel, lc.offsets, grid, n_channels, norm)
    }
    t1 = time.perf_counter()
    timings[DMDT_INPUT] = t1 - t0
    if periodogram is not None:
        out[PERIODOGRAM_INPUT], out[PERIOD_SHAPE_INPUT] = binned_periodograms(
            lc.t_days, lc.mag, lc.channel, lc.offsets, periodogram, n_channels
        )
        t2 = time.perf_counter()
        timings[PERIODOGRAM_INPUT] = t2 - t1
        t1 = t2
    if with_features:
        out[FEATURES_INPUT] = lightcurve_features(
            lc.t_days, lc.mag, lc.magerr, lc.channel, lc.offsets, n_channels
        )
        timings[FEATURES_INPUT] = time.perf_counter() - t1
    if seconds is not None:
        for key, value in timings.items():
            seconds[key] = seconds.get(key, 0.0) + value
    return out


def input_shapes(
    grid: DmDtGrid, n_channels: int, periodogram: PeriodogramGrid | None, with_features: bool
) -> dict[str, tuple[int, ...]]:
    """Shape (without the batch axis) of each input :func:`model_inputs` makes."""
    shapes: dict[str, tuple[int, ...]] = {DMDT_INPUT: (*grid.shape, n_channels)}
    if periodogram is not None:
        shapes[PERIODOGRAM_INPUT] = (periodogram.n_bins,)
        shapes[PERIOD_SHAPE_INPUT] = (N_SHAPE_FEATURES,)
    if with_features:
        shapes[FEATURES_INPUT] = (N_FEATURES,)
    return shapes
