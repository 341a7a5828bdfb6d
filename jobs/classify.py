"""`varsky classify`: light curves in, a HATS classification catalog out.

The command line and its entry point; the plan is :mod:`jobs.classify_plan` (written once), run
on Spark (:mod:`jobs.classify_spark`, the default) or on Dask (:mod:`jobs.classify_dask`).

Stages: check inputs (footers) -> read -> quality cuts and `_healpix_29` -> equal ranges of
`_healpix_29` (one per partition) -> the exposure-level cut -> the variability stage, model
inputs (dm-dt images, periodograms, features) and the network in the same Python worker -> a
HATS collection (the catalog in adaptive HEALPix tiles, its margin cache and
collection.properties), plus a rejects table.

Output layout (OUTPUT is the collection, which ``lsdb.open_catalog(OUTPUT)`` opens)::

    OUTPUT/collection.properties
    OUTPUT/<catalog>/hats.properties, partition_info.csv, skymap.fits, point_map.fits
    OUTPUT/<catalog>/dataset/Norder=K/Dir=D/Npix=N.parquet, _metadata, _common_metadata
    OUTPUT/<catalog>_<margin>arcs/...   (rows within the margin of each tile)
"""

from __future__ import annotations

import argparse
import re

from catalogs.parquet_output import is_local_path
from catalogs.schema import DEFAULT_MIN_EPOCHS
from jobs.classify_plan import (
    DEFAULT_BAD_EXPOSURE_FRACTION,
    DEFAULT_BAD_EXPOSURE_MIN_STARS,
    DEFAULT_BATCH_SIZE,
    DEFAULT_CATALOG_NAME,
    DEFAULT_MARGIN_ARCSEC,
    DEFAULT_MAX_ROWS_PER_PIXEL,
    DEFAULT_ROWS_PER_PARTITION,
    CheckedInputs,
    ClassifyConfig,
    ClassifySummary,
    check_before_start,
    run_plan,
)
from jobs.classify_spark import SparkEngine
from udfs.model.classifier import DEFAULT_MODEL_DIR


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
        "constant and skip the periodogram and network (udfs/model/variability.py); off: every "
        "object goes to the network, p_variable is still computed (default %(default)s)",
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


def run_classify(
    spark, config: ClassifyConfig, log=print, checked: CheckedInputs | None = None
) -> ClassifySummary:
    """Run the whole job on ``spark``; return its summary (:func:`jobs.classify_plan.run_plan`)."""
    return run_plan(SparkEngine(spark), config, log, checked)


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
