"""The report's figures: sky map, p_variable against magnitude, dm-dt examples, model figures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pandas as pd

from catalogs.healpix import tile_of
from catalogs.schema import (
    BAND,
    BAND_NAMES,
    DEC,
    HEALPIX_COLUMN,
    P_VARIABLE,
    PREDICTED_CLASS,
    PREDICTED_SCORE,
    RA,
    SETTLED,
    DRColumn,
    median_mag_column,
    n_good_column,
)
from reports.report_tables import is_variable, sky_map_order

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from udfs.kernels.periodogram import PeriodogramGrid
    from udfs.model.classifier import ModelCard


#: Most points drawn in the footprint scatter (a random subset beyond).
MAX_SCATTER_POINTS = 200_000

BAND_COLOURS = {"g": "tab:green", "r": "tab:red", "i": "tab:brown"}


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

    fig = _new_figure(14, 10)
    grid = fig.add_gridspec(2, 6, height_ratios=[1, 1.15])
    maps = [
        ("objects", counts, "viridis", None, None),
        ("fraction variable", fraction, "magma", 0.0, 1.0),
    ]
    for k, (label, values, cmap, vmin, vmax) in enumerate(maps):  # whole sky
        ax = _mollweide_axes(fig, grid[0, 3 * k : 3 * k + 3], f"{label} per order-{order} pixel")
        points = ax.scatter(
            -np.radians(_wrap_deg(lon.deg)), np.radians(lat.deg), c=values, s=25, cmap=cmap,
            vmin=vmin, vmax=vmax, edgecolors="none",
        )  # fmt: skip
        fig.colorbar(points, ax=ax, orientation="horizontal", shrink=0.6, label=label)

    centre_deg = _circular_mean_deg(ra)
    dec0 = float(np.clip(np.median(dec), -80.0, 80.0))
    vertex_lon, vertex_lat = cdshealpix.nested.vertices(pixels.astype(np.uint64), order)
    corners = np.stack([_wrap_deg(vertex_lon.deg, centre_deg), vertex_lat.deg], axis=-1)
    footprint_axes = []
    for k, (label, values, cmap, vmin, vmax) in enumerate(maps):  # the same maps, to scale
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


def _draw_lightcurve(
    ax: Axes, lightcurve: Mapping[str, list], period_days: float | None = None
) -> None:
    """Magnitude against time, or phase (two cycles) when folded at ``period_days``.

    One colour per band, magnitudes growing down; the bands are named in a legend unless folded.
    """
    hmjd = np.asarray(lightcurve[DRColumn.HMJD], dtype=np.float64)
    mag = np.asarray(lightcurve[DRColumn.MAG], dtype=np.float64)
    magerr = np.asarray(lightcurve[DRColumn.MAGERR], dtype=np.float64)
    channel = np.asarray(lightcurve[BAND], dtype=np.int64)
    for k, band in enumerate(BAND_NAMES):
        mask = channel == k
        if not mask.any():
            continue
        if period_days is None:
            ax.errorbar(
                hmjd[mask], mag[mask], magerr[mask], fmt="o", ms=2, lw=0.5,
                color=BAND_COLOURS.get(band), label=f"{band} ({int(mask.sum())})",
            )  # fmt: skip
        else:
            phase = ((hmjd[mask] - hmjd.min()) / period_days) % 1.0
            for shift in (0.0, 1.0):
                ax.plot(phase + shift, mag[mask], "o", ms=2, color=BAND_COLOURS.get(band))
    ax.invert_yaxis()
    ax.set_xlabel("HMJD (days)" if period_days is None else "phase", fontsize=7)
    ax.set_ylabel("mag", fontsize=7)
    ax.tick_params(labelsize=6)
    if period_days is None:
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
            _draw_lightcurve(ax, lightcurve, multiple * period)
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
