"""`varsky classify`: DR light-curve Parquet in, a Parquet classification catalog out.

Stages: check inputs (footers) -> read -> quality cuts and `_healpix_29` -> partition by coarse
HEALPix tile -> model inputs (dm-dt images, periodograms, features) and the network in the same
Python worker -> Parquet, plus a rejects table.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from catalogs.dr_lightcurves import (
    DRFile,
    check_dr_files,
    hats_partition_files,
    is_hats_catalog,
    read_dr_dataframe,
)
from catalogs.healpix import tile_shift_bits
from catalogs.parquet_output import prepare_output_dir, remove_spark_sidecar_files
from catalogs.provenance import VARSKY_VERSION, file_sha256
from catalogs.schema import (
    DEFAULT_MIN_EPOCHS,
    DEFAULT_PARTITION_ORDER,
    DMDT_GRID,
    HEALPIX_COLUMN,
    INPUT_FILE,
    LIGHTCURVE,
    MODEL_SHA256,
    N_FLAGGED,
    N_GOOD,
    N_NONFINITE,
    PREDICTED_CLASS,
    REJECT_REASON,
    SOURCE_FILE,
    SOURCE_ROW,
    VARSKY_VERSION_COLUMN,
    DRColumn,
)

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "varsky_dmdt_cnn"
DEFAULT_ROWS_PER_PARTITION = 5000
DEFAULT_BATCH_SIZE = 256


@dataclass(frozen=True)
class ClassifyConfig:
    """Everything the classify job needs, built from its command line."""

    inputs: tuple[str, ...]
    output: str
    rejects: str
    model_dir: str
    grid: str | None = None
    min_epochs: int = DEFAULT_MIN_EPOCHS
    partition_order: int = DEFAULT_PARTITION_ORDER
    rows_per_partition: int = DEFAULT_ROWS_PER_PARTITION
    batch_size: int = DEFAULT_BATCH_SIZE
    overwrite: bool = False
    master: str | None = None


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
    class_counts: dict[str, int] = field(default_factory=dict)
    stage_s: dict[str, float] = field(default_factory=dict)
    task_s: dict[str, float] = field(default_factory=dict)
    output: str = ""
    rejects: str = ""
    model_sha256: str = ""

    @property
    def rows_rejected(self) -> int:
        """Rows that went to the rejects table."""
        return sum(self.rejected_by_reason.values())

    def format(self) -> str:
        """A short report a person can read."""
        total_s = sum(self.stage_s.values())
        lines = [f"varsky classify: done in {total_s:.1f} s"]
        names = ", ".join(Path(f.path).name for f in self.files[:3])
        more = f" and {len(self.files) - 3} more" if len(self.files) > 3 else ""
        lines.append(f"  input       {len(self.files)} file(s): {names}{more}")
        lines.append(f"  rows read   {self.rows_in:,}")
        lines.append(
            f"  epochs      {self.epochs_in:,} read = {self.epochs_good:,} good "
            f"+ {self.epochs_flagged:,} cut by catflags != 0 "
            f"+ {self.epochs_nonfinite:,} cut as non-finite; "
            f"{self.epochs_used:,} good epochs in classified objects"
        )
        lines.append(f"  rejected    {self.rows_rejected:,} rows -> {self.rejects}")
        for reason, n in sorted(self.rejected_by_reason.items(), key=lambda kv: -kv[1]):
            lines.append(f"                {reason:<24} {n:,}")
        lines.append(f"  classified  {self.rows_out:,} objects -> {self.output}")
        for name, n in sorted(self.class_counts.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"                {name:<24} {n:,}")
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
        "--partition-order", type=int, default=DEFAULT_PARTITION_ORDER, metavar="K",
        help=f"HEALPix order of the tiles work is grouped by (default {DEFAULT_PARTITION_ORDER})",
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
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument(
        "--master", help="Spark master when run in-process (default local[*]; "
        "ignored under spark-submit)",
    )  # fmt: skip


def config_from_args(args: argparse.Namespace) -> ClassifyConfig:
    """Build and validate the job's configuration from parsed arguments."""
    if args.min_epochs < 2:
        raise ValueError(f"--min-epochs must be at least 2, got {args.min_epochs}")
    if args.rows_per_partition < 1 or args.batch_size < 1:
        raise ValueError("--rows-per-partition and --batch-size must be positive")
    output = args.output.rstrip("/")
    return ClassifyConfig(
        inputs=tuple(args.input),
        output=output,
        rejects=(args.rejects or output + "_rejects").rstrip("/"),
        model_dir=args.model,
        grid=args.grid,
        min_epochs=args.min_epochs,
        partition_order=args.partition_order,
        rows_per_partition=args.rows_per_partition,
        batch_size=args.batch_size,
        overwrite=args.overwrite,
        master=args.master,
    )


