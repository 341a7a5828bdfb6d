"""`varsky classify`: light curves in, a HATS classification catalog out.

Stages: check inputs (footers) -> read -> quality cuts and `_healpix_29` -> equal ranges of
`_healpix_29` (one per Spark partition) -> model inputs (dm-dt images, periodograms, features)
and the network in the same Python worker -> a HATS collection (the catalog in adaptive HEALPix
tiles, its margin cache and collection.properties), plus a rejects table.

Output layout (OUTPUT is the collection, which ``lsdb.open_catalog(OUTPUT)`` opens)::

    OUTPUT/collection.properties
    OUTPUT/<catalog>/hats.properties, partition_info.csv, skymap.fits, point_map.fits
    OUTPUT/<catalog>/dataset/Norder=K/Dir=D/Npix=N.parquet, _metadata, _common_metadata
    OUTPUT/<catalog>_<margin>arcs/...   (rows within the margin of each tile)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq

from catalogs.dr_lightcurves import DRFile, check_dr_files
from catalogs.input_files import is_hats_catalog, light_curve_inputs
from catalogs.parquet_output import (
    check_output_dir,
    is_local_path,
    local_path,
    publish_output,
    remove_spark_sidecar_files,
    staging_path,
)
from catalogs.provenance import VARSKY_VERSION
from catalogs.resume import (
    ResumeState,
    clear_for_resume,
    finish_journal,
    read_journal,
    run_fingerprint,
)
from catalogs.schema import (
    BAND,
    CARRIED_COLUMNS,
    CLASSIFICATION_SCHEMA_VERSION,
    DEC,
    DEFAULT_MIN_EPOCHS,
    HEALPIX_COLUMN,
    LIGHTCURVE,
    N_DUPLICATE,
    N_FLAGGED,
    N_GOOD,
    N_NONFINITE,
    N_THINNED,
    PREDICTED_CLASS,
    RA,
    REJECT_REASON,
    SOURCE_FILE,
    SOURCE_ROW,
    DRColumn,
    InputKind,
    Property,
)
from catalogs.spark_tables import read_dr_dataframe
from udfs.classifier import DEFAULT_MODEL_DIR
from udfs.lightcurve_cuts import MAX_EPOCHS

DEFAULT_ROWS_PER_PARTITION = 5000
DEFAULT_BATCH_SIZE = 256
DEFAULT_CATALOG_NAME = "varsky_classification"
#: Rows per output HEALPix tile at most (tiles split until they hold no more).
DEFAULT_MAX_ROWS_PER_PIXEL = 500_000
#: Width of the margin cache, arcsec: pairs closer than this across a tile edge are found.
DEFAULT_MARGIN_ARCSEC = 10.0
#: An exposure of a DR file is bad when more than this fraction of its stars deviate by 3 sigma
#: (a good one has about 1%), among at least this many stars (udfs.bad_exposures).
DEFAULT_BAD_EXPOSURE_FRACTION = 0.05
DEFAULT_BAD_EXPOSURE_MIN_STARS = 30
#: HEALPix order of the histogram the output tiles are cut from.
HISTOGRAM_ORDER = 10


@dataclass(frozen=True)
class ClassifyConfig:
    """Everything the classify job needs, built from its command line."""

    inputs: tuple[str, ...]
    output: str
    rejects: str
    model_dir: str
    grid: str | None = None
    min_epochs: int = DEFAULT_MIN_EPOCHS
    rows_per_partition: int = DEFAULT_ROWS_PER_PARTITION
    variability_stage: bool = True
    variability_threshold: float | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    overwrite: bool = False
    master: str | None = None
    catalog_name: str = DEFAULT_CATALOG_NAME
    engine: str = "spark"
    scheduler: str | None = None
    max_rows_per_pixel: int = DEFAULT_MAX_ROWS_PER_PIXEL
    margin_arcsec: float = DEFAULT_MARGIN_ARCSEC
    bad_exposure_fraction: float = DEFAULT_BAD_EXPOSURE_FRACTION
    bad_exposure_min_stars: int = DEFAULT_BAD_EXPOSURE_MIN_STARS
    resume: bool = False

    @property
    def catalog_dir(self) -> str:
        """The classification catalog inside the output collection."""
        return f"{self.output}/{self.catalog_name}"

    def staged(self) -> ClassifyConfig:
        """The configuration with its outputs written into their staging folders."""
        return replace(self, output=staging_path(self.output), rejects=staging_path(self.rejects))

    @property
    def margin_name(self) -> str:
        """Name (and directory) of the margin cache."""
        return f"{self.catalog_name}_{self.margin_arcsec:g}arcs"

    def job_arguments(self) -> dict[str, object]:
        """The arguments as recorded in the catalog properties."""
        return {
            "inputs": [str(Path(p).resolve()) for p in self.inputs],
            "output": str(Path(self.output).resolve()),
            "rejects": str(Path(self.rejects).resolve()),
            "model": str(Path(self.model_dir).resolve()),
            "min_epochs": self.min_epochs,
            "rows_per_partition": self.rows_per_partition,
            "variability_stage": self.variability_stage,
            "variability_threshold": self.variability_threshold,
            "batch_size": self.batch_size,
            "catalog_name": self.catalog_name,
            "engine": self.engine,
            "max_rows_per_pixel": self.max_rows_per_pixel,
            "margin_arcsec": self.margin_arcsec,
            "bad_exposure_fraction": self.bad_exposure_fraction,
            "bad_exposure_min_stars": self.bad_exposure_min_stars,
        }


@dataclass
class ClassifySummary:
    """What went in, what came out, where, and how long each stage took."""

    files: list[DRFile]
    rows_in: int = 0
    rows_out: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    epochs_in: int = 0
    epochs_good: int = 0
    epochs_used: int = 0
    epochs_flagged: int = 0
    epochs_nonfinite: int = 0
    epochs_duplicate: int = 0
    epochs_thinned: int = 0
    class_counts: dict[str, int] = field(default_factory=dict)
    stage_s: dict[str, float] = field(default_factory=dict)
    task_s: dict[str, float] = field(default_factory=dict)
    #: Objects the variability stage settled as constant (None: the model has no stage).
    settled: int | None = None
    #: The stage's threshold, and whether it settled (False: --variability-stage off).
    variability_threshold: float | None = None
    variability_settles: bool = True
    #: Python task seconds of the inputs + network stage / its wall time / the job's cores.
    cores_busy: float | None = None
    cores: int = 0
    output: str = ""
    rejects: str = ""
    model_sha256: str = ""
    tiles: list[tuple[int, int, int]] = field(default_factory=list)
    margin_rows: int = 0
    margin_name: str = ""
    exposures_checked: int = 0
    exposures_flagged: int = 0
    epochs_bad_exposure: int = 0
    bad_exposure_note: str = ""
    bad_exposure_fraction: float = DEFAULT_BAD_EXPOSURE_FRACTION
    #: With --resume: tiles (and their rows) kept from the dead run.
    resumed_tiles: int | None = None
    resumed_rows: int = 0

    @property
    def rows_rejected(self) -> int:
        """Rows that went to the rejects table."""
        return sum(self.rejected_by_reason.values())

    def first_stage_line(self) -> str:
        """The summary's line about the variability stage."""
        if self.settled is None:
            return (
                "first stage none: the model has no variability stage; every object to the network"
            )
        if not self.variability_settles:
            return (
                "first stage off (--variability-stage off): p_variable computed, every object "
                "to the network"
            )
        return (
            f"first stage {self.settled:,} of {self.rows_out:,} objects settled as constant "
            f"(p_variable < {self.variability_threshold:.3g}); "
            f"{self.rows_out - self.settled:,} to the periodogram and network"
        )

    def format(self) -> str:
        """A short report a person can read."""
        total_s = sum(self.stage_s.values())
        lines = [f"varsky classify: done in {total_s:.1f} s"]
        names = ", ".join(Path(f.path).name for f in self.files[:3])
        more = f" and {len(self.files) - 3:,} more" if len(self.files) > 3 else ""
        lines.append(f"  input       {len(self.files):,} file(s): {names}{more}")
        lines.append(f"  rows read   {self.rows_in:,}")
        lines.append(
            f"  epochs      {self.epochs_in:,} read = {self.epochs_good:,} good "
            f"+ {self.epochs_flagged:,} cut by catflags != 0 "
            f"+ {self.epochs_nonfinite:,} invalid (non-finite, or magerr <= 0) "
            f"+ {self.epochs_duplicate:,} exact repeats + {self.epochs_thinned:,} thinned "
            f"(light curves over {MAX_EPOCHS:,}); "
            f"{self.epochs_used:,} good epochs in classified objects"
        )
        if self.bad_exposure_note:
            lines.append(f"  exposures   {self.bad_exposure_note}")
        else:
            lines.append(
                f"  exposures   {self.exposures_flagged:,} of {self.exposures_checked:,} exposures "
                f"flagged bad (>{self.bad_exposure_fraction:.0%} of their stars 3 sigma off); "
                f"{self.epochs_bad_exposure:,} "
                "epochs removed from classified objects"
            )
        lines.append(f"  rejected    {self.rows_rejected:,} rows -> {self.rejects}")
        for reason, n in sorted(self.rejected_by_reason.items(), key=lambda kv: -kv[1]):
            lines.append(f"                {reason:<24} {n:,}")
        lines.append(f"  classified  {self.rows_out:,} objects -> {self.output} (HATS collection)")
        for name, n in sorted(self.class_counts.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"                {name:<24} {n:,}")
        if self.tiles:
            orders = sorted({o for o, _, _ in self.tiles})
            if len(self.tiles) == 1:
                margin = "no margin cache (one tile has no neighbours)"
            elif self.margin_rows == 0:
                margin = "no margin cache (no object near another tile)"
            else:
                margin = f"margin cache {self.margin_name}: {self.margin_rows:,} rows"
            lines.append(
                f"  tiles       {len(self.tiles):,} HEALPix pixel file(s), order(s) "
                f"{', '.join(map(str, orders))}; {margin}"
            )
        if self.resumed_tiles is not None:
            lines.append(
                f"  resumed     kept {self.resumed_tiles:,} tile(s), {self.resumed_rows:,} "
                "objects, that a dead run wrote (checksums verified); computed the rest"
            )
        balance = "ok" if self.rows_in == self.rows_out + self.rows_rejected else "MISMATCH"
        lines.append(
            f"  rows in = out + rejected: {self.rows_in:,} = {self.rows_out:,} + "
            f"{self.rows_rejected:,} ({balance})"
        )
        lines.append(
            "  time        " + " | ".join(f"{k} {v:.1f} s" for k, v in self.stage_s.items())
        )
        if self.task_s:
            lines.append(
                "  task time   "
                + " | ".join(f"{k} {v:.1f} s" for k, v in self.task_s.items())
                + " (summed over tasks)"
            )
        lines.append("  " + self.first_stage_line())
        if self.cores_busy is not None:
            lines.append(
                f"  cores busy  {self.cores_busy:.2f} in inputs + network (Python task seconds / "
                f"stage wall / {self.cores} cores)"
            )
        return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the classify job's options."""
    parser.add_argument(
        "--input", nargs="+", required=True, metavar="PATH",
        help="IRSA DR light-curve Parquet files or directories of them, or HATS light-curve "
        "catalogs written by `varsky ingest`",
    )  # fmt: skip
    parser.add_argument("--output", required=True, metavar="DIR", help="output catalog directory")
    parser.add_argument(
        "--rejects", metavar="DIR", help="rejected rows with a reason (default: OUTPUT_rejects)"
    )
    parser.add_argument(
        "--model", default=str(DEFAULT_MODEL_DIR), metavar="MODEL_DIR",
        help="directory with model.keras and model_card.json (default: the shipped model)",
    )  # fmt: skip
    parser.add_argument(
        "--grid", metavar="NAME",
        help="dm-dt grid; must be the one the model was trained on (default: the model's)",
    )  # fmt: skip
    parser.add_argument(
        "--min-epochs", type=int, default=DEFAULT_MIN_EPOCHS, metavar="N",
        help=f"good epochs an object needs to be classified (default {DEFAULT_MIN_EPOCHS})",
    )  # fmt: skip
    parser.add_argument(
        "--rows-per-partition", type=int, default=DEFAULT_ROWS_PER_PARTITION, metavar="N",
        help=f"objects per Spark partition at most, roughly (default {DEFAULT_ROWS_PER_PARTITION})",
    )  # fmt: skip
    parser.add_argument(
        "--batch-size", type=int, default=DEFAULT_BATCH_SIZE, metavar="N",
        help=f"images per model call; outputs are bit-identical for a given batch size on any "
        f"master and partitioning (default {DEFAULT_BATCH_SIZE})",
    )  # fmt: skip
    parser.add_argument(
        "--variability-stage", choices=["on", "off"], default="on",
        help="on: objects the model's variability stage calls non-variable are written as "
        "constant and skip the periodogram and network (udfs/variability.py); off: every object "
        "goes to the network, p_variable is still computed (default %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--variability-threshold", type=float, default=None, metavar="P",
        help="settle objects with p_variable below P (default: the model card's)",
    )  # fmt: skip
    parser.add_argument(
        "--catalog-name", default=DEFAULT_CATALOG_NAME,
        help="name of the output catalog (default %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--max-rows-per-pixel", type=int, default=DEFAULT_MAX_ROWS_PER_PIXEL, metavar="N",
        help="output HEALPix tiles are split until they hold at most N rows (default %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--margin-arcsec", type=float, default=DEFAULT_MARGIN_ARCSEC, metavar="ARCSEC",
        help="width of the margin cache beside each tile, arcsec (default %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--bad-exposure-fraction", type=float, default=DEFAULT_BAD_EXPOSURE_FRACTION,
        metavar="F",
        help="drop the epochs of exposures where more than F of the stars deviate by 3 sigma "
        "(DR input; 0 turns the cut off; default %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--bad-exposure-min-stars", type=int, default=DEFAULT_BAD_EXPOSURE_MIN_STARS, metavar="N",
        help="judge only exposures with at least N stars (default %(default)s)",
    )  # fmt: skip
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument(
        "--resume", action="store_true",
        help="after a run of the same job died: keep the tiles it wrote whose checksums still "
        "match (in OUTPUT.varsky-partial) and compute only the rest (Spark engine)",
    )  # fmt: skip
    parser.add_argument(
        "--engine", choices=("spark", "dask"), default="spark",
        help="run on Spark (default) or on Dask; both write the same catalog (README)",
    )  # fmt: skip
    parser.add_argument(
        "--master", help="Spark master when run in-process (default local[*]; "
        "ignored under spark-submit)",
    )  # fmt: skip
    parser.add_argument(
        "--scheduler", metavar="ADDRESS",
        help="with --engine dask: an existing scheduler, e.g. tcp://host:8786 (default: a local "
        "cluster of one single-threaded worker per core)",
    )  # fmt: skip


