"""A report on a classification catalog: summary tables, PNG figures and one HTML page.

The catalog is read format-agnostically (every data Parquet file under its directory: the
Parquet folder `varsky classify` used to write, a HATS catalog, or a HATS collection, whose margin
caches are skipped), so the report does not depend on how it was written. Figures:

- a sky map: objects and the fraction of variables per HEALPix pixel (Mollweide), and the
  footprint zoomed in;
- the top-scoring objects of each predicted class: light curve and dm-dt images, remade from the
  input light-curve files exactly as classify made them;
- the model card's test-split confusion matrix;
- finite-difference saliency maps of the dm-dt image for a few objects.

Everything is written to one output folder (default ``CATALOG_DIR/report``): the PNG figures,
``report.html`` (self-contained: tables inline, figures as data URIs) and ``summary.md``.
No Spark is needed; TensorFlow and matplotlib are imported only by the functions that use them.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from catalogs.errors import InputError
from catalogs.hats_paths import (
    COMMON_METADATA_FILE,
    METADATA_FILE,
    PARTITION_ORDER,
    PARTITION_PIXEL,
    tile_of_path,
)
from catalogs.hats_properties import (
    COLLECTION_PROPERTIES_FILE,
    DATAPRODUCT_TYPE_PROPERTY,
    MARGINS_PROPERTY,
    catalog_properties,
    read_properties,
)
from catalogs.healpix import healpix_29, tile_of
from catalogs.input_files import expand_files, hats_partition_files, is_hats_catalog
from catalogs.provenance import file_sha256
from catalogs.schema import (
    BAND,
    BAND_NAMES,
    DEC,
    DMDT_GRID,
    HEALPIX_COLUMN,
    INPUT_FILE,
    LIGHTCURVE,
    MODEL_SHA256,
    N_GOOD,
    NON_VARIABLE_CLASSES,
    P_VARIABLE,
    PREDICTED_CLASS,
    PREDICTED_SCORE,
    RA,
    REJECT_REASON,
    SETTLED,
    SOURCE_FILE,
    SOURCE_ROW,
    VARSKY_VERSION_COLUMN,
    DRColumn,
    Property,
    median_mag_column,
    n_good_column,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from udfs.kernels.periodogram import PeriodogramGrid
    from udfs.model.classifier import ModelCard

# --- Files the report writes ---
REPORT_DIR = "report"
REPORT_HTML = "report.html"
SUMMARY_MD = "summary.md"
SKY_MAP_FILE = "sky_map.png"
VARIABILITY_FILE = "p_variable_vs_mag.png"
EXAMPLES_FILE = "dmdt_examples_{:02d}.png"
CONFUSION_FILE = "confusion_matrix.png"
RELIABILITY_FILE = "reliability.png"
#: Table of the model's recall on real labelled stars (from its card).
REAL_VALIDATION_TABLE = "Model on real labelled stars (validation split, from the model card)"
SALIENCY_FILE = "saliency.png"

# --- Catalog properties the report uses ---
MODEL_DIR_PROPERTY = Property.MODEL_DIR
INPUTS_PROPERTY = Property.INPUTS
_TABLE_TYPES = ("object", "source")  # other HATS tables (margin, index, ...) are not rows of ours
_MARGIN_SUFFIX = "_margin"
_METADATA_FILES = (METADATA_FILE, COMMON_METADATA_FILE)

#: Model used when neither ``model_dir`` nor the catalog properties name one.
DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "varsky_dmdt_cnn"

# --- What the report shows ---
#: Predicted classes that do not count as variable stars.
#: Objects per predicted class in the example figures.
N_EXAMPLES = 2
#: Predicted classes per example figure (one figure row per object).
CLASSES_PER_FIGURE = 3
#: Objects in the saliency figure (the top object of as many classes, constant excepted).
N_SALIENCY = 4
SALIENCY_SKIPPED_CLASSES = frozenset({"constant"})
#: The objects-per-tile table has at most about this many tiles.
MAX_TILES = 50
#: Finest HEALPix order the tile table and the sky map use.
MAX_MAP_ORDER = 12
#: The sky map's order is the finest with at least this many objects per occupied pixel.
OBJECTS_PER_SKY_PIXEL = 20
#: Most points drawn in the footprint scatter (a random subset beyond).
MAX_SCATTER_POINTS = 200_000
#: Probabilities remade from the light-curve files must match the catalog's to this, absolute.
SCORE_TOLERANCE = 1e-4
BAND_COLOURS = {"g": "tab:green", "r": "tab:red", "i": "tab:brown"}

# --- Tables ---
CLASS_TABLE = "objects_per_class"
SCORE_TABLE = "score_by_class"
TILE_TABLE = "objects_per_tile"
EPOCH_TABLE = "epochs_per_object"
TABLE_TITLES = {
    CLASS_TABLE: "Objects per predicted class",
    SCORE_TABLE: "Score (probability of the predicted class), quantiles per predicted class",
    TILE_TABLE: "Objects per HEALPix tile",
    EPOCH_TABLE: "Good epochs per object (quantiles over objects with epochs in the band)",
}
#: Columns a classification catalog must have.
REQUIRED_COLUMNS = (DRColumn.OBJECTID, RA, DEC, PREDICTED_CLASS, PREDICTED_SCORE)
_PROBABILITY_PREFIX = "p_"
_SCORE_QUANTILES = (0.1, 0.5, 0.9)


@dataclass
class ReportResult:
    """What a report read and wrote.

    Attributes
    ----------
    catalog_dir, output_dir : Path
    html_path : Path
        The self-contained HTML page.
    summary_path : Path
        The tables as Markdown.
    figures : dict of str to Path
        Caption -> PNG file, in page order.
    tables : dict of str to pandas.DataFrame
        See :func:`summary_tables`.
    n_objects : int
        Rows of the catalog.
    classes : tuple of str
        Classes of the catalog's probability columns.
    notes : list of str
        What was skipped or looked wrong, and why.
    seconds : float
        Wall time, seconds.
    """

    catalog_dir: Path
    output_dir: Path
    html_path: Path
    summary_path: Path
    figures: dict[str, Path]
    tables: dict[str, pd.DataFrame]
    n_objects: int
    classes: tuple[str, ...]
    notes: list[str] = field(default_factory=list)
    seconds: float = float("nan")


# --- Reading the catalog ---
def _split_list(value: str | None) -> list[str]:
    """Items of a comma- or space-separated property value."""
    return [v for v in re.split(r"[,\s]+", value or "") if v]


def _skipped_directory(directory: Path, margins_here: set[str]) -> bool:
    """True for a folder that holds no rows of the catalog: hidden, a margin, an index."""
    name = directory.name
    if name.startswith(".") or name.endswith(_MARGIN_SUFFIX) or name in margins_here:
        return True
    kind = read_properties(directory).get(DATAPRODUCT_TYPE_PROPERTY)
    return kind is not None and kind not in _TABLE_TYPES


def catalog_files(catalog_dir: str | Path) -> list[Path]:
    """The catalog's data files: every ``*.parquet`` under ``catalog_dir``, sorted.

    Skips ``_metadata`` and ``_common_metadata``, hidden files and folders, and margin caches
    (folders named ``*_margin``, listed in a ``collection.properties``, or whose properties say
    ``dataproduct_type`` is not object or source).
    """
    root = Path(catalog_dir)
    found: list[Path] = []
    for here, dirs, files in os.walk(root):
        margins = set(_split_list(
            read_properties(here, (COLLECTION_PROPERTIES_FILE,)).get(MARGINS_PROPERTY)
        ))  # fmt: skip
        dirs[:] = sorted(d for d in dirs if not _skipped_directory(Path(here, d), margins))
        found += [
            Path(here, f)
            for f in files
            if f.endswith(".parquet") and f not in _METADATA_FILES and not f.startswith(".")
        ]
    return sorted(found)


def read_classification_catalog(catalog_dir: str | Path) -> pd.DataFrame:
    """Every row of a classification catalog, as a DataFrame.

    Read file by file rather than with ``lsdb.open_catalog``, because the report also takes a
    plain folder of Parquet files (a copy, a Spark output) and needs each row's tile.

    Parameters
    ----------
    catalog_dir : str or Path
        A folder of Parquet files (see :func:`catalog_files`).

    Returns
    -------
    pandas.DataFrame
        The catalog's columns. When every file sits at a HATS path ``Norder=K/Dir=D/Npix=N``,
        int64 columns ``Norder`` and ``Npix`` say which tile each row came from.
        ``_healpix_29`` is computed from ra, dec (degrees) if the catalog lacks it.

    Raises
    ------
    InputError
        If the folder holds no Parquet file or a required column is missing.
    """
    catalog_dir = Path(catalog_dir)
    if not catalog_dir.is_dir():
        raise InputError(str(catalog_dir), "catalog directory does not exist")
    files = catalog_files(catalog_dir)
    if not files:
        raise InputError(str(catalog_dir), "directory holds no Parquet file (*.parquet)")
    try:
        first_columns = pq.read_schema(files[0]).names
    except (pa.ArrowInvalid, OSError) as err:
        raise InputError(str(files[0]), f"cannot read as Parquet ({err})") from err
    if PREDICTED_CLASS not in first_columns:
        raise InputError(
            str(catalog_dir),
            f"no {PREDICTED_CLASS} column: report expects the output of `varsky classify`, "
            "e.g. `varsky report demo_output/classified`",
        )
    tiles = [tile_of_path(f.relative_to(catalog_dir)) for f in files]
    with_tiles = all(t is not None for t in tiles)
    tables = []
    for path, tile in zip(files, tiles, strict=True):
        try:
            table = pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as err:
            raise InputError(str(path), f"cannot read as Parquet ({err})") from err
        if with_tiles:
            for name, value in zip((PARTITION_ORDER, PARTITION_PIXEL), tile, strict=True):
                if name not in table.column_names:
                    table = table.append_column(name, pa.array(np.full(table.num_rows, value)))
        tables.append(table)
    table = pa.concat_tables(tables, promote_options="permissive")
    for column in REQUIRED_COLUMNS:
        if column not in table.column_names:
            raise InputError(
                str(catalog_dir), "required column is missing from the catalog", column=column
            )
    df = table.to_pandas()
    if HEALPIX_COLUMN not in df.columns:
        df[HEALPIX_COLUMN] = healpix_29(df[RA].to_numpy(), df[DEC].to_numpy())
    return df


def catalog_classes(df: pd.DataFrame) -> tuple[str, ...]:
    """Classes of the catalog's probability columns ``p_<class>``, in column order."""
    return tuple(
        c[len(_PROBABILITY_PREFIX) :]
        for c in df.columns
        if c.startswith(_PROBABILITY_PREFIX) and c != P_VARIABLE
    )