def model_ref(spark, model_dir: str, grid: str | None):
    """Register the model file with Spark (unless spark-submit shipped it) and describe it."""
    from udfs.classifier import MODEL_CARD_FILE, MODEL_FILE, ModelCard
    from udfs.spark_inference import ModelRef

    model_path = Path(model_dir) / MODEL_FILE
    card_path = Path(model_dir) / MODEL_CARD_FILE
    for required in (model_path, card_path):
        if not required.is_file():
            raise FileNotFoundError(f"model directory {model_dir}: {required.name} is missing")
    card = ModelCard.read(model_dir)
    if grid is not None and grid != card.grid.name:
        raise ValueError(
            f"--grid {grid}: the model in {model_dir} was trained on grid {card.grid.name!r}"
        )
    shipped = spark.sparkContext.getConf().get("spark.files", "")
    if MODEL_FILE not in {Path(p).name for p in shipped.split(",") if p}:
        spark.sparkContext.addFile(str(model_path.resolve()))
    return ModelRef(
        driver_path=str(model_path.resolve()),
        file_name=MODEL_FILE,
        sha256=file_sha256(model_path),
        card_json=card_path.read_text(),
    ), card


def cut_lightcurves(df, min_epochs: int):
    """Quality cuts and `_healpix_29` on every row (mapInArrow over Arrow batches)."""
    from pyspark.sql.pandas.types import from_arrow_schema

    from udfs.lightcurve_cuts import CUT_SCHEMA, apply_quality_cuts

    def cut(batches):
        for batch in batches:
            yield apply_quality_cuts(batch, min_epochs)

    return df.mapInArrow(cut, from_arrow_schema(CUT_SCHEMA))


def read_lightcurve_catalog(spark, files: list[DRFile]):
    """The rows of a varsky light-curve catalog's pixel files, with source_file and source_row."""
    from pyspark.sql import functions as F

    return (
        spark.read.parquet(*[f.path for f in files])
        .withColumn(SOURCE_FILE, F.col("_metadata.file_path"))
        .withColumn(SOURCE_ROW, F.col("_metadata.row_index"))
    )


def cut_catalog_lightcurves(df, min_epochs: int):
    """Light-curve catalog rows as cut rows (min epochs; the rest was done by ingest)."""
    from pyspark.sql.pandas.types import from_arrow_schema

    from udfs.lightcurve_cuts import CUT_SCHEMA, cut_lightcurve_catalog

    def cut(batches):
        for batch in batches:
            yield cut_lightcurve_catalog(batch, min_epochs)

    return df.mapInArrow(cut, from_arrow_schema(CUT_SCHEMA))


def lightcurve_reader(inputs: list[str]):
    """Check the input light curves and return (files, read_cut(spark, min_epochs) -> DataFrame).

    ``inputs`` are either HATS light-curve catalogs (from `varsky ingest`) or IRSA DR Parquet
    files and folders, not both. ``read_cut`` gives one row per light curve with the cut schema
    (``udfs.lightcurve_cuts.CUT_SCHEMA``): kept rows have a null reject reason.
    """
    catalogs = [p for p in inputs if is_hats_catalog(p)]
    if catalogs and len(catalogs) != len(inputs):
        raise ValueError("--input: give either HATS light-curve catalogs or DR Parquet, not both")
    if catalogs:
        files = [DRFile(f, pq.ParquetFile(f).metadata.num_rows, "double")
                 for c in catalogs for f in hats_partition_files(c)]  # fmt: skip

        def read_cut(spark, min_epochs: int):
            return cut_catalog_lightcurves(read_lightcurve_catalog(spark, files), min_epochs)
    else:
        files = check_dr_files(inputs)

        def read_cut(spark, min_epochs: int):
            return cut_lightcurves(read_dr_dataframe(spark, files), min_epochs)

    return files, read_cut


