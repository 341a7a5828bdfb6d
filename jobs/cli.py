"""The `varsky` command: one subcommand per job.

Each job module provides ``add_arguments(parser)`` and ``run(args) -> int``; this module only wires
them. The same entry point serves `varsky ...` (Spark local[*] in-process) and `spark-submit.sh`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from catalogs.provenance import VARSKY_VERSION

#: Subcommand name -> (module, one-line help).
JOBS: dict[str, tuple[str, str]] = {
    "classify": ("jobs.classify", "classify DR light curves into a Parquet catalog"),
    "train": (
        "jobs.train",
        "train the dm-dt CNN: simulated light curves, then fine-tuning on real labelled ones",
    ),
    "simulate": ("jobs.simulate", "write a synthetic ZTF sky in the real formats, with its truth"),
    "ingest": ("jobs.ingest", "survey catalogs to a HATS light-curve catalog of sky objects"),
    "report": (
        "jobs.report",
        "summary tables, figures and an HTML page of a classification catalog",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with one subparser per job."""
    parser = argparse.ArgumentParser(
        prog="varsky",
        description="Classify survey light curves at scale: dm-dt images and a CNN on Spark.",
    )
    parser.add_argument("--version", action="version", version=f"varsky {VARSKY_VERSION}")
    sub = parser.add_subparsers(dest="job", required=True, metavar="JOB")
    for name, (module_name, help_text) in JOBS.items():
        job_parser = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module_name).add_arguments(job_parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the chosen job; return its exit status."""
    args = build_parser().parse_args(argv)
    module = importlib.import_module(JOBS[args.job][0])
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