# --- Tables ---
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
            quantiles = _quantile_row(epochs, _SCORE_QUANTILES)
            rows.append([band, epochs.size, low, *quantiles, high])
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


# --- Light curves of catalog objects ---
def _rows_with_objectids(path: str, objectids: pa.Array) -> pa.Table | None:
    """Rows of a Parquet file whose objectid is one of ``objectids``, with source file and row.

    Reads the objectid column, then only the row groups holding a match.
    """
    parquet = pq.ParquetFile(path)
    ids = pc.cast(parquet.read(columns=[DRColumn.OBJECTID]).column(0), pa.int64())
    hits = np.flatnonzero(pc.fill_null(pc.is_in(ids, value_set=objectids), False).to_numpy())
    if hits.size == 0:
        return None
    sizes = np.array(
        [parquet.metadata.row_group(g).num_rows for g in range(parquet.num_row_groups)],
        dtype=np.int64,
    )
    starts = np.cumsum(sizes) - sizes
    group_of_hit = np.searchsorted(starts, hits, side="right") - 1
    groups = np.unique(group_of_hit)
    read_starts = np.cumsum(sizes[groups]) - sizes[groups]
    local = hits - starts[group_of_hit] + read_starts[np.searchsorted(groups, group_of_hit)]
    table = parquet.read_row_groups(groups.tolist()).take(pa.array(local))
    table = table.append_column(SOURCE_FILE, pa.array([str(path)] * hits.size, pa.string()))
    return table.append_column(SOURCE_ROW, pa.array(hits.astype(np.int64)))


def _cut_rows(table: pa.Table, ingest_catalog: bool) -> pa.RecordBatch:
    """Cut rows (``udfs.kernels.lightcurve_cuts.CUT_SCHEMA``) of light-curve rows, all kept."""
    from catalogs.schema import InputKind
    from udfs.kernels.lightcurve_cuts import cut_partition

    if ingest_catalog:
        kind = InputKind.CATALOG
    elif LIGHTCURVE in table.column_names:  # IRSA's DR light curves in HATS layout
        kind = InputKind.HATS_DR
    else:
        kind = InputKind.DR
    # min_epochs 0: these objects were classified, so they passed classify's cut already.
    return cut_partition(table.combine_chunks().to_batches()[0], kind, 0)


def _without_bad_exposures(
    batch: pa.RecordBatch, path: str, fraction: float, min_stars: int, min_epochs: int
) -> pa.RecordBatch:
    """``batch`` (rows of the DR file ``path``) after classify's exposure-level cut."""
    from catalogs.schema import InputKind
    from udfs.kernels.bad_exposures import exposure_deviations, flag_exposures, remove_epochs
    from udfs.kernels.lightcurve_cuts import cut_partition

    whole = pq.read_table(path)
    whole = whole.append_column(SOURCE_FILE, pa.array([path] * whole.num_rows, pa.string()))
    whole = whole.append_column(SOURCE_ROW, pa.array(np.arange(whole.num_rows, dtype=np.int64)))
    cut = cut_partition(whole.combine_chunks().to_batches()[0], InputKind.DR, min_epochs)
    kept = cut.filter(pc.is_null(cut.column(REJECT_REASON)))
    flagged = flag_exposures(
        pa.Table.from_batches([exposure_deviations(kept)]), min_stars, fraction
    )
    # The flags are keyed by this file's path; the batch's rows name the same file.
    flagged = {(path, band): keys for (_, band), keys in flagged.items()}
    batch = batch.set_column(
        batch.schema.get_field_index(SOURCE_FILE),
        SOURCE_FILE,
        pa.array([path] * batch.num_rows, pa.string()),
    )
    out, _ = remove_epochs(batch, flagged, min_epochs)
    return out