def config_from_args(args: argparse.Namespace) -> ClassifyConfig:
    """Build and validate the job's configuration from parsed arguments."""
    if args.min_epochs < 2:
        raise ValueError(f"--min-epochs must be at least 2, got {args.min_epochs}")
    if args.rows_per_partition < 1 or args.batch_size < 1 or args.max_rows_per_pixel < 1:
        raise ValueError(
            "--rows-per-partition, --batch-size and --max-rows-per-pixel must be positive"
        )
    if not args.margin_arcsec > 0:
        raise ValueError(f"--margin-arcsec must be positive, got {args.margin_arcsec}")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", args.catalog_name):
        raise ValueError(f"--catalog-name {args.catalog_name!r}: use letters, digits, _ . -")
    engine = getattr(args, "engine", "spark")
    scheduler = getattr(args, "scheduler", None)
    if scheduler and engine != "dask":
        raise ValueError("--scheduler is for --engine dask; Spark takes --master")
    if getattr(args, "master", None) and engine == "dask":
        raise ValueError("--master is for --engine spark; Dask takes --scheduler")
    output = args.output.rstrip("/")
    resume = getattr(args, "resume", False)
    if resume and engine == "dask":
        raise ValueError("--resume is for the Spark engine; a Dask run starts afresh")
    if resume and not is_local_path(output):
        raise ValueError(f"--resume needs an output on a file system path, got {output}")
    return ClassifyConfig(
        inputs=tuple(args.input),
        output=output,
        rejects=(args.rejects or output + "_rejects").rstrip("/"),
        model_dir=args.model,
        grid=args.grid,
        min_epochs=args.min_epochs,
        rows_per_partition=args.rows_per_partition,
        variability_stage=args.variability_stage == "on",
        variability_threshold=args.variability_threshold,
        batch_size=args.batch_size,
        overwrite=args.overwrite,
        master=args.master,
        catalog_name=args.catalog_name,
        engine=engine,
        scheduler=scheduler,
        max_rows_per_pixel=args.max_rows_per_pixel,
        margin_arcsec=args.margin_arcsec,
        bad_exposure_fraction=args.bad_exposure_fraction,
        bad_exposure_min_stars=args.bad_exposure_min_stars,
        resume=resume,
    )


