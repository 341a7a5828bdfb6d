"""`varsky train`'s data: simulated, labelled and real light curves, their twins, split, inputs.

Each builder gives Spark DataFrames or Arrow tables of light curves with a ``label`` (and a
``split``) column; :func:`make_training_set` turns them into model inputs with Spark, by the
code classify uses.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from catalogs.errors import InputError
from catalogs.provenance import file_sha256
from catalogs.schema import LIGHTCURVE, LIGHTCURVE_STRUCT, N_GOOD, REJECT_REASON, DRColumn
from jobs.train_config import _REPO_ROOT, EQUALIZED_GRID_SAMPLE, LABEL, SPLIT, TrainConfig
from udfs.kernels.dmdt import DmDtGrid
from udfs.model.classifier import CLASS_NAMES, ModelCard
from udfs.model.training import TRAIN, VALIDATION, split_by_object


def portable_path(path: Path) -> str:
    """``path`` relative to the repository when inside it, so that cards do not name one machine."""
    try:
        return str(path.resolve().relative_to(_REPO_ROOT))
    except ValueError:
        return str(path)


def _data_description(config: TrainConfig) -> str:
    cadences = "ZTF-like synthetic cadences"
    if config.cadence_sample is not None and config.real_cadence_fraction > 0:
        cadences += (
            f", {config.real_cadence_fraction:.0%} of objects with the real epochs of "
            f"{config.cadence_sample.name}"
        )
    return (
        f"udfs.simulators.lightcurve_simulator light curves, {config.objects_per_class} per class: "
        f"{cadences}; g+r, g-only, r-only and g+r+i band subsets; noise from the DR5 "
        "error-magnitude relation with underestimated errors, calibration scatter and outliers; "
        "variables bright enough to be detected (amplitude >= 4 median magerr). Split by "
        "object, stratified by class."
    )


def simulated_lightcurve_table(config: TrainConfig) -> tuple[pa.Table, str]:
    """Simulated labelled light curves as a light-curve table, and a description of them."""
    from udfs.simulators.lightcurve_simulator import simulate_lightcurves

    sim = simulate_lightcurves(
        config.objects_per_class,
        config.seed,
        CLASS_NAMES,
        cadence_sample_path=config.cadence_sample,
        real_cadence_fraction=config.real_cadence_fraction,
    )
    offsets = pa.array(sim.offsets.astype(np.int32))
    lightcurve = pa.StructArray.from_arrays(
        [
            pa.ListArray.from_arrays(offsets, pa.array(values))
            for values in (sim.t_hmjd, sim.mag, sim.magerr, sim.channel)
        ],
        fields=list(LIGHTCURVE_STRUCT),
    )
    columns = {
        DRColumn.OBJECTID: pa.array(np.arange(sim.n_lightcurves, dtype=np.int64)),
        LABEL: pa.array([CLASS_NAMES[k] for k in sim.labels], pa.string()),
        LIGHTCURVE: lightcurve,
    }
    return pa.table(columns), _data_description(config)


def read_labels(path: Path) -> pa.Table:
    """The labelled table: ``objectid`` (int64) and ``label`` (string), one row per object.

    Raises InputError naming the file, column and row for a missing column, a null, a label that
    cannot be a column name, or an object labelled twice.
    """
    import re

    import pyarrow.csv as pacsv

    if not path.is_file():
        raise InputError(str(path), "no such file")
    try:
        table = pacsv.read_csv(path) if path.suffix.lower() == ".csv" else pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise InputError(str(path), f"not a Parquet or CSV table ({err})") from err
    for column in (DRColumn.OBJECTID, LABEL):
        if column not in table.column_names:
            raise InputError(str(path), "missing column", column=column)
    try:
        ids = table.column(DRColumn.OBJECTID).cast(pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
        raise InputError(str(path), f"not integers ({err})", column=DRColumn.OBJECTID) from err
    labels = table.column(LABEL).cast(pa.string())
    for column, values in ((DRColumn.OBJECTID, ids), (LABEL, labels)):
        nulls = np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))
        if nulls.size:
            raise InputError(str(path), "null value", column=column, row=int(nulls[0]))
    for row, name in enumerate(labels.to_pylist()):
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise InputError(
                str(path),
                f"label {name!r} must be lower-case letters, digits and _ (it names an output "
                "column p_<label>)",
                column=LABEL,
                row=row,
            )
    id_values = ids.to_numpy()
    _, first, counts = np.unique(id_values, return_index=True, return_counts=True)
    if (counts > 1).any():
        repeated = np.flatnonzero(np.isin(id_values, id_values[first[counts > 1]]))
        raise InputError(
            str(path), "object labelled more than once", column=DRColumn.OBJECTID,
            row=int(repeated[1]),
        )  # fmt: skip
    return pa.table({DRColumn.OBJECTID: ids, LABEL: labels})


def label_classes(labels: list[str]) -> tuple[str, ...]:
    """Classes of a labelled set: taxonomy order when every label is a varsky class, else sorted."""
    present = set(labels)
    if present <= set(CLASS_NAMES):
        return tuple(c for c in CLASS_NAMES if c in present)
    return tuple(sorted(present))


def split_table(ids: np.ndarray, classes: np.ndarray, config: TrainConfig) -> np.ndarray:
    """Split codes of objects in object-id order (so that they do not depend on read order)."""
    order = np.argsort(ids, kind="stable")
    split = np.empty(ids.size, np.int8)
    split[order] = split_by_object(
        classes[order], config.val_fraction, config.test_fraction, config.seed
    )
    return split


def make_training_set(spark, lightcurves, card: ModelCard, config: TrainConfig):
    """Model inputs of every labelled light curve and its band-dropped copies, made with Spark.

    ``lightcurves`` (a DataFrame) has ``objectid``, ``label``, ``split`` and ``lightcurve`` per
    object; ``card`` says which inputs to make. Returns an Arrow table of ``objectid``,
    ``label``, ``split``, ``variant`` (0 original, 1 band-dropped copy) and one column per model
    input, sorted by objectid then variant.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema

    from udfs.engines.spark_inference import band_dropout_partitions, model_input_partitions
    from udfs.model.band_dropout import VARIANT
    from udfs.model.inference import model_input_schema

    base = lightcurves.select(DRColumn.OBJECTID, LABEL, SPLIT, LIGHTCURVE)
    arrow_schema = pa.schema(
        [
            pa.field(DRColumn.OBJECTID, pa.int64()),
            pa.field(LABEL, pa.string()),
            pa.field(SPLIT, pa.int8()),
            pa.field(LIGHTCURVE, LIGHTCURVE_STRUCT),
            pa.field(VARIANT, pa.int8()),
        ]
    )
    copies = base.where(F.col(SPLIT) == TRAIN).mapInArrow(
        band_dropout_partitions(config.band_dropout, config.seed, config.min_epochs),
        from_arrow_schema(arrow_schema),
    )
    everything = base.withColumn(VARIANT, F.lit(0).cast("byte"))
    if config.band_dropout > 0:
        everything = everything.unionByName(copies)
    carried = (DRColumn.OBJECTID, LABEL, SPLIT, VARIANT)
    out_schema = model_input_schema(card, pa.schema([arrow_schema.field(c) for c in carried]))
    inputs = everything.mapInArrow(
        model_input_partitions(json.dumps(card.to_dict()), carried),
        from_arrow_schema(out_schema),
    )
    return inputs.toArrow().sort_by([(DRColumn.OBJECTID, "ascending"), (VARIANT, "ascending")])