def classify_lightcurves(df, ref, classes, batch_size: int, n_partitions: int, order: int, acc):
    """Group kept light curves by HEALPix tile, then model inputs and network per partition."""
    import pyarrow as pa
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema

    from udfs.inference import CARRIED_COLUMNS, output_schema
    from udfs.lightcurve_cuts import CUT_SCHEMA
    from udfs.spark_inference import classify_partitions

    tile = F.shiftright(F.col(HEALPIX_COLUMN), tile_shift_bits(order))
    carried = pa.schema([CUT_SCHEMA.field(c) for c in (*CARRIED_COLUMNS, LIGHTCURVE)])
    schema = from_arrow_schema(output_schema(classes, carried))
    return (
        df.select(*CARRIED_COLUMNS, LIGHTCURVE)
        .repartition(n_partitions, tile)
        .sortWithinPartitions(HEALPIX_COLUMN, DRColumn.OBJECTID)
        .mapInArrow(classify_partitions(ref, batch_size, acc), schema)
    )


def with_provenance(df, model_sha256: str, grid_name: str):
    """Add the per-row provenance columns."""
    from pyspark.sql import functions as F

    return (
        df.withColumn(INPUT_FILE, F.element_at(F.split(F.col(SOURCE_FILE), "/"), -1))
        .drop(SOURCE_FILE)
        .withColumn(VARSKY_VERSION_COLUMN, F.lit(VARSKY_VERSION))
        .withColumn(MODEL_SHA256, F.lit(model_sha256))
        .withColumn(DMDT_GRID, F.lit(grid_name))
    )


def run_classify(spark, config: ClassifyConfig, log=print) -> ClassifySummary:
    """Run the whole job on ``spark``; return its summary."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    stage_s: dict[str, float] = {}
    t = time.perf_counter()
    files, read_cut = lightcurve_reader(list(config.inputs))
    ref, card = model_ref(spark, config.model_dir, config.grid)
    prepare_output_dir(config.output, config.overwrite)
    prepare_output_dir(config.rejects, config.overwrite)
    summary = ClassifySummary(
        files=files, output=config.output, rejects=config.rejects, model_sha256=ref.sha256
    )
    stage_s["check inputs"] = time.perf_counter() - t
    log(f"varsky classify: {len(files)} file(s), {sum(f.num_rows for f in files):,} rows")

    t = time.perf_counter()
    cut = read_cut(spark, config.min_epochs).persist(StorageLevel.MEMORY_AND_DISK)
    counts = (
        cut.groupBy(REJECT_REASON)
        .agg(
            F.count(F.lit(1)).alias("rows"),
            F.sum("n_epochs_in").alias("epochs_in"),
            F.sum(N_GOOD).alias("good"),
            F.sum(N_FLAGGED).alias("flagged"),
            F.sum(N_NONFINITE).alias("nonfinite"),
        )
        .collect()
    )
    for row in counts:
        summary.rows_in += row["rows"]
        summary.epochs_in += row["epochs_in"] or 0
        summary.epochs_flagged += row["flagged"] or 0
        summary.epochs_nonfinite += row["nonfinite"] or 0
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
    acc = {k: spark.sparkContext.accumulator(0.0) for k in ("load_s", "inputs_s", "predict_s")}
    n_partitions = max(
        math.ceil(kept / config.rows_per_partition), spark.sparkContext.defaultParallelism
    )
    classified = classify_lightcurves(
        cut.where(F.col(REJECT_REASON).isNull()),
        ref,
        card.classes,
        config.batch_size,
        n_partitions,
        config.partition_order,
        acc,
    )
    with_provenance(classified, ref.sha256, card.grid.name).write.mode("overwrite").parquet(
        config.output
    )
    remove_spark_sidecar_files(config.output)
    stage_s["inputs + network + write"] = time.perf_counter() - t
    summary.task_s = {
        "model load": acc["load_s"].value,
        "model inputs": acc["inputs_s"].value,
        "network": acc["predict_s"].value,
    }

    t = time.perf_counter()
    written = spark.read.parquet(config.output).groupBy(PREDICTED_CLASS).count().collect()
    summary.class_counts = {r[PREDICTED_CLASS]: r["count"] for r in written}
    summary.rows_out = sum(summary.class_counts.values())
    cut.unpersist()
    stage_s["summary"] = time.perf_counter() - t
    summary.stage_s = stage_s
    if summary.rows_in != summary.rows_out + summary.rows_rejected:
        raise RuntimeError(
            f"rows in ({summary.rows_in}) != rows out ({summary.rows_out}) + rows rejected "
            f"({summary.rows_rejected}): a bug in varsky, please report it"
        )
    return summary


def run(args: argparse.Namespace) -> int:
    """Entry point of `varsky classify` (in-process or under spark-submit)."""
    from jobs.session import run_spark_job

    config = config_from_args(args)
    return run_spark_job(
        "varsky classify", config.master, lambda spark: run_classify(spark, config)
    )
