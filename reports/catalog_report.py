"""A report on a classification catalog: summary tables, PNG figures and one HTML page.

The catalog is read format-agnostically (every data Parquet file under its directory: the
Parquet folder `varsky classify` used to write, a HATS catalog, or a HATS collection, whose margin
caches are skipped), so the report does not depend on how it was written. Figures:

- a sky map: objects and the fraction of variables per HEALPix pixel (Mollweide), and the
  footprint zoomed in;
- the top-scoring objects of each predicted class: light curve and dm-dt images, remade from the
  input light-curve files exactly as classify made them;
- the model card's test-split confusion matrix;
- finite-difference saliency maps of the dm-dt image for a few objects.

Everything is written to one output folder (default ``CATALOG_DIR/report``): the PNG figures,
``report.html`` (self-contained: tables inline, figures as data URIs) and ``summary.md``.
No Spark is needed; TensorFlow and matplotlib are imported only by the functions that use them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa

from catalogs.hats_properties import catalog_properties
from catalogs.provenance import file_sha256
from catalogs.schema import (
    DMDT_GRID,
    HEALPIX_COLUMN,
    INPUT_FILE,
    LIGHTCURVE,
    MODEL_SHA256,
    P_VARIABLE,
    PREDICTED_CLASS,
    PREDICTED_SCORE,
    SETTLED,
    VARSKY_VERSION_COLUMN,
    DRColumn,
    Property,
)
from reports.catalog_reading import (
    PROBABILITY_PREFIX,
    catalog_classes,
    catalog_files,
    read_classification_catalog,
    split_list,
)
from reports.report_figures import (
    plot_dmdt_examples,
    plot_model_confusion_matrix,
    plot_model_reliability,
    plot_saliency,
    plot_sky_map,
    plot_variability,
    real_validation_table,
)
from reports.report_html import Section, write_html, write_summary_markdown
from reports.report_lightcurves import fetch_lightcurves
from reports.report_tables import (
    CLASS_TABLE,
    EPOCH_TABLE,
    SCORE_TABLE,
    TILE_TABLE,
    is_variable,
    summary_tables,
)

if TYPE_CHECKING:
    from udfs.model.classifier import ModelCard

REPORT_DIR = "report"
SKY_MAP_FILE = "sky_map.png"
VARIABILITY_FILE = "p_variable_vs_mag.png"
EXAMPLES_FILE = "dmdt_examples_{:02d}.png"
CONFUSION_FILE = "confusion_matrix.png"
RELIABILITY_FILE = "reliability.png"
SALIENCY_FILE = "saliency.png"

#: Table of the model's recall on real labelled stars (from its card).
REAL_VALIDATION_TABLE = "Model on real labelled stars (validation split, from the model card)"

#: Objects per predicted class in the example figures.
N_EXAMPLES = 2

#: Predicted classes per example figure (one figure row per object).
CLASSES_PER_FIGURE = 3

#: Objects in the saliency figure (the top object of as many classes, constant excepted).
N_SALIENCY = 4
SALIENCY_SKIPPED_CLASSES = frozenset({"constant"})

#: Probabilities remade from the light-curve files must match the catalog's to this, absolute.
SCORE_TOLERANCE = 1e-4


@dataclass
class ReportResult:
    """What a report read and wrote.

    Attributes
    ----------
    catalog_dir, output_dir : Path
    html_path : Path
        The self-contained HTML page.
    summary_path : Path
        The tables as Markdown.
    figures : dict of str to Path
        Caption -> PNG file, in page order.
    tables : dict of str to pandas.DataFrame
        See :func:`summary_tables`.
    n_objects : int
        Rows of the catalog.
    classes : tuple of str
        Classes of the catalog's probability columns.
    notes : list of str
        What was skipped or looked wrong, and why.
    seconds : float
        Wall time, seconds.
    """

    catalog_dir: Path
    output_dir: Path
    html_path: Path
    summary_path: Path
    figures: dict[str, Path]
    tables: dict[str, pd.DataFrame]
    n_objects: int
    classes: tuple[str, ...]
    notes: list[str] = field(default_factory=list)
    seconds: float = float("nan")


def model_statement(card: ModelCard) -> tuple[str, ...]:
    """What the model was trained on, and where each of its quoted numbers comes from."""
    training = card.training
    sets = (card.fine_tuning or {}).get("sets", [])
    real = ", ".join(f"{s['name']} ({s.get('train', 0):,} training objects)" for s in sets)
    lines = [
        f"{card.name} was trained on {training.n_train:,} simulated light curves "
        f"({training.objects_per_class:,} per class, {len(card.classes)} classes, "
        "ZTF-like cadences)"
        + (f", then fine-tuned on real labelled light curves: {real}." if real else ".")
    ]
    metrics = card.test_metrics
    if metrics is not None:
        lines.append(
            f"The confusion matrix is the {metrics.split} split of the simulated light curves "
            f"(accuracy {metrics.accuracy:.3f}, macro F1 {metrics.macro_f1:.3f}): how well the "
            "model tells simulated classes apart, not how it does on real stars."
        )
    if card.real_validation:
        scores = "; ".join(
            f"{name}: accuracy {v['accuracy']:.3f} on {v['n']:,} objects"
            for name, v in card.real_validation.items()
        )
        lines.append(
            "On real stars: the real-validation table gives the recall per source label on "
            "real labelled objects held out of training (by object, never trained on) "
            f"({scores}). Classes without real labelled examples (for instance yso, cv, flare, "
            "bogus) are judged on simulated light curves only."
        )
    return tuple(lines)


def _title(properties: Mapping[str, str], catalog_dir: Path, n_objects: int) -> str:
    name = properties.get("obs_collection") or catalog_dir.resolve().name
    inputs = [Path(p).name for p in split_list(properties.get(Property.INPUTS))]
    more = f" and {len(inputs) - 2:,} more" if len(inputs) > 2 else ""
    source = f" of {', '.join(inputs[:2])}{more}" if inputs else ""
    surveys = properties.get("varsky_input_catalogs")
    source += f" ({surveys})" if surveys else ""
    return f"{name}{source}: {n_objects:,} objects classified by varsky"


def _lead(df: pd.DataFrame) -> str:
    n = len(df)
    if not n:
        return "The catalog has no objects."
    variable = int(is_variable(df[PREDICTED_CLASS].astype(str)).sum())
    top = df[PREDICTED_CLASS].astype(str).value_counts()
    common = ", ".join(f"{c} {k:,}" for c, k in top.head(4).items())
    settled = ""
    if SETTLED in df.columns and df[P_VARIABLE].notna().any():
        k = int(df[SETTLED].fillna(False).sum())
        settled = (
            f" The variability stage settled {k:,} ({k / n:.1%}) as constant before the "
            "periodogram and network; the others went to the network."
        )
    return (
        f"{n:,} objects, {variable:,} of them ({variable / n:.1%}) predicted variable; "
        f"most common classes: {common}.{settled}"
    )


def _top_objects(df: pd.DataFrame, classes: Sequence[str], per_class: int) -> pd.DataFrame:
    """The ``per_class`` highest-scoring objects of each predicted class, in class order."""
    rank = {name: k for k, name in enumerate(classes)}
    top = (
        df.sort_values([PREDICTED_SCORE, DRColumn.OBJECTID], ascending=[False, True])
        .groupby(PREDICTED_CLASS, sort=False)
        .head(per_class)
    )
    key = top[PREDICTED_CLASS].map(lambda c: rank.get(c, len(rank)))
    return top.assign(_rank=key).sort_values(["_rank", PREDICTED_SCORE], ascending=[True, False])


def _provenance(df: pd.DataFrame, catalog_dir: Path, n_files: int) -> dict[str, str]:
    def values(column: str) -> str:
        if column not in df.columns:
            return "(not in catalog)"
        return ", ".join(sorted(map(str, df[column].dropna().unique()))[:5])

    facts = {
        "catalog": str(catalog_dir.resolve()),
        "data files": str(n_files),
        "objects": f"{len(df):,}",
        "varsky version (catalog)": values(VARSKY_VERSION_COLUMN),
        "model sha256 (catalog)": values(MODEL_SHA256),
        "dm-dt grid (catalog)": values(DMDT_GRID),
    }
    if INPUT_FILE in df.columns:
        facts["input files"] = f"{df[INPUT_FILE].nunique()}: {values(INPUT_FILE)}"
    return facts


def _card_figures(
    card: ModelCard, model: Path, df: pd.DataFrame, output: Path, notes: list[str]
) -> dict[str, Path]:
    """The model card's figures, by caption; notes where the model does not match the catalog."""
    from udfs.model.classifier import MODEL_FILE

    classes = catalog_classes(df)
    if tuple(card.output_classes) != classes:
        notes.append(f"the model in {model} has classes {list(card.output_classes)}, the catalog "
                     f"{list(classes)}")  # fmt: skip
    catalog_sha = set(df[MODEL_SHA256].dropna()) if MODEL_SHA256 in df.columns else set()
    model_file = model / MODEL_FILE
    if catalog_sha and model_file.is_file() and catalog_sha != {file_sha256(model_file)}:
        notes.append(f"the catalog was made by another model than {model_file} (sha256 differs)")
    figures = {}
    confusion = plot_model_confusion_matrix(card, output / CONFUSION_FILE)
    if confusion is None:
        notes.append(f"the model card in {model} has no test metrics: no confusion matrix")
    else:
        caption = (
            "Model card: confusion matrix of the synthetic (simulated) test split, rows: true "
            "class (for real stars see the real-validation table)"
        )
        figures[caption] = confusion
    reliability = plot_model_reliability(card, output / RELIABILITY_FILE)
    if reliability is not None:
        caption = (
            "Model card: reliability on the real validation split, before and after calibration"
        )
        figures[caption] = reliability
    return figures