def fetch_lightcurves(
    objectids: npt.ArrayLike,
    lightcurve_paths: Sequence[str | Path],
    input_files: Sequence[str] | None = None,
    healpix29: npt.ArrayLike | None = None,
    bad_exposure_fraction: float = 0.0,
    bad_exposure_min_stars: int = 30,
    min_epochs: int = 20,
) -> pa.Table:
    """The light curves of catalog objects, read from the light-curve files they came from.

    Parameters
    ----------
    objectids : int64 array
        Objects to find.
    lightcurve_paths : sequence of str or Path
        IRSA DR light-curve Parquet files or folders, or HATS light-curve catalogs (from
        `varsky ingest`, or IRSA's DR in HATS layout).
    input_files : sequence of str, optional
        Basenames of the DR files the objects came from (the catalog's ``input_file``): other
        DR files are not opened, unless none of the files has such a name.
    healpix29 : int64 array, optional
        The objects' ``_healpix_29``: only the HATS tiles holding them are opened.
    bad_exposure_fraction, bad_exposure_min_stars, min_epochs : optional
        classify's exposure-level cut (``udfs.kernels.bad_exposures``), redone on each whole DR file
        so that the light curves are the ones classify used; a fraction of 0 skips it.

    Returns
    -------
    pyarrow.Table
        One row per object found (the first if found twice), schema
        ``udfs.kernels.lightcurve_cuts.CUT_SCHEMA``: the lightcurve struct holds the good epochs
        (catflags 0, finite), time-sorted, as classify used them.
    """
    from udfs.kernels.lightcurve_cuts import CUT_SCHEMA

    wanted = pa.array(np.unique(np.asarray(objectids, dtype=np.int64)))
    paths = [str(p) for p in lightcurve_paths]
    hats = [p for p in paths if is_hats_catalog(p)]
    sources: list[tuple[str, bool | None]] = []
    for catalog in hats:
        files = hats_partition_files(catalog)
        if healpix29 is not None:
            files = _files_holding(files, np.asarray(healpix29, dtype=np.int64)) or files
        sources += [(f, None) for f in files]
    dr_paths = [p for p in paths if p not in hats]
    if dr_paths:
        files = expand_files(dr_paths)
        if input_files:
            names = set(input_files)
            files = [f for f in files if Path(f).name in names] or files
        sources += [(f, False) for f in files]
    batches = []
    for path, ingest in sources:
        rows = _rows_with_objectids(path, wanted)
        if rows is None:
            continue
        if ingest is None:  # a HATS catalog: varsky's light curves have n_epochs, IRSA's not
            ingest = "n_epochs" in rows.column_names
        batch = _cut_rows(rows, ingest)
        if not ingest and bad_exposure_fraction > 0 and LIGHTCURVE not in rows.column_names:
            batch = _without_bad_exposures(
                batch, path, bad_exposure_fraction, bad_exposure_min_stars, min_epochs
            )
        batches.append(batch)
    table = pa.Table.from_batches(batches, schema=CUT_SCHEMA)
    ids = table.column(DRColumn.OBJECTID).to_numpy()
    _, first = np.unique(ids, return_index=True)
    return table.take(pa.array(np.sort(first)))


def _files_holding(files: list[str], healpix29: npt.NDArray[np.int64]) -> list[str]:
    """The HATS tile files whose tile holds one of the positions."""
    keep = []
    for path in files:
        tile = tile_of_path(Path(path))
        if tile is None or np.any(tile_of(healpix29, tile[0]) == tile[1]):
            keep.append(path)
    return keep


# --- Figures ---
def _new_figure(width_in: float, height_in: float):
    """A matplotlib Figure drawn by Agg, without pyplot (no global backend state)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width_in, height_in), layout="constrained")


def _suptitle(fig, text: str) -> None:
    """A figure title wrapped to the figure's width."""
    import textwrap

    chars_per_line = int(fig.get_figwidth() * 12)  # about 12 characters an inch at 10 pt
    fig.suptitle(textwrap.fill(text, chars_per_line), fontsize=10)


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=100)
    return Path(path)


def _wrap_deg(ra_deg: npt.ArrayLike, centre_deg: float = 0.0) -> npt.NDArray[np.float64]:
    """RA unwrapped to within 180 degrees of ``centre_deg``."""
    return centre_deg + (np.asarray(ra_deg, dtype=np.float64) - centre_deg + 180.0) % 360.0 - 180.0


def _circular_mean_deg(angle_deg: npt.NDArray[np.float64]) -> float:
    radians = np.radians(angle_deg)
    return float(np.degrees(np.arctan2(np.sin(radians).mean(), np.cos(radians).mean())) % 360.0)


def _mollweide_axes(fig, position, title: str) -> Axes:
    """Mollweide axes with RA increasing to the left (east left), ticks in degrees."""
    ax = fig.add_subplot(position, projection="mollweide")
    ticks_deg = np.arange(-150, 151, 30)
    ax.set_xticks(np.radians(ticks_deg), [f"{(-t) % 360:.0f}°" for t in ticks_deg], fontsize=7)
    ax.grid(True, alpha=0.4)
    ax.set_title(title, fontsize=10)
    return ax