def model_ref(spark, model_dir: str, checked_model):
    """Register the model file with Spark (unless spark-submit shipped it) and describe it.

    ``checked_model`` is ``udfs.classifier.checked_model``'s (path, card, sha256).
    """
    from udfs.classifier import MODEL_CARD_FILE, MODEL_FILE
    from udfs.spark_inference import ModelRef

    model_path, card, sha256 = checked_model
    card_path = Path(model_dir) / MODEL_CARD_FILE
    shipped = spark.sparkContext.getConf().get("spark.files", "")
    if MODEL_FILE not in {Path(p).name for p in shipped.split(",") if p}:
        spark.sparkContext.addFile(str(model_path.resolve()))
    return ModelRef(
        driver_path=str(model_path.resolve()),
        file_name=MODEL_FILE,
        sha256=sha256,
        card_json=card_path.read_text(),
    ), card


def cut_lightcurves(df, kind: str, min_epochs: int):
    """Quality cuts and `_healpix_29` on every row: :func:`udfs.pipeline.cut_partition`."""
    from pyspark.sql.pandas.types import from_arrow_schema

    from udfs.lightcurve_cuts import CUT_SCHEMA
    from udfs.pipeline import cut_partition

    def cut(batches):
        for batch in batches:
            yield cut_partition(batch, kind, min_epochs)

    return df.mapInArrow(cut, from_arrow_schema(CUT_SCHEMA))


