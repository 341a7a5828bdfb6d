"""`varsky train`: train the classifier on labelled light curves; write a model directory.

Training set: simulated light curves of every class (:mod:`udfs.simulators.lightcurve_simulator`),
or a user's labelled table (``objectid``, ``label``) joined to a light-curve catalog (IRSA DR
Parquet or a HATS catalog from `varsky ingest`). The model inputs (dm-dt images, binned
periodograms, summary features) are made with Spark by the same code that classify uses
(:func:`udfs.kernels.model_inputs.model_inputs`). Objects are split into train, validation and test
sets (stratified by class); training objects with several bands also get band-dropped copies. The
network of :mod:`udfs.model.classifier` is trained with class weights, early stopping on the
validation loss and fixed seeds; the job writes the model, its card (with the test-split metrics of
the written file) and a confusion-matrix plot.

Example::

    varsky train --output models/varsky_dmdt_cnn
    varsky train --output my_model --labels labels.parquet --input data/sample
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from catalogs.band_map import BandMap
from catalogs.errors import InputError
from catalogs.provenance import file_sha256
from catalogs.schema import (
    DEFAULT_MIN_EPOCHS,
    LIGHTCURVE,
    LIGHTCURVE_STRUCT,
    N_GOOD,
    REJECT_REASON,
    DRColumn,
)
from udfs.kernels.dmdt import DmDtGrid
from udfs.kernels.lightcurve_features import FEATURE_NAMES
from udfs.kernels.model_inputs import FEATURES_INPUT
from udfs.kernels.periodogram import PeriodogramGrid
from udfs.model.classifier import (
    CLASS_NAMES,
    MODEL_FILE,
    Classifier,
    ModelCard,
    TrainingRecord,
    build_model,
    classification_metrics,
    configure_tensorflow_threads,
)
from udfs.model.model_figures import plot_confusion_matrix, plot_reliability
from udfs.model.training import TEST, TRAIN, VALIDATION, split_by_object, training_arrays_sha256

#: The confusion-matrix plot written beside the model.
CONFUSION_MATRIX_FILE = "confusion_matrix.png"
#: The reliability diagram (real validation split, before and after calibration).
RELIABILITY_FILE = "reliability.png"
_REPO_ROOT = Path(__file__).resolve().parents[1]
#: The real ZTF DR5 light curves whose epochs some simulated objects use as their cadence.
DEFAULT_CADENCE_SAMPLE = _REPO_ROOT / "data" / "sample" / "ztf_000250_zg_c01_q1_dr5.parquet"
GRID_NAMES = ("mahabal2017", "scope", "equalized")
#: Light curves sampled from the training set (simulated, then real) to equalise a grid.
EQUALIZED_GRID_SAMPLE = (3000, 1500)
#: Columns of a labelled table.
LABEL = "label"
SPLIT = "split"


@dataclass(frozen=True)
class TrainConfig:
    """Settings of a training run.

    Attributes
    ----------
    output : Path
        Model directory to write.
    objects_per_class : int
        Simulated light curves per class (all splits together).
    max_epochs : int
        Training epochs: the learning rate decays to zero over them (cosine); early stopping
        ends sooner only if the validation accuracy stops improving.
    seed : int
        Seed of the simulation, the split, band dropout and Keras.
    grid_name : str
        Built-in dm-dt grid (``mahabal2017`` or ``scope``).
    batch_size : int
        Objects per gradient step.
    val_fraction, test_fraction : float
        Fractions of each class's objects held out for validation and test.
    patience : int
        Epochs without a better validation accuracy before training stops (the weights of the
        best epoch are kept).
    learning_rate : float
        Adam's starting learning rate, decayed to zero over ``max_epochs`` along a cosine.
    cadence_sample : Path or None
        DR file of real cadences; None for synthetic cadences only.
    real_cadence_fraction : float
        Fraction of simulated objects given a real cadence.
    threads : int
        TensorFlow intra-op threads.
    labels : Path or None
        A labelled table (Parquet or CSV with ``objectid`` and ``label``) to train on instead of
        simulated light curves; needs ``inputs``.
    inputs : tuple of str
        Light-curve catalogs (DR Parquet or a HATS catalog) holding the labelled objects.
    min_epochs : int
        Labelled light curves with fewer good epochs are left out (and counted).
    band_dropout : float
        Probability that a multi-band training object gets a copy with one band removed.
    periodogram, features : bool
        Whether the network takes the binned periodogram and the summary features besides the
        dm-dt image (turn off to measure what each adds).
    master : str or None
        Spark master (default local[*]).
    real_sets : tuple of str
        Real labelled sets (``DIR/NAME`` of :mod:`catalogs.labelled_sets`) to fine-tune the
        pretrained network on; empty for simulated light curves only.
    band_map : BandMap
        Maps the real sets' bands onto g, r, i.
    real_val_fraction : float
        Fraction of each real set's objects (per source label) kept for validation: never
        trained on; the calibration is fitted on it and the real-data scores come from it.
    real_split_seed : int
        Seed of the real validation split (fixed, so every model meets the same objects).
    finetune_epochs : int
    finetune_learning_rate : float
        Adam's starting rate for fine-tuning, cosine decay to 0 over ``finetune_epochs``.
    finetune_sim_per_class : int
        Simulated training objects per class mixed into the fine-tuning set (they keep the
        classes without real examples, and ZTF's cadence and noise, in view). 1,500 rather than
        600 kept the DR5 census plausible (6.9% variable against 9.5%) at the same real recall.
    calibration_sim_per_class : int
        Simulated validation objects per class beside the real ones when fitting the
        calibration (classes without real examples need positives).
    """

    output: Path
    objects_per_class: int = 10000
    max_epochs: int = 20
    seed: int = 42
    grid_name: str = "mahabal2017"
    batch_size: int = 128
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    patience: int = 8
    learning_rate: float = 2e-3
    cadence_sample: Path | None = DEFAULT_CADENCE_SAMPLE
    real_cadence_fraction: float = 0.25
    threads: int = os.cpu_count() or 1
    labels: Path | None = None
    inputs: tuple[str, ...] = ()
    min_epochs: int = DEFAULT_MIN_EPOCHS
    band_dropout: float = 0.3
    periodogram: bool = True
    features: bool = True
    master: str | None = None
    real_sets: tuple[str, ...] = ()
    band_map: BandMap = field(default_factory=BandMap)
    real_val_fraction: float = 0.2
    real_split_seed: int = 2026
    finetune_epochs: int = 20
    finetune_learning_rate: float = 1e-3
    finetune_sim_per_class: int = 1500
    calibration_sim_per_class: int = 300
    variability_only: bool = False
    twins: bool = True

    def __post_init__(self) -> None:
        if self.objects_per_class < 3:
            raise ValueError(
                f"train: --objects-per-class must be >= 3 (one per split), "
                f"got {self.objects_per_class}"
            )
        for name in ("max_epochs", "batch_size", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"train: {name} must be >= 1, got {getattr(self, name)}")
        if self.grid_name not in GRID_NAMES:
            raise ValueError(f"train: --grid must be one of {GRID_NAMES}, got {self.grid_name!r}")
        if not (
            self.val_fraction > 0
            and self.test_fraction > 0
            and self.val_fraction + self.test_fraction < 1
        ):
            raise ValueError("train: need 0 < val_fraction, test_fraction and their sum < 1")
        if (self.labels is None) != (not self.inputs):
            raise ValueError("train: --labels and --input go together")
        if not 0.0 <= self.band_dropout <= 1.0:
            raise ValueError(f"train: --band-dropout must be in [0, 1], got {self.band_dropout}")
        if self.real_sets and self.labels is not None:
            raise ValueError("train: --real fine-tunes the simulator's model; not with --labels")
        if not 0.0 < self.real_val_fraction < 1.0:
            raise ValueError(
                f"train: --real-val-fraction must be in (0, 1), got {self.real_val_fraction}"
            )
        if self.finetune_epochs < 1:
            raise ValueError(f"train: --finetune-epochs must be >= 1, got {self.finetune_epochs}")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TrainConfig:
        """Build from the parsed command line."""
        sample = None if args.cadence_sample in (None, "", "none") else Path(args.cadence_sample)
        return cls(
            output=Path(args.output),
            objects_per_class=args.objects_per_class,
            max_epochs=args.epochs,
            seed=args.seed,
            grid_name=args.grid,
            batch_size=args.batch_size,
            patience=args.patience,
            cadence_sample=sample,
            real_cadence_fraction=args.real_cadence_fraction,
            threads=args.threads,
            labels=Path(args.labels) if args.labels else None,
            inputs=tuple(args.input or ()),
            min_epochs=args.min_epochs,
            band_dropout=args.band_dropout,
            periodogram=not args.no_periodogram,
            features=not args.no_features,
            master=args.master,
            real_sets=tuple(args.real or ()),
            band_map=BandMap.parse(args.band_map),
            finetune_epochs=args.finetune_epochs,
            variability_only=args.variability_only,
            twins=not args.no_twins,
        )


@dataclass
class TrainResult:
    """What a training run wrote and measured."""

    card: ModelCard
    model_path: Path
    card_path: Path
    confusion_matrix_path: Path
    model_sha256: str
    seconds: dict[str, float]
    best_val_loss: float
    best_val_accuracy: float = float("nan")
    n_band_dropped: int = 0
    left_out: dict[str, int] = field(default_factory=dict)

    def format(self) -> str:
        """The readable end-of-job summary."""
        return format_summary(self)

    @property
    def stage_s(self) -> dict[str, float]:
        """Seconds per stage (for the job runner)."""
        return self.seconds

    @stage_s.setter
    def stage_s(self, value: dict[str, float]) -> None:
        self.seconds = value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the train job's options to ``parser``."""
    defaults = TrainConfig(output=Path("."))
    parser.add_argument("--output", required=True, help="model directory to write")
    parser.add_argument(
        "--objects-per-class",
        type=int,
        default=defaults.objects_per_class,
        metavar="N",
        help="simulated light curves per class, all splits (default %(default)s)",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=defaults.max_epochs,
        metavar="E",
        help="training epochs: the learning rate decays to zero over them (cosine); early "
        "stopping if the validation accuracy stalls (default %(default)s)",
    )
    parser.add_argument(
        "--patience",
        type=int,
        default=defaults.patience,
        help="epochs without better validation accuracy before stopping (default %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help="(default %(default)s)")
    parser.add_argument(
        "--grid",
        choices=GRID_NAMES,
        default=defaults.grid_name,
        help="dm-dt grid (default %(default)s)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=defaults.batch_size,
        metavar="B",
        help="(default %(default)s)",
    )
    parser.add_argument(
        "--cadence-sample",
        default=str(DEFAULT_CADENCE_SAMPLE),
        metavar="PARQUET",
        help="DR light-curve file whose real epochs some objects use; 'none' for synthetic only "
        "(default: the bundled DR5 sample)",
    )
    parser.add_argument(
        "--real-cadence-fraction",
        type=float,
        default=defaults.real_cadence_fraction,
        metavar="F",
        help="fraction of objects with a real cadence (default %(default)s)",
    )
    parser.add_argument(
        "--labels",
        metavar="TABLE",
        help="train on a labelled table (Parquet or CSV: objectid, label) instead of simulated "
        "light curves; needs --input",
    )
    parser.add_argument(
        "--input",
        action="append",
        metavar="LC_CATALOG",
        help="light curves of the labelled objects: DR Parquet files or folders, or a HATS "
        "catalog from varsky ingest (repeatable)",
    )
    parser.add_argument(
        "--min-epochs",
        type=int,
        default=defaults.min_epochs,
        help="fewest good epochs a labelled light curve needs (default %(default)s)",
    )
    parser.add_argument(
        "--band-dropout",
        type=float,
        default=defaults.band_dropout,
        metavar="P",
        help="probability a multi-band training object gets a copy with one band removed "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--variability-only",
        action="store_true",
        help="only (re)fit the variability stage (udfs/model/variability.py) of the model already "
        "in --output, from the --real sets and the --cadence-sample DR file, and rewrite its card "
        "(about a minute, no Spark)",
    )
    parser.add_argument(
        "--no-twins",
        action="store_true",
        help="fine-tune without realistic noise-only twins of the --real sets as constants",
    )
    parser.add_argument(
        "--no-periodogram",
        action="store_true",
        help="leave out the binned-periodogram input (to measure what it adds)",
    )
    parser.add_argument(
        "--no-features",
        action="store_true",
        help="leave out the summary-feature input (to measure what it adds)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=defaults.threads,
        help="TensorFlow intra-op threads (default: all cores, %(default)s)",
    )
    parser.add_argument("--master", help="Spark master URL (default: local[*])")
    parser.add_argument(
        "--real",
        action="append",
        metavar="DIR/NAME",
        help="a real labelled set (NAME_detections.parquet + NAME_labels.parquet, see "
        "data/real_labelled) to fine-tune on after pretraining on the simulator; repeatable",
    )
    parser.add_argument(
        "--band-map",
        metavar="MAP",
        help="how the real sets' bands map onto g, r, i: NAME=BAND pairs (V=g), a profile "
        "(crts, rubin, ztf) or a .toml/.json file",
    )
    parser.add_argument(
        "--finetune-epochs",
        type=int,
        default=defaults.finetune_epochs,
        metavar="E",
        help="fine-tuning epochs on the real sets (default %(default)s)",
    )


def _portable_path(path: Path) -> str:
    """``path`` relative to the repository when inside it, so that cards do not name one machine."""
    try:
        return str(path.resolve().relative_to(_REPO_ROOT))
    except ValueError:
        return str(path)


def _data_description(config: TrainConfig) -> str:
    if config.cadence_sample is not None and config.real_cadence_fraction > 0:
        cadences = (
            f"ZTF-like synthetic cadences, {config.real_cadence_fraction:.0%} of objects with the "
            f"real epochs of {config.cadence_sample.name}"
        )
    else:
        cadences = "ZTF-like synthetic cadences"
    return (
        f"udfs.simulators.lightcurve_simulator light curves, {config.objects_per_class} per class: "
        f"{cadences}; g+r, g-only, r-only and g+r+i band subsets; noise from the DR5 "
        "error-magnitude relation with underestimated errors, calibration scatter and outliers; "
        "variables bright enough to be detected (amplitude >= 4 median magerr). Split by "
        "object, stratified by class."
    )


def simulated_lightcurve_table(config: TrainConfig) -> tuple[pa.Table, str]:
    """Simulated labelled light curves as a light-curve table, and a description of them."""
    from udfs.simulators.lightcurve_simulator import simulate_lightcurves

    sim = simulate_lightcurves(
        config.objects_per_class,
        config.seed,
        CLASS_NAMES,
        cadence_sample_path=config.cadence_sample,
        real_cadence_fraction=config.real_cadence_fraction,
    )
    offsets = pa.array(sim.offsets.astype(np.int32))
    lightcurve = pa.StructArray.from_arrays(
        [
            pa.ListArray.from_arrays(offsets, pa.array(sim.t_hmjd)),
            pa.ListArray.from_arrays(offsets, pa.array(sim.mag)),
            pa.ListArray.from_arrays(offsets, pa.array(sim.magerr)),
            pa.ListArray.from_arrays(offsets, pa.array(sim.channel)),
        ],
        fields=list(LIGHTCURVE_STRUCT),
    )
    table = pa.table(
        {
            DRColumn.OBJECTID: pa.array(np.arange(sim.n_lightcurves, dtype=np.int64)),
            LABEL: pa.array([CLASS_NAMES[k] for k in sim.labels], pa.string()),
            LIGHTCURVE: lightcurve,
        }
    )
    return table, _data_description(config)


def read_labels(path: Path) -> pa.Table:
    """The labelled table: ``objectid`` (int64) and ``label`` (string), one row per object.

    Raises InputError naming the file, column and row for a missing column, a null, a label that
    cannot be a column name, or an object labelled twice.
    """
    import re

    import pyarrow.csv as pacsv

    if not path.is_file():
        raise InputError(str(path), "no such file")
    try:
        table = pacsv.read_csv(path) if path.suffix.lower() == ".csv" else pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise InputError(str(path), f"not a Parquet or CSV table ({err})") from err
    for column in (DRColumn.OBJECTID, LABEL):
        if column not in table.column_names:
            raise InputError(str(path), "missing column", column=column)
    try:
        ids = table.column(DRColumn.OBJECTID).cast(pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
        raise InputError(str(path), f"not integers ({err})", column=DRColumn.OBJECTID) from err
    labels = table.column(LABEL).cast(pa.string())
    for column, values in ((DRColumn.OBJECTID, ids), (LABEL, labels)):
        nulls = np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))
        if nulls.size:
            raise InputError(str(path), "null value", column=column, row=int(nulls[0]))
    names = labels.to_pylist()
    for row, name in enumerate(names):
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise InputError(
                str(path),
                f"label {name!r} must be lower-case letters, digits and _ (it names an output "
                "column p_<label>)",
                column=LABEL,
                row=row,
            )
    id_values = ids.to_numpy()
    _, first, counts = np.unique(id_values, return_index=True, return_counts=True)
    if (counts > 1).any():
        repeated = np.flatnonzero(np.isin(id_values, id_values[first[counts > 1]]))
        raise InputError(
            str(path), "object labelled more than once", column=DRColumn.OBJECTID,
            row=int(repeated[1]),
        )  # fmt: skip
    return pa.table({DRColumn.OBJECTID: ids, LABEL: labels})


def label_classes(labels: list[str]) -> tuple[str, ...]:
    """Classes of a labelled set: taxonomy order when every label is a varsky class, else sorted."""
    present = set(labels)
    if present <= set(CLASS_NAMES):
        return tuple(c for c in CLASS_NAMES if c in present)
    return tuple(sorted(present))


def split_table(ids: np.ndarray, classes: np.ndarray, config: TrainConfig) -> np.ndarray:
    """Split codes of objects in object-id order (so that they do not depend on read order)."""
    order = np.argsort(ids, kind="stable")
    split = np.empty(ids.size, np.int8)
    split[order] = split_by_object(
        classes[order], config.val_fraction, config.test_fraction, config.seed
    )
    return split


def make_training_set(spark, lightcurves, card: ModelCard, config: TrainConfig):
    """Model inputs of every labelled light curve and its band-dropped copies, made with Spark.

    Parameters
    ----------
    spark : SparkSession
    lightcurves : DataFrame
        ``objectid``, ``label``, ``split`` and ``lightcurve`` per object.
    card : ModelCard
        Says which inputs to make.
    config : TrainConfig

    Returns
    -------
    pyarrow.Table
        ``objectid``, ``label``, ``split``, ``variant`` (0 original, 1 band-dropped copy) and one
        column per model input, sorted by objectid then variant.
    """
    import json

    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema

    from udfs.engines.spark_inference import band_dropout_partitions, model_input_partitions
    from udfs.model.band_dropout import VARIANT
    from udfs.model.inference import model_input_schema

    base = lightcurves.select(DRColumn.OBJECTID, LABEL, SPLIT, LIGHTCURVE)
    arrow_schema = pa.schema(
        [
            pa.field(DRColumn.OBJECTID, pa.int64()),
            pa.field(LABEL, pa.string()),
            pa.field(SPLIT, pa.int8()),
            pa.field(LIGHTCURVE, LIGHTCURVE_STRUCT),
            pa.field(VARIANT, pa.int8()),
        ]
    )
    copies = base.where(F.col(SPLIT) == TRAIN).mapInArrow(
        band_dropout_partitions(config.band_dropout, config.seed, config.min_epochs),
        from_arrow_schema(arrow_schema),
    )
    everything = base.withColumn(VARIANT, F.lit(0).cast("byte"))
    if config.band_dropout > 0:
        everything = everything.unionByName(copies)
    carried = (DRColumn.OBJECTID, LABEL, SPLIT, VARIANT)
    out_schema = model_input_schema(card, pa.schema([arrow_schema.field(c) for c in carried]))
    inputs = everything.mapInArrow(
        model_input_partitions(json.dumps(card.to_dict()), carried),
        from_arrow_schema(out_schema),
    )
    table = inputs.toArrow()
    return table.sort_by([(DRColumn.OBJECTID, "ascending"), (VARIANT, "ascending")])


def _labelled_lightcurves(spark, config: TrainConfig, log) -> tuple[object, dict[str, int], str]:
    """The labelled objects' light curves (after the classify cuts) and what was left out."""
    from pyspark.sql import functions as F

    from jobs.classify_plan import lightcurve_reader
    from jobs.classify_spark import read_cut_rows

    assert config.labels is not None
    labels = read_labels(config.labels)
    files, _, kind = lightcurve_reader(list(config.inputs))
    log(f"[train] {labels.num_rows} labels; light curves from {len(files)} file(s)")
    cut = read_cut_rows(spark, files, kind, config.min_epochs)
    label_df = spark.createDataFrame(labels.to_pandas())
    joined = label_df.join(
        cut.select(DRColumn.OBJECTID, LIGHTCURVE, REJECT_REASON), DRColumn.OBJECTID, "left"
    )
    joined = joined.persist()
    reasons = joined.groupBy(REJECT_REASON, F.col(LIGHTCURVE).isNull().alias("missing")).count()
    left_out: dict[str, int] = {}
    for row in reasons.collect():
        if row["missing"] and row[REJECT_REASON] is None:
            left_out["not in the light-curve catalog"] = row["count"]
        elif row[REJECT_REASON] is not None:
            left_out[row[REJECT_REASON]] = row["count"]
    kept = joined.where(F.col(REJECT_REASON).isNull() & F.col(LIGHTCURVE).isNotNull())
    description = (
        f"labelled table {config.labels.name} ({labels.num_rows} objects) joined to "
        f"{', '.join(Path(p).name for p in config.inputs)}; light curves with at least "
        f"{config.min_epochs} good epochs. Split by object, stratified by class."
    )
    return kept.select(DRColumn.OBJECTID, LABEL, LIGHTCURVE), left_out, description


#: Twins' objectids: the real object's id plus this (real ids are below 2^53).
TWIN_ID_OFFSET = 1 << 53


def _as_twins(table: pa.Table, twins, id_offset: int, name: str) -> pa.Table:
    """``table`` (a labelled set's columns) relabelled as noise-only twins of set ``name``.

    The ids move up by ``id_offset``, the class is constant, the light curves are ``twins``.
    """
    import pyarrow.compute as pc

    from catalogs.labelled_sets import CLASSES, LABEL_ORIG, SET_NAME
    from udfs.kernels.model_inputs import lightcurve_array

    n = table.num_rows
    objectid = pc.add(table.column(DRColumn.OBJECTID), pa.scalar(id_offset, pa.int64()))
    for column, values in (
        (DRColumn.OBJECTID, objectid),
        (CLASSES, pa.array(["constant"] * n, pa.string())),
        (LABEL_ORIG, pa.array(["noise-only twin"] * n, pa.string())),
        (SET_NAME, pa.array([name] * n, pa.string())),
        (LIGHTCURVE, lightcurve_array(twins)),
    ):
        index = table.schema.get_field_index(column)
        table = table.set_column(index, table.schema.field(index).name, values)
    return table


def _noise_twins(tables: list[pa.Table], sets: list[dict], config: TrainConfig):
    """Realistic noise-only twins of every real labelled object, labelled constant.

    Same times, bands and quoted errors (udfs.simulators.noise_twins.REALISTIC), so the network's
    constant class sees every real cadence and the cadence alone is no evidence of variability. A
    twin takes its object's split, so no validation object's twin is trained on.
    """
    from udfs.kernels.model_inputs import flat_lightcurves
    from udfs.simulators.noise_twins import REALISTIC, noise_twins

    rng = np.random.default_rng([config.seed, 29])
    out, entries = [], []
    for table, entry in zip(tables, sets, strict=True):
        name = f"{entry['name']}_twins"
        twins = noise_twins(flat_lightcurves(table.column(LIGHTCURVE)), REALISTIC, rng)
        out.append(_as_twins(table, twins, TWIN_ID_OFFSET, name))
        entries.append(
            {
                "name": name,
                "twins_of": entry["name"],
                "noise_model": REALISTIC.to_dict(),
                "objects": table.num_rows,
                "too_few_epochs": 0,
            }  # fmt: skip
        )
    return out, entries


#: Twins of the cadence sample's DR objects: the DR objectid plus this times the draw (1, 2, ..),
#: above the real sets' twins. A DR file holds few stars, so each gives DR_TWIN_DRAWS twins.
DR_TWIN_ID_OFFSET = 1 << 54
DR_TWIN_DRAWS = 3


def _dr_twins(config: TrainConfig, schema: pa.Schema):
    """Realistic noise-only twins of the cadence sample's DR light curves, labelled constant.

    Most of a DR file's stars do not vary, but which ones is not known, so only their twins are
    learned from: the constant class then sees the DR cadence and depth too. The split is the
    variability stage's (:func:`udfs.model.variability_training.dr_half`: half 0 trains, half 1
    validates), so the benches' held-out half stays unseen by both stages.
    Returns the table (``schema``'s columns), its split and its set entry, or None.
    """
    from catalogs.labelled_sets import N_EPOCHS
    from udfs.kernels.model_inputs import flat_lightcurves
    from udfs.model.variability_training import dr_cut_table, dr_half
    from udfs.simulators.noise_twins import REALISTIC, noise_twins

    if config.cadence_sample is None:
        return None
    cut = dr_cut_table(config.cadence_sample, config.min_epochs)
    n = cut.num_rows
    if n == 0:
        return None
    rng = np.random.default_rng([config.seed, 31])
    flat = flat_lightcurves(cut.column(LIGHTCURVE))
    # The DR rows in the labelled sets' columns; _as_twins fills the labels and light curves.
    given = {
        DRColumn.OBJECTID: cut.column(DRColumn.OBJECTID),
        "ra": cut.column("ra"),
        "dec": cut.column("dec"),
        N_EPOCHS: cut.column(N_GOOD),
        LIGHTCURVE: cut.column(LIGHTCURVE),
    }
    base = pa.table(
        {f.name: given[f.name] if f.name in given else pa.nulls(n, f.type) for f in schema}
    ).cast(schema)
    name = f"{Path(config.cadence_sample).stem}_twins"
    table = pa.concat_tables(
        _as_twins(base, noise_twins(flat, REALISTIC, rng), DR_TWIN_ID_OFFSET * (draw + 1), name)
        for draw in range(DR_TWIN_DRAWS)
    )
    objectid = cut.column(DRColumn.OBJECTID).to_numpy()
    split = np.tile(np.where(dr_half(objectid) == 0, TRAIN, VALIDATION), DR_TWIN_DRAWS)
    split = split.astype(np.int8)
    entry = {
        "name": name,
        "twins_of": _portable_path(Path(config.cadence_sample)),
        "twins_of_sha256": file_sha256(Path(config.cadence_sample)),
        "noise_model": REALISTIC.to_dict(),
        "objects": table.num_rows,
        "twin_draws": DR_TWIN_DRAWS,
        "too_few_epochs": 0,
    }
    return table, split, entry


def _real_lightcurves(spark, config: TrainConfig, workdir: Path, log):
    """The real labelled sets as one light-curve table with the real split, and their record."""
    from catalogs.labelled_sets import CLASSES, LABEL_ORIG, N_EPOCHS, SET_NAME, read_labelled_set
    from udfs.model.training import TOO_SPARSE, labelled_set_split

    tables, splits, sets = [], [], []
    for prefix in config.real_sets:
        table = read_labelled_set(prefix, config.band_map)
        name = Path(prefix).name
        set_split = labelled_set_split(
            name,
            table.column(DRColumn.OBJECTID).to_numpy(),
            table.column(LABEL_ORIG).to_pylist(),
            table.column(N_EPOCHS).to_numpy(),
            config.min_epochs,
            config.real_val_fraction,
            config.real_split_seed,
        )
        enough = set_split != TOO_SPARSE
        sets.append(
            {
                "name": name,
                "detections": _portable_path(Path(f"{prefix}_detections.parquet")),
                "detections_sha256": file_sha256(Path(f"{prefix}_detections.parquet")),
                "labels": _portable_path(Path(f"{prefix}_labels.parquet")),
                "labels_sha256": file_sha256(Path(f"{prefix}_labels.parquet")),
                "objects": table.num_rows,
                "too_few_epochs": int((~enough).sum()),
            }
        )
        tables.append(table.filter(pa.array(enough)))
        splits.append(set_split[enough])
    if config.twins:
        twin_tables, twin_sets = _noise_twins(tables, sets, config)
        tables += twin_tables
        splits += splits[: len(twin_tables)]
        sets += twin_sets
        dr_twins = _dr_twins(config, tables[0].schema)
        if dr_twins is not None:
            tables.append(dr_twins[0])
            splits.append(dr_twins[1])
            sets.append(dr_twins[2])
    table = pa.concat_tables(tables)
    split = np.concatenate(splits)
    for entry in sets:
        mine = np.asarray(table.column(SET_NAME).to_pylist()) == entry["name"]
        entry["train"] = int((mine & (split == TRAIN)).sum())
        entry["validation"] = int((mine & (split == VALIDATION)).sum())
        log(
            f"[train] real set {entry['name']}: {entry['objects']} objects, "
            f"{entry['too_few_epochs']} with fewer than {config.min_epochs} epochs left out, "
            f"train {entry['train']}, validation {entry['validation']}"
        )
    lightcurves = table.select([DRColumn.OBJECTID, CLASSES, LIGHTCURVE]).rename_columns(
        [DRColumn.OBJECTID, LABEL, LIGHTCURVE]
    )
    lightcurves = lightcurves.append_column(SPLIT, pa.array(split, pa.int8()))
    pq.write_table(lightcurves, workdir / "real.parquet", row_group_size=500)
    meta = {
        "objectid": table.column(DRColumn.OBJECTID).to_numpy(),
        "set": np.asarray(table.column(SET_NAME).to_pylist(), dtype=object),
        "label_orig": np.asarray(table.column(LABEL_ORIG).to_pylist(), dtype=object),
    }
    return spark.read.parquet(str(workdir / "real.parquet")), sets, meta, lightcurves


def equalized_grid(tables: list[pa.Table], seed: int) -> DmDtGrid:
    """:meth:`DmDtGrid.equalized` on a seeded sample of the training light curves of ``tables``.

    Each table has ``lightcurve`` and ``split``; up to :data:`EQUALIZED_GRID_SAMPLE` training
    rows are drawn from each in turn (simulated, then real).
    """
    from udfs.kernels.model_inputs import flat_lightcurves

    parts = []
    rng = np.random.default_rng([seed, 3])
    for table, n in zip(tables, EQUALIZED_GRID_SAMPLE, strict=False):
        rows = np.flatnonzero(table.column(SPLIT).to_numpy() == TRAIN)
        rows = np.sort(rng.choice(rows, min(n, rows.size), replace=False))
        parts.append(flat_lightcurves(table.column(LIGHTCURVE).take(pa.array(rows))))
    t = np.concatenate([p.t_days for p in parts])
    mag = np.concatenate([p.mag for p in parts])
    channel = np.concatenate([p.channel for p in parts])
    offsets = [parts[0].offsets]
    for p in parts[1:]:
        offsets.append(p.offsets[1:] + offsets[-1][-1])
    n_dm, n_dt = DmDtGrid.mahabal2017().shape
    return DmDtGrid.equalized(
        t, mag, np.concatenate(offsets), channel, n_dt=n_dt, n_dm=n_dm, seed=seed
    )


def train(spark, config: TrainConfig, log: Callable[[str], None] = print) -> TrainResult:
    """Build the training sets with Spark, pretrain, fine-tune, calibrate, evaluate, write."""
    from udfs.model.band_dropout import VARIANT
    from udfs.model.inference import model_input_arrays
    from udfs.model.real_validation import labelled_scores
    from udfs.model.training import (
        calibrate,
        class_weights,
        finetune,
        fit,
        multi_hot_targets,
        sample_weights,
        take,
    )

    start = time.perf_counter()
    seconds: dict[str, float] = {}
    configure_tensorflow_threads(config.threads)
    from udfs.model.tensorflow_import import quiet_import

    quiet_import()
    import keras

    grid = None if config.grid_name == "equalized" else DmDtGrid.named(config.grid_name)
    periodogram = PeriodogramGrid() if config.periodogram else None
    features = FEATURE_NAMES if config.features else ()
    left_out: dict[str, int] = {}
    real_table = None
    workdir = Path(tempfile.mkdtemp(prefix="varsky_train_"))
    try:
        t0 = time.perf_counter()
        if config.labels is None:
            log(
                f"[train] simulating {config.objects_per_class} light curves x "
                f"{len(CLASS_NAMES)} classes (seed {config.seed})"
            )
            table, description = simulated_lightcurve_table(config)
            pq.write_table(table, workdir / "lightcurves.parquet", row_group_size=2000)
            lightcurves = spark.read.parquet(str(workdir / "lightcurves.parquet"))
        else:
            lightcurves, left_out, description = _labelled_lightcurves(spark, config, log)
        ids_labels = lightcurves.select(DRColumn.OBJECTID, LABEL).toArrow()
        ids = ids_labels.column(DRColumn.OBJECTID).to_numpy()
        names = ids_labels.column(LABEL).to_pylist()
        classes = label_classes(names)
        if len(classes) < 2:
            raise ValueError(f"train: need at least 2 classes, found {list(classes)}")
        class_of = np.array([classes.index(n) for n in names], dtype=np.int16)
        counts = np.bincount(class_of, minlength=len(classes))
        if counts.min() < 3:
            raise ValueError(
                "train: every class needs at least 3 objects (one per split); "
                f"{classes[int(counts.argmin())]!r} has {int(counts.min())}"
            )
        split = split_table(ids, class_of, config)
        # Through a file, not createDataFrame: the table can be large for one task.
        pq.write_table(pa.table({DRColumn.OBJECTID: ids, SPLIT: split}), workdir / "split.parquet")
        split_df = spark.read.parquet(str(workdir / "split.parquet"))
        lightcurves = lightcurves.join(split_df, DRColumn.OBJECTID)
        real_sets: list[dict] = []
        if config.real_sets:
            real_lcs, real_sets, real_meta, real_arrow = _real_lightcurves(
                spark, config, workdir, log
            )
        if config.grid_name == "equalized":
            if config.labels is not None:
                raise ValueError("train: --grid equalized needs simulated training light curves")
            position = {int(o): k for k, o in enumerate(ids)}
            rows = [position[int(o)] for o in table.column(DRColumn.OBJECTID).to_pylist()]
            sim = table.append_column(SPLIT, pa.array(split[rows], pa.int8()))
            grid = equalized_grid([sim] + ([real_arrow] if config.real_sets else []), config.seed)
            log(
                f"[train] equalized dm-dt grid: dt edges {np.round(grid.dt_edges_days, 3).tolist()}"
                f" days; dm edges {np.round(grid.dm_edges_mag, 3).tolist()} mag"
            )
        seconds["light curves"] = time.perf_counter() - t0
        log(
            f"[train] {ids.size} labelled light curves, {len(classes)} classes; making model "
            f"inputs with Spark ({grid.name} dm-dt"
            f"{', periodogram' if periodogram else ''}{', features' if features else ''})"
        )
        card = ModelCard.for_grid(grid, classes, periodogram=periodogram, features=features)
        t0 = time.perf_counter()
        table = make_training_set(spark, lightcurves, card, config)
        if config.real_sets:
            real_table = make_training_set(spark, real_lcs, card, config)
        seconds["inputs"] = time.perf_counter() - t0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    arrays = model_input_arrays(table, card)
    labels = np.array([classes.index(n) for n in table.column(LABEL).to_pylist()], dtype=np.int16)
    split_all = table.column(SPLIT).to_numpy().astype(np.int8)
    variant = table.column(VARIANT).to_numpy()
    original = variant == 0
    data_sha256 = training_arrays_sha256(arrays, labels, split_all)
    train_ = split_all == TRAIN
    val = (split_all == VALIDATION) & original
    test = (split_all == TEST) & original
    n_dropped = int((train_ & ~original).sum())
    log(
        f"[train] inputs in {seconds['inputs']:.1f} s; split by object: train "
        f"{int((train_ & original).sum())} (+{n_dropped} band-dropped copies), validation "
        f"{int(val.sum())}, test {int(test.sum())}"
    )

    feature_mean = feature_variance = None
    if FEATURES_INPUT in arrays:
        feature_mean = arrays[FEATURES_INPUT][train_].mean(axis=0)
        feature_variance = np.maximum(arrays[FEATURES_INPUT][train_].var(axis=0), 1e-6)
    shapes = card.input_shapes

    def network():
        return build_model(
            shapes, len(classes), feature_mean=feature_mean, feature_variance=feature_variance
        )

    keras.utils.set_random_seed(config.seed)
    model = network()
    one_hot = np.eye(len(classes), dtype=np.float32)[labels]
    log(f"[train] training {model.count_params()} parameters, up to {config.max_epochs} epochs")
    t0 = time.perf_counter()
    history = fit(
        model,
        take(arrays, train_),
        one_hot[train_],
        epochs=config.max_epochs,
        learning_rate=config.learning_rate,
        batch_size=config.batch_size,
        sample_weight=sample_weights(one_hot[train_], class_weights(one_hot[train_])),
        validation=(take(arrays, val), one_hot[val]),
        patience=config.patience,
    )
    seconds["fit"] = time.perf_counter() - t0
    epochs_run = len(history["loss"])
    best_val_loss = float(np.min(history["val_loss"]))
    best_val_accuracy = float(np.max(history["val_accuracy"]))

    fine_tuning = calibration = real_validation = None
    reliability = {}
    if real_table is not None:
        t0 = time.perf_counter()
        r_arrays = model_input_arrays(real_table, card)
        r_ids = real_table.column(DRColumn.OBJECTID).to_numpy()
        r_labels = real_table.column(LABEL).to_pylist()
        r_split = real_table.column(SPLIT).to_numpy()
        r_original = real_table.column(VARIANT).to_numpy() == 0
        r_train, r_val = r_split == TRAIN, (r_split == VALIDATION) & r_original
        where = {int(o): k for k, o in enumerate(real_meta["objectid"])}
        r_row = np.array([where[int(o)] for o in r_ids])
        r_set, r_group = real_meta["set"][r_row], real_meta["label_orig"][r_row]
        r_targets = multi_hot_targets(r_labels, classes)
        log(
            f"[train] fine-tuning on {int(r_train.sum())} real (with band-dropped copies) + "
            f"simulated light curves, {config.finetune_epochs} epochs"
        )
        n_real_train, n_simulated = finetune(
            model,
            r_arrays,
            r_targets,
            r_train,
            arrays,
            labels,
            train_ & original,
            sim_per_class=config.finetune_sim_per_class,
            epochs=config.finetune_epochs,
            learning_rate=config.finetune_learning_rate,
            batch_size=config.batch_size,
        )
        seconds["fine-tune"] = time.perf_counter() - t0
        cal = calibrate(
            model,
            Classifier(model, card).predict,
            r_arrays,
            r_targets,
            r_val,
            arrays,
            labels,
            val,
            sim_per_class=config.calibration_sim_per_class,
        )
        p_real_after = cal.p_real_after
        reliability = cal.reliability
        calibration = {
            "method": "per-class Platt scaling of the one-vs-rest sigmoids, folded into the "
            "output layer: p' = sigmoid(scale * logit(p) + shift)",
            "fitted_on": f"{cal.n_real} real validation objects and {cal.n_simulated} simulated "
            f"validation objects ({config.calibration_sim_per_class} per class)",
            "scale": dict(zip(classes, cal.scaling.scale, strict=True)),
            "shift": dict(zip(classes, cal.scaling.shift, strict=True)),
            "ece_real_validation_before": cal.ece_before,
            "ece_real_validation_after": cal.ece_after,
            "reliability": reliability,
        }
        real_validation = {}
        for name in sorted(set(r_set[r_val].tolist())):
            mine = r_set[r_val] == name
            real_validation[name] = labelled_scores(
                p_real_after[mine],
                [r_labels[k] for k in np.flatnonzero(r_val)[mine]],
                r_group[r_val][mine],
                classes,
            )
        fine_tuning = {
            "sets": real_sets,
            "band_map": json.loads(config.band_map.to_json()),
            "label_rule": "a label naming several classes (a|b) makes each of them a positive "
            "of its one-vs-rest sigmoid; a prediction counts as right when its argmax is any "
            "of them",
            "min_epochs": config.min_epochs,
            "validation_fraction": config.real_val_fraction,
            "validation_seed": config.real_split_seed,
            "validation": f"{config.real_val_fraction:.0%} of each set's objects per source "
            f"label (udfs.model.training.real_split, seed {config.real_split_seed}); never "
            "trained on",
            "epochs": config.finetune_epochs,
            "learning_rate": config.finetune_learning_rate,
            "learning_rate_schedule": f"cosine decay to 0 over {config.finetune_epochs} epochs",
            "mix": f"real training objects (with band-dropped copies) + "
            f"{config.finetune_sim_per_class} simulated training objects per class"
            + (
                "; realistic noise-only twins of every real object and of the cadence "
                "sample's stars as constants"
                if config.twins
                else ""
            )
            + "; balanced class weights",
            "n_real_train": n_real_train,
            "n_simulated": n_simulated,
            "layers": "all trainable",
            "sha256": training_arrays_sha256(
                r_arrays, np.frombuffer("\n".join(r_labels).encode(), np.uint8), r_split
            ),
        }

    # Save an uncompiled copy: no optimizer state in the file, which stays small.
    output = config.output
    output.mkdir(parents=True, exist_ok=True)
    exported = network()
    exported.set_weights(model.get_weights())
    model_path = output / MODEL_FILE
    partial = output / f".{MODEL_FILE}.partial.keras"
    exported.save(partial)
    os.replace(partial, model_path)

    record = TrainingRecord(
        description=description,
        seed=config.seed,
        sha256=data_sha256,
        objects_per_class=config.objects_per_class if config.labels is None else 0,
        n_train=int((train_ & original).sum()),
        n_val=int(val.sum()),
        n_test=int(test.sum()),
        epochs_run=epochs_run,
        max_epochs=config.max_epochs,
        batch_size=config.batch_size,
        cadence_sample=_portable_path(config.cadence_sample)
        if config.cadence_sample and config.labels is None
        else None,
        band_dropout=config.band_dropout,
        n_band_dropped=n_dropped,
        learning_rate=config.learning_rate,
        learning_rate_schedule=f"cosine decay to 0 over {config.max_epochs} epochs",
    )
    card = replace(
        card,
        training=record,
        fine_tuning=fine_tuning,
        calibration=calibration,
        real_validation=real_validation,
    )
    # Score the written file, not the in-memory model: the card describes what is on disk.
    classifier = Classifier.load(model_path, card)
    probabilities = classifier.predict(take(arrays, test))
    metrics = classification_metrics(labels[test], probabilities.argmax(axis=1), classes)
    seconds["total"] = time.perf_counter() - start
    card = replace(
        card,
        training=replace(record, duration_s=round(seconds["total"], 1)),
        test_metrics=metrics,
        model_sha256=file_sha256(model_path),
        variability=fit_variability(config, len(card.bands), log),
    )
    card_path = card.write(output)
    confusion_path = output / CONFUSION_MATRIX_FILE
    plot_confusion_matrix(
        metrics,
        classes,
        confusion_path,
        f"{card.name}, synthetic test split ({record.n_test} objects): macro F1 "
        f"{metrics.macro_f1:.3f}",
    )
    if reliability:
        plot_reliability(
            reliability,
            output / RELIABILITY_FILE,
            f"{card.name}: real validation split, ECE "
            f"{calibration['ece_real_validation_before']:.3f} -> "
            f"{calibration['ece_real_validation_after']:.3f}",
        )
    return TrainResult(
        card=card,
        model_path=model_path,
        card_path=card_path,
        confusion_matrix_path=confusion_path,
        model_sha256=file_sha256(model_path),
        seconds=seconds,
        best_val_loss=best_val_loss,
        best_val_accuracy=best_val_accuracy,
        n_band_dropped=n_dropped,
        left_out=left_out,
    )


def format_summary(result: TrainResult) -> str:
    """The readable end-of-job summary."""
    card, record, metrics = result.card, result.card.training, result.card.test_metrics
    assert record is not None and metrics is not None
    minutes, secs = divmod(result.seconds["total"], 60)
    size_mb = result.model_path.stat().st_size / 1e6
    inputs = ", ".join(
        f"{name} {'x'.join(map(str, shape))}" for name, shape in card.input_shapes.items()
    )
    lines = [
        f"varsky train: done in {int(minutes)}m{secs:04.1f}s",
        f"  data         {record.description}",
        f"  light curves {record.n_train + record.n_val + record.n_test} in "
        f"{len(card.classes)} classes ({result.seconds['light curves']:.1f} s)",
    ]
    for reason, count in sorted(result.left_out.items()):
        lines.append(f"    left out   {count} labelled objects: {reason}")
    lines += [
        f"  inputs       {inputs}, made with Spark ({result.seconds['inputs']:.1f} s)",
        f"  split        train {record.n_train} (+{result.n_band_dropped} band-dropped copies), "
        f"validation {record.n_val}, test {record.n_test} (by object, stratified by class)",
        f"  training     {record.epochs_run} of {record.max_epochs} epochs (Adam "
        f"{record.learning_rate:g}, {record.learning_rate_schedule}), best validation accuracy "
        f"{result.best_val_accuracy:.4f}, loss {result.best_val_loss:.4f} "
        f"({result.seconds['fit']:.1f} s)",
        f"  test split   accuracy {metrics.accuracy:.3f}, macro F1 {metrics.macro_f1:.3f}",
        f"    {'class':<12} {'precision':>9} {'recall':>7} {'F1':>6} {'n':>5}",
    ]
    for name, scores in metrics.per_class.items():
        lines.append(
            f"    {name:<12} {scores.precision:9.3f} {scores.recall:7.3f} {scores.f1:6.3f} "
            f"{scores.support:5d}"
        )
    lines += [
        f"  model        {result.model_path} ({size_mb:.2f} MB, sha256 {result.model_sha256[:16]})",
        f"  card         {result.card_path}",
        f"  confusion    {result.confusion_matrix_path}",
    ]
    return "\n".join(lines)


def fit_variability(config: TrainConfig, n_channels: int, log=print):
    """The variability stage fitted on the config's real sets and cadence sample, or None."""
    if not config.real_sets or config.cadence_sample is None:
        log("[train] no variability stage: it needs --real sets and a --cadence-sample DR file")
        return None
    from udfs.model.variability_training import fit_variability_stage

    return fit_variability_stage(
        [(prefix, config.band_map) for prefix in config.real_sets],
        config.cadence_sample,
        n_channels,
        config.min_epochs,
        config.real_val_fraction,
        config.real_split_seed,
        config.seed,
        log=log,
    )


def refit_variability(config: TrainConfig) -> int:
    """``--variability-only``: fit the stage of the model in ``config.output``, rewrite its card."""
    start = time.perf_counter()
    card = ModelCard.read(config.output)
    stage = fit_variability(config, len(card.bands))
    if stage is None:
        raise ValueError("train --variability-only: give the --real sets to fit the stage on")
    path = replace(card, variability=stage).write(config.output)
    print(
        f"varsky train --variability-only: done in {time.perf_counter() - start:.1f} s\n"
        f"  stage        threshold p_variable >= {stage.threshold:.4g}, "
        f"sha256 {stage.sha256[:16]}\n"
        f"  card         {path}"
    )
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the train job from parsed arguments; return the exit status."""
    from jobs.session import run_spark_job

    config = TrainConfig.from_args(args)
    if config.variability_only:
        return refit_variability(config)
    return run_spark_job("varsky-train", config.master, lambda spark: train(spark, config))