def plot_sky_map(df: pd.DataFrame, path: str | Path) -> Path:
    """Write the sky map: objects and fraction of variables per HEALPix pixel, and the footprint.

    Top: Mollweide maps (east left) of the objects per pixel and the fraction of them predicted
    variable (class not in :data:`NON_VARIABLE_CLASSES`), pixels drawn as markers so a small
    footprint stays visible. Bottom: the footprint in RA, Dec (degrees, east left): the same two
    maps with the pixels drawn to scale, and the objects with the variables coloured by class.
    """
    import cdshealpix.nested
    from matplotlib import colormaps
    from matplotlib.collections import PolyCollection
    from matplotlib.ticker import FuncFormatter

    ra = df[RA].to_numpy(dtype=np.float64)
    dec = df[DEC].to_numpy(dtype=np.float64)
    predicted = df[PREDICTED_CLASS].astype(str)
    variable = is_variable(predicted)
    hp29 = df[HEALPIX_COLUMN].to_numpy(dtype=np.int64)
    order = sky_map_order(hp29)
    pixels, inverse, counts = np.unique(
        tile_of(hp29, order), return_inverse=True, return_counts=True
    )
    fraction = np.bincount(inverse, weights=variable, minlength=pixels.size) / counts
    lon, lat = cdshealpix.nested.healpix_to_lonlat(pixels.astype(np.uint64), order)
    lon_deg, lat_deg = lon.deg, lat.deg

    fig = _new_figure(14, 10)
    grid = fig.add_gridspec(2, 6, height_ratios=[1, 1.15])
    maps = [
        ("objects", counts, "viridis", None, None),
        ("fraction variable", fraction, "magma", 0.0, 1.0),
    ]
    for k, (label, values, cmap, vmin, vmax) in enumerate(maps):
        ax = _mollweide_axes(fig, grid[0, 3 * k : 3 * k + 3], f"{label} per order-{order} pixel")
        points = ax.scatter(
            -np.radians(_wrap_deg(lon_deg)), np.radians(lat_deg), c=values, s=25, cmap=cmap,
            vmin=vmin, vmax=vmax, edgecolors="none",
        )  # fmt: skip
        fig.colorbar(points, ax=ax, orientation="horizontal", shrink=0.6, label=label)

    centre_deg = _circular_mean_deg(ra)
    dec0 = float(np.clip(np.median(dec), -80.0, 80.0))
    vertex_lon, vertex_lat = cdshealpix.nested.vertices(pixels.astype(np.uint64), order)
    corners = np.stack([_wrap_deg(vertex_lon.deg, centre_deg), vertex_lat.deg], axis=-1)
    zooms = [
        ("objects", counts, "viridis", None, None),
        ("fraction variable", fraction, "magma", 0.0, 1.0),
    ]
    footprint_axes = []
    for k, (label, values, cmap, vmin, vmax) in enumerate(zooms):
        ax = fig.add_subplot(grid[1, 2 * k : 2 * k + 2])
        cells = PolyCollection(corners, array=values, cmap=cmap, edgecolors="face")
        cells.set_clim(vmin, vmax)
        ax.add_collection(cells)
        fig.colorbar(cells, ax=ax, orientation="horizontal", label=label, shrink=0.8)
        ax.set_title(f"{label} per order-{order} pixel (footprint)", fontsize=10)
        footprint_axes.append(ax)
    ax = fig.add_subplot(grid[1, 4:6])
    footprint_axes.append(ax)
    shown = np.arange(ra.size)
    if ra.size > MAX_SCATTER_POINTS:  # a random subset keeps the PNG quick to draw
        rng = np.random.default_rng(0)
        shown = np.sort(rng.choice(ra.size, MAX_SCATTER_POINTS, replace=False))
    x = _wrap_deg(ra[shown], centre_deg)
    names = predicted.to_numpy()[shown]
    ax.scatter(x, dec[shown], s=2, color="0.75", label="constant or bogus", rasterized=True)
    palette = colormaps["tab20"].colors  # 20 distinct colours: one per class
    for k, name in enumerate(sorted(set(names[variable[shown]]))):
        mask = (names == name) & variable[shown]
        colour = palette[k % len(palette)]
        ax.scatter(x[mask], dec[shown][mask], s=6, color=colour, label=name, rasterized=True)
    ax.legend(fontsize=6, markerscale=2, ncols=2, loc="best")
    ax.set_title(f"{ra.size:,} objects, {int(variable.sum()):,} variables", fontsize=10)
    for ax in footprint_axes:
        ax.autoscale_view()
        ax.set_aspect(1.0 / np.cos(np.radians(dec0)), adjustable="datalim")
        ax.invert_xaxis()  # east left
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v % 360:g}"))
        ax.set_xlabel("RA (deg)")
        ax.set_ylabel("Dec (deg)")
    _suptitle(fig, f"Sky map: HEALPix order {order} (nested), Mollweide, east left")
    return _save(fig, Path(path))


def plot_variability(df: pd.DataFrame, path: str | Path, threshold: float | None) -> Path | None:
    """p_variable against each object's median magnitude (its best-sampled band), or None.

    Objects the variability stage settled as constant are grey; the others are coloured by
    whether the network then called them variable. None when the catalog has no p_variable.
    """
    if P_VARIABLE not in df.columns or df[P_VARIABLE].isna().all():
        return None
    mags = np.full(len(df), np.nan)
    best = np.full(len(df), -1)
    for band in BAND_NAMES:
        column, n_good = median_mag_column(band), n_good_column(band)
        if column in df.columns and n_good in df.columns:
            n = df[n_good].to_numpy(dtype=np.float64)
            better = (n > best) & df[column].notna().to_numpy()
            mags[better] = df[column].to_numpy(dtype=np.float64)[better]
            best = np.where(better, n, best)
    p = df[P_VARIABLE].to_numpy(dtype=np.float64)
    settled = (
        df[SETTLED].fillna(False).to_numpy(dtype=bool) if SETTLED in df else np.zeros(len(df), bool)
    )
    variable = is_variable(df[PREDICTED_CLASS].astype(str))
    fig = _new_figure(7.5, 4.2)
    ax = fig.add_subplot(111)
    floor = 1e-6
    for mask, colour, label in (
        (settled, "0.6", f"settled as constant by the stage ({settled.sum():,})"),
        (~settled & ~variable, "tab:blue", f"to the network, called non-variable "
         f"({(~settled & ~variable).sum():,})"),
        (~settled & variable, "tab:red", f"to the network, called variable "
         f"({(~settled & variable).sum():,})"),
    ):  # fmt: skip
        ax.scatter(mags[mask], np.maximum(p[mask], floor), s=4, c=colour, label=label, lw=0)
    if threshold is not None:
        ax.axhline(threshold, color="k", lw=0.8, ls="--", label=f"threshold {threshold:.3g}")
    ax.set_yscale("log")
    ax.set_ylim(floor / 2, 1.5)
    ax.set_xlabel("median magnitude, best-sampled band (mag)")
    ax.set_ylabel("p_variable (variability stage)")
    ax.legend(loc="lower left", fontsize=7, markerscale=3)
    _suptitle(fig, "The variability stage: p_variable against magnitude")
    return _save(fig, Path(path))


