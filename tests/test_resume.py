"""The resume journal (catalogs/resume.py) on real files: what is kept, what is not."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from catalogs.hats_tiles import Tiles
from catalogs.hats_writer import DATASET_DIR, partition_relative_path
from catalogs.resume import (
    JOURNAL_DIR,
    clear_for_resume,
    finish_journal,
    read_journal,
    record_tile,
    run_fingerprint,
    start_journal,
)

WHEN = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
PLAN = Tiles(np.array([1, 1, 1]), np.array([4, 5, 6]), np.array([2, 3, 1]))


def _tile(catalog, order, pixel, n):
    path = catalog / DATASET_DIR / partition_relative_path(order, pixel)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"objectid": np.arange(n)}), path)
    return {"order": order, "pixel": pixel, "nrows": n, "skymap_pixels": [7], "skymap_counts": [n]}


def _journal(tmp_path):
    staging = tmp_path / "out.varsky-partial"
    catalog = staging / "cat"
    journal = start_journal(str(staging), "abc", WHEN, PLAN)
    for row in (_tile(catalog, 1, 4, 2), _tile(catalog, 1, 5, 3)):
        record_tile(journal, str(catalog), row)
    _tile(catalog, 1, 6, 1)  # written, never recorded: the driver died before its record
    (staging / "margin").mkdir()
    (staging / "margin" / "x.parquet").write_bytes(b"partial")
    return staging, catalog


def test_verified_tiles_are_kept_and_the_rest_cleared(tmp_path):
    staging, catalog = _journal(tmp_path)
    state = read_journal(str(staging), str(catalog), "abc")
    assert state.processing_time == WHEN
    assert [(r["order"], r["pixel"], r["nrows"]) for r in state.kept] == [(1, 4, 2), (1, 5, 3)]
    assert state.kept_rows == 5 and state.kept_indices.tolist() == [0, 1]
    np.testing.assert_array_equal(state.tiles.pixels, PLAN.pixels)
    clear_for_resume(str(staging), str(catalog), state)
    left = sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file())
    assert left == [
        f"{JOURNAL_DIR}/run.json",
        f"{JOURNAL_DIR}/tiles/Norder=1_Npix=4.json",
        f"{JOURNAL_DIR}/tiles/Norder=1_Npix=5.json",
        f"cat/{DATASET_DIR}/{partition_relative_path(1, 4)}",
        f"cat/{DATASET_DIR}/{partition_relative_path(1, 5)}",
    ]
    finish_journal(str(staging))
    assert not (staging / JOURNAL_DIR).exists()


def test_a_changed_tile_file_is_not_kept(tmp_path):
    staging, catalog = _journal(tmp_path)
    changed = catalog / DATASET_DIR / partition_relative_path(1, 5)
    pq.write_table(pa.table({"objectid": np.arange(3) + 1}), changed)
    state = read_journal(str(staging), str(catalog), "abc")
    assert [r["pixel"] for r in state.kept] == [4]
    clear_for_resume(str(staging), str(catalog), state)
    assert not changed.exists()


def test_another_runs_journal_keeps_nothing(tmp_path):
    staging, catalog = _journal(tmp_path)
    assert read_journal(str(staging), str(catalog), "another") is None
    assert read_journal(str(tmp_path / "nowhere"), str(catalog), "abc") is None
    clear_for_resume(str(staging), str(catalog), None)
    assert not staging.exists()


def test_fingerprint_follows_arguments_inputs_and_model():
    base = run_fingerprint({"min_epochs": 20}, [("a.parquet", 10, 1)], "m")
    assert base == run_fingerprint({"min_epochs": 20}, [("a.parquet", 10, 1)], "m")
    assert base != run_fingerprint({"min_epochs": 21}, [("a.parquet", 10, 1)], "m")
    assert base != run_fingerprint({"min_epochs": 20}, [("a.parquet", 10, 2)], "m")
    assert base != run_fingerprint({"min_epochs": 20}, [("a.parquet", 10, 1)], "n")


# --- the classify job: a dead run that had written every tile ---------------------------------
def test_resume_after_every_tile_was_written_classifies_nothing(
    spark, sample_file, model_dir, tmp_path, monkeypatch
):
    """The driver died after the last tile, before the margin, metadata and rename."""
    import shutil
    from dataclasses import replace

    from test_dask_engine import WHEN, _data_files

    from catalogs.hats_writer import DEFAULT_SKYMAP_ORDER
    from catalogs.schema import HEALPIX_ORDER
    from jobs.classify import ClassifyConfig, run_classify
    from jobs.classify_plan import journal_of, lightcurve_reader, processing_time_utc
    from udfs.model.classifier import checked_model

    monkeypatch.setenv("SOURCE_DATE_EPOCH", WHEN)
    clean_out, out = tmp_path / "clean", tmp_path / "resumed"
    config = ClassifyConfig(
        inputs=(str(sample_file),), output=str(clean_out), rejects=str(clean_out) + "_rejects",
        model_dir=str(model_dir), max_rows_per_pixel=150,
    )  # fmt: skip
    clean = run_classify(spark, config, log=lambda *_: None)
    assert len(clean.tiles) > 5 and clean.margin_rows > 0

    # What the dead run left: every tile file and its record, a partial margin and metadata.
    final = replace(config, output=str(out), rejects=str(out) + "_rejects", resume=True)
    staged = final.staged()
    shutil.copytree(clean_out, staged.output)
    files = lightcurve_reader(list(final.inputs))[0]
    model_sha256 = checked_model(model_dir)[2]
    journal, _ = journal_of(replace(final, resume=False), staged, files, model_sha256)
    tiles = Tiles(*np.array(clean.tiles, dtype=np.int64).T)
    journal_dir = start_journal(staged.output, journal.fingerprint, processing_time_utc(), tiles)
    shift = 2 * (HEALPIX_ORDER - DEFAULT_SKYMAP_ORDER)
    for order, pixel, n in clean.tiles:
        path = Path(staged.catalog_dir) / DATASET_DIR / partition_relative_path(order, pixel)
        cells, counts = np.unique(pq.read_table(path)["_healpix_29"].to_numpy() >> shift,
                                  return_counts=True)  # fmt: skip
        row = {"order": order, "pixel": pixel, "nrows": n, "skymap_pixels": cells.tolist(),
               "skymap_counts": counts.tolist()}  # fmt: skip
        record_tile(journal_dir, staged.catalog_dir, row)

    resumed = run_classify(spark, final, log=lambda *_: None)
    assert resumed.resumed_tiles == len(clean.tiles) and resumed.resumed_rows == clean.rows_out
    assert resumed.class_counts == clean.class_counts
    assert (resumed.rows_out, resumed.margin_rows) == (clean.rows_out, clean.margin_rows)
    assert not Path(staged.output).exists() and not (out / JOURNAL_DIR).exists()
    assert _data_files(out) == _data_files(clean_out)