def read_lightcurve_catalog(spark, files: list[DRFile]):
    """The rows of a varsky light-curve catalog's pixel files, with source_file and source_row."""
    from pyspark.sql import functions as F

    return (
        spark.read.parquet(*[f.path for f in files])
        .withColumn(SOURCE_FILE, F.col("_metadata.file_path"))
        .withColumn(SOURCE_ROW, F.col("_metadata.row_index"))
    )


def lightcurve_reader(inputs: list[str]):
    """Check the input light curves; return (files, read_cut, catalog of each file, kind).

    ``inputs`` (see ``catalogs.input_files.light_curve_inputs``): HATS light-curve catalogs (from
    `varsky ingest`, or IRSA's DR in HATS layout) or IRSA DR Parquet files and folders.
    ``read_cut(spark, min_epochs)`` gives one row per light curve with the cut schema
    (``udfs.lightcurve_cuts.CUT_SCHEMA``): kept rows have a null reject reason. The last item
    maps every spelling of a file's path that Spark may report to its catalog's name; ``kind``
    is the inputs' :class:`catalogs.schema.InputKind`.
    """
    resolved = light_curve_inputs(inputs)
    if resolved.kind is InputKind.DR:
        files = check_dr_files(resolved.files)

        def read_cut(spark, min_epochs: int):
            return cut_lightcurves(read_dr_dataframe(spark, files), InputKind.DR, min_epochs)
    else:
        files = [DRFile(f, pq.ParquetFile(f).metadata.num_rows, "double") for f in resolved.files]

        def read_cut(spark, min_epochs: int):
            return cut_lightcurves(read_lightcurve_catalog(spark, files), resolved.kind, min_epochs)

    return files, read_cut, resolved.catalog_of_file, resolved.kind


