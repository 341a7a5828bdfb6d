"""`varsky report`: summary tables, figures and an HTML page of a classification catalog.

No Spark: the catalog is read with pyarrow, the example light curves are fetched by objectid from
the input files, and the model runs in this process. See :mod:`reports.catalog_report`.

Example::

    varsky report out/classified --output out/report
"""

from __future__ import annotations

import argparse
from pathlib import Path

from reports.catalog_report import REPORT_DIR, ReportResult, make_report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the report job's arguments to its subparser."""
    parser.add_argument(
        "catalog", metavar="CATALOG_DIR",
        help="classification catalog from `varsky classify` (Parquet folder or HATS)",
    )  # fmt: skip
    parser.add_argument(
        "--output", metavar="DIR", default=None,
        help=f"folder for the report (default CATALOG_DIR/{REPORT_DIR})",
    )  # fmt: skip
    parser.add_argument(
        "--model", metavar="DIR", default=None,
        help="model directory (default: the catalog's varsky_model_dir property, else the "
        "repository's models/varsky_dmdt_cnn)",
    )  # fmt: skip
    parser.add_argument(
        "--lightcurves", metavar="PATH", action="append", default=None,
        help="light-curve file, folder or HATS catalog the catalog was made from, for the example "
        "and saliency figures (repeatable; default: the catalog's varsky_inputs property)",
    )  # fmt: skip


def format_summary(result: ReportResult) -> str:
    """The readable end-of-job summary."""
    counts = result.tables["objects_per_class"]
    present = counts[counts["objects"] > 0].sort_values("objects", ascending=False)
    classes = ", ".join(f"{r['class']} {r['objects']:,}" for _, r in present.iterrows())
    lines = [
        f"varsky report: done in {result.seconds:.1f} s",
        f"  catalog   {result.catalog_dir}: {result.n_objects:,} objects",
        f"  classes   {len(present)} of {len(result.classes)} predicted: {classes}",
        f"  page      {result.html_path}",
        f"  summary   {result.summary_path}",
        f"  figures   {len(result.figures)} PNG in {result.output_dir}: "
        + ", ".join(Path(p).name for p in result.figures.values()),
    ]
    lines += [f"  note      {note}" for note in result.notes]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Entry point of `varsky report`; return the exit status."""
    result = make_report(
        args.catalog,
        output_dir=args.output,
        model_dir=args.model,
        lightcurve_paths=args.lightcurves,
    )
    print(format_summary(result), flush=True)
    return 0
