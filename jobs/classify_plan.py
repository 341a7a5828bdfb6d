"""The classify job's plan, engine-neutral: configuration, checks, stage order, accounting.

Written once for every engine. :func:`run_plan` checks the inputs, then drives a
:class:`ClassifyEngine` (``jobs/classify_spark.py``, ``jobs/classify_dask.py``) through the
stages: read and cut, reject repeated objects, count, write the rejects, the exposure-level cut,
the variability stage, model inputs and network, then the HATS collection (catalog, margin cache,
collection.properties). The plan owns what does not depend on the engine: the accounting (rows
in = rows out + rows rejected, epochs), the catalog's properties, the resume journal and the
summary. An engine holds its data (DataFrames, futures of Arrow tables) behind opaque handles
and runs the same kernels (``udfs.pipeline``) on them.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow.parquet as pq

from catalogs.dr_lightcurves import DRFile, check_dr_files
from catalogs.hats_tiles import Tiles
from catalogs.hats_writer import CatalogSpec
from catalogs.input_files import is_hats_catalog, light_curve_inputs
from catalogs.parquet_output import (
    check_output_dir,
    is_local_path,
    local_path,
    publish_output,
    staging_path,
)
from catalogs.provenance import VARSKY_VERSION
from catalogs.resume import (
    ResumeState,
    clear_for_resume,
    finish_journal,
    read_journal,
    run_fingerprint,
    start_journal,
)
from catalogs.schema import (
    CLASSIFICATION_SCHEMA_VERSION,
    DEC,
    DEFAULT_MIN_EPOCHS,
    N_DUPLICATE,
    N_FLAGGED,
    N_GOOD,
    N_NONFINITE,
    N_THINNED,
    PREDICTED_CLASS,
    RA,
    REJECT_REASON,
    InputKind,
    Property,
)
from udfs.kernels.lightcurve_cuts import MAX_EPOCHS

DEFAULT_ROWS_PER_PARTITION = 5000
DEFAULT_BATCH_SIZE = 256
DEFAULT_CATALOG_NAME = "varsky_classification"
#: Rows per output HEALPix tile at most (tiles split until they hold no more).
DEFAULT_MAX_ROWS_PER_PIXEL = 500_000
#: Width of the margin cache, arcsec: pairs closer than this across a tile edge are found.
DEFAULT_MARGIN_ARCSEC = 10.0
#: An exposure of a DR file is bad when more than this fraction of its stars deviate by 3 sigma
#: (a good one has about 1%), among at least this many stars (udfs.kernels.bad_exposures).
DEFAULT_BAD_EXPOSURE_FRACTION = 0.05
DEFAULT_BAD_EXPOSURE_MIN_STARS = 30
#: HEALPix order of the histogram the output tiles are cut from.
HISTOGRAM_ORDER = 10
#: Most rows that may repeat another row's objectid before the job stops (they are collected).
MAX_REPEATED_ROWS = 1_000_000


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


def processing_time_utc() -> datetime:
    """The job's processing time, UTC (``SOURCE_DATE_EPOCH``, when set, for reproducible builds)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        return datetime.fromtimestamp(int(epoch), tz=UTC)
    return datetime.now(UTC).replace(microsecond=0)


def stage_of_config(config: ClassifyConfig, card):
    """The :class:`udfs.model.variability.VariabilityStage` the job runs (None: not in the card)."""
    from udfs.model.variability import stage_of

    return stage_of(card, config.variability_stage, config.variability_threshold)


def note_stage(summary: ClassifySummary, stage, settled: int) -> None:
    """Put the variability stage's count and settings into the summary."""
    if stage is not None:
        summary.settled = settled
        summary.variability_threshold = stage.threshold
        summary.variability_settles = stage.settles


def classification_properties(config: ClassifyConfig, card, model_sha256: str, inputs, when):
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
        Property.CLASSES: ",".join(card.output_classes),
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
    """What :func:`check_before_start` found: the input files and the model."""

    files: list[DRFile]
    #: Every spelling of a file's path an engine may report, to its catalog's name.
    catalog_of_file: dict[str, str]
    kind: InputKind
    #: ``udfs.model.classifier.checked_model``'s (model path, card, sha256).
    model: tuple


