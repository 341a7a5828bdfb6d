"""The `varsky` command: one subcommand per job.

Each job module provides ``add_arguments(parser)`` and ``run(args) -> int``; this module only wires
them. The same entry point serves `varsky ...` (Spark local[*] in-process) and `spark-submit.sh`.
"""

from __future__ import annotations

import argparse
import importlib
import os
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

#: Exit status of a user mistake (argparse's too).
USAGE_ERROR = 2


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--verbose", action="store_true",
        help="show Spark's INFO log and every warning (default: progress, summary, errors)",
    )  # fmt: skip
    common.add_argument(
        "--debug", action="store_true", help="show the Python traceback of an error"
    )
    return common


def defaulted_options(parser: argparse.ArgumentParser, defaults: object):
    """A function adding to ``parser`` options whose defaults are attributes of ``defaults``.

    ``add("--batch-size", int, "B", "objects per step")`` adds ``--batch-size B`` of type int
    with the default ``defaults.batch_size`` (``attr`` names another attribute) and the help
    "objects per step (default %(default)s)".
    """

    def add(flag: str, type_: type, metavar: str | None, help_text: str = "", attr: str = ""):
        default = getattr(defaults, attr or flag.removeprefix("--").replace("-", "_"))
        help_text = f"{help_text} (default %(default)s)".lstrip()
        parser.add_argument(flag, type=type_, default=default, metavar=metavar, help=help_text)

    return add


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Build the top-level parser with one subparser per job.

    With ``only``, just that job's module is imported for its options (the others' imports
    would cost seconds before a one-line error).
    """
    parser = argparse.ArgumentParser(
        prog="varsky",
        description="Classify survey light curves at scale: dm-dt images and a CNN on Spark.",
    )
    parser.add_argument("--version", action="version", version=f"varsky {VARSKY_VERSION}")
    sub = parser.add_subparsers(dest="job", required=True, metavar="JOB")
    common = _common_options()
    for name, (module_name, help_text) in JOBS.items():
        job_parser = sub.add_parser(name, help=help_text, description=help_text, parents=[common])
        if only is None or only == name:
            importlib.import_module(module_name).add_arguments(job_parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the chosen job; return its exit status.

    A mistake in the command line or its inputs (``ValueError``, which ``InputError`` is, or
    ``OSError``: a missing path, an existing output) ends as one line on stderr,
    ``varsky JOB: error: ...``, with exit status 2; ``--debug`` shows the traceback instead.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    job = argv[0] if argv and argv[0] in JOBS else None
    args = build_parser(only=job).parse_args(argv)
    if args.verbose:
        os.environ["VARSKY_VERBOSE"] = "1"
    module = importlib.import_module(JOBS[args.job][0])
    try:
        return int(module.run(args) or 0)
    except (ValueError, OSError) as err:
        if args.debug:
            raise
        message = str(err) or type(err).__name__
        if isinstance(err, OSError) and err.filename and str(err.filename) not in message:
            message = f"{err.filename}: {message}"
        print(f"varsky {args.job}: error: {message}", file=sys.stderr, flush=True)
        return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
