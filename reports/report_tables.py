"""The report's summary tables: objects and scores per class, per tile, epochs per object."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

from catalogs.hats_paths import PARTITION_ORDER, PARTITION_PIXEL
from catalogs.healpix import tile_of
from catalogs.schema import (
    BAND_NAMES,
    HEALPIX_COLUMN,
    N_GOOD,
    NON_VARIABLE_CLASSES,
    PREDICTED_CLASS,
    PREDICTED_SCORE,
    n_good_column,
)

#: The objects-per-tile table has at most about this many tiles.
MAX_TILES = 50

#: Finest HEALPix order the tile table and the sky map use.
MAX_MAP_ORDER = 12

#: The sky map's order is the finest with at least this many objects per occupied pixel.
OBJECTS_PER_SKY_PIXEL = 20

#: Keys of the tables of :func:`summary_tables`.
CLASS_TABLE = "objects_per_class"
SCORE_TABLE = "score_by_class"
TILE_TABLE = "objects_per_tile"
EPOCH_TABLE = "epochs_per_object"

_SCORE_QUANTILES = (0.1, 0.5, 0.9)


def is_variable(predicted_class: pd.Series) -> npt.NDArray[np.bool_]:
    """True for objects whose predicted class is a variable star (not constant, not bogus)."""
    return ~predicted_class.isin(NON_VARIABLE_CLASSES).to_numpy()


def tile_order(healpix29: npt.ArrayLike, max_tiles: int = MAX_TILES) -> int:
    """Finest HEALPix order (up to :data:`MAX_MAP_ORDER`) with at most ``max_tiles`` tiles."""
    values = np.asarray(healpix29, dtype=np.int64)
    best = 0
    for order in range(MAX_MAP_ORDER + 1):
        if np.unique(tile_of(values, order)).size > max_tiles:
            break
        best = order
    return best


def sky_map_order(healpix29: npt.ArrayLike, per_pixel: int = OBJECTS_PER_SKY_PIXEL) -> int:
    """Finest HEALPix order (up to :data:`MAX_MAP_ORDER`) with ``per_pixel`` objects per pixel.

    The mean over occupied pixels; order 0 if even that is too fine.
    """
    values = np.asarray(healpix29, dtype=np.int64)
    best = 0
    for order in range(1, MAX_MAP_ORDER + 1):
        if values.size / max(np.unique(tile_of(values, order)).size, 1) < per_pixel:
            break
        best = order
    return best


def _quantile_row(values: npt.NDArray, quantiles: Sequence[float]) -> list[float]:
    if values.size == 0:
        return [float("nan")] * len(quantiles)
    return [float(q) for q in np.quantile(values, quantiles)]


def summary_tables(df: pd.DataFrame, classes: Sequence[str]) -> dict[str, pd.DataFrame]:
    """The report's tables.

    Parameters
    ----------
    df : pandas.DataFrame
        The catalog (:func:`read_classification_catalog`).
    classes : sequence of str
        The model's classes; every one gets a row of the class table, with 0 if never predicted.

    Returns
    -------
    dict of str to pandas.DataFrame
        :data:`CLASS_TABLE`: class, objects, fraction (of all objects), variable (bool), in
        ``classes`` order (then any other predicted class).
        :data:`SCORE_TABLE`: per predicted class: objects, score_p10, score_median, score_p90
        (quantiles of predicted_score).
        :data:`TILE_TABLE`: per tile: norder, npix, ra_deg and dec_deg of its centre, objects,
        variables, variable_fraction, top_class. Tiles are the catalog's HATS tiles when it has
        them, else pixels of :func:`tile_order`.
        :data:`EPOCH_TABLE` (if the catalog has n_good): per band (``all``, then each band):
        objects_with_epochs, min, p10, median, p90, max of the good-epoch count.
    """
    n = len(df)
    predicted = df[PREDICTED_CLASS].astype(str)
    counts = predicted.value_counts()
    order = list(classes) + sorted(set(counts.index) - set(classes))
    class_counts = np.array([int(counts.get(c, 0)) for c in order], dtype=np.int64)
    tables = {
        CLASS_TABLE: pd.DataFrame(
            {
                "class": order,
                "objects": class_counts,
                "fraction": class_counts / max(n, 1),
                "variable": [c not in NON_VARIABLE_CLASSES for c in order],
            }
        )
    }

    score = df[PREDICTED_SCORE].to_numpy(dtype=np.float64)
    rows = []
    for name in order:
        values = score[(predicted == name).to_numpy()]
        if values.size:
            rows.append([name, values.size, *_quantile_row(values, _SCORE_QUANTILES)])
    tables[SCORE_TABLE] = pd.DataFrame(
        rows, columns=["class", "objects", "score_p10", "score_median", "score_p90"]
    )

    tables[TILE_TABLE] = _tile_table(df, predicted)

    if N_GOOD in df.columns:
        rows = []
        for band, column in [("all", N_GOOD), *[(b, n_good_column(b)) for b in BAND_NAMES]]:
            if column not in df.columns:
                continue
            epochs = df[column].fillna(0).to_numpy(dtype=np.int64)
            epochs = epochs[epochs > 0]
            if band != "all" and not epochs.size:
                continue  # a band no object has (a g-only input): no row of zeros
            low, high = (int(epochs.min()), int(epochs.max())) if epochs.size else (0, 0)
            rows.append([band, epochs.size, low, *_quantile_row(epochs, _SCORE_QUANTILES), high])
        tables[EPOCH_TABLE] = pd.DataFrame(
            rows, columns=["band", "objects_with_epochs", "min", "p10", "median", "p90", "max"]
        )
    return tables


def _tile_table(df: pd.DataFrame, predicted: pd.Series) -> pd.DataFrame:
    """Objects and variables per tile (see :func:`summary_tables`)."""
    import cdshealpix.nested

    hp29 = df[HEALPIX_COLUMN].to_numpy(dtype=np.int64)
    if PARTITION_ORDER in df.columns and PARTITION_PIXEL in df.columns:
        norder = df[PARTITION_ORDER].to_numpy(dtype=np.int64)
        npix = df[PARTITION_PIXEL].to_numpy(dtype=np.int64)
    else:
        order = tile_order(hp29)
        norder = np.full(hp29.size, order, dtype=np.int64)
        npix = tile_of(hp29, order)
    frame = pd.DataFrame(
        {"norder": norder, "npix": npix, "variable": is_variable(predicted), "cls": predicted}
    )
    grouped = frame.groupby(["norder", "npix"], sort=True)
    out = grouped.agg(
        objects=("variable", "size"),
        variables=("variable", "sum"),
        top_class=("cls", lambda s: s.value_counts().index[0]),
    ).reset_index()
    ra_deg = np.empty(len(out))
    dec_deg = np.empty(len(out))
    for order in np.unique(out["norder"]):
        rows = (out["norder"] == order).to_numpy()
        lon, lat = cdshealpix.nested.healpix_to_lonlat(
            out.loc[rows, "npix"].to_numpy(dtype=np.uint64), int(order)
        )
        ra_deg[rows], dec_deg[rows] = lon.deg, lat.deg
    out.insert(2, "ra_deg", ra_deg)
    out.insert(3, "dec_deg", dec_deg)
    out.insert(6, "variable_fraction", out["variables"] / out["objects"])
    return out
