"""`varsky ingest`: survey catalogs in, a HATS light-curve catalog of sky objects out.

Stages: read (files become Spark tasks) -> quality reasons -> adaptive HEALPix work tiles ->
association per tile with a margin (reference sources merged across fields and filters, then
detections to the nearest object; or DR objectids merged; or detections clustered) -> one light
curve per object with all its epochs in g, r and i -> HATS catalog, and a rejects table.
"""

from __future__ import annotations

import argparse
import math
import shutil
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from catalogs.band_map import BUILTIN_PROFILES, BandMap
from catalogs.detection_tables import (
    CATALOG,
    INGEST_DETECTION_SCHEMA,
    SOURCE_ID,
    SOURCE_SCHEMA,
)
from catalogs.errors import InputError
from catalogs.hats_tiles import Tiles
from catalogs.healpix import healpix_29
from catalogs.input_files import ALERT_SUFFIXES, FITS_SUFFIXES, PARQUET_SUFFIXES, expand_files
from catalogs.parquet_output import (
    is_local_path,
    local_path,
    prepare_output_dir,
    remove_spark_sidecar_files,
)
from catalogs.schema import (
    DEFAULT_RADIUS_ARCSEC,
    HEALPIX_COLUMN,
    N_EPOCHS,
    REJECT_REASON,
    SOURCE_IDS,
    DetColumn,
    DetectionRejectReason,
    Property,
)

FORMATS = ("psfcat", "dr-parquet", "detections", "hats", "alerts")
DEFAULT_MAX_ROWS_PER_PIXEL = 50_000
DEFAULT_WORK_ROWS = 1_000_000
DEFAULT_HISTOGRAM_ORDER = 9
#: Sources are grouped with a margin this many times the radius wide.
LINK_MARGIN_FACTOR = 4.0
#: Detections without a reference link to this many nearest neighbours.
CLUSTER_NEIGHBOURS = 16
TILE = "tile"
IS_MARGIN = "is_margin"
BUCKET = "bucket"
OBJECT_RA = "object_ra"
OBJECT_DEC = "object_dec"
OBJECTID = "objectid"


@dataclass(frozen=True)
class IngestConfig:
    """Everything the ingest job needs, built from its command line."""

    input_format: str
    inputs: tuple[str, ...]
    output: str
    rejects: str
    references: tuple[str, ...] = ()
    radius_arcsec: float = DEFAULT_RADIUS_ARCSEC
    max_rows_per_pixel: int = DEFAULT_MAX_ROWS_PER_PIXEL
    work_rows: int = DEFAULT_WORK_ROWS
    histogram_order: int = DEFAULT_HISTOGRAM_ORDER
    catalog_name: str = "varsky_lightcurves"
    overwrite: bool = False
    master: str | None = None
    band_map: BandMap = field(default_factory=BandMap)