def _edge_label(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _draw_dmdt(ax: Axes, values: npt.NDArray, card: ModelCard, **imshow) -> object:
    """One band of a dm-dt image: dt (days) across, dm (mag) up; bin edges as tick labels.

    ``imshow`` defaults to the image's own 0..max scale: mahabal cells are 255 times a
    fraction of all pairs, so even the fullest is often far below 255.
    """
    if "cmap" not in imshow:
        imshow = {"cmap": "viridis", "vmin": 0, "vmax": max(int(values.max()), 1)} | imshow
    dt_edges, dm_edges = card.dt_edges_days, card.dm_edges_mag
    image = ax.imshow(values, origin="lower", aspect="auto", interpolation="nearest", **imshow)
    dt_ticks = np.arange(0, len(dt_edges), 4)
    dm_ticks = np.arange(0, len(dm_edges), 3)
    ax.set_xticks(dt_ticks - 0.5, [_edge_label(dt_edges[k]) for k in dt_ticks], fontsize=6)
    ax.set_yticks(dm_ticks - 0.5, [_edge_label(dm_edges[k]) for k in dm_ticks], fontsize=6)
    ax.set_xlabel("dt (days)", fontsize=7)
    ax.set_ylabel("dm (mag)", fontsize=7)
    return image


def _draw_lightcurve(ax: Axes, lightcurve: Mapping[str, list]) -> None:
    """Magnitude against time, one colour per band, magnitudes growing down."""
    hmjd = np.asarray(lightcurve[DRColumn.HMJD], dtype=np.float64)
    mag = np.asarray(lightcurve[DRColumn.MAG], dtype=np.float64)
    magerr = np.asarray(lightcurve[DRColumn.MAGERR], dtype=np.float64)
    channel = np.asarray(lightcurve[BAND], dtype=np.int64)
    for k, band in enumerate(BAND_NAMES):
        mask = channel == k
        if mask.any():
            ax.errorbar(
                hmjd[mask], mag[mask], magerr[mask], fmt="o", ms=2, lw=0.5,
                color=BAND_COLOURS.get(band), label=f"{band} ({int(mask.sum())})",
            )  # fmt: skip
    ax.invert_yaxis()
    ax.set_xlabel("HMJD (days)", fontsize=7)
    ax.set_ylabel("mag", fontsize=7)
    ax.tick_params(labelsize=6)
    ax.legend(fontsize=6, loc="best")


def _bands_with_epochs(lightcurve: Mapping[str, list]) -> list[int]:
    return sorted({int(c) for c in lightcurve[BAND]})


#: Classes whose examples are shown folded too, and the multiple of the best period to fold at
#: (an eclipsing binary's strongest peak is half its orbital period).
FOLDED_CLASSES = {
    "rrab": 1, "rrc": 1, "cepheid": 1, "delta_scuti": 1, "mira": 1, "ew": 2, "ea": 2,
}  # fmt: skip


def best_period_days(
    lightcurve: Mapping[str, list], grid: PeriodogramGrid | None = None
) -> float | None:
    """The best period (days) of the model's own periodogram (:mod:`udfs.kernels.periodogram`).

    The period the network's shape inputs are folded on, from the same kernel and ``grid``
    (default ``PeriodogramGrid()``). None for fewer than 10 epochs or no periodic signal.
    """
    from udfs.kernels.periodogram import PeriodogramGrid, binned_periodograms

    hmjd = np.asarray(lightcurve[DRColumn.HMJD], dtype=np.float64)
    if hmjd.size < 10:
        return None
    channel = np.asarray(lightcurve[BAND], dtype=np.int64)
    _, shape = binned_periodograms(
        hmjd - hmjd.min(),
        np.asarray(lightcurve[DRColumn.MAG], dtype=np.float64),
        channel,
        np.array([0, hmjd.size]),
        grid or PeriodogramGrid(),
        len(BAND_NAMES),
    )
    log_period, power = float(shape[0, 0]), float(shape[0, 1])
    return 10.0**log_period if power > 0 else None


def _draw_folded(ax: Axes, lightcurve: Mapping[str, list], period_days: float) -> None:
    """The light curve against phase (two cycles), one colour per band."""
    hmjd = np.asarray(lightcurve[DRColumn.HMJD], dtype=np.float64)
    mag = np.asarray(lightcurve[DRColumn.MAG], dtype=np.float64)
    channel = np.asarray(lightcurve[BAND], dtype=np.int64)
    phase = ((hmjd - hmjd.min()) / period_days) % 1.0
    for k, band in enumerate(BAND_NAMES):
        mask = channel == k
        if mask.any():
            for shift in (0.0, 1.0):
                ax.plot(phase[mask] + shift, mag[mask], "o", ms=2, color=BAND_COLOURS.get(band))
    ax.invert_yaxis()
    ax.set_xlabel("phase", fontsize=7)
    ax.set_ylabel("mag", fontsize=7)
    ax.tick_params(labelsize=6)


def plot_dmdt_examples(
    objects: pd.DataFrame,
    lightcurves: Sequence[Mapping[str, list]],
    images: npt.NDArray[np.uint8],
    card: ModelCard,
    path: str | Path,
) -> Path:
    """Write one row per object: its light curve and the dm-dt image of each band it has.

    Parameters
    ----------
    objects : pandas.DataFrame
        One row per object: objectid, predicted_class, predicted_score.
    lightcurves : sequence of dict
        Each object's lightcurve struct (hmjd days, mag, magerr, band channel).
    images : uint8 array, shape (n_objects, n_dm, n_dt, n_bands)
        The model's dm-dt images of the objects.
    card : udfs.model.classifier.ModelCard
        Gives the grid edges.
    path : str or Path
    """
    n_columns = max(len(_bands_with_epochs(lc)) for lc in lightcurves) if lightcurves else 1
    classes = [str(c) for c in objects[PREDICTED_CLASS]]
    folded = any(c in FOLDED_CLASSES for c in classes)
    first = 2 if folded else 1
    fig = _new_figure(4.5 + 2.6 * (n_columns + first - 1), 2.5 * max(len(objects), 1))
    grid = fig.add_gridspec(
        max(len(objects), 1), first + n_columns, width_ratios=[2] * first + [1] * n_columns
    )
    for row, (obj, lightcurve, image) in enumerate(
        zip(objects.itertuples(index=False), lightcurves, images, strict=True)
    ):
        ax = fig.add_subplot(grid[row, 0])
        _draw_lightcurve(ax, lightcurve)
        name = getattr(obj, PREDICTED_CLASS)
        ax.set_title(
            f"{name}: objectid {getattr(obj, DRColumn.OBJECTID)}, "
            f"score {getattr(obj, PREDICTED_SCORE):.3f}",
            fontsize=9,
        )
        period = best_period_days(lightcurve, card.periodogram) if name in FOLDED_CLASSES else None
        if period is not None:
            ax = fig.add_subplot(grid[row, 1])
            multiple = FOLDED_CLASSES[name]
            _draw_folded(ax, lightcurve, multiple * period)
            times = f"{multiple} x " if multiple > 1 else ""
            ax.set_title(f"folded at {times}{period:.5g} d (best period)", fontsize=8)
        for column, channel in enumerate(_bands_with_epochs(lightcurve)):
            ax = fig.add_subplot(grid[row, first + column])
            shown = _draw_dmdt(ax, image[:, :, channel], card)
            fig.colorbar(shown, ax=ax, shrink=0.85)
            ax.set_title(f"dm-dt, {card.bands[channel]} band", fontsize=8)
    _suptitle(
        fig,
        f"Top-scoring objects per predicted class: light curves"
        f"{', periodic classes folded on their best period' if folded else ''}, and dm-dt "
        f"images ({card.grid_name} grid, {card.norm} scale: 255 x fraction of pairs)",
    )
    return _save(fig, Path(path))


def plot_model_reliability(card: ModelCard, path: str | Path) -> Path | None:
    """Write the card's reliability diagram; None if the card has no calibration record."""
    from udfs.model.model_figures import plot_reliability

    calibration = card.calibration or {}
    if not calibration.get("reliability"):
        return None
    plot_reliability(
        calibration["reliability"],
        Path(path),
        f"{card.name}: real validation split, ECE "
        f"{calibration['ece_real_validation_before']:.3f} before, "
        f"{calibration['ece_real_validation_after']:.3f} after calibration",
    )
    return Path(path)


def real_validation_table(card: ModelCard) -> pd.DataFrame | None:
    """Recall per source label on the card's real validation splits; None without them."""
    if not card.real_validation:
        return None
    rows = []
    for set_name, scores in card.real_validation.items():
        paper = scores.get("mahabal2017", {}).get("paper", {})
        for label, entry in scores["per_label"].items():
            top = ", ".join(f"{k} {v}" for k, v in list(entry["predicted"].items())[:3])
            rows.append(
                {
                    "set": set_name,
                    "source label": label,
                    "objects": entry["n"],
                    "recall": round(entry["recall"], 3),
                    "Mahabal+2017": paper.get(label),
                    "called": top,
                }
            )
    return pd.DataFrame(rows)


def plot_model_confusion_matrix(card: ModelCard, path: str | Path) -> Path | None:
    """Write the card's test-split confusion matrix; None if the card has no test metrics."""
    from udfs.model.model_figures import plot_confusion_matrix

    metrics = card.test_metrics
    if metrics is None:
        return None
    title = (
        f"{card.name}: {metrics.split} split, accuracy {metrics.accuracy:.3f}, "
        f"macro F1 {metrics.macro_f1:.3f}"
    )
    plot_confusion_matrix(metrics, card.classes, Path(path), title)
    return Path(path)


def plot_saliency(
    objects: pd.DataFrame,
    images: npt.NDArray[np.uint8],
    saliencies: Sequence[npt.NDArray[np.float64]],
    card: ModelCard,
    path: str | Path,
) -> Path:
    """Write one row per object: each band's dm-dt image beside its saliency map.

    Parameters
    ----------
    objects : pandas.DataFrame
        One row per object: objectid, predicted_class, predicted_score.
    images : uint8 array, shape (n_objects, n_dm, n_dt, n_bands)
    saliencies : sequence of float arrays, shape (n_dm, n_dt, n_bands)
        From :func:`udfs.model.saliency.finite_difference_saliency`: probability per unit image.
    card : udfs.model.classifier.ModelCard
    path : str or Path
    """
    bands = [
        sorted(np.flatnonzero(image.reshape(-1, image.shape[-1]).any(axis=0))) for image in images
    ]
    n_columns = 2 * max((len(b) for b in bands), default=1)
    fig = _new_figure(3.2 * n_columns, 2.7 * max(len(objects), 1))
    grid = fig.add_gridspec(max(len(objects), 1), n_columns)
    for row, obj in enumerate(objects.itertuples(index=False)):
        limit = float(np.abs(saliencies[row]).max()) or 1.0
        for k, channel in enumerate(bands[row]):
            band = card.bands[channel]
            ax = fig.add_subplot(grid[row, 2 * k])
            fig.colorbar(_draw_dmdt(ax, images[row][:, :, channel], card), ax=ax, shrink=0.85)
            ax.set_title(
                f"{getattr(obj, PREDICTED_CLASS)} {getattr(obj, DRColumn.OBJECTID)}: {band}",
                fontsize=8,
            )
            ax = fig.add_subplot(grid[row, 2 * k + 1])
            shown = _draw_dmdt(
                ax, saliencies[row][:, :, channel], card, cmap="RdBu_r", vmin=-limit, vmax=limit
            )
            ax.set_title(f"d p({getattr(obj, PREDICTED_CLASS)}) / d pixel, {band}", fontsize=8)
            fig.colorbar(shown, ax=ax, shrink=0.85)
    _suptitle(
        fig,
        "Saliency: change of the predicted class's probability per unit of the [0, 1] image "
        "scale, by finite differences (red raises it, blue lowers it)",
    )
    return _save(fig, Path(path))


# --- HTML and Markdown ---
_CSS = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 2px 8px; text-align: right; }
th { background: #eee; } td:first-child { text-align: left; }
figure { margin: 1em 0 2em; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.9em; color: #444; } .notes li { color: #8a4b00; }
"""


def _figure_link(path: Path, output_dir: Path) -> str:
    """Where the HTML page, in ``output_dir``, finds ``path``."""
    return Path(os.path.relpath(path, output_dir)).as_posix()


@dataclass(frozen=True)
class Section:
    """One part of the report page: its heading, text, tables (by key), figures (by caption)."""

    title: str
    paragraphs: tuple[str, ...] = ()
    tables: tuple[str, ...] = ()
    figures: tuple[str, ...] = ()


def _placed(
    sections: Sequence[Section] | None,
    tables: Mapping[str, pd.DataFrame],
    figures: Mapping[str, str | Path],
) -> list[Section]:
    """``sections`` with only existing tables and figures; what none places goes in a last one."""
    sections = list(sections or [])
    placed = [
        Section(
            s.title,
            s.paragraphs,
            tuple(k for k in s.tables if k in tables),
            tuple(c for c in s.figures if c in figures),
        )
        for s in sections
    ]
    tables_left = tuple(k for k in tables if not any(k in s.tables for s in placed))
    figures_left = tuple(c for c in figures if not any(c in s.figures for s in placed))
    if tables_left or figures_left:
        placed.append(Section("More tables and figures", (), tables_left, figures_left))
    return placed


def write_html(
    output_dir: str | Path,
    tables: Mapping[str, pd.DataFrame],
    figures: Mapping[str, str | Path],
    title: str,
    properties: Mapping[str, str],
    notes: Sequence[str] = (),
    sections: Sequence[Section] | None = None,
) -> Path:
    """Write :data:`REPORT_HTML`: one self-contained page of the tables and figures.

    Results first: ``sections`` in order (tables and figures no section names follow in a last
    one), then the notes, then the provenance (``properties``) folded away in a details block.

    Parameters
    ----------
    output_dir : str or Path
    tables : dict of str to pandas.DataFrame
        Shown as HTML tables, titled from :data:`TABLE_TITLES` (or their key).
    figures : dict of str to Path
        Caption -> PNG file. Each is embedded as a base64 data URI, and linked by file name.
    title : str
    properties : dict of str to str
        Shown as a two-column table (provenance).
    notes : sequence of str
        What was skipped, and why.

    Returns
    -------
    Path
        The page.
    """
    output_dir = Path(output_dir)
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
    ]
    for section in _placed(sections, tables, figures):
        parts.append(f"<h2>{esc(section.title)}</h2>")
        parts += [f"<p>{esc(text)}</p>" for text in section.paragraphs]
        for key in section.tables:
            parts.append(f'<h3 id="{esc(key)}">{esc(TABLE_TITLES.get(key, key))}</h3>')
            parts.append(
                tables[key].to_html(index=False, float_format=lambda v: f"{v:.3f}", border=0)
            )
        for caption in section.figures:
            path = Path(figures[caption])
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            link = esc(_figure_link(path, output_dir))
            parts += [
                f'<figure id="{esc(path.stem)}">',
                f'<img src="data:image/png;base64,{data}" alt="{esc(caption)}">',
                f'<figcaption>{esc(caption)} (<a href="{link}">{esc(path.name)}</a>)</figcaption>',
                "</figure>",
            ]
    if notes:
        parts += ['<h2>Notes</h2><ul class="notes">', *[f"<li>{esc(n)}</li>" for n in notes]]
        parts.append("</ul>")
    parts += [
        "<details><summary>Provenance: the catalog's properties, model and inputs</summary>",
        "<table>",
        *[f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>" for k, v in properties.items()],
        "</table></details>",
        "</body></html>",
    ]
    path = output_dir / REPORT_HTML
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return path


def _markdown_table(table: pd.DataFrame) -> str:
    def cell(value) -> str:
        if isinstance(value, float | np.floating):
            return f"{value:.3f}"
        return str(value)

    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def write_summary_markdown(
    output_dir: str | Path,
    tables: Mapping[str, pd.DataFrame],
    figures: Mapping[str, str | Path],
    title: str,
    properties: Mapping[str, str],
    notes: Sequence[str] = (),
    sections: Sequence[Section] | None = None,
) -> Path:
    """Write :data:`SUMMARY_MD`: the same content as the HTML page, as Markdown text."""
    output_dir = Path(output_dir)
    lines = [f"# {title}"]
    for section in _placed(sections, tables, figures):
        lines += ["", f"## {section.title}"]
        for text in section.paragraphs:
            lines += ["", text]
        for key in section.tables:
            lines += ["", f"### {TABLE_TITLES.get(key, key)}", "", _markdown_table(tables[key])]
        if section.figures:
            lines.append("")
        lines += [
            f"- [{Path(figures[c]).name}]({_figure_link(Path(figures[c]), output_dir)}): {c}"
            for c in section.figures
        ]
    if notes:
        lines += ["", "## Notes", "", *[f"- {n}" for n in notes]]
    lines += ["", "## Provenance", ""]
    lines += [f"- **{k}**: {v}" for k, v in properties.items()]
    path = output_dir / SUMMARY_MD
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- The whole report ---
def model_statement(card: ModelCard) -> tuple[str, ...]:
    """What the model was trained on, and where each of its quoted numbers comes from."""
    training = card.training
    sets = (card.fine_tuning or {}).get("sets", [])
    real = ", ".join(f"{s['name']} ({s.get('train', 0):,} training objects)" for s in sets)
    lines = [
        f"{card.name} was trained on {training.n_train:,} simulated light curves "
        f"({training.objects_per_class:,} per class, {len(card.classes)} classes, "
        "ZTF-like cadences)"
        + (f", then fine-tuned on real labelled light curves: {real}." if real else ".")
    ]
    metrics = card.test_metrics
    if metrics is not None:
        lines.append(
            f"The confusion matrix is the {metrics.split} split of the simulated light curves "
            f"(accuracy {metrics.accuracy:.3f}, macro F1 {metrics.macro_f1:.3f}): how well the "
            "model tells simulated classes apart, not how it does on real stars."
        )
    if card.real_validation:
        scores = "; ".join(
            f"{name}: accuracy {v['accuracy']:.3f} on {v['n']:,} objects"
            for name, v in card.real_validation.items()
        )
        lines.append(
            "On real stars: the real-validation table gives the recall per source label on "
            "real labelled objects held out of training (by object, never trained on) "
            f"({scores}). Classes without real labelled examples (for instance yso, cv, flare, "
            "bogus) are judged on simulated light curves only."
        )
    return tuple(lines)


def _title(properties: Mapping[str, str], catalog_dir: Path, n_objects: int) -> str:
    name = properties.get("obs_collection") or catalog_dir.resolve().name
    inputs = [Path(p).name for p in _split_list(properties.get(INPUTS_PROPERTY))]
    more = f" and {len(inputs) - 2:,} more" if len(inputs) > 2 else ""
    source = f" of {', '.join(inputs[:2])}{more}" if inputs else ""
    surveys = properties.get("varsky_input_catalogs")
    source += f" ({surveys})" if surveys else ""
    return f"{name}{source}: {n_objects:,} objects classified by varsky"


def _lead(df: pd.DataFrame) -> str:
    n = len(df)
    if not n:
        return "The catalog has no objects."
    variable = int(is_variable(df[PREDICTED_CLASS].astype(str)).sum())
    top = df[PREDICTED_CLASS].astype(str).value_counts()
    common = ", ".join(f"{c} {k:,}" for c, k in top.head(4).items())
    settled = ""
    if SETTLED in df.columns and df[P_VARIABLE].notna().any():
        k = int(df[SETTLED].fillna(False).sum())
        settled = (
            f" The variability stage settled {k:,} ({k / n:.1%}) as constant before the "
            "periodogram and network; the others went to the network."
        )
    return (
        f"{n:,} objects, {variable:,} of them ({variable / n:.1%}) predicted variable; "
        f"most common classes: {common}.{settled}"
    )


def _top_objects(df: pd.DataFrame, classes: Sequence[str], per_class: int) -> pd.DataFrame:
    """The ``per_class`` highest-scoring objects of each predicted class, in class order."""
    rank = {name: k for k, name in enumerate(classes)}
    top = (
        df.sort_values([PREDICTED_SCORE, DRColumn.OBJECTID], ascending=[False, True])
        .groupby(PREDICTED_CLASS, sort=False)
        .head(per_class)
    )
    key = top[PREDICTED_CLASS].map(lambda c: rank.get(c, len(rank)))
    return top.assign(_rank=key).sort_values(["_rank", PREDICTED_SCORE], ascending=[True, False])


def _provenance(df: pd.DataFrame, catalog_dir: Path, n_files: int) -> dict[str, str]:
    def values(column: str) -> str:
        if column not in df.columns:
            return "(not in catalog)"
        return ", ".join(sorted(map(str, df[column].dropna().unique()))[:5])

    facts = {
        "catalog": str(catalog_dir.resolve()),
        "data files": str(n_files),
        "objects": f"{len(df):,}",
        "varsky version (catalog)": values(VARSKY_VERSION_COLUMN),
        "model sha256 (catalog)": values(MODEL_SHA256),
        "dm-dt grid (catalog)": values(DMDT_GRID),
    }
    if INPUT_FILE in df.columns:
        facts["input files"] = f"{df[INPUT_FILE].nunique()}: {values(INPUT_FILE)}"
    return facts


def make_report(
    catalog_dir: str | Path,
    output_dir: str | Path | None = None,
    model_dir: str | Path | None = None,
    lightcurve_paths: Sequence[str | Path] | None = None,
    log: Callable[[str], None] = print,
) -> ReportResult:
    """Read a classification catalog; write its tables, figures, HTML page and Markdown summary.

    Parameters
    ----------
    catalog_dir : str or Path
        The catalog (see :func:`read_classification_catalog`).
    output_dir : str or Path, optional
        Default ``catalog_dir/report``.
    model_dir : str or Path, optional
        The model that made the catalog. Default: the catalog's ``varsky_model_dir`` property,
        else :data:`DEFAULT_MODEL_DIR`.
    lightcurve_paths : sequence of str or Path, optional
        The light curves the catalog was made from. Default: the catalog's ``varsky_inputs``
        property. Without them the example and saliency figures are skipped.
    log : callable
        Receives progress lines.

    Returns
    -------
    ReportResult
    """
    from udfs.kernels.model_inputs import DMDT_INPUT, flat_lightcurves
    from udfs.model.classifier import MODEL_FILE, Classifier, ModelCard
    from udfs.model.saliency import finite_difference_saliency

    t0 = time.perf_counter()
    catalog_dir = Path(catalog_dir)
    df = read_classification_catalog(catalog_dir)
    n_files = len(catalog_files(catalog_dir))
    properties_of_catalog = catalog_properties(catalog_dir)
    output = Path(output_dir) if output_dir is not None else catalog_dir / REPORT_DIR
    output.mkdir(parents=True, exist_ok=True)
    classes = catalog_classes(df)
    log(f"varsky report: {len(df):,} objects from {n_files} file(s) in {catalog_dir}")

    notes: list[str] = []
    tables = summary_tables(df, classes)
    figures: dict[str, Path] = {}
    sky_caption = "Sky map: objects and fraction of variables per HEALPix pixel"
    results_figures: list[str] = [sky_caption]
    model_figures: list[str] = []
    if len(df):
        figures[sky_caption] = plot_sky_map(df, output / SKY_MAP_FILE)
        stage = json.loads(properties_of_catalog.get(Property.VARIABILITY_STAGE.value) or "{}")
        variability = plot_variability(df, output / VARIABILITY_FILE, stage.get("threshold"))
        if variability is not None:
            caption = (
                "Variability stage: p_variable against magnitude; grey objects were settled as "
                "constant without the periodogram and network"
            )
            figures[caption] = variability
            results_figures.append(caption)
    else:
        notes.append("the catalog has no rows: no figures")

    model = Path(model_dir or properties_of_catalog.get(MODEL_DIR_PROPERTY) or DEFAULT_MODEL_DIR)
    card = None
    try:
        card = ModelCard.read(model)
    except (FileNotFoundError, ValueError) as err:
        notes.append(f"no model card ({err}): no confusion matrix, examples or saliency")
    if card is not None:
        if tuple(card.classes) != classes:
            notes.append(f"the model in {model} has classes {list(card.classes)}, the catalog "
                         f"{list(classes)}")  # fmt: skip
        catalog_sha = set(df[MODEL_SHA256].dropna()) if MODEL_SHA256 in df.columns else set()
        model_file = model / MODEL_FILE
        if catalog_sha and model_file.is_file() and catalog_sha != {file_sha256(model_file)}:
            notes.append(
                f"the catalog was made by another model than {model_file} (sha256 differs)"
            )
        confusion = plot_model_confusion_matrix(card, output / CONFUSION_FILE)
        if confusion is None:
            notes.append(f"the model card in {model} has no test metrics: no confusion matrix")
        else:
            caption = (
                "Model card: confusion matrix of the synthetic (simulated) test split, rows: true "
                "class (for real stars see the real-validation table)"
            )
            figures[caption] = confusion
            model_figures.append(caption)
        reliability = plot_model_reliability(card, output / RELIABILITY_FILE)
        if reliability is not None:
            caption = (
                "Model card: reliability on the real validation split, before and after calibration"
            )
            figures[caption] = reliability
            model_figures.append(caption)
        real = real_validation_table(card)
        if real is not None:
            tables[REAL_VALIDATION_TABLE] = real

    if lightcurve_paths:
        inputs = [str(p) for p in lightcurve_paths]
    else:
        inputs = _split_list(properties_of_catalog.get(INPUTS_PROPERTY))
    missing = [p for p in inputs if "://" not in p and not Path(p).exists()]
    if missing:
        notes.append(f"light-curve inputs not found: {missing}")
    inputs = [p for p in inputs if p not in missing]
    if card is not None and len(df) and not inputs:
        notes.append("no light-curve inputs (give --lightcurves): no example or saliency figures")
    if card is not None and len(df) and inputs:
        examples = _top_objects(df, classes, N_EXAMPLES)
        log(f"  fetching the light curves of {len(examples)} example objects")
        job = json.loads(properties_of_catalog.get(Property.JOB_ARGUMENTS) or "{}")
        found = fetch_lightcurves(
            examples[DRColumn.OBJECTID].to_numpy(),
            inputs,
            sorted(set(examples[INPUT_FILE])) if INPUT_FILE in examples.columns else None,
            examples[HEALPIX_COLUMN].to_numpy(),
            bad_exposure_fraction=float(job.get("bad_exposure_fraction", 0.0)),
            bad_exposure_min_stars=int(job.get("bad_exposure_min_stars", 30)),
            min_epochs=int(job.get("min_epochs", 20)),
        )
        row_of = {oid: k for k, oid in enumerate(found.column(DRColumn.OBJECTID).to_pylist())}
        lost = [oid for oid in examples[DRColumn.OBJECTID] if oid not in row_of]
        if lost:
            notes.append(f"{len(lost)} example objects not found in {inputs}: {lost[:5]}")
        examples = examples[examples[DRColumn.OBJECTID].isin(row_of)]
        found = found.take(pa.array([row_of[oid] for oid in examples[DRColumn.OBJECTID]]))
        model_inputs = card.model_inputs(flat_lightcurves(found.column(LIGHTCURVE)))
        images = model_inputs[DMDT_INPUT]
        lightcurves = found.column(LIGHTCURVE).to_pylist()
        classifier = Classifier.load(model, card) if len(examples) else None
        if classifier is not None:
            remade = classifier.predict(model_inputs)
            columns = [f"{_PROBABILITY_PREFIX}{c}" for c in classifier.classes]
            if set(columns) <= set(examples.columns):
                expected = examples[columns].to_numpy(dtype=np.float64)
                worst = float(np.max(np.abs(remade - expected)))
                if worst > SCORE_TOLERANCE:
                    notes.append(
                        f"probabilities remade from the light curves differ from the catalog's "
                        f"by up to {worst:.2g}: another model, grid or light-curve file?"
                    )
        present = list(dict.fromkeys(examples[PREDICTED_CLASS]))
        for k in range(0, len(present), CLASSES_PER_FIGURE):
            group = present[k : k + CLASSES_PER_FIGURE]
            rows = np.flatnonzero(examples[PREDICTED_CLASS].isin(group).to_numpy())
            path = plot_dmdt_examples(
                examples.iloc[rows], [lightcurves[r] for r in rows], images[rows], card,
                output / EXAMPLES_FILE.format(k // CLASSES_PER_FIGURE + 1),
            )  # fmt: skip
            caption = f"Top-scoring objects of {', '.join(group)}: light curves, dm-dt images"
            figures[caption] = path
            results_figures.append(caption)
        if classifier is not None:
            firsts = ~examples.duplicated(PREDICTED_CLASS).to_numpy()
            firsts &= ~examples[PREDICTED_CLASS].isin(SALIENCY_SKIPPED_CLASSES).to_numpy()
            counts = examples[PREDICTED_CLASS].map(df[PREDICTED_CLASS].value_counts())
            rows = np.flatnonzero(firsts)
            rows = rows[np.argsort(-counts.to_numpy()[rows], kind="stable")][:N_SALIENCY]
            rows = np.sort(rows)
            if rows.size:
                log(f"  saliency of {rows.size} objects")
                saliencies = [
                    finite_difference_saliency(
                        classifier,
                        model_inputs,
                        int(r),
                        classifier.classes.index(examples[PREDICTED_CLASS].iloc[r]),
                    )  # fmt: skip
                    for r in rows
                ]
                caption = "Saliency of the dm-dt image (top object of the most common classes)"
                figures[caption] = plot_saliency(
                    examples.iloc[rows], images[rows], saliencies, card, output / SALIENCY_FILE
                )
                model_figures.append(caption)

    properties = _provenance(df, catalog_dir, n_files)
    properties["model directory (report)"] = str(model)
    properties["light-curve inputs (report)"] = ", ".join(inputs) or "(none)"
    properties["generated (UTC)"] = datetime.now(UTC).isoformat(timespec="seconds")
    properties |= {f"property {k}": v for k, v in properties_of_catalog.items()}
    title = _title(properties_of_catalog, catalog_dir, len(df))
    sections = [
        Section("Results", (_lead(df),), (CLASS_TABLE,), tuple(results_figures)),
        Section(
            "The model, and where its numbers come from",
            model_statement(card) if card is not None else (),
            (REAL_VALIDATION_TABLE,),
            tuple(model_figures),
        ),
        Section("More about the catalog", (), (SCORE_TABLE, EPOCH_TABLE, TILE_TABLE)),
    ]
    html_path = write_html(output, tables, figures, title, properties, notes, sections)
    summary_path = write_summary_markdown(
        output, tables, figures, title, properties, notes, sections
    )
    return ReportResult(
        catalog_dir=catalog_dir,
        output_dir=output,
        html_path=html_path,
        summary_path=summary_path,
        figures=figures,
        tables=tables,
        n_objects=len(df),
        classes=classes,
        notes=notes,
        seconds=time.perf_counter() - t0,
    )