def lightcurve_reader(inputs: list[str]) -> tuple[list[DRFile], dict[str, str], InputKind]:
    """Check the input light curves; return (files, catalog of each file, kind).

    ``inputs`` (see ``catalogs.input_files.light_curve_inputs``): HATS light-curve catalogs (from
    `varsky ingest`, or IRSA's DR in HATS layout) or IRSA DR Parquet files and folders. DR files
    get their footers checked (``catalogs.dr_lightcurves.check_dr_files``).
    """
    resolved = light_curve_inputs(inputs)
    if resolved.kind is InputKind.DR:
        files = check_dr_files(resolved.files)
    else:
        files = [DRFile(f, pq.ParquetFile(f).metadata.num_rows, "double") for f in resolved.files]
    return files, resolved.catalog_of_file, resolved.kind


def check_before_start(config: ClassifyConfig) -> CheckedInputs:
    """Check inputs, outputs and model before any engine starts; user mistakes raise.

    Raises ``InputError`` (unreadable or missing input), ``FileExistsError`` (an output exists
    without --overwrite), ``FileNotFoundError`` or ``ValueError`` (model file or card).
    """
    from udfs.model.classifier import checked_model

    files, catalog_of_file, kind = lightcurve_reader(list(config.inputs))
    for path in (config.output, config.rejects):
        check_output_dir(path, config.overwrite, keep_staging=True)
    model = checked_model(config.model_dir, config.grid)
    return CheckedInputs(files, catalog_of_file, kind, model)


def check_repeats(n_rows: int) -> None:
    """Refuse more than :data:`MAX_REPEATED_ROWS` rows repeating another row's objectid."""
    if n_rows > MAX_REPEATED_ROWS:
        raise ValueError(
            f"more than {MAX_REPEATED_ROWS:,} rows repeat the objectid of another row: is an input "
            "given twice under two names?"
        )


