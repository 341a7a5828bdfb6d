"""What the variability stage is fitted and judged on: real variables and their noise-only twins.

Per cadence, the same light curves twice: as they are (variables) and as realistic noise-only
twins (:mod:`udfs.simulators.noise_twins`), so that no cadence is evidence of variability:

- the real labelled sets (CRTS periodic variables, TDSS quasars), their train split only
  (:func:`udfs.model.training.labelled_set_split`, the split `varsky train` uses);
- simulated variables of every class on the real cadences of a ZTF DR light-curve file (there
  are no labelled ZTF variables here), and their twins;
- twins of that DR file's own light curves (most of its stars do not vary, but which ones is not
  known, so only their twins are used), the half of its objects :func:`dr_half` calls train.

``bench/variability.py`` scores the fitted stage on the other halves and the validation splits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from catalogs.schema import (
    CLASS_NAMES,
    LIGHTCURVE,
    NON_VARIABLE_CLASSES,
    REJECT_REASON,
    SOURCE_FILE,
    SOURCE_ROW,
    DRColumn,
)
from udfs.kernels.model_inputs import FlatLightCurves, flat_lightcurves
from udfs.model.variability import StageSample, VariabilityStage, fit_stage, variability_statistics
from udfs.simulators.noise_twins import REALISTIC, NoiseModel, noise_twins


def labelled_split(
    prefix: str | Path, band_map, min_epochs: int, val_fraction: float, seed: int
) -> tuple[pa.Table, np.ndarray]:
    """A real labelled set's table and each object's split (udfs.model.training's codes)."""
    from catalogs.labelled_sets import LABEL_ORIG, N_EPOCHS, read_labelled_set
    from udfs.model.training import labelled_set_split

    table = read_labelled_set(prefix, band_map)
    split = labelled_set_split(
        Path(prefix).name,
        table.column(DRColumn.OBJECTID).to_numpy(),
        table.column(LABEL_ORIG).to_pylist(),
        table.column(N_EPOCHS).to_numpy(),
        min_epochs,
        val_fraction,
        seed,
    )
    return table, split


def labelled_lightcurves(
    prefix: str | Path, band_map, min_epochs: int, val_fraction: float, seed: int, split: int
) -> FlatLightCurves:
    """The light curves of one split (``TRAIN`` or ``VALIDATION``) of a real labelled set."""
    table, which = labelled_split(prefix, band_map, min_epochs, val_fraction, seed)
    return flat_lightcurves(table.filter(pa.array(which == split)).column(LIGHTCURVE))


def dr_half(objectids: np.ndarray) -> np.ndarray:
    """0 (train) or 1 (held out) for each DR objectid: a fixed split by object."""
    return (np.asarray(objectids, np.int64) * 2654435761 >> 7) & 1


def dr_cut_table(path: str | Path, min_epochs: int) -> pa.Table:
    """The quality-cut rows a DR light-curve file keeps (the classify cuts), with their objectid.

    Columns as :data:`udfs.kernels.lightcurve_cuts.CUT_SCHEMA`; rejected rows are left out.
    """
    from udfs.kernels.lightcurve_cuts import cut_partition

    table = pq.read_table(path)
    table = table.append_column(SOURCE_FILE, pa.array([str(path)] * table.num_rows))
    table = table.append_column(SOURCE_ROW, pa.array(np.arange(table.num_rows, dtype=np.int64)))
    batch = table.combine_chunks().to_batches()[0]
    cut = pa.Table.from_batches([cut_partition(batch, "dr", min_epochs)])
    return cut.filter(pc.is_null(cut.column(REJECT_REASON)))


def dr_lightcurves(path: str | Path, min_epochs: int, half: int | None) -> FlatLightCurves:
    """The quality-cut light curves of a DR light-curve file (one :func:`dr_half`, or all)."""
    cut = dr_cut_table(path, min_epochs)
    if half is not None:
        cut = cut.filter(pa.array(dr_half(cut.column(DRColumn.OBJECTID).to_numpy()) == half))
    return flat_lightcurves(cut.column(LIGHTCURVE))


def simulated_variables(dr_path: str | Path, n_per_class: int, seed: int) -> FlatLightCurves:
    """Simulated variables of every variable class on the real cadences of ``dr_path``."""
    from udfs.simulators.lightcurve_simulator import simulate_lightcurves

    classes = [c for c in CLASS_NAMES if c not in NON_VARIABLE_CLASSES]
    sim = simulate_lightcurves(
        n_per_class, seed, classes, cadence_sample_path=dr_path, real_cadence_fraction=1.0
    )
    return FlatLightCurves(sim.t_hmjd, sim.mag, sim.magerr, sim.channel, sim.offsets)


def stage_samples(
    groups: dict[str, tuple[FlatLightCurves, bool]],
    n_channels: int,
    real: set[str],
    seed: int,
    noise: NoiseModel = REALISTIC,
) -> list[StageSample]:
    """Statistics of each group and, for each variable group, of its realistic twins."""
    rng = np.random.default_rng([seed, 23])
    samples = []
    for name, (lc, variable) in groups.items():
        if variable:
            statistics = variability_statistics(lc, n_channels)
            samples.append(StageSample(name, statistics, True, sets_threshold=name in real))
        twins = variability_statistics(noise_twins(lc, noise, rng), n_channels)
        samples.append(StageSample(f"{name} twins ({noise.name})", twins, False))
    return samples


def fit_variability_stage(
    real_sets: list[tuple[str | Path, object]],
    dr_path: str | Path,
    n_channels: int,
    min_epochs: int,
    val_fraction: float,
    split_seed: int,
    seed: int,
    n_simulated_per_class: int = 0,
    log=print,
) -> VariabilityStage:
    """Fit the stage on the train splits of ``real_sets`` ((prefix, band map) pairs) and a DR file.

    The groups are described at the top of this module.
    """
    from udfs.model.training import TRAIN

    groups: dict[str, tuple[FlatLightCurves, bool]] = {}
    for prefix, band_map in real_sets:
        lc = labelled_lightcurves(prefix, band_map, min_epochs, val_fraction, split_seed, TRAIN)
        groups[Path(prefix).name] = (lc, True)
    if n_simulated_per_class:
        groups[f"simulated variables on {Path(dr_path).name} cadences"] = (
            simulated_variables(dr_path, n_simulated_per_class, seed),
            True,
        )
    groups[f"{Path(dr_path).name} (train half)"] = (dr_lightcurves(dr_path, min_epochs, 0), False)
    for name, (lc, variable) in groups.items():
        kind = "and their twins" if variable else "as twins"
        log(f"[variability] {name}: {lc.n_lightcurves:,} light curves {kind}")
    real = {Path(prefix).name for prefix, _ in real_sets}
    samples = stage_samples(groups, n_channels, real, seed)
    calibration = {
        "fitted_on": "train splits of the real labelled sets, simulated variables on real DR "
        "cadences, and realistic noise-only twins of all of them and of the DR file's own light "
        "curves (train half); every group weighted equally",
        "noise_model": REALISTIC.to_dict(),
        "real_split": {"val_fraction": val_fraction, "seed": split_seed},
    }
    stage = fit_stage(samples, calibration=calibration)
    for name, rate in stage.calibration["passed_on_fit_sets"].items():
        log(f"[variability] passed on at p >= {stage.threshold:.3g}: {rate:.4f} of {name}")
    return stage