def labelled_lightcurves(spark, config: TrainConfig, log) -> tuple[object, dict[str, int], str]:
    """The labelled objects' light curves (after the classify cuts) and what was left out."""
    from pyspark.sql import functions as F

    from jobs.classify_plan import lightcurve_reader
    from jobs.classify_spark import read_cut_rows

    assert config.labels is not None
    labels = read_labels(config.labels)
    files, _, kind = lightcurve_reader(list(config.inputs))
    log(f"[train] {labels.num_rows} labels; light curves from {len(files)} file(s)")
    cut = read_cut_rows(spark, files, kind, config.min_epochs)
    label_df = spark.createDataFrame(labels.to_pandas())
    joined = label_df.join(
        cut.select(DRColumn.OBJECTID, LIGHTCURVE, REJECT_REASON), DRColumn.OBJECTID, "left"
    ).persist()
    reasons = joined.groupBy(REJECT_REASON, F.col(LIGHTCURVE).isNull().alias("missing")).count()
    left_out: dict[str, int] = {}
    for row in reasons.collect():
        if row["missing"] and row[REJECT_REASON] is None:
            left_out["not in the light-curve catalog"] = row["count"]
        elif row[REJECT_REASON] is not None:
            left_out[row[REJECT_REASON]] = row["count"]
    kept = joined.where(F.col(REJECT_REASON).isNull() & F.col(LIGHTCURVE).isNotNull())
    description = (
        f"labelled table {config.labels.name} ({labels.num_rows} objects) joined to "
        f"{', '.join(Path(p).name for p in config.inputs)}; light curves with at least "
        f"{config.min_epochs} good epochs. Split by object, stratified by class."
    )
    return kept.select(DRColumn.OBJECTID, LABEL, LIGHTCURVE), left_out, description