class ClassifyEngine(Protocol):
    """What the plan asks of an engine; ``Rows`` are the engine's own handles on its data.

    Every method runs the project's kernels (``udfs.pipeline``, ``udfs.kernels.bad_exposures``,
    ``catalogs.hats_writer``) on the engine's partitions; none decides anything the catalog's
    bytes depend on.
    """

    name: str
    #: Whether ``--resume`` works: tasks journal their tiles and kept tiles can be left out.
    supports_resume: bool

    def parallelism(self) -> int:
        """Partitions the kept rows are split into at least."""

    def cores(self) -> int:
        """Cores the job's tasks run on (for the summary's core use)."""

    def ship_model(self, model_path: Path, sha256: str, card_json: str) -> None:
        """Make the checked model file reachable from every worker."""

    def read_cut(self, inputs: CheckedInputs, min_epochs: int, log) -> Any:
        """Every input row read and cut (``udfs.pipeline.cut_partition``): one cut row each."""

    def repeated_rows(self, cut, limit: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(objectid, source_file, source_row) of kept rows whose objectid another kept row has.

        Calls :func:`check_repeats` with their number (at least ``limit`` when over it).
        """

    def reject_repeats(self, cut, first_of) -> Any:
        """``udfs.kernels.lightcurve_cuts.reject_repeated_objects`` on every partition."""

    def cut_counts(self, cut) -> list[dict]:
        """Dicts of ``CUT_COUNTS`` and ``reject_reason`` (None: kept); a reason may recur."""

    def write_rejects(self, cut, path: str) -> None:
        """The rejected rows, without light curves, as one Parquet file in ``path``."""

    def kept_rows(self, cut, n_partitions: int, n_kept: int) -> Any:
        """The kept rows' carried columns and light curves, in ``n_partitions`` parts."""

    def exposure_counts(self, kept, min_stars: int) -> tuple[list, list, list, list, list]:
        """(source_file, band, exposure, stars, deviant stars) of exposures with min_stars."""

    def without_bad_exposures(self, kept, flagged, min_epochs: int):
        """(kept rows less the flagged exposures' epochs, a callable: epochs removed, after)."""

    def without_tiles(self, kept, state: ResumeState) -> Any:
        """The kept rows less those of the tiles a dead run wrote (``--resume``)."""

    def classify(self, kept, classes, batch_size: int, provenance, stage, log):
        """(classified rows, objects per class, task seconds) of ``udfs.pipeline``'s chain.

        The seconds are ``load_s``, ``variability_s``, ``inputs_s``, ``predict_s``, ``task_s``
        and ``settled`` (objects the variability stage settled).
        """

    def tiles(self, classified, order: int, max_rows: int) -> Tiles:
        """Adaptive tiles of at most ``max_rows`` rows (``Tiles.from_counts``)."""

    def write_catalog(self, classified, base: str, spec: CatalogSpec, tiles: Tiles,
                      journal: str | None, kept: list[dict] | None):  # fmt: skip
        """The catalog's tile files and metadata; the files written (order, pixel, rows)."""

    def write_margin(self, classified, base: str, spec: CatalogSpec, tiles: Tiles,
                     kept_files: list[str]):  # fmt: skip
        """The margin cache (with the rows of ``kept_files`` too); [] when no row is in one."""

    def release(self, *rows) -> None:
        """Free what the engine holds for these handles."""


def _count_cuts(summary: ClassifySummary, counts: list[dict]) -> None:
    for row in counts:
        summary.rows_in += row["rows"]
        summary.epochs_in += row["n_epochs_in"]
        summary.epochs_flagged += row[N_FLAGGED]
        summary.epochs_nonfinite += row[N_NONFINITE]
        summary.epochs_duplicate += row[N_DUPLICATE]
        summary.epochs_thinned += row[N_THINNED]
        summary.epochs_good += row[N_GOOD]
        reason = row[REJECT_REASON]
        if reason is None:
            summary.epochs_used += row[N_GOOD]
        else:
            rejected = summary.rejected_by_reason
            rejected[reason] = rejected.get(reason, 0) + row["rows"]


def _write_collection(engine, classified, config, properties, journal, state) -> tuple:
    """The catalog, its margin cache and collection.properties; (tiles written, margin rows).

    With a resume ``state``, its tile plan is used, ``classified`` holds the rows of the other
    tiles only, and the margin cache is made from both.
    """
    from catalogs.hats_writer import write_collection_properties

    spec = CatalogSpec(config.catalog_name, RA, DEC, config.max_rows_per_pixel, properties)
    if state is not None:
        tiles = state.tiles
    else:
        tiles = engine.tiles(classified, HISTOGRAM_ORDER, config.max_rows_per_pixel)
    journal_dir = None
    if journal is not None:
        journal_dir = start_journal(config.output, journal.fingerprint, journal.when, tiles)
    kept = state.kept if state is not None else None
    written = engine.write_catalog(classified, config.catalog_dir, spec, tiles, journal_dir, kept)
    margin = []
    if len(tiles) > 1:
        kept_files = state.kept_files(config.catalog_dir) if kept else []
        margin_spec = spec.margin(config.margin_name, config.margin_arcsec, config.catalog_name)
        margin = engine.write_margin(
            classified, f"{config.output}/{config.margin_name}", margin_spec, tiles, kept_files
        )
    write_collection_properties(
        config.output, config.catalog_name, config.catalog_name,
        [config.margin_name] if margin else [],
        {Property.SCHEMA_VERSION: CLASSIFICATION_SCHEMA_VERSION, Property.VERSION: VARSKY_VERSION},
    )  # fmt: skip
    return written, sum(n for _, _, n in margin)


def run_plan(
    engine: ClassifyEngine, config: ClassifyConfig, log=print, checked: CheckedInputs | None = None
) -> ClassifySummary:
    """Run the whole classify job on ``engine``; return its summary.

    ``checked`` is :func:`check_before_start`'s result when the caller ran it already.
    """
    from udfs.kernels.lightcurve_cuts import repeated_objects
    from udfs.pipeline import Provenance

    stage_s: dict[str, float] = {}
    t = time.perf_counter()
    checked = checked or check_before_start(config)
    files, catalog_of_file = checked.files, checked.catalog_of_file
    model_path, card, sha256 = checked.model
    if config.resume and not engine.supports_resume:
        raise ValueError(f"--resume is not supported on the {engine.name} engine")
    engine.ship_model(model_path, sha256, (Path(config.model_dir) / "model_card.json").read_text())
    final, config = config, config.staged()
    for path in (final.output, final.rejects):
        check_output_dir(path, final.overwrite, keep_staging=final.resume and path == final.output)
    summary = ClassifySummary(
        files=files, output=final.output, rejects=final.rejects, model_sha256=sha256
    )
    journal, state = None, None
    if engine.supports_resume:
        journal, state = journal_of(final, config, files, sha256)
    if state is not None:
        summary.resumed_tiles, summary.resumed_rows = len(state.kept), state.kept_rows
    elif final.resume:
        log(f"varsky classify: --resume: no journal of this job in {config.output}; from scratch")
    stage_s["check inputs"] = time.perf_counter() - t
    log(f"varsky classify: {len(files):,} file(s), {sum(f.num_rows for f in files):,} rows")

    t = time.perf_counter()
    cut = engine.read_cut(checked, config.min_epochs, log)
    objectids, source_files, source_rows = engine.repeated_rows(cut, MAX_REPEATED_ROWS + 1)
    if len(objectids):
        cut = engine.reject_repeats(cut, repeated_objects(objectids, source_files, source_rows))
    _count_cuts(summary, engine.cut_counts(cut))
    n_kept = summary.rows_in - summary.rows_rejected
    stage_s["read + cuts"] = time.perf_counter() - t
    log(f"  read {summary.rows_in:,} rows: {n_kept:,} kept, {summary.rows_rejected:,} rejected")

    t = time.perf_counter()
    engine.write_rejects(cut, config.rejects)
    stage_s["write rejects"] = time.perf_counter() - t

    t = time.perf_counter()
    n_partitions = max(math.ceil(n_kept / config.rows_per_partition), engine.parallelism())
    kept = engine.kept_rows(cut, n_partitions, n_kept)
    summary.bad_exposure_fraction = config.bad_exposure_fraction
    removed = lambda: 0  # noqa: E731
    if any(is_hats_catalog(p) for p in config.inputs):
        summary.bad_exposure_note = "no exposure-level cut on HATS input (no exposure keys)"
    elif config.bad_exposure_fraction <= 0:
        summary.bad_exposure_note = "exposure-level cut off (--bad-exposure-fraction 0)"
    else:
        from udfs.kernels.bad_exposures import flagged_from_counts

        counts = engine.exposure_counts(kept, config.bad_exposure_min_stars)
        summary.exposures_checked = len(counts[0])
        flagged = flagged_from_counts(
            *counts, config.bad_exposure_min_stars, config.bad_exposure_fraction
        )
        summary.exposures_flagged = sum(len(v) for v in flagged.values())
        kept, removed = engine.without_bad_exposures(kept, flagged, config.min_epochs)
    when = state.processing_time if state is not None else processing_time_utc()
    if journal is not None:
        journal = replace(journal, when=when)
    if state is not None and state.kept:
        kept = engine.without_tiles(kept, state)
    provenance = Provenance(card.name, sha256, card.grid.name, when, catalog_of_file)
    stage = stage_of_config(config, card)
    classified, summary.class_counts, seconds = engine.classify(
        kept, card.output_classes, config.batch_size, provenance, stage, log
    )
    if state is not None:
        for path in state.kept_files(config.catalog_dir):
            kept_classes = pq.read_table(path, columns=[PREDICTED_CLASS])[PREDICTED_CLASS]
            for name, n in Counter(kept_classes.to_pylist()).items():
                summary.class_counts[name] = summary.class_counts.get(name, 0) + n
    summary.epochs_bad_exposure = int(removed())
    summary.epochs_used -= summary.epochs_bad_exposure
    summary.rows_out = sum(summary.class_counts.values())
    stage_s["inputs + network"] = time.perf_counter() - t
    summary.cores = engine.cores()
    summary.cores_busy = seconds["task_s"] / stage_s["inputs + network"] / summary.cores
    summary.task_s = {
        "model load": seconds["load_s"],
        "variability stage": seconds["variability_s"],
        "model inputs": seconds["inputs_s"],
        "network": seconds["predict_s"],
    }
    note_stage(summary, stage, int(seconds["settled"]))

    t = time.perf_counter()
    if summary.rows_out == 0:
        raise ValueError("no object passed the cuts: nothing to classify")
    properties = classification_properties(final, card, sha256, catalog_of_file, when)
    summary.tiles, summary.margin_rows = _write_collection(
        engine, classified, config, properties, journal, state
    )
    summary.margin_name = config.margin_name
    engine.release(classified, cut)
    stage_s["write HATS"] = time.perf_counter() - t
    written_rows = sum(n for _, _, n in summary.tiles)
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
    if journal is not None:
        finish_journal(config.output)
    publish_output(config.rejects, final.rejects)
    publish_output(config.output, final.output)
    return summary
