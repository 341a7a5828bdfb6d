"""`varsky simulate`: write a synthetic ZTF sky in the real file formats, with its truth.

Science and reference PSF-fit catalogs (FITS), IRSA DR light-curve Parquet files, generic
long-format detections and the truth tables that tie them to the simulated objects; see
:mod:`udfs.simulators.sky_simulator`. Pure numpy, Arrow and a process pool; no Spark.

Example::

    varsky simulate --output /tmp/sky --objects 2000 --workers 2
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from catalogs.parquet_output import prepare_output_dir
from jobs.cli import defaulted_options
from udfs.simulators.sky_simulator import SkyConfig, simulate_sky


@dataclass(frozen=True)
class SimulateConfig:
    """Settings of a simulate run.

    Attributes
    ----------
    output : Path
        Directory to write.
    sky : SkyConfig
        The sky to simulate.
    workers : int
        Processes writing field quadrants in parallel; the files do not depend on it.
    overwrite : bool
        Replace a non-empty output directory.
    """

    output: Path
    sky: SkyConfig
    workers: int = 2
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"simulate: --workers must be >= 1, got {self.workers}")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> SimulateConfig:
        """Build from the parsed command line."""
        sky = SkyConfig(
            n_objects=args.objects,
            seed=args.seed,
            ra_deg=args.ra_deg,
            dec_deg=args.dec_deg,
            radius_deg=args.radius_deg,
            pair_fraction=args.pair_fraction,
            field_side_deg=args.field_side_deg,
            ccds_per_side=args.ccds_per_side,
            survey_days=args.survey_days,
        )
        return cls(
            output=Path(args.output), sky=sky, workers=args.workers, overwrite=args.overwrite
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the simulate job's options to ``parser``."""
    sky = SkyConfig()
    parser.add_argument("--output", required=True, metavar="DIR", help="directory to write")
    parser.add_argument(
        "--objects",
        type=int,
        default=sky.n_objects,
        metavar="N",
        help="objects in the sky (default %(default)s; about 450 detections each)",
    )
    option = defaulted_options(parser, sky)
    option("--seed", int, None)
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        metavar="W",
        help="processes writing in parallel (default %(default)s)",
    )
    option("--ra-deg", float, "RA", "cap centre, deg")
    option("--dec-deg", float, "DEC", "cap centre, deg")
    parser.add_argument(
        "--radius-deg",
        type=float,
        metavar="R",
        help=f"cap radius, deg (default: sized for {sky.density_per_deg2:.0f} objects/deg^2)",
    )
    option("--survey-days", float, "D", f"survey length from MJD {sky.survey_start_mjd:.0f}, days")
    parser.add_argument(
        "--field-side-deg",
        type=float,
        metavar="S",
        help="field side, deg (default: 2 x 2 overlapping fields covering the cap)",
    )
    option("--ccds-per-side", int, "C", "a field is C x C CCDs of 2 x 2 quadrants")
    option("--pair-fraction", float, "F", "fraction of objects in close pairs, 1.5-3 arcsec apart")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a non-empty output directory"
    )


def run(args: argparse.Namespace) -> int:
    """Run the simulate job from parsed arguments; return the exit status."""
    try:
        config = SimulateConfig.from_args(args)
        if config.output.exists() and any(config.output.iterdir()):
            prepare_output_dir(str(config.output), config.overwrite)
    except (ValueError, FileExistsError) as err:
        print(f"varsky simulate: error: {err}", file=sys.stderr)
        return 2
    summary = simulate_sky(config.sky, config.output, workers=config.workers, log=print)
    print(summary.format(), flush=True)
    return 0