@dataclass
class IngestSummary:
    """What went in, what came out, where, and how long each stage took."""

    input_format: str
    n_files: int = 0
    rows_in: int = 0
    rows_out: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    objects_out: int = 0
    reference_sources: int = 0
    reference_objects: int = 0
    work_tiles: int = 0
    output_tiles: int = 0
    tiles: Tiles | None = None
    stage_s: dict[str, float] = field(default_factory=dict)
    output: str = ""
    rejects: str = ""
    radius_arcsec: float = 0.0

    @property
    def rows_rejected(self) -> int:
        """Detections or epochs that went to the rejects table."""
        return sum(self.rejected_by_reason.values())

    def format(self) -> str:
        """A short report a person can read."""
        lines = [f"varsky ingest: done in {sum(self.stage_s.values()):.1f} s"]
        lines.append(f"  input       {self.n_files:,} {self.input_format} file(s)")
        lines.append(f"  rows read   {self.rows_in:,} detections / epochs")
        if self.reference_sources:
            unseen = self.reference_objects - self.objects_out
            lines += [
                f"  references  {self.reference_sources:,} sources merged into "
                f"{self.reference_objects:,} sky objects",
                f"                {self.objects_out:,} with good detections within "
                f"{self.radius_arcsec:g} arcsec, written; {unseen:,} without one, so without a "
                "light curve (any flagged detections of theirs are in the rejects)",
            ]
        lines.append(f"  rejected    {self.rows_rejected:,} -> {self.rejects}")
        for reason, n in sorted(self.rejected_by_reason.items(), key=lambda kv: -kv[1]):
            lines.append(f"                {reason:<28} {n:,}")
        balance = "ok" if self.rows_in == self.rows_out + self.rows_rejected else "MISMATCH"
        stages = " | ".join(f"{k} {v:.1f} s" for k, v in self.stage_s.items())
        lines += [
            f"  written     {self.objects_out:,} objects with {self.rows_out:,} epochs in "
            f"{self.output_tiles:,} HEALPix tiles -> {self.output}",
            f"  rows in = in light curves + rejected: {self.rows_in:,} = {self.rows_out:,} + "
            f"{self.rows_rejected:,} ({balance})",
            f"  work tiles  {self.work_tiles:,}",
            f"  time        {stages}",
        ]
        return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the ingest job's options."""
    parser.add_argument("--format", required=True, choices=FORMATS, dest="input_format")
    parser.add_argument("--input", nargs="+", required=True, metavar="PATH",
                        help="input files or directories")  # fmt: skip
    parser.add_argument("--output", required=True, metavar="DIR", help="HATS catalog to write")
    parser.add_argument("--reference", nargs="*", default=[], metavar="PATH",
                        help="reference catalogs (refpsfcat FITS) for --format psfcat")  # fmt: skip
    parser.add_argument("--rejects", metavar="DIR", help="rejects (default: OUTPUT_rejects)")
    parser.add_argument("--radius-arcsec", type=float, default=DEFAULT_RADIUS_ARCSEC,
                        help=f"association radius (default {DEFAULT_RADIUS_ARCSEC})")  # fmt: skip
    parser.add_argument("--max-rows-per-pixel", type=int, default=DEFAULT_MAX_ROWS_PER_PIXEL,
                        help="objects per output HEALPix pixel at most")  # fmt: skip
    parser.add_argument("--work-rows", type=int, default=DEFAULT_WORK_ROWS,
                        help="rows per association task at most, roughly: reference sources "
                        "(psfcat with --reference), else detections; the read and light-curve "
                        "tasks take about this many detections")  # fmt: skip
    parser.add_argument("--band-map", metavar="MAP",
                        help="how the bands of --format detections map onto varsky's g, r, i: "
                        "NAME=BAND pairs (V=g,u=g,z=i; BAND may be 'drop'), a profile "
                        f"({', '.join(BUILTIN_PROFILES)}) or a .toml/.json profile file; "
                        "g, r and i map to themselves")  # fmt: skip
    parser.add_argument("--catalog-name", default="varsky_lightcurves")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--master", help="Spark master when run in-process (default local[*])")


def config_from_args(args: argparse.Namespace) -> IngestConfig:
    """Build and validate the configuration."""
    if args.radius_arcsec <= 0:
        raise ValueError(f"--radius-arcsec must be positive, got {args.radius_arcsec}")
    if args.reference and args.input_format != "psfcat":
        raise ValueError("--reference applies to --format psfcat only")
    if getattr(args, "band_map", None) and args.input_format != "detections":
        raise ValueError("--band-map applies to --format detections only")
    output = args.output.rstrip("/")
    return IngestConfig(
        input_format=args.input_format,
        inputs=tuple(args.input),
        output=output,
        rejects=(args.rejects or output + "_rejects").rstrip("/"),
        references=tuple(args.reference),
        radius_arcsec=args.radius_arcsec,
        max_rows_per_pixel=args.max_rows_per_pixel,
        work_rows=args.work_rows,
        catalog_name=args.catalog_name,
        overwrite=args.overwrite,
        master=args.master,
        band_map=BandMap.parse(getattr(args, "band_map", None)),
    )


# --- reading -----------------------------------------------------------------------------------


#: Input bytes per detection row the read's partitions are sized by (a psfcat row is about 64
#: bytes of FITS; denser formats only get more, smaller partitions).
INPUT_BYTES_PER_ROW = 64


