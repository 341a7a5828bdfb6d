"""The engine-free classify chain (udfs.pipeline): the same rows as the Spark job, without Spark."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from catalogs.input_files import hats_partition_files
from catalogs.provenance import VARSKY_VERSION, file_sha256
from catalogs.schema import (
    CARRIED_COLUMNS,
    INPUT_CATALOG,
    INPUT_FILE,
    MODEL_SHA256,
    PROCESSING_TIME,
    REJECT_REASON,
    SOURCE_FILE,
    SOURCE_ROW,
    VARSKY_VERSION_COLUMN,
    DRColumn,
    InputKind,
)
from jobs.classify import ClassifyConfig, run_classify
from udfs.kernels.bad_exposures import exposure_deviations, flag_exposures, remove_epochs
from udfs.kernels.lightcurve_cuts import CUT_SCHEMA, cut_partition
from udfs.model.classifier import MODEL_FILE, ModelCard
from udfs.model.variability import stage_of
from udfs.pipeline import Provenance, cached_classifier, classified_schema, classify_partition

EPOCH_S = 1790000000


def _sample_rows(sample_file: Path) -> pa.RecordBatch:
    table = pq.read_table(sample_file)
    path = str(sample_file.resolve())
    table = table.append_column(SOURCE_FILE, pa.array([path] * table.num_rows, pa.string()))
    table = table.append_column(SOURCE_ROW, pa.array(np.arange(table.num_rows, dtype=np.int64)))
    return table.combine_chunks().to_batches()[0]


@pytest.fixture(scope="module")
def spark_catalog(spark, sample_file, model_dir, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("SOURCE_DATE_EPOCH", str(EPOCH_S))
    out = tmp_path_factory.mktemp("pipeline") / "cls"
    try:
        config = ClassifyConfig(
            inputs=(str(sample_file),), output=str(out), rejects=str(out) + "_rejects",
            model_dir=str(model_dir),
        )  # fmt: skip
        summary = run_classify(spark, config, log=lambda *_: None)
    finally:
        mp.undo()
    files = hats_partition_files(str(out / config.catalog_name))
    table = pa.concat_tables(pq.read_table(f) for f in files).sort_by(DRColumn.OBJECTID)
    return config, summary, table


def test_the_partition_chain_gives_the_spark_catalog(spark_catalog, sample_file, model_dir):
    config, summary, spark_table = spark_catalog
    cut = cut_partition(_sample_rows(sample_file), InputKind.DR, config.min_epochs)
    assert cut.schema == CUT_SCHEMA
    rejected = cut.filter(pc.is_valid(cut.column(REJECT_REASON)))
    assert rejected.num_rows == summary.rows_rejected
    kept = cut.filter(pc.is_null(cut.column(REJECT_REASON)))
    flagged = flag_exposures(
        pa.Table.from_batches([exposure_deviations(kept)]),
        config.bad_exposure_min_stars,
        config.bad_exposure_fraction,
    )
    kept, removed = remove_epochs(kept, flagged, config.min_epochs)
    assert removed == summary.epochs_bad_exposure
    card = ModelCard.read(model_dir)
    sha = file_sha256(model_dir / MODEL_FILE)
    classifier = cached_classifier(model_dir / MODEL_FILE, sha, card)
    assert cached_classifier(model_dir / MODEL_FILE, sha, card) is classifier
    path = str(sample_file.resolve())
    provenance = Provenance(
        card.name, sha, card.grid.name, datetime.fromtimestamp(EPOCH_S, UTC), {path: "ZTF DR5"}
    )
    stage = stage_of(card)  # the job runs the card's variability stage by default
    rows = classify_partition(kept, classifier, provenance, config.batch_size, stage=stage)
    carried = pa.schema([CUT_SCHEMA.field(c) for c in CARRIED_COLUMNS])
    assert rows.schema == classified_schema(card.output_classes, carried)
    ours = pa.Table.from_batches([rows]).sort_by(DRColumn.OBJECTID)
    # Same objects, same classes, bit-equal probabilities, same provenance.
    assert ours.num_rows == spark_table.num_rows == summary.rows_out
    for name in ours.column_names:
        assert ours.column(name).equals(
            spark_table.column(name).cast(ours.schema.field(name).type)
        ), name
    assert set(ours.column(INPUT_CATALOG).to_pylist()) == {"ZTF DR5"}
    assert set(ours.column(INPUT_FILE).to_pylist()) == {sample_file.name}
    assert set(ours.column(VARSKY_VERSION_COLUMN).to_pylist()) == {VARSKY_VERSION}
    assert set(ours.column(MODEL_SHA256).to_pylist()) == {sha}
    assert ours.column(PROCESSING_TIME)[0].as_py() == datetime.fromtimestamp(EPOCH_S, UTC)


def test_a_tampered_model_file_is_refused(model_dir, tmp_path):
    copy = tmp_path / MODEL_FILE
    copy.write_bytes((model_dir / MODEL_FILE).read_bytes() + b"x")
    with pytest.raises(RuntimeError, match=r"has sha256 .*, expected 0+"):
        cached_classifier(copy, "0" * 64)


def test_every_input_row_comes_out_of_the_cut_once(sample_file):
    rows = _sample_rows(sample_file)
    cut = cut_partition(rows, "dr", 20)
    assert cut.num_rows == rows.num_rows
    assert cut.column(SOURCE_ROW).to_pylist() == list(range(rows.num_rows))
    with pytest.raises(ValueError, match="not a valid InputKind"):
        cut_partition(rows, "fits", 20)