#: Most rows that may repeat another row's objectid before the job stops (they are collected).
MAX_REPEATED_ROWS = 1_000_000


def without_repeated_objects(cut):
    """``cut`` persisted, with kept rows that repeat an earlier row's objectid rejected.

    An objectid kept in more than one row (the same light curves in two files) keeps its first
    (source_file, source_row); the others get reject reason ``duplicate_objectid``
    (:func:`udfs.lightcurve_cuts.reject_repeated_objects`).
    """
    import numpy as np
    from pyspark import StorageLevel
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from udfs.lightcurve_cuts import reject_repeated_objects, repeated_objects

    # On disk, not in the heap: a 2 GB driver then classifies 10^6 light curves, where cached
    # in memory the first aggregation ran out of it (bench/scale.py --driver-memory 2g).
    cut = cut.persist(StorageLevel.DISK_ONLY)
    rows = (
        cut.where(F.col(REJECT_REASON).isNull())
        .select(DRColumn.OBJECTID, SOURCE_FILE, SOURCE_ROW)
        .withColumn("n", F.count(F.lit(1)).over(Window.partitionBy(DRColumn.OBJECTID)))
        .where(F.col("n") > 1)
        .limit(MAX_REPEATED_ROWS + 1)
        .collect()
    )
    if not rows:
        return cut
    if len(rows) > MAX_REPEATED_ROWS:
        raise ValueError(
            f"more than {MAX_REPEATED_ROWS:,} rows repeat the objectid of another row: is an input "
            "given twice under two names?"
        )
    first_of = repeated_objects(
        np.array([r[0] for r in rows], np.int64),
        np.array([r[1] for r in rows], object),
        np.array([r[2] for r in rows], np.int64),
    )

    def reject(batches):
        for batch in batches:
            yield reject_repeated_objects(batch, first_of)

    marked = cut.mapInArrow(reject, cut.schema).persist(StorageLevel.DISK_ONLY)
    marked.count()
    cut.unpersist()
    return marked


def sky_ranges(df, n_partitions: int):
    """``df`` in ``n_partitions`` ranges of ``_healpix_29`` (then objectid), each sorted.

    The ranges hold equal numbers of objects, so every core gets the same work whatever the sky's
    shape (a hash of coarse tiles left one core idle on a small field: bench/throughput.py), and
    each range is still one patch of sky.
    """
    return df.repartitionByRange(
        n_partitions, HEALPIX_COLUMN, DRColumn.OBJECTID
    ).sortWithinPartitions(HEALPIX_COLUMN, DRColumn.OBJECTID)


def classify_lightcurves(df, ref, classes, batch_size: int, acc, provenance, stage=None):
    """:func:`udfs.pipeline.classify_partition` on every partition of ``df`` (its sky ranges).

    Outputs do not depend on the partitioning (the classifier pads every batch to one shape).
    """
    import pyarrow as pa
    from pyspark.sql.pandas.types import from_arrow_schema

    from udfs.lightcurve_cuts import CUT_SCHEMA
    from udfs.pipeline import classified_schema
    from udfs.spark_inference import classify_partitions

    carried = pa.schema([CUT_SCHEMA.field(c) for c in (*CARRIED_COLUMNS, LIGHTCURVE)])
    schema = from_arrow_schema(classified_schema(classes, carried))
    return df.select(*CARRIED_COLUMNS, LIGHTCURVE).mapInArrow(
        classify_partitions(ref, batch_size, acc, provenance, stage), schema
    )


def processing_time_utc() -> datetime:
    """The job's processing time, UTC (``SOURCE_DATE_EPOCH``, when set, for reproducible builds)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        return datetime.fromtimestamp(int(epoch), tz=UTC)
    return datetime.now(UTC).replace(microsecond=0)


def stage_of_config(config: ClassifyConfig, card):
    """The :class:`udfs.variability.VariabilityStage` the job runs, or None (none in the card)."""
    from udfs.variability import stage_of

    return stage_of(card, config.variability_stage, config.variability_threshold)


def note_stage(summary: ClassifySummary, stage, settled: int) -> None:
    """Put the variability stage's count and settings into the summary."""
    if stage is not None:
        summary.settled = settled
        summary.variability_threshold = stage.threshold
        summary.variability_settles = stage.settles


