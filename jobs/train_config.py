"""`varsky train`'s configuration: its options, their defaults and their checks."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path

from catalogs.band_map import BandMap
from catalogs.schema import DEFAULT_MIN_EPOCHS
from jobs.cli import defaulted_options

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
    transient_set : str or None
        A real labelled set of transients (``DIR/NAME``, e.g. the ZTF BTS) to train the transient
        head on (:mod:`udfs.model.transients`); None for a model without transient classes.
    transients_only : bool
        Only (re)fit the transient head of the model already in ``output``.
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
    transient_set: str | None = None
    transients_only: bool = False

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
            transient_set=args.transients,
            transients_only=args.transients_only,
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the train job's options to ``parser``."""
    defaults = TrainConfig(output=Path("."))
    option = defaulted_options(parser, defaults)
    parser.add_argument("--output", required=True, help="model directory to write")
    option("--objects-per-class", int, "N", "simulated light curves per class, all splits")
    option(
        "--epochs",
        int,
        "E",
        "training epochs: the learning rate decays to zero over them (cosine); early "
        "stopping if the validation accuracy stalls",
        attr="max_epochs",
    )
    option("--patience", int, None, "epochs without better validation accuracy before stopping")
    option("--seed", int, None)
    parser.add_argument(
        "--grid",
        choices=GRID_NAMES,
        default=defaults.grid_name,
        help="dm-dt grid (default %(default)s)",
    )
    option("--batch-size", int, "B")
    parser.add_argument(
        "--cadence-sample",
        default=str(DEFAULT_CADENCE_SAMPLE),
        metavar="PARQUET",
        help="DR light-curve file whose real epochs some objects use; 'none' for synthetic only "
        "(default: the bundled DR5 sample)",
    )
    option("--real-cadence-fraction", float, "F", "fraction of objects with a real cadence")
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
    option("--min-epochs", int, None, "fewest good epochs a labelled light curve needs")
    option(
        "--band-dropout",
        float,
        "P",
        "probability a multi-band training object gets a copy with one band removed",
    )
    parser.add_argument(
        "--variability-only",
        action="store_true",
        help="only (re)fit the variability stage (udfs/model/variability.py) of the model already "
        "in --output, from the --real sets and the --cadence-sample DR file, and rewrite its card "
        "(about a minute, no Spark)",
    )
    parser.add_argument(
        "--transients",
        metavar="DIR/NAME",
        help="a real labelled set of transients (e.g. data/real_labelled/ztf_bts) to train the "
        "transient head on: supernova types, TDE, novae (udfs/model/transients.py); its "
        "non-transients are the --real sets and the --cadence-sample DR file",
    )
    parser.add_argument(
        "--transients-only",
        action="store_true",
        help="only (re)fit the transient head of the model already in --output, from --transients, "
        "the --real sets and the --cadence-sample DR file; rewrites the model file and its card "
        "(a few minutes, no Spark)",
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
    option("--finetune-epochs", int, "E", "fine-tuning epochs on the real sets")
