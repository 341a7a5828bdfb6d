"""The classify plan's Spark engine: DataFrames, mapInArrow over the kernels, accumulators.

What only Spark does: DataFrame reads of the inputs, persisted cut rows (on disk), equal ranges of
`_healpix_29` as partitions, the model shipped with ``SparkContext.addFile``, accumulators for
task seconds, and the tile journal that makes ``--resume`` work. The stages themselves, their
order and their accounting are the plan's (:mod:`jobs.classify_plan`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from catalogs.dr_lightcurves import DRFile
from catalogs.parquet_output import remove_spark_sidecar_files
from catalogs.resume import ResumeState
from catalogs.schema import (
    HEALPIX_COLUMN,
    KEPT_COLUMNS,
    LIGHTCURVE,
    PREDICTED_CLASS,
    REJECT_REASON,
    ROW_ORIGIN_COLUMNS,
    SOURCE_FILE,
    SOURCE_ROW,
    DRColumn,
    InputKind,
)
from jobs.classify_plan import CheckedInputs, check_repeats
from udfs.kernels.lightcurve_cuts import CUT_COUNTS


def model_ref(spark, model_path: Path, sha256: str, card_json: str):
    """Register the model file with Spark (unless spark-submit shipped it); its ``ModelRef``."""
    from udfs.engines.spark_inference import ModelRef
    from udfs.model.classifier import MODEL_FILE

    shipped = spark.sparkContext.getConf().get("spark.files", "")
    if MODEL_FILE not in {Path(p).name for p in shipped.split(",") if p}:
        spark.sparkContext.addFile(str(model_path.resolve()))
    return ModelRef(
        driver_path=str(model_path.resolve()),
        file_name=MODEL_FILE,
        sha256=sha256,
        card_json=card_json,
    )


def cut_lightcurves(df, kind: str, min_epochs: int):
    """Quality cuts and `_healpix_29` on every row: :func:`udfs.pipeline.cut_partition`."""
    from pyspark.sql.pandas.types import from_arrow_schema

    from udfs.kernels.lightcurve_cuts import CUT_SCHEMA, cut_partition

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


def read_cut_rows(spark, files: list[DRFile], kind: InputKind, min_epochs: int):
    """One row per light curve of ``files`` with the cut schema; kept rows have no reject reason."""
    from catalogs.spark_tables import read_dr_dataframe

    if kind is InputKind.DR:
        rows = read_dr_dataframe(spark, files)
    else:
        rows = read_lightcurve_catalog(spark, files)
    return cut_lightcurves(rows, kind, min_epochs)


def sky_ranges(df, n_partitions: int):
    """``df`` in ``n_partitions`` ranges of ``_healpix_29`` (then objectid), each sorted.

    The ranges hold equal numbers of objects, so every core gets the same work whatever the sky's
    shape (a hash of coarse tiles left one core idle on a small field: bench/throughput.py), and
    each range is still one patch of sky.
    """
    return df.repartitionByRange(
        n_partitions, HEALPIX_COLUMN, DRColumn.OBJECTID
    ).sortWithinPartitions(HEALPIX_COLUMN, DRColumn.OBJECTID)


class SparkEngine:
    """:class:`jobs.classify_plan.ClassifyEngine` on a SparkSession."""

    name = "spark"
    supports_resume = True

    def __init__(self, spark):
        self.spark = spark
        self.ref = None
        #: Per-batch steps the classify tasks run first (epoch and tile cuts).
        self.before_classify = []

    def parallelism(self) -> int:
        """Spark's default parallelism: one partition per core of the cluster."""
        return self.spark.sparkContext.defaultParallelism

    def cores(self) -> int:
        """The executors' cores, which Spark's default parallelism counts."""
        return self.spark.sparkContext.defaultParallelism

    def ship_model(self, model_path: Path, sha256: str, card_json: str) -> None:
        """``SparkContext.addFile`` (unless spark-submit shipped it), and the ModelRef."""
        self.ref = model_ref(self.spark, model_path, sha256, card_json)

    def read_cut(self, inputs: CheckedInputs, min_epochs: int, log):
        """A DataFrame of the cut rows, persisted on disk (the later stages read it twice)."""
        from pyspark import StorageLevel

        # On disk, not in the heap: a 2 GB driver then classifies 10^6 light curves, where cached
        # in memory the first aggregation ran out of it (bench/scale.py --driver-memory 2g).
        cut = read_cut_rows(self.spark, inputs.files, inputs.kind, min_epochs)
        return cut.persist(StorageLevel.DISK_ONLY)

    def repeated_rows(self, cut, limit: int):
        """A window count per objectid over the kept rows; at most ``limit`` collected."""
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        rows = (
            cut.where(F.col(REJECT_REASON).isNull())
            .select(*ROW_ORIGIN_COLUMNS)
            .withColumn("n", F.count(F.lit(1)).over(Window.partitionBy(DRColumn.OBJECTID)))
            .where(F.col("n") > 1)
            .limit(limit)
            .collect()
        )
        check_repeats(len(rows))
        return (
            np.array([r[0] for r in rows], np.int64),
            np.array([r[1] for r in rows], object),
            np.array([r[2] for r in rows], np.int64),
        )

    def reject_repeats(self, cut, first_of):
        """The marked rows, persisted on disk in place of the first cut."""
        from pyspark import StorageLevel

        from udfs.kernels.lightcurve_cuts import reject_repeated_objects

        def reject(batches):
            for batch in batches:
                yield reject_repeated_objects(batch, first_of)

        marked = cut.mapInArrow(reject, cut.schema).persist(StorageLevel.DISK_ONLY)
        marked.count()
        cut.unpersist()
        return marked

    def cut_counts(self, cut) -> list[dict]:
        """One groupBy over the reject reason."""
        from pyspark.sql import functions as F

        rows = (
            cut.groupBy(REJECT_REASON)
            .agg(
                F.count(F.lit(1)).alias("rows"),
                *[F.sum(c).alias(c) for c in CUT_COUNTS[1:]],
            )
            .collect()
        )
        return [{k: (v or 0) if k != REJECT_REASON else v for k, v in r.asDict().items()}
                for r in rows]  # fmt: skip

    def write_rejects(self, cut, path: str) -> None:
        """One coalesced Parquet write, without Spark's sidecar files."""
        from pyspark.sql import functions as F

        (
            cut.where(F.col(REJECT_REASON).isNotNull())
            .drop(LIGHTCURVE)
            .coalesce(1)
            .write.mode("overwrite")
            .parquet(path)
        )
        remove_spark_sidecar_files(path)

    def kept_rows(self, cut, n_partitions: int, n_kept: int):
        """Equal ranges of `_healpix_29` (:func:`sky_ranges`)."""
        from pyspark.sql import functions as F

        # Ranges first: their sampling pass must not run the accumulating epoch removal twice.
        kept = cut.where(F.col(REJECT_REASON).isNull()).select(*KEPT_COLUMNS)
        return sky_ranges(kept, n_partitions)

    def exposure_counts(self, kept, min_stars: int):
        """Partial counts per batch, summed by a groupBy."""
        from pyspark.sql import functions as F
        from pyspark.sql.pandas.types import from_arrow_schema

        from udfs.kernels.bad_exposures import (
            EXPOSURE_COUNT_SCHEMA,
            EXPOSURE_INPUT_COLUMNS,
            EXPOSURE_KEYS,
            exposure_counts,
        )

        def counts(batches):
            for batch in batches:
                yield exposure_counts(batch)

        rows = (
            kept.select(*EXPOSURE_INPUT_COLUMNS)
            .mapInArrow(counts, from_arrow_schema(EXPOSURE_COUNT_SCHEMA))
            .groupBy(*EXPOSURE_KEYS)
            .agg(F.sum("n").alias("n"), F.sum("d").alias("d"))
            .where(F.col("n") >= min_stars)
            .collect()
        )
        return tuple([r[k] for r in rows] for k in (*EXPOSURE_KEYS, "n", "d"))

    def without_bad_exposures(self, kept, flagged, min_epochs: int):
        """Done in the classify tasks (:meth:`classify`); an accumulator counts epochs removed."""
        from udfs.kernels.bad_exposures import remove_epochs

        removed = self.spark.sparkContext.accumulator(0)

        def cut(batch):
            out, n = remove_epochs(batch, flagged, min_epochs)
            removed.add(n)
            return out

        self.before_classify.append(cut)
        return kept, lambda: removed.value

    def without_tiles(self, kept, state: ResumeState):
        """Done in the classify tasks (:meth:`classify`): the rows of the kept tiles dropped."""
        import pyarrow as pa

        tiles, kept_tiles = state.tiles, state.kept_indices

        def drop(batch):
            index = tiles.tile_index(batch.column(HEALPIX_COLUMN).to_numpy())
            return batch.filter(pa.array(~np.isin(index, kept_tiles)))

        self.before_classify.append(drop)
        return kept

    def classify(self, kept, classes, batch_size: int, provenance, stage, log):
        """Outputs do not depend on the partitioning (the classifier pads every batch)."""
        import pyarrow as pa
        from pyspark import StorageLevel
        from pyspark.sql.pandas.types import from_arrow_schema

        from udfs.engines.spark_inference import classify_partitions
        from udfs.kernels.lightcurve_cuts import CUT_SCHEMA
        from udfs.pipeline import TASK_SECONDS, classified_schema

        acc = {k: self.spark.sparkContext.accumulator(0.0) for k in TASK_SECONDS}
        carried = pa.schema([CUT_SCHEMA.field(c) for c in KEPT_COLUMNS])
        schema = from_arrow_schema(classified_schema(classes, carried))
        run = classify_partitions(self.ref, batch_size, acc, provenance, stage)
        steps = tuple(self.before_classify)
        self.before_classify.clear()  # this job's; a later classify starts without them

        # One mapInArrow, not one per step: each runs in a Python worker of its own, and the
        # network's worker was then often a fresh process that imported TensorFlow again
        # (model load 17.9 -> 7.3 s of task time on bench/throughput.py's 20,000-object DR5 sky).
        def classify(batches):
            for step in steps:
                batches = map(step, batches)
            return run(batches)

        classified = (
            kept.select(*KEPT_COLUMNS).mapInArrow(classify, schema).persist(StorageLevel.DISK_ONLY)
        )
        counts = classified.groupBy(PREDICTED_CLASS).count().collect()
        class_counts = {r[PREDICTED_CLASS]: r["count"] for r in counts}
        return classified, class_counts, {k: a.value for k, a in acc.items()}

    def tiles(self, classified, order: int, max_rows: int):
        """:func:`catalogs.spark_tables.spark_tiles`."""
        from catalogs.spark_tables import spark_tiles

        return spark_tiles(classified, order, max_rows)

    def write_catalog(self, classified, base, spec, tiles, journal, kept):
        """:func:`catalogs.spark_tables.write_hats_spark`, with the tile journal."""
        from catalogs.spark_tables import write_hats_spark

        written = write_hats_spark(classified, base, spec, tiles, journal=journal, kept=kept)
        remove_spark_sidecar_files(base.rstrip("/").rsplit("/", 1)[0])
        return written

    def write_margin(self, classified, base, spec, tiles, kept_files):
        """:func:`catalogs.spark_tables.write_hats_spark`'s margin, over these and kept rows."""
        from catalogs.spark_tables import write_hats_spark

        everything, schema = classified, None
        if kept_files:
            schema = classified.schema
            read_back = self.spark.read.schema(schema).parquet(*kept_files)
            everything = classified.unionByName(read_back)
        written = write_hats_spark(everything, base, spec, tiles, schema=schema)
        remove_spark_sidecar_files(base.rstrip("/").rsplit("/", 1)[0])
        return written

    def release(self, *rows) -> None:
        """Unpersist the DataFrames."""
        for df in rows:
            df.unpersist()