def catalog_properties(config: ClassifyConfig, card, model_sha256: str, inputs, when):
    """The varsky keys of the catalog's hats.properties: provenance and the job's arguments.

    (hats writes the catalog name itself, as ``obs_collection``.)
    """
    return {
        Property.SCHEMA_VERSION: CLASSIFICATION_SCHEMA_VERSION,
        Property.VERSION: VARSKY_VERSION,
        Property.MODEL_NAME: card.name,
        Property.MODEL_SHA256: model_sha256,
        Property.MODEL_DIR: str(Path(config.model_dir).resolve()),
        Property.DMDT_GRID: card.grid.name,
        Property.CLASSES: ",".join(card.classes),
        Property.INPUT_CATALOGS: ",".join(sorted(set(inputs.values()))),
        Property.INPUTS: ",".join(str(Path(p).resolve()) for p in config.inputs),
        Property.PROCESSING_TIME: when.isoformat(),
        Property.JOB_ARGUMENTS: json.dumps(config.job_arguments(), sort_keys=True),
        Property.ENGINE: config.engine,
        Property.VARIABILITY_STAGE: variability_property(stage_of_config(config, card)),
    }


def variability_property(stage) -> str:
    """The catalog's ``varsky_variability_stage``: what the first stage was and did (JSON)."""
    if stage is None:
        return json.dumps({"settles": False, "note": "the model has no variability stage"})
    return json.dumps(stage.describe(), sort_keys=True)