#: Twins' objectids: the real object's id plus this (real ids are below 2^53).
TWIN_ID_OFFSET = 1 << 53
#: Twins of the cadence sample's DR objects: the DR objectid plus this times the draw (1, 2, ..),
#: above the real sets' twins. A DR file holds few stars, so each gives DR_TWIN_DRAWS twins.
DR_TWIN_ID_OFFSET = 1 << 54
DR_TWIN_DRAWS = 3


def _as_twins(table: pa.Table, twins, id_offset: int, name: str) -> pa.Table:
    """``table`` (a labelled set's columns) relabelled as noise-only twins of set ``name``.

    The ids move up by ``id_offset``, the class is constant, the light curves are ``twins``.
    """
    import pyarrow.compute as pc

    from catalogs.labelled_sets import CLASSES, LABEL_ORIG, SET_NAME
    from udfs.kernels.model_inputs import lightcurve_array

    n = table.num_rows
    objectid = pc.add(table.column(DRColumn.OBJECTID), pa.scalar(id_offset, pa.int64()))
    for column, values in (
        (DRColumn.OBJECTID, objectid),
        (CLASSES, pa.array(["constant"] * n, pa.string())),
        (LABEL_ORIG, pa.array(["noise-only twin"] * n, pa.string())),
        (SET_NAME, pa.array([name] * n, pa.string())),
        (LIGHTCURVE, lightcurve_array(twins)),
    ):
        index = table.schema.get_field_index(column)
        table = table.set_column(index, table.schema.field(index).name, values)
    return table


def _noise_twins(tables: list[pa.Table], sets: list[dict], config: TrainConfig):
    """Realistic noise-only twins of every real labelled object, labelled constant.

    Same times, bands and quoted errors (udfs.simulators.noise_twins.REALISTIC), so the network's
    constant class sees every real cadence and the cadence alone is no evidence of variability. A
    twin takes its object's split, so no validation object's twin is trained on.
    """
    from udfs.kernels.model_inputs import flat_lightcurves
    from udfs.simulators.noise_twins import REALISTIC, noise_twins

    rng = np.random.default_rng([config.seed, 29])
    out, entries = [], []
    for table, entry in zip(tables, sets, strict=True):
        name = f"{entry['name']}_twins"
        twins = noise_twins(flat_lightcurves(table.column(LIGHTCURVE)), REALISTIC, rng)
        out.append(_as_twins(table, twins, TWIN_ID_OFFSET, name))
        entries.append(
            {
                "name": name,
                "twins_of": entry["name"],
                "noise_model": REALISTIC.to_dict(),
                "objects": table.num_rows,
                "too_few_epochs": 0,
            }  # fmt: skip
        )
    return out, entries


def _dr_twins(config: TrainConfig, schema: pa.Schema):
    """Realistic noise-only twins of the cadence sample's DR light curves, labelled constant.

    Most of a DR file's stars do not vary, but which ones is not known, so only their twins are
    learned from: the constant class then sees the DR cadence and depth too. The split is the
    variability stage's (:func:`udfs.model.variability_training.dr_half`: half 0 trains, half 1
    validates), so the benches' held-out half stays unseen by both stages.
    Returns the table (``schema``'s columns), its split and its set entry, or None.
    """
    from catalogs.labelled_sets import N_EPOCHS
    from udfs.kernels.model_inputs import flat_lightcurves
    from udfs.model.variability_training import dr_cut_table, dr_half
    from udfs.simulators.noise_twins import REALISTIC, noise_twins

    if config.cadence_sample is None:
        return None
    cut = dr_cut_table(config.cadence_sample, config.min_epochs)
    n = cut.num_rows
    if n == 0:
        return None
    rng = np.random.default_rng([config.seed, 31])
    flat = flat_lightcurves(cut.column(LIGHTCURVE))
    # The DR rows in the labelled sets' columns; _as_twins fills the labels and light curves.
    given = {
        DRColumn.OBJECTID: cut.column(DRColumn.OBJECTID),
        "ra": cut.column("ra"),
        "dec": cut.column("dec"),
        N_EPOCHS: cut.column(N_GOOD),
        LIGHTCURVE: cut.column(LIGHTCURVE),
    }
    base = pa.table(
        {f.name: given[f.name] if f.name in given else pa.nulls(n, f.type) for f in schema}
    ).cast(schema)
    name = f"{Path(config.cadence_sample).stem}_twins"
    table = pa.concat_tables(
        _as_twins(base, noise_twins(flat, REALISTIC, rng), DR_TWIN_ID_OFFSET * (draw + 1), name)
        for draw in range(DR_TWIN_DRAWS)
    )
    half = dr_half(cut.column(DRColumn.OBJECTID).to_numpy())
    split = np.tile(np.where(half == 0, TRAIN, VALIDATION), DR_TWIN_DRAWS).astype(np.int8)
    entry = {
        "name": name,
        "twins_of": portable_path(Path(config.cadence_sample)),
        "twins_of_sha256": file_sha256(Path(config.cadence_sample)),
        "noise_model": REALISTIC.to_dict(),
        "objects": table.num_rows,
        "twin_draws": DR_TWIN_DRAWS,
        "too_few_epochs": 0,
    }
    return table, split, entry