def _example_figures(
    df: pd.DataFrame,
    card: ModelCard,
    model: Path,
    inputs: Sequence[str],
    job: Mapping[str, object],
    output: Path,
    notes: list[str],
    log: Callable[[str], None],
) -> tuple[dict[str, Path], dict[str, Path]]:
    """The example figures and the saliency figure, by caption, of the top objects' light curves.

    ``job`` holds classify's arguments (its light-curve cuts). Notes the example objects not
    found in ``inputs``, and probabilities remade from their light curves that differ from the
    catalog's.
    """
    from udfs.kernels.model_inputs import DMDT_INPUT, flat_lightcurves
    from udfs.model.classifier import Classifier
    from udfs.model.saliency import finite_difference_saliency

    examples = _top_objects(df, catalog_classes(df), N_EXAMPLES)
    log(f"  fetching the light curves of {len(examples)} example objects")
    found = fetch_lightcurves(
        examples[DRColumn.OBJECTID].to_numpy(),
        inputs,
        sorted(set(examples[INPUT_FILE])) if INPUT_FILE in examples.columns else None,
        examples[HEALPIX_COLUMN].to_numpy(),
        bad_exposure_fraction=float(job.get("bad_exposure_fraction", 0.0)),
        bad_exposure_min_stars=int(job.get("bad_exposure_min_stars", 30)),
        min_epochs=int(job.get("min_epochs", 20)),
    )
    row_of = {oid: k for k, oid in enumerate(found.column(DRColumn.OBJECTID).to_pylist())}
    lost = [oid for oid in examples[DRColumn.OBJECTID] if oid not in row_of]
    if lost:
        notes.append(f"{len(lost)} example objects not found in {inputs}: {lost[:5]}")
    examples = examples[examples[DRColumn.OBJECTID].isin(row_of)]
    if not len(examples):
        return {}, {}
    found = found.take(pa.array([row_of[oid] for oid in examples[DRColumn.OBJECTID]]))
    flat = flat_lightcurves(found.column(LIGHTCURVE))
    model_inputs = card.model_inputs(flat)
    images = model_inputs[DMDT_INPUT]
    lightcurves = found.column(LIGHTCURVE).to_pylist()
    classifier = Classifier.load(model, card)
    columns = [f"{PROBABILITY_PREFIX}{c}" for c in classifier.output_classes]
    if set(columns) <= set(examples.columns):
        expected = examples[columns].to_numpy(dtype=np.float64)
        remade = classifier.predict(model_inputs)
        if classifier.has_transients:
            from udfs.model.transients import combine, head_features, row_offsets

            p_head = classifier.predict_transients(head_features(flat))
            offsets = row_offsets(classifier.type_log_offsets, np.diff(flat.offsets))
            remade = combine(remade, classifier.classes, p_head, offsets)[0]
        worst = float(np.max(np.abs(remade - expected)))
        if worst > SCORE_TOLERANCE:
            notes.append(
                f"probabilities remade from the light curves differ from the catalog's "
                f"by up to {worst:.2g}: another model, grid or light-curve file?"
            )
    figures = {}
    present = list(dict.fromkeys(examples[PREDICTED_CLASS]))
    for k in range(0, len(present), CLASSES_PER_FIGURE):
        group = present[k : k + CLASSES_PER_FIGURE]
        rows = np.flatnonzero(examples[PREDICTED_CLASS].isin(group).to_numpy())
        caption = f"Top-scoring objects of {', '.join(group)}: light curves, dm-dt images"
        figures[caption] = plot_dmdt_examples(
            examples.iloc[rows], [lightcurves[r] for r in rows], images[rows], card,
            output / EXAMPLES_FILE.format(k // CLASSES_PER_FIGURE + 1),
        )  # fmt: skip

    firsts = ~examples.duplicated(PREDICTED_CLASS).to_numpy()
    firsts &= ~examples[PREDICTED_CLASS].isin(SALIENCY_SKIPPED_CLASSES).to_numpy()
    # A transient class is the head's, which does not read the image.
    firsts &= examples[PREDICTED_CLASS].isin(classifier.classes).to_numpy()
    counts = examples[PREDICTED_CLASS].map(df[PREDICTED_CLASS].value_counts())
    rows = np.flatnonzero(firsts)
    rows = np.sort(rows[np.argsort(-counts.to_numpy()[rows], kind="stable")][:N_SALIENCY])
    if not rows.size:
        return figures, {}
    log(f"  saliency of {rows.size} objects")
    saliencies = [
        finite_difference_saliency(
            classifier,
            model_inputs,
            int(r),
            classifier.classes.index(examples[PREDICTED_CLASS].iloc[r]),
        )
        for r in rows
    ]
    caption = "Saliency of the dm-dt image (top object of the most common classes)"
    saliency = plot_saliency(
        examples.iloc[rows], images[rows], saliencies, card, output / SALIENCY_FILE
    )
    return figures, {caption: saliency}


def make_report(
    catalog_dir: str | Path,
    output_dir: str | Path | None = None,
    model_dir: str | Path | None = None,
    lightcurve_paths: Sequence[str | Path] | None = None,
    log: Callable[[str], None] = print,
) -> ReportResult:
    """Read a classification catalog; write its tables, figures, HTML page and Markdown summary.

    Parameters
    ----------
    catalog_dir : str or Path
        The catalog (see :func:`read_classification_catalog`).
    output_dir : str or Path, optional
        Default ``catalog_dir/report``.
    model_dir : str or Path, optional
        The model that made the catalog. Default: the catalog's ``varsky_model_dir`` property,
        else ``udfs.model.classifier.DEFAULT_MODEL_DIR``.
    lightcurve_paths : sequence of str or Path, optional
        The light curves the catalog was made from. Default: the catalog's ``varsky_inputs``
        property. Without them the example and saliency figures are skipped.
    log : callable
        Receives progress lines.

    Returns
    -------
    ReportResult
    """
    from udfs.model.classifier import DEFAULT_MODEL_DIR, ModelCard

    t0 = time.perf_counter()
    catalog_dir = Path(catalog_dir)
    df = read_classification_catalog(catalog_dir)
    n_files = len(catalog_files(catalog_dir))
    properties_of_catalog = catalog_properties(catalog_dir)
    output = Path(output_dir) if output_dir is not None else catalog_dir / REPORT_DIR
    output.mkdir(parents=True, exist_ok=True)
    classes = catalog_classes(df)
    log(f"varsky report: {len(df):,} objects from {n_files} file(s) in {catalog_dir}")

    notes: list[str] = []
    tables = summary_tables(df, classes)
    figures: dict[str, Path] = {}
    if len(df):
        figures["Sky map: objects and fraction of variables per HEALPix pixel"] = plot_sky_map(
            df, output / SKY_MAP_FILE
        )
        stage = json.loads(properties_of_catalog.get(Property.VARIABILITY_STAGE.value) or "{}")
        variability = plot_variability(df, output / VARIABILITY_FILE, stage.get("threshold"))
        if variability is not None:
            caption = (
                "Variability stage: p_variable against magnitude; grey objects were settled as "
                "constant without the periodogram and network"
            )
            figures[caption] = variability
    else:
        notes.append("the catalog has no rows: no figures")
    results_figures = list(figures)

    model = Path(model_dir or properties_of_catalog.get(Property.MODEL_DIR) or DEFAULT_MODEL_DIR)
    card = None
    try:
        card = ModelCard.read(model)
    except (FileNotFoundError, ValueError) as err:
        notes.append(f"no model card ({err}): no confusion matrix, examples or saliency")
    model_figures = {} if card is None else _card_figures(card, model, df, output, notes)
    figures |= model_figures
    if card is not None and (real := real_validation_table(card)) is not None:
        tables[REAL_VALIDATION_TABLE] = real

    if lightcurve_paths:
        inputs = [str(p) for p in lightcurve_paths]
    else:
        inputs = split_list(properties_of_catalog.get(Property.INPUTS))
    missing = [p for p in inputs if "://" not in p and not Path(p).exists()]
    if missing:
        notes.append(f"light-curve inputs not found: {missing}")
    inputs = [p for p in inputs if p not in missing]
    if card is not None and len(df) and not inputs:
        notes.append("no light-curve inputs (give --lightcurves): no example or saliency figures")
    if card is not None and len(df) and inputs:
        job = json.loads(properties_of_catalog.get(Property.JOB_ARGUMENTS) or "{}")
        examples, saliency = _example_figures(df, card, model, inputs, job, output, notes, log)
        figures |= examples | saliency
        results_figures += examples
        model_figures |= saliency

    properties = _provenance(df, catalog_dir, n_files)
    properties["model directory (report)"] = str(model)
    properties["light-curve inputs (report)"] = ", ".join(inputs) or "(none)"
    properties["generated (UTC)"] = datetime.now(UTC).isoformat(timespec="seconds")
    properties |= {f"property {k}": v for k, v in properties_of_catalog.items()}
    title = _title(properties_of_catalog, catalog_dir, len(df))
    sections = [
        Section("Results", (_lead(df),), (CLASS_TABLE,), tuple(results_figures)),
        Section(
            "The model, and where its numbers come from",
            model_statement(card) if card is not None else (),
            (REAL_VALIDATION_TABLE,),
            tuple(model_figures),
        ),
        Section("More about the catalog", (), (SCORE_TABLE, EPOCH_TABLE, TILE_TABLE)),
    ]
    html_path = write_html(output, tables, figures, title, properties, notes, sections)
    summary_path = write_summary_markdown(
        output, tables, figures, title, properties, notes, sections
    )
    return ReportResult(
        catalog_dir=catalog_dir,
        output_dir=output,
        html_path=html_path,
        summary_path=summary_path,
        figures=figures,
        tables=tables,
        n_objects=len(df),
        classes=classes,
        notes=notes,
        seconds=time.perf_counter() - t0,
    )