def bad_exposure_cut(kept, min_stars: int, max_fraction: float, min_epochs: int, removed):
    """Find bad exposures across the stars of each DR file; drop their epochs.

    Returns the cut DataFrame (same schema; lazily evaluated), the number of exposures judged
    and the number flagged. ``removed`` (an accumulator) receives the epochs dropped.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema

    from udfs.bad_exposures import (
        EXPOSURE,
        EXPOSURE_COUNT_SCHEMA,
        exposure_counts,
        flagged_from_counts,
        remove_epochs,
    )

    def counts(batches):
        for batch in batches:
            yield exposure_counts(batch)

    rows = (
        kept.select(SOURCE_FILE, LIGHTCURVE)
        .mapInArrow(counts, from_arrow_schema(EXPOSURE_COUNT_SCHEMA))
        .groupBy(SOURCE_FILE, BAND, EXPOSURE)
        .agg(F.sum("n").alias("n"), F.sum("d").alias("d"))
        .where(F.col("n") >= min_stars)
        .collect()
    )
    flagged = flagged_from_counts(
        [r[SOURCE_FILE] for r in rows], [r[BAND] for r in rows], [r[EXPOSURE] for r in rows],
        [r["n"] for r in rows], [r["d"] for r in rows], min_stars, max_fraction,
    )  # fmt: skip

    def cut(batches):
        for batch in batches:
            out, n = remove_epochs(batch, flagged, min_epochs)
            removed.add(n)
            yield out

    n_flagged = sum(len(v) for v in flagged.values())
    return kept.mapInArrow(cut, kept.schema), len(rows), n_flagged


def without_kept_tiles(df, state: ResumeState):
    """``df`` without the rows of the tiles a dead run wrote (``--resume``)."""
    import numpy as np
    import pyarrow as pa

    tiles, kept = state.tiles, state.kept_indices

    def drop(batches):
        for batch in batches:
            index = tiles.tile_index(batch.column(HEALPIX_COLUMN).to_numpy())
            yield batch.filter(pa.array(~np.isin(index, kept)))

    return df.mapInArrow(drop, df.schema)


def write_classification_collection(
    classified, config: ClassifyConfig, properties, journal=None, state: ResumeState | None = None
):
    """Write the catalog, its margin cache and collection.properties; return (tiles, margin rows).

    Tiles are adaptive: HEALPix pixels split until they hold at most ``max_rows_per_pixel``.
    With a resume ``state``, its tile plan is used, ``classified`` holds the rows of the other
    tiles only, and the margin cache is made from both.
    """
    from catalogs.hats_writer import write_collection_properties
    from catalogs.resume import start_journal
    from catalogs.spark_tables import spark_tiles, write_hats_spark, write_margin_spark

    if state is not None:
        tiles = state.tiles
    else:
        tiles = spark_tiles(classified, HISTOGRAM_ORDER, config.max_rows_per_pixel)
    if journal is not None:
        journal = start_journal(config.output, journal.fingerprint, journal.when, tiles)
    kept = state.kept if state is not None else None
    written = write_hats_spark(
        classified, config.catalog_dir, config.catalog_name, tiles, RA, DEC,
        max_rows=config.max_rows_per_pixel, extra_properties=properties, journal=journal,
        kept=kept,
    )  # fmt: skip
    everything, schema = classified, None
    if kept:
        schema = classified.schema
        read_back = classified.sparkSession.read.schema(schema).parquet(
            *state.kept_files(config.catalog_dir)
        )
        everything = classified.unionByName(read_back)
    margin_rows = 0
    margin_dirs: list[str] = []
    if len(tiles) > 1:
        margin_props = properties
        try:
            margin = write_margin_spark(
                everything, f"{config.output}/{config.margin_name}", config.margin_name, tiles,
                config.margin_arcsec, config.catalog_name, RA, DEC, extra_properties=margin_props,
                schema=schema,
            )  # fmt: skip
            margin_rows = sum(n for _, _, n in margin)
            margin_dirs = [config.margin_name]
        except ValueError as err:
            if "no row lies within" not in str(err):
                raise
    write_collection_properties(
        config.output,
        config.catalog_name,
        config.catalog_name,
        margin_dirs,
        {Property.SCHEMA_VERSION: CLASSIFICATION_SCHEMA_VERSION, Property.VERSION: VARSKY_VERSION},
    )
    remove_spark_sidecar_files(config.output)
    return written, margin_rows


@dataclass(frozen=True)
class Journal:
    """What the resume journal records of this run (``catalogs.resume``)."""

    fingerprint: str
    when: datetime | None = None


def journal_of(final: ClassifyConfig, staged: ClassifyConfig, files, model_sha256: str):
    """The run's journal and, with ``--resume``, the dead run's state to go on from.

    No journal for outputs off the local file system (they are written in place). Without
    ``--resume``, or when the journal is another run's, the staging folder is emptied.
    """
    if not is_local_path(final.output):
        return None, None
    inputs = []
    for f in files:
        st = local_path(f.path).stat() if is_local_path(f.path) else None
        inputs.append((f.path, st.st_size if st else f.num_rows, st.st_mtime_ns if st else 0))
    fingerprint = run_fingerprint(final.job_arguments(), inputs, model_sha256)
    state = None
    if final.resume:
        state = read_journal(staged.output, staged.catalog_dir, fingerprint)
        clear_for_resume(staged.output, staged.catalog_dir, state)
    return Journal(fingerprint), state


@dataclass(frozen=True)
class CheckedInputs:
    """What :func:`check_before_start` found: the input files and how to read them."""

    files: list[DRFile]
    read_cut: object
    catalog_of_file: dict[str, str]
    kind: InputKind
    #: ``udfs.classifier.checked_model``'s (model path, card, sha256).
    model: tuple


def check_before_start(config: ClassifyConfig) -> CheckedInputs:
    """Check inputs, outputs and model before any engine starts; user mistakes raise.

    Raises ``InputError`` (unreadable or missing input), ``FileExistsError`` (an output exists
    without --overwrite), ``FileNotFoundError`` or ``ValueError`` (model file or card).
    """
    from udfs.classifier import checked_model

    files, read_cut, catalog_of_file, kind = lightcurve_reader(list(config.inputs))
    for path in (config.output, config.rejects):
        check_output_dir(path, config.overwrite, keep_staging=True)
    model = checked_model(config.model_dir, config.grid)
    return CheckedInputs(files, read_cut, catalog_of_file, kind, model)


def run_classify(
    spark, config: ClassifyConfig, log=print, checked: CheckedInputs | None = None
) -> ClassifySummary:
    """Run the whole job on ``spark``; return its summary.

    ``checked`` is :func:`check_before_start`'s result when the caller ran it already.
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from udfs.pipeline import Provenance

    stage_s: dict[str, float] = {}
    t = time.perf_counter()
    checked = checked or check_before_start(config)
    files, read_cut, catalog_of_file = checked.files, checked.read_cut, checked.catalog_of_file
    ref, card = model_ref(spark, config.model_dir, checked.model)
    final, config = config, config.staged()
    for path in (final.output, final.rejects):
        check_output_dir(path, final.overwrite, keep_staging=final.resume and path == final.output)
    summary = ClassifySummary(
        files=files, output=final.output, rejects=final.rejects, model_sha256=ref.sha256
    )
    journal, state = journal_of(final, config, files, ref.sha256)
    if state is not None:
        summary.resumed_tiles, summary.resumed_rows = len(state.kept), state.kept_rows
    elif final.resume:
        log(f"varsky classify: --resume: no journal of this job in {config.output}; from scratch")
    stage_s["check inputs"] = time.perf_counter() - t
    log(f"varsky classify: {len(files):,} file(s), {sum(f.num_rows for f in files):,} rows")

    t = time.perf_counter()
    cut = without_repeated_objects(read_cut(spark, config.min_epochs))
    counts = (
        cut.groupBy(REJECT_REASON)
        .agg(
            F.count(F.lit(1)).alias("rows"),
            F.sum("n_epochs_in").alias("epochs_in"),
            F.sum(N_GOOD).alias("good"),
            F.sum(N_FLAGGED).alias("flagged"),
            F.sum(N_NONFINITE).alias("nonfinite"),
            F.sum(N_DUPLICATE).alias("duplicate"),
            F.sum(N_THINNED).alias("thinned"),
        )
        .collect()
    )
    for row in counts:
        summary.rows_in += row["rows"]
        summary.epochs_in += row["epochs_in"] or 0
        summary.epochs_flagged += row["flagged"] or 0
        summary.epochs_nonfinite += row["nonfinite"] or 0
        summary.epochs_duplicate += row["duplicate"] or 0
        summary.epochs_thinned += row["thinned"] or 0
        summary.epochs_good += row["good"] or 0
        if row[REJECT_REASON] is None:
            summary.epochs_used += row["good"] or 0
        else:
            summary.rejected_by_reason[row[REJECT_REASON]] = row["rows"]
    kept = summary.rows_in - summary.rows_rejected
    stage_s["read + cuts"] = time.perf_counter() - t
    log(f"  read {summary.rows_in:,} rows: {kept:,} kept, {summary.rows_rejected:,} rejected")

    t = time.perf_counter()
    (
        cut.where(F.col(REJECT_REASON).isNotNull())
        .drop(LIGHTCURVE)
        .coalesce(1)
        .write.mode("overwrite")
        .parquet(config.rejects)
    )
    remove_spark_sidecar_files(config.rejects)
    stage_s["write rejects"] = time.perf_counter() - t

    t = time.perf_counter()
    acc = {
        k: spark.sparkContext.accumulator(0.0)
        for k in ("load_s", "variability_s", "inputs_s", "predict_s", "task_s", "settled")
    }
    n_partitions = max(
        math.ceil(kept / config.rows_per_partition), spark.sparkContext.defaultParallelism
    )
    # Ranges first: their sampling pass must not run the accumulating epoch removal twice.
    kept_rows = sky_ranges(
        cut.where(F.col(REJECT_REASON).isNull()).select(*CARRIED_COLUMNS, LIGHTCURVE), n_partitions
    )
    removed = spark.sparkContext.accumulator(0)
    summary.bad_exposure_fraction = config.bad_exposure_fraction
    if any(is_hats_catalog(p) for p in config.inputs):
        summary.bad_exposure_note = "no exposure-level cut on HATS input (no exposure keys)"
    elif config.bad_exposure_fraction <= 0:
        summary.bad_exposure_note = "exposure-level cut off (--bad-exposure-fraction 0)"
    else:
        kept_rows, summary.exposures_checked, summary.exposures_flagged = bad_exposure_cut(
            kept_rows,
            config.bad_exposure_min_stars,
            config.bad_exposure_fraction,
            config.min_epochs,
            removed,
        )
    when = state.processing_time if state is not None else processing_time_utc()
    if journal is not None:
        journal = replace(journal, when=when)
    if state is not None and state.kept:
        kept_rows = without_kept_tiles(kept_rows, state)
    provenance = Provenance(card.name, ref.sha256, card.grid.name, when, catalog_of_file)
    classified = classify_lightcurves(
        kept_rows,
        ref,
        card.classes,
        config.batch_size,
        acc,
        provenance,
        stage_of_config(config, card),
    ).persist(StorageLevel.DISK_ONLY)
    counts = classified.groupBy(PREDICTED_CLASS).count().collect()
    summary.class_counts = {r[PREDICTED_CLASS]: r["count"] for r in counts}
    if state is not None:
        for path in state.kept_files(config.catalog_dir):
            kept_classes = pq.read_table(path, columns=[PREDICTED_CLASS])[PREDICTED_CLASS]
            for name, n in Counter(kept_classes.to_pylist()).items():
                summary.class_counts[name] = summary.class_counts.get(name, 0) + n
    summary.epochs_bad_exposure = removed.value
    summary.epochs_used -= removed.value
    summary.rows_out = sum(summary.class_counts.values())
    stage_s["inputs + network"] = time.perf_counter() - t
    summary.cores = spark.sparkContext.defaultParallelism
    summary.cores_busy = acc["task_s"].value / stage_s["inputs + network"] / summary.cores
    summary.task_s = {
        "model load": acc["load_s"].value,
        "variability stage": acc["variability_s"].value,
        "model inputs": acc["inputs_s"].value,
        "network": acc["predict_s"].value,
    }
    note_stage(summary, stage_of_config(config, card), int(acc["settled"].value))

    t = time.perf_counter()
    properties = catalog_properties(final, card, ref.sha256, catalog_of_file, when)
    summary.tiles, summary.margin_rows = write_classification_collection(
        classified, config, properties, journal, state
    )
    summary.margin_name = config.margin_name
    written_rows = sum(n for _, _, n in summary.tiles)
    classified.unpersist()
    cut.unpersist()
    stage_s["write HATS"] = time.perf_counter() - t
    if written_rows != summary.rows_out:
        raise RuntimeError(
            f"wrote {written_rows} rows to {config.catalog_dir}, classified {summary.rows_out}: "
            "a bug in varsky, please report it"
        )
    summary.stage_s = stage_s
    if summary.rows_in != summary.rows_out + summary.rows_rejected:
        raise RuntimeError(
            f"rows in ({summary.rows_in}) != rows out ({summary.rows_out}) + rows rejected "
            f"({summary.rows_rejected}): a bug in varsky, please report it"
        )
    finish_journal(config.output)
    publish_output(config.rejects, final.rejects)
    publish_output(config.output, final.output)
    return summary


def run(args: argparse.Namespace) -> int:
    """Entry point of `varsky classify` (in-process or under spark-submit)."""
    from jobs.session import run_spark_job

    config = config_from_args(args)
    checked = check_before_start(config)
    if config.engine == "dask":
        from jobs.classify_dask import run_dask_job

        return run_dask_job(config, checked)
    return run_spark_job(
        "varsky classify", config.master, lambda spark: run_classify(spark, config, checked=checked)
    )