def real_lightcurves(spark, config: TrainConfig, workdir: Path, log):
    """The real labelled sets as one light-curve table with the real split, and their record."""
    from catalogs.labelled_sets import CLASSES, LABEL_ORIG, N_EPOCHS, SET_NAME, read_labelled_set
    from udfs.model.training import TOO_SPARSE, labelled_set_split

    tables, splits, sets = [], [], []
    for prefix in config.real_sets:
        table = read_labelled_set(prefix, config.band_map)
        name = Path(prefix).name
        set_split = labelled_set_split(
            name,
            table.column(DRColumn.OBJECTID).to_numpy(),
            table.column(LABEL_ORIG).to_pylist(),
            table.column(N_EPOCHS).to_numpy(),
            config.min_epochs,
            config.real_val_fraction,
            config.real_split_seed,
        )
        enough = set_split != TOO_SPARSE
        entry = {"name": name}
        for part in ("detections", "labels"):
            path = Path(f"{prefix}_{part}.parquet")
            entry[part], entry[f"{part}_sha256"] = portable_path(path), file_sha256(path)
        entry.update(objects=table.num_rows, too_few_epochs=int((~enough).sum()))
        sets.append(entry)
        tables.append(table.filter(pa.array(enough)))
        splits.append(set_split[enough])
    if config.twins:
        twin_tables, twin_sets = _noise_twins(tables, sets, config)
        tables += twin_tables
        splits += splits[: len(twin_tables)]
        sets += twin_sets
        dr_twins = _dr_twins(config, tables[0].schema)
        if dr_twins is not None:
            tables.append(dr_twins[0])
            splits.append(dr_twins[1])
            sets.append(dr_twins[2])
    table = pa.concat_tables(tables)
    split = np.concatenate(splits)
    for entry in sets:
        mine = np.asarray(table.column(SET_NAME).to_pylist()) == entry["name"]
        entry["train"] = int((mine & (split == TRAIN)).sum())
        entry["validation"] = int((mine & (split == VALIDATION)).sum())
        log(
            f"[train] real set {entry['name']}: {entry['objects']} objects, "
            f"{entry['too_few_epochs']} with fewer than {config.min_epochs} epochs left out, "
            f"train {entry['train']}, validation {entry['validation']}"
        )
    lightcurves = table.select([DRColumn.OBJECTID, CLASSES, LIGHTCURVE]).rename_columns(
        [DRColumn.OBJECTID, LABEL, LIGHTCURVE]
    )
    lightcurves = lightcurves.append_column(SPLIT, pa.array(split, pa.int8()))
    pq.write_table(lightcurves, workdir / "real.parquet", row_group_size=500)
    meta = {
        "objectid": table.column(DRColumn.OBJECTID).to_numpy(),
        "set": np.asarray(table.column(SET_NAME).to_pylist(), dtype=object),
        "label_orig": np.asarray(table.column(LABEL_ORIG).to_pylist(), dtype=object),
    }
    return spark.read.parquet(str(workdir / "real.parquet")), sets, meta, lightcurves


def equalized_grid(tables: list[pa.Table], seed: int) -> DmDtGrid:
    """:meth:`DmDtGrid.equalized` on a seeded sample of the training light curves of ``tables``.

    Each table has ``lightcurve`` and ``split``; up to :data:`EQUALIZED_GRID_SAMPLE` training
    rows are drawn from each in turn (simulated, then real).
    """
    from udfs.kernels.model_inputs import flat_lightcurves

    parts = []
    rng = np.random.default_rng([seed, 3])
    for table, n in zip(tables, EQUALIZED_GRID_SAMPLE, strict=False):
        rows = np.flatnonzero(table.column(SPLIT).to_numpy() == TRAIN)
        rows = np.sort(rng.choice(rows, min(n, rows.size), replace=False))
        parts.append(flat_lightcurves(table.column(LIGHTCURVE).take(pa.array(rows))))
    t = np.concatenate([p.t_days for p in parts])
    mag = np.concatenate([p.mag for p in parts])
    channel = np.concatenate([p.channel for p in parts])
    offsets = [parts[0].offsets]
    for p in parts[1:]:
        offsets.append(p.offsets[1:] + offsets[-1][-1])
    n_dm, n_dt = DmDtGrid.mahabal2017().shape
    return DmDtGrid.equalized(
        t, mag, np.concatenate(offsets), channel, n_dt=n_dt, n_dm=n_dm, seed=seed
    )