def read_partitions(n_files: int, n_bytes: int, cores: int, work_rows: int) -> int:
    """Spark partitions of the read: about ``work_rows`` rows each, at least 4 per core.

    Sized by bytes, not files: 10^8 detections in 8 partitions of 10^7 rows each ran the JVM out
    of heap while caching them. Never more partitions than files.
    """
    by_rows = -(-n_bytes // (work_rows * INPUT_BYTES_PER_ROW))
    return max(1, min(n_files, max(4 * cores, by_rows)))


def file_partitions(spark, files: list[str], work_rows: int):
    """A DataFrame of (file_index, path), in :func:`read_partitions` partitions."""
    from catalogs.input_files import total_bytes

    cores = spark.sparkContext.defaultParallelism
    n = read_partitions(len(files), total_bytes(files), cores, work_rows)
    # Paths travel inside the tasks: slices of 2,000 (about 150 KiB) keep every task small.
    slices = max(n, -(-len(files) // 2_000))
    paths = spark.sparkContext.parallelize(list(enumerate(files)), slices)
    frame = spark.createDataFrame(paths, "file_index long, path string")
    return frame.repartition(n, "file_index")


def _read_files(spark, files: list[str], read_file, schema: pa.Schema, work_rows: int):
    """The Arrow tables ``read_file(path, file_index)`` of every file, read in Spark tasks."""

    def read(batches):
        for batch in batches:
            for row in batch.to_pylist():
                yield from read_file(row["path"], row["file_index"]).to_batches()

    return file_partitions(spark, files, work_rows).mapInArrow(read, _spark_schema(schema))


def _spark_schema(schema: pa.Schema):
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(schema)


def check_generic_tables(files: list[str], band_map: BandMap) -> None:
    """Fail before any Spark work on a band ``band_map`` lacks or a non-integer objectid."""
    import pyarrow.parquet as pq

    from catalogs.detection_tables import generic_band_channels

    for path in files:
        try:
            schema = pq.read_schema(path)
            bands = pq.read_table(path, columns=["band"])
        except (KeyError, pa.ArrowInvalid, OSError):
            continue  # from_generic names the missing column or the unreadable file
        if "objectid" in schema.names and not pa.types.is_integer(schema.field("objectid").type):
            raise InputError(
                path,
                f"objectid must be an integer type, found {schema.field('objectid').type}; "
                "map the ids to int64, or leave the column out to group detections by position",
                column="objectid",
            )
        generic_band_channels(bands, path, band_map)


def read_detections(spark, config: IngestConfig):
    """The detections (or DR epochs) of every input file, INGEST_DETECTION_SCHEMA rows."""
    from catalogs.detection_tables import from_dr_rows, from_generic, from_psfcat

    fmt = config.input_format
    if fmt == "dr-parquet":
        from catalogs.dr_lightcurves import check_dr_files
        from catalogs.spark_tables import read_dr_dataframe

        files = check_dr_files(list(config.inputs))

        def flatten(batches):
            for batch in batches:
                yield from from_dr_rows(batch).to_batches()

        schema = _spark_schema(INGEST_DETECTION_SCHEMA)
        return read_dr_dataframe(spark, files).mapInArrow(flatten, schema), len(files)
    if fmt == "hats":
        files = [f for f in expand_files(config.inputs) if "Npix=" in f]

        def read_file(path, index):
            import pyarrow.parquet as pq

            from catalogs.hats_input import dr_rows_of_hats_file

            return from_dr_rows(dr_rows_of_hats_file(pq.read_table(path), path))

    elif fmt == "alerts":
        files = expand_files(config.inputs, ALERT_SUFFIXES)

        def read_file(path, index):
            from catalogs.detection_tables import from_alerts
            from catalogs.ztf_alerts import read_alert_file

            return from_alerts(read_alert_file(path), path)

    elif fmt == "psfcat":
        files = expand_files(config.inputs, FITS_SUFFIXES)

        def read_file(path, index):
            from catalogs.ztf_psfcat import read_psfcat

            return from_psfcat(read_psfcat(path))

    else:
        files = expand_files(config.inputs)
        check_generic_tables(files, config.band_map)
        band_map = config.band_map

        def read_file(path, index):
            import pyarrow.parquet as pq

            return from_generic(pq.read_table(path), path, index, band_map)

    schema = INGEST_DETECTION_SCHEMA
    return _read_files(spark, files, read_file, schema, config.work_rows), len(files)


def repeated_history(dets):
    """Alert epochs that an earlier packet of the object held too, rejected as duplicates.

    A packet repeats the 30-day history of the object's earlier packets: the same detid (the
    candid, or a non-detection's time and band) of the same object counts once, in the first
    file and row that has it, whatever its own reason.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    first = Window.partitionBy(DetColumn.OBJECTID, DetColumn.DETID).orderBy(
        DetColumn.SOURCE_FILE, DetColumn.SOURCE_ROW
    )
    return (
        dets.withColumn("_copy", F.row_number().over(first))
        .withColumn(
            REJECT_REASON,
            F.when(F.col("_copy") > 1, F.lit(DetectionRejectReason.DUPLICATE)).otherwise(
                F.col(REJECT_REASON)
            ),
        )
        .drop("_copy")
    )


def read_reference_sources(spark, paths: tuple[str, ...], work_rows: int):
    """Reference sources of refpsfcat files, SOURCE_SCHEMA rows."""
    from catalogs.detection_tables import sources_from_refpsfcat

    def read_file(path, index):
        from catalogs.ztf_psfcat import read_refpsfcat

        return sources_from_refpsfcat(read_refpsfcat(path))

    files = expand_files(paths, FITS_SUFFIXES)
    return _read_files(spark, files, read_file, SOURCE_SCHEMA, work_rows)


# --- tiles -------------------------------------------------------------------------------------


def with_tiles(df, tiles: Tiles, margin_arcsec: float | None):
    """Add the tile of each row and, with a margin, copies of rows near a tile's edge."""
    from pyspark.sql import types as T

    schema = T.StructType(
        df.schema.fields
        + [
            T.StructField(TILE, T.LongType(), False),
            T.StructField(IS_MARGIN, T.BooleanType(), False),
        ]
    )

    def add(batches):
        for batch in batches:
            hp = batch.column(HEALPIX_COLUMN).to_numpy(zero_copy_only=False)
            yield batch.append_column(TILE, pa.array(tiles.tile_index(hp))).append_column(
                IS_MARGIN, pa.array(np.zeros(batch.num_rows, dtype=bool))
            )
            if margin_arcsec:
                rows, other = tiles.margin_tile_indices(hp, margin_arcsec)
                if rows.size:
                    copies = batch.take(pa.array(rows))
                    yield copies.append_column(TILE, pa.array(other)).append_column(
                        IS_MARGIN, pa.array(np.ones(rows.size, dtype=bool))
                    )

    return df.mapInArrow(add, schema)


# --- the objects' store between the passes ---------------------------------------------------

#: Suffix of the folder beside the output that holds the ingest's intermediate files.
WORK_SUFFIX = ".varsky-work"


def work_dir(output: str) -> str:
    """The folder of the ingest's intermediate files (removed when the job ends)."""
    return output.rstrip("/") + WORK_SUFFIX


def remove_work_dir(path: str) -> None:
    """Delete the intermediate files (local paths; elsewhere the file system's own rules)."""
    if is_local_path(path):
        shutil.rmtree(local_path(path), ignore_errors=True)
    else:
        from catalogs.input_files import filesystem

        fs, fs_path = filesystem(path)
        fs.delete_dir(fs_path)


# --- association -------------------------------------------------------------------------------


def link_by_tile(sources, tiles: Tiles, link_arcsec: float, max_neighbours: int | None):
    """Membership rows (source_id, objectid, object_ra, object_dec), one per source."""
    from udfs.kernels.tile_association import MEMBERSHIP_SCHEMA, link_in_tile

    margin = LINK_MARGIN_FACTOR * link_arcsec

    def link(key, table):
        return link_in_tile(table, key[0].as_py(), tiles, link_arcsec, max_neighbours)

    return (
        with_tiles(sources.select(SOURCE_ID, CATALOG, "ra", "dec", HEALPIX_COLUMN), tiles, margin)
        .groupBy(TILE)
        .applyInArrow(link, _spark_schema(MEMBERSHIP_SCHEMA))
    )


def store_objects_by_tile(
    objects, tiles: Tiles, radius_arcsec: float, store: str, out_tiles: Tiles
) -> None:
    """Write each object into its tile, and a copy into every tile within the radius of it.

    The layout of ``catalogs.object_tiles`` (``store/tile=N/``), one file per tile, with each
    object's output tile (in ``out_tiles``). A detection then finds, in its own tile's objects,
    every object within the radius of it, and where its light curve goes. ``objects`` have
    objectid, object_ra, object_dec and `_healpix_29`.
    """
    from pyspark.sql import types as T

    from catalogs.object_tiles import OUT_TILE

    schema = T.StructType(
        objects.select(OBJECTID, OBJECT_RA, OBJECT_DEC, HEALPIX_COLUMN).schema.fields
        + [T.StructField(OUT_TILE, T.LongType(), False)]
    )

    def add_out_tile(batches):
        for batch in batches:
            hp = batch.column(HEALPIX_COLUMN).to_numpy(zero_copy_only=False)
            yield batch.append_column(OUT_TILE, pa.array(out_tiles.tile_index(hp)))

    obj_pos = objects.select(OBJECTID, OBJECT_RA, OBJECT_DEC, HEALPIX_COLUMN).mapInArrow(
        add_out_tile, schema
    )
    (
        with_tiles(obj_pos, tiles, radius_arcsec)
        .select(OBJECTID, OBJECT_RA, OBJECT_DEC, OUT_TILE, TILE)
        .repartition(TILE)
        .write.partitionBy(TILE)
        .mode("overwrite")
        .parquet(store)
    )


def _healpix_expr(ra_col: str, dec_col: str):
    """`_healpix_29` of two columns, computed in Python batches (cdshealpix)."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    @F.pandas_udf(T.LongType())
    def hp(ra, dec):
        import pandas as pd

        return pd.Series(healpix_29(ra.to_numpy(), dec.to_numpy()))

    return hp(F.col(ra_col), F.col(dec_col))


# --- light curves ------------------------------------------------------------------------------


def build_by_bucket(epochs, n_buckets: int):
    """Light-curve rows (and each object's duplicate detids) from epochs with their objectid."""
    from pyspark.sql import functions as F

    from udfs.kernels.lightcurve_building import (
        BUILD_INPUT_COLUMNS,
        LIGHTCURVE_CATALOG_SCHEMA,
        build_lightcurves,
    )

    out_schema = _spark_schema(
        LIGHTCURVE_CATALOG_SCHEMA.append(pa.field("duplicate_detids", pa.list_(pa.int64())))
    )

    def build(key, table):
        lcs, dups = build_lightcurves(table.select(list(BUILD_INPUT_COLUMNS)))
        dup_obj = dups.column(OBJECTID).to_numpy()
        dup_det = dups.column(DetColumn.DETID).to_numpy()
        objects = lcs.column(OBJECTID).to_numpy()
        # Duplicates sorted by object line up with the (sorted) objects they repeat.
        order = np.argsort(dup_obj, kind="stable")
        counts = np.searchsorted(dup_obj[order], objects, side="right") - np.searchsorted(
            dup_obj[order], objects
        )
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
        values = dup_det[order][np.isin(dup_obj[order], objects)]
        return lcs.append_column(
            "duplicate_detids",
            pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, pa.int64())),
        )

    # Only the columns the build reads cross the shuffle (not the file paths and the other
    # per-detection columns the rejects keep).
    return (
        epochs.withColumnRenamed(SOURCE_ID, SOURCE_IDS)
        .select(*BUILD_INPUT_COLUMNS)
        .withColumn(BUCKET, F.pmod(F.xxhash64(OBJECTID), F.lit(n_buckets)))
        .groupBy(BUCKET)
        .applyInArrow(build, out_schema)
    )


# --- the job -----------------------------------------------------------------------------------


def associate_detections(good, config: IngestConfig, summary: IngestSummary, cached: list):
    """Kept detections (or DR epochs) with their objectid, for inputs without references.

    DR objectids are merged across fields and filters; detections without an objectid are
    clustered. Persisted frames are added to ``cached``.
    """
    from pyspark.sql import functions as F

    from catalogs.spark_tables import spark_tiles

    tiles = spark_tiles(good, config.histogram_order, config.work_rows)
    summary.work_tiles = len(tiles)
    summary.tiles = tiles
    if config.input_format in ("dr-parquet", "hats"):
        sources = (
            good.select(SOURCE_ID, CATALOG, "ra", "dec", HEALPIX_COLUMN).dropDuplicates([SOURCE_ID])
        ).persist()
        members = link_by_tile(sources, tiles, config.radius_arcsec, None).persist()
        cached += [sources, members]
        _check_membership(members, sources.count(), "DR objectids")
        return good.drop(OBJECTID).join(
            members.select(SOURCE_ID, OBJECTID), on=SOURCE_ID, how="inner"
        )
    else:
        given = good.where(F.col(OBJECTID).isNotNull())
        loose = good.where(F.col(OBJECTID).isNull())
        n_loose = loose.count()
        if n_loose:
            members = link_by_tile(
                loose.withColumn(SOURCE_ID, F.col(DetColumn.DETID)),
                tiles, config.radius_arcsec, CLUSTER_NEIGHBOURS,
            ).persist()  # fmt: skip
            cached.append(members)
            _check_membership(members, n_loose, "detections")
            clustered = loose.drop(OBJECTID).join(
                members.select(F.col(SOURCE_ID).alias(DetColumn.DETID), OBJECTID),
                on=DetColumn.DETID,
            )
            return given.unionByName(clustered)
        else:
            return given


def _catalog_spec(config: IngestConfig):
    from catalogs.hats_writer import CatalogSpec

    return CatalogSpec(
        config.catalog_name, "ra", "dec", config.max_rows_per_pixel,
        {Property.INPUT_FORMAT: config.input_format,
         Property.RADIUS_ARCSEC: str(config.radius_arcsec),
         **({Property.BAND_MAP: config.band_map.to_json()}
            if config.input_format == "detections" else {})},
    )  # fmt: skip


def run_ingest(spark, config: IngestConfig, log=print) -> IngestSummary:
    """Run the whole ingest job on ``spark``; return its summary."""
    summary = IngestSummary(
        config.input_format,
        output=config.output,
        rejects=config.rejects,
        radius_arcsec=config.radius_arcsec,
    )
    prepare_output_dir(config.output, config.overwrite)
    prepare_output_dir(config.rejects, config.overwrite)
    if config.input_format == "psfcat" and config.references:
        ingest_with_references(spark, config, summary, log)
    else:
        ingest_detections(spark, config, summary, log)
    if summary.rows_in != summary.rows_out + summary.rows_rejected:
        raise RuntimeError(
            f"rows in ({summary.rows_in}) != epochs in light curves ({summary.rows_out}) + "
            f"rows rejected ({summary.rows_rejected}): a bug in varsky, please report it"
        )
    return summary


#: Output tiles a build task of the psfcat ingest takes, about (hash partitioning).
TILES_PER_BUILD_TASK = 4


def ingest_with_references(spark, config: IngestConfig, summary: IngestSummary, log) -> None:
    """Detections with references: objects first, then detections straight into output tiles.

    1. Reference sources are merged into objects per work tile (``link_by_tile``); the objects'
       output HATS tiles are sized from their positions, before any detection is read.
    2. Objects go to a store per work tile, each with its output tile (``store_objects_by_tile``).
    3. Each read task gives its detections their nearest object and that object's output tile,
       writes its rejects itself, and packs the kept detections per output tile
       (:func:`udfs.kernels.tile_ingest.read_into_tiles`); the objects' reference members are
       packed per output tile too.
    4. One shuffle of blobs by tile; each task builds and writes one tile's light curves
       (:func:`udfs.kernels.tile_ingest.build_tile`). The driver writes the catalog metadata.
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from catalogs.detection_tables import from_psfcat
    from catalogs.hats_writer import finish_catalog, output_base, tile_write_settings
    from catalogs.spark_tables import spark_tiles
    from udfs.kernels import tile_ingest
    from udfs.kernels.lightcurve_building import LIGHTCURVE_CATALOG_SCHEMA
    from udfs.kernels.tile_blobs import BLOB_SCHEMA

    stage_s = summary.stage_s
    cached = []
    t = time.perf_counter()
    refs = read_reference_sources(spark, config.references, config.work_rows).persist(
        StorageLevel.MEMORY_AND_DISK
    )
    cached.append(refs)
    # One job reads the references and counts them per pixel: every source is in some tile.
    tiles = spark_tiles(refs, config.histogram_order, config.work_rows)
    summary.reference_sources = int(tiles.row_counts.sum())
    summary.work_tiles = len(tiles)
    summary.tiles = tiles
    members = link_by_tile(refs, tiles, config.radius_arcsec, None).persist()
    cached.append(members)
    _check_membership(members, summary.reference_sources, "reference sources")
    # An objectid is its group's smallest source id: once every source is in exactly one group
    # (checked above), that source's row is the object's one row. No shuffle.
    objects = (
        members.where(F.col(SOURCE_ID) == F.col(OBJECTID))
        .select(OBJECTID, OBJECT_RA, OBJECT_DEC)
        .withColumn(HEALPIX_COLUMN, _healpix_expr(OBJECT_RA, OBJECT_DEC))
        .persist()
    )
    cached.append(objects)
    out_tiles = spark_tiles(objects, config.histogram_order, config.max_rows_per_pixel)
    summary.reference_objects = int(out_tiles.row_counts.sum())
    work = work_dir(config.output)
    prepare_output_dir(work, overwrite=True)
    # A name of its own: Python workers outlive a job and cache tiles by the store's name.
    store = f"{work}/objects-{uuid.uuid4().hex}"
    store_objects_by_tile(objects, tiles, config.radius_arcsec, store, out_tiles)
    radius = config.radius_arcsec
    stage_s["references"] = time.perf_counter() - t

    t = time.perf_counter()
    files = expand_files(config.inputs, FITS_SUFFIXES)
    summary.n_files = len(files)
    rejects_dir = config.rejects

    def read(batches):
        from catalogs.ztf_psfcat import read_psfcat
        from udfs.kernels.tile_association import assign_stored_objects_and_tiles

        rows = [(r["file_index"], r["path"]) for b in batches for r in b.to_pylist()]
        if not rows:
            return
        yield from tile_ingest.read_into_tiles(
            rows,
            lambda path: from_psfcat(read_psfcat(path)),
            lambda dets: assign_stored_objects_and_tiles(dets, store, tiles, radius),
            f"{rejects_dir}/read-{min(rows)[0]:09d}.parquet",
        )

    def pack_members(batches):
        for batch in batches:
            yield from tile_ingest.member_blobs(batch, out_tiles)

    blob_schema = _spark_schema(BLOB_SCHEMA)
    detection_blobs = file_partitions(spark, files, config.work_rows).mapInArrow(read, blob_schema)
    member_blobs = members.mapInArrow(pack_members, blob_schema)
    base = output_base(config.output)
    spec = _catalog_spec(config)
    write_kwargs = tile_write_settings(LIGHTCURVE_CATALOG_SCHEMA)

    def build(key, table):
        return tile_ingest.build_tile(
            table, key[0].as_py(), out_tiles, base, spec.skymap_order, write_kwargs, rejects_dir
        )

    # A few output tiles a build task: with the session's fixed shuffle partitions, a task's
    # blobs (and the JVM's sort of them) grew with the sky (29 tiles a task at 10^8 detections);
    # one tile a task cost about 10% more time in per-task overheads.
    shuffle = int(spark.conf.get("spark.sql.shuffle.partitions"))
    n_build = max(shuffle, -(-(len(out_tiles) + 1) // TILES_PER_BUILD_TASK))
    results = (
        detection_blobs.unionByName(member_blobs)
        .repartition(n_build, "tile")
        .groupBy(F.col("tile"))
        .applyInArrow(build, _spark_schema(tile_ingest.RESULT_SCHEMA))
        .collect()
    )
    tile_rows = [r.asDict() for r in results if r["order"] is not None]
    read_counts = {r["reason"]: r["count"] for r in results if r["order"] is None}
    summary.rows_in = sum(read_counts.values())
    summary.objects_out = sum(r["nrows"] for r in tile_rows)
    summary.rows_out = sum(r["n_epochs"] for r in tile_rows)
    stage_s["read, light curves, write"] = time.perf_counter() - t
    log(f"varsky ingest: {summary.n_files:,} file(s), {summary.rows_in:,} rows read")

    t = time.perf_counter()
    summary.output_tiles = len(finish_catalog(base, spec, tile_rows))
    summary.rejected_by_reason = _count_rejects(spark, config.rejects)
    expected = Counter({r: c for r, c in read_counts.items() if r is not None})
    expected[DetectionRejectReason.DUPLICATE] += sum(r["count"] for r in tile_rows)
    if +expected != Counter(summary.rejected_by_reason):
        raise RuntimeError(
            f"rejects written {summary.rejected_by_reason} != rejects counted {dict(+expected)}: "
            "a bug in varsky, please report it"
        )
    for df in cached:
        df.unpersist()
    remove_work_dir(work)
    stage_s["metadata"] = time.perf_counter() - t


def _count_rejects(spark, rejects: str) -> dict[str, int]:
    from pyspark.sql.utils import AnalysisException

    try:
        rows = spark.read.parquet(rejects).groupBy(REJECT_REASON).count().collect()
    except AnalysisException:  # no file at all
        return {}
    return {r[REJECT_REASON]: r["count"] for r in rows}


def ingest_detections(spark, config: IngestConfig, summary: IngestSummary, log) -> None:
    """Every input but psfcat with references: read, associate, build light curves, write."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from catalogs.spark_tables import spark_tiles, write_hats_spark

    stage_s = summary.stage_s
    cached = []
    t = time.perf_counter()
    dets, summary.n_files = read_detections(spark, config)
    if config.input_format == "alerts":
        dets = repeated_history(dets)
    dets = dets.persist(StorageLevel.MEMORY_AND_DISK)
    cached.append(dets)
    by_reason = {
        r[REJECT_REASON]: r["count"] for r in dets.groupBy(REJECT_REASON).count().collect()
    }
    summary.rows_in = sum(by_reason.values())
    good = dets.where(F.col(REJECT_REASON).isNull())
    n_good = by_reason.get(None, 0)
    stage_s["read"] = time.perf_counter() - t
    log(f"varsky ingest: {summary.n_files:,} file(s), {summary.rows_in:,} rows, {n_good:,} good")

    t = time.perf_counter()
    epochs = associate_detections(good, config, summary, cached)
    stage_s["associate"] = time.perf_counter() - t

    t = time.perf_counter()
    n_buckets = max(spark.sparkContext.defaultParallelism, math.ceil(n_good / config.work_rows))
    # On disk: rows holding whole light curves, unrolled in the heap, ran the JVM out of it at
    # 3 x 10^7 detections.
    lcs = build_by_bucket(epochs, n_buckets).persist(StorageLevel.DISK_ONLY)
    cached.append(lcs)
    stats = lcs.agg(F.count(F.lit(1)).alias("n"), F.sum(N_EPOCHS).alias("e"),
                    F.sum(F.size("duplicate_detids")).alias("d")).first()  # fmt: skip
    summary.objects_out, summary.rows_out = stats["n"], stats["e"] or 0
    stage_s["light curves"] = time.perf_counter() - t

    t = time.perf_counter()
    out_tiles = spark_tiles(lcs, config.histogram_order, config.max_rows_per_pixel)
    catalog = lcs.drop("duplicate_detids")
    written = write_hats_spark(catalog, config.output, _catalog_spec(config), out_tiles)
    summary.output_tiles = len(written)
    stage_s["write catalog"] = time.perf_counter() - t

    t = time.perf_counter()
    rejects = dets.where(F.col(REJECT_REASON).isNotNull())
    dup_ids = lcs.select(F.explode("duplicate_detids").alias(DetColumn.DETID))
    if stats["d"]:
        rejects = rejects.unionByName(
            good.join(dup_ids, on=DetColumn.DETID, how="left_semi").withColumn(
                REJECT_REASON, F.lit(DetectionRejectReason.DUPLICATE)
            )
        )
    rejects.write.mode("overwrite").parquet(config.rejects)
    remove_spark_sidecar_files(config.rejects)
    summary.rejected_by_reason = _count_rejects(spark, config.rejects)
    stage_s["write rejects"] = time.perf_counter() - t
    for df in cached:
        df.unpersist()


def _check_membership(members, n_sources: int, what: str) -> None:
    """Every source must belong to exactly one object: margins wide enough, groups consistent."""
    from pyspark.sql import functions as F

    row = members.agg(F.count(F.lit(1)).alias("n"), F.countDistinct(SOURCE_ID).alias("d")).first()
    if row["n"] != n_sources or row["d"] != n_sources:
        raise RuntimeError(
            f"association of {what}: {n_sources} in, {row['d']} assigned ({row['n']} rows); "
            f"a group wider than the {LINK_MARGIN_FACTOR} x radius margin crossed a tile edge"
        )


def run(args: argparse.Namespace) -> int:
    """Entry point of `varsky ingest` (in-process or under spark-submit)."""
    from jobs.session import run_spark_job

    config = config_from_args(args)
    check_before_start(config)
    return run_spark_job("varsky ingest", config.master, lambda spark: run_ingest(spark, config))


def check_before_start(config: IngestConfig) -> None:
    """Check that the inputs exist and the outputs may be written, before Spark starts."""
    suffixes = {"psfcat": FITS_SUFFIXES, "alerts": ALERT_SUFFIXES}.get(
        config.input_format, PARQUET_SUFFIXES
    )
    files = expand_files(config.inputs, suffixes)
    if config.input_format == "alerts":
        from catalogs.ztf_alerts import check_alert_files

        check_alert_files(files)
    if config.references:
        expand_files(config.references, FITS_SUFFIXES)
    for path in (config.output, config.rejects):
        if is_local_path(path) and local_path(path).exists() and not config.overwrite:
            raise FileExistsError(f"output {path} exists; pass --overwrite to replace it")
